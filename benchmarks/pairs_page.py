"""Time a page of the data browser's selector at 1,000,000 pairs, under each filter and ordering.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pw_pairs_bench \\
        .venv/bin/python benchmarks/pairs_page.py --pairs 1000000

Creates the database if it is missing, migrates it, and (once; later runs reuse it) fills one
project with PAIRS pairs in bulk SQL (generate_series): 1% gold, 70% of pairs with 3 judgments,
20% with 1, 10% with none (random choices: 45% a, 40% b, 10% tie, 5% both bad), every other pair
scored by a model (model_p_a uniform), and 0.1% of pairs with a flag; then the vote and flag
counts kept on each pair's row (Pair.votes_a... and flags_count) as the engine keeps them.

For each case (a filter and an ordering) it prints the time of the first page and of a deep page
(keyset: after the pair halfway through the matches, at most 500,000 deep), each the median of
--repeat runs of `annotation.selectors.pairs.pair_page`, the number of queries each page made, and
beside the deep page the same page by OFFSET (one run: it is slow), the reference a keyset
replaces. Finding the
halfway pair (a count and an OFFSET query) is set-up and not timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from pg_database import COUNT_COLUMNS, create_database, fill_counts  # benchmarks/

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("HTTPS", "false")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-that-is-long-enough-0123456789")

SLUG = "pairs-bench"
RATERS = 40
DEEPEST = 500_000

# Bulk SQL: each statement fills one table from generate_series, ids in pair order. %(x)s are
# psycopg parameters; {t} names come from the models' db_table.
SEED_SQL = [
    """INSERT INTO {prompt} (project_id, batch_id, content_hash, text, external_id, metadata)
       SELECT %(project)s, %(batch)s, md5(i::text), 'Prompt ' || i || ': why is the sky blue?',
              '', '{{}}'
       FROM generate_series(1, %(pairs)s) i""",
    """INSERT INTO {response} (prompt_id, batch_id, content_hash, text, model_name, metadata)
       SELECT p.id, p.batch_id, md5(side || p.id), 'Because of Rayleigh scattering, ' || side,
              'model-' || side || (p.id %% 5), '{{}}'
       FROM {prompt} p CROSS JOIN (VALUES ('a'), ('b')) s(side)
       WHERE p.project_id = %(project)s""",
    """INSERT INTO {pair} (project_id, batch_id, prompt_id, response_a_id, response_b_id,
                           external_id, metadata, gold_choice, seed_choice, judgments_needed,
                           judgments_count, is_active, model_p_a, model_uncertainty,
                           model_version, created_at, {counts})
       SELECT %(project)s, p.batch_id, p.id, ra.id, rb.id, '', '{{}}',
              CASE WHEN p.id %% 100 = 0 THEN 'a' ELSE '' END, '', 3,
              CASE WHEN p.id %% 10 < 7 THEN 3 WHEN p.id %% 10 < 9 THEN 1 ELSE 0 END, true,
              CASE WHEN p.id %% 2 = 0 THEN random() END,
              CASE WHEN p.id %% 2 = 0 THEN random() / 5 END,
              CASE WHEN p.id %% 2 = 0 THEN 3 END,
              now() - make_interval(secs => %(pairs)s - p.id), {zeros}
       FROM {prompt} p
       JOIN {response} ra ON ra.prompt_id = p.id AND ra.content_hash = md5('a' || p.id)
       JOIN {response} rb ON rb.prompt_id = p.id AND rb.content_hash = md5('b' || p.id)
       WHERE p.project_id = %(project)s
       ORDER BY p.id""",
    """INSERT INTO {assignment} (pair_id, rater_id, swapped, status, created_at, expires_at)
       SELECT q.id, (%(raters)s::bigint[])[1 + (q.id + k) %% %(n_raters)s], k = 1, 'done',
              now(), now()
       FROM {pair} q CROSS JOIN generate_series(0, 2) k
       WHERE q.project_id = %(project)s AND k < q.judgments_count""",
    """INSERT INTO {judgment} (pair_id, rater_id, assignment_id, choice, strength, criteria,
                               rationale, swapped, duration_ms, active_ms, idempotency_key,
                               request_fingerprint, created_at)
       SELECT pair_id, rater_id, id, choice,
              CASE WHEN choice IN ('a', 'b') THEN 2 END, '{{}}', '', swapped, 9000, NULL, '',
              '', now()
       FROM (SELECT a.*, CASE WHEN r < 0.45 THEN 'a' WHEN r < 0.85 THEN 'b'
                              WHEN r < 0.95 THEN 'tie' ELSE 'both_bad' END AS choice
             FROM (SELECT a.*, random() AS r FROM {assignment} a
                   JOIN {pair} q ON q.id = a.pair_id WHERE q.project_id = %(project)s) a) j""",
    # A flag per thousandth pair, from a rater who did not judge it.
    """WITH leases AS (
         INSERT INTO {assignment} (pair_id, rater_id, swapped, status, created_at, expires_at)
         SELECT q.id, (%(raters)s::bigint[])[1 + (q.id + 3) %% %(n_raters)s], false, 'skipped',
                now(), now()
         FROM {pair} q WHERE q.project_id = %(project)s AND q.id %% 1000 = 7
         RETURNING id, pair_id, rater_id)
       INSERT INTO {flag} (pair_id, rater_id, assignment_id, reason, note, created_at)
       SELECT pair_id, rater_id, id, 'broken', '', now() FROM leases""",
]


def _seed(pairs: int) -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from annotation.models import Assignment, Batch, Flag, Judgment, Pair, Project, Prompt, Response

    users = get_user_model()
    raters = [users.objects.get_or_create(username=f"bench-rater-{i}")[0].id for i in range(RATERS)]
    lead = users.objects.get_or_create(username="bench-lead")[0]
    began = time.perf_counter()
    with transaction.atomic():
        project = Project.objects.create(slug=SLUG, name="Pairs benchmark", raters_per_pair=3)
        project.memberships.create(user=lead, role="lead")
        batch = Batch.objects.create(
            project=project,
            filename="bench.jsonl",
            sha256="1" * 64,
            format="pair",
            uploaded_by=lead,
        )
        tables = {
            m.__name__.lower(): m._meta.db_table
            for m in (Prompt, Response, Pair, Assignment, Judgment, Flag)
        }
        counts = {"counts": ", ".join(COUNT_COLUMNS), "zeros": ", ".join("0" * len(COUNT_COLUMNS))}
        params = {
            "project": project.id,
            "batch": batch.id,
            "pairs": pairs,
            "raters": raters,
            "n_raters": RATERS,
        }
        with connection.cursor() as cursor:
            for statement in SEED_SQL:
                cursor.execute(statement.format(**tables, **counts), params)
        fill_counts(project.id)
        for table in tables.values():
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {table}")
    print(f"seeded {pairs:,} pairs in {time.perf_counter() - began:.0f} s")


def _timed(run: Any, repeat: int) -> tuple[float, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            began = time.perf_counter()
            run()
            times.append(time.perf_counter() - began)
    return statistics.median(times), len(queries.captured_queries)


def _case(project: Any, name: str, filters: Any, ordering: Any, repeat: int) -> None:
    from annotation.selectors.pair_order import ordered
    from annotation.selectors.pairs import PAGE_SIZE, pair_list, pair_page

    matches = ordered(pair_list(project=project, filters=filters), ordering=ordering, after=None)
    depth = min(DEEPEST, matches.count() // 2)
    after = matches.values_list("id", flat=True)[depth] if depth else None
    first, first_queries = _timed(
        lambda: pair_page(project=project, filters=filters, ordering=ordering), repeat
    )
    deep, deep_queries = _timed(
        lambda: pair_page(project=project, filters=filters, ordering=ordering, after=after),
        repeat,
    )
    offset, _ = _timed(lambda: list(matches[depth + 1 : depth + 1 + PAGE_SIZE]), 1)
    print(
        f"{name:<34} {first * 1000:>9.0f} {first_queries:>3} {depth:>8,} "
        f"{deep * 1000:>9.0f} {deep_queries:>3} {offset * 1000:>10.0f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--only", nargs="*", default=[""], help="run the cases whose name contains one of these"
    )
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        parser.error("set DATABASE_URL to a PostgreSQL database for the benchmark")
    create_database()
    import django

    django.setup()
    from django.core.management import call_command

    from annotation.models import Pair, Project
    from annotation.selectors.pair_order import ORDERINGS
    from annotation.selectors.pairs import PairFilter

    call_command("migrate", verbosity=0)
    project = Project.objects.filter(slug=SLUG).first()
    if project is None:
        _seed(args.pairs)
        project = Project.objects.get(slug=SLUG)
    print(f"{Pair.objects.filter(project=project).count():,} pairs; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")  # fmt: skip
    cases = [(f"sort {name}", PairFilter(), name) for name in ORDERINGS]
    cases += [
        ("status=disputed", PairFilter(status="disputed"), "id"),
        ("agreement_below=0.67", PairFilter(agreement_below=0.67), "id"),
        ("gold_failures", PairFilter(gold_failures=True), "id"),
        ("disagrees_with_model", PairFilter(disagrees_with_model=True), "id"),
        ("disagrees, sort model_disagreement", PairFilter(disagrees_with_model=True),
         "model_disagreement"),
        ("agreement_below, sort lowest", PairFilter(agreement_below=0.67), "lowest_agreement"),
    ]  # fmt: skip
    print(f"{'case':<34} {'first ms':>9} {'q':>3} {'depth':>8} {'deep ms':>9} {'q':>3} "
          f"{'OFFSET ms':>10}")  # fmt: skip
    for name, filters, ordering in cases:
        if any(part in name for part in args.only):
            _case(project, name, filters, ordering, args.repeat)


if __name__ == "__main__":
    main()
