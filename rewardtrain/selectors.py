"""Reads for training: the preference pairs a run trains on, and what the training page shows.

Nothing here imports torch: the web process uses these selectors.
"""

from __future__ import annotations

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
from django.utils.http import content_disposition_header

from annotation.agreement.charts import Axis, LineChart, value_chart
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
from rewardtrain.checkpoints import CheckpointError, checkpoint_verify
from rewardtrain.data import PreferencePair
from rewardtrain.length_bias import length_sentence
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
    pairs: list[PreferencePair] = []
    from_judgments = from_seed = 0
    candidates = _candidate_pairs(
        project=project, judgment_cutoff=judgment_cutoff, pair_cutoff=pair_cutoff
    )
    for pair in candidates.iterator(chunk_size=2000):  # memory: one chunk of pairs at a time
        p_a = None if estimate is None else estimate.p_a_for(pair.id)
        labelled = _pair_label(pair, tally=tallies.get(pair.id, {}), p_a=p_a, rule=rule)
        if labelled is None:
            continue
        if labelled.from_seed:
            from_seed += 1
        else:
            from_judgments += 1
        pairs.append(_preference(pair, labelled))
    return TrainingData(pairs=pairs, from_judgments=from_judgments, from_seed=from_seed)


def _candidate_pairs(*, project: Project, judgment_cutoff: int, pair_cutoff: int) -> QuerySet[Pair]:
    """The project's active pairs up to `pair_cutoff` that have something to be labelled by: a
    judgment up to `judgment_cutoff`, a seed label, or a live adjudication; in id order."""
    judged = Judgment.objects.filter(pair=OuterRef("pk"), id__lte=judgment_cutoff)
    return (
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


def _pair_label(pair: Pair, *, tally: _Tally, p_a: float | None, rule: LabelRule) -> _Label | None:
    """The first label that applies: a lead's adjudication, the raters' votes under `rule`, the
    imported seed label; None when none does."""
    adjudicated = getattr(pair, "adjudicated", None)  # annotated by _candidate_pairs
    if adjudicated is not None:
        return _adjudicated_label(adjudicated, rule)
    labelled = _label(tally, p_a, rule)
    if labelled is not None:
        return labelled
    decision = decide_by_known_answer(pair.seed_choice)
    if decision is None:
        return None
    return _Label(decision.winner, decision.margin, None, decision.p_chosen, False, from_seed=True)


def _preference(pair: Pair, labelled: _Label) -> PreferencePair:
    chosen, rejected = (
        (pair.response_a, pair.response_b)
        if labelled.winner == "a"
        else (pair.response_b, pair.response_a)
    )
    prompt = pair.prompt
    return PreferencePair(
        prompt=prompt.messages if prompt.messages else prompt.text,
        chosen=chosen.text,
        rejected=rejected.text,
        margin=labelled.margin,
        strength=labelled.strength,
        p_chosen=labelled.p_chosen,
        tie=labelled.tie,
        group=prompt.content_hash,
    )


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
    from_seed: bool = False  # an imported seed label, not the raters' or a lead's


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
    """A version's files as one download, the same for the page and the API."""

    filename: str
    chunks: Iterator[bytes]

    @property
    def headers(self) -> dict[str, str]:
        return {
            "Content-Type": "application/gzip",
            "Content-Disposition": content_disposition_header(True, self.filename) or "",
        }


def model_version_archive(*, version: ModelVersion) -> VersionArchive:
    """A streamed .tar.gz of a version directory, as `<project>-v<N>/...`.

    The directory is checked against the checksums in the database first, by the same rule as
    before loading it (`checkpoint_verify`: no symlinks, nothing outside the checkpoint root,
    nothing missing, extra or changed), so a tampered version is never handed out. Memory stays
    bounded: files are read and compressed 1 MiB at a time.
    """
    root = Path(settings.CHECKPOINT_ROOT)
    directory = root / version.path
    try:
        checkpoint_verify(directory, root=root, expected_sha256=version.file_sha256)
    except CheckpointError as error:
        raise ArchiveError(f"v{version.version}: {error}") from error
    present = {name: directory / name for name in sorted(version.file_sha256)}
    prefix = f"{version.project.slug}-v{version.version}"
    chunks = (chunk for chunk in _tar_gz(prefix, present) if chunk)
    return VersionArchive(filename=f"{prefix}.tar.gz", chunks=chunks)


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
class Chart:
    """A training chart: the geometry from the agreement dashboard's kit
    (`annotation.agreement.charts`), with what the page says about it."""

    key: str  # unique on the page: the prefix of the SVG's element ids
    title: str  # what a screen reader announces
    x_title: str  # axis titles, with their units
    y_title: str
    plot: LineChart


def loss_chart(*, run: TrainingRun) -> Chart | None:
    """The run's training loss per step ([step, loss] points), from 0 to its highest loss, with
    ln 2 marked: the loss of a model that cannot tell the two responses apart."""
    curve = [(float(step), float(loss)) for step, loss in run.loss_curve]
    if len(curve) < 2:
        return None
    top = max(max(loss for _, loss in curve), math.log(2)) or 1.0
    last_step = curve[-1][0] or 1.0
    plot = value_chart(
        points=[(step, loss, f"step {step:g}: {loss:.3f}", False) for step, loss in curve],
        x_axis=Axis(0.0, last_step, ((0.0, "0"), (last_step, f"{last_step:g}"))),
        y_axis=Axis(0.0, top, ((0.0, "0"), (top, f"{top:.2f}"))),
        reference=(math.log(2), "chance: ln 2 = 0.693"),
    )
    return Chart(
        key=f"loss-chart-{run.id}",
        title=(
            f"Training loss of run {run.id} per step, from {curve[0][1]:.3f} "
            f"to {curve[-1][1]:.3f} nats"
        ),
        x_title="training step",
        y_title="loss (nats)",
        plot=plot,
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
    span = float(max(1, len(measured) - 1))
    x_ticks = [(0.0, f"v{measured[0][0]}")]
    if len(measured) > 1:
        x_ticks.append((span, f"v{measured[-1][0]}"))
    plot = value_chart(
        points=[
            (float(index), figure.value, _point_label(number, figure), not figure.meaningful)
            for index, (number, figure) in enumerate(measured)
        ],
        x_axis=Axis(0.0, span, x_ticks),
        y_axis=Axis(0.4, 1.0, ((0.4, "40%"), (1.0, "100%"))),
        reference=None if ceiling is None else (ceiling, f"raters agree {ceiling:.0%}"),
    )
    title = "Held-out accuracy per version"
    if ceiling is not None:
        title += f", against the raters' agreement of {ceiling:.3f}"
    return Chart(
        key="accuracy-chart", title=title, x_title="version", y_title="accuracy (%)", plot=plot
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
    length_spearman: float | None  # rank correlation of reward with length, held-out responses
    length: str  # the length statistics in plain words ("" for versions evaluated before them)


def run_card(*, run: TrainingRun) -> RunCard:
    metrics = run.metrics if isinstance(run.metrics, dict) else {}
    heldout = _mapping(metrics.get("heldout"))
    counts = _mapping(metrics.get("counts"))
    length = _mapping(heldout.get("length"))
    return RunCard(
        run=run,
        loss_chart=loss_chart(run=run),
        accuracy=accuracy_figure(
            accuracy=heldout.get("accuracy"),
            pairs=heldout.get("count", counts.get("heldout_pairs")),
        ),
        outcome=run_outcome(metrics=metrics),
        length_spearman=length.get("spearman"),
        length=length_sentence(length),
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
