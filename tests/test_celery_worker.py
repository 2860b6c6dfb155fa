"""A real Celery worker executes a task enqueued on commit, through Redis; background imports
recover from a broker that was down and from a worker killed mid-import."""

import io
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from annotation.models import Batch, Pair, Project
from annotation.services.imports import (
    batch_import_run,
    batch_imports_sweep,
    upload_check,
    upload_import,
)
from annotation.services.imports.recovery import import_silence_allowed
from annotation.tasks import batch_import_run as batch_import_task
from annotation.tasks import project_stats_refresh
from config.celery import app, enqueue_on_commit
from tests.factories import PairFactory, ProjectFactory, UserFactory


def purge_queues() -> None:
    with app.connection_for_write() as conn:  # leftovers of earlier tests' tasks
        for queue in ("default", "training"):
            conn.default_channel.queue_purge(queue)


@pytest.fixture
def redis_worker(transactional_db):
    assert app.conf.broker_url.startswith("redis://")
    purge_queues()
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


RECORDS = b"".join(
    f'{{"prompt": "P{i}?", "response_a": "A{i}", "response_b": "B{i}"}}\n'.encode()
    for i in range(3)
)


def upload_in_background(settings, tmp_path) -> Batch:
    """Three records, which these settings send to a worker; the batch is pending."""
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    settings.IMPORT_BACKGROUND_RECORDS = 2
    project, user = ProjectFactory(), UserFactory()
    dry_run = upload_check(
        project=project, user=user, fileobj=io.BytesIO(RECORDS), filename="big.jsonl", format=None
    )
    outcome = upload_import(
        project=project, user=user, token=dry_run.upload.token, known_answers="none",
        allow_duplicate=False,
    )  # fmt: skip
    assert outcome.batch.status == "pending"
    return outcome.batch


def wait_for(batch: Batch, ready, seconds: float = 60) -> Batch:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch.refresh_from_db()
        if ready(batch):
            return batch
        time.sleep(0.2)
    raise AssertionError(f"batch {batch.id} still {batch.status} after {seconds} s")


def after_the_silence():
    return timezone.now() + import_silence_allowed() + timedelta(seconds=1)


def test_an_upload_made_with_the_broker_down_imports_once_the_sweep_sends_it_again(
    redis_worker, settings, tmp_path, monkeypatch
):
    def broker_down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    with monkeypatch.context() as patched:
        patched.setattr(batch_import_task, "apply_async", broker_down)
        batch = upload_in_background(settings, tmp_path)
    time.sleep(2)
    batch.refresh_from_db()
    assert batch.status == "pending"  # nothing was sent: before the sweep it stayed so for good

    assert batch_imports_sweep(now=after_the_silence()).resent == [batch.id]

    done = wait_for(batch, lambda b: b.status == "done")
    assert (done.pairs_created, done.attempts) == (3, 1)


# A real worker whose import stalls after writing its first chunk, inside its transaction.
STALLING_WORKER = """
import time, django
django.setup()
from annotation.services.imports import importing
real = importing.record_chunks
def record_chunks(records):
    for chunk in real(records):
        yield chunk
        time.sleep(600)
importing.record_chunks = record_chunks
from config.celery import app
app.worker_main(["worker", "--pool=solo", "--queues=default", "--without-mingle",
                 "--without-gossip", "--loglevel=WARNING"])
"""


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="a child process cannot see the in-memory SQLite test database",
)
@pytest.mark.django_db(transaction=True)
def test_a_sigkilled_import_worker_leaves_a_batch_the_sweep_retries_never_a_stuck_one(
    settings, tmp_path
):
    purge_queues()
    database = settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER']}:{database['PASSWORD']}@"
        f"{database['HOST'] or '127.0.0.1'}:{database['PORT'] or 5432}/{database['NAME']}",
        "IMPORT_UPLOAD_DIR": str(tmp_path / "uploads"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", STALLING_WORKER], env=env, cwd=settings.BASE_DIR,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        batch = upload_in_background(settings, tmp_path)
        # The worker took it, wrote a chunk, and its heartbeat thread reports progress.
        running = wait_for(batch, lambda b: b.status == "running" and b.progress > 0)
        beat = running.heartbeat_at
        wait_for(batch, lambda b: b.heartbeat_at > beat, seconds=10)
    finally:
        worker.send_signal(signal.SIGKILL)
        stderr = worker.communicate(timeout=30)[1].decode()
    assert worker.returncode == -signal.SIGKILL, stderr[-2000:]

    batch.refresh_from_db()
    assert (batch.status, batch.attempts) == ("running", 1)  # without the sweep: for good
    assert not Pair.objects.exists()  # the killed transaction rolled back

    swept = batch_imports_sweep(now=after_the_silence())
    assert swept.requeued == [batch.id]
    batch.refresh_from_db()
    assert batch.status == "pending"

    retried = batch_import_run(batch_id=batch.id)  # the next worker to take the message
    assert (retried.status, retried.attempts, retried.pairs_created) == ("done", 2, 3)
    purge_queues()
