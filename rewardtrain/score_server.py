"""The score server (`manage.py score_server`): scores (prompt, response) pairs with each project's
published reward model, over HTTP on an internal address, for the web process's score API.

The web process never imports torch (design.md section 1), so it forwards score requests here.
Requests are handled on threads, but one thread runs the models: it takes every request waiting
(up to MAX_BATCH_ITEMS pairs), groups them by project and scores each group in length-sorted
batches, so concurrent small requests share forward passes. Each batch looks up the published
version (one query) and loads it when it changed, verifying every file's sha256 against the
database and refusing anything outside CHECKPOINT_ROOT.

Every score request must carry the shared secret (`X-Score-Server-Secret`, see
rewardtrain.services.score_client.score_server_secret): anything else that reaches the port (another
container, a forwarded port) gets 401. It is still no public service: bind it to an internal
network only (docker-compose.yml does).

    POST /score   {"project": slug, "items": [{"prompt", "response"}]}, X-Score-Server-Secret
                  -> 200 {"model_version": N, "scores": [...]}, 404 nothing published,
                     503 the published version failed its check, 400 bad input,
                     401 no or a wrong secret
    GET  /health  -> 200 {"status": "ok"}
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.db import close_old_connections

from rewardtrain.data import Prompt
from rewardtrain.model import RewardModel, load_reward_model
from rewardtrain.models import ModelVersion

logger = logging.getLogger(__name__)

MAX_BATCH_ITEMS = 512  # pairs scored together at most; a request may carry up to this many
MAX_BODY_BYTES = 8 * 1024 * 1024
GATHER_WAIT_S = 0.003  # how long the model thread waits for more requests to join a batch
MODELS_KEPT = 4  # projects whose models stay in memory (least recently used goes first)
REQUEST_TIMEOUT_S = 120.0

StartResponse = Callable[..., Any]


class NothingPublished(Exception):
    pass


class ModelRefused(Exception):
    """The published version failed verification or could not load."""


@dataclass(eq=False)
class _Job:
    project: str
    prompts: list[Prompt]
    responses: list[str]
    done: threading.Event = field(default_factory=threading.Event)
    version: int = 0
    scores: list[float] = field(default_factory=list)
    error: Exception | None = None


class ModelCache:
    """Each project's published model, reloaded when the published version changes."""

    def __init__(self, *, device: str = "auto") -> None:
        self.device = device
        self._models: OrderedDict[int, tuple[int, RewardModel]] = OrderedDict()

    def published(self, project: str) -> tuple[int, RewardModel]:
        version = (
            ModelVersion.objects.filter(project__slug=project, state=ModelVersion.State.PUBLISHED)
            .only("id", "project_id", "version", "path", "file_sha256")
            .first()
        )
        if version is None:
            raise NothingPublished(f"no model is published for project {project}")
        cached = self._models.get(version.project_id)
        if cached is not None and cached[0] == version.id:
            self._models.move_to_end(version.project_id)
            return version.version, cached[1]
        root = Path(settings.CHECKPOINT_ROOT)
        try:
            model = load_reward_model(
                root / version.path,
                checkpoint_root=root,
                expected_sha256=version.file_sha256,
                device=self.device,
            )
        except Exception as error:
            raise ModelRefused(
                f"v{version.version} of {project} was refused: {type(error).__name__}: {error}"
            ) from error
        logger.info("score server loaded %s v%s", project, version.version)
        self._models[version.project_id] = (version.id, model)
        self._models.move_to_end(version.project_id)
        while len(self._models) > MODELS_KEPT:
            self._models.popitem(last=False)
        return version.version, model


class Batcher:
    """One thread runs every model; request threads hand it jobs and wait."""

    def __init__(self, cache: ModelCache) -> None:
        self.cache = cache
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="score-server-models", daemon=True)
        self._thread.start()

    def score(self, project: str, prompts: list[Prompt], responses: list[str]) -> _Job:
        job = _Job(project=project, prompts=prompts, responses=responses)
        self._jobs.put(job)
        if not job.done.wait(REQUEST_TIMEOUT_S):
            job.error = TimeoutError(f"no answer within {REQUEST_TIMEOUT_S:g} s")
        return job

    def _run(self) -> None:
        while True:
            jobs = [self._jobs.get()]
            items = len(jobs[0].prompts)
            while items < MAX_BATCH_ITEMS:
                try:
                    job = self._jobs.get(timeout=GATHER_WAIT_S)
                except queue.Empty:
                    break
                jobs.append(job)
                items += len(job.prompts)
            close_old_connections()
            by_project: dict[str, list[_Job]] = {}
            for job in jobs:
                by_project.setdefault(job.project, []).append(job)
            for project, group in by_project.items():
                self._score_group(project, group)

    def _score_group(self, project: str, group: list[_Job]) -> None:
        try:
            version, model = self.cache.published(project)
            prompts = [prompt for job in group for prompt in job.prompts]
            responses = [response for job in group for response in job.responses]
            scores = model.score(prompts, responses)
        except Exception as error:
            if not isinstance(error, NothingPublished | ModelRefused):
                logger.exception("scoring for %s failed", project)
            for job in group:
                job.error = error
                job.done.set()
            return
        start = 0
        for job in group:
            job.version = version
            job.scores = scores[start : start + len(job.prompts)]
            start += len(job.prompts)
            job.done.set()


def score_server_app(
    batcher: Batcher, *, secret: str
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    if not secret:
        raise ValueError("the score server needs a shared secret")

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ["REQUEST_METHOD"], environ.get("PATH_INFO", "")
        if path == "/health" and method == "GET":
            return _json(start_response, "200 OK", {"status": "ok"})
        if path != "/score":
            return _json(start_response, "404 Not Found", {"detail": f"no route {path}"})
        if method != "POST":
            return _json(start_response, "405 Method Not Allowed", {"detail": "POST only"})
        given = environ.get("HTTP_X_SCORE_SERVER_SECRET", "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return _json(start_response, "401 Unauthorized", {"detail": "no or a wrong secret"})
        try:
            project, prompts, responses = _parse(environ)
        except ValueError as error:
            return _json(start_response, "400 Bad Request", {"detail": str(error)})
        job = batcher.score(project, prompts, responses)
        if isinstance(job.error, NothingPublished):
            return _json(start_response, "404 Not Found", {"detail": str(job.error)})
        if job.error is not None:
            return _json(start_response, "503 Service Unavailable", {"detail": str(job.error)})
        return _json(start_response, "200 OK", {"model_version": job.version, "scores": job.scores})

    return app


def _parse(environ: dict[str, Any]) -> tuple[str, list[Prompt], list[str]]:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError as error:
        raise ValueError("bad Content-Length") from error
    if length > MAX_BODY_BYTES:
        raise ValueError(f"body over {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(environ["wsgi.input"].read(length))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"body is not JSON: {error}") from error
    if not isinstance(body, dict) or not isinstance(body.get("project"), str):
        raise ValueError('body must be {"project": slug, "items": [...]}')
    items = body.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH_ITEMS:
        raise ValueError(f"items must be a list of 1 to {MAX_BATCH_ITEMS} objects")
    prompts: list[Prompt] = []
    responses: list[str] = []
    for index, item in enumerate(items):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("response"), str)
            or not isinstance(item.get("prompt"), str | list)
        ):
            raise ValueError(f"items[{index}] needs a prompt and a response")
        prompts.append(item["prompt"])
        responses.append(item["response"])
    return body["project"], prompts, responses


def _json(start_response: StartResponse, status: str, payload: dict[str, Any]) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("score server %s", format % args)


def score_server(*, host: str, port: int, secret: str, device: str = "auto") -> WSGIServer:
    """A bound, not yet serving score server; `serve_forever()` runs it, port 0 picks a free one.
    `secret`: what every score request must carry in X-Score-Server-Secret."""
    batcher = Batcher(ModelCache(device=device))
    return make_server(
        host,
        port,
        score_server_app(batcher, secret=secret),
        server_class=_ThreadingServer,
        handler_class=_QuietHandler,
    )
