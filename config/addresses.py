"""Where the processes listen, read from settings at call time (so that a test's override of
SCORE_SERVER_URL reaches it). Shared by `manage.py score_server` (rewardtrain), which listens
there, and `manage.py run` (annotation), which checks the port is free first."""

from urllib.parse import urlsplit

from django.conf import settings


def score_server_address() -> tuple[str, int]:
    """SCORE_SERVER_URL's host and port: where the score server listens unless told otherwise
    and the web process finds it (127.0.0.1 and 8765 where the URL names none)."""
    url = urlsplit(settings.SCORE_SERVER_URL)
    return url.hostname or "127.0.0.1", url.port or 8765
