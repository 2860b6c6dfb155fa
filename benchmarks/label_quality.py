"""Label quality with known truth: majority, weighted and Dawid-Skene on simulated raters.

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/pw_h16 \
        .venv/bin/python benchmarks/label_quality.py --pairs 400 --seeds 0 1
    DEBUG=true .venv/bin/python benchmarks/label_quality.py --speed    # 1,000,000 judgments

Pairs come from the Anthropic HH-RLHF sample in /work/shared/data/hh-rlhf-sample (harmless-base
dev): each transcript pair is split at its last "Assistant:" turn; the `chosen` answer is the
truth. Which of the two becomes response a is drawn at random, then the pairs are imported
through the real import service into a fresh project (A/B choices, 3 raters per pair, no gold)
and rated through the real engine: ten simulated raters ask `assignment_next` for a pair and
answer in screen terms (left/right) through `judgment_record`, so side swaps, leases and the
overlap of k = 3 are the product's own.

Scenarios:
- `unreliable`: 6 good raters (right 80-90%), 1 spammer (a coin), 1 inverted (right 15%),
  1 who always picks the left side, 1 who always picks the longer response: 40% unreliable;
- `all_good`: 10 good raters (right 80-90%).

For each rule the TRL export (the same stream as the page, the API and the command) is read and
its `chosen` compared with the truth: label accuracy over every pair (a pair left out counts as
wrong) and the share of pairs exported. `--speed` times Dawid-Skene alone on 1,000,000 synthetic
judgments (333,334 pairs, 500 raters) and crowd-kit's DawidSkene on the same judgments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
import warnings
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path("/work/shared/data/hh-rlhf-sample/harmless-base-dev.jsonl")
RULES = ("majority", "weighted", "dawid_skene")


def hh_pairs(count: int) -> list[dict[str, str]]:
    """The first `count` usable HH pairs as {prompt, chosen, rejected}."""
    marker = "\n\nAssistant:"
    pairs = []
    for line in DATA.read_text().splitlines():
        record = json.loads(line)
        chosen, rejected = record["chosen"], record["rejected"]
        cut = chosen.rfind(marker)
        if cut < 0 or not rejected.startswith(chosen[: cut + len(marker)]):
            continue
        prompt = chosen[:cut].strip()
        better = chosen[cut + len(marker) :].strip()
        worse = rejected[cut + len(marker) :].strip()
        if better and worse and better != worse:
            pairs.append({"prompt": prompt, "chosen": better, "rejected": worse})
        if len(pairs) == count:
            break
    return pairs


def raters_for(scenario: str, rng: random.Random) -> list[tuple[str, float]]:
    """(kind, accuracy) per rater; accuracy only matters to good and inverted raters."""
    good = [("good", rng.uniform(0.8, 0.9)) for _ in range(10)]
    if scenario == "all_good":
        return good
    unreliable = [("spammer", 0.5), ("inverted", 0.15), ("left", 0.0), ("longer", 0.0)]
    return good[:6] + unreliable


def answer(
    kind: str, accuracy: float, left: str, right: str, better: str, rng: random.Random
) -> str:
    if kind == "left":
        return "left"
    if kind == "longer":
        return "left" if len(left) >= len(right) else "right"
    if kind == "spammer":
        return rng.choice(("left", "right"))
    right_side = "left" if left == better else "right"
    wrong_side = "right" if right_side == "left" else "left"
    return right_side if rng.random() < accuracy else wrong_side


def simulate(scenario: str, pairs: list[dict[str, str]], seed: int) -> dict[str, Any]:
    """One project rated through the engine; label accuracy of each rule through the export."""
    from django.contrib.auth import get_user_model

    from annotation.models import Membership, Project
    from annotation.selectors.exports import ExportOptions, export_stream
    from annotation.services.imports.importing import batch_import
    from annotation.services.rating import Submission, assignment_next, judgment_record

    rng = random.Random(seed)
    users = get_user_model().objects
    slug = f"{scenario}-{seed}-{int(time.time())}"
    owner = users.create_user(f"owner-{slug}")
    project = Project.objects.create(
        slug=slug, name=slug, choice_scheme="ab", use_strength=False, gold_rate=0.0,
        raters_per_pair=3, max_raters_per_pair=3, rationale="none",
    )  # fmt: skip
    truth: dict[tuple[str, str, str], str] = {}
    lines = []
    for i, pair in enumerate(pairs):
        a, b = (pair["chosen"], pair["rejected"])
        if rng.random() < 0.5:
            a, b = b, a
        truth[(pair["prompt"], a, b)] = truth[(pair["prompt"], b, a)] = pair["chosen"]
        lines.append(
            json.dumps({"id": f"p{i}", "prompt": pair["prompt"], "response_a": a, "response_b": b})
        )
    upload = "\n".join(lines).encode()
    import io

    batch_import(
        project=project,
        fileobj=io.BytesIO(upload),
        filename="hh.jsonl",
        uploaded_by=owner,
        format="pair",
    )
    kinds = raters_for(scenario, rng)
    people = []
    for number, (kind, accuracy) in enumerate(kinds):
        user = users.create_user(f"{slug}-{kind}-{number}")
        Membership.objects.create(project=project, user=user, role=Membership.Role.RATER)
        people.append((user, kind, accuracy))
    started = time.perf_counter()
    judged = 0
    active = list(people)
    while active:
        person = rng.choice(active)
        user, kind, accuracy = person
        lease = assignment_next(project=project, rater=user)
        if lease is None:
            active.remove(person)
            continue
        pair = lease.pair
        shown = (
            (pair.response_b, pair.response_a)
            if lease.swapped
            else (pair.response_a, pair.response_b)
        )
        better = truth[(pair.prompt.text, pair.response_a.text, pair.response_b.text)]
        choice = answer(kind, accuracy, shown[0].text, shown[1].text, better, rng)
        judgment_record(
            project=project,
            rater=user,
            assignment_id=lease.id,
            submission=Submission(choice=choice),
        )
        judged += 1
    rating_seconds = time.perf_counter() - started
    results: dict[str, Any] = {"judgments": judged, "rating_seconds": round(rating_seconds, 1)}
    for rule in RULES:
        options = ExportOptions(format="trl", aggregation=rule)
        rows = [
            json.loads(line)
            for chunk in export_stream(project=project, options=options).chunks
            for line in chunk.decode().splitlines()
        ]
        correct = sum(
            truth[(row["prompt"], row["chosen"], row["rejected"])] == row["chosen"] for row in rows
        )
        results[rule] = {"accuracy": correct / len(pairs), "exported": len(rows) / len(pairs)}
    return results


def speed() -> None:
    import pandas as pd
    from crowdkit.aggregation import DawidSkene

    from annotation.exports.dawid_skene import dawid_skene

    rng = np.random.default_rng(0)
    n, n_raters = 1_000_000, 500
    n_items = -(-n // 3)
    items = np.repeat(np.arange(n_items), 3)[:n]
    raters = rng.integers(0, n_raters, n)
    truth = rng.integers(0, 2, n_items)
    accuracy = rng.uniform(0.5, 0.95, n_raters)
    labels = np.where(rng.random(n) < accuracy[raters], truth[items], 1 - truth[items])
    labels[rng.random(n) < 0.05] = 2  # some ties
    timings = []
    for _ in range(3):  # best of three: the machine is shared
        started = time.perf_counter()
        result = dawid_skene(items, raters, labels, n_items=n_items, n_raters=n_raters, n_labels=4)
        timings.append(time.perf_counter() - started)
    print(
        f"dawid_skene: {n:,} judgments, {n_items:,} pairs, {n_raters} raters: "
        f"{min(timings):.2f} s (best of 3), {result.iterations} iterations, "
        f"converged={result.converged}"
    )
    frame = pd.DataFrame({"task": items, "worker": raters, "label": labels})
    started = time.perf_counter()
    with warnings.catch_warnings():  # crowd-kit's own pandas deprecation warnings
        warnings.simplefilter("ignore")
        DawidSkene(n_iter=result.iterations, tol=0.0).fit(frame)
    theirs = time.perf_counter() - started
    print(f"crowd-kit DawidSkene, same judgments, {result.iterations} iterations: {theirs:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=400)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--speed", action="store_true")
    args = parser.parse_args()
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line),
        platform.processor(),
    )
    print(f"CPU: {model}; Python {platform.python_version()}")
    if args.speed:
        speed()
        return
    # The engine is the product's own, so the database is too: PostgreSQL (migrated here; each
    # run makes its own projects, named by scenario, seed and a time stamp).
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("set DATABASE_URL to a PostgreSQL database")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    pairs = hh_pairs(args.pairs)
    print(f"{len(pairs)} HH pairs, k = 3 raters each, seeds {args.seeds}")
    for scenario in ("unreliable", "all_good"):
        runs = [simulate(scenario, pairs, seed) for seed in args.seeds]
        seconds = mean(run["rating_seconds"] for run in runs)
        print(f"\n{scenario}: {runs[0]['judgments']} judgments per run, rated in {seconds:.0f} s")
        for rule in RULES:
            accuracies = [run[rule]["accuracy"] for run in runs]
            exported = mean(run[rule]["exported"] for run in runs)
            each = ", ".join(f"{100 * a:.1f}" for a in accuracies)
            print(
                f"  {rule:12s} label accuracy {100 * mean(accuracies):5.1f}%"
                f"  (runs: {each}; exported {100 * exported:.1f}%)"
            )


if __name__ == "__main__":
    main()
