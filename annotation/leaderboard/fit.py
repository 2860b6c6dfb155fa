"""Bradley-Terry ratings of models from pairwise battles, a cluster bootstrap, style control.

No Django here: the selector (annotation.selectors.leaderboard) reads the judgments into a
`Battles` table and this module does the mathematics.

The model. For a battle of model a against model b, with style differences x (a minus b),

    P(a wins) = sigmoid(beta_a - beta_b + gamma . x)

A tie counts as half a win for each side (as LMArena does). `beta` is fitted by maximum
likelihood with a damped Newton iteration on the exact Hessian, stopping when no parameter moves
by more than `TOLERANCE`. A small ridge `RIDGE / 2 * |theta|^2` keeps the fit finite for a model
that never lost or never won (and a style feature that is zero everywhere), and picks the one
solution of mean zero among the equivalent shifted ones. It is a Gaussian prior with a standard
deviation of 10 log-odds (1,737 rating points): it only matters where the data cannot place a
model at all.

The scale is LMArena's: 400 / ln 10 rating points per unit of log-odds, mean 1000.

The bootstrap resamples prompts (a cluster bootstrap: the judgments of one prompt are not
independent) with multinomial counts, and refits with those counts as weights, many rounds at once:
without style control, the battles are summed per pair of models for each round by one sparse
product, so each refit has at most m(m-1)/2 rows; with style control every battle row keeps its
own features. Rounds are solved together by a chord (simplified Newton) iteration that reuses the
full-data Hessian, from the one-step estimate, to the same tolerance; a round that does not
converge that way (a model absent from the round, say) is refitted alone with the exact Newton.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import linalg, sparse
from scipy.special import expit

SCALE = 400.0 / math.log(10.0)  # rating points per unit of log-odds
MEAN_RATING = 1000.0
RIDGE = 0.01  # in battles x log-odds^2 (see the module docstring)
TOLERANCE = 1e-7  # log-odds: 1.7e-5 rating points
# A bootstrap round stops sooner, at 0.002 rating points: far below what a percentile of 1,000
# rounds can resolve, and each chord step costs a pass over every battle row of the block.
BOOTSTRAP_TOLERANCE = 1e-5
MAX_NEWTON = 100
MAX_CHORD = 60
ROUNDS_PER_BLOCK = 64  # bootstrap rounds solved together; bounds memory at rows x 64 floats
STYLE_NAMES = ("length", "headers", "list_items", "bold")
# A style feature is LMArena's (a - b) / (a + b + 1) of a count; "twice as much" is about 1/3.
TWICE_AS_MUCH = 1.0 / 3.0


class FitError(ValueError):
    """The battles cannot be fitted (no battle, or the iteration did not converge)."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Battles:
    """Battle rows: each row is one or more battles of one pair of models on one prompt.

    A row's style features (if any) are the same for all its battles, as for the judgments of one
    pair of responses.
    """

    models: list[str]  # index -> model name
    model_a: NDArray[np.int64]
    model_b: NDArray[np.int64]
    wins_a: NDArray[np.float64]  # battles won by a, a tie counting half
    count: NDArray[np.float64]  # battles in the row
    ties: NDArray[np.float64]  # of which ties
    cluster: NDArray[np.int64]  # the prompt, as a dense index from 0
    style: NDArray[np.float64] | None = None  # (rows, len(STYLE_NAMES)), a minus b

    @property
    def n_clusters(self) -> int:
        return int(self.cluster.max()) + 1 if self.cluster.size else 0


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


# --- one fit ------------------------------------------------------------------------------------


def _incidence(a: NDArray[np.int64], b: NDArray[np.int64], m: int) -> sparse.csr_array:
    """(m, rows): +1 at (a, row), -1 at (b, row): beta_a - beta_b is incidence.T @ beta."""
    rows = np.arange(a.size)
    data = np.concatenate([np.ones(a.size), -np.ones(b.size)])
    return sparse.csr_array(
        (data, (np.concatenate([a, b]), np.concatenate([rows, rows]))), shape=(m, a.size)
    )


def _hessian(
    inc: sparse.csr_array, style: NDArray[np.float64] | None, d: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The negative log-likelihood's Hessian, ridge included, for row curvatures d = n p (1-p)."""
    m = inc.shape[0]
    h_bb = (inc * d) @ inc.T
    h_bb = h_bb.toarray() + RIDGE * np.eye(m)
    if style is None:
        return np.asarray(h_bb)
    h_bg = (inc * d) @ style
    h_gg = style.T @ (style * d[:, None]) + RIDGE * np.eye(style.shape[1])
    return np.block([[h_bb, h_bg], [h_bg.T, h_gg]])


def _loss(
    theta: NDArray[np.float64],
    logit: NDArray[np.float64],
    y: NDArray[np.float64],
    n: NDArray[np.float64],
) -> float:
    # -log L = sum n log(1 + e^z) - y z, written stably with logaddexp
    return float(np.sum(n * np.logaddexp(0.0, logit) - y * logit) + RIDGE / 2 * theta @ theta)


def newton_fit(
    *,
    model_a: NDArray[np.int64],
    model_b: NDArray[np.int64],
    y: NDArray[np.float64],
    n: NDArray[np.float64],
    m: int,
    style: NDArray[np.float64] | None = None,
) -> NDArray[np.float64]:
    """theta = (beta for the m models, then gamma for the style columns), by damped Newton.

    y: wins of a per row (ties half), n: battles per row; both may carry bootstrap weights.
    """
    inc = _incidence(model_a, model_b, m)
    k = 0 if style is None else style.shape[1]
    theta = np.zeros(m + k)

    def logit_of(t: NDArray[np.float64]) -> NDArray[np.float64]:
        z = inc.T @ t[:m]
        return z if style is None else z + style @ t[m:]

    logit = logit_of(theta)
    loss = _loss(theta, logit, y, n)
    for _ in range(MAX_NEWTON):
        p = expit(logit)
        r = y - n * p
        grad = RIDGE * theta - np.concatenate([inc @ r, [] if style is None else style.T @ r])
        step = linalg.solve(_hessian(inc, style, n * p * (1 - p)), grad, assume_a="pos")
        scale = 1.0
        while True:  # backtrack until the loss does not rise (Newton on a convex loss)
            candidate = theta - scale * step
            new_logit = logit_of(candidate)
            new_loss = _loss(candidate, new_logit, y, n)
            if new_loss <= loss + 1e-12 * abs(loss) or scale < 1e-6:
                break
            scale /= 2
        theta, logit, loss = candidate, new_logit, new_loss
        if np.max(np.abs(scale * step)) < TOLERANCE:
            return theta
    raise FitError(f"the Bradley-Terry fit did not converge in {MAX_NEWTON} Newton steps")


# --- the bootstrap ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class _Design:
    """The rows the bootstrap refits, and how a round's prompt weights become their y and n."""

    model_a: NDArray[np.int64]
    model_b: NDArray[np.int64]
    style: NDArray[np.float64] | None
    y_of: sparse.csr_array  # (rows, clusters): y of a round = y_of @ weights
    n_of: sparse.csr_array


def _design(battles: Battles, *, style: bool) -> _Design:
    rows = np.arange(battles.model_a.size)
    shape = (battles.model_a.size, battles.n_clusters)
    if style:
        y_of = sparse.csr_array((battles.wins_a, (rows, battles.cluster)), shape=shape)
        n_of = sparse.csr_array((battles.count, (rows, battles.cluster)), shape=shape)
        return _Design(
            model_a=battles.model_a,
            model_b=battles.model_b,
            style=battles.style,
            y_of=y_of,
            n_of=n_of,
        )
    # Without covariates only the totals per pair of models matter: orient each row low -> high
    # and sum (pair of models, prompt) cells, so a round's refit has one row per pair of models.
    flip = battles.model_a > battles.model_b
    low = np.where(flip, battles.model_b, battles.model_a)
    high = np.where(flip, battles.model_a, battles.model_b)
    wins_low = np.where(flip, battles.count - battles.wins_a, battles.wins_a)
    m = len(battles.models)
    keys, matchup = np.unique(low * m + high, return_inverse=True)
    shape = (keys.size, battles.n_clusters)
    y_of = sparse.csr_array((wins_low, (matchup.ravel(), battles.cluster)), shape=shape)
    n_of = sparse.csr_array((battles.count, (matchup.ravel(), battles.cluster)), shape=shape)
    return _Design(model_a=keys // m, model_b=keys % m, style=None, y_of=y_of, n_of=n_of)


@dataclass(frozen=True, kw_only=True, eq=False)
class _Chord:
    """What every bootstrap block reuses: the full-data fit, its Hessian's Cholesky factor, the
    design in the block's float type, and each prompt's share of the full-data gradient, which
    gives every round's first step without touching the rows.

    With style control the rows are single pairs (a few battles each, times a prompt weight) and
    their rows x rounds arrays are memory-bound: float32 halves the traffic, and its rounding
    stays below the tolerance. Without style control the rows are whole pairs of models with
    hundreds of battles, where float32's rounding of y - n p would exceed the tolerance; they are
    few, so float64 costs nothing there.
    """

    theta_hat: NDArray[np.float64]
    factor: tuple[NDArray[np.float64], bool]
    dtype: type[np.floating[Any]]
    model_a: NDArray[np.int64]
    model_b: NDArray[np.int64]
    y_of: sparse.csr_array  # the design's, in dtype
    n_of: sparse.csr_array
    models_from_rows: sparse.csr_array  # (m, rows): +1 at a, -1 at b, for the gradient
    style: NDArray[np.floating[Any]] | None
    prompt_gradient: NDArray[np.float64]  # (clusters, params): X^T (y - n p) per prompt


def _chord_setup(
    design: _Design, theta_hat: NDArray[np.float64], hessian: NDArray[np.float64], m: int
) -> _Chord:
    inc = _incidence(design.model_a, design.model_b, m)
    z = inc.T @ theta_hat[:m]
    if design.style is not None:
        z += design.style @ theta_hat[m:]
    p = expit(z)
    # Per prompt c: sum over its rows of x_row * (y_rc - n_rc p_row), as a (clusters, params).
    residual = (design.y_of - design.n_of.multiply(p[:, None])).T.tocsr()  # (clusters, rows)
    design_rows = inc.T.tocsr()
    if design.style is not None:
        design_rows = sparse.hstack([design_rows, sparse.csr_array(design.style)]).tocsr()
    gradient = (residual @ design_rows).toarray()
    dtype = np.float64 if design.style is None else np.float32
    return _Chord(
        theta_hat=theta_hat,
        factor=linalg.cho_factor(hessian),
        dtype=dtype,
        model_a=design.model_a,
        model_b=design.model_b,
        y_of=design.y_of.astype(dtype),
        n_of=design.n_of.astype(dtype),
        models_from_rows=inc.tocsr().astype(dtype),
        style=None if design.style is None else design.style.astype(dtype),
        prompt_gradient=gradient,
    )


def _chord_block(
    design: _Design, chord: _Chord, weights: NDArray[np.float64], m: int
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Refit a block of rounds (weights: clusters x B) at once; returns (B, params), converged."""
    y = chord.y_of @ weights.astype(chord.dtype)  # rows x B
    n = chord.n_of @ weights.astype(chord.dtype)
    # The first chord step from theta_hat needs only each prompt's gradient share.
    first = RIDGE * chord.theta_hat[:, None] - chord.prompt_gradient.T @ weights
    theta = chord.theta_hat[:, None] - linalg.cho_solve(chord.factor, first)  # params x B
    converged = np.zeros(weights.shape[1], dtype=bool)
    for _ in range(MAX_CHORD):
        beta = theta[:m].astype(chord.dtype)
        r = beta[chord.model_a]  # beta_a - beta_b by two gathers, cheaper than a sparse product
        r -= beta[chord.model_b]
        if chord.style is not None:
            r += chord.style @ theta[m:].astype(chord.dtype)
        expit(r, out=r)  # in place, r goes logit -> p -> n p -> y - n p
        r *= n
        np.subtract(y, r, out=r)
        grad = -(chord.models_from_rows @ r)
        # Every row adds +r to one model and -r to another, so these sum to zero exactly; in
        # float32 they do not quite, and along the all-models shift the Hessian is only the
        # ridge, which would blow that rounding up a hundredfold. Centre them.
        grad -= grad.mean(axis=0)
        if chord.style is not None:
            grad = np.vstack([grad, -(chord.style.T @ r)])
        step = linalg.cho_solve(chord.factor, grad.astype(np.float64) + RIDGE * theta)
        theta -= step
        converged = np.max(np.abs(step), axis=0) < BOOTSTRAP_TOLERANCE
        if converged.all():
            break
    return theta.T, converged


def _full_fit(design: _Design, m: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """theta on all the data, and its Hessian there."""
    y, n = design.y_of.sum(axis=1), design.n_of.sum(axis=1)
    theta = newton_fit(
        model_a=design.model_a, model_b=design.model_b, y=y, n=n, m=m, style=design.style
    )
    inc = _incidence(design.model_a, design.model_b, m)
    z = inc.T @ theta[:m]
    if design.style is not None:
        z += design.style @ theta[m:]
    p = expit(z)
    return theta, _hessian(inc, design.style, n * p * (1 - p))


def _prompt_counts(rng: np.random.Generator, clusters: int, rounds: int) -> NDArray[np.float64]:
    """(clusters, rounds): how often each prompt is drawn when `clusters` are drawn with
    replacement, per round (multinomial counts, by bincount: much faster than
    Generator.multinomial over many categories)."""
    draws = rng.integers(0, clusters, size=(rounds, clusters), dtype=np.int32)
    draws += (np.arange(rounds, dtype=np.int32) * clusters)[:, None]  # < 2**31: 64 x 3e7
    counts = np.bincount(draws.ravel(), minlength=rounds * clusters)
    return counts.reshape(rounds, clusters).T.astype(np.float64)


def _bootstrap(
    design: _Design,
    theta_hat: NDArray[np.float64],
    hessian: NDArray[np.float64],
    *,
    m: int,
    clusters: int,
    rounds: int,
    seed: int,
) -> NDArray[np.float64]:
    """(rounds, params): refits on data whose prompts were drawn with replacement."""
    chord = _chord_setup(design, theta_hat, hessian, m)
    rng = np.random.default_rng(seed)
    out = [np.zeros((0, theta_hat.size))]
    for start in range(0, rounds, ROUNDS_PER_BLOCK):
        weights = _prompt_counts(rng, clusters, min(ROUNDS_PER_BLOCK, rounds - start))
        theta, converged = _chord_block(design, chord, weights, m)
        for col in np.flatnonzero(~converged):
            theta[col] = newton_fit(
                model_a=design.model_a,
                model_b=design.model_b,
                y=design.y_of @ weights[:, col],
                n=design.n_of @ weights[:, col],
                m=m,
                style=design.style,
            )
        out.append(theta)
    return np.vstack(out)


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


def leaderboard_fit(
    battles: Battles, *, rounds: int = 1000, style_control: bool = False, seed: int = 0
) -> Leaderboard:
    """Ratings with 95% bootstrap intervals, best first; style-controlled if asked."""
    m = len(battles.models)
    if battles.model_a.size == 0 or m < 2:
        raise FitError("a leaderboard needs battles between at least two models")
    use_style = style_control and battles.style is not None
    design = _design(battles, style=use_style)
    theta, hessian = _full_fit(design, m)
    samples = _bootstrap(
        design, theta, hessian, m=m, clusters=battles.n_clusters, rounds=rounds, seed=seed
    )
    beta, beta_samples = theta[:m], samples[:, :m]
    ratings = MEAN_RATING + SCALE * beta
    low, high = MEAN_RATING + SCALE * np.percentile(beta_samples, [2.5, 97.5], axis=0)
    rank_low, rank_high = np.percentile(_ranks(beta_samples), [2.5, 97.5], axis=0)
    wins, losses, ties, won, count = _records(battles)
    order = np.argsort(-ratings, kind="stable")
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
        )
        for i in order
    ]
    style = []
    if use_style:
        gamma_low, gamma_high = np.percentile(samples[:, m:], [2.5, 97.5], axis=0)
        style = [
            StyleEffect(
                name=name,
                coefficient=float(theta[m + k]),
                ci_low=float(gamma_low[k]),
                ci_high=float(gamma_high[k]),
                twice_as_much_wins=float(expit(theta[m + k] * TWICE_AS_MUCH)),
            )
            for k, name in enumerate(STYLE_NAMES)
        ]
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
    )
