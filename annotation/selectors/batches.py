"""Reading a project's batches: the list on the batches page and the API, and one by id."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from annotation.models import Batch, Project


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
