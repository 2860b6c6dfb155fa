"""With no DATABASE_URL and no CELERY_BROKER_URL, Pairwise runs on a SQLite file and Kombu's
filesystem broker: a laptop with only Python can start it."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_embedded_default_migrates_and_serves_the_login_page(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(DEBUG="true", PAIRWISE_VAR_DIR=str(tmp_path), SECRET_KEY="")
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(
        [*manage, "migrate", "--noinput"], env=env, check=True, capture_output=True, timeout=120
    )
    assert (tmp_path / "pairwise.sqlite3").exists()

    port = _free_port()
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(
        [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        body = b""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2) as page:
                    body = page.read()
                    break
            except OSError:
                time.sleep(0.3)
        assert b'name="password"' in body, (tmp_path / "server.log").read_text()
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()
