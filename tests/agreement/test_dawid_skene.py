"""Dawid-Skene and the three aggregation rules, on arrays (no database)."""

import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene

from annotation.exports.aggregation import Decision, Votes, decide_by_probability
from annotation.exports.dawid_skene import UNKNOWN, dawid_skene
from annotation.exports.labels import (
    TIE,
    A,
    B,
    pair_labels,
    rater_accuracy,
    reliability_flags,
    spammer_score,
)


def _simulate(confusions, *, n_items=2000, per_item=3, prior_a=0.5, seed=0):
    """Judgments from raters with planted confusion matrices (rows: truth a, b; columns: labels)."""
    rng = np.random.default_rng(seed)
    confusions = np.asarray(confusions, dtype=np.float64)
    truth = (rng.random(n_items) >= prior_a).astype(np.int64)
    items = np.repeat(np.arange(n_items), per_item)
    raters = np.concatenate(
        [rng.choice(len(confusions), per_item, replace=False) for _ in range(n_items)]
    )
    cumulative = confusions[raters, truth[items]].cumsum(axis=1)
    labels = (rng.random(len(items))[:, None] > cumulative).sum(axis=1)
    return items, raters, labels, truth


# crowd-kit 1.4 calls pandas APIs that pandas 3.1 deprecates; the warning is theirs, not ours.
crowd_kit_warnings = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")


@crowd_kit_warnings
def test_matches_crowd_kit_on_the_same_judgments():
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, 400)
    accuracy = rng.uniform(0.3, 0.95, 12)
    items = np.repeat(np.arange(400), 4)
    raters = np.concatenate([rng.choice(12, 4, replace=False) for _ in range(400)])
    right = rng.random(len(items)) < accuracy[raters]
    labels = np.where(right, truth[items], rng.integers(0, 3, len(items)))
    frame = pd.DataFrame({"task": items, "worker": raters, "label": labels})
    reference = DawidSkene(n_iter=1000, tol=1e-12).fit(frame)

    ours = dawid_skene(
        items, raters, labels, n_items=400, n_raters=12, n_classes=3,
        smoothing=0.0, diagonal=0.0, tol=1e-15, max_iter=1000,
    )  # fmt: skip

    expected = reference.probas_.sort_index()[[0, 1, 2]].to_numpy()
    assert np.abs(ours.posteriors - expected).max() < 1e-5  # crowd-kit clips at 1e-10
    assert np.abs(ours.priors - reference.priors_.sort_index().to_numpy()).max() < 1e-6
    errors = reference.errors_  # (worker, observed label) x true label
    for worker in range(12):
        table = errors.loc[worker].reindex(index=[0, 1, 2], columns=[0, 1, 2]).to_numpy()
        assert np.abs(ours.confusion[worker].T - table).max() < 1e-4


@crowd_kit_warnings
def test_matches_crowd_kit_when_gold_answers_are_known():
    items, raters, labels, truth = _simulate(
        [[[0.9, 0.1], [0.2, 0.8]], [[0.6, 0.4], [0.4, 0.6]], [[0.3, 0.7], [0.75, 0.25]],
         [[0.8, 0.2], [0.1, 0.9]]],
        n_items=300, per_item=2, seed=5,
    )  # fmt: skip
    known = np.full(300, UNKNOWN)
    known[:40] = truth[:40]
    frame = pd.DataFrame({"task": items, "worker": raters, "label": labels})
    reference = DawidSkene(n_iter=1000, tol=1e-12).fit(frame, pd.Series(truth[:40]))

    ours = dawid_skene(
        items, raters, labels, n_items=300, n_raters=4, known=known,
        smoothing=0.0, diagonal=0.0, tol=1e-15, max_iter=1000,
    )  # fmt: skip

    expected = reference.probas_.sort_index()[[0, 1]].to_numpy()
    assert np.abs(ours.posteriors - expected).max() < 1e-6
    assert (ours.posteriors[:40].argmax(axis=1) == truth[:40]).all()


def test_hand_computable_posterior_with_known_raters():
    # Two raters, each right with probability 0.8 and 0.6 on either class; priors one half.
    # Item 0: both say a -> P(a) = .8*.6 / (.8*.6 + .2*.4) = .48 / .56 = 6/7.
    # Item 1: first says a, second b -> .8*.4 / (.8*.4 + .2*.6) = .32 / .44 = 8/11.
    # The gold items pin the confusion matrices: smoothing 0 and known truth on 10 + 10 items,
    # answered 8/2 and 6/4 right by the two raters, give exactly those rates.
    items, raters, labels, known = [], [], [], []
    for item in range(20):
        truth = item % 2
        known.append(truth)
        for rater, right in ((0, item // 2 < 8), (1, item // 2 < 6)):
            items.append(item)
            raters.append(rater)
            labels.append(truth if right else 1 - truth)
    items += [20, 20, 21, 21]
    raters += [0, 1, 0, 1]
    labels += [0, 0, 0, 1]
    known += [UNKNOWN, UNKNOWN]

    result = dawid_skene(
        np.array(items), np.array(raters), np.array(labels), n_items=22, n_raters=2,
        known=np.array(known), smoothing=0.0, diagonal=0.0,
    )  # fmt: skip

    # The two open items shift the M-step a little; with them in, the fixed point is near.
    assert result.posteriors[20, 0] == pytest.approx(6 / 7, abs=0.02)
    assert result.posteriors[21, 0] == pytest.approx(8 / 11, abs=0.03)
    assert result.converged


def test_exact_hand_computation_of_one_em_pass():
    # Items 0 (known a) and 1 (known b) and 2 (open). Rater 0 says a, b, a; rater 1 says a, a, b.
    # Start: item 2's vote shares (1/2, 1/2), so priors (1/2, 1/2). M-step with one pseudo-vote
    # per cell (smoothing 1, diagonal 0), weighting each vote by its item's posterior:
    #   rater 0, truth a: says a 1 + 1/2, b 0   -> (2.5, 1) / 3.5 = (5/7, 2/7)
    #   rater 0, truth b: says a 1/2, b 1       -> (1.5, 2) / 3.5 = (3/7, 4/7)
    #   rater 1, truth a: says a 1, b 1/2       -> (2, 1.5) / 3.5 = (4/7, 3/7)
    #   rater 1, truth b: says a 1, b 1/2       -> (4/7, 3/7)
    # E-step on item 2 (rater 0 says a, rater 1 says b):
    #   P(a) = 5/7 * 3/7 / (5/7 * 3/7 + 3/7 * 3/7) = 15 / 24 = 5/8.
    result = dawid_skene(
        np.array([0, 0, 1, 1, 2, 2]), np.array([0, 1, 0, 1, 0, 1]), np.array([0, 0, 1, 0, 0, 1]),
        n_items=3, n_raters=2, known=np.array([0, 1, UNKNOWN]),
        smoothing=1.0, diagonal=0.0, max_iter=1,
    )  # fmt: skip
    assert result.posteriors[2, 0] == pytest.approx(5 / 8)
    assert result.posteriors[:2].tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_recovers_planted_confusion_matrices():
    planted = np.array(
        [[[0.9, 0.1, 0.0, 0.0], [0.15, 0.85, 0.0, 0.0]],
         [[0.7, 0.2, 0.1, 0.0], [0.2, 0.7, 0.1, 0.0]],
         [[0.45, 0.45, 0.05, 0.05], [0.45, 0.45, 0.05, 0.05]],
         [[0.1, 0.9, 0.0, 0.0], [0.85, 0.15, 0.0, 0.0]],
         [[0.8, 0.1, 0.1, 0.0], [0.1, 0.8, 0.0, 0.1]],
         [[0.95, 0.05, 0.0, 0.0], [0.05, 0.95, 0.0, 0.0]]]
    )  # fmt: skip
    items, raters, labels, truth = _simulate(planted, n_items=6000, per_item=3, seed=1)

    result = dawid_skene(
        items, raters, labels, n_items=6000, n_raters=6, n_labels=4, smoothing=0.1, diagonal=0
    )

    assert np.abs(result.confusion - planted).max() < 0.04
    assert result.priors[0] == pytest.approx((truth == 0).mean(), abs=0.02)
    assert (result.posteriors.argmax(axis=1) == truth).mean() > 0.9


def test_an_inverted_rater_becomes_information():
    # Two honest raters at 70% and one who answers the opposite 90% of the time. Majority is
    # dragged down by the inverted one; Dawid-Skene reads their votes backwards.
    items, raters, labels, truth = _simulate(
        [[[0.7, 0.3], [0.3, 0.7]], [[0.7, 0.3], [0.3, 0.7]], [[0.1, 0.9], [0.9, 0.1]]],
        n_items=3000, per_item=3, seed=2,
    )  # fmt: skip
    known = np.full(3000, UNKNOWN)
    known[:100] = truth[:100]  # a little gold decides which class is which

    estimated = pair_labels(items, raters, labels, known, aggregation="dawid_skene")
    majority = pair_labels(items, raters, labels, known, aggregation="majority")

    open_items = slice(100, None)
    truth_a = truth[open_items] == A
    ds_accuracy = ((estimated.p_a[open_items] > 0.5) == truth_a).mean()
    majority_accuracy = ((majority.p_a[open_items] > 0.5) == truth_a).mean()
    assert ds_accuracy > majority_accuracy + 0.1
    assert ds_accuracy > 0.9
    spammer, inverted = reliability_flags(estimated.reliability)
    assert inverted.tolist() == [False, False, True]
    assert not spammer.any()


def test_a_random_rater_is_flagged_as_a_spammer():
    items, raters, labels, _ = _simulate(
        [[[0.85, 0.15], [0.15, 0.85]], [[0.85, 0.15], [0.15, 0.85]], [[0.5, 0.5], [0.5, 0.5]]],
        n_items=1000, seed=4,
    )  # fmt: skip

    labelled = pair_labels(items, raters, labels, np.full(1000, UNKNOWN), aggregation="dawid_skene")

    spammer, inverted = reliability_flags(labelled.reliability)
    assert spammer.tolist() == [False, False, True]
    assert abs(spammer_score(labelled.reliability.confusion)[2]) < 0.1
    assert not inverted.any()


def test_weighted_votes_follow_gold_accuracy():
    # Rater 0 is right on every gold pair, raters 1 and 2 on none: on an open pair where 0 says a
    # and the others b, the weighted rule sides with rater 0 (their weights are negative).
    pair, rater, choice, known = [], [], [], []
    for p in range(6):
        known.append(A)
        pair += [p, p, p]
        rater += [0, 1, 2]
        choice += [A, B, B]
    pair += [6, 6, 6]
    rater += [0, 1, 2]
    choice += [A, B, B]
    known.append(UNKNOWN)

    weighted = pair_labels(pair, rater, choice, known, aggregation="weighted")
    majority = pair_labels(pair, rater, choice, known, aggregation="majority")

    assert weighted.p_a[6] > 0.99
    assert majority.p_a[6] == pytest.approx(1 / 3)
    assert weighted.p_a[:6].tolist() == [1.0] * 6


def test_ties_and_both_bad_do_not_name_a_side():
    labelled = pair_labels([0, 0, 0], [0, 1, 2], [A, TIE, 3], [UNKNOWN], aggregation="majority")
    assert labelled.p_a[0] == 1.0
    assert labelled.reliability.decisive.tolist() == [1.0, 0.0, 0.0]


def test_refuses_labels_out_of_range():
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        dawid_skene(np.array([0]), np.array([0]), np.array([2]), n_items=1, n_raters=1)
    with pytest.raises(ValueError, match="unknown aggregation"):
        pair_labels([0], [0], [A], [UNKNOWN], aggregation="mean")  # type: ignore[arg-type]


def test_without_gold_a_raters_weight_is_their_agreement_with_the_others():
    # Raters 0-2 agree on 20 pairs; rater 3 always says the opposite. On an open pair where
    # raters 0 and 3 say a and raters 1 and 2 say b, rater 3's vote counts for b: b wins clearly.
    pair, rater, choice = [], [], []
    for p in range(20):
        for r, c in ((0, A), (1, A), (2, A), (3, B)):
            pair.append(p)
            rater.append(r)
            choice.append(c)
    for r, c in ((0, A), (1, B), (2, B), (3, A)):
        pair.append(20)
        rater.append(r)
        choice.append(c)
    known = [UNKNOWN] * 21

    accuracy = rater_accuracy(
        np.array(pair), np.array(rater), np.array(choice), np.array(known), n_pairs=21, n_raters=4
    )
    weighted = pair_labels(pair, rater, choice, known, aggregation="weighted")

    assert accuracy[3] < 0.1 < 0.9 < accuracy[:3].min()
    assert weighted.p_a[20] < 0.01


def test_a_probability_rule_may_side_with_the_minority_and_counts_its_margin_from_the_votes():
    votes = Votes(a=1, b=2, strength_a=3, strength_b=6)
    assert decide_by_probability(votes, 0.9) == Decision("a", 0.333333, 0.0, p_chosen=0.9)
    assert decide_by_probability(votes, 0.2) == Decision("b", 0.666667, 0.333333, p_chosen=0.8)
    assert decide_by_probability(votes, 0.5) is None
