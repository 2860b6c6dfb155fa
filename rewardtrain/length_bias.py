"""Does a reward model lean on length? Statistics of one version on its held-out pairs (no Django).

The worker computes them when it evaluates a new version (`rewardtrain.train.evaluate`), and they
are stored with the version's held-out metrics under "length"; the training page words them with
`length_sentence`. Lengths are in characters, as the leaderboard's style control counts them.

- `spearman`: the rank correlation of reward with length over every held-out response (both sides
  of every pair, ties of rank averaged).
- `prefers_longer`: of the pairs whose two lengths differ by more than the bias lens's
  `MIN_DIFFERENCE` (10% of the longer), the share where the longer response gets the higher
  reward.
- `longer_won` / `shorter_won`: accuracy on those pairs split by whether the human picked the
  longer or the shorter response (pairs labelled a tie are left out: nobody picked).
- `learning_length`: the version beats chance only where longer won, that is its accuracy is
  above one half where the human picked the longer response and at most one half where they
  picked the shorter, with at least `MIN_PAIRS` pairs on each side.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.stats import spearmanr

from annotation.leaderboard.bias import MIN_DIFFERENCE, differs_enough

MIN_PAIRS = 10  # pairs on each side before the verdict is drawn


def _accuracy(correct: NDArray[np.bool_], counted: NDArray[np.bool_]) -> tuple[int, float | None]:
    pairs = int(counted.sum())
    return pairs, float(correct[counted].mean()) if pairs else None


def length_bias(
    *,
    chosen_rewards: Sequence[float],
    rejected_rewards: Sequence[float],
    chosen_lengths: Sequence[int],
    rejected_lengths: Sequence[int],
    ties: Sequence[bool],
) -> dict[str, Any]:
    """The length statistics of one version (see the module docstring); JSON-ready, None where
    undefined. All five sequences run over the same held-out pairs, in order."""
    chosen, rejected = np.asarray(chosen_rewards, float), np.asarray(rejected_rewards, float)
    len_chosen, len_rejected = (
        np.asarray(chosen_lengths, float),
        np.asarray(rejected_lengths, float),
    )
    tie = np.asarray(ties, bool)
    rewards, lengths = (
        np.concatenate([chosen, rejected]),
        np.concatenate([len_chosen, len_rejected]),
    )
    spearman = None
    if rewards.size > 1 and np.ptp(rewards) > 0 and np.ptp(lengths) > 0:
        spearman = float(spearmanr(rewards, lengths).statistic)
    differ = differs_enough(len_chosen, len_rejected)
    chosen_longer = len_chosen > len_rejected
    model_prefers_longer = np.where(chosen_longer, chosen > rejected, rejected > chosen)
    counted = int(differ.sum())
    longer_pairs, longer_accuracy = _accuracy(chosen > rejected, differ & ~tie & chosen_longer)
    shorter_pairs, shorter_accuracy = _accuracy(chosen > rejected, differ & ~tie & ~chosen_longer)
    learning_length = (
        min(longer_pairs, shorter_pairs) >= MIN_PAIRS
        and longer_accuracy is not None
        and shorter_accuracy is not None
        and longer_accuracy > 0.5 >= shorter_accuracy
    )
    return {
        "spearman": None if spearman is None or math.isnan(spearman) else spearman,
        "pairs": counted,
        "prefers_longer": float(model_prefers_longer[differ].mean()) if counted else None,
        "longer_won": {"pairs": longer_pairs, "accuracy": longer_accuracy},
        "shorter_won": {"pairs": shorter_pairs, "accuracy": shorter_accuracy},
        "learning_length": learning_length,
    }


def _percent(value: Any) -> str:
    return "no" if value is None else f"{float(value):.0%}"


def length_sentence(stats: Mapping[str, Any]) -> str:
    """The statistics in plain words for the training page; "" when there is nothing to say."""
    longer, shorter = stats.get("longer_won") or {}, stats.get("shorter_won") or {}
    if not stats.get("pairs"):
        return ""
    sentences = [
        f"It gives the longer response the higher reward in {_percent(stats.get('prefers_longer'))}"
        f" of the {stats['pairs']} held-out pairs whose lengths differ by more than "
        f"{MIN_DIFFERENCE:.0%}; it is right on {_percent(longer.get('accuracy'))} of the "
        f"{longer.get('pairs', 0)} where the human picked the longer response and on "
        f"{_percent(shorter.get('accuracy'))} of the {shorter.get('pairs', 0)} where they picked "
        "the shorter."
    ]
    if stats.get("learning_length"):
        sentences.insert(
            0,
            "This model may be learning length: it beats chance only where the longer response "
            "won.",
        )
    return " ".join(sentences)
