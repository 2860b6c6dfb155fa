"""manage.py retrain <slug> [--wait]: queue a training run, or run it here and print progress."""

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.models import Project
from rewardtrain.models import TrainingRun
from rewardtrain.services.runs import (
    TrainingRequestError,
    training_run_execute,
    training_run_request,
)


class Command(BaseCommand):
    help = "Retrain a project's reward model on its judgments so far."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument(
            "--wait",
            action="store_true",
            help="train in this process and print progress (default: queue it for a worker)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"No project with the slug {options['slug']!r}.")
        wait = options["wait"]
        try:
            run, created = training_run_request(
                project=project, trigger=TrainingRun.Trigger.MANUAL, enqueue=not wait
            )
        except TrainingRequestError as error:
            raise CommandError(str(error)) from error
        if not created:
            self.stdout.write(f"Run {run.id} of {project.slug} is already {run.status}.")
            if wait:
                run = self._follow(run)
        elif wait:
            self.stdout.write(
                f"Run {run.id}: judgments up to id {run.data_cutoff_judgment_id}, training here."
            )
            run = training_run_execute(run_id=run.id, echo=self.stdout.write)
        else:
            self.stdout.write(f"Run {run.id} queued for a training worker.")
            return
        self._report(run)

    def _follow(self, run: TrainingRun) -> TrainingRun:
        while run.is_active:
            self.stdout.write(f"  {run.status} {run.progress:6.1%}")
            time.sleep(5)
            run.refresh_from_db()
        return run

    def _report(self, run: TrainingRun) -> None:
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"Run {run.id} {run.status}: {run.error}")
        heldout = run.metrics.get("heldout", {})
        accuracy = heldout.get("accuracy")
        promotion = run.metrics.get("promotion", {})
        state = "published" if promotion.get("published") else "kept as a candidate"
        self.stdout.write(
            f"v{run.metrics.get('version')}: held-out accuracy "
            f"{'n/a' if accuracy is None else f'{accuracy:.1%}'} on {heldout.get('count', 0)} "
            f"pairs; {state} ({promotion.get('reason', '')})."
        )
