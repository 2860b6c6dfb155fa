"""The Bradley-Terry model and one penalised maximum-likelihood fit of it (no Django).

For a battle of model a against model b, with style differences x (a minus b),

    P(a wins) = sigmoid(beta_a - beta_b + gamma . x)

A tie counts as half a win for each side (as LMArena does). theta = (beta, gamma) is fitted by
maximum likelihood with a damped Newton iteration on the exact Hessian, stopping when no
parameter moves by more than `TOLERANCE`. A small ridge `RIDGE / 2 * |theta|^2` keeps the fit
finite for a model that never lost or never won (and a style feature that is zero everywhere),
and picks the one solution of mean zero among the equivalent shifted ones. It is a Gaussian prior
with a standard deviation of 10 log-odds (1,737 rating points): it only matters where the data
cannot place a model at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import linalg, sparse
from scipy.special import expit

RIDGE = 0.01  # in battles x log-odds^2 (see the module docstring)
TOLERANCE = 1e-7  # log-odds: 1.7e-5 rating points
MAX_NEWTON = 100


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


def incidence(a: NDArray[np.int64], b: NDArray[np.int64], m: int) -> sparse.csr_array:
    """(m, rows): +1 at (a, row), -1 at (b, row): beta_a - beta_b is incidence.T @ beta."""
    rows = np.arange(a.size)
    data = np.concatenate([np.ones(a.size), -np.ones(b.size)])
    return sparse.csr_array(
        (data, (np.concatenate([a, b]), np.concatenate([rows, rows]))), shape=(m, a.size)
    )


def nll_hessian(
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
    inc = incidence(model_a, model_b, m)
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
        step = linalg.solve(nll_hessian(inc, style, n * p * (1 - p)), grad, assume_a="pos")
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
