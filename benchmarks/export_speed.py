"""Stream a 1,000,000-judgment `judgments` export through gunicorn and measure it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pw_export_bench \\
        .venv/bin/python benchmarks/export_speed.py --judgments 1000000

Creates the database if it is missing, migrates it, and (once; later runs reuse it) fills a
project with PAIRS pairs judged by RATERS_PER_PAIR raters each, written with COPY: prompts,
responses, pairs, assignments and judgments. Then it starts a real web server (gunicorn, one sync
worker), makes one small request to warm the worker, and streams
`GET /api/v1/projects/<slug>/export/?format=judgments` (or `--format`, `--aggregation`) with a
token, while a thread samples the worker's resident memory every 50 ms. Prints the seconds, bytes
and lines received, the judgment count, and the worker's RSS before and at its peak.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pg_database import COUNT_COLUMNS, create_database, fill_counts  # benchmarks/

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("HTTPS", "false")
os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-that-is-long-enough-0123456789")

SLUG = "export-bench"
RATERS = 40
WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "was",
    "with",
    "be",
    "by",
    "on",
    "not",
    "this",
    "are",
    "or",
    "from",
    "at",
    "which",
    "model",
    "answer",
    "reward",
    "policy",
    "token",
    "prompt",
    "response",
    "rater",
    "judgment",
    "pair",
    "batch",
    "data",
    "because",
    "however",
    "therefore",
    "although",
    "example",
    "question",
    "explain",
    "summarise",
    "translate",
    "write",
    "code",
]


def _copy(model: Any, rows: Any, fields: list[str]) -> None:
    """COPY rows (tuples in `fields` order, ids included) into the model's table."""
    from django.db import connection
    from psycopg import sql

    meta = model._meta
    columns = ", ".join(f'"{meta.get_field(name).column}"' for name in fields)
    with connection.cursor() as cursor:
        with cursor.cursor.copy(f'COPY "{meta.db_table}" ({columns}) FROM STDIN') as copy:
            for row in rows:
                copy.write_row(row)
        query = sql.SQL("SELECT setval(pg_get_serial_sequence({}, 'id'), (SELECT max(id) FROM {}))")
        cursor.cursor.execute(
            query.format(sql.Literal(f'"{meta.db_table}"'), sql.Identifier(meta.db_table))
        )


def _seed(judgments: int, rng: random.Random) -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.db.models import Max

    from annotation.models import Assignment, Batch, Judgment, Pair, Project, Prompt, Response

    per_pair = 4
    pairs = judgments // per_pair
    user_model = get_user_model()
    raters = [
        user_model.objects.get_or_create(username=f"bench-rater-{i}")[0].id for i in range(RATERS)
    ]
    lead = user_model.objects.get_or_create(username="bench-lead")[0]
    project = Project.objects.create(slug=SLUG, name="Export benchmark", raters_per_pair=per_pair)
    project.memberships.create(user=lead, role="lead")
    batch = Batch.objects.create(
        project=project, filename="bench.jsonl", sha256="0" * 64, format="pair", uploaded_by=lead
    )

    def start(model: Any) -> int:
        return (model.objects.aggregate(m=Max("id"))["m"] or 0) + 1

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words))

    p0, r0, q0, a0, j0 = (start(m) for m in (Prompt, Response, Pair, Assignment, Judgment))
    now = datetime.now(UTC)
    began = time.perf_counter()
    with transaction.atomic():
        _copy(
            Prompt,
            (
                (p0 + i, project.id, batch.id, f"{i:064x}", f"{i}: {text(15)}", "", "{}")
                for i in range(pairs)
            ),
            ["id", "project", "batch", "content_hash", "text", "external_id", "metadata"],
        )
        _copy(
            Response,
            (
                (r0 + i, p0 + i // 2, batch.id, f"{i:064x}", text(40), f"m{i % 2}", "{}")
                for i in range(2 * pairs)
            ),
            ["id", "prompt", "batch", "content_hash", "text", "model_name", "metadata"],
        )
        _copy(
            Pair,
            (
                (q0 + i, project.id, batch.id, p0 + i, r0 + 2 * i, r0 + 2 * i + 1, f"pair-{i}",
                 "{}", "", "", per_pair, per_pair, True, now, *(0,) * len(COUNT_COLUMNS))
                for i in range(pairs)
            ),
            ["id", "project", "batch", "prompt", "response_a", "response_b", "external_id",
             "metadata", "gold_choice", "seed_choice", "judgments_needed", "judgments_count",
             "is_active", "created_at", *COUNT_COLUMNS],
        )  # fmt: skip
        _copy(
            Assignment,
            (
                (a0 + k, q0 + k // per_pair, raters[(k // per_pair + k % per_pair) % RATERS],
                 k % 3 == 0, "done", now, now + timedelta(minutes=30))
                for k in range(pairs * per_pair)
            ),
            ["id", "pair", "rater", "swapped", "status", "created_at", "expires_at"],
        )  # fmt: skip
        choices = ("a", "a", "b", "b", "tie", "both_bad")

        def judgment(k: int) -> tuple:
            choice = choices[rng.randrange(6)]
            strength = rng.randint(1, 3) if choice in ("a", "b") else None
            return (
                j0 + k, q0 + k // per_pair, raters[(k // per_pair + k % per_pair) % RATERS],
                a0 + k, choice, strength, "{}", "" if k % 5 else text(8), k % 3 == 0,
                rng.randint(2_000, 60_000), None, "", "", now - timedelta(seconds=k),
            )  # fmt: skip

        _copy(
            Judgment,
            (judgment(k) for k in range(pairs * per_pair)),
            ["id", "pair", "rater", "assignment", "choice", "strength", "criteria", "rationale",
             "swapped", "duration_ms", "active_ms", "idempotency_key", "request_fingerprint",
             "created_at"],
        )  # fmt: skip
        fill_counts(project.id)
    print(f"seeded {pairs:,} pairs and {pairs * per_pair:,} judgments in "
          f"{time.perf_counter() - began:.0f} s")  # fmt: skip


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def _worker_of(master: int) -> int:
    deadline = time.monotonic() + 300  # a loaded shared host starts it slowly
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn started no worker")


def _warm_up(url: str, query: dict[str, str], headers: dict[str, str]) -> None:
    """Wait for the server, asking for the same format (empty): the libraries it loads (pyarrow
    for Parquet) are then in the baseline, and the growth measured is the export's own."""
    import requests

    for _ in range(100):
        try:
            warm = requests.get(
                url, params={**query, "since": "2999-01-01T00:00:00Z"},
                headers=headers, timeout=600,
            )  # fmt: skip
            break
        except requests.ConnectionError:
            time.sleep(0.1)
    warm.raise_for_status()


def _stream(
    url: str, query: dict[str, str], headers: dict[str, str], worker: int
) -> tuple[int, int, float, int, int]:
    """Stream the export once: bytes, lines, seconds, and the worker's RSS (KiB) before and at
    its peak, sampled every 50 ms."""
    import requests

    before = peak = _rss_kib(worker)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.05):
            peak = max(peak, _rss_kib(worker))

    sampler = threading.Thread(target=sample)
    sampler.start()
    size = lines = 0
    started = time.perf_counter()
    try:
        with requests.get(url, params=query, headers=headers, stream=True, timeout=600) as response:
            response.raise_for_status()
            for chunk in response.iter_content(1 << 20):
                size += len(chunk)
                lines += chunk.count(b"\n")
    finally:
        done.set()
        sampler.join()
    return size, lines, time.perf_counter() - started, before, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--format", choices=["trl", "judgments", "csv", "parquet"], default="judgments"
    )
    parser.add_argument("--table", choices=["trl", "judgments"], default="trl", help="for parquet")
    parser.add_argument(
        "--aggregation", choices=["majority", "weighted", "dawid_skene"], default="majority"
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        parser.error("set DATABASE_URL to a PostgreSQL database for the benchmark")
    create_database()
    import django

    django.setup()
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from annotation.models import Judgment, Project

    call_command("migrate", verbosity=0)
    project = Project.objects.filter(slug=SLUG).first()
    if project is None:
        _seed(args.judgments, random.Random(0))
        project = Project.objects.get(slug=SLUG)
    expected = Judgment.objects.filter(pair__project=project).count()
    lead = project.memberships.get(role="lead").user
    token, _ = Token.objects.get_or_create(user=lead)

    server = subprocess.Popen(
        [str(ROOT / ".venv/bin/gunicorn"), "config.wsgi", "--bind", f"127.0.0.1:{args.port}",
         "--workers", "1", "--timeout", "600", "--log-level", "warning"],
        cwd=ROOT,
        env={**os.environ},
    )  # fmt: skip
    try:
        worker = _worker_of(server.pid)
        url = f"http://127.0.0.1:{args.port}/api/v1/projects/{SLUG}/export/"
        headers = {"Authorization": f"Token {token.key}"}
        query = {"format": args.format, "table": args.table, "aggregation": args.aggregation}
        _warm_up(url, query, headers)
        size, lines, seconds, before, peak = _stream(url, query, headers, worker)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(
        f"{args.format} ({args.aggregation}): streamed {lines:,} lines ({expected:,} judgments), "
        f"{size / 1e6:,.1f} MB in {seconds:.1f} s "
        f"({lines / seconds:,.0f} lines/s, {size / 1e6 / seconds:.1f} MB/s)"
    )
    print(f"web worker RSS: {before / 1024:.0f} MiB before, {peak / 1024:.0f} MiB peak, "
          f"growth {(peak - before) / 1024:.1f} MiB; load average {os.getloadavg()}")  # fmt: skip
    wanted = {"judgments": expected, "csv": expected + 1}.get(args.format)  # CSV: a header
    if wanted is not None and lines != wanted:
        sys.exit("line count differs from the judgments in the database")


if __name__ == "__main__":
    main()
