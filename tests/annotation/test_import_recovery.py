"""Background imports recover (issue 11, item 5): a batch whose message was lost (the broker was
down at upload) is sent again, and one whose worker died is retried, then failed, a bounded
number of times; never pending or running for good. Through the service signatures; the real
worker and a SIGKILL are in tests/test_celery_worker.py."""

import io
import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import OperationalError

from annotation import tasks
from annotation.models import Batch, Pair
from annotation.services.imports import (
    batch_import_run,
    batch_imports_sweep,
    importing,
    upload_check,
    upload_import,
)
from annotation.services.imports.recovery import import_silence_allowed
from tests.conftest import login

RECORDS = b"".join(
    json.dumps({"prompt": f"Prompt {i}?", "response_a": f"A{i}", "response_b": f"B{i}"}).encode()
    + b"\n"
    for i in range(3)
)


@pytest.fixture(autouse=True)
def _background(settings, tmp_path):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    settings.IMPORT_BACKGROUND_RECORDS = 2  # three records go to a worker


@pytest.fixture
def sent(monkeypatch):
    """The batch ids sent to the broker; `sent.broker_down = True` makes sending fail."""

    class Sent(list):
        broker_down = False

    messages = Sent()

    def apply_async(args=None, kwargs=None, **options):  # as a task or its signature calls it
        if messages.broker_down:
            raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        messages.append(args[0])

    monkeypatch.setattr(tasks.batch_import_run, "apply_async", apply_async)
    return messages


def upload_in_background(project, user, on_commit) -> Batch:
    dry_run = upload_check(
        project=project, user=user, fileobj=io.BytesIO(RECORDS), filename="big.jsonl", format=None
    )
    with on_commit(execute=True):
        outcome = upload_import(
            project=project,
            user=user,
            token=dry_run.upload.token,
            known_answers="none",
            allow_duplicate=False,
        )
    assert outcome.in_background
    return outcome.batch


def later(seconds: float = 1.0):
    return timezone.now() + import_silence_allowed() + timedelta(seconds=seconds)


def test_an_upload_made_with_the_broker_down_is_sent_again_by_the_sweep_and_imports(
    project, admin_member, sent, django_capture_on_commit_callbacks, caplog
):
    sent.broker_down = True
    batch = upload_in_background(project, admin_member, django_capture_on_commit_callbacks)
    assert "beat will catch up" in caplog.text
    assert (batch.status, sent) == ("pending", [])

    assert batch_imports_sweep().resent == []  # sent a moment ago: give the broker time
    sent.broker_down = False
    with django_capture_on_commit_callbacks(execute=True):
        swept = batch_imports_sweep(now=later())
    assert (swept.resent, sent) == ([batch.id], [batch.id])
    with django_capture_on_commit_callbacks(execute=True):
        assert batch_imports_sweep(now=later()).resent == []  # once per silence, not per beat

    imported = batch_import_run(batch_id=batch.id)  # what the worker does with the message
    assert (imported.status, imported.pairs_created, imported.attempts) == ("done", 3, 1)


def test_a_redelivered_message_leaves_a_running_import_to_its_worker(
    project, admin_member, sent, django_capture_on_commit_callbacks
):
    batch = upload_in_background(project, admin_member, django_capture_on_commit_callbacks)
    Batch.objects.filter(id=batch.id).update(status="running", attempts=1)

    again = batch_import_run(batch_id=batch.id)

    assert (again.status, again.attempts) == ("running", 1)
    assert not Pair.objects.exists()


def test_an_import_whose_worker_died_is_retried_then_failed_after_the_last_attempt(
    client, project, admin_member, sent, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_MAX_ATTEMPTS = 2
    batch = upload_in_background(project, admin_member, django_capture_on_commit_callbacks)
    staged = settings.IMPORT_UPLOAD_DIR / batch.staged_upload
    silent_since = timezone.now() - timedelta(minutes=5)
    Batch.objects.filter(id=batch.id).update(
        status="running", attempts=1, heartbeat_at=silent_since
    )

    with django_capture_on_commit_callbacks(execute=True):
        first = batch_imports_sweep(now=later())

    batch.refresh_from_db()
    assert (first.requeued, batch.status, batch.progress) == ([batch.id], "pending", 0.0)
    assert batch.error.startswith("Attempt 1 stopped (no heartbeat from its worker since")
    assert sent == [batch.id, batch.id]  # at upload, and again for attempt 2
    assert staged.exists()
    progress = reverse("annotation:batch-progress", args=[project.slug, batch.id])
    fragment = login(client, admin_member).get(progress, HTTP_HX_REQUEST="true")
    assert "Attempt 1 stopped" in fragment.content.decode()

    Batch.objects.filter(id=batch.id).update(
        status="running", attempts=2, heartbeat_at=silent_since
    )
    second = batch_imports_sweep(now=later())

    batch.refresh_from_db()
    assert (second.failed, batch.status) == ([batch.id], "failed")
    assert batch.error.startswith("the worker importing it stopped in each of 2 attempts")
    assert "upload the file again" in batch.error
    assert not staged.exists()
    assert batch_imports_sweep(now=later(3600)).failed == []  # failed is final


def test_the_sweep_leaves_an_import_with_a_recent_heartbeat_alone(
    project, admin_member, sent, django_capture_on_commit_callbacks
):
    batch = upload_in_background(project, admin_member, django_capture_on_commit_callbacks)
    Batch.objects.filter(id=batch.id).update(
        status="running", attempts=1, heartbeat_at=timezone.now()
    )

    swept = batch_imports_sweep()

    assert swept.requeued == swept.failed == swept.resent == []
    batch.refresh_from_db()
    assert batch.status == "running"


def test_on_sqlite_only_the_time_limit_tells_a_dead_import_from_a_slow_one(settings):
    settings.IMPORT_HEARTBEAT_TIMEOUT = 60.0
    settings.IMPORT_TIME_LIMIT = 2700
    expected = 60.0 if connection.vendor == "postgresql" else 2700.0
    assert import_silence_allowed() == timedelta(seconds=expected)


@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="the sweep commits while the import's transaction is open: SQLite has one writer",
)
@pytest.mark.django_db(transaction=True)
def test_a_worker_whose_batch_the_sweep_gave_away_rolls_back_and_keeps_the_upload(
    project, admin_member, sent, settings, monkeypatch, django_capture_on_commit_callbacks
):
    batch = upload_in_background(project, admin_member, django_capture_on_commit_callbacks)
    real = importing.record_chunks

    def swept_meanwhile(records):
        for chunk in real(records):
            yield chunk
            # The worker looked dead: a sweep, on its own connection, gives the batch away.
            sweep = threading.Thread(
                target=lambda: (batch_imports_sweep(now=later()), connection.close())
            )
            sweep.start()
            sweep.join()

    monkeypatch.setattr(importing, "record_chunks", swept_meanwhile)
    slow = batch_import_run(batch_id=batch.id)

    assert (slow.status, slow.attempts) == ("pending", 1)  # as the sweep left it
    assert not Pair.objects.exists()  # the slow worker's rows rolled back
    assert (settings.IMPORT_UPLOAD_DIR / batch.staged_upload).exists()  # attempt 2 needs it

    monkeypatch.setattr(importing, "record_chunks", real)
    second = batch_import_run(batch_id=batch.id)
    assert (second.status, second.attempts, second.pairs_created) == ("done", 2, 3)
