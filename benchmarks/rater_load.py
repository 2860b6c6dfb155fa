"""Simulated raters against a real server: gunicorn, PostgreSQL, the JSON API, no think time.

    .venv/bin/python benchmarks/rater_load.py --raters 32 --seconds 20
    .venv/bin/python benchmarks/rater_load.py --raters 32 --seconds 12 --pairs 3000 \
        --order fill_first uncertainty fill_first uncertainty

Creates a fresh PostgreSQL database (dropped at the end unless --keep-db), migrates it, makes a
project per run (one run per --order value) with --pairs pairs (k = 3, each with the same random
model uncertainty) and --raters raters with API tokens, starts gunicorn with production settings
(DEBUG=false), and for each run in turn lets every rater loop `GET next` then `POST judgments`
(with an Idempotency-Key, retried with the same key on a connection error) for --seconds.
Prints judgments per second, p50/p95/p99 latency per call, errors, and the invariant check:
judgments stored == 201 answers, no pair over its required count, every pair's kept counts
(judgments_count, votes by choice) equal to its judgments, no (pair, rater) twice; and
the CPU that gunicorn, the benchmark database's PostgreSQL backends and this load generator used
during the run, since all three share the machine's cores; with several runs, their
judgments/s side by side. Exits 1 when an invariant fails or a call errs.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import resource
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PG_SERVER = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
CHOICES = ("left", "right", "tie")


@dataclass
class RaterLog:
    next_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    created: int = 0  # 201 answers: judgments this rater's requests recorded
    replayed: int = 0  # 200 answers: a retry found its judgment already recorded
    errors: list[str] = field(default_factory=list)
    exhausted: bool = False  # got 204: nothing left for this rater


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _psql(sql: str, database: str = "postgres") -> None:
    subprocess.run(
        ["psql", f"{PG_SERVER}/{database}", "-v", "ON_ERROR_STOP=1", "-qc", sql],
        check=True,
        capture_output=True,
        # A DROP DATABASE can wait on other sessions for ever; give up instead.
        env={**os.environ, "PGOPTIONS": "-c statement_timeout=20000"},
    )


def _server_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DEBUG": "false",
        "HTTPS": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "DATABASE_URL": database_url,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "CONN_MAX_AGE": "600",
        "CELERY_BROKER_URL": "memory://",
        "PYTHONPATH": str(ROOT),
    }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (Linux /proc); 0 once it ended."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    return {pid: _cpu_seconds(pid) for pid in pids}


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two readings; a process that started meanwhile counts in full."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _group_pids(group: int) -> list[int]:
    """The gunicorn master and its workers: every process in its process group."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == group:
                pids.append(int(entry.name))
    return pids


def _backend_pids(database: str) -> list[int]:
    """PostgreSQL's server processes for the benchmark's database (the workers keep theirs)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        )
        pids = [pid for (pid,) in cursor.fetchall()]
    connection.close()
    return pids


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process
    return usage.ru_utime + usage.ru_stime


def seed(*, pairs: int, raters: int, order: str, run: int) -> tuple[str, list[str]]:
    """Project `bench-<run>` served in `order`, with `pairs` pairs and `raters` raters of its
    own; returns its slug and the API tokens. Every run's pairs carry the same random
    model_uncertainty (a published model's view, as pool scoring leaves it), so that runs in
    different orders differ by their order only."""
    import hashlib

    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from annotation.models import Batch, Membership, Pair, Project, Prompt, Response

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    user_model = get_user_model()
    owner, _ = user_model.objects.get_or_create(username="bench-owner")
    slug = f"bench-{run}"
    project = Project.objects.create(
        slug=slug, name=slug, raters_per_pair=3, gold_rate=0, assignment_order=order
    )
    batch = Batch.objects.create(
        project=project, filename="bench.jsonl", sha256=sha(slug), uploaded_by=owner
    )
    prompts = Prompt.objects.bulk_create(
        Prompt(project=project, batch=batch, text=t, content_hash=sha(t))
        for t in (f"Question {i}: which answer is more helpful?" for i in range(pairs))
    )
    uncertainty = random.Random(0)
    responses = Response.objects.bulk_create(
        Response(prompt=p, batch=batch, text=t, content_hash=sha(t), model_name=m)
        for p in prompts
        for m, t in (("m1", f"A first answer to {p.text} " * 20), ("m2", f"Another to {p.text}"))
    )
    Pair.objects.bulk_create(
        Pair(
            project=project,
            batch=batch,
            prompt=p,
            response_a=responses[2 * i],
            response_b=responses[2 * i + 1],
            judgments_needed=3,
            model_uncertainty=uncertainty.random(),
        )
        for i, p in enumerate(prompts)
    )
    users = user_model.objects.bulk_create(
        user_model(username=f"bench-rater-{run}-{i}") for i in range(raters)
    )
    Membership.objects.bulk_create(Membership(project=project, user=u) for u in users)
    tokens = Token.objects.bulk_create(Token(user=u, key=secrets.token_hex(20)) for u in users)
    return slug, [t.key for t in tokens]


def invariants(slug: str, created: int) -> list[str]:
    from django.db.models import Count, F, Q

    from annotation.models import VOTE_CHOICES, Judgment, Pair, vote_field

    problems = []
    stored = Judgment.objects.filter(pair__project__slug=slug).count()
    if stored != created:
        problems.append(f"{stored} judgments stored but {created} 201 answers")
    over = Pair.objects.filter(project__slug=slug, judgments_count__gt=F("judgments_needed"))
    if over.exists():
        problems.append(f"{over.count()} pairs over their required count")
    recount = (
        Pair.objects.filter(project__slug=slug)
        .annotate(n=Count("judgments"))
        .exclude(n=F("judgments_count"))
    )
    if recount.exists():
        problems.append(f"{recount.count()} pairs whose judgments_count is not their judgments")
    by_choice = Pair.objects.filter(project__slug=slug).annotate(
        **{f"n_{c}": Count("judgments", filter=Q(judgments__choice=c)) for c in VOTE_CHOICES}
    )
    miscounted = by_choice.exclude(
        **{vote_field(c): F(f"n_{c}") for c in VOTE_CHOICES}
    )  # a pair with any vote column off
    if miscounted.exists():
        problems.append(f"{miscounted.count()} pairs whose vote counts are not their judgments")
    twice = (
        Judgment.objects.filter(pair__project__slug=slug)
        .values("pair", "rater")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    if twice.exists():
        problems.append(f"{twice.count()} (pair, rater) judged twice")
    return problems


def rater_loop(
    port: int, slug: str, token: str, deadline: float, think_ms: float, log: RaterLog
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
    rng = random.Random(token)

    def call(method: str, path: str, body: bytes | None, extra: dict) -> tuple[int, bytes]:
        nonlocal conn
        try:
            conn.request(method, path, body=body, headers={**headers, **extra})
            response = conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException) as error:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            log.errors.append(f"{method} {path}: {error!r}")
            return 0, b""

    try:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            status, body = call("GET", f"/api/v1/projects/{slug}/next/", None, {})
            log.next_ms.append((time.perf_counter() - started) * 1000)
            if status == 204:
                log.exhausted = True
                return
            if status != 200:
                if status:  # a connection error is logged by call()
                    log.errors.append(f"next: {status} {body[:200]!r}")
                continue
            lease = json.loads(body)["assignment"]
            payload = json.dumps(
                {"assignment": lease, "choice": rng.choice(CHOICES), "active_ms": 4000}
            ).encode()
            key = {"Idempotency-Key": str(uuid.uuid4()), "Content-Type": "application/json"}
            for _ in range(3):  # a retry after a lost connection reuses the key
                started = time.perf_counter()
                status, body = call("POST", f"/api/v1/projects/{slug}/judgments/", payload, key)
                log.submit_ms.append((time.perf_counter() - started) * 1000)
                if status == 201:
                    log.created += 1
                elif status == 200:
                    log.replayed += 1
                elif status:
                    log.errors.append(f"submit: {status} {body[:200]!r}")
                if status:
                    break
            if think_ms:  # reading time, drawn so that raters do not march in step
                time.sleep(rng.uniform(0.5, 1.5) * think_ms / 1000)
    finally:
        conn.close()


def _warm_up(port: int, slug: str, tokens: list[str]) -> None:
    def fetch(token: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            for _ in range(3):
                conn.request(
                    "GET", "/api/v1/projects/", headers={"Authorization": f"Token {token}"}
                )
                conn.getresponse().read()
        finally:
            conn.close()

    threads = [threading.Thread(target=fetch, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _percentiles(values: list[float]) -> str:
    if not values:
        return "no calls"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return (
        f"n={len(ordered):6d}  p50 {at(0.50):6.1f} ms  p95 {at(0.95):6.1f} ms  "
        f"p99 {at(0.99):6.1f} ms  max {ordered[-1]:7.1f} ms"
    )


@dataclass
class Run:
    """One timed run against one project, and what it measured."""

    order: str
    slug: str
    tokens: list[str]
    load_before: float = 0.0
    per_second: float = 0.0
    cpu_ms: float = 0.0  # gunicorn + PostgreSQL CPU per judgment: steadier than per_second
    next_ms: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def measure(
    run: Run, *, port: int, server: subprocess.Popen, database: str, args: argparse.Namespace
) -> bool:
    """Let the run's raters loop for --seconds and print what they got; True when it is clean
    (no error, invariants hold)."""
    from django.db import connection

    # Each worker imports the URLconf and opens its connection on its first request: do that
    # before the clock starts, from as many clients as there are raters.
    _warm_up(port, run.slug, run.tokens)
    web_before = _cpu_by_pid(_group_pids(server.pid))
    db_before = _cpu_by_pid(_backend_pids(database))
    client_before = _client_cpu()
    run.load_before = os.getloadavg()[0]
    logs = [RaterLog() for _ in run.tokens]
    started = time.monotonic()
    deadline = started + args.seconds
    threads = [
        threading.Thread(
            target=rater_loop, args=(port, run.slug, token, deadline, args.think_ms, log)
        )
        for token, log in zip(run.tokens, logs, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    client_cpu = _client_cpu() - client_before
    web_cpu = _cpu_used(web_before, _cpu_by_pid(_group_pids(server.pid)))
    # Backends opened during the run (gthread opens one per thread on first use) count too.
    db_cpu = _cpu_used(db_before, _cpu_by_pid(_backend_pids(database)))

    created = sum(log.created for log in logs)
    errors = [e for log in logs for e in log.errors]
    run.per_second = created / elapsed
    run.next_ms = [t for log in logs for t in log.next_ms]
    print(
        f"order {run.order}: {platform.machine()}, {os.cpu_count()} cores, {platform.system()}; "
        f"gunicorn {args.workers} workers x {args.threads} threads; "
        f"{args.raters} raters, {args.pairs} pairs (k=3), {elapsed:.1f} s, "
        f"think time {args.think_ms:.0f} ms"
    )
    # The machine may be shared: a load far above the core count means the figures are low.
    print(f"load average  before {run.load_before:.1f}, after {os.getloadavg()[0]:.1f}")
    print(f"judgments/s   {run.per_second:8.1f}   ({created} recorded)")
    print(f"next          {_percentiles(run.next_ms)}")
    print(f"submit        {_percentiles([t for log in logs for t in log.submit_ms])}")
    print(f"replayed      {sum(log.replayed for log in logs)}   errors {len(errors)}")
    per = 1000 / max(created, 1)
    run.cpu_ms = (web_cpu + db_cpu) * per
    print(
        f"CPU used      gunicorn {web_cpu:.1f} s ({web_cpu * per:.1f} ms/judgment), "
        f"PostgreSQL {db_cpu:.1f} s ({db_cpu * per:.1f} ms/judgment), "
        f"load generator {client_cpu:.1f} s ({client_cpu * per:.1f} ms/judgment); "
        f"{os.cpu_count()} cores x {elapsed:.1f} s = {os.cpu_count() * elapsed:.0f} s available"
    )
    for error in errors[:10]:
        print(f"  {error}")
    if any(log.exhausted for log in logs):
        print("note: the pool ran out for some raters before the time was up")
    run.problems = invariants(run.slug, created)
    connection.close()
    print("invariants    " + ("OK" if not run.problems else "FAILED: " + "; ".join(run.problems)))
    return not run.problems and not errors


def _summary(runs: list[Run]) -> None:
    """Runs side by side, each order against the first order's mean."""
    print("\nside by side (same server, same database, same pairs; in the order run):")
    for run in runs:
        ordered = sorted(run.next_ms) or [0.0]
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        print(
            f"  {run.order:12s} {run.per_second:7.1f} judgments/s   next p99 {p99:6.1f} ms   "
            f"server CPU {run.cpu_ms:5.1f} ms/judgment   load before {run.load_before:.1f}"
        )
    base = runs[0].order
    for order in dict.fromkeys(r.order for r in runs):
        mine = [r for r in runs if r.order == order]
        theirs = [r for r in runs if r.order == base]
        rate = sum(r.per_second for r in mine) / len(mine)
        cpu = sum(r.cpu_ms for r in mine) / len(mine)
        print(
            f"  mean {order:12s} {rate:7.1f} judgments/s "
            f"({rate / (sum(r.per_second for r in theirs) / len(theirs)):.3f} x {base}), "
            f"server CPU {cpu:5.1f} ms/judgment "
            f"({cpu / (sum(r.cpu_ms for r in theirs) / len(theirs)):.3f} x {base})"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raters", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pairs", type=int, default=5000)
    parser.add_argument(
        "--order",
        nargs="+",
        choices=("fill_first", "random", "uncertainty"),
        default=["fill_first"],
        help="serving order of each run, one run per value, in this order on the same server "
        "(alternate them to compare: fill_first uncertainty fill_first uncertainty)",
    )
    # 3 sync workers did best on 2 cores shared with PostgreSQL and the load generator (see
    # docs/benchmarks_rating.md); the Dockerfile's 4 x 4 gthread is measured with --threads 4.
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker (gthread)")
    parser.add_argument(
        "--think-ms", type=float, default=0.0, help="mean pause after each judgment (0: none)"
    )
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()

    database = f"pw_rater_bench_{os.getpid()}"
    database_url = f"{PG_SERVER}/{database}"
    env = _server_env(database_url)
    os.environ.update({k: env[k] for k in ("DEBUG", "HTTPS", "SECRET_KEY", "DATABASE_URL")})
    os.environ.update(CELERY_BROKER_URL="memory://", DJANGO_SETTINGS_MODULE="config.settings")
    _psql(f'CREATE DATABASE "{database}"')
    server = None
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=env,
            check=True,
        )
        sys.path.insert(0, str(ROOT))
        import django

        django.setup()
        from django.db import connection

        runs = [
            Run(order, *seed(pairs=args.pairs, raters=args.raters, order=order, run=i))
            for i, order in enumerate(args.order)
        ]
        connection.close()
        server, port = _start_server(args, env)
        clean = [
            measure(run, port=port, server=server, database=database, args=args) for run in runs
        ]
        if len(runs) > 1:
            _summary(runs)
        return 0 if all(clean) else 1
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
        if not args.keep_db:
            try:
                _psql(f'DROP DATABASE "{database}" WITH (FORCE)')
            except subprocess.CalledProcessError as error:
                print(f"could not drop {database}: {error.stderr.decode().strip()}")


def _start_server(args: argparse.Namespace, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """gunicorn on a free port, once it accepts connections."""
    port = _free_port()
    command = [
        str(ROOT / ".venv/bin/gunicorn"),
        "config.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(args.workers),
        "--log-level",
        "warning",
        "--backlog",
        "2048",
    ]
    if args.threads > 1:
        command += ["--worker-class", "gthread", "--threads", str(args.threads)]
    server = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    return server, port


if __name__ == "__main__":
    sys.exit(main())
