"""The cluster bootstrap of the Bradley-Terry fit: many refits at once (no Django).

Prompts are resampled (the judgments of one prompt are not independent) with multinomial counts,
and each round refits with those counts as weights, many rounds at once: without style control,
the battles are summed per pair of models for each round by one sparse product, so each refit has
at most m(m-1)/2 rows; with style control every battle row keeps its own features. Rounds are
solved together by a chord (simplified Newton) iteration that reuses the full-data Hessian,
starting from the one-step estimate; a round that does not converge that way (a model absent from
the round, say) is refitted alone with the exact Newton. That refit, for every round, is the plain
twin (`bootstrap_rounds(..., reference=True)`) the tests compare the chord iteration with.

Where the time goes with style control (1,000 rounds of 333,336 rows): each pass over the rows
goes `ROWS_PER_CHUNK` rows at a time, so that everything it touches stays in cache: the chunk's
prompt weights gathered from the block's, beta_a - beta_b gathered from a table per pair of
models, the four style columns, one tanh, and two sums; no rows x rounds array is ever built.
Two passes per round suffice from the one-step start. Drawing the prompt counts is one bincount
per round.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import linalg, sparse
from scipy.special import expit

from annotation.leaderboard.model import RIDGE, Battles, incidence, newton_fit, nll_hessian

# A bootstrap round stops sooner than the main fit, once a step moves no parameter by 1e-4
# log-odds (0.017 rating points): a percentile of 1,000 rounds is itself uncertain by about 0.09
# of the rating's bootstrap spread (0.2 points on the benchmark), and each chord step costs a
# pass over every row. The tests hold the rounds to a full Newton refit within 0.05 points.
BOOTSTRAP_TOLERANCE = 1e-4
MAX_CHORD = 60
ROUNDS_PER_BLOCK = 64  # bootstrap rounds solved together; bounds memory at rows x 64 floats
# Blocks solved at once, one a thread: numpy and scipy release the GIL in the passes over the
# rows. Capped at 4, so the blocks' weights in flight stay under 4 x prompts x 64 floats.
BOOTSTRAP_THREADS = max(1, min(4, len(os.sched_getaffinity(0))))
# A pass over the rows goes this many rows at a time, so that its temporaries (rows x 64 float32,
# 512 KiB) stay in cache and only a round's y and n come from memory.
ROWS_PER_CHUNK = 2048
_Floats = NDArray[np.floating[Any]]


@dataclass(frozen=True, kw_only=True, eq=False)
class Design:
    """The rows the bootstrap refits, and how a round's prompt weights become their y and n."""

    model_a: NDArray[np.int64]
    model_b: NDArray[np.int64]
    style: NDArray[np.float64] | None
    y_of: sparse.csr_array  # (rows, clusters): y of a round = y_of @ weights
    n_of: sparse.csr_array
    cluster: NDArray[np.int64] | None = None  # each row's one prompt, where a row has one


def design_for(battles: Battles, *, style: bool) -> Design:
    rows = np.arange(battles.model_a.size)
    shape = (battles.model_a.size, battles.n_clusters)
    if style:
        y_of = sparse.csr_array((battles.wins_a, (rows, battles.cluster)), shape=shape)
        n_of = sparse.csr_array((battles.count, (rows, battles.cluster)), shape=shape)
        return Design(
            model_a=battles.model_a,
            model_b=battles.model_b,
            style=battles.style,
            y_of=y_of,
            n_of=n_of,
            cluster=battles.cluster,
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
    return Design(model_a=keys // m, model_b=keys % m, style=None, y_of=y_of, n_of=n_of)


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
    pair_of_row: NDArray[np.int64]  # the row's pair of models, an index into the next two
    models_from_pairs: sparse.csr_array  # (m, pairs of models): +1 at a, -1 at b
    # (pairs of models, rows of the chunk): 1 where the row is the pair's, per ROWS_PER_CHUNK rows
    pairs_from_chunks: list[sparse.csr_array]
    y_of: sparse.csr_array  # the design's, in dtype
    n_of: sparse.csr_array
    cluster: NDArray[np.int64] | None  # the design's
    centred_row: _Floats  # y - n / 2 and n / 2 of each row on the full data, in dtype
    half_row: _Floats
    style: NDArray[np.floating[Any]] | None
    prompt_gradient: NDArray[np.float64]  # (clusters, params): X^T (y - n p) per prompt


def _chord_setup(
    design: Design, theta_hat: NDArray[np.float64], hessian: NDArray[np.float64], m: int
) -> _Chord:
    inc = incidence(design.model_a, design.model_b, m)
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
    y, n = design.y_of.sum(axis=1), design.n_of.sum(axis=1)
    keys, pair_of_row = np.unique(design.model_a * m + design.model_b, return_inverse=True)
    rows = np.arange(pair_of_row.size)
    return _Chord(
        theta_hat=theta_hat,
        factor=linalg.cho_factor(hessian),
        dtype=dtype,
        pair_of_row=pair_of_row.ravel(),
        models_from_pairs=incidence(keys // m, keys % m, m).astype(dtype),
        pairs_from_chunks=[
            sparse.csr_array(
                (
                    np.ones(chunk.size, dtype=dtype),
                    (pair_of_row.ravel()[chunk], chunk - chunk[0]),
                ),
                shape=(keys.size, chunk.size),
            )
            for chunk in np.array_split(rows, max(1, -(-rows.size // ROWS_PER_CHUNK)))
        ],
        y_of=design.y_of.astype(dtype),
        n_of=design.n_of.astype(dtype),
        cluster=design.cluster,
        centred_row=(y - n / 2).astype(dtype),
        half_row=(n / 2).astype(dtype),
        style=None if design.style is None else design.style.astype(dtype),
        prompt_gradient=gradient,
    )


def _logistic_residual(z: _Floats, centred: _Floats, half: _Floats) -> _Floats:
    """y - n sigmoid(2 z), in place in z, given centred = y - n / 2 and half = n / 2.

    sigmoid(2 z) = 1/2 + tanh(z) / 2, and numpy's tanh is ten times faster than scipy's expit in
    float32 (no exp, no division per element).
    """
    np.tanh(z, out=z)
    z *= half
    return np.subtract(centred, z, out=z)


def _gradient(
    chord: _Chord, halved: _Floats, terms: Callable[[slice], tuple[_Floats, _Floats]], m: int
) -> NDArray[np.float64]:
    """-(X^T (y - n p)) of every round at theta = 2 halved: one pass over the rows, a chunk of
    rows at a time into two small buffers."""
    rounds = halved.shape[1]
    per_pair = np.zeros((chord.pairs_from_chunks[0].shape[0], rounds), dtype=chord.dtype)
    style_sum = np.zeros((halved.shape[0] - m, rounds), dtype=chord.dtype)
    # beta_a - beta_b per pair of models: each row gathers its value from this small table
    pair_logit = chord.models_from_pairs.T @ halved[:m]
    logit = np.empty((ROWS_PER_CHUNK, rounds), dtype=chord.dtype)
    shift = np.empty_like(logit)
    start = 0
    for pairs_from_chunk in chord.pairs_from_chunks:  # bounded by rows / ROWS_PER_CHUNK
        stop = start + pairs_from_chunk.shape[1]
        z, rows = logit[: stop - start], slice(start, stop)
        np.take(pair_logit, chord.pair_of_row[rows], axis=0, out=z)
        if chord.style is not None:
            z += np.matmul(chord.style[rows], halved[m:], out=shift[: stop - start])
        r = _logistic_residual(z, *terms(rows))
        per_pair += pairs_from_chunk @ r
        if chord.style is not None:
            style_sum += chord.style[rows].T @ r
        start = stop
    grad = -(chord.models_from_pairs @ per_pair)
    # Every row adds +r to one model and -r to another, so these sum to zero exactly; in float32
    # they do not quite, and along the all-models shift the Hessian is only the ridge, which
    # would blow that rounding up a hundredfold. Centre them.
    grad -= grad.mean(axis=0)
    return np.vstack([grad, -style_sum]).astype(np.float64)


def _chord_block(
    design: Design, chord: _Chord, weights: NDArray[np.float64], m: int
) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Refit a block of rounds (weights: clusters x B) at once; returns (B, params), converged."""
    w = weights.astype(chord.dtype)
    if chord.cluster is None:  # rows that sum many prompts: a round's y and n by two products
        half = chord.n_of @ w  # rows x B
        half *= 0.5
        centred = chord.y_of @ w
        centred -= half

        def terms(rows: slice) -> tuple[_Floats, _Floats]:
            return centred[rows], half[rows]

    else:  # a row of one prompt: its y and n on the full data times that prompt's weight
        cluster = chord.cluster

        def terms(rows: slice) -> tuple[_Floats, _Floats]:
            weight = np.take(w, cluster[rows], axis=0)
            return weight * chord.centred_row[rows, None], weight * chord.half_row[rows, None]

    # The first chord step from theta_hat needs only each prompt's gradient share.
    first = RIDGE * chord.theta_hat[:, None] - chord.prompt_gradient.T @ weights
    theta = chord.theta_hat[:, None] - linalg.cho_solve(chord.factor, first)  # params x B
    converged = np.zeros(weights.shape[1], dtype=bool)
    for _ in range(MAX_CHORD):
        halved = (theta / 2).astype(chord.dtype)  # the logit over 2, for the tanh
        grad = _gradient(chord, halved, terms, m)
        step = linalg.cho_solve(chord.factor, grad + RIDGE * theta)
        theta -= step
        converged = np.max(np.abs(step), axis=0) < BOOTSTRAP_TOLERANCE
        if converged.all():
            break
    return theta.T, converged


def full_fit(design: Design, m: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """theta on all the data, and its Hessian there."""
    y, n = design.y_of.sum(axis=1), design.n_of.sum(axis=1)
    theta = newton_fit(
        model_a=design.model_a, model_b=design.model_b, y=y, n=n, m=m, style=design.style
    )
    inc = incidence(design.model_a, design.model_b, m)
    z = inc.T @ theta[:m]
    if design.style is not None:
        z += design.style @ theta[m:]
    p = expit(z)
    return theta, nll_hessian(inc, design.style, n * p * (1 - p))


def _prompt_counts(rng: np.random.Generator, clusters: int, rounds: int) -> NDArray[np.float64]:
    """(clusters, rounds): how often each prompt is drawn when `clusters` are drawn with
    replacement, per round (multinomial counts, by one bincount a round: much faster than
    Generator.multinomial over many categories, and a round's bins stay in cache)."""
    draws = rng.integers(0, clusters, size=(rounds, clusters))
    counts = np.empty((rounds, clusters))
    for row, drawn in enumerate(draws):  # bounded by ROUNDS_PER_BLOCK
        counts[row] = np.bincount(drawn, minlength=clusters)
    return np.ascontiguousarray(counts.T)  # a prompt's weights in a row, for the gathers


def _refit(design: Design, weights: NDArray[np.float64], m: int) -> NDArray[np.float64]:
    """One round refitted alone by the full Newton method (the plain reference)."""
    return newton_fit(
        model_a=design.model_a,
        model_b=design.model_b,
        y=design.y_of @ weights,
        n=design.n_of @ weights,
        m=m,
        style=design.style,
    )


def bootstrap_rounds(
    design: Design,
    theta_hat: NDArray[np.float64],
    hessian: NDArray[np.float64],
    *,
    m: int,
    clusters: int,
    rounds: int,
    seed: int,
    reference: bool = False,
) -> NDArray[np.float64]:
    """(rounds, params): refits on data whose prompts were drawn with replacement.

    `reference=True` refits every round alone with the full Newton method: the plain twin that
    the tests hold the chord iteration to (the same draws, so the same rounds).
    """
    chord = None if reference else _chord_setup(design, theta_hat, hessian, m)
    rng = np.random.default_rng(seed)
    out = [np.zeros((0, theta_hat.size))]
    # The draws stay in this thread and in order, so the rounds do not depend on the threads; at
    # most BOOTSTRAP_THREADS blocks (and their weights) are in flight.
    threads = 1 if reference else BOOTSTRAP_THREADS
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: deque[Future[NDArray[np.float64]]] = deque()
        for start in range(0, rounds, ROUNDS_PER_BLOCK):  # bounded by rounds / ROUNDS_PER_BLOCK
            weights = _prompt_counts(rng, clusters, min(ROUNDS_PER_BLOCK, rounds - start))
            pending.append(pool.submit(_block, design, chord, weights, theta_hat.size, m))
            if len(pending) >= threads:
                out.append(pending.popleft().result())
        out.extend(future.result() for future in pending)
    return np.vstack(out)


def _block(
    design: Design, chord: _Chord | None, weights: NDArray[np.float64], params: int, m: int
) -> NDArray[np.float64]:
    """One block of rounds: the chord iteration, then the exact refit of any round it left."""
    if chord is None:
        theta = np.zeros((weights.shape[1], params))
        converged = np.zeros(weights.shape[1], dtype=bool)
    else:
        theta, converged = _chord_block(design, chord, weights, m)
    for col in np.flatnonzero(~converged):
        theta[col] = _refit(design, weights[:, col], m)
    return theta
