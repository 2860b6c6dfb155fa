"""Each pair's probability that `a` is the better response, under one of three aggregation rules.

Judgments come as flat arrays (dense pair and rater indices, choice codes 0=a, 1=b, 2=tie,
3=both_bad, always in the pair's own terms), with each pair's known answer where it has one.

- `majority`: the share of a pair's decisive votes that name `a`. The exported winner is still
  decided by `aggregation.decide` (today's rule, unchanged); this is only its `p_chosen`.
- `weighted`: a naive-Bayes vote in which each rater weighs the log-odds of their own accuracy,
  log(acc / (1 - acc)): the optimal weighted majority for raters who err alike on both sides
  (Nitzan and Paroush, 1982). A rater's accuracy is their gold accuracy when they answered at
  least MIN_GOLD gold pairs, else their agreement with the other raters' majority; both are
  smoothed by one right and one wrong pseudo-vote. A rater below 50% gets a negative weight, so
  their votes count the other way.
- `dawid_skene`: the Dawid-Skene posterior (`dawid_skene.py`) with hidden classes {a, b} and
  answers {a, b, tie, both_bad}.

Known answers (gold, seed) fix a pair's probability at 1 or 0 under every rule. Pure numpy; no
Django here, so the trainer, the benchmarks and the selectors share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Literal, cast

import numpy as np
from numpy.typing import NDArray

from annotation.exports.dawid_skene import UNKNOWN, DawidSkeneResult, dawid_skene

Aggregation = Literal["majority", "weighted", "dawid_skene"]
AGGREGATIONS: tuple[Aggregation, ...] = ("majority", "weighted", "dawid_skene")
A, B, TIE, BOTH_BAD = range(4)
MIN_GOLD = 5  # gold answers below this say too little; agreement with the others is used instead
SPAMMER_SCORE = 0.2  # |P(a | a better) - P(a | b better)| below this: votes carry ~no information
MIN_FLAG_VOTES = 20  # decisive votes a rater needs before any reliability flag is raised


def as_aggregation(name: str) -> Aggregation:
    """A stored or submitted rule name, checked."""
    if name not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {name!r}; use one of {', '.join(AGGREGATIONS)}")
    return cast(Aggregation, name)


@dataclass(frozen=True)
class PairLabels:
    p_a: NDArray[np.float64]  # per dense pair index: P(a is better); 0.5 where nothing is known
    _fit: Callable[[], DawidSkeneResult] = field(repr=False)

    @cached_property
    def reliability(self) -> DawidSkeneResult:
        """Per-rater estimates by Dawid-Skene, whatever rule made p_a. Fitted on first use only,
        and at most once: under `dawid_skene` it is the fit that made p_a."""
        return self._fit()


def pair_labels(
    pair: NDArray[np.integer],
    rater: NDArray[np.integer],
    choice: NDArray[np.integer],
    known: NDArray[np.integer],
    *,
    aggregation: Aggregation,
    n_raters: int | None = None,
) -> PairLabels:
    """P(a better) for every pair, by `aggregation`; `known[p]` is A, B or UNKNOWN."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {aggregation!r}; use one of {AGGREGATIONS}")
    pair, rater, choice = (np.asarray(x, dtype=np.int64) for x in (pair, rater, choice))
    answers = np.asarray(known, dtype=np.int64)
    answers = np.where((answers == A) | (answers == B), answers, UNKNOWN)
    n_pairs = len(answers)
    n_raters = int(rater.max()) + 1 if n_raters is None and len(rater) else (n_raters or 0)

    @cache
    def fit() -> DawidSkeneResult:
        return dawid_skene(
            pair, rater, choice, n_items=n_pairs, n_raters=n_raters, n_labels=4, known=answers
        )

    if aggregation == "dawid_skene":
        p_a = fit().posteriors[:, A].copy()
    elif aggregation == "weighted":
        p_a = _weighted(pair, rater, choice, answers, n_pairs=n_pairs, n_raters=n_raters)
    else:
        p_a = _vote_share(pair, choice, n_pairs=n_pairs)
    is_known = answers != UNKNOWN
    p_a[is_known] = (answers[is_known] == A).astype(np.float64)
    return PairLabels(p_a=p_a, _fit=fit)


def _vote_share(
    pair: NDArray[np.int64], choice: NDArray[np.int64], *, n_pairs: int
) -> NDArray[np.float64]:
    votes_a = np.bincount(pair[choice == A], minlength=n_pairs).astype(np.float64)
    votes_b = np.bincount(pair[choice == B], minlength=n_pairs)
    total = votes_a + votes_b
    return np.divide(votes_a, total, out=np.full(n_pairs, 0.5), where=total > 0)


def rater_accuracy(
    pair: NDArray[np.int64],
    rater: NDArray[np.int64],
    choice: NDArray[np.int64],
    known: NDArray[np.int64],
    *,
    n_pairs: int,
    n_raters: int,
) -> NDArray[np.float64]:
    """Each rater's smoothed accuracy on decisive votes: on gold pairs where they answered at least
    MIN_GOLD of them, else against the majority of the other raters' decisive votes."""
    decisive = choice <= B
    p, r, c = pair[decisive], rater[decisive], choice[decisive]
    gold = known[p] != UNKNOWN
    gold_n = np.bincount(r[gold], minlength=n_raters)
    gold_right = np.bincount(r[gold], weights=c[gold] == known[p][gold], minlength=n_raters)
    votes_a = np.bincount(p[c == A], minlength=n_pairs)[p] - (c == A)
    votes_b = np.bincount(p[c == B], minlength=n_pairs)[p] - (c == B)
    has_majority = votes_a != votes_b
    agrees = (votes_a > votes_b) == (c == A)
    peer_n = np.bincount(r[has_majority], minlength=n_raters)
    peer_right = np.bincount(r[has_majority], weights=agrees[has_majority], minlength=n_raters)
    use_gold = gold_n >= MIN_GOLD
    right = np.where(use_gold, gold_right, peer_right)
    total = np.where(use_gold, gold_n, peer_n)
    return (right + 1.0) / (total + 2.0)


def _weighted(
    pair: NDArray[np.int64],
    rater: NDArray[np.int64],
    choice: NDArray[np.int64],
    known: NDArray[np.int64],
    *,
    n_pairs: int,
    n_raters: int,
) -> NDArray[np.float64]:
    accuracy = rater_accuracy(pair, rater, choice, known, n_pairs=n_pairs, n_raters=n_raters)
    weight = np.log(accuracy / (1.0 - accuracy))
    sign = np.select([choice == A, choice == B], [1.0, -1.0], 0.0)
    log_odds = np.bincount(pair, weights=weight[rater] * sign, minlength=n_pairs)
    return 1.0 / (1.0 + np.exp(-log_odds))


def spammer_score(confusion: NDArray[np.float64]) -> NDArray[np.float64]:
    """P(says a | a better) - P(says a | b better), minus the same for b, halved: 1 for a perfect
    rater, 0 for one whose answers do not depend on the truth (Raykar and Yu, 2012, JMLR 13:
    "Eliminating Spammers and Ranking Annotators for Crowdsourced Labeling Tasks"), -1 for one
    who always answers the opposite. Ties and both-bad count as neither side."""
    says_a = confusion[:, A, A] - confusion[:, B, A]
    says_b = confusion[:, B, B] - confusion[:, A, B]
    return (says_a + says_b) / 2.0


def reliability_flags(result: DawidSkeneResult) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(spammer, inverted) per rater, only for raters with at least MIN_FLAG_VOTES decisive votes.

    Spammer: the spammer score is below SPAMMER_SCORE in size, so the rater's answers carry
    almost nothing about the truth. Inverted: the score is at most -SPAMMER_SCORE and the whole
    95% interval of their accuracy is below one half, so they reliably pick the worse side (their
    votes still inform Dawid-Skene). A spammer's accuracy can dip just below one half by chance,
    which is why the interval alone does not make anyone inverted.
    """
    score = spammer_score(result.confusion)
    enough = result.decisive >= MIN_FLAG_VOTES
    spammer = enough & (np.abs(score) < SPAMMER_SCORE)
    inverted = enough & (score <= -SPAMMER_SCORE) & (result.accuracy_high < 0.5)
    return spammer, inverted
