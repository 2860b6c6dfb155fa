"""The Bradley-Terry fit against two reference implementations and against planted truth."""

from __future__ import annotations

import math

import choix
import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression

from annotation.leaderboard.fit import (
    MEAN_RATING,
    RIDGE,
    SCALE,
    Battles,
    FitError,
    leaderboard_fit,
)


def simulate(
    strengths: NDArray[np.float64],
    *,
    battles: int,
    prompts: int,
    seed: int,
    tie_share: float = 0.1,
    prompt_noise: float = 0.0,
    style: NDArray[np.float64] | None = None,
    gamma: NDArray[np.float64] | None = None,
) -> Battles:
    """Battles with known strengths; each prompt shifts every battle on it by a shared amount."""
    rng = np.random.default_rng(seed)
    m = strengths.size
    a = rng.integers(0, m, battles)
    b = (a + rng.integers(1, m, battles)) % m
    cluster = rng.integers(0, prompts, battles)
    z = strengths[a] - strengths[b] + rng.normal(0, prompt_noise, prompts)[cluster]
    if style is not None and gamma is not None:
        z = z + style @ gamma
    tie = rng.random(battles) < tie_share
    won = (rng.random(battles) < 1 / (1 + np.exp(-z))).astype(np.float64)
    return Battles(
        models=[f"model-{i:02d}" for i in range(m)],
        model_a=a,
        model_b=b,
        wins_a=np.where(tie, 0.5, won),
        count=np.ones(battles),
        ties=tie.astype(np.float64),
        cluster=cluster,
        style=style,
    )


def ratings_of(board) -> dict[str, float]:
    return {row.model: row.rating for row in board.ratings}


def fastchat_mle_elo(battles: Battles) -> dict[str, float]:
    """scikit-learn set up as FastChat's compute_mle_elo: a win table with each win counted twice
    and each tie once for both sides, two weighted rows per pair of models, X = +-ln(10),
    no intercept, no penalty, ratings 400 * coef + 1000."""
    m = len(battles.models)
    table = np.zeros((m, m))  # table[i, j]: doubled wins of i over j, ties once each way
    np.add.at(table, (battles.model_a, battles.model_b), 2 * battles.wins_a)
    np.add.at(table, (battles.model_b, battles.model_a), 2 * (battles.count - battles.wins_a))
    rows, labels, weights = [], [], []
    for i in range(m):
        for j in range(m):
            if i == j:
                continue
            x = np.zeros(m)
            x[i], x[j] = math.log(10), -math.log(10)
            rows += [x, x]
            labels += [1.0, 0.0]
            weights += [table[i, j], table[j, i]]
    fit = LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-8, max_iter=10_000)
    fit.fit(np.array(rows), np.array(labels), sample_weight=np.array(weights))
    return dict(zip(battles.models, 400 * fit.coef_[0] + 1000, strict=True))


def choix_ratings(battles: Battles) -> dict[str, float]:
    """choix's MAP fit: a decisive battle as two (winner, loser) records, a tie as one each way
    (so a tie is half a win), and its ridge doubled to match the doubled data."""
    data = []
    for a, b, wins_a, ties in zip(
        battles.model_a, battles.model_b, battles.wins_a, battles.ties, strict=True
    ):
        if ties:
            data += [(a, b), (b, a)]
        else:
            data += [(a, b), (a, b)] if wins_a else [(b, a), (b, a)]
    params = choix.opt_pairwise(len(battles.models), data, alpha=2 * RIDGE, tol=1e-10)
    params = params - params.mean()
    return dict(zip(battles.models, MEAN_RATING + SCALE * params, strict=True))


@pytest.fixture(scope="module")
def eight_models() -> Battles:
    return simulate(np.linspace(-1.0, 1.2, 8), battles=4000, prompts=800, seed=3)


def test_ratings_equal_fastchat_sklearn_fit_within_half_a_point(eight_models):
    ours = ratings_of(leaderboard_fit(eight_models, rounds=10))
    reference = fastchat_mle_elo(eight_models)
    assert max(abs(ours[name] - reference[name]) for name in ours) < 0.5


def test_ratings_equal_choix_within_half_a_point(eight_models):
    ours = ratings_of(leaderboard_fit(eight_models, rounds=10))
    reference = choix_ratings(eight_models)
    assert max(abs(ours[name] - reference[name]) for name in ours) < 0.5


def test_ratings_are_on_the_arena_scale_with_mean_1000(eight_models):
    board = leaderboard_fit(eight_models, rounds=10)
    assert np.mean([row.rating for row in board.ratings]) == pytest.approx(1000.0)
    # Win probability from the ratings: 400 points is 10-to-1 odds.
    best, worst = board.ratings[0], board.ratings[-1]
    expected = 1 / (1 + 10 ** ((worst.rating - best.rating) / 400))
    assert board.win_probability[0, -1] == pytest.approx(expected)


def test_twenty_models_and_fifty_thousand_battles_come_out_in_their_true_order():
    strengths = np.random.default_rng(7).permutation(np.linspace(-1.5, 1.5, 20))
    battles = simulate(strengths, battles=50_000, prompts=10_000, seed=11)
    board = leaderboard_fit(battles, rounds=20)
    true_order = [f"model-{i:02d}" for i in np.argsort(-strengths)]
    assert [row.model for row in board.ratings] == true_order


def correlated_prompts(
    strengths: NDArray[np.float64], *, prompts: int, per_prompt: int, seed: int
) -> Battles:
    """One pair of models per prompt, judged `per_prompt` times; each judgment copies the
    prompt's shared draw half of the time, so judgments of a prompt agree more than chance
    while each one still follows Bradley-Terry."""
    rng = np.random.default_rng(seed)
    m = strengths.size
    a = rng.integers(0, m, prompts)
    b = (a + rng.integers(1, m, prompts)) % m
    p = 1 / (1 + np.exp(-(strengths[a] - strengths[b])))
    shared = rng.random(prompts) < p
    own = rng.random((prompts, per_prompt)) < p[:, None]
    copy = rng.random((prompts, per_prompt)) < 0.5
    wins = np.where(copy, shared[:, None], own).sum(axis=1).astype(np.float64)
    return Battles(
        models=[f"model-{i:02d}" for i in range(m)],
        model_a=a,
        model_b=b,
        wins_a=wins,
        count=np.full(prompts, float(per_prompt)),
        ties=np.zeros(prompts),
        cluster=np.arange(prompts),
    )


def test_95_percent_cluster_intervals_cover_the_truth_90_to_98_percent_of_the_time():
    strengths = np.array([-0.6, -0.2, 0.0, 0.3, 0.5])
    truth = MEAN_RATING + SCALE * (strengths - strengths.mean())
    covered, total = 0, 0
    for seed in range(100):
        battles = correlated_prompts(strengths, prompts=300, per_prompt=4, seed=seed)
        board = leaderboard_fit(battles, rounds=200, seed=seed)
        for row in board.ratings:
            true = truth[battles.models.index(row.model)]
            covered += row.ci_low <= true <= row.ci_high
            total += 1
    assert 0.90 <= covered / total <= 0.98


def test_rank_counts_the_models_whose_interval_is_wholly_above(eight_models):
    board = leaderboard_fit(eight_models, rounds=100)
    for row in board.ratings:
        above = sum(other.ci_low > row.ci_high for other in board.ratings)
        assert row.rank == 1 + above
        assert row.rank_ci[0] <= row.rank_ci[1]


def test_wins_losses_and_ties_add_up_to_each_models_battles(eight_models):
    board = leaderboard_fit(eight_models, rounds=10)
    assert sum(row.battles for row in board.ratings) == 2 * 4000
    for row in board.ratings:
        assert row.wins + row.losses + row.ties == row.battles
    assert board.battle_counts.sum() == 2 * 4000


def test_a_model_that_never_lost_gets_a_finite_rating_at_the_top():
    battles = Battles(
        models=["always-wins", "b", "c"],
        model_a=np.array([0, 0, 1, 2, 1]),
        model_b=np.array([1, 2, 2, 1, 2]),
        wins_a=np.array([3.0, 2.0, 1.0, 1.0, 0.5]),
        count=np.array([3.0, 2.0, 2.0, 2.0, 1.0]),
        ties=np.array([0.0, 0.0, 0.0, 0.0, 1.0]),
        cluster=np.array([0, 1, 2, 3, 4]),
    )
    board = leaderboard_fit(battles, rounds=50)
    assert board.ratings[0].model == "always-wins"
    assert all(math.isfinite(row.rating) and math.isfinite(row.ci_high) for row in board.ratings)


def test_no_battles_is_an_error_that_says_so():
    empty = np.zeros(0, dtype=np.int64)
    battles = Battles(
        models=[],
        model_a=empty,
        model_b=empty,
        wins_a=empty.astype(float),
        count=empty.astype(float),
        ties=empty.astype(float),
        cluster=empty,
    )
    with pytest.raises(FitError, match="at least two models"):
        leaderboard_fit(battles, rounds=10)


def _style_for(battles_n: int, seed: int, verbose_model: int | None, a, b) -> NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    style = rng.normal(0, 0.2, (battles_n, 4))
    if verbose_model is not None:
        # The verbose model writes about twice as long as anybody: (2 - 1) / (2 + 1) = 1/3.
        style[:, 0] += np.where(a == verbose_model, 1 / 3, 0) - np.where(
            b == verbose_model, 1 / 3, 0
        )
    return style


def test_style_control_recovers_a_planted_length_effect():
    strengths = np.linspace(-0.5, 0.5, 6)
    probe = simulate(strengths, battles=20_000, prompts=4_000, seed=5)
    style = _style_for(20_000, 6, None, probe.model_a, probe.model_b)
    gamma = np.array([1.2, 0.0, 0.0, 0.0])
    battles = simulate(strengths, battles=20_000, prompts=4_000, seed=5, style=style, gamma=gamma)
    board = leaderboard_fit(battles, rounds=50, style_control=True)
    length = next(effect for effect in board.style if effect.name == "length")
    assert length.ci_low < 1.2 < length.ci_high
    assert length.coefficient == pytest.approx(1.2, abs=0.15)
    assert length.twice_as_much_wins == pytest.approx(1 / (1 + math.exp(-1.2 / 3)), abs=0.02)
    headers = next(effect for effect in board.style if effect.name == "headers")
    assert headers.ci_low < 0 < headers.ci_high


def test_style_control_removes_a_pure_length_advantage():
    strengths = np.zeros(4)  # four equal models; model 0 only writes longer answers
    probe = simulate(strengths, battles=20_000, prompts=4_000, seed=8)
    style = _style_for(20_000, 9, 0, probe.model_a, probe.model_b)
    gamma = np.array([1.5, 0.0, 0.0, 0.0])
    battles = simulate(strengths, battles=20_000, prompts=4_000, seed=8, style=style, gamma=gamma)
    raw = ratings_of(leaderboard_fit(battles, rounds=20))
    controlled = ratings_of(leaderboard_fit(battles, rounds=20, style_control=True))
    others = [name for name in raw if name != "model-00"]
    assert min(raw["model-00"] - raw[name] for name in others) > 50
    assert max(abs(controlled["model-00"] - controlled[name]) for name in others) < 15


@pytest.mark.parametrize("with_style", [False, True])
def test_chord_bootstrap_equals_refitting_every_round_with_newton(with_style):
    """The fast bootstrap (rounds solved in blocks by the chord iteration, float32 with style
    control) against its plain twin, each round refitted alone by the full Newton method, on the
    same draws: 70 rounds span two blocks."""
    from annotation.leaderboard.bootstrap import bootstrap_rounds, design_for, full_fit

    rng = np.random.default_rng(7)
    style = rng.uniform(-0.6, 0.6, (3000, 4)) if with_style else None
    battles = simulate(
        np.linspace(-1, 1, 8),
        battles=3000,
        prompts=600,
        seed=3,
        prompt_noise=0.5,
        style=style,
        gamma=np.array([0.8, 0.0, 0.3, 0.0]),
    )
    design = design_for(battles, style=with_style)
    theta, hessian = full_fit(design, 8)
    kwargs = {"m": 8, "clusters": battles.n_clusters, "rounds": 70, "seed": 5}
    fast = bootstrap_rounds(design, theta, hessian, **kwargs)
    plain = bootstrap_rounds(design, theta, hessian, reference=True, **kwargs)
    assert fast.shape == plain.shape == (70, 12 if with_style else 8)
    assert np.abs(fast[:, :8] - plain[:, :8]).max() * SCALE < 0.05  # rating points
    assert np.abs(fast[:, 8:] - plain[:, 8:]).max(initial=0.0) < 3e-4  # log-odds
