"""Time the agreement metrics on a project-sized set of judgments, against the krippendorff package.

    .venv/bin/python benchmarks/agreement.py            # 330,000 pairs x 3 raters, 200 raters
    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/pw_agree_bench \
        .venv/bin/python benchmarks/agreement.py --from-db

Prints the time of ``agreement_summary`` (every metric, 1,000 bootstrap resamples) and of our
nominal Krippendorff's alpha next to ``krippendorff.alpha`` on the same data, with their ratio.
Judgments come from :func:`synthetic_judgments`; another source only has to return a
``JudgmentArrays`` to be timed the same way by :func:`report`.

``--from-db`` bulk-loads the same synthetic judgments into the PostgreSQL database named by
DATABASE_URL (created and migrated if needed; loaded once, then reused) as a real project with
users, pairs, assignments and judgments, and times what a report costs end to end: the read
from PostgreSQL (binary COPY into numpy) plus every metric.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import krippendorff
import numpy as np
from pg_database import COUNT_COLUMNS, fill_counts, fresh_project  # benchmarks/

from annotation.agreement.metrics import (
    BOTH_BAD,
    NOT_DECISIVE,
    TIE,
    JudgmentArrays,
    agreement_summary,
    krippendorff_alpha,
)


def _has_repeats(rows: np.ndarray) -> np.ndarray:
    ordered = np.sort(rows, axis=1)
    return (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)


def synthetic_judgments(*, pairs: int, raters: int, per_pair: int, seed: int) -> JudgmentArrays:
    """Judgments with realistic structure: a latent preference per pair, raters of varied skill.

    Each pair has a true answer (45% a, 45% b, 10% tie). Each rater follows it with a probability
    drawn from Beta(8, 3) (mean 0.73) and otherwise answers at random, marks 3% "both bad", leans
    to the left screen side a little (a few raters a lot), and has a log-normal time on task.
    """
    rng = np.random.default_rng(seed)
    rater = rng.integers(raters, size=(pairs, per_pair))
    clash = _has_repeats(rater)
    while clash.any():  # redraw the few pairs that got one rater twice
        rater[clash] = rng.integers(raters, size=(int(clash.sum()), per_pair))
        clash = _has_repeats(rater)
    rater = rater.ravel()
    pair = np.repeat(np.arange(pairs), per_pair)
    n = pair.size

    truth_of_pair = rng.choice(3, size=pairs, p=[0.45, 0.45, 0.10])
    truth = truth_of_pair[pair]
    skill = rng.beta(8, 3, size=raters)[rater]
    choice = np.where(rng.random(n) < skill, truth, rng.choice(3, size=n, p=[0.4, 0.4, 0.2]))
    choice = np.where(rng.random(n) < 0.03, BOTH_BAD, choice)

    swapped = rng.random(n) < 0.5
    left_lean = np.where(rng.random(raters) < 0.05, 0.3, 0.03)[rater]
    decisive = choice <= 1
    # A rater who leans left sometimes picks the left response whatever it is.
    flip = decisive & (rng.random(n) < left_lean)
    choice = np.where(flip, np.where(swapped, 1, 0), choice)
    left = np.where(decisive, (choice == 0) != swapped, NOT_DECISIVE)

    strength = rng.choice([1, 2, 3], size=n, p=[0.5, 0.35, 0.15]).astype(np.float64)
    signed = np.select([choice == 0, choice == 1, choice == TIE], [strength, -strength, 0], np.nan)
    speed = rng.lognormal(np.log(20_000), 0.3, size=raters)[rater]
    duration = rng.lognormal(np.log(speed), 0.5)
    duration[rng.random(n) < 0.01] = np.nan
    gold = np.where(rng.random(pairs) < 0.05, truth_of_pair, -1)[pair]
    return JudgmentArrays(
        pair=pair,
        rater=rater,
        choice=choice,
        signed_strength=signed,
        left_chosen=left,
        duration_ms=duration,
        gold=gold,
    )


def best_time(function: Callable[[], Any], *, repeat: int) -> tuple[float, Any]:
    """Fastest wall time of ``repeat`` calls, and the last result."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def report(arrays: JudgmentArrays, *, repeat: int) -> None:
    print(f"{platform.processor() or platform.machine()}, numpy {np.__version__}")
    print(f"{len(arrays):,} judgments, {arrays.n_pairs:,} pairs, {arrays.n_raters} raters")

    summary_s, summary = best_time(
        lambda: agreement_summary(arrays, too_fast_ms=5_000), repeat=repeat
    )
    ours_s, ours = best_time(
        lambda: krippendorff_alpha(arrays.pair, arrays.choice, level="nominal"), repeat=repeat
    )

    # The package wants raters x units, nan where a rater did not judge a pair.
    started = time.perf_counter()
    dense = np.full((arrays.n_raters, arrays.n_pairs), np.nan)
    dense[arrays.rater, arrays.pair] = arrays.choice
    dense_s = time.perf_counter() - started
    theirs_s, theirs = best_time(
        lambda: krippendorff.alpha(reliability_data=dense, level_of_measurement="nominal"),
        repeat=repeat,
    )
    counts = np.zeros((arrays.n_pairs, 4), dtype=np.int64)
    np.add.at(counts, (arrays.pair, arrays.choice), 1)
    counts_s, from_counts = best_time(
        lambda: krippendorff.alpha(value_counts=counts, level_of_measurement="nominal"),
        repeat=repeat,
    )

    headline = summary["coefficients"]
    for name in ("percent_agreement", "fleiss_kappa", "krippendorff_alpha_nominal"):
        entry = headline[name]
        print(f"  {name} = {entry['value']:.4f} [{entry['low']:.4f}, {entry['high']:.4f}]")
    entry = headline["krippendorff_alpha_interval"]
    print(f"  krippendorff_alpha_interval = {entry['value']:.4f}")
    print(f"agreement_summary (all metrics, 1000 resamples): {summary_s:.3f} s")
    print(f"our krippendorff_alpha, nominal:                 {ours_s:.4f} s  (alpha {ours:.6f})")
    print(
        f"krippendorff.alpha, reliability_data {dense.shape}: {theirs_s:.3f} s  "
        f"(alpha {theirs:.6f}; building the matrix took another {dense_s:.3f} s)"
    )
    print(
        f"krippendorff.alpha, value_counts {counts.shape}: {counts_s:.4f} s  "
        f"(alpha {from_counts:.6f})"
    )
    print(
        f"ratio krippendorff.alpha / ours: {theirs_s / ours_s:.0f}x on reliability_data, "
        f"{counts_s / ours_s:.1f}x on value_counts"
    )


BENCH_SLUG = "agreement-bench"
_CHOICE_NAMES = np.array(["a", "b", "tie", "both_bad"])


def _database_ready() -> None:
    """Create the benchmark database if it is missing, then migrate it."""
    import django
    import psycopg
    from django.conf import settings
    from django.core.management import call_command

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    django.setup()
    database = settings.DATABASES["default"]
    if database["ENGINE"] != "django.db.backends.postgresql":
        raise SystemExit("--from-db needs DATABASE_URL to name a PostgreSQL database")
    if "bench" not in database["NAME"]:
        # Reloading deletes every pair and judgment in the database: never point it at real data.
        raise SystemExit("--from-db needs a database of its own, with 'bench' in its name")
    admin = {"host": database["HOST"], "port": database["PORT"] or 5432, "dbname": "postgres"}
    admin.update(user=database["USER"], password=database["PASSWORD"] or None)
    with psycopg.connect(**admin, autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [database["NAME"]]
        ).fetchone()
        if not exists:
            connection.execute(f'CREATE DATABASE "{database["NAME"]}"')
    call_command("migrate", verbosity=0)


def _copy_rows(table: str, columns: list[str], rows: list[np.ndarray]) -> None:
    """COPY parallel columns (already text-ready arrays) into `table`, then move its id sequence."""
    from django.db import connection

    text = io.StringIO()
    lines = np.char.add(rows[0].astype(str), "")
    for column in rows[1:]:
        lines = np.char.add(np.char.add(lines, "\t"), column.astype(str))
    text.write("\n".join(lines.tolist()))
    text.write("\n")
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            copy.write(text.getvalue())
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608 (model table names)
        )


def load_into_database(arrays: JudgmentArrays) -> Any:
    """Store `arrays` as the judgments of a fresh benchmark project (replacing an older one)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from annotation.models import Assignment, Judgment, Pair, Prompt

    now = timezone.now().isoformat()
    with transaction.atomic():
        project, batch, raters = fresh_project(
            slug=BENCH_SLUG, name="Agreement benchmark", raters=arrays.n_raters,
            rater_prefix="bench-rater-", batch_format="pair",
        )  # fmt: skip
        prompt = Prompt.objects.create(project=project, batch=batch, content_hash="0", text="?")
        pair_ids = _copy_pairs(arrays, project, batch, prompt, now)
        user_ids = np.array([u.id for u in raters])[arrays.rater]
        _copy_judgments(arrays, pair_ids[arrays.pair], user_ids, now)
        fill_counts(project.id)
    with connection.cursor() as cursor:
        for model in (Pair, Assignment, Judgment):
            cursor.execute(f"ANALYZE {model._meta.db_table}")
    return project


def _copy_pairs(
    arrays: JudgmentArrays, project: Any, batch: Any, prompt: Any, now: str
) -> np.ndarray:
    """Write the pairs (ids 1 to n) with their responses; return the pair ids."""
    from annotation.models import Pair
    from annotation.models import Response as ModelResponse

    # Pairs are distinct couples (i < j) of one prompt's responses: 820 responses give 335,790.
    n_pairs = arrays.n_pairs
    size = int(np.ceil((1 + np.sqrt(1 + 8 * n_pairs)) / 2))
    responses = ModelResponse.objects.bulk_create(
        ModelResponse(prompt=prompt, batch=batch, content_hash=str(i), text=f"response {i}")
        for i in range(size)
    )
    first, second = np.triu_indices(size, k=1)
    response_ids = np.array([r.id for r in responses])
    gold_of_pair = np.full(n_pairs, -1)
    gold_of_pair[arrays.pair] = arrays.gold
    gold_names = np.where(gold_of_pair >= 0, _CHOICE_NAMES[np.maximum(gold_of_pair, 0)], "")
    pair_ids = np.arange(1, n_pairs + 1)
    judged = np.bincount(arrays.pair, minlength=n_pairs)
    columns = {
        "id": pair_ids,
        "project_id": np.full(n_pairs, project.id),
        "batch_id": np.full(n_pairs, batch.id),
        "prompt_id": np.full(n_pairs, prompt.id),
        "response_a_id": response_ids[first[:n_pairs]],
        "response_b_id": response_ids[second[:n_pairs]],
        "external_id": np.full(n_pairs, ""),
        "metadata": np.full(n_pairs, "{}"),
        "gold_choice": gold_names,
        "seed_choice": np.full(n_pairs, ""),
        "judgments_needed": judged,
        "judgments_count": judged,
        **dict.fromkeys(COUNT_COLUMNS, np.zeros(n_pairs, dtype=np.int64)),  # fill_counts fills
        "is_active": np.full(n_pairs, "t"),
        "created_at": np.full(n_pairs, now),
    }
    _copy_rows(Pair._meta.db_table, list(columns), list(columns.values()))
    return pair_ids


def _copy_judgments(
    arrays: JudgmentArrays,
    judged_pair_ids: np.ndarray,
    user_ids: np.ndarray,
    now: str,
) -> None:
    """Write one done assignment and one judgment per row of `arrays` (ids 1 to n)."""
    from annotation.models import Assignment, Judgment

    n = len(arrays)
    ids = np.arange(1, n + 1)
    decisive = arrays.choice <= 1
    # Screen side: the left one is A unless swapped, so swapped = chose A xor picked left.
    rng = np.random.default_rng(1)
    swapped = np.where(
        decisive, (arrays.choice == 0) != (arrays.left_chosen == 1), rng.random(n) < 0.5
    )
    flag = np.where(swapped, "t", "f")
    strength = np.where(decisive, np.abs(np.nan_to_num(arrays.signed_strength)), 0)
    strength_text = np.where(decisive, strength.astype(np.int64).astype(str), "\\N")
    duration = np.nan_to_num(arrays.duration_ms, nan=20_000).astype(np.int64)
    assignments = {
        "id": ids,
        "pair_id": judged_pair_ids,
        "rater_id": user_ids,
        "swapped": flag,
        "status": np.full(n, "done"),
        "created_at": np.full(n, now),
        "expires_at": np.full(n, now),
    }
    _copy_rows(Assignment._meta.db_table, list(assignments), list(assignments.values()))
    judgments = {
        "id": ids,
        "pair_id": judged_pair_ids,
        "rater_id": user_ids,
        "assignment_id": ids,
        "choice": _CHOICE_NAMES[arrays.choice],
        "strength": strength_text,
        "criteria": np.full(n, "{}"),
        "rationale": np.full(n, ""),
        "swapped": flag,
        "duration_ms": duration,
        "idempotency_key": np.full(n, ""),
        "request_fingerprint": np.full(n, ""),
        "created_at": np.full(n, now),
    }
    _copy_rows(Judgment._meta.db_table, list(judgments), list(judgments.values()))


def report_from_database(arrays: JudgmentArrays, *, repeat: int) -> None:
    """Time a report's cost from PostgreSQL: read, then every metric; reload data if it changed."""
    _database_ready()
    from annotation.models import Judgment, Project
    from annotation.selectors.agreement import AgreementScope, judgment_arrays_load
    from annotation.services.agreement import agreement_metrics_compute

    project = Project.objects.filter(slug=BENCH_SLUG).first()
    stored = Judgment.objects.filter(pair__project=project).count() if project else 0
    if stored != len(arrays):
        started = time.perf_counter()
        project = load_into_database(arrays)
        print(f"loaded {len(arrays):,} judgments in {time.perf_counter() - started:.1f} s")
    scope = AgreementScope()
    print(f"{platform.processor() or platform.machine()}, numpy {np.__version__}, PostgreSQL")
    read_s, loaded = best_time(
        lambda: judgment_arrays_load(project=project, scope=scope), repeat=repeat
    )
    metrics_s, summary = best_time(
        lambda: agreement_summary(loaded.arrays, too_fast_ms=5_000), repeat=repeat
    )
    total_s, computed = best_time(
        lambda: agreement_metrics_compute(project=project, scope=scope), repeat=repeat
    )
    rows_s, by_rows = best_time(
        lambda: judgment_arrays_load(project=project, scope=scope, use_copy=False), repeat=1
    )
    in_memory = agreement_summary(arrays, too_fast_ms=5_000)["coefficients"]
    print(
        f"{len(loaded.arrays):,} judgments, {loaded.arrays.n_pairs:,} pairs, "
        f"{loaded.arrays.n_raters} raters read back"
    )
    for name in (
        "percent_agreement",
        "fleiss_kappa",
        "krippendorff_alpha_nominal",
        "krippendorff_alpha_interval",
    ):
        value = summary["coefficients"][name]["value"]
        print(f"  {name} = {value:.6f} (from memory {in_memory[name]['value']:.6f})")
    print(f"read from PostgreSQL (binary COPY -> numpy):  {read_s:.3f} s")
    print(f"read with values_list rows (for comparison):  {rows_s:.3f} s")
    print(f"agreement_summary on what was read:          {metrics_s:.3f} s")
    print(f"agreement_metrics_compute (read + metrics + names + flags): {total_s:.3f} s")
    assert len(by_rows.arrays) == len(loaded.arrays) == computed.judgments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=330_000)
    parser.add_argument("--raters", type=int, default=200)
    parser.add_argument("--per-pair", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="timed calls; the best is shown")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--from-db", action="store_true", help="time the read from PostgreSQL plus the metrics"
    )
    args = parser.parse_args()
    arrays = synthetic_judgments(
        pairs=args.pairs, raters=args.raters, per_pair=args.per_pair, seed=args.seed
    )
    if args.from_db:
        report_from_database(arrays, repeat=args.repeat)
    else:
        report(arrays, repeat=args.repeat)


if __name__ == "__main__":
    main()
