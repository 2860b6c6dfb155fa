"""Time the agreement metrics on a project-sized set of judgments, against the krippendorff package.

    .venv/bin/python benchmarks/agreement.py            # 330,000 pairs x 3 raters, 200 raters

Prints the time of ``agreement_summary`` (every metric, 1,000 bootstrap resamples) and of our
nominal Krippendorff's alpha next to ``krippendorff.alpha`` on the same data, with their ratio.
Judgments come from :func:`synthetic_judgments`; another source only has to return a
``JudgmentArrays`` to be timed the same way by :func:`report`.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from typing import Any

import krippendorff
import numpy as np

from annotation.agreement.metrics import (
    BOTH_BAD,
    NOT_DECISIVE,
    TIE,
    JudgmentArrays,
    agreement_summary,
    krippendorff_alpha,
)


def _has_repeats(rows: np.ndarray) -> np.ndarray:
    ordered = np.sort(rows, axis=1)
    return (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)


def synthetic_judgments(*, pairs: int, raters: int, per_pair: int, seed: int) -> JudgmentArrays:
    """Judgments with realistic structure: a latent preference per pair, raters of varied skill.

    Each pair has a true answer (45% a, 45% b, 10% tie). Each rater follows it with a probability
    drawn from Beta(8, 3) (mean 0.73) and otherwise answers at random, marks 3% "both bad", leans
    to the left screen side a little (a few raters a lot), and has a log-normal time on task.
    """
    rng = np.random.default_rng(seed)
    rater = rng.integers(raters, size=(pairs, per_pair))
    clash = _has_repeats(rater)
    while clash.any():  # redraw the few pairs that got one rater twice
        rater[clash] = rng.integers(raters, size=(int(clash.sum()), per_pair))
        clash = _has_repeats(rater)
    rater = rater.ravel()
    pair = np.repeat(np.arange(pairs), per_pair)
    n = pair.size

    truth_of_pair = rng.choice(3, size=pairs, p=[0.45, 0.45, 0.10])
    truth = truth_of_pair[pair]
    skill = rng.beta(8, 3, size=raters)[rater]
    choice = np.where(rng.random(n) < skill, truth, rng.choice(3, size=n, p=[0.4, 0.4, 0.2]))
    choice = np.where(rng.random(n) < 0.03, BOTH_BAD, choice)

    swapped = rng.random(n) < 0.5
    left_lean = np.where(rng.random(raters) < 0.05, 0.3, 0.03)[rater]
    decisive = choice <= 1
    # A rater who leans left sometimes picks the left response whatever it is.
    flip = decisive & (rng.random(n) < left_lean)
    choice = np.where(flip, np.where(swapped, 1, 0), choice)
    left = np.where(decisive, (choice == 0) != swapped, NOT_DECISIVE)

    strength = rng.choice([1, 2, 3], size=n, p=[0.5, 0.35, 0.15]).astype(np.float64)
    signed = np.select([choice == 0, choice == 1, choice == TIE], [strength, -strength, 0], np.nan)
    speed = rng.lognormal(np.log(20_000), 0.3, size=raters)[rater]
    duration = rng.lognormal(np.log(speed), 0.5)
    duration[rng.random(n) < 0.01] = np.nan
    gold = np.where(rng.random(pairs) < 0.05, truth_of_pair, -1)[pair]
    return JudgmentArrays(
        pair=pair,
        rater=rater,
        choice=choice,
        signed_strength=signed,
        left_chosen=left,
        duration_ms=duration,
        gold=gold,
    )


def best_time(function: Callable[[], Any], *, repeat: int) -> tuple[float, Any]:
    """Fastest wall time of ``repeat`` calls, and the last result."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def report(arrays: JudgmentArrays, *, repeat: int) -> None:
    print(f"{platform.processor() or platform.machine()}, numpy {np.__version__}")
    print(f"{len(arrays):,} judgments, {arrays.n_pairs:,} pairs, {arrays.n_raters} raters")

    summary_s, summary = best_time(
        lambda: agreement_summary(arrays, too_fast_ms=5_000), repeat=repeat
    )
    ours_s, ours = best_time(
        lambda: krippendorff_alpha(arrays.pair, arrays.choice, level="nominal"), repeat=repeat
    )

    # The package wants raters x units, nan where a rater did not judge a pair.
    started = time.perf_counter()
    dense = np.full((arrays.n_raters, arrays.n_pairs), np.nan)
    dense[arrays.rater, arrays.pair] = arrays.choice
    dense_s = time.perf_counter() - started
    theirs_s, theirs = best_time(
        lambda: krippendorff.alpha(reliability_data=dense, level_of_measurement="nominal"),
        repeat=repeat,
    )
    counts = np.zeros((arrays.n_pairs, 4), dtype=np.int64)
    np.add.at(counts, (arrays.pair, arrays.choice), 1)
    counts_s, from_counts = best_time(
        lambda: krippendorff.alpha(value_counts=counts, level_of_measurement="nominal"),
        repeat=repeat,
    )

    headline = summary["coefficients"]
    for name in ("percent_agreement", "fleiss_kappa", "krippendorff_alpha_nominal"):
        entry = headline[name]
        print(f"  {name} = {entry['value']:.4f} [{entry['low']:.4f}, {entry['high']:.4f}]")
    entry = headline["krippendorff_alpha_interval"]
    print(f"  krippendorff_alpha_interval = {entry['value']:.4f}")
    print(f"agreement_summary (all metrics, 1000 resamples): {summary_s:.3f} s")
    print(f"our krippendorff_alpha, nominal:                 {ours_s:.4f} s  (alpha {ours:.6f})")
    print(
        f"krippendorff.alpha, reliability_data {dense.shape}: {theirs_s:.3f} s  "
        f"(alpha {theirs:.6f}; building the matrix took another {dense_s:.3f} s)"
    )
    print(
        f"krippendorff.alpha, value_counts {counts.shape}: {counts_s:.4f} s  "
        f"(alpha {from_counts:.6f})"
    )
    print(
        f"ratio krippendorff.alpha / ours: {theirs_s / ours_s:.0f}x on reliability_data, "
        f"{counts_s / ours_s:.1f}x on value_counts"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=330_000)
    parser.add_argument("--raters", type=int, default=200)
    parser.add_argument("--per-pair", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3, help="timed calls; the best is shown")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    arrays = synthetic_judgments(
        pairs=args.pairs, raters=args.raters, per_pair=args.per_pair, seed=args.seed
    )
    report(arrays, repeat=args.repeat)


if __name__ == "__main__":
    main()
