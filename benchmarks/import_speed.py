"""Time a 100,000-pair import through `batch_import` into a PostgreSQL benchmark database.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/pw_import_bench \\
        .venv/bin/python benchmarks/import_speed.py --pairs 100000

A SQLite file (`DATABASE_URL=sqlite:////tmp/bench.sqlite3`) times the embedded default's writer.

Generates a pair-format JSONL file (every pair a new prompt with two new responses, the worst case
for de-duplication: 100,000 prompts, 200,000 responses, 100,000 pairs), creates the database if
it is missing, migrates it, imports the file into a fresh project and prints the seconds taken,
split into the validation pass and the write, and the growth of peak resident memory during the
import. The database is left in place; each run adds a new project.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from pg_database import create_database  # benchmarks/, the script's own folder

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "benchmark-only-secret-key-that-is-long-enough-0123456789")

_VOCABULARY = """
the of and to in is that for it as was with be by on not he this are or his from at which
model answer reward policy gradient token prompt response rater judgment pair batch data
because however therefore although example question explain summarise translate write code
"""
WORDS = _VOCABULARY.split()


def _text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def write_pairs(path: Path, *, pairs: int, seed: int) -> int:
    """A JSONL file of `pairs` pair records with prompts of ~40 and responses of ~150 words."""
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        for i in range(pairs):
            record = {
                "id": f"bench-{i}",
                "prompt": f"{i}: {_text(rng, 40)}",
                "response_a": _text(rng, 150),
                "response_b": _text(rng, 150),
                "model_a": "model-a",
                "model_b": "model-b",
                "metadata": {"source": "benchmark", "n": i},
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path.stat().st_size


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres", "sqlite")):
        parser.error("set DATABASE_URL to a PostgreSQL database or a SQLite file")
    if url.startswith("postgres"):
        create_database()
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from annotation.models import Project
    from annotation.services.imports import batch_import

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="benchmark")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    project = Project.objects.create(slug=f"bench-{stamp}", name=f"Benchmark {stamp}")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pairs.jsonl"
        started = time.perf_counter()
        size = write_pairs(path, pairs=args.pairs, seed=args.seed)
        print(
            f"generated {args.pairs:,} pairs, {size / 1e6:.1f} MB, in "
            f"{time.perf_counter() - started:.1f} s"
        )

        # Reset the peak-RSS watermark so that VmHWM afterwards is the import's own peak.
        Path("/proc/self/clear_refs").write_text("5")
        before = _rss_kib("VmRSS")
        started = time.perf_counter()
        with path.open("rb") as fileobj:
            outcome = batch_import(
                project=project, fileobj=fileobj, filename=path.name, uploaded_by=user
            )
        seconds = time.perf_counter() - started
        peak = _rss_kib("VmHWM")

    batch = outcome.batch
    print(
        f"imported {batch.records:,} records: {batch.prompts_created:,} prompts, "
        f"{batch.responses_created:,} responses, {batch.pairs_created:,} pairs"
    )
    print(f"import: {seconds:.1f} s ({batch.pairs_created / seconds:,.0f} pairs/s)")
    if outcome.timings:
        print("  " + ", ".join(f"{k} {v:.1f} s" for k, v in outcome.timings.items()))
    print(
        f"peak RSS growth during the import: {(peak - before) / 1024:.0f} MiB "
        f"(RSS before {before / 1024:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
