"""Pool scoring throughput, in pairs per second, with and without running each distinct
(prompt, response) through the model once (`rewardtrain.model.distinct`), side by side.

    .venv/bin/python benchmarks/pool_scoring.py [--prompts 24] [--repeats 2]

Two pools, each scored the way `rewardtrain.services.pool.pool_score` scores one: in id order,
POOL_BATCH_PAIRS pairs per `pair_estimates` call, with a MiniLM version (the default base, a
fresh reward head: speed does not depend on its weights) and 5 ensemble heads:

- arena: the Chatbot Arena prompts in /work/shared/data/arena-prompts, seven models' answers
  each, paired by the import's "all" rule (`pairs_from_responses`): 21 pairs per prompt, whose
  42 items hold 7 distinct responses;
- hh: Anthropic HH-RLHF harmless pairs, one pair per prompt: nothing repeats, so this shows
  what the distinct-item step costs when it saves nothing.

Both variants score the same pairs in the same process, alternating, `--repeats` times each;
the figure is the best of the repeats, after an untimed warm-up. The p(a wins) of both
variants are compared as well.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "true")

import django  # noqa: E402

django.setup()

import torch  # noqa: E402
from score_api import write_minilm_version  # noqa: E402

from annotation.imports.pairing import pairs_from_responses  # noqa: E402
from annotation.imports.records import ResponseItem, ResponsesRecord  # noqa: E402
from rewardtrain.ensemble import EnsembleHeads, pair_estimates  # noqa: E402
from rewardtrain.model import RewardModel, load_reward_model  # noqa: E402
from rewardtrain.services.pool import POOL_BATCH_PAIRS  # noqa: E402

ARENA = Path("/work/shared/data/arena-prompts")
HH = Path("/work/shared/data/hh-rlhf-sample/harmless-base-dev.jsonl")
Pool = list[tuple[str, str, str]]  # (prompt, response a, response b)


def arena_pool(prompts: int) -> Pool:
    """The first `prompts` questions with all seven answers, paired by the "all" rule."""
    answers: dict[str, list[str]] = defaultdict(list)
    for line in (ARENA / "responses.jsonl").read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        answers[record["question_id"]].append(record["response"])
    pool: Pool = []
    for line in (ARENA / "questions.jsonl").read_text(encoding="utf-8").splitlines():
        question = json.loads(line)
        texts = answers.get(question["question_id"], [])
        if len(texts) < 7:
            continue
        record = ResponsesRecord(
            line=0,
            prompt=question["prompt"],
            responses=tuple(ResponseItem(text=text, model=None, metadata={}) for text in texts),
            external_id=question["question_id"],
            metadata={},
        )
        pairs = pairs_from_responses(record, rule="all")
        pool += [(question["prompt"], texts[i], texts[j]) for i, j in pairs]
        if len(pool) >= prompts * 21:
            return pool
    return pool


def hh_pool(pairs: int) -> Pool:
    pool: Pool = []
    for line in HH.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        prompt, _, chosen = record["chosen"].rpartition("\n\nAssistant:")
        _, _, rejected = record["rejected"].rpartition("\n\nAssistant:")
        pool.append((prompt, chosen.strip(), rejected.strip()))
        if len(pool) >= pairs:
            break
    return pool


def score_pool(
    model: RewardModel, heads: EnsembleHeads, pool: Pool, *, dedupe: bool
) -> tuple[float, list[float]]:
    """Seconds to score the pool as pool_score does, and every pair's p(a wins)."""
    started, p_a = time.perf_counter(), []
    for start in range(0, len(pool), POOL_BATCH_PAIRS):
        batch = pool[start : start + POOL_BATCH_PAIRS]
        estimates = pair_estimates(
            model,
            heads,
            [pair[0] for pair in batch],
            [pair[1] for pair in batch],
            [pair[2] for pair in batch],
            dedupe=dedupe,
        )
        p_a += [estimate.p_a for estimate in estimates]
    return time.perf_counter() - started, p_a


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=24, help="arena prompts (21 pairs each)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="pool-scoring-"))
    path, sha256 = write_minilm_version(root)
    model = load_reward_model(path, checkpoint_root=root, expected_sha256=sha256)
    width = model.model.config.hidden_size
    heads = EnsembleHeads(weight=torch.randn(5, width) / width**0.5, bias=torch.zeros(5))
    print(
        f"{platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.1f}, weights {model.model.dtype}"
    )
    pools = {"arena": arena_pool(args.prompts), "hh": hh_pool(args.prompts * 21)}
    score_pool(model, heads, pools["hh"][:16], dedupe=False)  # warm-up, not timed
    for name, pool in pools.items():
        best: dict[bool, float] = {}
        scores: dict[bool, list[float]] = {}
        for _ in range(args.repeats):
            for dedupe in (False, True):
                seconds, scores[dedupe] = score_pool(model, heads, pool, dedupe=dedupe)
                best[dedupe] = min(best.get(dedupe, seconds), seconds)
        gap = max(abs(a - b) for a, b in zip(scores[True], scores[False], strict=True))
        print(
            f"{name}: {len(pool)} pairs; every item {len(pool) / best[False]:.1f} pairs/s, "
            f"distinct items {len(pool) / best[True]:.1f} pairs/s "
            f"({best[False] / best[True]:.2f}x); largest p(a wins) difference {gap:.1e}"
        )


if __name__ == "__main__":
    main()
