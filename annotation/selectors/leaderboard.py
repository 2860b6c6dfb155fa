"""Reads for the leaderboard: a project's judged pairs as a `Battles` table for the fit.

The judgments are counted per pair in the database (one row per pair: its prompt, its two
responses and how many judgments chose A, B, a tie or both bad), and the responses' model names
and style counts come in a second query; numpy joins the two. Only pairs whose two responses
both name their model take part.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import numpy as np
from django.contrib.auth import get_user_model
from django.db import connections
from django.db.models import CharField, Count, F, Q, QuerySet
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from numpy.typing import NDArray

from annotation.leaderboard.bias import Lean, RaterLean, bias_leans
from annotation.leaderboard.fit import Battles
from annotation.models import Judgment, Project, Response
from annotation.selectors.agreement import AgreementScope, scope_judgments

BothBad = Literal["tie", "exclude"]
_CHUNK = 20_000


@dataclass(frozen=True, kw_only=True)
class LeaderboardScope:
    """Which judgments a leaderboard counts. Dates are whole UTC days, both ends included."""

    batch_id: int | None = None
    since: date | None = None
    until: date | None = None
    criterion: str | None = None  # a criterion's own choice instead of the overall one
    rater_id: int | None = None
    include_known: bool = False  # gold pairs and seed-labelled pairs, left out by default
    both_bad: BothBad = "tie"

    def as_json(self) -> dict[str, Any]:
        """The filters that are set (the API's and the page's query parameters)."""
        stored: dict[str, Any] = {}
        if self.batch_id is not None:
            stored["batch"] = self.batch_id
        if self.since is not None:
            stored["since"] = self.since.isoformat()
        if self.until is not None:
            stored["until"] = self.until.isoformat()
        if self.criterion:
            stored["criterion"] = self.criterion
        if self.rater_id is not None:
            stored["rater"] = self.rater_id
        if self.include_known:
            stored["include_known"] = True
        if self.both_bad != "tie":
            stored["both_bad"] = self.both_bad
        return stored


def leaderboard_judgments(*, project: Project, scope: LeaderboardScope) -> QuerySet[Judgment]:
    """The judgments the leaderboard counts: in scope, on pairs of two named models."""
    judgments = scope_judgments(
        project=project,
        scope=AgreementScope(batch_id=scope.batch_id, since=scope.since, until=scope.until),
    )
    if scope.rater_id is not None:
        judgments = judgments.filter(rater_id=scope.rater_id)
    if not scope.include_known:
        judgments = judgments.filter(pair__gold_choice="", pair__seed_choice="")
    return judgments.exclude(pair__response_a__model_name="").exclude(
        pair__response_b__model_name=""
    )


def _chunks(rows: QuerySet[Any, tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of a values_list query, `_CHUNK` at a time, from an ordinary cursor.

    Not `.iterator()`: on PostgreSQL that declares a server-side cursor, which is planned for its
    first rows (no parallel workers) and fetched in round trips, twice the time of this on a
    million judgments (benchmarks/leaderboard.py). The client-side result holds the rows as
    libpq text, tens of bytes a row; Python objects exist for one chunk at a time.
    """
    sql, params = rows.query.sql_with_params()
    with connections[rows.db].cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(_CHUNK):
            yield chunk


def _pair_counts(judgments: QuerySet[Judgment], criterion: str | None) -> NDArray[np.int64]:
    """(pairs, 7): prompt, response a, response b, then judgments for a, b, tie, both bad."""
    # A criterion's answer lives in the judgment's JSON; KeyTextTransform takes the name as a
    # value, so any criterion name is safe here. The Cast makes the comparisons plain text ones:
    # without it SQLite compares against the JSON value 'a', which is not JSON.
    chosen = (
        Cast(KeyTextTransform(criterion, "criteria"), CharField()) if criterion else F("choice")
    )
    rows = (
        judgments.annotate(chosen=chosen)
        .values("pair_id")
        .annotate(
            a=Count("id", filter=Q(chosen="a")),
            b=Count("id", filter=Q(chosen="b")),
            tie=Count("id", filter=Q(chosen="tie")),
            bad=Count("id", filter=Q(chosen="both_bad")),
        )
        .values_list(
            "pair__prompt_id", "pair__response_a_id", "pair__response_b_id", "a", "b", "tie", "bad"
        )
        .order_by()
    )
    chunks = [np.array(chunk, dtype=np.int64) for chunk in _chunks(rows)]
    return np.vstack(chunks) if chunks else np.zeros((0, 7), dtype=np.int64)


def _responses(
    project: Project,
) -> tuple[NDArray[np.int64], list[str], NDArray[np.int64], NDArray[np.int64]]:
    """Named responses of the project: sorted ids, model names, model index and style counts."""
    rows = (
        Response.objects.filter(prompt__project=project)
        .exclude(model_name="")
        .order_by("id")
        .values_list(
            "id",
            "model_name",
            "style_length",
            "style_headers",
            "style_list_items",
            "style_bold",
        )
    )
    ids: list[int] = []
    names: list[str] = []
    counts: list[int] = []
    for chunk in _chunks(rows):
        for response_id, name, *style in chunk:
            ids.append(response_id)
            names.append(name)
            counts.extend(0 if value is None else value for value in style)
    models, model_index = np.unique(np.array(names, dtype=object), return_inverse=True)
    return (
        np.array(ids, dtype=np.int64),
        [str(m) for m in models],
        model_index.astype(np.int64),
        np.array(counts, dtype=np.int64).reshape(-1, 4),
    )


def leaderboard_battles(*, project: Project, scope: LeaderboardScope) -> Battles:
    """The battles of `project` in `scope`, one row per judged pair."""
    table = _pair_counts(leaderboard_judgments(project=project, scope=scope), scope.criterion)
    ids, names, model_index, style = _responses(project)
    n_a, n_b, ties, bad = (table[:, i].astype(np.float64) for i in range(3, 7))
    if scope.both_bad == "tie":
        ties = ties + bad
    count = n_a + n_b + ties
    keep = count > 0
    table, n_a, ties, count = table[keep], n_a[keep], ties[keep], count[keep]
    where_a = np.searchsorted(ids, table[:, 1])
    where_b = np.searchsorted(ids, table[:, 2])
    # Only the models that battled: a model whose pairs are all filtered out has no rating.
    used, dense = np.unique(
        np.concatenate([model_index[where_a], model_index[where_b]]), return_inverse=True
    )
    dense = dense.ravel()
    _, cluster = np.unique(table[:, 0], return_inverse=True)
    style_a, style_b = style[where_a].astype(np.float64), style[where_b].astype(np.float64)
    return Battles(
        models=[names[i] for i in used],
        model_a=dense[: table.shape[0]],
        model_b=dense[table.shape[0] :],
        wins_a=n_a + ties / 2,
        count=count,
        ties=ties,
        cluster=cluster.ravel().astype(np.int64),
        # LMArena's normalised difference, (a - b) / (a + b + 1), of each count.
        style=(style_a - style_b) / (style_a + style_b + 1.0),
    )


@dataclass(frozen=True, kw_only=True)
class BiasLens:
    """The agreement page's length and Markdown leans, with usernames for the raters."""

    length: Lean
    markdown: Lean
    raters: list[tuple[str, RaterLean]]  # (username, lean), most judgments first

    @property
    def flagged(self) -> list[str]:
        return [name for name, lean in self.raters if lean.flagged]


def bias_lens(*, project: Project, scope: AgreementScope) -> BiasLens:
    """Leans of the decisive judgments in `scope` (style counts must be filled already)."""
    rows = (
        scope_judgments(project=project, scope=scope)
        .filter(choice__in=["a", "b"], pair__response_a__style_length__isnull=False)
        .filter(pair__response_b__style_length__isnull=False)
        .values_list(
            "rater_id",
            "choice",
            "pair__response_a__style_length",
            "pair__response_b__style_length",
            "pair__response_a__style_headers",
            "pair__response_b__style_headers",
            "pair__response_a__style_list_items",
            "pair__response_b__style_list_items",
            "pair__response_a__style_bold",
            "pair__response_b__style_bold",
        )
    )
    table = list(rows.iterator(chunk_size=_CHUNK))
    columns = list(zip(*table, strict=True)) if table else [()] * 10
    number = [np.asarray(c, dtype=np.float64) for c in columns[2:]]
    length, markdown, leans = bias_leans(
        rater=np.asarray(columns[0], dtype=np.int64),
        chose_a=np.asarray(columns[1], dtype=object) == "a",
        length_a=number[0],
        length_b=number[1],
        markdown_a=number[2] + number[4] + number[6],
        markdown_b=number[3] + number[5] + number[7],
    )
    names = dict(
        get_user_model()
        .objects.filter(id__in=[lean.rater_id for lean in leans])
        .values_list("id", "username")
    )
    ordered = sorted(leans, key=lambda lean: -lean.length.judgments)
    return BiasLens(
        length=length,
        markdown=markdown,
        raters=[(names.get(lean.rater_id, "?"), lean) for lean in ordered],
    )


def responses_missing_style(*, project: Project) -> QuerySet[Response]:
    """Named responses of `project` whose style counts were never computed."""
    return Response.objects.filter(prompt__project=project, style_length__isnull=True).exclude(
        model_name=""
    )
