"""Run a bundle without the database: `python -m rewardtrain.launch <run dir>`.

One process, or each rank of `torchrun` (which sets RANK, WORLD_SIZE and the rendezvous): with
WORLD_SIZE > 1 it joins the process group (`nccl` on CUDA, `gloo` on the CPU) and `train()`
shards each batch across the ranks under DistributedDataParallel. Only rank 0 then evaluates
the new model (and the published one) on the held-out pairs, writes the version directory
(`checkpoint_write`: temporary name, verified, renamed) and reports, through `progress.json`
in the run directory: phase, progress, loss curve, a heartbeat, and at the end the outcome or
the error. Whoever launched it (the Celery task, or the sweep for a cluster job) relays that
file into the database; no rank ever touches the database.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from torch import distributed as dist

from rewardtrain.bundle import PROGRESS, Bundle, bundle_read, write_json_atomic
from rewardtrain.checkpoints import checkpoint_write
from rewardtrain.data import data_sha256
from rewardtrain.ensemble import ensemble_fit
from rewardtrain.model import load_reward_model, resolve_device
from rewardtrain.train import (
    Progress,
    TrainResult,
    evaluate,
    mcnemar_exact_test,
    train,
    version_metadata,
)

PROGRESS_EVERY_S = 2.0  # the file is rewritten at most this often while training
LOSS_CURVE_POINTS = 200  # the stored curve of a finished run: window means of the step losses
Phase = Callable[..., None]  # phase(name, progress=fraction of the whole run)


class ProgressFile:
    """Rank 0's reports: rewritten atomically, at most every few seconds while training, and
    passed on to in-process callbacks (the inline launcher's database reporter)."""

    def __init__(
        self,
        directory: Path,
        *,
        phase: Phase | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.path = directory / PROGRESS
        self.record: dict[str, Any] = {"state": "running", "phase": "starting", "progress": 0.0}
        self.record["curve"] = []
        self._phase = phase
        self._progress = progress
        self._last_write = 0.0

    def phase(self, name: str, *, progress: float) -> None:
        self.record.update(phase=name, progress=progress)
        self.write()
        if self._phase is not None:
            self._phase(name, progress=progress)

    def train_progress(self, fraction: float, info: dict[str, float]) -> None:
        self.record["curve"].append([int(info["step"]), round(float(info["loss"]), 5)])
        self.record["progress"] = 0.05 + 0.8 * fraction
        if time.monotonic() - self._last_write >= PROGRESS_EVERY_S or fraction >= 1.0:
            self.write()
        if self._progress is not None:
            self._progress(fraction, info)

    def write(self, **fields: Any) -> None:
        self.record.update(fields, heartbeat=time.time())
        write_json_atomic(self.path, self.record)
        self._last_write = time.monotonic()


def run_bundle(
    directory: str | Path,
    *,
    launcher: str,
    phase: Phase | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any] | None:
    """Train, evaluate and write one attempt; rank 0 returns the outcome, other ranks None.

    The callbacks are for a launcher in the same process; `progress.json` gets it all anyway.
    """
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    report = None
    if rank == 0:
        report = ProgressFile(Path(directory).resolve(), phase=phase, progress=progress)
    try:
        bundle = bundle_read(directory)
        devices = _devices(bundle, world_size)
        launch = {"launcher": launcher, "world_size": world_size, "devices": devices}
        if report is not None:
            report.record["launch"] = launch
            report.phase("training", progress=0.05)
        init_from = bundle.job.get("init_from")
        result = train(
            bundle.config,
            bundle.train_pairs,
            init_from=bundle.checkpoint_root / init_from if init_from else None,
            progress=report.train_progress if report is not None else None,
            should_stop=should_stop,
        )
        if report is None:
            return None
        outcome = _evaluate_and_write(bundle, result, report=report, launch=launch)
    except BaseException as error:
        if report is not None:
            report.write(state="failed", error=f"{type(error).__name__}: {error}")
        raise
    report.write(state="done", progress=0.99, outcome=outcome)
    return outcome


def _devices(bundle: Bundle, world_size: int) -> list[str]:
    """Each rank's host and device, in rank order (a collective: every rank calls it)."""
    device = resolve_device(bundle.config.device)
    name = "cpu"
    if device.type == "cuda":
        name = f"cuda:{torch.cuda.current_device()} ({torch.cuda.get_device_name()})"
    mine = f"{socket.gethostname()} {name}"
    if world_size == 1:
        return [mine]
    every: list[Any] = [None] * world_size
    dist.all_gather_object(every, mine)
    return [str(name) for name in every]


def _evaluate_and_write(
    bundle: Bundle, result: TrainResult, *, report: ProgressFile, launch: dict[str, Any]
) -> dict[str, Any]:
    config, job = bundle.config, bundle.job
    report.phase("evaluating the new version", progress=0.86)
    heldout = evaluate(
        result.model,
        result.tokenizer,
        result.spec,
        bundle.heldout,
        batch_size=config.eval_batch_size,
        bf16=config.bf16,
    )
    correct_new = heldout.pop("correct")
    compared = None
    if job.get("published") is not None:
        report.phase("evaluating the published version", progress=0.9)
        compared = _evaluate_published(bundle, correct_new=correct_new)
    report.phase("fitting the uncertainty heads", progress=0.93)
    ensemble = ensemble_fit(result, bundle.train_pairs)
    ensemble_metadata, ensemble_tensors = ensemble.checkpoint_parts() if ensemble else ({}, None)
    report.phase("writing the checkpoint", progress=0.95)
    metrics = {**heldout, "compared_with": compared}
    written = checkpoint_write(
        root=bundle.checkpoint_root,
        project=job["project"],
        version=job["version"],
        model=result.model,
        tokenizer=result.tokenizer,
        metadata=version_metadata(
            result,
            data_cutoff=job["data_cutoff"],
            data_sha256=data_sha256(bundle.train_pairs),
            counts=job["counts"],
            metrics=metrics,
            launch=launch,
        )
        | ensemble_metadata,
        extra_tensors=ensemble_tensors,
    )
    stats = result.stats()
    stats.pop("loss_history")
    return {
        "version": job["version"],
        "path": written.path.relative_to(bundle.checkpoint_root).as_posix(),
        "files_sha256": written.files_sha256,
        "metrics": metrics,
        "heldout": heldout,
        "train": {**stats, "world_size": launch["world_size"], "launcher": launch["launcher"]},
        "loss_curve": _window_means(result.loss_history),
    }


def _evaluate_published(bundle: Bundle, *, correct_new: list[bool]) -> dict[str, Any]:
    """The published version on the same held-out pairs, and the paired test against it."""
    published, config = bundle.job["published"], bundle.config
    try:
        reward_model = load_reward_model(
            bundle.checkpoint_root / published["path"],
            checkpoint_root=bundle.checkpoint_root,
            expected_sha256=published["file_sha256"],
            device=config.device,
            bf16=config.bf16,
            bf16_weights=False,  # the new version is scored with fp32 weights too
        )
    except Exception as error:  # a published version that cannot load cannot serve either
        return {"version": published["version"], "error": f"{type(error).__name__}: {error}"}
    old = evaluate(
        reward_model.model,
        reward_model.tokenizer,
        reward_model.spec,
        bundle.heldout,
        batch_size=config.eval_batch_size,
        bf16=config.bf16,
    )
    correct_old = old.pop("correct")
    return {
        "version": published["version"],
        "metrics": old,
        "test": mcnemar_exact_test(correct_new, correct_old),
    }


def _window_means(losses: list[float]) -> list[list[float]]:
    size = max(1, -(-len(losses) // LOSS_CURVE_POINTS))
    return [
        [start + len(losses[start : start + size]), round(sum(window) / len(window), 5)]
        for start in range(0, len(losses), size)
        if (window := losses[start : start + size])
    ]


def main(argv: list[str] | None = None) -> int:
    """One rank of a launch; the process group spans every rank torchrun started."""
    parser = argparse.ArgumentParser(prog="python -m rewardtrain.launch", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="the run's bundle directory")
    parser.add_argument("--launcher", default="command", help="recorded in pairwise.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        cuda = torch.cuda.is_available() and _wants_cuda(args.run_dir)
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(minutes=30))
    try:
        run_bundle(args.run_dir, launcher=args.launcher)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _wants_cuda(directory: Path) -> bool:
    device = json.loads((directory / "config.json").read_text("utf-8")).get("device", "auto")
    return bool(device in ("auto", "cuda"))


if __name__ == "__main__":
    sys.exit(main())
