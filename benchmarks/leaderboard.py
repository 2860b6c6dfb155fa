"""Time the leaderboard end to end on 1,000,000 judgments of 50 models, against FastChat's way.

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/pw_leaderboard_bench \\
        .venv/bin/python benchmarks/leaderboard.py [--fastchat-rounds 2]

Loads (once; reused while the count matches) a project into the PostgreSQL database named by
DATABASE_URL, which must have 'bench' in its name (it is emptied on reload): 111,112 prompts,
each with three responses by three different models and all three pairs of them, each pair judged
by three of 100 raters, so 1,000,008 judgments. Outcomes follow Bradley-Terry with planted model
strengths and a planted preference for length and lists. The responses' style counts are stored
as the leaderboard stores them after its first run.

`--coverage 100` runs only the full coverage study (in memory, no database): how often the 95%
intervals hold the true rating over 100 simulated data sets.

Prints the time of `leaderboard_compute` (database read, 1,000 bootstrap rounds by prompt, style
control on; no cache), its parts, and FastChat's way of doing the same bootstrap: a fresh
scikit-learn fit on the resampled battle rows per round (FastChat's compute_mle_elo setup for the
raw ratings; the same LogisticRegression with the style columns added for style control), run for
`--fastchat-rounds` rounds and extrapolated to 1,000.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from pg_database import COUNT_COLUMNS, fill_counts, fresh_project  # benchmarks/
from scipy import sparse
from sklearn.linear_model import LogisticRegression

MODELS, PROMPTS, RATERS, SLUG = 50, 111_112, 100, "leaderboard-bench"
STYLE_EFFECT = np.array([0.8, 0.0, 0.3, 0.0])  # planted: length and list items win votes


def _setup_django() -> None:
    import django
    import psycopg
    from django.conf import settings
    from django.core.management import call_command

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    django.setup()
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql" or "bench" not in database["NAME"]:
        raise SystemExit("DATABASE_URL must name a PostgreSQL database with 'bench' in its name")
    admin = {"host": database["HOST"], "port": database["PORT"] or 5432, "dbname": "postgres"}
    admin.update(user=database["USER"], password=database["PASSWORD"] or None)
    with psycopg.connect(**admin, autocommit=True) as connection:
        found = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [database["NAME"]]
        ).fetchone()
        if not found:
            connection.execute(f'CREATE DATABASE "{database["NAME"]}"')
    call_command("migrate", verbosity=0)


def _copy(table: str, columns: dict[str, np.ndarray]) -> None:
    """COPY parallel columns into `table` as text, then move its id sequence past them."""
    from django.db import connection

    names = list(columns)
    text = io.StringIO()
    lines = columns[names[0]].astype(str)
    for name in names[1:]:
        lines = np.char.add(np.char.add(lines, "\t"), columns[name].astype(str))
    text.write("\n".join(lines.tolist()) + "\n")
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN") as copy:
            copy.write(text.getvalue())
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608 (model table names)
        )


def _world(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Prompts x 3 responses x 3 pairs x 3 judgments, as arrays."""
    strengths = np.sort(rng.normal(0, 0.6, MODELS))[::-1]
    models = np.argsort(rng.random((PROMPTS, MODELS)), axis=1)[:, :3].ravel()  # 3 distinct
    n_resp = models.size
    verbose = rng.lognormal(0, 0.4, MODELS)  # each model's typical length and formatting
    length = rng.poisson(800 * verbose[models]) + 1
    counts = np.column_stack(
        [
            length,
            rng.poisson(1.0 * verbose[models]),
            rng.poisson(4.0 * verbose[models]),
            rng.poisson(2.0 * verbose[models]),
        ]
    )
    first = np.repeat(np.arange(PROMPTS) * 3, 3) + np.tile([0, 0, 1], PROMPTS)
    second = np.repeat(np.arange(PROMPTS) * 3, 3) + np.tile([1, 2, 2], PROMPTS)
    a, b = counts[first].astype(float), counts[second].astype(float)
    z = (
        strengths[models[first]]
        - strengths[models[second]]
        + ((a - b) / (a + b + 1)) @ STYLE_EFFECT
    )
    pair = np.repeat(np.arange(first.size), 3)
    u = rng.random(pair.size)
    p = 1 / (1 + np.exp(-z[pair]))
    choice = np.where(u < 0.02, "both_bad", np.where(u < 0.12, "tie", ""))
    choice = np.where(choice == "", np.where(rng.random(pair.size) < p, "a", "b"), choice)
    start = rng.integers(0, RATERS, first.size)
    step = rng.integers(1, RATERS // 3, (first.size, 2))
    raters = np.column_stack([start, start + step[:, 0], start + step.sum(axis=1)]) % RATERS
    return {
        "n_resp": np.array(n_resp),
        "models": models,
        "counts": counts,
        "first": first,
        "second": second,
        "pair": pair,
        "choice": choice,
        "rater": raters.ravel(),
    }


def load(rng: np.random.Generator) -> Any:
    """Write the benchmark's world as a fresh project: prompts, responses, pairs, judgments."""
    from django.db import connection, transaction
    from django.utils import timezone

    from annotation.models import Assignment, Judgment, Pair, Prompt, Response

    world = _world(rng)
    now = timezone.now().isoformat()
    with transaction.atomic():
        project, batch, raters = fresh_project(
            slug=SLUG, name="Leaderboard benchmark", raters=RATERS, rater_prefix="lb-rater-",
            batch_format="responses",
        )  # fmt: skip
        prompt_ids, resp_ids = _copy_texts(world, project, batch)
        user_ids = np.array([u.id for u in raters])[world["rater"]]
        _copy_battles(world, project, batch, prompt_ids, resp_ids, user_ids, now)
        fill_counts(project.id)
    with connection.cursor() as cursor:
        for model in (Prompt, Response, Pair, Assignment, Judgment):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    return project


def _copy_texts(world: dict[str, Any], project: Any, batch: Any) -> tuple[np.ndarray, np.ndarray]:
    """Write the prompts and their three responses each, with style counts; return their ids."""
    from annotation.models import Prompt, Response

    prompt_ids = np.arange(1, PROMPTS + 1)
    _copy(
        Prompt._meta.db_table,
        {
            "id": prompt_ids,
            "project_id": np.full(PROMPTS, project.id),
            "batch_id": np.full(PROMPTS, batch.id),
            "content_hash": prompt_ids,
            "text": np.char.add("prompt ", prompt_ids.astype(str)),
            "external_id": np.full(PROMPTS, ""),
            "metadata": np.full(PROMPTS, "{}"),
        },
    )
    n_resp = int(world["n_resp"])
    resp_ids = np.arange(1, n_resp + 1)
    counts = world["counts"]
    _copy(
        Response._meta.db_table,
        {
            "id": resp_ids,
            "prompt_id": np.repeat(prompt_ids, 3),
            "batch_id": np.full(n_resp, batch.id),
            "content_hash": resp_ids,
            "text": np.char.add("response ", resp_ids.astype(str)),
            "model_name": np.char.add("model-", world["models"].astype(str)),
            "metadata": np.full(n_resp, "{}"),
            "style_length": counts[:, 0],
            "style_headers": counts[:, 1],
            "style_list_items": counts[:, 2],
            "style_bold": counts[:, 3],
        },
    )
    return prompt_ids, resp_ids


def _copy_battles(
    world: dict[str, Any],
    project: Any,
    batch: Any,
    prompt_ids: np.ndarray,
    resp_ids: np.ndarray,
    user_ids: np.ndarray,
    now: str,
) -> None:
    """Write the pairs, then one done assignment and one judgment per battle."""
    pair_ids = _copy_pairs(world, project, batch, prompt_ids, resp_ids, now)
    _copy_judgments(world, pair_ids, user_ids, now)


def _copy_pairs(
    world: dict[str, Any],
    project: Any,
    batch: Any,
    prompt_ids: np.ndarray,
    resp_ids: np.ndarray,
    now: str,
) -> np.ndarray:
    """Write the pairs (three per prompt, ids 1 to n); return their ids."""
    from annotation.models import Pair

    n_pairs = world["first"].size
    pair_ids = np.arange(1, n_pairs + 1)
    _copy(
        Pair._meta.db_table,
        {
            "id": pair_ids,
            "project_id": np.full(n_pairs, project.id),
            "batch_id": np.full(n_pairs, batch.id),
            "prompt_id": np.repeat(prompt_ids, 3),
            "response_a_id": resp_ids[world["first"]],
            "response_b_id": resp_ids[world["second"]],
            "external_id": np.full(n_pairs, ""),
            "gold_choice": np.full(n_pairs, ""),
            "seed_choice": np.full(n_pairs, ""),
            "metadata": np.full(n_pairs, "{}"),
            "judgments_needed": np.full(n_pairs, 3),
            "judgments_count": np.full(n_pairs, 3),
            **dict.fromkeys(COUNT_COLUMNS, np.zeros(n_pairs, dtype=np.int64)),
            "is_active": np.full(n_pairs, "t"),
            "created_at": np.full(n_pairs, now),
        },
    )
    return pair_ids


def _copy_judgments(
    world: dict[str, Any], pair_ids: np.ndarray, user_ids: np.ndarray, now: str
) -> None:
    """Write one done assignment and one judgment per battle (ids 1 to n)."""
    from annotation.models import Assignment, Judgment

    n = world["pair"].size
    ids = np.arange(1, n + 1)
    _copy(
        Assignment._meta.db_table,
        {
            "id": ids,
            "pair_id": pair_ids[world["pair"]],
            "rater_id": user_ids,
            "swapped": np.full(n, "f"),
            "status": np.full(n, "done"),
            "created_at": np.full(n, now),
            "expires_at": np.full(n, now),
        },
    )
    decisive = np.isin(world["choice"], ["a", "b"])
    _copy(
        Judgment._meta.db_table,
        {
            "id": ids,
            "pair_id": pair_ids[world["pair"]],
            "rater_id": user_ids,
            "assignment_id": ids,
            "choice": world["choice"],
            "strength": np.where(decisive, "2", "\\N"),
            "criteria": np.full(n, "{}"),
            "rationale": np.full(n, ""),
            "swapped": np.full(n, "f"),
            "duration_ms": np.full(n, 20_000),
            "idempotency_key": np.full(n, ""),
            "request_fingerprint": np.full(n, ""),
            "created_at": np.full(n, now),
        },
    )


CPU: dict[str, float] = {}


def timed(function: Callable[[], Any], name: str = "") -> tuple[float, Any]:
    """Wall-clock seconds (and this process's CPU seconds, kept under `name`)."""
    started, cpu = time.perf_counter(), time.process_time()
    result = function()
    CPU[name] = time.process_time() - cpu
    return time.perf_counter() - started, result


def _battle_rows(battles: Any) -> tuple[np.ndarray, ...]:
    """One row per judgment, as FastChat keeps battles: a, b, outcome for a, style row."""
    count = battles.count.astype(np.int64)
    rows = np.repeat(np.arange(count.size), count)
    # Within a pair: its a-wins first, then its ties, then b-wins (the order does not matter).
    rank = np.arange(rows.size) - np.repeat(np.cumsum(count) - count, count)
    decisive_a = (battles.wins_a - battles.ties / 2)[rows]
    ties = battles.ties[rows]
    outcome = np.where(rank < decisive_a, 1.0, np.where(rank < decisive_a + ties, 0.5, 0.0))
    return battles.model_a[rows], battles.model_b[rows], outcome, battles.style[rows]


def fastchat_round(a: np.ndarray, b: np.ndarray, outcome: np.ndarray, m: int) -> np.ndarray:
    """compute_mle_elo's setup on one resample: doubled wins plus ties, two weighted rows per
    ordered pair of models, X = +-ln 10, sklearn LogisticRegression without penalty."""
    wins = np.zeros((m, m))
    np.add.at(wins, (a, b), 2 * outcome)
    np.add.at(wins, (b, a), 2 * (1 - outcome))
    i, j = np.nonzero(~np.eye(m, dtype=bool))
    x = np.zeros((i.size, m))
    x[np.arange(i.size), i], x[np.arange(i.size), j] = math.log(10), -math.log(10)
    fit = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-6)
    fit.fit(
        np.vstack([x, x]),
        np.r_[np.ones(i.size), np.zeros(i.size)],
        sample_weight=np.r_[wins[i, j], wins[j, i]],
    )
    return 400 * fit.coef_[0] + 1000


def fastchat_style_round(
    a: np.ndarray, b: np.ndarray, outcome: np.ndarray, style: np.ndarray, m: int
) -> np.ndarray:
    """The same with style control: every battle row, the style columns beside the models'
    (ties as half a win by doubling each battle into a win row and a loss row)."""
    rows = np.arange(a.size)
    incidence = sparse.csr_array(
        (np.r_[np.ones(a.size), -np.ones(a.size)], (np.r_[rows, rows], np.r_[a, b])),
        shape=(a.size, m),
    )
    x = sparse.hstack([incidence, sparse.csr_array(style)]).tocsr()
    fit = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-6, max_iter=1000)
    fit.fit(
        sparse.vstack([x, x]),
        np.r_[np.ones(a.size), np.zeros(a.size)],
        sample_weight=np.r_[outcome, 1 - outcome],
    )
    return fit.coef_[0]


def coverage_study(*, datasets: int, rounds: int) -> None:
    """The full coverage study (the test runs a small one): 10 models, 2,000 prompts each with one
    pair judged 3 times, judgments of a prompt copying a shared draw half of the time."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from annotation.leaderboard.fit import MEAN_RATING, SCALE, Battles, leaderboard_fit

    strengths = np.linspace(-1.0, 1.0, 10)
    truth = MEAN_RATING + SCALE * (strengths - strengths.mean())
    covered = total = 0
    started = time.perf_counter()
    for seed in range(datasets):
        rng = np.random.default_rng(seed)
        prompts = 2000
        a = rng.integers(0, 10, prompts)
        b = (a + rng.integers(1, 10, prompts)) % 10
        p = 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
        shared = rng.random(prompts) < p
        own = rng.random((prompts, 3)) < p[:, None]
        wins = np.where(rng.random((prompts, 3)) < 0.5, shared[:, None], own).sum(axis=1)
        battles = Battles(
            models=[str(i) for i in range(10)],
            model_a=a,
            model_b=b,
            wins_a=wins.astype(float),
            count=np.full(prompts, 3.0),
            ties=np.zeros(prompts),
            cluster=np.arange(prompts),
        )
        board = leaderboard_fit(battles, rounds=rounds, seed=seed)
        for row in board.ratings:
            covered += row.ci_low <= truth[int(row.model)] <= row.ci_high
            total += 1
    print(
        f"coverage of the 95% intervals over {datasets} data sets x 10 models, {rounds} rounds: "
        f"{covered / total:.3f} ({covered}/{total}) in {time.perf_counter() - started:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--fastchat-rounds", type=int, default=2)
    parser.add_argument(
        "--coverage", type=int, metavar="DATASETS", help="run only the coverage study"
    )
    args = parser.parse_args()
    if args.coverage:
        coverage_study(datasets=args.coverage, rounds=args.rounds)
        return
    _setup_django()
    from annotation.leaderboard.fit import leaderboard_fit
    from annotation.models import Judgment, Project
    from annotation.selectors.leaderboard import LeaderboardScope, leaderboard_battles
    from annotation.services.leaderboard import leaderboard_compute

    rng = np.random.default_rng(0)
    project = Project.objects.filter(slug=SLUG).first()
    if project is None or Judgment.objects.filter(pair__project=project).count() != PROMPTS * 9:
        seconds, project = timed(lambda: load(rng))
        print(f"loaded {PROMPTS * 9:,} judgments in {seconds:.0f} s")
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line),
        platform.machine(),
    )
    print(f"{model}; numpy {np.__version__}; load average {os.getloadavg()[0]:.1f}")
    scope = LeaderboardScope()
    total, board = timed(
        lambda: leaderboard_compute(
            project=project, scope=scope, style_control=True, rounds=args.rounds, use_cache=False
        ),
        "total",
    )
    read, battles = timed(lambda: leaderboard_battles(project=project, scope=scope), "read")
    raw, _ = timed(lambda: leaderboard_fit(battles, rounds=args.rounds), "raw")
    print(
        f"{board.battles:,} battles, {len(board.ratings)} models, {board.clusters:,} prompts, "
        f"{battles.model_a.size:,} battle rows (pairs)"
    )
    print(
        f"leaderboard_compute, style control, {args.rounds} rounds:  {total:.1f} s "
        f"(CPU of this process {CPU['total']:.1f} s)"
    )
    print(f"  of which the database read:                 {read:.1f} s (CPU {CPU['read']:.1f} s)")
    print(
        f"leaderboard_fit without style control, {args.rounds} rounds: {raw:.1f} s "
        f"(CPU {CPU['raw']:.1f} s)"
    )
    coefficients = ", ".join(f"{e.name} {e.coefficient:.3f}" for e in board.style)
    print(f"style coefficients: {coefficients} (planted {STYLE_EFFECT.tolist()})")

    a, b, outcome, style = _battle_rows(battles)
    m = len(battles.models)
    sample = np.random.default_rng(1)
    per_raw, per_style, cpu_raw, cpu_style = [], [], [], []
    for _ in range(args.fastchat_rounds):
        pick = sample.integers(0, a.size, a.size)  # FastChat resamples battle rows
        per_raw.append(timed(partial(fastchat_round, a[pick], b[pick], outcome[pick], m), "f")[0])
        cpu_raw.append(CPU["f"])
        pick = sample.integers(0, a.size, a.size)
        call = partial(fastchat_style_round, a[pick], b[pick], outcome[pick], style[pick], m)
        per_style.append(timed(call, "f")[0])
        cpu_style.append(CPU["f"])
    fastchat_raw = float(np.mean(per_raw)) * args.rounds
    fastchat_style = float(np.mean(per_style)) * args.rounds
    print(
        f"FastChat way, raw: {np.mean(per_raw):.2f} s a round -> {fastchat_raw:.0f} s for "
        f"{args.rounds} (ratio {fastchat_raw / raw:.0f}x); CPU {np.mean(cpu_raw):.2f} s a round "
        f"(ratio {np.mean(cpu_raw) * args.rounds / CPU['raw']:.0f}x)"
    )
    print(
        f"FastChat way, style control: {np.mean(per_style):.1f} s a round -> "
        f"{fastchat_style:.0f} s for {args.rounds} (ratio {fastchat_style / total:.0f}x "
        "against leaderboard_compute with its database read); "
        f"CPU {np.mean(cpu_style):.1f} s a round "
        f"(ratio {np.mean(cpu_style) * args.rounds / CPU['total']:.0f}x)"
    )


if __name__ == "__main__":
    main()
