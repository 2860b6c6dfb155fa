"""Retiring a batch: its pairs stop being served; its judgments stay."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from annotation.models import Batch, Pair
from annotation.task_names import PROJECT_STATS_REFRESH
from config.celery import enqueue_on_commit


@transaction.atomic
def batch_retire(*, batch: Batch) -> Batch:
    """Stop serving the pairs this batch created. Judgments, and leases already handed out, are
    kept; a pair that an earlier batch created is that batch's and stays served."""
    batch = Batch.objects.select_for_update().get(id=batch.id)
    if batch.retired_at is None and batch.status == Batch.Status.DONE:
        batch.retired_at = timezone.now()
        batch.save(update_fields=["retired_at"])
        Pair.objects.filter(batch=batch).update(is_active=False)
        enqueue_on_commit(PROJECT_STATS_REFRESH, batch.project_id)
    return batch


@transaction.atomic
def batch_unretire(*, batch: Batch) -> Batch:
    """Serve a retired batch's pairs again."""
    batch = Batch.objects.select_for_update().get(id=batch.id)
    if batch.retired_at is not None:
        batch.retired_at = None
        batch.save(update_fields=["retired_at"])
        Pair.objects.filter(batch=batch).update(is_active=True)
        enqueue_on_commit(PROJECT_STATS_REFRESH, batch.project_id)
    return batch
