"""The score API's side of scoring: forward to the scorer process over HTTP (no torch here).

Score requests carry a secret shared by web and scorer (`X-Scorer-Secret`). Errors reach any
member of the project, so they name no server path and no internal address: the log has those.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.crypto import salted_hmac

from annotation.models import Project
from annotation.selectors.server_paths import without_server_paths
from rewardtrain import selectors

logger = logging.getLogger(__name__)


class ScoringUnavailable(Exception):
    """No score can be given now (nothing published, scorer down); the message says why."""


@dataclass(frozen=True, kw_only=True)
class Scores:
    model_version: int
    scores: list[float]


def scorer_secret() -> str:
    """The secret web and scorer share: SCORER_SECRET, or one derived from SECRET_KEY when that
    is not set (both processes have the same SECRET_KEY, so nothing else needs configuring)."""
    if settings.SCORER_SECRET:
        return str(settings.SCORER_SECRET)
    return salted_hmac("pairwise.scorer", "scorer-secret", algorithm="sha256").hexdigest()


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
        headers={"Content-Type": "application/json", "X-Scorer-Secret": scorer_secret()},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.SCORER_TIMEOUT) as response:  # noqa: S310
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            detail = _detail(error.read())
        logger.warning("the scorer answered %s: %s", error.code, detail)
        if error.code == 401:
            detail = "the scorer refused this web process (SCORER_SECRET differs)"
        raise ScoringUnavailable(
            f"The scorer could not score: {without_server_paths(detail)}"
        ) from error
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        logger.warning("the scorer at %s is not answering: %s", settings.SCORER_URL, error)
        raise ScoringUnavailable(
            "The scorer is not answering; it is started with `manage.py scorer`."
        ) from error
    return Scores(model_version=answer["model_version"], scores=answer["scores"])


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body)["detail"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")
