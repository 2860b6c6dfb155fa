"""Reads for training: the preference pairs a run trains on, and what the training page shows.

Nothing here imports torch: the web process uses these selectors.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import tarfile
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Sum

from annotation.exports.adjudicated import adjudicated_decision, live_adjudication
from annotation.exports.aggregation import (
    FULL_STRENGTH,
    Votes,
    decide,
    decide_by_known_answer,
    decide_by_probability,
)
from annotation.exports.labels import Aggregation
from annotation.models import AgreementReport, Judgment, Pair, Project
from annotation.selectors.labels import label_estimate
from rewardtrain.data import PreferencePair
from rewardtrain.models import ModelVersion, TrainingRun


@dataclass(frozen=True, kw_only=True)
class TrainingData:
    pairs: list[PreferencePair]  # in pair id order: the order is part of the data digest
    from_judgments: int  # pairs labelled by their raters' judgments (ties included) or a lead
    from_seed: int  # pairs labelled by an imported seed label only


@dataclass(frozen=True, kw_only=True)
class LabelRule:
    """How a run turns judgments into labels: frozen into the run's config when it is requested."""

    aggregation: Aggregation = "majority"
    min_posterior: float = 0.5  # pairs whose p_chosen is below this are left out
    keep_ties: bool = False  # pairs most raters called a tie become tie pairs (tie_policy model)


def training_data_at(
    *, project: Project, judgment_cutoff: int, pair_cutoff: int, rule: LabelRule | None = None
) -> TrainingData:
    """One preference per pair from the judgments with id <= `judgment_cutoff`, plus seed labels.

    The rule is the export's (`annotation.exports.aggregation`, ties and both-bad votes counted,
    the project's aggregation and p_chosen threshold), so a model is trained on exactly what a
    TRL export of the same judgments holds. With `keep_ties`, a pair most of whose raters called
    a tie is kept as a tie pair. A pair without a label falls back to its imported seed label.
    Pairs of retired batches and pairs imported after `pair_cutoff` are left out. A lead's live
    adjudication overrides all of this (annotation.exports.adjudicated), as in the export.
    """
    rule = rule or LabelRule()
    judgments = Judgment.objects.filter(
        pair__project=project, pair__is_active=True, id__lte=judgment_cutoff
    )
    tallies = _tallies(judgments)
    estimate = None
    if rule.aggregation != "majority":
        estimate = label_estimate(judgments=judgments, aggregation=rule.aggregation)
    judged = Judgment.objects.filter(pair=OuterRef("pk"), id__lte=judgment_cutoff)
    candidates = (
        Pair.objects.filter(project=project, is_active=True, id__lte=pair_cutoff)
        .annotate(adjudicated=live_adjudication())
        .filter(
            Exists(judged)
            | Q(seed_choice__in=[Pair.Known.A, Pair.Known.B])
            | Q(adjudicated__isnull=False)
        )
        .select_related("prompt", "response_a", "response_b")
        .order_by("id")
    )
    pairs: list[PreferencePair] = []
    from_judgments = from_seed = 0
    for pair in candidates.iterator(chunk_size=2000):
        tally = tallies.get(pair.id, {})
        if pair.adjudicated is not None:
            labelled = _adjudicated_label(pair.adjudicated, rule)
            if labelled is None:
                continue
            from_judgments += 1
        elif (
            labelled := _label(tally, None if estimate is None else estimate.p_a_for(pair.id), rule)
        ) is not None:
            from_judgments += 1
        else:
            decision = decide_by_known_answer(pair.seed_choice)
            if decision is None:
                continue
            from_seed += 1
            labelled = _Label(decision.winner, decision.margin, None, decision.p_chosen, False)
        chosen, rejected = (
            (pair.response_a, pair.response_b)
            if labelled.winner == "a"
            else (pair.response_b, pair.response_a)
        )
        prompt = pair.prompt
        pairs.append(
            PreferencePair(
                prompt=prompt.messages if prompt.messages else prompt.text,
                chosen=chosen.text,
                rejected=rejected.text,
                margin=labelled.margin,
                strength=labelled.strength,
                p_chosen=labelled.p_chosen,
                tie=labelled.tie,
                group=prompt.content_hash,
            )
        )
    return TrainingData(pairs=pairs, from_judgments=from_judgments, from_seed=from_seed)


_Tally = dict[str, tuple[int, int, int]]  # choice: (count, strength sum, strength count)


def _tallies(judgments: QuerySet[Judgment]) -> dict[int, _Tally]:
    tallies: dict[int, _Tally] = defaultdict(dict)
    rows = (
        judgments.values("pair_id", "choice")
        .annotate(n=Count("id"), strength_sum=Sum("strength"), strength_n=Count("strength"))
        .order_by()
    )
    for row in rows:
        tallies[row["pair_id"]][row["choice"]] = (
            row["n"],
            row["strength_sum"] or 0,
            row["strength_n"],
        )
    return tallies


@dataclass(frozen=True)
class _Label:
    winner: Literal["a", "b"]
    margin: float
    strength: int | None
    p_chosen: float
    tie: bool


def _label(tally: _Tally, p_a: float | None, rule: LabelRule) -> _Label | None:
    """A pair's label from its raters under `rule`, or None (no votes, no winner, too unsure)."""
    if not tally:
        return None
    votes = _votes(tally)
    if rule.keep_ties and 2 * votes.tie > votes.a + votes.b + votes.tie + votes.both_bad:
        return _Label("a", 0.0, None, 0.5, True)
    decision = decide(votes) if p_a is None else decide_by_probability(votes, p_a)
    if decision is None or decision.p_chosen < rule.min_posterior:
        return None
    _, strength_sum, strength_n = tally.get(decision.winner, (0, 0, 0))
    strength = round(strength_sum / strength_n) if strength_n else None
    return _Label(decision.winner, decision.margin, strength, decision.p_chosen, False)


def _adjudicated_label(decision: str, rule: LabelRule) -> _Label | None:
    """A lead's decision as a label: `a`/`b` at full certainty, `tie` as a tie pair when the run
    keeps ties, anything else (both bad, exclude) leaves the pair out."""
    if decision == "tie" and rule.keep_ties:
        return _Label("a", 0.0, None, 0.5, True)
    settled = adjudicated_decision(decision)
    if settled is None:
        return None
    return _Label(settled.winner, settled.margin, None, settled.p_chosen, False)


def _votes(tally: _Tally) -> Votes:
    """Votes from (count, strength sum, strength count) per choice; a vote without strength
    weighs full strength, as the export counts it."""

    def count(choice: str) -> int:
        return tally.get(choice, (0, 0, 0))[0]

    def weight(choice: str) -> int:
        n, strength_sum, strength_n = tally.get(choice, (0, 0, 0))
        return strength_sum + FULL_STRENGTH * (n - strength_n)

    return Votes(
        a=count("a"),
        b=count("b"),
        tie=count("tie"),
        both_bad=count("both_bad"),
        strength_a=weight("a"),
        strength_b=weight("b"),
    )


def judgment_cutoff_now(*, project: Project) -> int:
    """The id of the project's latest judgment, 0 when it has none."""
    return Judgment.objects.filter(pair__project=project).aggregate(top=Max("id"))["top"] or 0


def pair_cutoff_now(*, project: Project) -> int:
    return Pair.objects.filter(project=project).aggregate(top=Max("id"))["top"] or 0


def judgments_since_last_run(*, project: Project) -> int:
    """Judgments newer than the latest cut-off any run of the project froze (failed ones too, so
    a run that fails on some data is not retried every few minutes on the same data)."""
    last = project.training_runs.aggregate(top=Max("data_cutoff_judgment_id"))["top"] or 0
    return Judgment.objects.filter(pair__project=project, id__gt=last).count()


def published_version_of(*, project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, state=ModelVersion.State.PUBLISHED).first()


def training_run_list(*, project: Project, limit: int = 20) -> list[TrainingRun]:
    return list(
        TrainingRun.objects.filter(project=project)
        .select_related("project", "requested_by", "version")
        .order_by("-created_at")[:limit]
    )


def training_run_get(*, run_id: int) -> TrainingRun | None:
    return (
        TrainingRun.objects.select_related("project", "requested_by", "version")
        .filter(id=run_id)
        .first()
    )


def model_version_list(*, project: Project) -> list[ModelVersion]:
    return list(ModelVersion.objects.filter(project=project).select_related("run"))


def model_version_get(*, project: Project, version: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, version=version).first()


def agreement_ceiling(*, project: Project) -> float | None:
    """The latest agreement report's percent agreement (0..1): how often two raters agree on a
    pair, a practical ceiling for a model's agreement with held-out labels."""
    report = AgreementReport.objects.filter(project=project).order_by("-created_at").first()
    if report is None:
        return None
    coefficients = report.metrics.get("coefficients") if isinstance(report.metrics, dict) else None
    entry = coefficients.get("percent_agreement") if isinstance(coefficients, dict) else None
    value = entry.get("value") if isinstance(entry, dict) else entry
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


class ArchiveError(Exception):
    """A version's files do not match what the database recorded; nothing is served."""


@dataclass(frozen=True, kw_only=True)
class VersionArchive:
    filename: str
    chunks: Iterator[bytes]


def model_version_archive(*, version: ModelVersion) -> VersionArchive:
    """A streamed .tar.gz of a version directory, as `<project>-v<N>/...`.

    Every file is checked against the checksums in the database first (no symlinks, nothing
    outside the checkpoint root, nothing missing or extra), so a tampered version is never
    handed out. Memory stays bounded: files are read and compressed 1 MiB at a time.
    """
    root = Path(settings.CHECKPOINT_ROOT).resolve()
    directory = (root / version.path).resolve()
    if not directory.is_relative_to(root) or not directory.is_dir():
        raise ArchiveError(f"v{version.version}: {version.path} is not in the checkpoint store")
    present = {
        entry.relative_to(directory).as_posix(): entry
        for entry in sorted(directory.rglob("*"))
        if entry.is_file() or entry.is_symlink()
    }
    if set(present) != set(version.file_sha256) or any(p.is_symlink() for p in present.values()):
        raise ArchiveError(f"v{version.version}: the files on disk are not the recorded ones")
    for name, path in present.items():
        if not hmac.compare_digest(_sha256(path), str(version.file_sha256[name])):
            raise ArchiveError(f"v{version.version}: {name} does not match its sha256")
    prefix = f"{version.project.slug}-v{version.version}"
    chunks = (chunk for chunk in _tar_gz(prefix, present) if chunk)
    return VersionArchive(filename=f"{prefix}.tar.gz", chunks=chunks)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tar_gz(prefix: str, files: dict[str, Path]) -> Iterator[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: a gzip member
    for name, path in files.items():
        size = path.stat().st_size
        info = tarfile.TarInfo(f"{prefix}/{name}")
        info.size = size
        info.mode = 0o644
        info.mtime = int(path.stat().st_mtime)
        yield compressor.compress(info.tobuf(format=tarfile.PAX_FORMAT))
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                yield compressor.compress(block)
        yield compressor.compress(b"\0" * (-size % tarfile.BLOCKSIZE))
    yield compressor.compress(b"\0" * (2 * tarfile.BLOCKSIZE))  # the end-of-archive marker
    yield compressor.flush()


@dataclass(frozen=True, kw_only=True)
class Accuracy:
    """A held-out accuracy with what it rests on: how many pairs, and a 95% Wilson interval."""

    value: float
    pairs: int | None  # None: not recorded with the metrics
    low: float | None
    high: float | None
    minimum: int  # settings.TRAINING_MIN_HELDOUT_PAIRS

    @property
    def meaningful(self) -> bool:
        return self.pairs is not None and self.pairs >= self.minimum


def wilson_interval(*, successes: int, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for a proportion (95% for z = 1.96): unlike the normal
    approximation it stays inside [0, 1] and is honest on a handful of trials."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_figure(*, accuracy: object, pairs: object) -> Accuracy | None:
    """The accuracy from stored metrics, or None when there is none (no held-out pairs)."""
    if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool):
        return None
    count = pairs if isinstance(pairs, int) and not isinstance(pairs, bool) and pairs > 0 else None
    low = high = None
    if count is not None:
        low, high = wilson_interval(successes=round(accuracy * count), trials=count)
    return Accuracy(
        value=float(accuracy),
        pairs=count,
        low=low,
        high=high,
        minimum=settings.TRAINING_MIN_HELDOUT_PAIRS,
    )


def version_accuracy(version: ModelVersion) -> Accuracy | None:
    metrics = version.metrics if isinstance(version.metrics, dict) else {}
    return accuracy_figure(accuracy=metrics.get("accuracy"), pairs=metrics.get("count"))


@dataclass(frozen=True, kw_only=True)
class ChartPoint:
    x: float
    y: float
    label: str
    tentative: bool = False  # drawn hollow: rests on fewer held-out pairs than the minimum


CHART_WIDTH, CHART_HEIGHT = 360, 170
# The plot area inside the SVG box: room on the left for the y ticks, below for the x ticks
# and the x axis title.
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 46, 12, 12, 36


@dataclass(frozen=True, kw_only=True)
class Chart:
    """SVG geometry, drawn by the server: a line through `points` in a width x height box, with
    both axes labelled (ends and title with its unit) and an optional reference line."""

    key: str  # unique on the page: the prefix of the SVG's element ids
    title: str  # what a screen reader announces
    points: list[ChartPoint]
    y_top: str  # tick labels at the ends of the axes
    y_bottom: str
    x_start: str
    x_end: str
    x_title: str  # axis titles, with their units
    y_title: str
    reference_y: float | None = None  # a horizontal reference line, e.g. the raters' agreement
    reference_label: str = ""
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = PLOT_LEFT
    right: int = CHART_WIDTH - PLOT_RIGHT
    top: int = PLOT_TOP
    bottom: int = CHART_HEIGHT - PLOT_BOTTOM

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def middle(self) -> float:
        return (self.left + self.right) / 2


def _x(fraction: float) -> float:
    return PLOT_LEFT + fraction * (CHART_WIDTH - PLOT_LEFT - PLOT_RIGHT)


def _y(fraction: float) -> float:
    return CHART_HEIGHT - PLOT_BOTTOM - fraction * (CHART_HEIGHT - PLOT_TOP - PLOT_BOTTOM)


def loss_chart(*, run: TrainingRun) -> Chart | None:
    """The run's training loss per step ([step, loss] points), from 0 to its highest loss, with
    ln 2 marked: the loss of a model that cannot tell the two responses apart."""
    curve = [(float(step), float(loss)) for step, loss in run.loss_curve]
    if len(curve) < 2:
        return None
    top = max(max(loss for _, loss in curve), math.log(2)) or 1.0
    last_step = curve[-1][0] or 1.0
    points = [
        ChartPoint(x=_x(step / last_step), y=_y(loss / top), label=f"step {step:g}: {loss:.3f}")
        for step, loss in curve
    ]
    return Chart(
        key=f"loss-chart-{run.id}",
        title=(
            f"Training loss of run {run.id} per step, from {curve[0][1]:.3f} "
            f"to {curve[-1][1]:.3f} nats"
        ),
        points=points,
        y_top=f"{top:.2f}",
        y_bottom="0",
        x_start="0",
        x_end=f"{last_step:g}",
        x_title="training step",
        y_title="loss (nats)",
        reference_y=_y(math.log(2) / top),
        reference_label="chance: ln 2 = 0.693",
    )


def accuracy_chart(*, versions: list[ModelVersion], ceiling: float | None) -> Chart | None:
    """Held-out accuracy of each version in order, on a 0.4-1.0 axis, with the raters'
    percent agreement as the reference line; versions on too few pairs are drawn hollow."""
    measured = [
        (version.version, figure)
        for version in sorted(versions, key=lambda v: v.version)
        if (figure := version_accuracy(version)) is not None
    ]
    if not measured:
        return None
    low, high = 0.4, 1.0
    span = max(1, len(measured) - 1)
    points = [
        ChartPoint(
            x=_x(index / span),
            y=_y((min(max(figure.value, low), high) - low) / (high - low)),
            label=_point_label(number, figure),
            tentative=not figure.meaningful,
        )
        for index, (number, figure) in enumerate(measured)
    ]
    reference_y = None
    if ceiling is not None:
        reference_y = _y((min(max(ceiling, low), high) - low) / (high - low))
    title = "Held-out accuracy per version"
    if ceiling is not None:
        title += f", against the raters' agreement of {ceiling:.3f}"
    return Chart(
        key="accuracy-chart",
        title=title,
        points=points,
        y_top="100%",
        y_bottom="40%",
        x_start=f"v{measured[0][0]}",
        x_end=f"v{measured[-1][0]}" if len(measured) > 1 else "",
        x_title="version",
        y_title="accuracy (%)",
        reference_y=reference_y,
        reference_label=f"raters agree {ceiling:.0%}" if ceiling is not None else "",
    )


def _point_label(number: int, figure: Accuracy) -> str:
    if figure.pairs is None or figure.low is None or figure.high is None:
        return f"v{number}: {figure.value:.1%}, number of held-out pairs not recorded"
    return (
        f"v{number}: {figure.value:.1%} on {figure.pairs} held-out pairs "
        f"(95% interval {figure.low:.1%} to {figure.high:.1%})"
    )


@dataclass(frozen=True, kw_only=True)
class RunCard:
    run: TrainingRun
    loss_chart: Chart | None
    accuracy: Accuracy | None  # of a succeeded run's version on its held-out pairs
    outcome: str  # a succeeded run: what it started from and what became of its version


def run_card(*, run: TrainingRun) -> RunCard:
    metrics = run.metrics if isinstance(run.metrics, dict) else {}
    heldout = _mapping(metrics.get("heldout"))
    counts = _mapping(metrics.get("counts"))
    return RunCard(
        run=run,
        loss_chart=loss_chart(run=run),
        accuracy=accuracy_figure(
            accuracy=heldout.get("accuracy"),
            pairs=heldout.get("count", counts.get("heldout_pairs")),
        ),
        outcome=run_outcome(metrics=metrics),
    )


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


BASE_MODEL_NOTE = "from the base model: "  # how rewardtrain.services.runs words a cold start


def run_outcome(*, metrics: dict[str, Any]) -> str:
    """A succeeded run's start and promotion as sentences, e.g. "Trained from the base model
    because nothing was published yet. Published as the project's first version." """
    start = str(metrics.get("warm_start") or "")
    if start.startswith(BASE_MODEL_NOTE):
        sentences = [f"Trained from the base model because {start.removeprefix(BASE_MODEL_NOTE)}."]
    else:
        sentences = [f"{start[:1].upper()}{start[1:]}."] if start else []
    promotion = metrics.get("promotion")
    if isinstance(promotion, dict):
        if promotion.get("published") and metrics.get("compared_with") is None:
            sentences.append("Published as the project's first version.")
        elif promotion.get("published"):
            sentences.append(f"Published: {promotion.get('reason')}.")
        else:
            sentences.append(f"Kept as a candidate: {promotion.get('reason')}.")
    return " ".join(sentences)


@dataclass(frozen=True, kw_only=True)
class VersionRow:
    version: ModelVersion
    accuracy: Accuracy | None


@dataclass(frozen=True, kw_only=True)
class PoolProgress:
    """How far pool scoring has gone: open pairs the published version has scored, of all."""

    version: int
    scored: int
    total: int

    @property
    def done(self) -> bool:
        return self.scored >= self.total


def pool_progress(*, project: Project, version: ModelVersion | None) -> PoolProgress | None:
    if version is None:
        return None
    open_pairs = Pair.objects.open().filter(project=project)
    return PoolProgress(
        version=version.version,
        scored=open_pairs.filter(model_version=version.version).count(),
        total=open_pairs.count(),
    )


@dataclass(frozen=True, kw_only=True)
class TrainingPage:
    runs: list[RunCard]
    versions: list[VersionRow]
    published: VersionRow | None
    ceiling: float | None
    accuracy_chart: Chart | None
    has_active_run: bool
    new_judgments: int
    min_heldout_pairs: int
    pool: PoolProgress | None


def training_page(*, project: Project) -> TrainingPage:
    versions = model_version_list(project=project)
    ceiling = agreement_ceiling(project=project)
    runs = training_run_list(project=project)
    rows = [VersionRow(version=version, accuracy=version_accuracy(version)) for version in versions]
    published = next(
        (row for row in rows if row.version.state == ModelVersion.State.PUBLISHED), None
    )
    return TrainingPage(
        runs=[run_card(run=run) for run in runs],
        versions=rows,
        published=published,
        ceiling=ceiling,
        accuracy_chart=accuracy_chart(versions=versions, ceiling=ceiling),
        has_active_run=any(run.is_active for run in runs),
        new_judgments=judgments_since_last_run(project=project),
        min_heldout_pairs=settings.TRAINING_MIN_HELDOUT_PAIRS,
        pool=pool_progress(project=project, version=published.version if published else None),
    )
