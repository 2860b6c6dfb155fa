"""`make test`'s pytest step: the suite on PostgreSQL and on the embedded SQLite default at once.

Each pass has its own database, Redis db and var/ folder, and its output lines carry its name.
The PostgreSQL pass runs every test but the browser tests, and measures coverage against the
floor in pyproject.toml. The SQLite pass runs every test that
uses the database, except those marked postgres_only, and the browser tests (the setup `make run`
gives a new user). The exit status is 0 only if both passes pass. Ctrl-C or
SIGTERM interrupts both (a second one kills them). Arguments are passed on to both pytests.

    python tests/run_passes.py [pytest arguments]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
# Defaults for CI; a machine shared with other suites can point each pass elsewhere.
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/pairwise")
POSTGRES_BROKER = os.environ.get("TEST_POSTGRES_BROKER", "redis://127.0.0.1:6379/15")
SQLITE_BROKER = os.environ.get("TEST_SQLITE_BROKER", "redis://127.0.0.1:6379/14")
PASSES: dict[str, tuple[dict[str, str], list[str]]] = {
    "postgres": (
        {
            "DATABASE_URL": POSTGRES_URL,
            "CELERY_BROKER_URL": POSTGRES_BROKER,
            "PAIRWISE_VAR_DIR": str(VAR / "test-postgres"),
        },
        # Coverage (branches, floor in pyproject.toml) is measured here: this pass runs every
        # test but the browser ones, the SQLite pass only those with a database.
        ["-m", "not browser", "--cov", "--cov-report=term-missing:skip-covered"],
    ),
    "sqlite": (
        {
            "DATABASE_URL": f"sqlite:///{VAR / 'test-sqlite' / 'pairwise.sqlite3'}",
            "CELERY_BROKER_URL": SQLITE_BROKER,
            "PAIRWISE_VAR_DIR": str(VAR / "test-sqlite"),
        },
        # Tests without a database give the same result anywhere: the other pass runs them.
        # The PostgreSQL pass keeps --last-failed's record.
        ["--database-tests-only", "-p", "no:cacheprovider"],
    ),
}
_print = threading.Lock()


class _Pass:
    """One pytest run, in a process group of its own (signals reach it from main() only), its
    output relayed line by line with its name in front."""

    def __init__(self, name: str, extra_env: dict[str, str], args: list[str]) -> None:
        self.name = name
        self.started = time.monotonic()
        self.seconds = 0.0
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", *args],
            cwd=ROOT,
            env={**os.environ, **extra_env, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.relay = threading.Thread(target=self._relay, args=(self.process.stdout,))
        self.relay.start()

    def _relay(self, stream: IO[bytes]) -> None:
        prefix = f"[{self.name}]".ljust(11).encode()
        for line in stream:
            with _print:
                sys.stdout.buffer.write(prefix + line)
                sys.stdout.buffer.flush()
        self.seconds = time.monotonic() - self.started

    def signal(self, signum: int) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signum)

    def wait(self) -> str:
        code = self.process.wait()
        self.relay.join()
        verdict = "passed" if code == 0 else f"FAILED (exit {code})"
        return f"{self.name} pass: {verdict} in {self.seconds / 60:.1f} min"


def main(args: list[str]) -> int:
    passes: list[_Pass] = []
    signals = 0

    def interrupt(signum: int, frame: object) -> None:
        nonlocal signals
        signals += 1
        for each in passes:
            each.signal(signal.SIGINT if signals == 1 else signal.SIGKILL)

    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    for name, (env, own) in PASSES.items():
        if not signals:
            passes.append(_Pass(name, env, [*own, *args]))
    print("; ".join(each.wait() for each in passes), flush=True)
    passed = not signals and all(each.process.returncode == 0 for each in passes)
    return 0 if passed and _coverage_floor_met() else 1


def _coverage_floor_met() -> bool:
    """The PostgreSQL pass's coverage against `fail_under`, checked again from its data file:
    the floor must hold whatever exit status pytest-cov gave."""
    report = [sys.executable, "-m", "coverage", "report", "--format=total"]
    checked = subprocess.run(report, cwd=ROOT, capture_output=True, text=True, check=False)
    print(f"coverage with branches: {checked.stdout.strip()}% {checked.stderr.strip()}", flush=True)
    return checked.returncode == 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
