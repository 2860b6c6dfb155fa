"""Cached project counts, so that listing many projects never counts their big tables."""

from __future__ import annotations

from django.db.models import Count, F, Q
from django.utils import timezone

from annotation.models import Judgment, Pair, Project


def project_stats_refresh(*, project_id: int) -> Project | None:
    """Recount a project's prompts, pairs and judgments into `Project.stats`.

    Idempotent: a second delivery recounts and writes the same numbers.
    """
    project = Project.objects.filter(id=project_id).first()
    if project is None:
        return None  # deleted since the task was queued
    pairs = Pair.objects.filter(project=project, is_active=True).aggregate(
        pairs=Count("id"),
        complete=Count("id", filter=Q(judgments_count__gte=F("judgments_needed"))),
    )
    project.stats = {
        "prompts": project.prompts.count(),
        "pairs": pairs["pairs"],
        "pairs_complete": pairs["complete"],
        "judgments": Judgment.objects.filter(pair__project=project).count(),
    }
    project.stats_refreshed_at = timezone.now()
    project.save(update_fields=["stats", "stats_refreshed_at"])
    return project
