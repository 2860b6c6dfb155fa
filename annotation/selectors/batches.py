"""Reading a project's batches: the list on the batches page and the API, and one by id."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import QuerySet
from django.http import Http404

from annotation.models import Batch, Project

MAX_ID = 2**63 - 1  # the largest primary key a database stores


def batch_list(*, project: Project) -> QuerySet[Batch]:
    """The project's batches, newest first, with their uploaders."""
    return (
        Batch.objects.filter(project=project)
        .select_related("uploaded_by")
        .order_by("-created_at", "-id")
    )


def batch_get(*, project: Project, batch_id: int) -> Batch:
    """One batch of `project`; 404 for a batch of any other project."""
    batch = batch_list(project=project).filter(id=batch_id).first()
    if batch is None:
        raise Http404("No such batch.")
    return batch


def batches_outside(*, project: Project, batch_ids: Iterable[int | None]) -> list[int]:
    """The ids among `batch_ids` that are not batches of `project`, in the order given: the one
    check of "this batch belongs to this project" for every scope a caller names batches in.
    None (no batch named) is skipped; with no id left there is no query. An id past a 64-bit
    key names no batch, and is not sent: SQLite refuses such an integer outright."""
    wanted = list(dict.fromkeys(b for b in batch_ids if b is not None))
    storable = [b for b in wanted if 0 < b <= MAX_ID]
    if not storable:
        return wanted
    known = set(Batch.objects.filter(project=project, id__in=storable).values_list("id", flat=True))
    return [b for b in wanted if b not in known]
