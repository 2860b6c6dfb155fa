"""manage.py export <slug> --format F -o FILE: the same bytes as the page and the API."""

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.exports.aggregation import TIE_POLICIES
from annotation.exports.labels import AGGREGATIONS, as_aggregation
from annotation.models import Project
from annotation.selectors.batches import batches_outside
from annotation.selectors.exports import EXPORT_FORMATS, ExportOptions, export_stream


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{value!r} is not an ISO 8601 date or date and time.") from None
    if moment.tzinfo is None:
        raise CommandError(f"{value!r} has no time zone; add Z or +00:00.")
    return moment


class Command(BaseCommand):
    help = "Export a project's preferences or judgments (trl, judgments, csv, parquet)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--format", choices=EXPORT_FORMATS, default="trl")
        parser.add_argument(
            "--table", choices=["trl", "judgments"], default="trl", help="what Parquet holds"
        )
        parser.add_argument(
            "-o", "--output", type=Path, help="file to write (default: the server-chosen name)"
        )
        parser.add_argument("--batch", type=int, action="append", default=[], help="batch id")
        parser.add_argument("--since", type=str, help="judgments at or after (ISO 8601, with Z)")
        parser.add_argument("--until", type=str, help="judgments before (ISO 8601, with Z)")
        parser.add_argument("--min-agreement", type=float, default=0.0)
        parser.add_argument("--ties", choices=TIE_POLICIES, default="exclude")
        parser.add_argument(
            "--aggregation", choices=AGGREGATIONS, help="default: the project's setting"
        )
        parser.add_argument("--include-gold", action="store_true")
        parser.add_argument("--include-seed", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"No project with the slug {options['slug']!r}.")
        if not 0.0 <= options["min_agreement"] <= 1.0:
            raise CommandError("--min-agreement must be between 0 and 1.")
        batch_ids = tuple(dict.fromkeys(options["batch"]))
        if unknown := batches_outside(project=project, batch_ids=batch_ids):
            raise CommandError(f"Not batches of {project.slug}: {unknown}.")
        export = export_stream(
            project=project,
            options=ExportOptions(
                format=options["format"],
                table=options["table"],
                batch_ids=batch_ids,
                since=_moment(options["since"]) if options["since"] else None,
                until=_moment(options["until"]) if options["until"] else None,
                min_agreement=options["min_agreement"],
                include_gold=options["include_gold"],
                include_seed=options["include_seed"],
                ties=options["ties"],
                aggregation=as_aggregation(options["aggregation"] or project.aggregation),
                min_posterior=project.min_posterior,
            ),
        )
        path: Path = options["output"] or Path(export.filename)
        # Written under a temporary name and renamed: an interrupted export leaves no partial
        # file under the name asked for.
        partial = path.with_name(f".{path.name}.partial")
        size = 0
        try:
            with partial.open("wb") as out:
                for chunk in export.chunks:
                    out.write(chunk)
                    size += len(chunk)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        self.stderr.write(f"{path}: {size} bytes")
