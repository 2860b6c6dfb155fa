"""manage.py score_file <slug> FILE: score a JSONL file of {"prompt", "response"} objects with the
project's published model, in this process; prints each object with its "score" added."""

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.models import Project
from rewardtrain.selectors import published_version_of

BATCH = 256  # lines read and scored together


class Command(BaseCommand):
    help = "Score (prompt, response) pairs from a JSONL file with the published reward model."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        from rewardtrain.model import load_reward_model  # torch: commands are not the web

        project = Project.objects.filter(slug=options["slug"]).first()
        if project is None:
            raise CommandError(f"No project with the slug {options['slug']!r}.")
        version = published_version_of(project=project)
        if version is None:
            raise CommandError(f"No model is published for {project.slug}.")
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file.")
        root = Path(settings.CHECKPOINT_ROOT)
        model = load_reward_model(
            root / version.path, checkpoint_root=root, expected_sha256=version.file_sha256
        )
        batch: list[dict[str, Any]] = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                batch.append(_item(line, path=path, number=number))
                if len(batch) == BATCH:
                    self._emit(model, batch)
                    batch = []
        if batch:
            self._emit(model, batch)

    def _emit(self, model: Any, batch: list[dict[str, Any]]) -> None:
        scores = model.score([item["prompt"] for item in batch], [i["response"] for i in batch])
        for item, score in zip(batch, scores, strict=True):
            self.stdout.write(json.dumps({**item, "score": score}, ensure_ascii=False))


def _item(line: str, *, path: Path, number: int) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        raise CommandError(f"{path}:{number}: not JSON ({error.msg})") from error
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("prompt"), str | list)
        or not isinstance(item.get("response"), str)
    ):
        raise CommandError(f'{path}:{number}: needs "prompt" (text or messages) and "response"')
    return item
