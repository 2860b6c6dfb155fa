"""Dawid-Skene: each rater's confusion matrix and each item's true class, estimated together.

A. P. Dawid and A. M. Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using the EM
Algorithm", Journal of the Royal Statistical Society C 28(1), 1979, 20-28.

The model: item i has a hidden true class z_i in 0..K-1 with prior P(z = k) = prior[k]; rater r
who judges it answers label l in 0..L-1 with probability confusion[r, k, l], whatever the other
raters say. Labels 0..K-1 name the classes themselves; labels K..L-1 are answers that name no
class (for a pair: `tie` and `both_bad`, which still tell something about the pair and the rater).
EM alternates the posterior of each item's class given its votes (E-step) with the priors and
confusion matrices that best explain those posteriors (M-step), until the log-likelihood gains
less than `tol` per judgment or `max_iter` passes are done.

Known answers (gold pairs, seed labels) clamp their items' posteriors to the known class: they are
the truth that anchors which class is which, and they teach the confusion matrices of the raters
who judged them. Raters with few judgments are smoothed by a symmetric Dirichlet prior on each
confusion row (`smoothing` pseudo-judgments per cell, plus `diagonal` on the correct answer), the
MAP estimate, so that one judgment never makes a rater perfectly reliable or perfectly wrong.

Everything is vectorised with numpy: one pass is a handful of `np.bincount`s over the judgments,
linear in their number, with no Python loop over them (timings: docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from annotation.agreement.metrics import wilson_interval

UNKNOWN = -1  # `known[i]` for an item whose class is not known


@dataclass(frozen=True)
class DawidSkeneResult:
    posteriors: NDArray[np.float64]  # (items, K): P(true class | all the votes)
    priors: NDArray[np.float64]  # (K,): the share of items in each class
    confusion: NDArray[np.float64]  # (raters, K, L): P(label l | true class k) per rater
    judgments: NDArray[np.int64]  # (raters,): judgments per rater
    accuracy: NDArray[np.float64]  # (raters,): expected share of class-naming votes that are right
    accuracy_low: NDArray[np.float64]  # (raters,): Wilson 95% interval of `accuracy`
    accuracy_high: NDArray[np.float64]
    decisive: NDArray[np.float64]  # (raters,): votes that named a class (labels < K)
    iterations: int
    converged: bool
    log_likelihood: float  # of the votes (and the priors' pseudo-counts) at the estimate


def dawid_skene(
    items: NDArray[np.integer],
    raters: NDArray[np.integer],
    labels: NDArray[np.integer],
    *,
    n_items: int,
    n_raters: int,
    n_classes: int = 2,
    n_labels: int | None = None,
    known: NDArray[np.integer] | None = None,
    smoothing: float = 1.0,
    diagonal: float = 1.0,
    tol: float = 1e-7,
    max_iter: int = 200,
) -> DawidSkeneResult:
    """Fit Dawid-Skene to judgments given as three parallel integer arrays.

    `items[j]`, `raters[j]` and `labels[j]` are judgment j's item (0..n_items-1), rater
    (0..n_raters-1) and label (0..n_labels-1; labels below `n_classes` name a class). `known` holds
    each item's known class or UNKNOWN. `smoothing=0, diagonal=0` is the plain maximum-likelihood
    estimate (as crowd-kit computes it). EM starts from the vote shares, as crowd-kit does.
    """
    n_labels = n_classes if n_labels is None else n_labels
    items, raters, labels = (np.asarray(x, dtype=np.int64) for x in (items, raters, labels))
    _check(items, raters, labels, n_items, n_raters, n_classes, n_labels)
    clamp = _clamp(known, n_items, n_classes)
    posteriors = _initial_posteriors(items, labels, n_items, n_classes, clamp)
    previous = -math.inf
    converged = False
    iterations = 0
    log_likelihood = previous
    cell = raters * n_labels + labels  # each judgment's (rater, label) cell
    for iterations in range(1, max_iter + 1):  # noqa: B007 - read after the loop
        priors, log_confusion = _m_step(
            posteriors, items, cell, n_raters, n_classes, n_labels, smoothing, diagonal
        )
        posteriors, log_likelihood = _e_step(
            priors, log_confusion, items, raters, labels, n_items, clamp
        )
        if abs(log_likelihood - previous) <= tol * max(1, len(items)):
            converged = True
            break
        previous = log_likelihood
    priors, log_confusion = _m_step(
        posteriors, items, cell, n_raters, n_classes, n_labels, smoothing, diagonal
    )
    return _result(
        posteriors, priors, np.exp(log_confusion), items, raters, labels, n_classes,
        iterations=iterations, converged=converged, log_likelihood=log_likelihood,
    )  # fmt: skip


def _check(
    items: NDArray[np.int64],
    raters: NDArray[np.int64],
    labels: NDArray[np.int64],
    n_items: int,
    n_raters: int,
    n_classes: int,
    n_labels: int,
) -> None:
    if not (len(items) == len(raters) == len(labels)):
        raise ValueError("items, raters and labels must have the same length")
    if n_classes < 2 or n_labels < n_classes:
        raise ValueError("need at least two classes, and at least as many labels as classes")
    for name, values, bound in (
        ("items", items, n_items),
        ("raters", raters, n_raters),
        ("labels", labels, n_labels),
    ):
        if len(values) and (values.min() < 0 or values.max() >= bound):
            raise ValueError(f"{name} must lie in 0..{bound - 1}")


def _clamp(
    known: NDArray[np.integer] | None, n_items: int, n_classes: int
) -> tuple[NDArray[np.int64], NDArray[np.float64]] | None:
    """The known items and their one-hot posteriors, or None when nothing is known."""
    if known is None:
        return None
    known = np.asarray(known, dtype=np.int64)
    if known.shape != (n_items,):
        raise ValueError("known must hold one entry per item")
    where = np.flatnonzero(known != UNKNOWN)
    if len(where) and (known[where].min() < 0 or known[where].max() >= n_classes):
        raise ValueError(f"known classes must lie in 0..{n_classes - 1}, or be UNKNOWN")
    return where, np.eye(n_classes)[known[where]]


def vote_counts(
    items: NDArray[np.int64], labels: NDArray[np.int64], *, n_items: int, n_classes: int
) -> NDArray[np.float64]:
    """(n_items, n_classes): each item's votes per class; labels that name no class count for
    none. The one place votes are counted: the majority rule, the peer agreement of the weighted
    rule and Dawid-Skene's starting point all read it."""
    counts = np.zeros((n_items, n_classes))
    naming = labels < n_classes
    for k in range(n_classes):
        counts[:, k] = np.bincount(items[naming & (labels == k)], minlength=n_items)
    return counts


def vote_shares(
    items: NDArray[np.int64], labels: NDArray[np.int64], *, n_items: int, n_classes: int
) -> NDArray[np.float64]:
    """(n_items, n_classes): each item's share of class-naming votes per class; uniform where
    there are none."""
    counts = vote_counts(items, labels, n_items=n_items, n_classes=n_classes)
    total = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, total, out=np.full_like(counts, 1 / n_classes), where=total > 0)


def _initial_posteriors(
    items: NDArray[np.int64],
    labels: NDArray[np.int64],
    n_items: int,
    n_classes: int,
    clamp: tuple[NDArray[np.int64], NDArray[np.float64]] | None,
) -> NDArray[np.float64]:
    """The vote shares, with known items at their known class."""
    shares = vote_shares(items, labels, n_items=n_items, n_classes=n_classes)
    if clamp is not None:
        shares[clamp[0]] = clamp[1]
    return shares


def _m_step(
    posteriors: NDArray[np.float64],
    items: NDArray[np.int64],
    cell: NDArray[np.int64],
    n_raters: int,
    n_classes: int,
    n_labels: int,
    smoothing: float,
    diagonal: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The priors and log confusion matrices that maximise the expected log-posterior."""
    priors = posteriors.mean(axis=0) if len(posteriors) else np.full(n_classes, 1 / n_classes)
    counts = np.empty((n_raters, n_classes, n_labels))
    for k in range(n_classes):
        counts[:, k, :] = np.bincount(
            cell, weights=posteriors[items, k], minlength=n_raters * n_labels
        ).reshape(n_raters, n_labels)
    counts += smoothing
    counts[:, np.arange(n_classes), np.arange(n_classes)] += diagonal
    # A row with no evidence and no prior (smoothing 0) is uniform rather than 0/0; the tiny floor
    # keeps log() finite where a rater never gave a label, as crowd-kit's clip does.
    counts = np.maximum(counts, 1e-12)
    confusion = counts / counts.sum(axis=2, keepdims=True)
    return np.maximum(priors, 1e-12), np.log(confusion)


def _e_step(
    priors: NDArray[np.float64],
    log_confusion: NDArray[np.float64],
    items: NDArray[np.int64],
    raters: NDArray[np.int64],
    labels: NDArray[np.int64],
    n_items: int,
    clamp: tuple[NDArray[np.int64], NDArray[np.float64]] | None,
) -> tuple[NDArray[np.float64], float]:
    """Each item's class posterior, and the log-likelihood of all the votes."""
    n_classes = len(priors)
    log_joint = np.empty((n_items, n_classes))
    for k in range(n_classes):
        log_joint[:, k] = np.log(priors[k]) + np.bincount(
            items, weights=log_confusion[raters, k, labels], minlength=n_items
        )
    if clamp is not None:  # a known item's evidence is its known class alone
        log_joint[clamp[0]] = np.where(clamp[1] > 0, log_joint[clamp[0]], -np.inf)
    top = log_joint.max(axis=1, keepdims=True)
    scaled = np.exp(log_joint - top)
    total = scaled.sum(axis=1, keepdims=True)
    return scaled / total, float((top + np.log(total)).sum())


def _result(
    posteriors: NDArray[np.float64],
    priors: NDArray[np.float64],
    confusion: NDArray[np.float64],
    items: NDArray[np.int64],
    raters: NDArray[np.int64],
    labels: NDArray[np.int64],
    n_classes: int,
    *,
    iterations: int,
    converged: bool,
    log_likelihood: float,
) -> DawidSkeneResult:
    """Per-rater accuracy: the expected share of their class-naming votes that name the true
    class (ties and both-bad count neither way), with a Wilson interval on that many votes."""
    n_raters = confusion.shape[0]
    naming = labels < n_classes
    right = np.zeros(len(labels))
    right[naming] = posteriors[items[naming], labels[naming]]
    correct = np.bincount(raters, weights=right, minlength=n_raters)
    decisive = np.bincount(raters[naming], minlength=n_raters).astype(np.float64)
    accuracy = np.divide(correct, decisive, out=np.full(n_raters, np.nan), where=decisive > 0)
    low, high = wilson_interval(correct, decisive)
    return DawidSkeneResult(
        posteriors=posteriors,
        priors=priors,
        confusion=confusion,
        judgments=np.bincount(raters, minlength=n_raters),
        accuracy=accuracy,
        accuracy_low=low,
        accuracy_high=high,
        decisive=decisive,
        iterations=iterations,
        converged=converged,
        log_likelihood=log_likelihood,
    )
