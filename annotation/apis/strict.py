"""The one rule for request bodies: a field an endpoint does not take is a 400 that names it.

Without it DRF drops unknown fields without a word, so a typo or a setting the endpoint does not
support (`max_raters_per_pair` on create, once) looks accepted and is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from rest_framework import serializers


def unknown_fields_error(data: Any, allowed: Iterable[str]) -> dict[str, list[str]]:
    """`{field: [message]}` for each key of `data` not in `allowed`; empty when none."""
    if not isinstance(data, Mapping):
        return {}
    known = set(allowed)
    takes = f"takes: {', '.join(sorted(known))}" if known else "takes no body fields"
    return {
        name: [f'Unknown field "{name}"; this endpoint {takes}.']
        for name in sorted(set(data.keys()) - known)
    }


def reject_unknown_fields(data: Any, allowed: Iterable[str] = ()) -> None:
    """For endpoints without an input serializer: a 400 naming each field they do not take."""
    if errors := unknown_fields_error(data, allowed):
        raise serializers.ValidationError(errors)


# The mixin's base for the type checker: the serializers it is mixed into.
if TYPE_CHECKING:
    _SerializerBase = serializers.Serializer
else:
    _SerializerBase = object


class StrictFieldsMixin(_SerializerBase):
    """For input serializers: unknown body fields fail validation, each named."""

    def to_internal_value(self, data: Any) -> Any:
        fields = self.fields
        writable = (name for name, field in fields.items() if not field.read_only)
        if errors := unknown_fields_error(data, writable):
            raise serializers.ValidationError(errors)
        return super().to_internal_value(data)
