"""The bias lens: how often raters pick the longer, or the more formatted, of two responses.

Counted on decisive judgments (A or B) of pairs whose two responses differ by more than
`MIN_DIFFERENCE` in the measure (relative to the larger), per rater and for the project, with a
Wilson interval. A rater is flagged when at least `MIN_JUDGMENTS` judgments count, the rater's
rate is `FAR` or more from the project's, and the rater's interval excludes the project's rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from annotation.agreement.metrics import wilson_interval

MIN_DIFFERENCE = 0.10
FAR = 0.20
MIN_JUDGMENTS = 20


@dataclass(frozen=True, kw_only=True)
class Lean:
    chose_more: int  # judgments that picked the response with more of the measure
    judgments: int  # decisive judgments where the two responses differ enough
    rate: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True, kw_only=True)
class RaterLean:
    rater_id: int
    length: Lean
    markdown: Lean
    flagged: bool  # the length lean sits far from the project's


def _lean(chose_more: NDArray[np.bool_], counted: NDArray[np.bool_]) -> Lean:
    k, n = int((chose_more & counted).sum()), int(counted.sum())
    if n == 0:
        return Lean(chose_more=0, judgments=0, rate=None, low=None, high=None)
    low, high = wilson_interval(k, n)
    return Lean(chose_more=k, judgments=n, rate=k / n, low=float(low), high=float(high))


def differs_enough(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Where a and b differ by more than `MIN_DIFFERENCE` of the larger (the bias lens's rule,
    which the reward model's length statistics reuse)."""
    larger = np.maximum(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (larger > 0) & (np.abs(a - b) / larger > MIN_DIFFERENCE)


def _far(rater: Lean, project: Lean) -> bool:
    if project.rate is None or rater.rate is None or rater.low is None or rater.high is None:
        return False
    if rater.judgments < MIN_JUDGMENTS:
        return False
    outside = not (rater.low <= project.rate <= rater.high)
    return outside and abs(rater.rate - project.rate) >= FAR


def bias_leans(
    *,
    rater: NDArray[np.int64],
    chose_a: NDArray[np.bool_],
    length_a: NDArray[np.float64],
    length_b: NDArray[np.float64],
    markdown_a: NDArray[np.float64],
    markdown_b: NDArray[np.float64],
) -> tuple[Lean, Lean, list[RaterLean]]:
    """Project length lean, project Markdown lean, and each rater's, for decisive judgments."""
    long_counted = differs_enough(length_a, length_b)
    chose_longer = chose_a == (length_a > length_b)
    md_counted = differs_enough(markdown_a, markdown_b)
    chose_more_md = chose_a == (markdown_a > markdown_b)
    project_length = _lean(chose_longer, long_counted)
    project_markdown = _lean(chose_more_md, md_counted)
    leans = []
    for rater_id in np.unique(rater):
        mine = rater == rater_id
        length = _lean(chose_longer & mine, long_counted & mine)
        leans.append(
            RaterLean(
                rater_id=int(rater_id),
                length=length,
                markdown=_lean(chose_more_md & mine, md_counted & mine),
                flagged=_far(length, project_length),
            )
        )
    return project_length, project_markdown, leans
