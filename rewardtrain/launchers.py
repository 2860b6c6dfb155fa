"""Where a run's bundle trains, chosen by TRAINING_LAUNCHER (frozen into the run at request):

- `inline`: in this worker process, as one process (the default, and the embedded setup's);
- `torchrun`: `python -m torch.distributed.run --nproc-per-node TRAINING_PROCESSES
  TRAINING_TORCHRUN_ARGS -m rewardtrain.launch <run dir>` as a child of this worker, watched
  until it exits. A prefork worker is daemonic and may not fork multiprocessing children; a
  subprocess is fine;
- `command`: TRAINING_LAUNCH_COMMAND (`sbatch ...`, `kubectl create job ...`) submitted, and
  nothing waited for: the sweep relays the run's progress file and records its end.

The ranks report through the run directory's `progress.json` only; this side writes the
database. torch is never imported here: the inline launcher imports it when it runs.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings

from rewardtrain.bundle import progress_read

# torchrun's failure summary: the first rank to fail and its exit code (negative: a signal).
_ROOT_CAUSE = re.compile(
    r"Root Cause.*?rank\s*:\s*(?P<rank>\d+)[^\n]*\n\s*exitcode\s*:\s*(?P<code>-?\d+)", re.S
)
WATCH_EVERY_S = 0.5  # how often the torchrun watcher reads the progress file
STOP_GRACE_S = 30.0  # after SIGTERM, the ranks have this long before SIGKILL


class LaunchError(Exception):
    """The launch could not start, or its processes failed; the message says how."""


class LaunchLost(LaunchError):
    """A process of the launch died without an error of its own (killed, its node lost): the
    attempt is retried as a killed worker's is."""


class Relay(Protocol):
    """The database side of a run's progress (`services.runs._Reporter`)."""

    def phase(self, name: str, *, progress: float | None = None) -> None: ...

    def train_progress(self, fraction: float, info: dict[str, float]) -> None: ...

    def should_stop(self) -> bool: ...

    def relay(self, record: dict[str, Any]) -> None: ...


def launch_inline(directory: Path, *, relay: Relay) -> dict[str, Any]:
    """Train in this process; return rank 0's outcome."""
    from rewardtrain.launch import run_bundle

    outcome = run_bundle(
        directory,
        launcher="inline",
        phase=relay.phase,
        progress=relay.train_progress,
        should_stop=relay.should_stop,
    )
    if outcome is None:  # only when this process is not rank 0 of a process group
        raise LaunchError("the inline launch ran as a rank other than 0")
    return outcome


def torchrun_args(directory: Path, *, run_id: int, processes: int) -> list[str]:
    """The torchrun command line; TRAINING_TORCHRUN_ARGS may name {run_id} and {run_dir}."""
    extra = [
        part.format(run_id=run_id, run_dir=directory)
        for part in shlex.split(settings.TRAINING_TORCHRUN_ARGS)
    ]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(processes),
        *extra,
        "-m",
        "rewardtrain.launch",
        "--launcher",
        "torchrun",
        str(directory),
    ]


def launch_torchrun(
    directory: Path, *, relay: Relay, run_id: int, processes: int
) -> dict[str, Any]:
    """Run torchrun to its end, relaying progress; return rank 0's outcome.

    Any exit but a clean one with an outcome fails: torchrun stops every rank when one dies
    (no restarts), and rank 0 renames a version into place only once it is complete.
    """
    log = directory / "launch.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            torchrun_args(directory, run_id=run_id, processes=processes),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    try:
        while process.poll() is None:
            time.sleep(WATCH_EVERY_S)
            record = progress_read(directory)
            relay.relay(record or {})
            if relay.should_stop():
                raise LaunchError("stopped: the run was taken away from this attempt")
    finally:
        _stop(process)
    record = progress_read(directory) or {}
    if process.returncode == 0 and record.get("state") == "done":
        outcome: dict[str, Any] = record["outcome"]
        return outcome
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    # A rank killed first (a negative exit code) is the cause: rank 0's own error is then only
    # the broken connection to it.
    killed = _ROOT_CAUSE.search(text)
    if killed and int(killed["code"]) < 0:
        raise LaunchLost(
            f"torchrun exited with code {process.returncode}: a process was killed "
            f"(rank {killed['rank']}, exit code {killed['code']})"
        )
    reason = record.get("error") or _tail(text)
    raise LaunchError(f"torchrun exited with code {process.returncode}: {reason}")


def launch_command(directory: Path, *, run_id: int, processes: int) -> str:
    """Submit TRAINING_LAUNCH_COMMAND for this run; return what it printed (a job id).

    The template may name {run_dir}, {run_id}, {processes} and {python}."""
    template = settings.TRAINING_LAUNCH_COMMAND
    if not template.strip():
        raise LaunchError("TRAINING_LAUNCHER is 'command' but TRAINING_LAUNCH_COMMAND is empty")
    args = [
        part.format(run_dir=directory, run_id=run_id, processes=processes, python=sys.executable)
        for part in shlex.split(template)
    ]
    try:
        done = subprocess.run(  # noqa: S603 - the operator's own command
            args, capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LaunchError(f"the launch command {args[0]!r} could not run: {error}") from error
    if done.returncode != 0:
        raise LaunchError(
            f"the launch command exited with code {done.returncode}: {done.stderr[-500:]}"
        )
    return done.stdout.strip()[-500:]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())
