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
