"""One run, three launches: inline, torchrun with one process, torchrun with two processes and
the same global batch, all on the CPU with gloo; and the launchers through the run service: a
run on two processes, a killed rank, a cluster command that runs or never starts."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from celery.contrib.testing.worker import start_worker
from django.urls import reverse
from django.utils import timezone
from safetensors.torch import load_file

from annotation.models import Membership
from config.celery import app
from rewardtrain.bundle import BundleError, bundle_dir, bundle_read, bundle_write, progress_read
from rewardtrain.config import TrainConfig
from rewardtrain.launch import run_bundle
from rewardtrain.models import ModelVersion, TrainingRun
from rewardtrain.services.runs import (
    training_run_execute,
    training_run_request,
    training_runs_sweep,
)
from rewardtrain.train import rank_share, train
from tests.conftest import login
from tests.factories import MembershipFactory, ProjectFactory
from tests.rewardtrain.helpers import (
    TINY_TRAIN_CONFIG,
    build_tiny_model,
    fake_version,
    polite_pairs,
    seed_pairs,
    trainable_project,
)

ROOT = Path(__file__).resolve().parents[2]
MANUAL = TrainingRun.Trigger.MANUAL
# Two ranks sum their halves of each batch's gradient in another order than one process does:
# the runs differ by float rounding only. Adam divides each update by the gradient's own size,
# so where a gradient is near zero (the reward head's bias: chosen and rejected share it) the
# rounding can move a weight by up to about one step of the learning rate (1e-3).
LOSS_TOLERANCE = 1e-4
WEIGHT_TOLERANCE = 2e-3


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert-launch"))


def _bundle(root: Path, model: Path, **overrides: object) -> Path:
    config = TrainConfig(base_model=str(model), **{**TINY_TRAIN_CONFIG, "bf16": False, **overrides})
    job = {
        "project": "same",
        "version": 1,
        "data_cutoff": 0,
        "counts": {"train_pairs": 40},
        "init_from": None,
        "warm_start": "from the base model",
        "published": None,
    }
    directory = bundle_dir(root, run_id=1, attempt=1)
    return bundle_write(
        directory, config=config, train_pairs=polite_pairs(40), heldout=polite_pairs(6), job=job
    )


def _torchrun(directory: Path, processes: int) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(processes),
            "-m", "rewardtrain.launch", "--launcher", "torchrun", str(directory),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]


def _trained(root: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    version = root / "same" / "v1"
    manifest = json.loads((version / "pairwise.json").read_text())
    return manifest, load_file(version / "model.safetensors")


def test_inline_one_process_and_two_processes_train_the_same_model(tiny_model, tmp_path):
    run_bundle(_bundle(tmp_path / "inline", tiny_model), launcher="inline")
    _torchrun(_bundle(tmp_path / "one", tiny_model), 1)
    # Two ranks of 4 pairs: the global batch of 8 the single process takes.
    _torchrun(_bundle(tmp_path / "two", tiny_model, batch_size=4), 2)

    inline, inline_weights = _trained(tmp_path / "inline")
    one, one_weights = _trained(tmp_path / "one")
    two, two_weights = _trained(tmp_path / "two")

    assert (inline["world_size"], one["world_size"], two["world_size"]) == (1, 1, 2)
    assert (inline["launch"]["launcher"], two["launch"]["launcher"]) == ("inline", "torchrun")
    assert len(two["launch"]["devices"]) == 2
    assert inline["train"]["loss_history"] == one["train"]["loss_history"]
    assert all(torch.equal(inline_weights[name], one_weights[name]) for name in inline_weights)
    assert len(two["train"]["loss_history"]) == len(inline["train"]["loss_history"]) == 15
    assert two["train"]["loss_history"] == pytest.approx(
        inline["train"]["loss_history"], abs=LOSS_TOLERANCE
    )
    for name, tensor in inline_weights.items():
        torch.testing.assert_close(two_weights[name], tensor, rtol=0, atol=WEIGHT_TOLERANCE)
    assert inline["metrics"]["accuracy"] == two["metrics"]["accuracy"]


def test_a_changed_bundle_file_is_refused(tiny_model, tmp_path):
    directory = _bundle(tmp_path, tiny_model)
    with (directory / "train.jsonl").open("a") as handle:
        handle.write(json.dumps(polite_pairs(1)[0].to_dict()) + "\n")

    with pytest.raises(BundleError, match=r"train\.jsonl does not match its sha256"):
        bundle_read(directory)


@pytest.fixture
def checkpoints(settings, tmp_path):
    settings.CHECKPOINT_ROOT = tmp_path / "checkpoints"
    return settings.CHECKPOINT_ROOT


@pytest.fixture
def training_worker(transactional_db):
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("training")
    with start_worker(
        app, pool="solo", queues=["training"], perform_ping_check=False, shutdown_timeout=10
    ) as worker:
        yield worker


@pytest.mark.multiprocess
def test_a_run_requested_through_the_api_trains_on_two_processes_in_a_real_worker(
    client, settings, tiny_model, checkpoints, training_worker
):
    settings.TRAINING_LAUNCHER = "torchrun"
    settings.TRAINING_PROCESSES = 2
    project = trainable_project(ProjectFactory(slug="twice"), tiny_model)
    seed_pairs(project, 40)
    lead = MembershipFactory(project=project, role=Membership.Role.LEAD).user
    login(client, lead)

    created = client.post(reverse("training-api:run-list", args=["twice"]))
    assert created.status_code == 201
    run = TrainingRun.objects.get(id=created.json()["id"])
    deadline = time.monotonic() + 120
    while run.is_active and time.monotonic() < deadline:
        time.sleep(0.3)
        run.refresh_from_db()

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.metrics["train"]["world_size"] == 2
    version = ModelVersion.objects.get(project=project)
    assert version.state == ModelVersion.State.PUBLISHED
    manifest = json.loads((checkpoints / version.path / "pairwise.json").read_text())
    assert manifest["world_size"] == 2
    assert manifest["launch"]["launcher"] == "torchrun"


def _kill_rank_once_training(directory: Path, rank: int) -> threading.Thread:
    """Watch for the launch in `directory` to train, then SIGKILL its process of `rank`."""

    def kill() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            record = progress_read(directory) or {}
            if record.get("curve"):
                for pid in _rank_processes(directory, rank):
                    os.kill(pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=kill, daemon=True)
    watcher.start()
    return watcher


def _rank_processes(directory: Path, rank: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes().split(b"\0")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        worker = b"rewardtrain.launch" in command and b"torch.distributed.run" not in command
        if worker and str(directory).encode() in command and f"RANK={rank}".encode() in environ:
            found.append(int(proc.name))
    return found


@pytest.mark.django_db
@pytest.mark.multiprocess
def test_a_killed_rank_fails_the_attempt_cleanly_and_queues_the_run_again(
    settings, tiny_model, checkpoints, django_capture_on_commit_callbacks
):
    settings.TRAINING_LAUNCHER = "torchrun"
    settings.TRAINING_PROCESSES = 2
    project = trainable_project(ProjectFactory(slug="killed"), tiny_model)
    project.train_config = {**project.train_config, "epochs": 400}  # long enough to be killed
    project.full_retrain_every = 1
    project.save()
    published = fake_version(project, 1, state=ModelVersion.State.PUBLISHED)
    seed_pairs(project, 40)
    run, _ = training_run_request(project=project, trigger=MANUAL, enqueue=False)

    watcher = _kill_rank_once_training(bundle_dir(checkpoints, run_id=run.id, attempt=1), 1)
    with django_capture_on_commit_callbacks(execute=False) as enqueued:
        run = training_run_execute(run_id=run.id)
    watcher.join()

    assert (run.status, run.attempts) == (TrainingRun.Status.QUEUED, 1)
    assert run.error == (
        "Attempt 1 stopped (torchrun exited with code 1: a process was killed (rank 1, exit code "
        "-9)); queued again."
    )
    assert len(enqueued) == 1  # the next attempt; the last one allowed fails as the sweep does
    assert sorted(p.name for p in (checkpoints / "killed").iterdir()) == ["v1"]  # no partial
    published.refresh_from_db()
    assert published.state == ModelVersion.State.PUBLISHED


@pytest.mark.django_db
def test_a_cluster_command_runs_the_bundle_and_the_sweep_records_its_version(
    settings, tiny_model, checkpoints
):
    settings.TRAINING_LAUNCHER = "command"
    settings.TRAINING_LAUNCH_COMMAND = "{python} -m rewardtrain.launch --launcher command {run_dir}"
    project = trainable_project(ProjectFactory(slug="cluster"), tiny_model)
    seed_pairs(project, 40)
    run, _ = training_run_request(project=project, trigger=MANUAL, enqueue=False)

    run = training_run_execute(run_id=run.id)  # the "job" ran to its end while submitted
    assert run.status == TrainingRun.Status.RUNNING
    training_runs_sweep()

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.metrics["train"]["launcher"] == "command"
    assert ModelVersion.objects.get(project=project).state == ModelVersion.State.PUBLISHED


def test_a_cluster_job_that_fails_fails_its_run_with_the_jobs_error_at_the_next_sweep(
    settings, project, tiny_model, checkpoints
):
    settings.TRAINING_LAUNCHER = "command"
    # The "job" finds its bundle changed since it was queued: it must refuse to train.
    settings.TRAINING_LAUNCH_COMMAND = (
        "sh -c 'echo {{}} >> {run_dir}/train.jsonl && "
        "{python} -m rewardtrain.launch {run_dir} || true'"  # a submission returns 0 at once
    )
    trainable_project(project, tiny_model)
    seed_pairs(project, 10)
    run, _ = training_run_request(project=project, trigger=MANUAL, enqueue=False)
    run = training_run_execute(run_id=run.id)
    assert run.status == TrainingRun.Status.RUNNING

    training_runs_sweep()

    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert run.error == (
        "Failed while starting: BundleError: <path> train.jsonl does not match its sha256 in "
        "manifest.json"
    )


def test_a_cluster_job_that_never_starts_is_failed_by_the_sweep(settings, project, checkpoints):
    settings.TRAINING_LAUNCHER = "command"
    settings.TRAINING_LAUNCH_COMMAND = "true {run_dir}"  # accepted, and then nothing runs
    settings.TRAINING_MAX_ATTEMPTS = 1
    seed_pairs(project, 10)
    run, _ = training_run_request(project=project, trigger=MANUAL, enqueue=False)
    run = training_run_execute(run_id=run.id)
    assert run.status == TrainingRun.Status.RUNNING

    training_runs_sweep()
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.RUNNING  # the job may still be waiting for a node

    later = timezone.now() + timedelta(seconds=settings.TRAINING_HEARTBEAT_TIMEOUT + 1)
    swept = training_runs_sweep(now=later)

    assert swept.failed == [run.id]
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert run.error.startswith("Attempt 1 of 1 stopped (no heartbeat from its worker since")


def test_each_pair_of_a_global_batch_goes_to_one_rank_with_its_share_of_the_mean():
    batch = [5, 3, 9, 1, 7]

    assert rank_share(batch, rank=0, world_size=2) == ([5, 9, 7], 1.2)
    assert rank_share(batch, rank=1, world_size=2) == ([3, 1], 0.8)
    assert rank_share(batch, rank=0, world_size=1) == (batch, 1.0)
    assert rank_share([4], rank=1, world_size=2) == ([4], 0.0)  # joins the all-reduce, adds 0


def test_activation_recomputation_is_on_by_default_for_long_inputs_and_changes_no_result(
    tiny_model,
):
    assert TrainConfig(base_model="m", max_length=2048).recompute_activations
    assert not TrainConfig(base_model="m", max_length=256).recompute_activations
    assert not TrainConfig(
        base_model="m", max_length=2048, gradient_checkpointing=False
    ).recompute_activations
    settings = {**TINY_TRAIN_CONFIG, "bf16": False, "epochs": 1}

    kept = train(TrainConfig(base_model=str(tiny_model), **settings), polite_pairs(24))
    recomputed = train(
        TrainConfig(base_model=str(tiny_model), gradient_checkpointing=True, **settings),
        polite_pairs(24),
    )

    assert recomputed.loss_history == pytest.approx(kept.loss_history, abs=1e-6)
    assert not recomputed.model.is_activation_checkpointing
