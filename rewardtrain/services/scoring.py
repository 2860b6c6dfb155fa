"""The score API's side of scoring: forward to the scorer process over HTTP (no torch here)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from annotation.models import Project
from rewardtrain import selectors


class ScoringUnavailable(Exception):
    """No score can be given now (nothing published, scorer down); the message says why."""


@dataclass(frozen=True, kw_only=True)
class Scores:
    model_version: int
    scores: list[float]


def scores_for(*, project: Project, items: list[dict[str, Any]]) -> Scores:
    """Scores of (prompt, response) items by the project's published model, from the scorer."""
    if selectors.published_version_of(project=project) is None:
        raise ScoringUnavailable(
            f"No model is published for project {project.slug} yet: train one on its "
            "training page, or publish a candidate version."
        )
    body = json.dumps({"project": project.slug, "items": items}).encode()
    request = urllib.request.Request(  # noqa: S310 - SCORER_URL is our own setting, http(s) only
        settings.SCORER_URL.rstrip("/") + "/score",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.SCORER_TIMEOUT) as response:  # noqa: S310
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            detail = _detail(error.read())
        raise ScoringUnavailable(f"The scorer could not score: {detail}") from error
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise ScoringUnavailable(
            f"The scorer at {settings.SCORER_URL} is not answering ({error}); it is started "
            "with `manage.py scorer`."
        ) from error
    return Scores(model_version=answer["model_version"], scores=answer["scores"])


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body)["detail"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")
