"""Celery tasks of training: ids in, nothing out, each a hand-over to one service.

Routed to the `training` queue (settings.CELERY_TASK_ROUTES); beat sends the schedule and the
sweep to `default`, so finding a dead training worker never waits behind a training run. The
services are imported inside the tasks: torch loads in the worker only.
"""

from celery import shared_task
from django.conf import settings


@shared_task(
    acks_late=True,
    soft_time_limit=settings.TRAINING_TIME_LIMIT,  # raises inside the run: it fails cleanly
    time_limit=settings.TRAINING_TIME_LIMIT + 120,
)
def training_run_execute(run_id: int) -> None:
    from rewardtrain.services.runs import training_run_execute as execute

    execute(run_id=run_id)


@shared_task(acks_late=True, time_limit=120)
def training_runs_schedule() -> None:
    from rewardtrain.services.runs import training_runs_schedule as schedule

    schedule()


@shared_task(acks_late=True, time_limit=300)
def training_runs_sweep() -> None:
    from rewardtrain.services.runs import training_runs_sweep as sweep

    sweep()


@shared_task(acks_late=True, time_limit=settings.TRAINING_TIME_LIMIT)
def pool_score(project_id: int) -> None:
    """Score the project's open pairs with its published version (redelivered if the worker dies;
    the service resumes from what the database already holds)."""
    from rewardtrain.services.pool import pool_score as score

    score(project_id=project_id)


@shared_task(acks_late=True, time_limit=120)
def pool_score_sweep() -> None:
    """Send pool scoring again where a published version left open pairs unscored (beat, on the
    default queue: it only finds and sends; the scoring itself goes to `training`)."""
    from rewardtrain.services.pool import pool_score_sweep as sweep

    sweep()
