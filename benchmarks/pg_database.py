"""The benchmarks' PostgreSQL database: created on first use from DATABASE_URL's name, so that a
benchmark can be pointed at a fresh database with nothing but the URL."""

from __future__ import annotations

import os


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
# benchmarks that COPY pairs write them as zeros, then `count_votes` fills them.
COUNT_COLUMNS = ("votes_a", "votes_b", "votes_tie", "votes_both_bad", "flags_count")


def count_votes(project_id: int) -> None:
    """Set the project's pairs' vote counts from their judgments, as the engine keeps them."""
    from django.db import connection

    from annotation.models import Judgment, Pair

    counts = ", ".join(
        f"COUNT(*) FILTER (WHERE choice = '{choice}') AS {choice}"
        for choice in ("a", "b", "tie", "both_bad")
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Pair._meta.db_table} AS p SET votes_a = c.a, votes_b = c.b, "  # noqa: S608
            f"votes_tie = c.tie, votes_both_bad = c.both_bad FROM (SELECT pair_id, {counts} "
            f"FROM {Judgment._meta.db_table} GROUP BY pair_id) AS c "
            "WHERE p.id = c.pair_id AND p.project_id = %s",
            [project_id],
        )
