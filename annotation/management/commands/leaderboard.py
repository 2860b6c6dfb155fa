"""manage.py leaderboard <slug> [--json]: a project's model leaderboard, computed now.

Never cached: the command always reads the judgments afresh.
"""

import json
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.leaderboard.reading import leaderboard_reading
from annotation.models import Project
from annotation.selectors.batches import batches_outside
from annotation.selectors.leaderboard import LeaderboardScope
from annotation.services.leaderboard import (
    DEFAULT_ROUNDS,
    leaderboard_as_json,
    leaderboard_compute,
)


def _day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not a date (YYYY-MM-DD).") from None


class Command(BaseCommand):
    help = "Rate the models of a project (Bradley-Terry, bootstrap intervals) and print it."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--json", action="store_true", help="print the API's JSON")
        parser.add_argument("--batch", type=int, help="only this batch (id)")
        parser.add_argument("--since", type=_day, help="first day, UTC (YYYY-MM-DD)")
        parser.add_argument("--until", type=_day, help="last day included, UTC (YYYY-MM-DD)")
        parser.add_argument("--criterion", help="rate on this criterion's choices")
        parser.add_argument("--style-control", action="store_true", help="control for style")
        parser.add_argument(
            "--include-known", action="store_true", help="count gold and seed pairs too"
        )
        parser.add_argument("--exclude-both-bad", action="store_true", help="drop 'both bad'")
        parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="bootstrap rounds")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"No project with the slug {options['slug']!r}.")
        batch = options["batch"]
        if batches_outside(project=project, batch_ids=[batch]):
            raise CommandError(f"Project {project.slug!r} has no batch with id {batch}.")
        criterion = options["criterion"]
        if criterion is not None and criterion not in project.criteria:
            raise CommandError(f"Project {project.slug!r} has no criterion {criterion!r}.")
        if options["rounds"] < 1:
            raise CommandError("--rounds must be at least 1.")
        scope = LeaderboardScope(
            batch_id=batch,
            since=options["since"],
            until=options["until"],
            criterion=criterion,
            include_known=options["include_known"],
            both_bad="exclude" if options["exclude_both_bad"] else "tie",
        )
        board = leaderboard_compute(
            project=project,
            scope=scope,
            style_control=options["style_control"],
            rounds=options["rounds"],
            use_cache=False,
        )
        if options["json"]:
            self.stdout.write(json.dumps(leaderboard_as_json(board, scope=scope), indent=2))
            return
        if board is None:
            self.stdout.write("No leaderboard: no two named models battled in this scope.")
            return
        self.stdout.write(f"{'rank':>4}  {'model':30} {'rating':>7}  {'95% interval':>13}  battles")
        for row in board.ratings:
            interval = f"{row.ci_low:.0f}-{row.ci_high:.0f}"
            self.stdout.write(
                f"{row.rank:>4}  {row.model[:30]:30} {row.rating:7.0f}  {interval:>13}  "
                f"{row.battles}"
            )
        self.stdout.write("")
        for line in leaderboard_reading(board):
            self.stdout.write(line)
