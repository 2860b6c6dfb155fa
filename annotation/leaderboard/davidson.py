"""Davidson's model for ties (Davidson, 1970), reported beside the default fit (no Django).

The default fit counts a tie as half a win for each side. Davidson's model gives ties their own
probability instead: for models i and j with strengths b_i, b_j and a tie parameter nu > 0,

    P(i wins) = e^b_i / D,   P(j wins) = e^b_j / D,   P(tie) = nu e^((b_i + b_j) / 2) / D,

D the sum of the three numerators. Among decisive battles P(i wins) = sigmoid(b_i - b_j), so the
strengths go on the same Arena scale as the default ratings. With d = (b_i - b_j) / 2 the negative
log-likelihood of one pair of models is

    n log(2 cosh d + nu) - (w_ij - w_ji) d - t log nu

(w_ij: battles i won, t: ties, n: all), summed over pairs, plus the default fit's ridge on b. It is
fitted by scipy's BFGS with the exact gradient, on the counts per pair of models (at most
m(m-1)/2 rows), with log nu as the free parameter. No bootstrap: it is a point estimate beside
the default's intervals. Both-bad judgments enter as ties when the leaderboard counts them so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize

from annotation.leaderboard.model import RIDGE, Battles, FitError


@dataclass(frozen=True, kw_only=True)
class DavidsonFit:
    strengths: NDArray[np.float64]  # b per model (the battles' model order), mean zero
    tie_parameter: float  # nu: P(tie) / sqrt(P(i wins) P(j wins)) for any two models


def _pair_counts(battles: Battles) -> tuple[NDArray[np.int64], ...]:
    """Per pair of models (low index, high index): low's decisive wins, high's, and ties."""
    m = len(battles.models)
    decisive_a = battles.wins_a - battles.ties / 2
    decisive_b = battles.count - battles.wins_a - battles.ties / 2
    flip = battles.model_a > battles.model_b
    low = np.where(flip, battles.model_b, battles.model_a)
    high = np.where(flip, battles.model_a, battles.model_b)
    keys, pair = np.unique(low * m + high, return_inverse=True)
    pair = pair.ravel()
    wins_low = np.bincount(pair, np.where(flip, decisive_b, decisive_a), keys.size)
    wins_high = np.bincount(pair, np.where(flip, decisive_a, decisive_b), keys.size)
    ties = np.bincount(pair, battles.ties, keys.size)
    return keys // m, keys % m, wins_low, wins_high, ties


def davidson_fit(battles: Battles) -> DavidsonFit:
    """Maximum likelihood strengths and tie parameter (see the module docstring)."""
    m = len(battles.models)
    low, high, wins_low, wins_high, ties = _pair_counts(battles)
    total = wins_low + wins_high + ties
    if ties.sum() == 0:
        raise FitError("Davidson's model needs at least one tie")

    def loss(params: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
        b, log_nu = params[:m], params[m]
        d = (b[low] - b[high]) / 2
        log_denominator = np.logaddexp(np.logaddexp(d, -d), log_nu)  # log(2 cosh d + nu)
        value = np.sum(total * log_denominator - (wins_low - wins_high) * d - ties * log_nu)
        # d/dd of n log(2 cosh d + nu) is n tanh-like: n (e^d - e^-d) / (2 cosh d + nu)
        slope = total * (np.exp(d - log_denominator) - np.exp(-d - log_denominator))
        slope -= wins_low - wins_high
        grad_b = (np.bincount(low, slope, m) - np.bincount(high, slope, m)) / 2 + RIDGE * b
        grad_nu = np.sum(total * np.exp(log_nu - log_denominator) - ties)
        value += RIDGE / 2 * b @ b
        return float(value), np.append(grad_b, grad_nu)

    start = np.append(np.zeros(m), np.log(max(ties.sum(), 0.5) / max(total.sum(), 1.0)))
    result = minimize(loss, start, jac=True, method="BFGS", options={"gtol": 1e-9})
    if not np.all(np.isfinite(result.x)):
        raise FitError(f"the Davidson fit did not converge: {result.message}")
    strengths = result.x[:m] - result.x[:m].mean()
    return DavidsonFit(strengths=strengths, tie_parameter=float(np.exp(result.x[m])))
