"""Reads for training: the preference pairs a run trains on, and what the training page shows.

Nothing here imports torch: the web process uses these selectors.
"""

from __future__ import annotations

import hashlib
import hmac
import tarfile
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from django.conf import settings
from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Sum

from annotation.exports.aggregation import (
    FULL_STRENGTH,
    Votes,
    decide,
    decide_by_probability,
    known,
)
from annotation.exports.labels import Aggregation
from annotation.models import AgreementReport, Judgment, Pair, Project
from annotation.selectors.labels import label_estimate
from rewardtrain.data import PreferencePair
from rewardtrain.models import ModelVersion, TrainingRun


@dataclass(frozen=True, kw_only=True)
class TrainingData:
    pairs: list[PreferencePair]  # in pair id order: the order is part of the data digest
    from_judgments: int  # pairs labelled by their raters' judgments (ties included)
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
    Pairs of retired batches and pairs imported after `pair_cutoff` are left out.
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
        .filter(Exists(judged) | Q(seed_choice__in=[Pair.Known.A, Pair.Known.B]))
        .select_related("prompt", "response_a", "response_b")
        .order_by("id")
    )
    pairs: list[PreferencePair] = []
    from_judgments = from_seed = 0
    for pair in candidates.iterator(chunk_size=2000):
        tally = tallies.get(pair.id, {})
        labelled = _label(tally, None if estimate is None else estimate.p_a_for(pair.id), rule)
        if labelled is not None:
            from_judgments += 1
        else:
            decision = known(pair.seed_choice)
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
class ChartPoint:
    x: float
    y: float
    label: str


@dataclass(frozen=True, kw_only=True)
class Chart:
    """SVG geometry, drawn by the server: a line through `points` in a width x height box."""

    width: int
    height: int
    points: list[ChartPoint]
    y_top: str  # axis labels
    y_bottom: str
    ceiling_y: float | None = None  # a horizontal reference line, e.g. the raters' agreement
    ceiling_label: str = ""

    @property
    def polyline(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


CHART_WIDTH, CHART_HEIGHT, CHART_PAD = 360, 140, 12


def loss_chart(*, run: TrainingRun) -> Chart | None:
    """The run's loss curve ([step, loss] points), scaled from 0 to its highest loss."""
    curve = [(float(step), float(loss)) for step, loss in run.loss_curve]
    if len(curve) < 2:
        return None
    top = max(loss for _, loss in curve) or 1.0
    last_step = curve[-1][0] or 1.0
    points = [
        ChartPoint(x=_scale(step / last_step, CHART_WIDTH), y=_flip(loss / top), label="")
        for step, loss in curve
    ]
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        points=points,
        y_top=f"{top:.3f}",
        y_bottom="0",
    )


def accuracy_chart(*, versions: list[ModelVersion], ceiling: float | None) -> Chart | None:
    """Held-out accuracy of each version in order, on a 0.4-1.0 axis, with the raters'
    percent agreement as the ceiling line."""
    measured = [
        (version.version, version.metrics.get("accuracy"))
        for version in sorted(versions, key=lambda v: v.version)
        if isinstance(version.metrics.get("accuracy"), (int, float))
    ]
    if not measured:
        return None
    low, high = 0.4, 1.0
    span = max(1, len(measured) - 1)
    points = [
        ChartPoint(
            x=_scale(index / span, CHART_WIDTH),
            y=_flip((min(max(accuracy, low), high) - low) / (high - low)),
            label=f"v{number}: {accuracy:.1%}",
        )
        for index, (number, accuracy) in enumerate(measured)
    ]
    ceiling_y = None
    if ceiling is not None:
        ceiling_y = _flip((min(max(ceiling, low), high) - low) / (high - low))
    return Chart(
        width=CHART_WIDTH,
        height=CHART_HEIGHT,
        points=points,
        y_top="100%",
        y_bottom="40%",
        ceiling_y=ceiling_y,
        ceiling_label=f"raters agree {ceiling:.0%}" if ceiling is not None else "",
    )


def _scale(fraction: float, size: int) -> float:
    return CHART_PAD + fraction * (size - 2 * CHART_PAD)


def _flip(fraction: float) -> float:
    return CHART_HEIGHT - _scale(fraction, CHART_HEIGHT)


@dataclass(frozen=True, kw_only=True)
class RunCard:
    run: TrainingRun
    loss_chart: Chart | None


def run_card(*, run: TrainingRun) -> RunCard:
    return RunCard(run=run, loss_chart=loss_chart(run=run))


@dataclass(frozen=True, kw_only=True)
class TrainingPage:
    runs: list[RunCard]
    versions: list[ModelVersion]
    published: ModelVersion | None
    ceiling: float | None
    accuracy_chart: Chart | None
    has_active_run: bool
    new_judgments: int


def training_page(*, project: Project) -> TrainingPage:
    versions = model_version_list(project=project)
    ceiling = agreement_ceiling(project=project)
    runs = training_run_list(project=project)
    return TrainingPage(
        runs=[run_card(run=run) for run in runs],
        versions=versions,
        published=next((v for v in versions if v.state == ModelVersion.State.PUBLISHED), None),
        ceiling=ceiling,
        accuracy_chart=accuracy_chart(versions=versions, ceiling=ceiling),
        has_active_run=any(run.is_active for run in runs),
        new_judgments=judgments_since_last_run(project=project),
    )
