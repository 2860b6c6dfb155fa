"""The Celery app: configured from Django settings (CELERY_*), tasks found in the apps."""

import logging
import os
from pathlib import Path
from typing import Any

from celery import Celery, Signature, Task
from django.db import transaction

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("pairwise")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
logger = logging.getLogger(__name__)


@app.on_after_configure.connect
def _make_broker_folders(sender: Celery, **kwargs: Any) -> None:
    """Kombu's filesystem transport (the embedded default) needs its folders to exist."""
    for key in ("data_folder_in", "data_folder_out", "control_folder"):
        folder = sender.conf.broker_transport_options.get(key)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)


def enqueue_on_commit(task: Task | str, *args: Any) -> None:
    """Send `task` once the current transaction commits, never blocking on a dead broker.

    `task` is a task or a task's registered name: services name the tasks they send rather than
    import the task modules that import them (and, for training, torch). A name is sent as a
    signature, routed by CELERY_TASK_ROUTES like the task itself; tests/test_architecture.py
    checks every name a service sends against the registry.

    With Redis down the user's request must still succeed (votes and imports live in PostgreSQL):
    a failed send is logged, and the periodic tasks of beat pick the work up later.
    """
    sendable: Task | Signature = app.signature(task) if isinstance(task, str) else task

    def send() -> None:
        try:
            sendable.apply_async(args=args, retry=False)
        except Exception:  # kombu raises several unrelated types for "broker unreachable"
            logger.warning(
                "could not enqueue %s%r; beat will catch up", sendable.name, args, exc_info=True
            )

    transaction.on_commit(send)
