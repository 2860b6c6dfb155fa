"""The score client: the web process's side of the score API, forwarding to the score server over
HTTP (no torch here).

Score requests carry a secret shared by web and score server (`X-Score-Server-Secret`). Errors
reach any member of the project, so they name no server path and no internal address: the log
has those.
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


class ScoresUnavailable(Exception):
    """No score can be given now (nothing published, score server down); the message says why."""


@dataclass(frozen=True, kw_only=True)
class Scores:
    model_version: int
    scores: list[float]


def score_server_secret() -> str:
    """The secret web and score server share: SCORE_SERVER_SECRET, or one derived from SECRET_KEY
    when that is not set (both processes have the same SECRET_KEY, so nothing else needs
    configuring)."""
    if settings.SCORE_SERVER_SECRET:
        return str(settings.SCORE_SERVER_SECRET)
    # The salt keeps the process's first name: renaming it would change every derived secret.
    return salted_hmac("pairwise.scorer", "scorer-secret", algorithm="sha256").hexdigest()


def scores_for(*, project: Project, items: list[dict[str, Any]]) -> Scores:
    """Scores of (prompt, response) items by the project's published model, from the score
    server."""
    if selectors.published_version_of(project=project) is None:
        raise ScoresUnavailable(
            f"No model is published for project {project.slug} yet: train one on its "
            "training page, or publish a candidate version."
        )
    body = json.dumps({"project": project.slug, "items": items}).encode()
    request = urllib.request.Request(  # noqa: S310 - SCORE_SERVER_URL is our own setting, http(s) only
        settings.SCORE_SERVER_URL.rstrip("/") + "/score",
        data=body,
        headers={
            "Content-Type": "application/json",
            "X-Score-Server-Secret": score_server_secret(),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=settings.SCORE_SERVER_TIMEOUT) as response:  # noqa: S310
            answer = json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            detail = _detail(error.read())
        logger.warning("the score server answered %s: %s", error.code, detail)
        if error.code == 401:
            detail = "the score server refused this web process (SCORE_SERVER_SECRET differs)"
        raise ScoresUnavailable(
            f"The score server could not score: {without_server_paths(detail)}"
        ) from error
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        logger.warning(
            "the score server at %s is not answering: %s", settings.SCORE_SERVER_URL, error
        )
        raise ScoresUnavailable(
            "The score server is not answering; it is started with `manage.py score_server`."
        ) from error
    return Scores(model_version=answer["model_version"], scores=answer["scores"])


def _detail(body: bytes) -> str:
    try:
        return str(json.loads(body)["detail"])
    except (ValueError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")
