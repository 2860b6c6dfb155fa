"""Each rater's reliability for the agreement report, by Dawid-Skene over the report's judgments.

Gold answers enter as known truth. A rater row gains `reliability` (estimated accuracy on decisive
votes with its 95% interval, the spammer score, and the 2 x 4 confusion matrix: rows the better
side a or b, columns the answer a, b, tie, both_bad, each row summing to 1) and the booleans
`spammer` and `inverted` (annotation.exports.labels.reliability_flags), which the report's rater
flags, and so the project's pausing policy, take up.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from annotation.agreement.metrics import JudgmentArrays
from annotation.exports.dawid_skene import UNKNOWN
from annotation.exports.labels import A, B, pair_labels, reliability_flags, spammer_score


def _number(value: float, digits: int = 4) -> float | None:
    return None if math.isnan(value) else round(float(value), digits)


def attach_reliability(raters: list[dict[str, Any]], arrays: JudgmentArrays) -> None:
    """Add `reliability`, `spammer` and `inverted` to each rater row (row i is dense rater i)."""
    if not len(arrays):
        return
    known = np.full(arrays.n_pairs, UNKNOWN, dtype=np.int64)
    gold = (arrays.gold == A) | (arrays.gold == B)
    known[arrays.pair[gold]] = arrays.gold[gold]
    fitted = pair_labels(
        arrays.pair, arrays.rater, arrays.choice, known,
        aggregation="dawid_skene", n_raters=arrays.n_raters,
    ).reliability  # fmt: skip
    spammer, inverted = reliability_flags(fitted)
    score = spammer_score(fitted.confusion)
    for row in raters:
        index = row["rater"]
        row["reliability"] = {
            "accuracy": _number(fitted.accuracy[index]),
            "accuracy_low": _number(fitted.accuracy_low[index]),
            "accuracy_high": _number(fitted.accuracy_high[index]),
            "decisive": int(fitted.decisive[index]),
            "spammer_score": _number(score[index]),
            "confusion": [[round(float(p), 4) for p in truth] for truth in fitted.confusion[index]],
        }
        row["spammer"] = bool(spammer[index])
        row["inverted"] = bool(inverted[index])
