"""manage.py import_batch <slug> <file>: validate a whole file, then import it or nothing
(or, with --skip-invalid, its valid records, listing the others)."""

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.imports.records import ImportIssue
from annotation.models import Batch, Membership, Project
from annotation.services.imports import ImportRejected, batch_import
from annotation.services.imports.rejects import rejects_path


class Command(BaseCommand):
    help = "Import a JSONL or CSV file (optionally gzipped) into a project."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("file", type=Path)
        parser.add_argument("--format", choices=[f.value for f in Batch.Format], default=None)
        parser.add_argument(
            "--as",
            dest="known_answers",
            choices=[Batch.KnownAnswers.GOLD, Batch.KnownAnswers.SEED],
            default=Batch.KnownAnswers.NONE,
            help="for preference files: gold pairs or seed labels",
        )
        parser.add_argument("--user", help="recorded as the uploader (default: a project admin)")
        parser.add_argument(
            "--allow-duplicate", action="store_true", help="import a file seen before again"
        )
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="import the valid records and list the others (default: import nothing)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"No project with the slug {options['slug']!r}.")
        user = self._uploader(project, options["user"])
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file.")
        with path.open("rb") as fileobj:
            try:
                outcome = batch_import(
                    project=project,
                    fileobj=fileobj,
                    filename=path.name,
                    uploaded_by=user,
                    format=options["format"],
                    known_answers=options["known_answers"],
                    allow_duplicate=options["allow_duplicate"],
                    on_invalid=(
                        Batch.OnInvalid.SKIP if options["skip_invalid"] else Batch.OnInvalid.REFUSE
                    ),
                )
            except ImportRejected as rejected:
                for issue in rejected.issues:
                    self.stderr.write(f"{path.name}: {issue}")
                more = rejected.total - len(rejected.issues)
                if more > 0:
                    self.stderr.write(f"... and {more} more")
                raise CommandError(
                    f"{path.name}: {rejected.total} error(s); nothing was imported."
                ) from None
        batch = outcome.batch
        self.stdout.write(
            f"Imported {path.name} ({batch.get_format_display()}, {batch.records} records): "
            f"{batch.prompts_created} new prompts, {batch.responses_created} new responses, "
            f"{batch.pairs_created} new pairs."
        )
        self._report_skipped(path.name, batch, outcome.skipped)

    def _report_skipped(self, name: str, batch: Batch, issues: tuple[ImportIssue, ...]) -> None:
        if batch.empty_responses:
            self.stdout.write(f"{batch.empty_responses} records have an empty response.")
        if batch.merged:
            self.stdout.write(f"{batch.merged} pairs repeated an earlier pair and were merged.")
        if not batch.skipped:
            return
        for issue in issues:
            self.stderr.write(f"{name}: skipped: {issue}")
        self.stdout.write(f"Skipped {batch.skipped} records with errors:")
        for reason, count in sorted(batch.skipped_reasons.items(), key=lambda kv: -kv[1]):
            self.stdout.write(f"  {count:>8}  {reason}")
        if path := rejects_path(batch):
            self.stdout.write(f"Their original lines ({batch.rejects_kept}) are in {path}.")

    def _uploader(self, project: Project, username: str | None) -> Any:
        users = get_user_model().objects
        if username:
            user = users.filter(username=username).first()
            if user is None:
                raise CommandError(f"No user {username!r}.")
            return user
        admin = (
            Membership.objects.filter(project=project, role=Membership.Role.ADMIN)
            .select_related("user")
            .first()
        )
        if admin is None:
            raise CommandError("The project has no admin; name the uploader with --user.")
        return admin.user
