"""Recovering background imports whose message or worker was lost (beat, `batch_imports_sweep`).

Two ways a large import used to stay unfinished for good:

- the broker was down when the batch was created: the upload answered 202, the message was never
  sent, and the batch stayed pending. A pending batch records when it was last sent
  (`heartbeat_at`); the sweep sends it again once IMPORT_HEARTBEAT_TIMEOUT has passed. A second
  message for a batch already taken is a no-op, so sending twice is safe.
- the worker died mid-import (OOM, SIGKILL, the task's hard time limit): the transaction rolled
  back, and the batch stayed running. A running import's heartbeat is written every second by
  its worker; when it has been silent for IMPORT_HEARTBEAT_TIMEOUT, the sweep makes the batch
  pending again and sends it, until IMPORT_MAX_ATTEMPTS workers have taken it; then it fails it
  with the reason, and the upload must be made again.

Every change is a conditional update naming the state the sweep saw (status, attempt, heartbeat),
so a worker that sends a heartbeat or finishes meanwhile, or a second sweep, wins the race and
the sweep does nothing to that batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from annotation.models import Batch
from annotation.services.imports.staging import staged_upload_discard
from annotation.task_names import BATCH_IMPORT_RUN
from config.celery import enqueue_on_commit


@dataclass(frozen=True, kw_only=True)
class ImportSweep:
    requeued: list[int]  # running batches whose worker died, sent to a new worker
    failed: list[int]  # the same, after their last allowed attempt
    resent: list[int]  # pending batches whose message may have been lost


def import_silence_allowed() -> timedelta:
    """How long a batch may go without a heartbeat before the sweep acts on it.

    On SQLite the import's transaction holds the only write lock, so no heartbeat is written while
    it runs: there only the task's time limit tells a dead import from a slow one.
    """
    seconds = settings.IMPORT_HEARTBEAT_TIMEOUT
    if connection.vendor != "postgresql":
        seconds = max(seconds, settings.IMPORT_TIME_LIMIT)
    return timedelta(seconds=seconds)


def batch_imports_sweep(*, now: datetime | None = None) -> ImportSweep:
    """Retry or fail running imports whose worker died; send silent pending ones again."""
    now = now or timezone.now()
    silent = Q(heartbeat_at__lt=now - import_silence_allowed()) | Q(heartbeat_at__isnull=True)
    requeued: list[int] = []
    failed: list[int] = []
    for batch in Batch.objects.filter(silent, status=Batch.Status.RUNNING):
        if batch.attempts < settings.IMPORT_MAX_ATTEMPTS:
            if _requeue(batch, now=now):
                requeued.append(batch.id)
        elif _fail_for_good(batch):
            failed.append(batch.id)
    resent = [
        batch.id
        for batch in Batch.objects.filter(silent, status=Batch.Status.PENDING)
        if _send_again(batch, now=now)
    ]
    return ImportSweep(requeued=requeued, failed=failed, resent=resent)


def _as_seen(batch: Batch) -> Q:
    """The batch still as the sweep read it: nobody took, finished or touched it meanwhile."""
    return Q(
        id=batch.id, status=batch.status, attempts=batch.attempts, heartbeat_at=batch.heartbeat_at
    )


def _silence(batch: Batch) -> str:
    last = batch.heartbeat_at or batch.created_at
    return f"no heartbeat from its worker since {last:%Y-%m-%d %H:%M:%S} UTC"


@transaction.atomic
def _requeue(batch: Batch, *, now: datetime) -> bool:
    taken = Batch.objects.filter(_as_seen(batch)).update(
        status=Batch.Status.PENDING,
        progress=0.0,
        heartbeat_at=now,
        error=f"Attempt {batch.attempts} stopped ({_silence(batch)}); it will be tried again.",
    )
    if taken:
        enqueue_on_commit(BATCH_IMPORT_RUN, batch.id)
    return bool(taken)


def _fail_for_good(batch: Batch) -> bool:
    taken = Batch.objects.filter(_as_seen(batch)).update(
        status=Batch.Status.FAILED,
        staged_upload="",
        error=(
            f"the worker importing it stopped in each of {batch.attempts} attempts (the last: "
            f"{_silence(batch)}); upload the file again, split into smaller files if it is large"
        ),
    )
    if taken:
        staged_upload_discard(token=batch.staged_upload)
    return bool(taken)


@transaction.atomic
def _send_again(batch: Batch, *, now: datetime) -> bool:
    taken = Batch.objects.filter(_as_seen(batch)).update(heartbeat_at=now)
    if taken:
        enqueue_on_commit(BATCH_IMPORT_RUN, batch.id)
    return bool(taken)
