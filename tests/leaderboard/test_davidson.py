"""Davidson's tie model against a hand-computed example and planted truth."""

import math

import numpy as np
import pytest

from annotation.leaderboard.davidson import davidson_fit
from annotation.leaderboard.fit import SCALE, Battles, FitError


def _two_models(a_wins: int, b_wins: int, ties: int) -> Battles:
    """One row per battle of model A against model B, each on its own prompt."""
    n = a_wins + b_wins + ties
    wins_a = np.r_[np.ones(a_wins), np.zeros(b_wins), np.full(ties, 0.5)]
    return Battles(
        models=["A", "B"],
        model_a=np.zeros(n, dtype=np.int64),
        model_b=np.ones(n, dtype=np.int64),
        wins_a=wins_a,
        count=np.ones(n),
        ties=np.r_[np.zeros(a_wins + b_wins), np.ones(ties)],
        cluster=np.arange(n),
    )


def test_two_models_match_the_hand_computed_estimate():
    # With two models the model is saturated, so the fit reproduces the observed shares:
    # P(A) = 0.6, P(B) = 0.2, P(tie) = 0.2 give e^(b_A - b_B) = 0.6 / 0.2 = 3 and
    # nu = P(tie) / sqrt(P(A) P(B)) = 0.2 / sqrt(0.12) = 0.5774. Scaled by 100 so that the ridge
    # (0.01 x b^2 / 2) moves b_A - b_B by under 0.001.
    fit = davidson_fit(_two_models(600, 200, 200))

    assert fit.strengths[0] - fit.strengths[1] == pytest.approx(math.log(3), abs=1e-3)
    assert fit.tie_parameter == pytest.approx(0.2 / math.sqrt(0.6 * 0.2), abs=1e-3)
    # 190.8 rating points apart, where counting the tie as half a win (7 to 3) gives 147.2
    assert SCALE * (fit.strengths[0] - fit.strengths[1]) == pytest.approx(190.8, abs=0.2)


def test_planted_strengths_and_tie_parameter_are_recovered():
    rng = np.random.default_rng(0)
    strengths, nu, n = np.array([0.8, 0.2, -0.3, -0.7]), 0.6, 40_000
    a = rng.integers(0, 4, n)
    b = (a + rng.integers(1, 4, n)) % 4
    numerators = np.column_stack(
        [np.exp(strengths[a]), np.exp(strengths[b]), nu * np.exp((strengths[a] + strengths[b]) / 2)]
    )
    p = numerators / numerators.sum(axis=1, keepdims=True)
    outcome = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)  # 0 a, 1 b, 2 tie
    battles = Battles(
        models=list("wxyz"),
        model_a=a,
        model_b=b,
        wins_a=np.select([outcome == 0, outcome == 2], [1.0, 0.5], 0.0),
        count=np.ones(n),
        ties=(outcome == 2).astype(np.float64),
        cluster=np.arange(n),
    )

    fit = davidson_fit(battles)

    assert np.abs(fit.strengths - (strengths - strengths.mean())).max() < 0.05
    assert fit.tie_parameter == pytest.approx(nu, abs=0.03)


def test_no_tie_is_an_error_that_says_so():
    with pytest.raises(FitError, match="at least one tie"):
        davidson_fit(_two_models(5, 3, 0))
