"""Reads for labels: a set of judgments as arrays, aggregated into P(a better) per pair.

The estimate is over every judgment handed in (all pairs, gold included, since gold answers
anchor the raters' confusion matrices); callers then pick the pairs they export or train on.
Memory: the judgments are read in one pass into integer arrays and fitted there; a million
judgments peak at about 80 MB (numpy), freed when the estimate is.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import Case, IntegerField, QuerySet, Value, When
from numpy.typing import NDArray

from annotation.exports.dawid_skene import UNKNOWN, DawidSkeneResult
from annotation.exports.labels import BOTH_BAD, TIE, A, Aggregation, B, PairLabels, pair_labels
from annotation.models import Judgment, Pair

_CHOICE_CODES = {"a": A, "b": B, "tie": TIE, "both_bad": BOTH_BAD}
_KNOWN_CODES = {"a": A, "b": B}


@dataclass(frozen=True, eq=False)
class LabelEstimate:
    aggregation: Aggregation
    pair_ids: NDArray[np.int64]  # sorted; index i is dense pair i
    p_a: NDArray[np.float64]  # P(a better) per dense pair
    rater_ids: NDArray[np.int64]  # sorted; index i is dense rater i
    labels: PairLabels  # fits the raters' reliability when first asked (see `reliability`)

    @property
    def reliability(self) -> DawidSkeneResult:
        """Per dense rater, by Dawid-Skene whatever the rule; fitted on first use, once."""
        return self.labels.reliability

    def p_a_for(self, pair_id: int) -> float | None:
        """P(a better) of a pair, None for a pair without a judgment here. A binary search in
        the sorted ids: a dict of every pair would cost more memory than the arrays."""
        index = int(np.searchsorted(self.pair_ids, pair_id))
        if index == len(self.pair_ids) or self.pair_ids[index] != pair_id:
            return None
        return float(self.p_a[index])

    def accuracy_of(self) -> dict[int, float | None]:
        """Each rater's estimated accuracy by user id (None without a decisive vote)."""
        accuracy = self.reliability.accuracy
        return {
            rater_id: None if np.isnan(value) else round(float(value), 4)
            for rater_id, value in zip(self.rater_ids.tolist(), accuracy, strict=True)
        }


def label_estimate(*, judgments: QuerySet[Judgment], aggregation: Aggregation) -> LabelEstimate:
    """Aggregate `judgments` (any filter) by `aggregation`; gold answers and seed labels of their
    pairs enter as known truth."""
    code = Case(
        *(When(choice=name, then=Value(value)) for name, value in _CHOICE_CODES.items()),
        output_field=IntegerField(),
    )
    rows = judgments.order_by().values_list("pair_id", "rater_id", code)
    flat = np.fromiter(
        (value for row in rows.iterator(chunk_size=20_000) for value in row), dtype=np.int64
    ).reshape(-1, 3)
    pair_ids, pair = np.unique(flat[:, 0], return_inverse=True)
    rater_ids, rater = np.unique(flat[:, 1], return_inverse=True)
    known = np.full(len(pair_ids), UNKNOWN, dtype=np.int64)
    answers = (
        Pair.objects.filter(id__in=_known_pair_ids(judgments))
        .values_list("id", "seed_choice", "gold_choice")
        .iterator(chunk_size=20_000)
    )
    for pair_id, seed, gold in answers:
        answer = _KNOWN_CODES.get(seed or gold)
        if answer is not None:
            known[np.searchsorted(pair_ids, pair_id)] = answer
    labelled = pair_labels(
        pair.ravel(), rater.ravel(), flat[:, 2], known,
        aggregation=aggregation, n_raters=len(rater_ids),
    )  # fmt: skip
    return LabelEstimate(
        aggregation=aggregation,
        pair_ids=pair_ids,
        p_a=labelled.p_a,
        rater_ids=rater_ids,
        labels=labelled,
    )


def _known_pair_ids(judgments: QuerySet[Judgment]) -> QuerySet[Judgment, int]:
    """Ids of the judged pairs that carry a gold answer or a seed label."""
    return (
        judgments.exclude(pair__gold_choice="", pair__seed_choice="")
        .order_by()
        .values_list("pair_id", flat=True)
        .distinct()
    )
