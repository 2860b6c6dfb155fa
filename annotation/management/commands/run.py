"""manage.py run: start web, worker, beat and the score server (what `make run` serves), and
stop every one of them on Ctrl-C or SIGTERM.

Each process starts in a session, hence a process group, of its own, so a terminal's Ctrl-C
reaches only this supervisor. The supervisor then asks each process to stop (SIGTERM: a Celery
worker stops taking tasks and finishes the one in hand, beat and the servers exit), waits up to
--grace seconds, and kills what is left with SIGKILL to the whole group, a worker's pool
processes included (a killed task is redelivered: tasks are acknowledged late).
A second Ctrl-C skips the wait. When a process exits by itself, the others are stopped too and
the exit status is 1.

Before starting anything, it checks that the web server and the score server can listen where
they will (`--host`/`--port`, SCORE_SERVER_URL), and says which port is taken and how to choose
another: otherwise the first sign would be a traceback from one server among the four logs, or
a banner for whatever program already answers on the web port.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from config.addresses import score_server_address

_POLL_S = 0.2


def _commands(host: str, port: int) -> dict[str, list[str]]:
    manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
    celery = [sys.executable, "-m", "celery", "--quiet", "-A", "config"]
    return {
        "worker": [
            *celery,
            *("worker", "-Q", "default,training", "--concurrency", "2", "--loglevel", "WARNING"),
        ],
        "beat": [*celery, "beat", "--loglevel", "WARNING"],
        "score-server": [*manage, "score_server"],
        "web": [*manage, "runserver", "--noreload", f"{host}:{port}"],
    }


class Supervisor:
    """Child processes by name, each the leader of its own process group."""

    def __init__(self, commands: dict[str, list[str]], *, grace: float) -> None:
        self.commands = commands
        self.grace = grace
        self.children: dict[str, subprocess.Popen[bytes]] = {}
        self.signals = 0  # SIGINT and SIGTERM received so far

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals += 1

    def run(self, on_ready: Callable[[], bool]) -> str | None:
        """Start every process and watch them until a signal (None) or until one exits by itself
        (its name). `on_ready()` is called on each round until it returns True."""
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGTERM, self._on_signal)
        for name, command in self.commands.items():
            if self.signals:
                return None
            # The commands are this module's own, built from sys.executable and settings.
            self.children[name] = subprocess.Popen(command, start_new_session=True)  # noqa: S603
        ready = False
        while not self.signals:
            for name, child in self.children.items():
                if child.poll() is not None:
                    return name
            ready = ready or on_ready()
            time.sleep(_POLL_S)
        return None

    def _kill_groups(self) -> None:
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):  # the group is empty: all of it exited
                os.killpg(child.pid, signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM to every child, up to `grace` seconds to exit, then SIGKILL to what is left of
        each group (a group outlives its leader while the leader's own children run)."""
        received = self.signals
        for child in self.children.values():
            # The leader only: a Celery worker stops its own pool, which SIGTERM would kill.
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + self.grace
        while self.signals <= received and time.monotonic() < deadline:
            if all(child.poll() is not None for child in self.children.values()):
                break
            time.sleep(_POLL_S)
        self._kill_groups()
        for child in self.children.values():
            child.wait()


def _answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return False
    return True


def _cannot_listen(host: str, port: int) -> OSError | None:
    """Why a server could not listen on host:port now; None if it could. Binds and closes at
    once, with SO_REUSEADDR as both servers bind, so that a port left in TIME_WAIT by the last
    run counts as free."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM
        )[0]
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as error:
        return error
    return None


def _check_ports(host: str, port: int) -> None:
    """Raise a CommandError naming the port and the setting to change where the web server
    (`host`:`port`) or the score server (SCORE_SERVER_URL) could not listen."""
    score_host, score_port = score_server_address()
    other_web_port = f"make run PORT={port + 1}, or manage.py run --port {port + 1}"
    if port == score_port and port != 0:
        raise CommandError(
            f"The web server and the score server would share port {port} (SCORE_SERVER_URL is "
            f"{settings.SCORE_SERVER_URL}): choose another web port ({other_web_port})."
        )
    # (server, host, port, what to change if the port is taken, if the host is not this machine's)
    checks = (
        (
            "web server", host, port, f"choose another port ({other_web_port})",
            "Choose a host of this machine (manage.py run --host 127.0.0.1)",
        ),
        (
            "score server", score_host, score_port,
            f"set SCORE_SERVER_URL to a free port (e.g. http://{score_host}:{score_port + 1})",
            f"Set SCORE_SERVER_URL to an address of this machine (e.g. "
            f"http://127.0.0.1:{score_port})",
        ),
    )  # fmt: skip
    for server, server_host, server_port, other_port, other_host in checks:
        error = _cannot_listen(server_host, server_port)
        if error is not None:
            taken = error.errno == errno.EADDRINUSE
            raise CommandError(
                f"The {server} cannot listen on {server_host}:{server_port} "
                f"({error.strerror or error}). "
                + (f"Stop what holds that port, or {other_port}." if taken else f"{other_host}.")
            )


class Command(BaseCommand):
    help = "Run web, worker, beat and the score server; Ctrl-C or SIGTERM stops them all."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--grace", type=float, default=10.0, help="seconds to exit cleanly before SIGKILL"
        )
        parser.add_argument("--banner", type=Path, help="a file to print once the web answers")
        parser.add_argument(
            "--check", action="store_true", help="only check that both ports are free, then exit"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host, port, banner = options["host"], options["port"], options["banner"]
        _check_ports(host, port)
        if options["check"]:
            return
        supervisor = Supervisor(_commands(host, port), grace=options["grace"])

        def on_ready() -> bool:
            if not _answers(host, port):
                return False
            if banner is not None:
                self.stdout.write(banner.read_text())
            self.stdout.write(
                f"Pairwise is running: open http://{host}:{port}/ and log in. "
                "Ctrl-C stops everything."
            )
            self.stdout.flush()
            return True

        try:
            exited = supervisor.run(on_ready)
        finally:
            supervisor.stop()
        if exited is not None:
            code = supervisor.children[exited].returncode
            raise CommandError(f"{exited} exited with status {code}; stopped the others.")
        self.stdout.write("Pairwise stopped: web, worker, beat and score server have exited.")
