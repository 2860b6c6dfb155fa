"""Agreement metrics against published worked examples and reference packages; no Django."""

import json
from collections import Counter

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from annotation.agreement.metrics import (
    JudgmentArrays,
    agreement_summary,
    bootstrap_intervals,
    cohen_kappa,
    fleiss_kappa,
    judgment_arrays_from_columns,
    krippendorff_alpha,
    pair_agreement,
    pairwise_cohen_kappa,
    percent_agreement,
    rater_pairs,
    rater_stats,
    wilson_interval,
)

nan = np.nan

# Krippendorff (2011), "Computing Krippendorff's alpha-reliability", section C: 4 observers x 12
# units, values 1-5, nan where an observer did not code the unit.
KRIPPENDORFF_2011 = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
)

# Fleiss (1971) as reproduced on Wikipedia ("Fleiss' kappa", worked example): 10 subjects,
# 14 raters each, 5 categories; P-bar = 0.378, kappa = 0.210.
FLEISS_1971 = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def long_form(reliability_data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit, rater, value) of every non-missing cell of a raters x units matrix."""
    rater, unit = np.nonzero(~np.isnan(reliability_data))
    return unit, rater, reliability_data[rater, unit]


def from_count_table(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unit, category) of every rating in a units x categories count table."""
    unit = np.repeat(np.arange(table.shape[0]), table.sum(axis=1))
    category = np.concatenate([np.repeat(np.arange(table.shape[1]), row) for row in table])
    return unit, category


def random_reliability_data(
    rng: np.random.Generator, *, raters: int, units: int, values: int, missing: float
) -> np.ndarray:
    """Raters x units codes that agree more than chance, with cells missing at random."""
    truth = rng.integers(values, size=units)
    noise = rng.integers(values, size=(raters, units))
    data = np.where(rng.random((raters, units)) < 0.6, truth, noise).astype(np.float64)
    data[rng.random((raters, units)) < missing] = nan
    return data


def random_judgments(
    rng: np.random.Generator, *, raters: int, pairs: int, missing: float
) -> JudgmentArrays:
    data = random_reliability_data(rng, raters=raters, units=pairs, values=4, missing=missing)
    pair, rater, choice = long_form(data)
    choice = choice.astype(np.int64)
    strength = rng.integers(1, 4, size=choice.size)
    decisive = choice <= 1
    return JudgmentArrays(
        pair=pair,
        rater=rater,
        choice=choice,
        signed_strength=np.select(
            [choice == 0, choice == 1, choice == 2], [strength, -strength, 0], nan
        ),
        left_chosen=np.where(decisive, rng.integers(2, size=choice.size), -1),
        duration_ms=rng.lognormal(9, 1, size=choice.size),
        gold=np.where(rng.random(pairs) < 0.3, rng.integers(3, size=pairs), -1)[pair],
    )


def test_krippendorff_alpha_reproduces_the_2011_worked_example() -> None:
    unit, _, value = long_form(KRIPPENDORFF_2011)

    assert round(krippendorff_alpha(unit, value, level="nominal"), 3) == 0.743
    assert round(krippendorff_alpha(unit, value, level="interval"), 3) == 0.849


def test_fleiss_kappa_reproduces_the_1971_worked_example() -> None:
    unit, category = from_count_table(FLEISS_1971)

    assert round(fleiss_kappa(unit, category), 3) == 0.210
    assert round(percent_agreement(unit, category), 3) == 0.378


@pytest.mark.parametrize(
    ("yes_yes", "yes_no", "no_yes", "no_no", "expected"),
    [
        (20, 5, 10, 15, 0.4),  # Wikipedia, "Cohen's kappa": 50 grant proposals
        (45, 15, 25, 15, 0.1304),  # same page: similar agreement, different kappa
        (25, 35, 5, 35, 0.2593),
    ],
)
def test_cohen_kappa_reproduces_the_textbook_examples(
    yes_yes: int, yes_no: int, no_yes: int, no_no: int, expected: float
) -> None:
    first = ["yes"] * (yes_yes + yes_no) + ["no"] * (no_yes + no_no)
    second = ["yes"] * yes_yes + ["no"] * yes_no + ["yes"] * no_yes + ["no"] * no_no

    assert round(cohen_kappa(first, second), 4) == expected


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("level", ["nominal", "interval"])
def test_krippendorff_alpha_matches_the_krippendorff_package_with_missing_values(
    seed: int, level: str
) -> None:
    rng = np.random.default_rng(seed)
    data = random_reliability_data(
        rng, raters=int(rng.integers(2, 9)), units=200, values=5, missing=0.4
    )
    unit, _, value = long_form(data)

    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    assert krippendorff_alpha(unit, value, level=level) == pytest.approx(expected, abs=1e-12)


def test_krippendorff_alpha_accepts_non_integer_values() -> None:
    rng = np.random.default_rng(7)
    data = random_reliability_data(rng, raters=4, units=50, values=6, missing=0.2) * 0.37 - 1
    unit, _, value = long_form(data)

    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="interval")
    assert krippendorff_alpha(unit, value, level="interval") == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_fleiss_kappa_matches_statsmodels_when_every_unit_has_the_same_raters(seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = random_reliability_data(rng, raters=5, units=300, values=4, missing=0.0)
    unit, _, value = long_form(data)
    table = np.stack([np.bincount(column.astype(int), minlength=4) for column in data.T])

    expected = statsmodels_fleiss_kappa(table, method="fleiss")
    assert fleiss_kappa(unit, value.astype(int)) == pytest.approx(expected, abs=1e-12)


def test_fleiss_kappa_with_varying_raters_uses_units_rated_at_least_twice() -> None:
    rng = np.random.default_rng(3)
    data = random_reliability_data(rng, raters=6, units=150, values=3, missing=0.5)
    unit, _, value = long_form(data)
    # The generalisation written out unit by unit: mean per-unit agreement against the squared
    # category shares among all ratings of the units that have at least two.
    rows = [np.bincount(column[~np.isnan(column)].astype(int), minlength=3) for column in data.T]
    rows = [row for row in rows if row.sum() >= 2]
    observed = np.mean([(row * (row - 1)).sum() / (row.sum() * (row.sum() - 1)) for row in rows])
    shares = np.sum(rows, axis=0) / np.sum(rows)
    expected = (observed - (shares**2).sum()) / (1 - (shares**2).sum())

    assert fleiss_kappa(unit, value.astype(int)) == pytest.approx(expected, abs=1e-12)
    assert percent_agreement(unit, value.astype(int)) == pytest.approx(observed, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_cohen_kappa_matches_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    first = rng.integers(4, size=100)
    second = np.where(rng.random(100) < 0.5, first, rng.integers(4, size=100))

    assert cohen_kappa(first, second) == pytest.approx(cohen_kappa_score(first, second), abs=1e-12)


def test_pairwise_cohen_kappa_matches_scikit_learn_on_the_pairs_two_raters_share() -> None:
    arrays = random_judgments(np.random.default_rng(11), raters=6, pairs=120, missing=0.5)

    kappa = pairwise_cohen_kappa(arrays, min_overlap=25)

    def choices_of(rater: int) -> dict[int, int]:
        mine = arrays.rater == rater
        return dict(zip(arrays.pair[mine].tolist(), arrays.choice[mine].tolist(), strict=True))

    for first in range(arrays.n_raters):
        for second in range(arrays.n_raters):
            mine, theirs = choices_of(first), choices_of(second)
            shared = sorted(mine.keys() & theirs.keys())
            if first == second or len(shared) < 25:
                assert np.isnan(kappa[first, second])
                continue
            expected = cohen_kappa_score([mine[p] for p in shared], [theirs[p] for p in shared])
            assert kappa[first, second] == pytest.approx(expected, abs=1e-12)


def test_rater_pairs_count_the_overlap_and_the_share_of_identical_choices() -> None:
    arrays = random_judgments(np.random.default_rng(12), raters=4, pairs=60, missing=0.3)
    on_pair = {(p, r): c for p, r, c in zip(arrays.pair, arrays.rater, arrays.choice, strict=True)}

    matrices = rater_pairs(arrays, min_overlap=1)

    for first, second in [(0, 1), (1, 3), (2, 0)]:
        shared = [p for p in range(60) if (p, first) in on_pair and (p, second) in on_pair]
        same = [p for p in shared if on_pair[p, first] == on_pair[p, second]]
        assert matrices.overlap[first, second] == len(shared)
        assert matrices.agreement[first, second] == pytest.approx(len(same) / len(shared))


def judgments(rows: list[tuple[int, int, int]], **columns: list) -> JudgmentArrays:
    """JudgmentArrays from (pair, rater, choice) rows, other columns defaulted."""
    pair, rater, choice = (np.array(column) for column in zip(*rows, strict=True))
    n = len(rows)
    defaults = {
        "signed_strength": np.select([choice == 0, choice == 1, choice == 2], [1, -1, 0], nan),
        "left_chosen": np.where(choice <= 1, 1, -1),
        "duration_ms": np.full(n, 10_000.0),
        "gold": np.full(n, -1),
    }
    defaults.update({name: np.array(values) for name, values in columns.items()})
    return JudgmentArrays(pair=pair, rater=rater, choice=choice, **defaults)


def test_each_judgment_is_scored_against_the_mode_of_the_other_raters() -> None:
    a, b, tie = 0, 1, 2
    arrays = judgments(
        [
            # pair 0: raters 0 and 1 say a, rater 2 says b
            (0, 0, a), (0, 1, a), (0, 2, b),
            # pair 1: everyone says tie
            (1, 0, tie), (1, 1, tie), (1, 2, tie),
            # pair 2: only rater 0 judged it, so it is not scored
            (2, 0, b),
        ]
    )  # fmt: skip

    stats = rater_stats(arrays, too_fast_ms=0)

    # Rater 0 on pair 0 faces a split mode {a, b}: half credit for matching one of two modes.
    assert stats["agreement_with_others"].tolist() == [(0.5 + 1) / 2, (0.5 + 1) / 2, (0 + 1) / 2]
    assert stats["scored_judgments"].tolist() == [2, 2, 2]
    assert stats["judgments"].tolist() == [3, 2, 2]


def test_agreement_with_others_matches_a_direct_count_of_the_others_modes() -> None:
    arrays = random_judgments(np.random.default_rng(5), raters=7, pairs=80, missing=0.4)

    stats = rater_stats(arrays, too_fast_ms=0)

    scores: dict[int, list[float]] = {}
    for index in range(len(arrays)):
        same_pair = (arrays.pair == arrays.pair[index]) & (np.arange(len(arrays)) != index)
        others = Counter(arrays.choice[same_pair].tolist())
        if not others:
            continue
        top = max(others.values())
        modes = [choice for choice, count in others.items() if count == top]
        score = (arrays.choice[index] in modes) / len(modes)
        scores.setdefault(int(arrays.rater[index]), []).append(score)
    for rater, rater_scores in scores.items():
        assert stats["agreement_with_others"][rater] == pytest.approx(np.mean(rater_scores))


def test_kappa_with_others_is_cohen_kappa_against_the_mode_with_ties_split() -> None:
    arrays = random_judgments(np.random.default_rng(6), raters=5, pairs=150, missing=0.3)

    stats = rater_stats(arrays, too_fast_ms=0)

    for rater in range(arrays.n_raters):
        own, mode, weight = [], [], []
        for index in np.flatnonzero(arrays.rater == rater):
            same_pair = (arrays.pair == arrays.pair[index]) & (arrays.rater != rater)
            others = Counter(arrays.choice[same_pair].tolist())
            if not others:
                continue
            top = max(others.values())
            modes = [choice for choice, count in others.items() if count == top]
            for choice in modes:
                own.append(int(arrays.choice[index]))
                mode.append(choice)
                weight.append(1 / len(modes))
        expected = cohen_kappa_score(own, mode, sample_weight=weight)
        assert stats["kappa_with_others"][rater] == pytest.approx(expected, abs=1e-12)


def test_position_bias_interval_is_the_wilson_interval() -> None:
    arrays = judgments(
        [(pair, 0, 0) for pair in range(40)],
        left_chosen=[1] * 29 + [0] * 11,
    )

    stats = rater_stats(arrays, too_fast_ms=0)

    low, high = proportion_confint(29, 40, alpha=0.05, method="wilson")
    assert stats["left_rate"][0] == 29 / 40
    assert stats["left_rate_low"][0] == pytest.approx(low, abs=1e-9)
    assert stats["left_rate_high"][0] == pytest.approx(high, abs=1e-9)


def test_wilson_interval_matches_statsmodels_elementwise() -> None:
    successes, trials = np.array([0, 3, 50, 7]), np.array([10, 3, 120, 9])

    low, high = wilson_interval(successes, trials)

    expected_low, expected_high = proportion_confint(successes, trials, method="wilson")
    assert low == pytest.approx(expected_low, abs=1e-9)
    assert high == pytest.approx(expected_high, abs=1e-9)


def test_picking_the_left_response_takes_the_swap_into_account() -> None:
    arrays, pair_ids, rater_ids = judgment_arrays_from_columns(
        pair_id=[10, 10, 11, 11, 12],
        rater_id=[7, 9, 7, 9, 7],
        choice=["a", "a", "b", "tie", "both_bad"],
        strength=[3, None, 2, None, None],
        swapped=[False, True, True, False, True],
        duration_ms=[1000, None, 2000, 3000, 4000],
        gold=["a", "a", None, None, "tie"],
    )

    assert pair_ids.tolist() == [10, 11, 12]
    assert rater_ids.tolist() == [7, 9]
    assert arrays.rater.tolist() == [0, 1, 0, 1, 0]
    assert arrays.left_chosen.tolist() == [1, 0, 1, -1, -1]
    assert arrays.signed_strength[:4].tolist() == [3, 1, -2, 0]
    assert np.isnan(arrays.signed_strength[4])
    assert np.isnan(arrays.duration_ms[1])
    assert arrays.gold.tolist() == [0, 0, -1, -1, 2]


def test_gold_accuracy_rates_and_median_time_are_per_rater() -> None:
    a, b, tie, both_bad = 0, 1, 2, 3
    arrays = judgments(
        [(0, 0, a), (1, 0, b), (2, 0, tie), (3, 0, both_bad), (0, 1, a), (1, 1, a)],
        gold=[0, 0, -1, 2, 0, 0],
        duration_ms=[1000, 2000, 4000, nan, 30_000, 50_000],
    )

    stats = rater_stats(arrays, too_fast_ms=3000, min_gold_accuracy=0.8)

    assert stats["gold_judgments"].tolist() == [3, 2]
    assert stats["gold_accuracy"].tolist() == [1 / 3, 1.0]
    assert stats["tie_rate"].tolist() == [0.25, 0.0]
    assert stats["both_bad_rate"].tolist() == [0.25, 0.0]
    assert stats["median_duration_ms"].tolist() == [2000, 40_000]
    assert stats["too_fast"].tolist() == [True, False]
    assert stats["low_gold_accuracy"].tolist() == [True, False]
    assert stats["low_agreement"].tolist() == [False, False]


def test_pair_agreement_is_the_share_of_agreeing_rater_pairs() -> None:
    unit = [0, 0, 0, 1, 1, 1, 2, 2, 3]
    code = [0, 0, 1, 0, 1, 2, 3, 3, 0]

    assert pair_agreement(unit, code)[:3].tolist() == [1 / 3, 0.0, 1.0]
    assert np.isnan(pair_agreement(unit, code)[3])


def test_bootstrap_intervals_contain_the_point_estimates_and_repeat_with_a_seed() -> None:
    arrays = random_judgments(np.random.default_rng(8), raters=5, pairs=400, missing=0.3)

    intervals = bootstrap_intervals(arrays, resamples=500, seed=1)

    point = {
        "percent_agreement": percent_agreement(arrays.pair, arrays.choice),
        "fleiss_kappa": fleiss_kappa(arrays.pair, arrays.choice),
        "krippendorff_alpha_nominal": krippendorff_alpha(arrays.pair, arrays.choice),
        "krippendorff_alpha_interval": krippendorff_alpha(
            arrays.pair, arrays.signed_strength, level="interval"
        ),
    }
    for name, value in point.items():
        low, high = intervals[name]
        assert low < value < high
    assert bootstrap_intervals(arrays, resamples=500, seed=1) == intervals


def test_bootstrap_intervals_agree_with_naively_resampling_pairs() -> None:
    rng = np.random.default_rng(9)
    arrays = random_judgments(rng, raters=4, pairs=300, missing=0.3)
    by_pair = np.argsort(arrays.pair, kind="stable")
    sizes = np.bincount(arrays.pair)
    starts = np.cumsum(sizes) - sizes
    alphas = []
    for _ in range(2000):
        drawn = rng.integers(arrays.n_pairs, size=arrays.n_pairs)
        # Draw d becomes unit d, holding every judgment of the pair it drew.
        drawn_sizes = sizes[drawn]
        offset = np.arange(drawn_sizes.sum()) - np.repeat(
            np.cumsum(drawn_sizes) - drawn_sizes, drawn_sizes
        )
        rows = by_pair[np.repeat(starts[drawn], drawn_sizes) + offset]
        unit = np.repeat(np.arange(arrays.n_pairs), drawn_sizes)
        alphas.append(krippendorff_alpha(unit, arrays.choice[rows]))
    naive = np.percentile(alphas, [2.5, 97.5])

    low, high = bootstrap_intervals(arrays, resamples=2000, seed=2)["krippendorff_alpha_nominal"]

    assert low == pytest.approx(naive[0], abs=0.01)
    assert high == pytest.approx(naive[1], abs=0.01)


def test_coefficients_are_nan_when_no_pair_is_judged_twice() -> None:
    arrays = judgments([(0, 0, 0), (1, 1, 1), (2, 0, 2)])

    assert np.isnan(percent_agreement(arrays.pair, arrays.choice))
    assert np.isnan(fleiss_kappa(arrays.pair, arrays.choice))
    assert np.isnan(krippendorff_alpha(arrays.pair, arrays.choice))
    assert np.isnan(bootstrap_intervals(arrays)["fleiss_kappa"][0])


def test_summary_is_plain_json_with_nulls_for_undefined_values() -> None:
    arrays = random_judgments(np.random.default_rng(10), raters=6, pairs=100, missing=0.5)

    summary = agreement_summary(arrays, too_fast_ms=5000, min_overlap=30, resamples=100)

    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text) == summary
    assert summary["counts"]["judgments"] == len(arrays)
    assert len(summary["raters"]) == 6
    assert summary["rater_pairs"]["kappa"][0][0] is None
    assert (
        sum(level["pairs"] for level in summary["pair_agreement"])
        == (summary["counts"]["pairs_judged_twice_or_more"])
    )
    coefficient = summary["coefficients"]["krippendorff_alpha_nominal"]
    assert coefficient["low"] <= coefficient["value"] <= coefficient["high"]


def test_summary_of_no_judgments_is_empty_rather_than_an_error() -> None:
    empty = np.array([], dtype=np.int64)
    arrays = JudgmentArrays(
        pair=empty,
        rater=empty,
        choice=empty,
        signed_strength=empty,
        left_chosen=empty,
        duration_ms=empty,
        gold=empty,
    )

    summary = agreement_summary(arrays, too_fast_ms=5000)

    json.dumps(summary, allow_nan=False)
    assert summary["raters"] == []
    assert summary["coefficients"]["fleiss_kappa"]["value"] is None
