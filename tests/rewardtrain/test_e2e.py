"""End to end: preference pairs imported as seed labels, a real Celery worker (through Redis)
retrains a tiny model, the version is published, and the score API answers with it through the
score server."""

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from django.urls import reverse

from annotation.models import Batch, Membership
from annotation.services.imports import batch_import
from config.celery import app
from rewardtrain.models import ModelVersion, TrainingRun
from tests.conftest import login
from tests.factories import MembershipFactory, ProjectFactory, UserFactory
from tests.rewardtrain.helpers import WORDS, build_tiny_model, child_env, trainable_project

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert-e2e"))


@pytest.fixture
def training_worker(transactional_db):
    assert app.conf.broker_url.startswith("redis://")
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge("training")
    with start_worker(
        app, pool="solo", queues=["training"], perform_ping_check=False, shutdown_timeout=10
    ) as worker:
        yield worker


@pytest.fixture
def checkpoints(settings, tmp_path):
    settings.CHECKPOINT_ROOT = tmp_path / "checkpoints"
    return settings.CHECKPOINT_ROOT


@pytest.fixture
def score_server(settings, checkpoints):
    """`manage.py score_server` on a free port, in its own process, as in production."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "score_server", "--port", "0"],
        cwd=ROOT,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("score server listening on "), process.stderr.read()
        settings.SCORE_SERVER_URL = line.split()[-1]
        yield process
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stdout.close()
        process.stderr.close()


def _preferences(count: int) -> bytes:
    return "".join(
        json.dumps(
            {
                "prompt": f"tell me about the {WORDS[i % 10]} number {i}",
                "chosen": f"sure, gladly: the {WORDS[(i + 3) % 10]} is lovely, thank you",
                "rejected": f"no. go away, {WORDS[(i + 5) % 10]}",
            }
        )
        + "\n"
        for i in range(count)
    ).encode()


def test_imported_preferences_are_trained_by_a_worker_published_and_scored(
    client, tiny_model, training_worker, score_server
):
    project = trainable_project(ProjectFactory(slug="e2e"), tiny_model)
    lead = MembershipFactory(
        project=project, user=UserFactory(username="lena"), role=Membership.Role.LEAD
    ).user
    batch_import(
        project=project,
        fileobj=io.BytesIO(_preferences(48)),
        filename="prefs.jsonl",
        uploaded_by=lead,
        known_answers=Batch.KnownAnswers.SEED,
    )
    login(client, lead)

    created = client.post(reverse("training-api:run-list", args=["e2e"]))
    assert created.status_code == 201
    run = TrainingRun.objects.get(id=created.json()["id"])
    deadline = time.monotonic() + 90
    while run.is_active and time.monotonic() < deadline:
        time.sleep(0.3)
        run.refresh_from_db()

    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert run.metrics["counts"]["from_seed_labels"] == 48
    version = ModelVersion.objects.get(project=project)
    assert version.state == ModelVersion.State.PUBLISHED

    items = [
        {"prompt": "tell me about the lamp number 99", "response": "sure, gladly: it is lovely"},
        {"prompt": "tell me about the lamp number 99", "response": "no. go away, lamp"},
    ]
    scored = client.post(
        reverse("training-api:score", args=["e2e"]),
        {"items": items},
        content_type="application/json",
    )

    assert scored.status_code == 200, scored.content
    body = scored.json()
    assert body["model_version"] == 1
    polite, rude = body["scores"]
    assert polite > rude
