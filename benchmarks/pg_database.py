"""The benchmarks' PostgreSQL database: created on first use from DATABASE_URL's name, so that a
benchmark can be pointed at a fresh database with nothing but the URL."""

from __future__ import annotations

import os
from typing import Any


def create_database() -> None:
    """Create DATABASE_URL's database if it does not exist (connecting to `postgres` to do so)."""
    import environ
    import psycopg

    url = environ.Env.db_url_config(os.environ["DATABASE_URL"])
    admin = psycopg.connect(
        dbname="postgres",
        user=url.get("USER") or "postgres",
        password=url.get("PASSWORD") or None,
        host=url.get("HOST") or "127.0.0.1",
        port=url.get("PORT") or 5432,
        autocommit=True,
    )
    with admin:
        if not admin.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [url["NAME"]]
        ).fetchone():
            admin.execute(f'CREATE DATABASE "{url["NAME"]}"')


# The counts a pair keeps of its own judgments and flags (migration 0017): NOT NULL, so the
# benchmarks that write pairs in bulk write them as zeros, then `fill_counts` fills them.
COUNT_COLUMNS = ("votes_a", "votes_b", "votes_tie", "votes_both_bad", "flags_count")


def fill_counts(project_id: int) -> None:
    """Set the project's pairs' vote and flag counts from their judgments and flags, as the
    rating engine and the flag service keep them."""
    from django.db import connection

    from annotation.models import Flag, Judgment, Pair

    votes = ", ".join(
        f"count(j.id) FILTER (WHERE j.choice = '{choice}') AS {choice}"
        for choice in ("a", "b", "tie", "both_bad")
    )
    pair, judgment, flag = (m._meta.db_table for m in (Pair, Judgment, Flag))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""UPDATE {pair} q
                SET votes_a = c.a, votes_b = c.b, votes_tie = c.tie, votes_both_bad = c.both_bad,
                    flags_count = c.flags
                FROM (SELECT q.id, {votes},
                             (SELECT count(*) FROM {flag} f WHERE f.pair_id = q.id) AS flags
                      FROM {pair} q LEFT JOIN {judgment} j ON j.pair_id = q.id
                      WHERE q.project_id = %s GROUP BY q.id) c
                WHERE q.id = c.id""",  # noqa: S608 - table names from the models
            [project_id],
        )


def fresh_project(
    *, slug: str, name: str, raters: int, rater_prefix: str, batch_format: str
) -> tuple[Any, Any, list[Any]]:
    """A new benchmark project with one batch and `raters` raters (members), after emptying
    every table the bulk loaders write, in SQL: deleting through Django's cascades would take
    minutes at a million judgments. The database is the benchmark's own (named '...bench...')."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from annotation.models import Assignment, Batch, Judgment, Membership, Pair, Project, Prompt
    from annotation.models import Response as ModelResponse

    with connection.cursor() as cursor:
        for model in (Judgment, Assignment, Pair, ModelResponse, Prompt, Batch):
            cursor.execute(f"DELETE FROM {model._meta.db_table}")  # noqa: S608
    Project.objects.filter(slug=slug).delete()
    user = get_user_model()
    owner, _ = user.objects.get_or_create(username="bench-owner")
    project = Project.objects.create(slug=slug, name=name)
    members = [
        user.objects.get_or_create(username=f"{rater_prefix}{i:03d}")[0] for i in range(raters)
    ]
    Membership.objects.bulk_create(Membership(project=project, user=u) for u in members)
    batch = Batch.objects.create(
        project=project, filename="bench.jsonl", sha256="0" * 64, format=batch_format,
        uploaded_by=owner,
    )  # fmt: skip
    return project, batch, members
