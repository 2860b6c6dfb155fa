"""Reads for agreement: a project's judgments as numpy arrays, and its stored reports.

The metrics (annotation.agreement.metrics) need one flat array per column. On PostgreSQL the
judgments stream out with a binary ``COPY ... TO STDOUT``: every column is cast to a fixed-width
integer, so each row has the same length and the whole buffer becomes a numpy record array in one
``np.frombuffer``, with no Python object per row. A million judgments read in well under a
second (docs/benchmarks_agreement.md). Other databases (the embedded SQLite default) take the
portable path: ``values_list`` rows in chunks, gathered with ``np.fromiter``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import numpy as np
from django.db import connection
from django.db.models import (
    BigIntegerField,
    Case,
    IntegerField,
    Q,
    QuerySet,
    Value,
    When,
)
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce, Least
from django.utils import timezone
from numpy.typing import NDArray

from annotation.agreement.charts import (
    Heatmap,
    Histogram,
    LineChart,
    heatmap,
    histogram,
    line_chart,
)
from annotation.agreement.metrics import NO_GOLD, A, B, JudgmentArrays, left_chosen
from annotation.agreement.reading import Reading, headline_reading, kappa_band
from annotation.models import AgreementReport, Judgment, Membership, Project

TREND_POINTS = 200  # reports drawn on the trend chart, newest first

# The columns read, in order, with the integer width each is cast to. Fixed widths are what make
# the binary COPY a fixed-size record that numpy can view without parsing.
_COLUMNS = (
    ("id", 8),
    ("pair", 8),
    ("rater", 8),
    ("choice", 4),
    ("strength", 4),
    ("swapped", 4),
    ("duration_ms", 4),
    ("gold", 4),
)
_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"


@dataclass(frozen=True, kw_only=True)
class AgreementScope:
    """Which judgments a report covers: all of a project's, or one batch's, or a date range.

    Dates are whole days in UTC, both ends included.
    """

    batch_id: int | None = None
    since: date | None = None
    until: date | None = None

    @property
    def is_whole_project(self) -> bool:
        return self.batch_id is None and self.since is None and self.until is None

    def as_json(self) -> dict[str, Any]:
        """The scope as stored on AgreementReport.scope: only the filters that are set."""
        stored: dict[str, Any] = {}
        if self.batch_id is not None:
            stored["batch"] = self.batch_id
        if self.since is not None:
            stored["since"] = self.since.isoformat()
        if self.until is not None:
            stored["until"] = self.until.isoformat()
        return stored

    @classmethod
    def from_json(cls, stored: dict[str, Any]) -> AgreementScope:
        since, until = stored.get("since"), stored.get("until")
        return cls(
            batch_id=stored.get("batch"),
            since=date.fromisoformat(since) if since else None,
            until=date.fromisoformat(until) if until else None,
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class LoadedJudgments:
    """A scope's judgments as arrays, and the ids their dense indices stand for."""

    arrays: JudgmentArrays
    pair_ids: NDArray[np.int64]  # pair_ids[i] is the Pair.id of dense pair index i
    rater_ids: NDArray[np.int64]  # rater_ids[i] is the User.id of dense rater index i
    last_judgment_id: int | None  # the newest judgment read: a report is current up to it


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def scope_judgments(*, project: Project, scope: AgreementScope) -> QuerySet[Judgment]:
    """The judgments of `project` inside `scope` (no ordering)."""
    judgments = Judgment.objects.filter(pair__project=project).order_by()
    if scope.batch_id is not None:
        judgments = judgments.filter(pair__batch_id=scope.batch_id)
    if scope.since is not None:
        judgments = judgments.filter(created_at__gte=_day_start(scope.since))
    if scope.until is not None:
        judgments = judgments.filter(created_at__lt=_day_start(scope.until + timedelta(days=1)))
    return judgments


def _code(field: str, codes: dict[str, int], default: int) -> Case:
    return Case(
        *(When(Q(**{field: name}), then=Value(code)) for name, code in codes.items()),
        default=Value(default),
        output_field=IntegerField(),
    )


def _columns(judgments: QuerySet[Judgment]) -> QuerySet[Judgment, tuple[int, ...]]:
    """Every column as a plain integer of the width in _COLUMNS."""
    wide, narrow = BigIntegerField(), IntegerField()
    # Time on task is the smaller of the server's lease-to-submit time and the browser's
    # in-focus time: idle time in a hidden tab does not count, and a client can only shorten it,
    # so the "too fast" flag cannot be dodged by reporting a large active_ms.
    duration = Coalesce(Least("duration_ms", "active_ms"), "duration_ms")
    return judgments.values_list(
        Cast("id", wide),
        Cast("pair_id", wide),
        Cast("rater_id", wide),
        Cast(_code("choice", {"a": 0, "b": 1, "tie": 2}, 3), narrow),
        Cast(Coalesce("strength", 0), narrow),
        Cast("swapped", narrow),
        Cast(duration, narrow),
        Cast(_code("pair__gold_choice", {"a": 0, "b": 1, "tie": 2}, NO_GOLD), narrow),
    )


def _read_copy(rows: QuerySet[Judgment, tuple[int, ...]]) -> dict[str, NDArray[Any]]:
    """PostgreSQL: one binary COPY of the query, viewed as a numpy record array."""
    sql, params = rows.query.sql_with_params()
    buffer = bytearray()
    statement = f"COPY ({sql}) TO STDOUT (FORMAT BINARY)"
    # The psycopg cursor itself: Django's DEBUG wrapper around copy() drops the parameters.
    with connection.cursor() as cursor, cursor.cursor.copy(statement, params) as copy:
        for block in copy:
            buffer += block
    # Binary COPY: signature, flags (4 bytes), header extension (length + bytes), rows, trailer
    # (int16 -1). A row is int16 field count, then per field int32 length and big-endian value.
    if not buffer.startswith(_COPY_SIGNATURE):
        raise RuntimeError("PostgreSQL sent an unexpected COPY header")
    start = 19 + int.from_bytes(buffer[15:19], "big")
    fields: list[tuple[str, str]] = [("fields", ">i2")]
    for name, width in _COLUMNS:
        fields += [(f"{name}_length", ">i4"), (name, f">i{width}")]
    record = np.dtype(fields)
    count = (len(buffer) - start - 2) // record.itemsize
    table = np.frombuffer(buffer, dtype=record, count=count, offset=start)
    lengths_ok = all((table[f"{name}_length"] == width).all() for name, width in _COLUMNS)
    if not ((table["fields"] == len(_COLUMNS)).all() and lengths_ok):
        raise RuntimeError("COPY rows are not the fixed-width integers that were asked for")
    return {name: table[name].astype(np.int64) for name, _ in _COLUMNS}


def _read_rows(rows: QuerySet[Judgment, tuple[int, ...]]) -> dict[str, NDArray[Any]]:
    """Any database: rows in chunks into one (n, columns) integer array."""
    flat = np.fromiter(
        (value for row in rows.iterator(chunk_size=20_000) for value in row), dtype=np.int64
    )
    table = flat.reshape(-1, len(_COLUMNS))
    return {name: table[:, i] for i, (name, _) in enumerate(_COLUMNS)}


def judgment_arrays_load(
    *, project: Project, scope: AgreementScope, use_copy: bool | None = None
) -> LoadedJudgments:
    """Read the judgments of `project` in `scope` into JudgmentArrays.

    `use_copy` picks the reader: binary COPY (PostgreSQL only) or plain rows; None chooses COPY
    wherever it is available.
    """
    rows = _columns(scope_judgments(project=project, scope=scope))
    if use_copy is None:
        use_copy = connection.vendor == "postgresql"
    columns = _read_copy(rows) if use_copy else _read_rows(rows)

    pair_ids, pair = np.unique(columns["pair"], return_inverse=True)
    rater_ids, rater = np.unique(columns["rater"], return_inverse=True)
    choice = columns["choice"]
    # A decisive choice without a strength counts as strength 1 on the interval scale.
    magnitude = np.maximum(columns["strength"], 1).astype(np.float64)
    signed = np.select(
        [choice == A, choice == B, choice == 2], [magnitude, -magnitude, 0.0], np.nan
    )
    arrays = JudgmentArrays(
        pair=pair.ravel(),
        rater=rater.ravel(),
        choice=choice,
        signed_strength=signed,
        left_chosen=left_chosen(choice, columns["swapped"]),
        duration_ms=columns["duration_ms"].astype(np.float64),
        gold=columns["gold"],
    )
    ids = columns["id"]
    return LoadedJudgments(
        arrays=arrays,
        pair_ids=pair_ids,
        rater_ids=rater_ids,
        last_judgment_id=int(ids.max()) if ids.size else None,
    )


# --- stored reports -----------------------------------------------------------------------------


def agreement_report_latest(*, project: Project, scope: AgreementScope) -> AgreementReport | None:
    """The newest stored report of exactly this scope."""
    return (
        AgreementReport.objects.filter(project=project, scope=scope.as_json())
        .order_by("-created_at", "-id")
        .first()
    )


@dataclass(frozen=True)
class TrendPoint:
    created_at: datetime
    judgments: int
    values: dict[str, float | None]  # headline coefficient name -> value


TREND_KEYS = ("percent_agreement", "fleiss_kappa", "krippendorff_alpha_nominal")


def _coefficient(text: str | None) -> float | None:
    """A coefficient as KT() reads it: a JSON null is NULL on PostgreSQL but the text 'null' on
    SQLite (Django reads JSON null, true and false there through JSON_TYPE)."""
    return None if text is None or text == "null" else float(text)


def agreement_trend(*, project: Project, scope: AgreementScope) -> list[TrendPoint]:
    """Headline coefficients of the scope's stored reports, oldest first.

    The database extracts the few numbers from each report's JSON, so the (large) per-rater
    sections never leave PostgreSQL.
    """
    paths = {key: KT(f"metrics__coefficients__{key}__value") for key in TREND_KEYS}
    reports = AgreementReport.objects.filter(project=project, scope=scope.as_json())
    newest = reports.order_by("-created_at", "-id").values("created_at", "judgments", **paths)
    page = newest[:TREND_POINTS]
    rows: list[dict[str, Any]] = list(page)  # type: ignore[arg-type]  # stubs miss the KT() keys
    return [
        TrendPoint(
            created_at=row["created_at"],
            judgments=row["judgments"],
            values={key: _coefficient(row[key]) for key in TREND_KEYS},
        )
        for row in rows[::-1]
    ]


def agreement_report_is_current(*, report: AgreementReport, project: Project) -> bool:
    """Whether no judgment in the report's scope was added or taken back since it was made."""
    scope = AgreementScope.from_json(report.scope)
    judgments = scope_judgments(project=project, scope=scope)
    if report.last_judgment_id is not None:
        if judgments.filter(id__gt=report.last_judgment_id).exists():
            return False
    elif judgments.exists():
        return False
    return judgments.count() == report.judgments


def agreement_report_ready(*, project: Project, scope: AgreementScope, since: datetime) -> bool:
    """Whether a "refresh now" asked at `since` is answered: the scope's newest report was made
    since then, or it is still current (the refresh found nothing new and stored nothing)."""
    latest = agreement_report_latest(project=project, scope=scope)
    if latest is None:
        return False
    return latest.created_at >= since or agreement_report_is_current(report=latest, project=project)


def projects_due_for_report() -> list[int]:
    """Ids of live projects with a judgment newer than their latest whole-project report.

    Two indexed queries per project (a handful of projects per install), never a scan of the
    judgments table.
    """
    due = []
    for project in Project.objects.filter(archived_at__isnull=True).only("id"):
        latest = agreement_report_latest(project=project, scope=AgreementScope())
        judgments = Judgment.objects.filter(pair__project=project)
        if latest is not None and latest.last_judgment_id is not None:
            judgments = judgments.filter(id__gt=latest.last_judgment_id)
        if judgments.exists():
            due.append(project.id)
    return due


# --- the dashboard ------------------------------------------------------------------------------

# ?sort= keys the rater table accepts, and the report field each sorts on. Anything else falls
# back to the default; the value is only ever a key of this dict, never passed to the ORM.
SORT_KEYS = {
    "rater": "username",
    "judgments": "judgments",
    "agreement": "agreement_with_others",
    "kappa": "kappa_with_others",
    "gold": "gold_accuracy",
    "left": "left_rate",
    "tie": "tie_rate",
    "both_bad": "both_bad_rate",
    "time": "median_duration_ms",
    "flags": "flag_count",
}
DEFAULT_SORT = "agreement"  # least agreeing raters first: the ones to look at
HEATMAP_RATERS = 50  # the raters with most judgments; beyond that a grid stops being readable
COUPLES_SHOWN = 500  # rows of the rater-couple table (most shared pairs first), for any number
HISTOGRAM_LEVELS = 12  # distinct per-pair agreement levels shown as they are; more are binned

COEFFICIENT_LABELS = {
    "percent_agreement": "Percent agreement",
    "fleiss_kappa": "Fleiss' kappa",
    "krippendorff_alpha_nominal": "Krippendorff's alpha (choice)",
    "krippendorff_alpha_interval": "Krippendorff's alpha (strength scale)",
    "left_rate": "Left picked (position bias)",
}
TREND_SERIES = (
    ("percent_agreement", "Percent agreement", "line-percent"),
    ("fleiss_kappa", "Fleiss' kappa", "line-kappa"),
    ("krippendorff_alpha_nominal", "Krippendorff's alpha", "line-alpha"),
)


@dataclass(frozen=True)
class Coefficient:
    key: str
    label: str
    value: float | None
    low: float | None
    high: float | None
    band: str  # Landis & Koch's name where it applies, else ""


@dataclass(frozen=True)
class RaterCouple:
    first: str
    second: str
    overlap: int
    agreement: float | None
    kappa: float | None


@dataclass(frozen=True)
class SortColumn:
    key: str
    label: str
    numeric: bool
    link: str  # the ?sort= value its header links to: flips the direction when already sorted
    aria_sort: str  # "ascending", "descending" or "" for a column the table is not sorted on


RATER_COLUMNS = (
    ("rater", "Rater", False),
    ("judgments", "Judgments", True),
    ("agreement", "Agreement with others", True),
    ("kappa", "Kappa with others", True),
    ("gold", "Gold accuracy", True),
    ("left", "Left rate (95%)", True),
    ("tie", "Tie rate", True),
    ("both_bad", "Both bad", True),
    ("time", "Median time", True),
    ("flags", "Flags", False),
)


def sort_columns(applied: str) -> list[SortColumn]:
    """The rater table's headers, given the sort in force (as returned by rater_rows)."""
    key, descending = rater_sort_parse(applied)
    columns = []
    for name, label, numeric in RATER_COLUMNS:
        if name == key:
            link, aria = (name, "descending") if descending else (f"-{name}", "ascending")
        else:
            link, aria = name, ""
        columns.append(SortColumn(name, label, numeric, link, aria))
    return columns


@dataclass(frozen=True, kw_only=True)
class AgreementDashboard:
    report: AgreementReport | None
    coefficients: list[Coefficient]
    readings: list[Reading]
    trend: list[TrendPoint]
    trend_chart: LineChart | None
    heatmap: Heatmap | None
    heatmap_table: list[RaterCouple]  # every couple with shared pairs, up to COUPLES_SHOWN
    heatmap_couples: int  # how many couples share pairs (the table may show fewer)
    heatmap_raters: int  # how many raters the heatmap shows
    histogram: Histogram | None
    raters: list[dict[str, Any]]
    sort: str
    sort_columns: list[SortColumn]


def rater_sort_parse(value: str | None) -> tuple[str, bool]:
    """`?sort=` as (allow-listed key, descending); unknown keys give the default."""
    value = value or ""
    descending = value.startswith("-")
    key = value.removeprefix("-")
    if key not in SORT_KEYS:
        return DEFAULT_SORT, False
    return key, descending


def rater_rows(*, report: AgreementReport, sort: str | None) -> tuple[list[dict[str, Any]], str]:
    """The report's rater rows with each member's current pause, sorted; and the sort applied.

    Rows without a value for the sort key go last whichever the direction.
    """
    key, descending = rater_sort_parse(sort)
    rows = [dict(row) for row in report.metrics.get("raters", [])]
    paused = dict(
        Membership.objects.filter(
            project_id=report.project_id, user_id__in=[row["user_id"] for row in rows]
        ).values_list("user_id", "paused_at")
    )
    for row in rows:
        row["paused_at"] = paused.get(row["user_id"])
        row["flag_count"] = len(row["flags"])
        ms = row["median_duration_ms"]
        row["median_seconds"] = None if ms is None else ms / 1000
    field = SORT_KEYS[key]
    known = [row for row in rows if row[field] is not None]
    unknown = [row for row in rows if row[field] is None]
    known.sort(key=lambda row: (row[field], row["username"]), reverse=descending)
    return known + unknown, f"-{key}" if descending else key


def _coefficients(metrics: dict[str, Any]) -> list[Coefficient]:
    return [
        Coefficient(
            key=key,
            label=label,
            value=metrics["coefficients"][key]["value"],
            low=metrics["coefficients"][key]["low"],
            high=metrics["coefficients"][key]["high"],
            band=kappa_band(metrics["coefficients"][key]["value"]) if key == "fleiss_kappa" else "",
        )
        for key, label in COEFFICIENT_LABELS.items()
    ]


def _short(name: str) -> str:
    return name if len(name) <= 14 else name[:13] + "…"


def _rater_grid(metrics: dict[str, Any]) -> tuple[Heatmap | None, list[RaterCouple], int, int]:
    """The heatmap of the HEATMAP_RATERS raters with most judgments, and the table of couples
    of all raters (the fallback beyond the grid): (chart, table, couples sharing pairs, shown)."""
    raters = sorted(metrics["raters"], key=lambda row: (-row["judgments"], row["username"]))
    everyone = [row["rater"] for row in raters]
    shown = everyone[:HEATMAP_RATERS]
    if len(shown) < 2:
        return None, [], 0, len(shown)
    names = {row["rater"]: row["username"] for row in raters}
    grid = metrics["rater_pairs"]
    agreement = [[grid["agreement"][i][j] for j in shown] for i in shown]
    overlap = [[grid["overlap"][i][j] for j in shown] for i in shown]
    chart = heatmap(labels=[_short(names[i]) for i in shown], agreement=agreement, overlap=overlap)
    couples = [
        (i, j) for a, i in enumerate(everyone) for j in everyone[a + 1 :] if grid["overlap"][i][j]
    ]
    couples.sort(key=lambda ij: -grid["overlap"][ij[0]][ij[1]])  # stable: rank order on ties
    table = [
        RaterCouple(
            first=names[i],
            second=names[j],
            overlap=grid["overlap"][i][j],
            agreement=grid["agreement"][i][j],
            kappa=grid["kappa"][i][j],
        )
        for i, j in couples[:COUPLES_SHOWN]
    ]
    return chart, table, len(couples), len(shown)


def _pair_agreement_buckets(levels: list[dict[str, Any]]) -> list[tuple[str, int]]:
    if len(levels) <= HISTOGRAM_LEVELS:
        return [(f"{level['agreement']:.2f}", level["pairs"]) for level in levels]
    counts = [0] * 10
    for level in levels:
        counts[min(int(level["agreement"] * 10), 9)] += level["pairs"]
    return [(f"{i / 10:.1f}\u2013{(i + 1) / 10:.1f}", count) for i, count in enumerate(counts)]


def agreement_dashboard(
    *, project: Project, scope: AgreementScope, sort: str | None
) -> AgreementDashboard:
    """Everything the dashboard shows, from stored reports only (no judgment is read)."""
    report = agreement_report_latest(project=project, scope=scope)
    trend = agreement_trend(project=project, scope=scope)
    trend_chart = None
    if trend:
        trend_chart = line_chart(
            times=[point.created_at for point in trend],
            series=[
                (label, css, [point.values[key] for point in trend])
                for key, label, css in TREND_SERIES
            ],
        )
    if report is None:
        return AgreementDashboard(
            report=None,
            coefficients=[],
            readings=[],
            trend=trend,
            trend_chart=trend_chart,
            heatmap=None,
            heatmap_table=[],
            heatmap_couples=0,
            heatmap_raters=0,
            histogram=None,
            raters=[],
            sort=DEFAULT_SORT,
            sort_columns=sort_columns(DEFAULT_SORT),
        )
    metrics = report.metrics
    grid, couples, couple_count, shown = _rater_grid(metrics)
    buckets = _pair_agreement_buckets(metrics["pair_agreement"])
    raters, applied = rater_rows(report=report, sort=sort)
    return AgreementDashboard(
        report=report,
        coefficients=_coefficients(metrics),
        readings=headline_reading(metrics["coefficients"]),
        trend=trend,
        trend_chart=trend_chart,
        heatmap=grid,
        heatmap_table=couples,
        heatmap_couples=couple_count,
        heatmap_raters=shown,
        histogram=histogram(buckets=buckets) if buckets else None,
        raters=raters,
        sort=applied,
        sort_columns=sort_columns(applied),
    )


CSV_COLUMNS = (
    "username",
    "judgments",
    "agreement_with_others",
    "kappa_with_others",
    "gold_judgments",
    "gold_accuracy",
    "decisive_judgments",
    "left_rate",
    "left_rate_low",
    "left_rate_high",
    "tie_rate",
    "both_bad_rate",
    "median_duration_ms",
    "flags",
    "paused",
)
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _csv_text(text: str) -> str:
    """Text a spreadsheet will not run: a leading formula character gets a quote in front."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def agreement_csv_rows(*, report: AgreementReport, sort: str | None) -> list[list[Any]]:
    """The rater table as CSV rows, header first.

    Text cells (usernames, flags) are neutralised against formula injection; numbers are written
    as numbers, since a negative kappa must stay a number in the spreadsheet.
    """
    rows, _ = rater_rows(report=report, sort=sort)
    table: list[list[Any]] = [list(CSV_COLUMNS)]
    for row in rows:
        cells: list[Any] = []
        for column in CSV_COLUMNS:
            if column == "username":
                cells.append(_csv_text(row["username"]))
            elif column == "flags":
                cells.append(_csv_text(" ".join(row["flags"])))
            elif column == "paused":
                cells.append("yes" if row["paused_at"] else "no")
            else:
                value = row[column]
                cells.append("" if value is None else value)
        table.append(cells)
    return table
