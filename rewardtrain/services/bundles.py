"""Old run bundles go: a bundle is its attempt's record, a copy of its training pairs (a
million pairs make about a gigabyte), and nothing reads it once its run has finished.

`bundles_expire` (called by the training sweep) removes the bundle directories of runs that
finished more than TRAINING_BUNDLE_KEEP_DAYS ago, and of runs that no longer exist (their
project was deleted) or ended without a time, once the directory is that old. Bundles of queued
and running runs, and of runs finished more recently, stay. Work: one pass over `_runs/`;
memory: BUNDLE_CHUNK directories and their runs at a time.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from rewardtrain.bundle import RUNS_DIR, bundle_run_id
from rewardtrain.models import TrainingRun

BUNDLE_CHUNK = 500  # bundle directories looked up per query


def bundles_expire(*, now: datetime | None = None) -> list[Path]:
    """Remove the bundles whose run finished (or vanished) more than the kept days ago; which."""
    if settings.TRAINING_BUNDLE_KEEP_DAYS <= 0:
        return []
    folder = Path(settings.CHECKPOINT_ROOT) / RUNS_DIR
    if not folder.is_dir():
        return []
    before = (now or timezone.now()) - timedelta(days=settings.TRAINING_BUNDLE_KEEP_DAYS)
    removed: list[Path] = []
    chunk: dict[Path, int] = {}
    for directory in folder.iterdir():
        run_id = bundle_run_id(directory)
        if run_id is not None and directory.is_dir():
            chunk[directory] = run_id
        if len(chunk) == BUNDLE_CHUNK:
            removed += _remove_expired(chunk, before)
            chunk = {}
    return removed + _remove_expired(chunk, before)


def _remove_expired(bundles: dict[Path, int], before: datetime) -> list[Path]:
    runs = (
        TrainingRun.objects.filter(id__in=set(bundles.values()))
        .only("id", "status", "finished_at")
        .in_bulk()
    )
    expired = []
    for directory, run_id in bundles.items():
        run = runs.get(run_id)
        if run is not None and run.is_active:
            continue
        # A finished run's end, else (a deleted run, one ended without a time) the last write.
        finished = run.finished_at if run is not None else None
        gone = finished < before if finished is not None else _written_before(directory, before)
        if gone:
            shutil.rmtree(directory, ignore_errors=True)
            expired.append(directory)
    return expired


def _written_before(directory: Path, before: datetime) -> bool:
    try:
        return datetime.fromtimestamp(directory.stat().st_mtime, tz=before.tzinfo) < before
    except FileNotFoundError:
        return False
