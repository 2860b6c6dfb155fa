"""manage.py agreement <slug> [--json]: compute a project's agreement now and print it.

Reads the judgments afresh (never a stored report); `--store` also keeps the result as a report,
as the periodic task would, auto-pausing flagged raters where the project asks for it.
"""

import json
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.agreement.reading import headline_reading
from annotation.models import Project
from annotation.selectors.agreement import COEFFICIENT_LABELS, AgreementScope
from annotation.selectors.batches import batches_outside
from annotation.services.agreement import agreement_metrics_compute, agreement_report_create


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD).") from None


def _number(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


class Command(BaseCommand):
    help = "Compute a project's agreement coefficients and rater quality, and print them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--batch", type=int, help="only this batch (id)")
        parser.add_argument("--since", type=_day, help="first day, UTC (YYYY-MM-DD)")
        parser.add_argument("--until", type=_day, help="last day included, UTC (YYYY-MM-DD)")
        parser.add_argument("--store", action="store_true", help="also store it as a report")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"No project with the slug {options['slug']!r}.")
        batch = options["batch"]
        if batches_outside(project=project, batch_ids=[batch]):
            raise CommandError(f"Project {project.slug!r} has no batch with id {batch}.")
        if options["since"] and options["until"] and options["since"] > options["until"]:
            raise CommandError("--since is after --until.")
        scope = AgreementScope(batch_id=batch, since=options["since"], until=options["until"])
        if options["store"]:
            metrics = agreement_report_create(project=project, scope=scope).metrics
        else:
            metrics = agreement_metrics_compute(project=project, scope=scope).metrics
        if options["json"]:
            self.stdout.write(json.dumps(metrics, indent=2))
            return
        self._print(project, metrics)

    def _print(self, project: Project, metrics: dict[str, Any]) -> None:
        counts = metrics["counts"]
        self.stdout.write(
            f"{project.name}: {counts['judgments']} judgments on {counts['pairs']} pairs "
            f"({counts['pairs_judged_twice_or_more']} judged twice or more), "
            f"{counts['raters']} raters"
        )
        for key, label in COEFFICIENT_LABELS.items():
            entry = metrics["coefficients"][key]
            self.stdout.write(
                f"  {label:<40} {_number(entry['value'])}  "
                f"[{_number(entry['low'])}, {_number(entry['high'])}]"
            )
        for reading in headline_reading(metrics["coefficients"]):
            self.stdout.write(f"- {reading.text}")
        flagged = [row for row in metrics["raters"] if row["flags"]]
        if flagged:
            self.stdout.write("Flagged raters:")
            for row in flagged:
                self.stdout.write(
                    f"  {row['username']}: {', '.join(row['flags'])} "
                    f"(agreement {_number(row['agreement_with_others'])}, "
                    f"gold {_number(row['gold_accuracy'])}, {row['judgments']} judgments)"
                )
        else:
            self.stdout.write("No rater flagged.")
        if metrics.get("auto_paused"):
            self.stdout.write(f"Paused now: {', '.join(metrics['auto_paused'])}")
