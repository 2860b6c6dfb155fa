"""Celery tasks of the annotation app: thin hand-overs to services, ids in, nothing out."""

from celery import shared_task
from django.conf import settings

from annotation.models import Project
from annotation.selectors.agreement import AgreementScope, projects_due_for_report
from annotation.services.agreement import agreement_report_refresh as _agreement_report_refresh
from annotation.services.imports import batch_import_run as _batch_import_run
from annotation.services.imports import batch_imports_sweep as _batch_imports_sweep
from annotation.services.imports import rejects_orphans_clean as _rejects_orphans_clean
from annotation.services.imports import staged_uploads_clean as _staged_uploads_clean
from annotation.services.stats import project_stats_refresh as _project_stats_refresh
from annotation.task_names import BATCH_IMPORT_RUN, PROJECT_STATS_REFRESH


@shared_task(name=PROJECT_STATS_REFRESH, acks_late=True, time_limit=300)
def project_stats_refresh(project_id: int) -> None:
    _project_stats_refresh(project_id=project_id)


@shared_task(acks_late=True, time_limit=60)
def project_stats_refresh_all() -> None:
    for project_id in Project.objects.filter(archived_at__isnull=True).values_list("id", flat=True):
        project_stats_refresh.delay(project_id)


@shared_task(acks_late=True, time_limit=300)
def agreement_report_refresh(project_id: int, scope: dict | None = None) -> None:
    """A current agreement report of the project (whole, or the stored `scope` filters)."""
    _agreement_report_refresh(
        project_id=project_id, scope=AgreementScope.from_json(scope) if scope else None
    )


@shared_task(acks_late=True, time_limit=60)
def agreement_report_refresh_due() -> None:
    for project_id in projects_due_for_report():
        agreement_report_refresh.delay(project_id)


@shared_task(name=BATCH_IMPORT_RUN, acks_late=True, time_limit=settings.IMPORT_TIME_LIMIT)
def batch_import_run(batch_id: int) -> None:
    """Import a large upload; the service leaves a batch that is not pending alone."""
    _batch_import_run(batch_id=batch_id)


@shared_task(acks_late=True, time_limit=120)
def batch_imports_sweep() -> None:
    """Send pending imports again, and retry or fail those whose worker died."""
    _batch_imports_sweep()


@shared_task(acks_late=True, time_limit=300)
def staged_uploads_clean() -> None:
    _staged_uploads_clean()


@shared_task(acks_late=True, time_limit=300)
def rejects_orphans_clean() -> None:
    _rejects_orphans_clean()
