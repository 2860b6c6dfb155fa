"""A real Celery worker executes a task enqueued on commit, through Redis."""

import os
import subprocess
import sys
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import transaction

from annotation.models import Project
from annotation.tasks import project_stats_refresh
from config.celery import app, enqueue_on_commit
from tests.factories import PairFactory


@pytest.fixture
def redis_worker(transactional_db):
    assert app.conf.broker_url.startswith("redis://")
    with app.connection_for_write() as conn:  # leftovers of earlier tests' tasks
        for queue in ("default", "training"):
            conn.default_channel.queue_purge(queue)
    # Name the queue: a worker's queue selection stays on the app after an earlier test's worker.
    with start_worker(
        app, pool="solo", queues=["default"], perform_ping_check=False, shutdown_timeout=10
    ) as worker:
        yield worker


def test_a_real_worker_refreshes_project_stats_after_commit(redis_worker):
    pair = PairFactory()
    project = pair.project
    with transaction.atomic():
        enqueue_on_commit(project_stats_refresh, project.id)
        assert Project.objects.get(id=project.id).stats == {}

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        project.refresh_from_db()
        if project.stats:
            break
        time.sleep(0.2)
    assert project.stats == {"prompts": 1, "pairs": 1, "pairs_complete": 0, "judgments": 0}
    assert project.stats_refreshed_at is not None


def test_enqueueing_with_the_broker_down_fails_fast_without_failing_the_caller(tmp_path):
    script = (
        "import time, django; django.setup()\n"
        "from django.db import transaction\n"
        "from annotation.tasks import project_stats_refresh\n"
        "from config.celery import enqueue_on_commit\n"
        "started = time.monotonic()\n"
        "with transaction.atomic():\n"
        "    enqueue_on_commit(project_stats_refresh, 1)\n"
        "print(time.monotonic() - started)\n"
    )
    env = {
        **os.environ,
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",  # nothing listens on port 1
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "beat will catch up" in done.stderr
    assert float(done.stdout) < 3
