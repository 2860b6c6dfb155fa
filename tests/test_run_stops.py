"""`make run` (through `manage.py run`, which it execs) stops every process it started on Ctrl-C:
the web server, the Celery worker with its pool, beat and the score server. Started here on the
embedded default in a temporary folder, as a laptop would run it."""

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.test_embedded_default import ROOT, _free_port

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads the process tree in /proc")

WORKER_POOL = 2  # --concurrency of the worker manage.py run starts


def _children() -> dict[int, list[int]]:
    """Every process's children, by parent id, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(parent, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, pending = _children(), set(), [pid]
    while pending:
        for child in tree.get(pending.pop(), []):
            found.add(child)
            pending.append(child)
    return found


def _alive(pid: int) -> bool:
    """Whether the process still exists, a zombie nobody reaped included."""
    return Path(f"/proc/{pid}").exists()


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(gone)"


def _wait_until_up(supervisor: subprocess.Popen, port: int, log: Path) -> set[int]:
    """The supervisor's processes once the web answers and the worker has its pool."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert supervisor.poll() is None, log.read_text()
        started = _descendants(supervisor.pid)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2).close()
        except OSError:
            time.sleep(0.5)
            continue
        # web, worker, beat, score server and the worker's pool
        if len(started) >= 4 + WORKER_POOL:
            return started
        time.sleep(0.5)
    raise AssertionError(f"not up after 90 s:\n{log.read_text()}")


def test_ctrl_c_stops_every_process_make_run_started(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    port = _free_port()
    env.update(
        DEBUG="true",
        PAIRWISE_VAR_DIR=str(tmp_path),
        SECRET_KEY="",
        SCORE_SERVER_URL=f"http://127.0.0.1:{_free_port()}",
    )
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run(
        [*manage, "migrate", "--noinput"], env=env, check=True, capture_output=True, timeout=120
    )
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        # A session of its own, as a terminal gives `make run`: Ctrl-C signals the whole group.
        supervisor = subprocess.Popen(
            [*manage, "run", "--port", str(port), "--grace", "10"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started: set[int] = set()
        try:
            started = _wait_until_up(supervisor, port, log)
            os.killpg(supervisor.pid, signal.SIGINT)
            assert supervisor.wait(timeout=30) == 0, log.read_text()
            deadline = time.monotonic() + 5
            while any(map(_alive, started)) and time.monotonic() < deadline:
                time.sleep(0.2)
            left = {pid: _command(pid) for pid in started if _alive(pid)}
            assert not left, f"still running after Ctrl-C: {left}\n{log.read_text()}"
        finally:
            # Whatever a failed run left behind goes, so that it cannot disturb other tests.
            if supervisor.poll() is None:
                started |= _descendants(supervisor.pid)
                supervisor.kill()
            for pid in started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            supervisor.wait(timeout=10)
    assert "Pairwise stopped" in log.read_text()
