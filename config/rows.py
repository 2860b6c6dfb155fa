"""Model instances from rows of fixed SQL, for the lookups that every request repeats.

Compiling a join through the ORM costs about a millisecond of Python per query, more than
PostgreSQL spends answering it. The lookups every API call makes (its token, its membership of
the project) therefore write their SQL once, with `columns`, and turn the row back into model
instances with `instance`, which applies the same conversions the ORM would (JSON, durations,
SQLite's datetimes), so the instances are indistinguishable from those of a queryset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar, cast

from django.db import connection
from django.db.models import Model

M = TypeVar("M", bound=Model)


@dataclass(frozen=True)
class _Shape:
    attnames: list[str]
    columns: str
    converters: list[tuple[int, list[Callable[..., Any]], Any]]


@cache
def _shape(model: type[Model], alias: str, vendor: str) -> _Shape:
    fields = model._meta.concrete_fields
    quote = connection.ops.quote_name
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(alias)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if found:
            converters.append((index, found, column))
    return _Shape(
        attnames=[field.attname for field in fields],
        # A concrete field always has a column; the type allows None for other fields.
        columns=", ".join(f"{quote(alias)}.{quote(cast(str, field.column))}" for field in fields),
        converters=converters,
    )


def columns(model: type[Model], alias: str) -> str:
    """Every concrete column of `model` in the table aliased `alias`, in `instance`'s order."""
    return _shape(model, alias, connection.vendor).columns


def width(model: type[Model]) -> int:
    """How many columns `columns` selects for `model`."""
    return len(model._meta.concrete_fields)


def instance(model: type[M], alias: str, values: Sequence[Any]) -> M:
    """A `model` instance from the values of `columns(model, alias)`, converted as the ORM does."""
    shape = _shape(model, alias, connection.vendor)
    row = list(values)
    for index, converters, column in shape.converters:
        for convert in converters:
            row[index] = convert(row[index], column, connection)
    return model.from_db(connection.alias, shape.attnames, row)
