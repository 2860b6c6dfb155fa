"""Datasets out: the rows of an export, read in one consistent snapshot and streamed.

Snapshot: the export holds exactly what was committed when its first row was read. On
PostgreSQL every query of an export runs in one REPEATABLE READ, READ ONLY transaction opened by
the stream itself, so judgments recorded, undone or re-leased while it streams (from the same or
any other process) are invisible, including a transaction that took a lower id and committed
late. That is exact where an id cut-off alone is not, and it costs nothing for a read-only
export. Elsewhere (the embedded SQLite default, or an export started inside a transaction that
is already open) the stream cannot choose its isolation, so it also freezes a cut-off (the
highest judgment and pair ids at its start) and filters on it: on SQLite, whose single writer
hands out ids in commit order, that excludes everything committed later.

Memory: rows come from server-side cursors (`.iterator(chunk_size=...)`) and leave as chunks of
bytes; the `trl` stream aggregates votes per pair in SQL and fetches texts a chunk of pairs at a
time, so nothing grows with the size of the project, with one exception: a `trl` export under
the `weighted` or `dawid_skene` rule, and every `judgments` export (for each rater's estimated
accuracy), first read the snapshot's judgments as integer arrays and aggregate them
(annotation.selectors.labels: memory linear in the judgments, then freed; figures in
docs/exports.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, Literal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Max, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from annotation.exports import formats
from annotation.exports.adjudicated import (
    DECIDED_BY_ADJUDICATION,
    DECIDED_BY_AGGREGATION,
    adjudicated_decision,
    live_adjudication,
)
from annotation.exports.aggregation import (
    FULL_STRENGTH,
    Decision,
    TiePolicy,
    Votes,
    decide,
    decide_by_known_answer,
    decide_by_probability,
)
from annotation.exports.labels import Aggregation
from annotation.models import Judgment, Pair, Project
from annotation.selectors.labels import LabelEstimate, label_estimate

ExportFormat = Literal["trl", "judgments", "csv", "parquet"]
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("trl", "judgments", "csv", "parquet")
ParquetTable = Literal["trl", "judgments"]
CHUNK_ROWS = 2000  # rows per server-side cursor fetch
PREVIEW_CAP = 100_000  # preference rows the export page counts at most (each pair is decided)

_CONTENT_TYPES = {
    "trl": "application/jsonl; charset=utf-8",
    "judgments": "application/jsonl; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
    "parquet": "application/vnd.apache.parquet",
}
_EXTENSIONS = {"trl": "jsonl", "judgments": "jsonl", "csv": "csv", "parquet": "parquet"}

# The export's columns, in order, with their Parquet types: the one list that the CSV header, the
# Parquet schema and the seed lines read. "prompt" (and a TRL answer) is text or, for a chat
# project, a list of messages; "criteria" maps criterion to choice.
_JUDGMENT_TYPES = (
    ("judgment_id", "int64"),
    ("source", "string"),
    ("batch_id", "int64"),
    ("pair_id", "int64"),
    ("pair_external_id", "string"),
    ("prompt", "prompt"),
    ("response_a", "string"),
    ("response_b", "string"),
    ("model_a", "string"),
    ("model_b", "string"),
    ("rater", "string"),
    ("choice", "string"),
    ("strength", "int8"),
    ("criteria", "criteria"),
    ("rationale", "string"),
    ("swapped", "bool_"),
    ("duration_ms", "int64"),
    ("active_ms", "int64"),
    ("created_at", "string"),
    ("gold_choice", "string"),
    ("rater_accuracy", "float64"),
    ("pair_metadata", "string"),  # the JSON object as text in CSV and Parquet: its keys vary
    ("served_by", "string"),  # Assignment.served_by: which engine rule served the pair
)
_TRL_TYPES = (
    ("prompt", "prompt"),
    ("chosen", "answer"),
    ("rejected", "answer"),
    ("margin", "float64"),
    ("p_chosen", "float64"),
    ("decided_by", "string"),
)
JUDGMENT_COLUMNS = tuple(name for name, _ in _JUDGMENT_TYPES)
_NO_JUDGMENT: dict[str, Any] = dict.fromkeys(JUDGMENT_COLUMNS)


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    format: ExportFormat = "trl"
    table: ParquetTable = "trl"  # what a Parquet export holds
    batch_ids: tuple[int, ...] = ()  # empty: every batch
    since: datetime | None = None  # judgments made at or after
    until: datetime | None = None  # judgments made before
    min_agreement: float = 0.0  # the winner's share of counted votes, 0 to 1
    include_gold: bool = False  # gold pairs (with their known answer in `trl`)
    include_seed: bool = False  # seed labels from imports
    ties: TiePolicy = "exclude"
    aggregation: Aggregation = "majority"  # how votes become a label (the project's setting)
    min_posterior: float = 0.5  # pairs whose p_chosen is below this are left out

    @property
    def rows(self) -> Literal["trl", "judgments"]:
        if self.format == "trl" or (self.format == "parquet" and self.table == "trl"):
            return "trl"
        return "judgments"


@dataclass(frozen=True)
class ExportFile:
    filename: str
    content_type: str
    chunks: Iterator[bytes] = field(repr=False)


def export_stream(*, project: Project, options: ExportOptions) -> ExportFile:
    """The export of `project` as a named, typed stream of bytes.

    Nothing is read until the first chunk is asked for; the snapshot is taken then and held
    until the stream is exhausted or closed.
    """
    stamp = timezone.now().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = options.rows if options.format == "parquet" else options.format
    return ExportFile(
        filename=f"{project.slug}-{name}-{stamp}.{_EXTENSIONS[options.format]}",
        content_type=_CONTENT_TYPES[options.format],
        chunks=_chunks(project, options),
    )


def rater_pseudonym(user_id: int) -> str:
    """A stable id for a rater that does not reveal who they are: HMAC-SHA256 of the user id
    under SECRET_KEY, truncated to 64 bits. The same rater has the same id in every export."""
    key = settings.SECRET_KEY.encode()
    digest = hmac.new(key, f"pairwise-rater:{user_id}".encode(), hashlib.sha256).hexdigest()
    return "r-" + digest[:16]


def _chunks(project: Project, options: ExportOptions) -> Iterator[bytes]:
    with _snapshot() as frozen:
        cut = _Cutoff.take(project) if frozen else _Cutoff(None, None)
        conversational = _has_chat_prompts(project, options, cut)
        if options.rows == "trl":
            estimate = _trl_estimate(project, options, cut)
            rows = _trl_rows(project, options, cut, estimate, conversational=conversational)
        else:
            # CSV cells hold text, so there the prompts keep their own form (chats as JSON).
            uniform = conversational and options.format != "csv"
            accuracy = _rater_accuracy(project, options, cut)
            rows = _judgment_rows(project, options, cut, accuracy, conversational=uniform)
        if options.format == "csv":
            yield from formats.csv_rows(JUDGMENT_COLUMNS, rows)
        elif options.format == "parquet":
            if options.rows == "judgments":
                rows = _metadata_as_json(rows)
            yield from formats.parquet(_schema(options.rows, conversational=conversational), rows)
        else:
            yield from formats.jsonl(rows)


@contextmanager
def _snapshot() -> Iterator[bool]:
    """Yields True when the caller must add an id cut-off because isolation was not available."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield True
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield False


@dataclass(frozen=True)
class _Cutoff:
    judgment_id: int | None
    pair_id: int | None

    @classmethod
    def take(cls, project: Project) -> _Cutoff:
        return cls(
            Judgment.objects.filter(pair__project=project).aggregate(m=Max("id"))["m"] or 0,
            Pair.objects.filter(project=project).aggregate(m=Max("id"))["m"] or 0,
        )


def _has_chat_prompts(project: Project, options: ExportOptions, cut: _Cutoff) -> bool:
    """One file uses one prompt form: conversational as soon as any prompt in it is a chat, so
    that every line has the same column types (datasets and Parquet need that)."""
    return _pairs_in_scope(project, options, cut).filter(prompt__messages__isnull=False).exists()


def _pairs_in_scope(project: Project, options: ExportOptions, cut: _Cutoff) -> QuerySet[Pair]:
    pairs = Pair.objects.filter(project=project)
    if cut.pair_id is not None:
        pairs = pairs.filter(id__lte=cut.pair_id)
    if options.batch_ids:
        pairs = pairs.filter(batch_id__in=options.batch_ids)
    if not options.include_gold:
        pairs = pairs.filter(gold_choice="")
    if not options.include_seed:
        pairs = pairs.filter(seed_choice="")
    return pairs


def _judgment_filter(options: ExportOptions, cut: _Cutoff, prefix: str = "") -> Q:
    q = Q()
    if cut.judgment_id is not None:
        q &= Q(**{f"{prefix}id__lte": cut.judgment_id})
    if options.since is not None:
        q &= Q(**{f"{prefix}created_at__gte": options.since})
    if options.until is not None:
        q &= Q(**{f"{prefix}created_at__lt": options.until})
    return q


def _voted_pairs(
    project: Project, options: ExportOptions, cut: _Cutoff
) -> QuerySet[Any, Any]:  # annotated values() rows
    """Pairs in scope with their votes counted (one row per pair, grouped in SQL)."""
    counted = _judgment_filter(options, cut, "judgments__")
    strength = Coalesce("judgments__strength", Value(FULL_STRENGTH))
    return (
        _pairs_in_scope(project, options, cut)
        .values("id", "gold_choice", "seed_choice")
        .annotate(
            adjudicated=live_adjudication("id"),
            n_a=Count("judgments", filter=counted & Q(judgments__choice="a")),
            n_b=Count("judgments", filter=counted & Q(judgments__choice="b")),
            n_tie=Count("judgments", filter=counted & Q(judgments__choice="tie")),
            n_bad=Count("judgments", filter=counted & Q(judgments__choice="both_bad")),
            s_a=Coalesce(Sum(strength, filter=counted & Q(judgments__choice="a")), 0),
            s_b=Coalesce(Sum(strength, filter=counted & Q(judgments__choice="b")), 0),
        )
        .order_by("id")
    )


def _estimate(
    project: Project, options: ExportOptions, cut: _Cutoff, aggregation: Aggregation
) -> LabelEstimate:
    """The label estimate over every judgment of the export's snapshot and dates (all batches:
    the other batches' judgments still tell how reliable each rater is)."""
    judgments = Judgment.objects.filter(_judgment_filter(options, cut), pair__project=project)
    return label_estimate(judgments=judgments, aggregation=aggregation)


def _trl_estimate(project: Project, options: ExportOptions, cut: _Cutoff) -> LabelEstimate | None:
    """The label estimate a `trl` export decides by; majority needs none."""
    if options.aggregation == "majority":
        return None
    return _estimate(project, options, cut, options.aggregation)


def _decision(
    row: dict[str, Any], options: ExportOptions, estimate: LabelEstimate | None
) -> Decision | None:
    if row["seed_choice"]:
        return decide_by_known_answer(row["seed_choice"])
    if row["gold_choice"]:
        return decide_by_known_answer(row["gold_choice"])
    votes = Votes(
        a=row["n_a"],
        b=row["n_b"],
        tie=row["n_tie"],
        both_bad=row["n_bad"],
        strength_a=row["s_a"],
        strength_b=row["s_b"],
    )
    if estimate is None:
        return decide(votes, ties=options.ties)
    p_a = estimate.p_a_for(row["id"])
    return None if p_a is None else decide_by_probability(votes, p_a, ties=options.ties)


def _decided(
    project: Project, options: ExportOptions, cut: _Cutoff, estimate: LabelEstimate | None
) -> Iterator[tuple[int, Decision, str]]:
    """Pairs with a winner that clear both the agreement and the p_chosen thresholds, with who
    decided: a lead's live adjudication overrides the votes (annotation.exports.adjudicated)."""
    for row in _voted_pairs(project, options, cut).iterator(chunk_size=CHUNK_ROWS):
        if row["adjudicated"] is not None:
            decision = adjudicated_decision(row["adjudicated"])
            decided_by = DECIDED_BY_ADJUDICATION
        else:
            decision = _decision(row, options, estimate)
            decided_by = DECIDED_BY_AGGREGATION
        if (
            decision is not None
            and decision.agreement >= options.min_agreement
            and decision.p_chosen >= options.min_posterior
        ):
            yield row["id"], decision, decided_by


def _trl_rows(
    project: Project,
    options: ExportOptions,
    cut: _Cutoff,
    estimate: LabelEstimate | None,
    *,
    conversational: bool,
) -> Iterator[dict[str, Any]]:
    decided = _decided(project, options, cut, estimate)
    while chunk := list(islice(decided, CHUNK_ROWS)):
        texts: dict[int, list[Any]] = {
            pair_id: rest
            for pair_id, *rest in Pair.objects.filter(id__in=[p for p, _, _ in chunk]).values_list(
                "id", "prompt__text", "prompt__messages", "response_a__text", "response_b__text"
            )
        }
        for pair_id, decision, decided_by in chunk:
            text, messages, text_a, text_b = texts[pair_id]
            chosen, rejected = (text_a, text_b) if decision.winner == "a" else (text_b, text_a)
            yield {
                "prompt": _prompt(text, messages, conversational=conversational),
                "chosen": _answer(chosen, conversational=conversational),
                "rejected": _answer(rejected, conversational=conversational),
                "margin": decision.margin,
                "p_chosen": decision.p_chosen,
                "decided_by": decided_by,
            }


def _prompt(text: str, messages: list[dict[str, str]] | None, *, conversational: bool) -> Any:
    if not conversational:
        return text
    if messages is None:
        return [{"role": "user", "content": text}]
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _answer(text: str, *, conversational: bool) -> Any:
    return [{"role": "assistant", "content": text}] if conversational else text


def _agreeing_pairs(
    project: Project, options: ExportOptions, cut: _Cutoff
) -> QuerySet[Any, Any]:  # annotated values() rows
    """Ids of pairs whose winner holds at least `min_agreement` of the counted votes."""
    counted = F("n_a") + F("n_b")
    if options.ties == "exclude":
        counted = counted + F("n_tie") + F("n_bad")
    return (
        _voted_pairs(project, options, cut)
        .alias(top=Greatest("n_a", "n_b"))
        .filter(top__gte=counted * Value(options.min_agreement))
        .values("id")
    )


def _judgment_prompt(text: str, messages: Any, *, conversational: bool) -> Any:
    if messages is not None:
        return messages
    return [{"role": "user", "content": text}] if conversational else text


def _judgments_in_scope(
    project: Project, options: ExportOptions, cut: _Cutoff
) -> QuerySet[Judgment]:
    judgments = Judgment.objects.filter(
        _judgment_filter(options, cut),
        pair__in=_pairs_in_scope(project, options, cut).filter(seed_choice=""),
    )
    if options.min_agreement > 0:
        judgments = judgments.filter(pair__in=_agreeing_pairs(project, options, cut))
    return judgments


def _seeds_in_scope(project: Project, options: ExportOptions, cut: _Cutoff) -> QuerySet[Pair]:
    """Pairs whose seed label is exported as a line of its own, dated by their upload."""
    seeds = _pairs_in_scope(project, options, cut).exclude(seed_choice="")
    if options.since is not None:
        seeds = seeds.filter(batch__created_at__gte=options.since)
    if options.until is not None:
        seeds = seeds.filter(batch__created_at__lt=options.until)
    return seeds


def export_row_count(
    *, project: Project, options: ExportOptions, cap: int = PREVIEW_CAP
) -> tuple[int, bool]:
    """How many rows an export with `options` would hold now (lines of JSONL or CSV, rows of
    Parquet), for the export page's preview: (count, whether it stopped at `cap`). Judgment
    rows are counted in SQL; preference rows need each pair's votes decided, so at most `cap`
    of them are counted."""
    cut = _Cutoff(None, None)
    if options.rows == "trl":
        decided = _decided(project, options, cut, _trl_estimate(project, options, cut))
        counted = sum(1 for _ in islice(decided, cap + 1))
    else:
        counted = _judgments_in_scope(project, options, cut).count()
        if options.include_seed:
            counted += _seeds_in_scope(project, options, cut).count()
    return min(counted, cap), counted > cap


# What a rater line reads from the database: its name there (an export column, or the three
# that become one: prompt_text and prompt_messages the prompt, rater_id the pseudonym and the
# accuracy) and the ORM path it is read from.
_RATER_READS = (
    ("judgment_id", "id"),
    ("batch_id", "pair__batch_id"),
    ("pair_id", "pair_id"),
    ("pair_external_id", "pair__external_id"),
    ("pair_metadata", "pair__metadata"),
    ("prompt_text", "pair__prompt__text"),
    ("prompt_messages", "pair__prompt__messages"),
    ("response_a", "pair__response_a__text"),
    ("response_b", "pair__response_b__text"),
    ("model_a", "pair__response_a__model_name"),
    ("model_b", "pair__response_b__model_name"),
    ("rater_id", "rater_id"),
    ("choice", "choice"),
    ("strength", "strength"),
    ("criteria", "criteria"),
    ("rationale", "rationale"),
    ("swapped", "swapped"),
    ("duration_ms", "duration_ms"),
    ("active_ms", "active_ms"),
    ("created_at", "created_at"),
    ("gold_choice", "pair__gold_choice"),
    ("served_by", "assignment__served_by"),
)


def _judgment_rows(
    project: Project,
    options: ExportOptions,
    cut: _Cutoff,
    accuracy: dict[int, float | None],
    *,
    conversational: bool,
) -> Iterator[dict[str, Any]]:
    """A line per judgment in scope (then per seed label, if asked), in id order.
    `accuracy` is each rater's estimated accuracy by user id (_rater_accuracy)."""
    names = [name for name, _ in _RATER_READS]
    rows = (
        _judgments_in_scope(project, options, cut)
        .order_by("id")
        .values_list(*(path for _, path in _RATER_READS))
    )
    pseudonyms: dict[int, str] = {}  # one per rater of the project: bounded by its members
    for values in rows.iterator(chunk_size=CHUNK_ROWS):
        read = dict(zip(names, values, strict=True))
        rater_id = read["rater_id"]
        if rater_id not in pseudonyms:
            pseudonyms[rater_id] = rater_pseudonym(rater_id)
        line = {
            **read,
            "source": "rater",
            "prompt": _judgment_prompt(
                read["prompt_text"], read["prompt_messages"], conversational=conversational
            ),
            "rater": pseudonyms[rater_id],
            "created_at": _iso(read["created_at"]),
            "gold_choice": read["gold_choice"] or None,
            "served_by": read["served_by"] or None,  # blank: leased before it was recorded
            "rater_accuracy": accuracy.get(rater_id),
        }
        yield {name: line[name] for name in JUDGMENT_COLUMNS}
    if options.include_seed:
        yield from _seed_rows(project, options, cut, conversational=conversational)


def _rater_accuracy(
    project: Project, options: ExportOptions, cut: _Cutoff
) -> dict[int, float | None]:
    """Each rater's estimated accuracy by Dawid-Skene, whatever the export's aggregation rule:
    one fit over the snapshot's judgments, whose posteriors are the estimate's p_a."""
    return _estimate(project, options, cut, "dawid_skene").accuracy_of()


def _seed_rows(
    project: Project, options: ExportOptions, cut: _Cutoff, *, conversational: bool
) -> Iterator[dict[str, Any]]:
    """Seed labels as judgment lines of their own (`source` "seed", no rater), dated by upload."""
    rows = (
        _seeds_in_scope(project, options, cut)
        .order_by("id")
        .values_list(
            "id",
            "batch_id",
            "external_id",
            "metadata",
            "prompt__text",
            "prompt__messages",
            "response_a__text",
            "response_b__text",
            "response_a__model_name",
            "response_b__model_name",
            "seed_choice",
            "batch__created_at",
        )
    )
    for (
        pair_id,
        batch_id,
        external_id,
        pair_metadata,
        text,
        messages,
        a,
        b,
        model_a,
        model_b,
        choice,
        at,
    ) in rows.iterator(chunk_size=CHUNK_ROWS):
        yield {
            **_NO_JUDGMENT,  # every column a seed label has no value for
            "source": "seed",
            "batch_id": batch_id,
            "pair_id": pair_id,
            "pair_external_id": external_id,
            "prompt": _judgment_prompt(text, messages, conversational=conversational),
            "response_a": a,
            "response_b": b,
            "model_a": model_a,
            "model_b": model_b,
            "choice": choice,
            "criteria": {},
            "rationale": "",
            "created_at": _iso(at),
            "pair_metadata": pair_metadata,
        }


def _metadata_as_json(rows: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Parquet columns have one type: a pair's metadata goes there as JSON text."""
    for row in rows:
        row["pair_metadata"] = json.dumps(row["pair_metadata"], ensure_ascii=False)
        yield row


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _schema(rows: Literal["trl", "judgments"], *, conversational: bool) -> Any:
    import pyarrow as pa  # only Parquet exports load pyarrow

    message_list = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    text_or_messages = message_list if conversational else pa.string()
    special = {
        "prompt": text_or_messages,
        "answer": text_or_messages,
        "criteria": pa.map_(pa.string(), pa.string()),
    }
    columns = _TRL_TYPES if rows == "trl" else _JUDGMENT_TYPES
    return pa.schema(
        [
            (name, special[kind] if kind in special else getattr(pa, kind)())
            for name, kind in columns
        ]
    )
