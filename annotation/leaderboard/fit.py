"""Bradley-Terry ratings of models on the Arena scale, with bootstrap intervals, ranks and style
control (no Django).

The selector (annotation.selectors.leaderboard) reads the judgments into a `Battles` table; the
model and one fit are in annotation.leaderboard.model, the prompt bootstrap in
annotation.leaderboard.bootstrap. The scale is LMArena's: 400 / ln 10 rating points per unit of
log-odds, mean 1000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import expit

from annotation.leaderboard.bootstrap import bootstrap_rounds, design_for, full_fit
from annotation.leaderboard.davidson import DavidsonFit, davidson_fit
from annotation.leaderboard.model import RIDGE, Battles, FitError

__all__ = ["RIDGE", "Battles", "FitError", "Leaderboard", "ModelRating", "leaderboard_fit"]

SCALE = 400.0 / math.log(10.0)  # rating points per unit of log-odds
MEAN_RATING = 1000.0
STYLE_NAMES = ("length", "headers", "list_items", "bold")
# A style feature is LMArena's (a - b) / (a + b + 1) of a count; "twice as much" is about 1/3.
TWICE_AS_MUCH = 1.0 / 3.0


@dataclass(frozen=True, kw_only=True)
class StyleEffect:
    name: str
    coefficient: float  # log-odds per unit of the feature
    ci_low: float
    ci_high: float
    twice_as_much_wins: float  # P(win) against an equal model, having twice as much of it


@dataclass(frozen=True, kw_only=True)
class ModelRating:
    model: str
    rating: float
    ci_low: float
    ci_high: float
    rank: int  # 1 + models whose interval lies wholly above this one's
    rank_ci: tuple[int, int]  # 2.5th and 97.5th percentile of the bootstrap ranks
    wins: float
    losses: float
    ties: float
    battles: int
    davidson_rating: float | None = None  # under Davidson's tie model, raw fits with a tie only


@dataclass(frozen=True, kw_only=True)
class Leaderboard:
    ratings: list[ModelRating]  # best first
    battles: int
    rounds: int
    clusters: int
    style: list[StyleEffect] = field(default_factory=list)
    win_probability: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    observed_win_rate: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    battle_counts: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    order: list[str] = field(default_factory=list)  # model names, as the matrices' rows
    tie_parameter: float | None = None  # Davidson's nu, where its ratings are given


def _ranks(ratings: NDArray[np.float64]) -> NDArray[np.int64]:
    """1 + the number of models rated strictly higher, per row of `ratings` (rounds x models)."""
    return 1 + (ratings[:, None, :] > ratings[:, :, None]).sum(axis=2)


def _records(battles: Battles) -> tuple[NDArray[Any], ...]:
    """Wins, losses and ties per model (a tie is not a win here), and the two matrices."""
    m = len(battles.models)
    decisive_a = battles.wins_a - battles.ties / 2
    decisive_b = battles.count - battles.wins_a - battles.ties / 2
    wins = np.bincount(battles.model_a, decisive_a, m) + np.bincount(battles.model_b, decisive_b, m)
    losses = np.bincount(battles.model_a, decisive_b, m) + np.bincount(
        battles.model_b, decisive_a, m
    )
    ties = np.bincount(battles.model_a, battles.ties, m) + np.bincount(
        battles.model_b, battles.ties, m
    )
    won = np.zeros((m, m))  # won[i, j]: battles of i against j won by i, ties half
    count = np.zeros((m, m))
    np.add.at(won, (battles.model_a, battles.model_b), battles.wins_a)
    np.add.at(won, (battles.model_b, battles.model_a), battles.count - battles.wins_a)
    np.add.at(count, (battles.model_a, battles.model_b), battles.count)
    count = count + count.T
    return wins, losses, ties, won, count


def _davidson(battles: Battles, style_control: bool) -> DavidsonFit | None:
    """Davidson's fit beside the raw ratings (it has no style covariates), where a tie exists."""
    if style_control or battles.ties.sum() == 0:
        return None
    return davidson_fit(battles)


def _style_effects(
    gamma: NDArray[np.float64], gamma_samples: NDArray[np.float64]
) -> list[StyleEffect]:
    """Each style covariate's fitted coefficient, its 95% interval, and what it means in words:
    how often the response with twice as much of it wins, all else equal."""
    gamma_low, gamma_high = np.percentile(gamma_samples, [2.5, 97.5], axis=0)
    return [
        StyleEffect(
            name=name,
            coefficient=float(gamma[k]),
            ci_low=float(gamma_low[k]),
            ci_high=float(gamma_high[k]),
            twice_as_much_wins=float(expit(gamma[k] * TWICE_AS_MUCH)),
        )
        for k, name in enumerate(STYLE_NAMES)
    ]


def leaderboard_fit(
    battles: Battles, *, rounds: int = 1000, style_control: bool = False, seed: int = 0
) -> Leaderboard:
    """Ratings with 95% bootstrap intervals, best first; style-controlled if asked."""
    m = len(battles.models)
    if battles.model_a.size == 0 or m < 2:
        raise FitError("a leaderboard needs battles between at least two models")
    use_style = style_control and battles.style is not None
    design = design_for(battles, style=use_style)
    theta, hessian = full_fit(design, m)
    samples = bootstrap_rounds(
        design, theta, hessian, m=m, clusters=battles.n_clusters, rounds=rounds, seed=seed
    )
    beta, beta_samples = theta[:m], samples[:, :m]
    ratings = MEAN_RATING + SCALE * beta
    low, high = MEAN_RATING + SCALE * np.percentile(beta_samples, [2.5, 97.5], axis=0)
    rank_low, rank_high = np.percentile(_ranks(beta_samples), [2.5, 97.5], axis=0)
    wins, losses, ties, won, count = _records(battles)
    order = np.argsort(-ratings, kind="stable")
    davidson = _davidson(battles, use_style)
    davidson_ratings = None if davidson is None else MEAN_RATING + SCALE * davidson.strengths
    rows = [
        ModelRating(
            model=battles.models[i],
            rating=float(ratings[i]),
            ci_low=float(low[i]),
            ci_high=float(high[i]),
            rank=1 + int(np.sum(low > high[i])),
            rank_ci=(int(np.floor(rank_low[i])), int(np.ceil(rank_high[i]))),
            wins=float(wins[i]),
            losses=float(losses[i]),
            ties=float(ties[i]),
            battles=round(float(wins[i] + losses[i] + ties[i])),
            davidson_rating=None if davidson_ratings is None else float(davidson_ratings[i]),
        )
        for i in order
    ]
    style = _style_effects(theta[m:], samples[:, m:]) if use_style else []
    with np.errstate(invalid="ignore", divide="ignore"):
        observed = np.where(count > 0, won / count, np.nan)
    return Leaderboard(
        ratings=rows,
        battles=round(float(battles.count.sum())),
        rounds=rounds,
        clusters=battles.n_clusters,
        style=style,
        win_probability=expit(beta[order][:, None] - beta[order][None, :]),
        observed_win_rate=observed[np.ix_(order, order)],
        battle_counts=count[np.ix_(order, order)],
        order=[battles.models[i] for i in order],
        tie_parameter=None if davidson is None else davidson.tie_parameter,
    )
