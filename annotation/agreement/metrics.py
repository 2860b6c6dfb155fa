"""Agreement coefficients and rater quality over judgments held as flat numpy arrays.

Data come "long": one entry per judgment, with the dense index of its pair (the unit being rated)
and of its rater, so any number of raters per pair is allowed and missing ratings are simply absent.
Selectors build a :class:`JudgmentArrays`; :func:`agreement_summary` turns it into the JSON that the
dashboard, the API and the stored reports share.

Every coefficient is a function of a count table (pairs x categories) built with one
``np.bincount``, and of pairs of judgments of the same pair; nothing loops over pairs or raters in
Python (timings: docs/benchmarks_agreement.md).

Conventions the dashboard relies on:

- choices are nominal codes 0=a, 1=b, 2=tie, 3=both_bad; percent agreement, Fleiss' kappa,
  Cohen's kappa and nominal alpha use all four;
- the interval scale is the signed strength (+3 ... -3, tie 0) and leaves both_bad out;
- a pair rated only once carries no information on agreement and is left out of every coefficient;
- a coefficient that is undefined (no pair rated twice, a single category in use) is nan, which
  :func:`agreement_summary` writes as null.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

CHOICES = ("a", "b", "tie", "both_bad")  # a choice's code is its index here
A, B, TIE, BOTH_BAD = range(4)
NO_GOLD = -1
NOT_DECISIVE = -1
Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal

Level = Literal["nominal", "interval"]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

_COLUMNS = {
    "pair": np.int64,
    "rater": np.int64,
    "choice": np.int64,
    "signed_strength": np.float64,
    "left_chosen": np.int64,
    "duration_ms": np.float64,
    "gold": np.int64,
}


@dataclass(frozen=True, kw_only=True, eq=False)
class JudgmentArrays:
    """Judgments as parallel arrays, one entry each; at most one per (pair, rater).

    The database enforces one judgment per pair and rater; a duplicate here would be counted as a
    second rater agreeing with the first.
    """

    pair: IntArray  # dense pair index, 0 .. n_pairs - 1
    rater: IntArray  # dense rater index, 0 .. n_raters - 1
    choice: IntArray  # 0=a, 1=b, 2=tie, 3=both_bad, about the pair's responses, not screen sides
    signed_strength: FloatArray  # +s for a with strength s, -s for b, 0 for tie, nan for both_bad
    left_chosen: IntArray  # 1: picked the response shown on the left, 0: the right, -1: no pick
    duration_ms: FloatArray  # time on task; nan when unknown
    gold: IntArray  # the pair's gold choice code (a, b or tie), -1 when the pair has none

    def __post_init__(self) -> None:
        for name, dtype in _COLUMNS.items():
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=dtype))
        shapes = {getattr(self, name).shape for name in _COLUMNS}
        if len(shapes) != 1 or len(next(iter(shapes))) != 1:
            raise ValueError(f"columns must be 1-d and of one length, got shapes {shapes}")
        if self.pair.size and (self.pair.min() < 0 or self.rater.min() < 0):
            raise ValueError("pair and rater must be dense indices >= 0")
        if self.choice.size and (self.choice.min() < A or self.choice.max() > BOTH_BAD):
            raise ValueError("choice codes must be 0..3")

    def __len__(self) -> int:
        return int(self.pair.size)

    @property
    def n_pairs(self) -> int:
        return int(self.pair.max()) + 1 if self.pair.size else 0

    @property
    def n_raters(self) -> int:
        return int(self.rater.max()) + 1 if self.rater.size else 0


def left_chosen(choice: ArrayLike, swapped: ArrayLike) -> IntArray:
    """Per judgment, 1 when the rater picked the response shown on the left, 0 the right one, and
    NOT_DECISIVE for a tie or both bad; `choice` holds codes (A, B, ...). The array form of
    annotation.models.to_screen_terms: the left response is A unless the lease was swapped."""
    code = np.asarray(choice)
    picked_left = (code == A) != np.asarray(swapped, dtype=bool)
    return np.where(code <= B, picked_left.astype(np.int64), NOT_DECISIVE)


def judgment_arrays_from_columns(
    *,
    pair_id: ArrayLike,
    rater_id: ArrayLike,
    choice: Sequence[str],
    strength: Sequence[int | None],
    swapped: ArrayLike,
    duration_ms: Sequence[float | None],
    gold: Sequence[str | None],
) -> tuple[JudgmentArrays, NDArray[Any], NDArray[Any]]:
    """Encode judgments as the database stores them (one sequence per column).

    Returns the arrays, then the pair ids and the rater ids in dense-index order, so that row ``i``
    of any per-rater result belongs to ``rater_ids[i]``. A decisive choice without a strength
    counts as strength 1 on the interval scale.
    """
    pair_ids, pair = np.unique(np.asarray(pair_id), return_inverse=True)
    rater_ids, rater = np.unique(np.asarray(rater_id), return_inverse=True)
    code = {name: i for i, name in enumerate(CHOICES)}
    choice_code = np.fromiter((code[c] for c in choice), dtype=np.int64, count=len(choice))
    magnitude = np.fromiter((1 if s is None else s for s in strength), np.float64, len(strength))
    sign = np.select([choice_code == A, choice_code == B], [1.0, -1.0], 0.0)
    signed = np.where(choice_code == BOTH_BAD, np.nan, sign * magnitude)
    gold_code = np.fromiter((NO_GOLD if g is None else code[g] for g in gold), np.int64, len(gold))
    arrays = JudgmentArrays(
        pair=pair.ravel(),
        rater=rater.ravel(),
        choice=choice_code,
        signed_strength=signed,
        left_chosen=left_chosen(choice_code, swapped),
        duration_ms=np.array(duration_ms, dtype=np.float64),
        gold=gold_code,
    )
    return arrays, pair_ids, rater_ids


# --- count tables -------------------------------------------------------------------------------


def _count_table(unit: IntArray, code: IntArray, *, n_codes: int | None = None) -> IntArray:
    """Units x codes table of how many ratings each unit got in each code; code < 0 is missing."""
    present = code >= 0
    unit, code = unit[present], code[present]
    n_units = int(unit.max()) + 1 if unit.size else 0
    width = n_codes if n_codes is not None else (int(code.max()) + 1 if code.size else 0)
    flat = np.bincount(unit * width + code, minlength=n_units * width)
    return flat.reshape(n_units, width)


def _value_codes(value: ArrayLike) -> tuple[IntArray, FloatArray]:
    """Dense codes of the values (-1 where nan) and the sorted distinct values they stand for."""
    value = np.asarray(value, dtype=np.float64)
    present = ~np.isnan(value)
    observed = value[present]
    small_integers = (
        observed.size
        and np.all(observed == np.round(observed))
        and observed.max() - observed.min() < 1 << 16
    )
    if small_integers:
        # Choice codes and signed strengths skip the O(n log n) sort that unique needs.
        low = observed.min()
        offset = (observed - low).astype(np.int64)
        used = np.bincount(offset) > 0
        dense = (np.cumsum(used) - 1)[offset]
        domain = low + np.flatnonzero(used).astype(np.float64)
    else:
        domain, dense = np.unique(observed, return_inverse=True)
    codes = np.full(value.shape, -1, dtype=np.int64)
    codes[present] = dense
    return codes, domain


def _distance(domain: FloatArray, level: Level) -> FloatArray:
    """Krippendorff's squared difference function delta^2 between every two values."""
    if level == "nominal":
        return 1.0 - np.eye(domain.size)
    if level == "interval":
        return np.subtract.outer(domain, domain) ** 2
    raise ValueError(f"unknown level of measurement {level!r}")


def _weighted_sum(x: NDArray[Any], weights: FloatArray | None) -> FloatArray:
    """Sum over units, once per unit or with a (resamples x units) weight matrix: (B, ...)."""
    if weights is None:
        return x.sum(axis=0, dtype=np.float64)[np.newaxis]
    return np.tensordot(weights, x.astype(np.float64), axes=1)


# The three coefficients below take a count table and optional bootstrap weights (how many times
# each row is drawn), and return one value per weight row, so the point estimate and the bootstrap
# share one implementation.


def _percent_agreement(counts: IntArray, weights: FloatArray | None = None) -> FloatArray:
    rated = counts.sum(axis=1)
    multiple = rated >= 2
    agreeing = (counts * (counts - 1)).sum(axis=1)
    per_unit = np.where(multiple, agreeing / np.maximum(rated * (rated - 1), 1), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return _weighted_sum(per_unit, weights) / _weighted_sum(multiple, weights)


def _fleiss_kappa(counts: IntArray, weights: FloatArray | None = None) -> FloatArray:
    observed = _percent_agreement(counts, weights)
    multiple = counts.sum(axis=1) >= 2
    totals = _weighted_sum(counts * multiple[:, np.newaxis], weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = totals / totals.sum(axis=1, keepdims=True)
        chance = (shares**2).sum(axis=1)
        return (observed - chance) / (1.0 - chance)


def _alpha(counts: IntArray, distance: FloatArray, weights: FloatArray | None = None) -> FloatArray:
    # Over units rated m_u >= 2 times, sum_u n_u n_u^T / (m_u - 1) is Krippendorff's coincidence
    # matrix o plus self-pairs on its diagonal, which the distance ignores (delta(c, c) = 0), and
    # n_c are its margins: alpha = 1 - (n - 1) * sum(o * delta) / sum(n_c * n_k * delta).
    rated = counts.sum(axis=1)
    pairable = rated >= 2
    scale = np.where(pairable, 1.0 / np.maximum(rated - 1, 1), 0.0)
    values = counts.astype(np.float64)
    if weights is None:
        # One V x U by U x V product: no per-unit temporaries, fast on a million judgments.
        coincidences = ((values * scale[:, np.newaxis]).T @ values)[np.newaxis]
        margins = (pairable @ values)[np.newaxis]
    else:
        coincidences = np.einsum("bu,uv,uw->bvw", weights * scale, values, values, optimize=True)
        margins = (weights * pairable) @ values
    n = margins.sum(axis=1)
    observed = (coincidences * distance).sum(axis=(1, 2))
    expected = ((margins @ distance) * margins).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - (n - 1.0) * observed / expected


# --- coefficients -------------------------------------------------------------------------------


def percent_agreement(unit: ArrayLike, code: ArrayLike) -> float:
    """Mean, over units rated at least twice, of the share of their rater pairs that agree.

    This is Fleiss' P-bar: each unit weighs the same whatever its number of raters.
    """
    counts = _count_table(np.asarray(unit, np.int64), np.asarray(code, np.int64))
    return float(_percent_agreement(counts)[0])


def pair_agreement(unit: ArrayLike, code: ArrayLike) -> FloatArray:
    """Per unit, the share of its rater pairs that agree; nan for units rated fewer than twice."""
    counts = _count_table(np.asarray(unit, np.int64), np.asarray(code, np.int64))
    rated = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (counts * (counts - 1)).sum(axis=1) / (rated * (rated - 1))
    return np.where(rated >= 2, share, np.nan)


def fleiss_kappa(unit: ArrayLike, code: ArrayLike) -> float:
    """Fleiss' kappa, generalised to a varying number of raters per unit.

    Only units with at least two ratings count. Observed agreement is P-bar (see
    :func:`percent_agreement`); chance agreement is the sum of squared category shares among all
    ratings of those units. With the same number of raters on every unit this is exactly Fleiss
    (1971); with a varying number it is the usual generalisation, which (unlike Krippendorff's
    alpha) weighs units equally and has no small-sample correction.
    """
    counts = _count_table(np.asarray(unit, np.int64), np.asarray(code, np.int64))
    return float(_fleiss_kappa(counts)[0])


def krippendorff_alpha(unit: ArrayLike, value: ArrayLike, *, level: Level = "nominal") -> float:
    """Krippendorff's alpha from long data: one (unit, value) per rating, nan for missing.

    Computed through the coincidence matrix (Krippendorff 2011), vectorised over units. Values may
    be any numbers; "nominal" compares them for equality, "interval" by squared difference.
    """
    codes, domain = _value_codes(value)
    counts = _count_table(np.asarray(unit, dtype=np.int64), codes, n_codes=domain.size)
    return float(_alpha(counts, _distance(domain, level))[0])


def cohen_kappa(x: ArrayLike, y: ArrayLike) -> float:
    """Cohen's kappa between two raters' labels of the same items (any hashable labels)."""
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        raise ValueError("both raters must label the same items")
    labels, codes = np.unique(np.concatenate([x, y]), return_inverse=True)
    k = labels.size
    confusion = np.bincount(codes[: x.size] * k + codes[x.size :], minlength=k * k)
    return float(_kappa_from_confusion(confusion.reshape(1, k, k))[1][0])


def _kappa_from_confusion(confusion: NDArray[Any]) -> tuple[FloatArray, FloatArray]:
    """Observed agreement and Cohen's kappa of a stack of (..., K, K) confusion matrices."""
    n = confusion.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.trace(confusion, axis1=-2, axis2=-1) / n
        chance = (confusion.sum(axis=-1) * confusion.sum(axis=-2)).sum(axis=-1) / n**2
        return observed, (observed - chance) / (1.0 - chance)


def _same_pair_judgments(pair: IntArray) -> tuple[IntArray, IntArray]:
    """Indices (i, j) of every two judgments of the same pair, each unordered couple once.

    Costs sum over pairs of m(m - 1)/2: three for a pair rated three times.
    """
    order = np.argsort(pair, kind="stable")
    sizes = np.bincount(pair)
    size = sizes[pair[order]]
    position = np.arange(pair.size) - (np.cumsum(sizes) - sizes)[pair[order]]
    later = size - position - 1
    first = np.repeat(np.arange(pair.size), later)
    step = np.arange(first.size) - np.repeat(np.cumsum(later) - later, later) + 1
    return order[first], order[first + step]


@dataclass(frozen=True, eq=False)
class RaterPairs:
    """Rater x rater matrices over the pairs both raters judged; symmetric, nan on the diagonal."""

    overlap: IntArray  # pairs judged by both
    agreement: FloatArray  # share of those pairs with the same choice; nan without overlap
    kappa: FloatArray  # Cohen's kappa on the four choices; nan below min_overlap or if undefined


def rater_pairs(arrays: JudgmentArrays, *, min_overlap: int = 20) -> RaterPairs:
    """Overlap, agreement and Cohen's kappa for every two raters."""
    n_raters = arrays.n_raters
    i, j = _same_pair_judgments(arrays.pair)
    low = np.minimum(arrays.rater[i], arrays.rater[j])
    high = np.maximum(arrays.rater[i], arrays.rater[j])
    # Orient each couple from the lower rater to the higher so one confusion matrix per rater pair
    # suffices; only rater pairs that share a pair get one (R^2 x 16 counters would not scale).
    choice_low = np.where(arrays.rater[i] <= arrays.rater[j], arrays.choice[i], arrays.choice[j])
    choice_high = np.where(arrays.rater[i] <= arrays.rater[j], arrays.choice[j], arrays.choice[i])
    met, which = np.unique(low * n_raters + high, return_inverse=True)
    confusion = np.bincount(
        which * 16 + choice_low * 4 + choice_high, minlength=met.size * 16
    ).reshape(-1, 4, 4)
    shared = confusion.sum(axis=(1, 2))
    observed, kappa = _kappa_from_confusion(confusion)
    kappa = np.where(shared >= min_overlap, kappa, np.nan)
    overlap = np.zeros((n_raters, n_raters), dtype=np.int64)
    agreement = np.full((n_raters, n_raters), np.nan)
    kappas = np.full((n_raters, n_raters), np.nan)
    rows, cols = met // max(n_raters, 1), met % max(n_raters, 1)
    for matrix, values in ((overlap, shared), (agreement, observed), (kappas, kappa)):
        matrix[rows, cols] = values
        matrix[cols, rows] = values
    return RaterPairs(overlap=overlap, agreement=agreement, kappa=kappas)


def pairwise_cohen_kappa(arrays: JudgmentArrays, *, min_overlap: int = 20) -> FloatArray:
    """Rater x rater Cohen's kappa; nan where two raters share fewer than min_overlap pairs."""
    return rater_pairs(arrays, min_overlap=min_overlap).kappa


def wilson_interval(
    successes: ArrayLike, trials: ArrayLike, *, z: float = Z_95
) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval for a proportion, elementwise; nan where there are no trials."""
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


# --- per rater ----------------------------------------------------------------------------------


def others_mode_share(arrays: JudgmentArrays) -> tuple[FloatArray, BoolArray]:
    """For each judgment, how the other raters of its pair split their modal choice.

    Returns an (n, 4) array whose row is 1/k on each of the k choices tied for the mode among the
    other raters (0 elsewhere), and a mask of judgments that have at least one other rater. This is
    AlpacaEval's "agreement with the mode of the others"; where AlpacaEval breaks a tie in the
    mode at random, the 1/k split is the expectation of that draw, so the result is deterministic.
    """
    counts = _count_table(arrays.pair, arrays.choice, n_codes=4)
    others = counts[arrays.pair]
    others[np.arange(len(arrays)), arrays.choice] -= 1
    top = others.max(axis=1, initial=0)
    modal = (others == top[:, np.newaxis]) & (top[:, np.newaxis] > 0)
    share = modal / np.maximum(modal.sum(axis=1, keepdims=True), 1)
    return share, top > 0


def _group_medians(group: IntArray, values: FloatArray, n_groups: int) -> FloatArray:
    present = ~np.isnan(values)
    group, values = group[present], values[present]
    by_value = np.argsort(values)
    # A stable sort of 16-bit keys is a radix sort, linear in the rows, unlike lexsort.
    key = group[by_value]
    if n_groups <= np.iinfo(np.int16).max:
        key = key.astype(np.int16)
    ordered = values[by_value[np.argsort(key, kind="stable")]]
    sizes = np.bincount(group, minlength=n_groups)
    starts = np.cumsum(sizes) - sizes
    medians = np.full(n_groups, np.nan)
    some = sizes > 0
    low = starts[some] + (sizes[some] - 1) // 2
    high = starts[some] + sizes[some] // 2
    medians[some] = (ordered[low] + ordered[high]) / 2
    return medians


def rater_stats(
    arrays: JudgmentArrays,
    *,
    too_fast_ms: float,
    min_gold_accuracy: float | None = None,
    min_agreement: float | None = None,
) -> dict[str, NDArray[Any]]:
    """Per-rater columns, each indexed by dense rater index.

    - ``agreement_with_others``: mean over the rater's judgments on pairs that someone else also
      judged of the share of the others' mode it matches (:func:`others_mode_share`);
    - ``kappa_with_others``: Cohen's kappa between the rater and that mode (ties split 1/k), so its
      observed agreement is ``agreement_with_others``;
    - ``left_rate``: share of decisive choices that picked the response shown on the left, with a
      95% Wilson interval; 0.5 is no position bias;
    - ``too_fast``: median time on task below ``too_fast_ms``; ``low_gold_accuracy`` and
      ``low_agreement`` compare with the thresholds when given (never flagged without data).
    """
    n_raters = arrays.n_raters
    judgments = np.bincount(arrays.rater, minlength=n_raters)
    with_others = _agreement_with_others(arrays)
    choices = _choice_rates(arrays, judgments)
    median_ms = _group_medians(arrays.rater, arrays.duration_ms, n_raters)

    def below(values: FloatArray, threshold: float | None) -> BoolArray:
        if threshold is None:
            return np.zeros(n_raters, dtype=bool)
        return np.nan_to_num(values, nan=np.inf) < threshold

    return {
        "judgments": judgments,
        **with_others,
        **choices,
        "median_duration_ms": median_ms,
        "too_fast": below(median_ms, too_fast_ms),
        "low_gold_accuracy": below(choices["gold_accuracy"], min_gold_accuracy),
        "low_agreement": below(with_others["agreement_with_others"], min_agreement),
    }


def _per_rater(arrays: JudgmentArrays, weights: ArrayLike) -> FloatArray:
    """The sum of a per-judgment column by dense rater index."""
    counts = np.bincount(
        arrays.rater, weights=np.asarray(weights, np.float64), minlength=arrays.n_raters
    )
    return counts.astype(np.float64)


def _agreement_with_others(arrays: JudgmentArrays) -> dict[str, NDArray[Any]]:
    """``scored_judgments``, ``agreement_with_others`` and ``kappa_with_others`` by rater."""
    n_raters = arrays.n_raters
    share, has_others = others_mode_share(arrays)
    scored = _per_rater(arrays, has_others)
    scored_share = share * has_others[:, np.newaxis]
    own = np.bincount(
        arrays.rater * 4 + arrays.choice,
        weights=has_others.astype(np.float64),
        minlength=n_raters * 4,
    ).reshape(n_raters, 4)
    mode = np.stack([_per_rater(arrays, scored_share[:, k]) for k in range(4)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        matched = _per_rater(arrays, scored_share[np.arange(len(arrays)), arrays.choice])
        agreement = matched / scored
        chance = (own * mode).sum(axis=1) / scored**2
        kappa = (agreement - chance) / (1.0 - chance)
    return {
        "scored_judgments": scored.astype(np.int64),
        "agreement_with_others": agreement,
        "kappa_with_others": kappa,
    }


def _choice_rates(arrays: JudgmentArrays, judgments: IntArray) -> dict[str, NDArray[Any]]:
    """Gold accuracy, position bias (left rate with its interval) and tie and both-bad rates."""
    with np.errstate(invalid="ignore", divide="ignore"):
        has_gold = arrays.gold >= 0
        gold_judgments = _per_rater(arrays, has_gold)
        right = _per_rater(arrays, has_gold & (arrays.choice == arrays.gold))
        decisive = _per_rater(arrays, arrays.left_chosen >= 0)
        left = _per_rater(arrays, arrays.left_chosen == 1)
        rates = {
            "gold_accuracy": right / gold_judgments,
            "left_rate": left / decisive,
            "tie_rate": _per_rater(arrays, arrays.choice == TIE) / judgments,
            "both_bad_rate": _per_rater(arrays, arrays.choice == BOTH_BAD) / judgments,
        }
    left_low, left_high = wilson_interval(left, decisive)
    return {
        "gold_judgments": gold_judgments.astype(np.int64),
        "gold_accuracy": rates["gold_accuracy"],
        "decisive_judgments": decisive.astype(np.int64),
        "left_rate": rates["left_rate"],
        "left_rate_low": left_low,
        "left_rate_high": left_high,
        "tie_rate": rates["tie_rate"],
        "both_bad_rate": rates["both_bad_rate"],
    }


# --- bootstrap ----------------------------------------------------------------------------------


def _distinct_rows(counts: IntArray) -> tuple[IntArray, IntArray]:
    """The distinct rows of a count table and how often each occurs."""
    width = counts.shape[1]
    base = int(counts.max(initial=0)) + 1
    if width * math.log2(base) < 62:
        key = counts @ (base ** np.arange(width, dtype=np.int64))
        _, first, frequency = np.unique(key, return_index=True, return_counts=True)
        return counts[first], frequency
    rows, frequency = np.unique(counts, axis=0, return_counts=True)
    return rows, frequency


HEADLINE = (
    "percent_agreement",
    "fleiss_kappa",
    "krippendorff_alpha_nominal",
    "krippendorff_alpha_interval",
)


def bootstrap_intervals(
    arrays: JudgmentArrays, *, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals for the headline coefficients, resampling pairs.

    Every headline coefficient depends on the pairs only through the multiset of their count rows
    (choices, and signed strengths). Pairs are therefore grouped by distinct row (a few hundred
    kinds for three raters), and a resample is one multinomial draw of how many times each kind is
    picked, which is exactly a resample of pairs with replacement. A resample costs a draw over
    the kinds, not a pass over the pairs, so the default need not shrink on big projects.
    """
    codes, domain = _value_codes(arrays.signed_strength)
    kinds = domain.size + 1  # the last one is "no value" (both_bad)
    joint = arrays.choice * kinds + np.where(codes < 0, domain.size, codes)
    used = np.flatnonzero(np.bincount(joint, minlength=4 * kinds))
    remap = np.zeros(4 * kinds, dtype=np.int64)
    remap[used] = np.arange(used.size)
    rows, frequency = _distinct_rows(_count_table(arrays.pair, remap[joint], n_codes=used.size))
    rated = rows.sum(axis=1) > 0
    rows, frequency = rows[rated], frequency[rated]
    nan_interval = dict.fromkeys(HEADLINE, (math.nan, math.nan))
    if not frequency.size:
        return nan_interval

    choice_counts = rows @ (used[:, np.newaxis] // kinds == np.arange(4))
    value_counts = rows @ (used[:, np.newaxis] % kinds == np.arange(domain.size))
    total = int(frequency.sum())
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(total, frequency / total, size=resamples).astype(np.float64)
    draws = {
        "percent_agreement": _percent_agreement(choice_counts, weights),
        "fleiss_kappa": _fleiss_kappa(choice_counts, weights),
        "krippendorff_alpha_nominal": _alpha(
            choice_counts, _distance(np.arange(4.0), "nominal"), weights
        ),
        "krippendorff_alpha_interval": _alpha(value_counts, _distance(domain, "interval"), weights),
    }
    tail = (1.0 - confidence) / 2 * 100
    intervals = {}
    for name, values in draws.items():
        values = values[np.isfinite(values)]
        if not values.size:
            intervals[name] = nan_interval[name]
            continue
        low, high = np.percentile(values, [tail, 100 - tail])
        intervals[name] = (float(low), float(high))
    return intervals


# --- summary ------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    """Plain Python for JSON: numpy scalars unwrapped, nan and inf as None, arrays as lists."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            plain = value.astype(object)
            plain[~np.isfinite(value)] = None
            return plain.tolist()
        return value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def agreement_summary(
    arrays: JudgmentArrays,
    *,
    too_fast_ms: float,
    min_overlap: int = 20,
    min_gold_accuracy: float | None = None,
    min_agreement: float | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything the agreement dashboard shows, as JSON-ready Python (nan written as None).

    Keys: ``counts``; ``coefficients`` (each headline coefficient with its bootstrap ``low`` and
    ``high``) plus the overall ``left_rate``; ``rater_pairs`` (rater x rater ``overlap``,
    ``agreement`` and ``kappa`` matrices, rows and columns by dense rater index); ``raters`` (one
    dict per dense rater index, see :func:`rater_stats`); ``pair_agreement`` (how many pairs reach
    each share of agreeing rater pairs).
    """
    stats = rater_stats(
        arrays,
        too_fast_ms=too_fast_ms,
        min_gold_accuracy=min_gold_accuracy,
        min_agreement=min_agreement,
    )
    columns = {name: _json_value(column) for name, column in stats.items()}
    matrices = rater_pairs(arrays, min_overlap=min_overlap)
    return {
        "counts": _counts(arrays),
        "coefficients": {
            name: {key: _json_value(value) for key, value in entry.items()}
            for name, entry in _coefficients(arrays, resamples=resamples, seed=seed).items()
        },
        "bootstrap": {"resamples": resamples, "confidence": 0.95, "seed": seed, "unit": "pair"},
        "rater_pairs": {
            "min_overlap": min_overlap,
            "overlap": _json_value(matrices.overlap),
            "agreement": _json_value(matrices.agreement),
            "kappa": _json_value(matrices.kappa),
        },
        "raters": [
            {"rater": index, **{name: column[index] for name, column in columns.items()}}
            for index in range(arrays.n_raters)
        ],
        "pair_agreement": _pair_agreement_levels(arrays),
    }


def _counts(arrays: JudgmentArrays) -> dict[str, int]:
    judged_pairs = np.bincount(arrays.pair, minlength=arrays.n_pairs)
    return {
        "judgments": len(arrays),
        "pairs": int((judged_pairs > 0).sum()),
        "pairs_judged_twice_or_more": int((judged_pairs >= 2).sum()),
        "raters": int(np.unique(arrays.rater).size),
    }


def _coefficients(
    arrays: JudgmentArrays, *, resamples: int, seed: int
) -> dict[str, dict[str, Any]]:
    """Each headline coefficient with its bootstrap interval, and the overall left rate with
    its Wilson interval."""
    pair, choice = arrays.pair, arrays.choice
    point = {
        "percent_agreement": percent_agreement(pair, choice),
        "fleiss_kappa": fleiss_kappa(pair, choice),
        "krippendorff_alpha_nominal": krippendorff_alpha(pair, choice, level="nominal"),
        "krippendorff_alpha_interval": krippendorff_alpha(
            pair, arrays.signed_strength, level="interval"
        ),
    }
    intervals = bootstrap_intervals(arrays, resamples=resamples, seed=seed)
    coefficients: dict[str, dict[str, Any]] = {
        name: {"value": value, "low": intervals[name][0], "high": intervals[name][1]}
        for name, value in point.items()
    }
    decisive = int((arrays.left_chosen >= 0).sum())
    left = int((arrays.left_chosen == 1).sum())
    left_low, left_high = wilson_interval(left, decisive)
    coefficients["left_rate"] = {
        "value": left / decisive if decisive else math.nan,
        "low": float(left_low),
        "high": float(left_high),
    }
    return coefficients


def _pair_agreement_levels(arrays: JudgmentArrays) -> list[dict[str, Any]]:
    """How many pairs reach each share of agreeing rater pairs (pairs judged once left out)."""
    per_pair = pair_agreement(arrays.pair, arrays.choice)
    per_pair = per_pair[~np.isnan(per_pair)]
    levels, pairs_at = np.unique(np.round(per_pair, 4), return_counts=True)
    return [
        {"agreement": float(level), "pairs": int(count)}
        for level, count in zip(levels, pairs_at, strict=True)
    ]
