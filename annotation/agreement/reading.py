"""Plain-language readings of agreement coefficients, for leads who are not statisticians.

Bands are conventions, not laws: Landis & Koch (1977) for kappa, Krippendorff (2004) for alpha.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Landis & Koch's bands for kappa, as (lower bound, name); below 0 is "poor".
KAPPA_BANDS = (
    (0.81, "almost perfect"),
    (0.61, "substantial"),
    (0.41, "moderate"),
    (0.21, "fair"),
    (0.0, "slight"),
)


def kappa_band(value: float | None) -> str:
    """Landis & Koch's name for a kappa value."""
    if value is None:
        return "not defined"
    for lower, name in KAPPA_BANDS:
        if value >= lower:
            return name
    return "poor (worse than chance)"


@dataclass(frozen=True)
class Reading:
    level: str  # good, fair or poor: the CSS class of the sentence
    text: str


def _alpha_reading(alpha: float) -> Reading:
    if alpha >= 0.8:
        return Reading(
            "good",
            f"Krippendorff's alpha is {alpha:.2f}: at or above 0.80, the level Krippendorff "
            "calls reliable. The labels are consistent enough to train on as they are.",
        )
    if alpha >= 0.667:
        return Reading(
            "good",
            f"Krippendorff's alpha is {alpha:.2f}: between 0.667 and 0.80, reliable enough for "
            "tentative conclusions. Good for reward-model training, which learns from the "
            "majority of several judgments per pair.",
        )
    if alpha >= 0.2:
        return Reading(
            "fair",
            f"Krippendorff's alpha is {alpha:.2f}: below 0.667, so single judgments are noisy. "
            "That is common for human preferences on close pairs (published datasets report "
            "63 to 77% raw agreement between annotators). Train on the majority of 3 or more "
            "judgments per pair, use adaptive overlap for disputed pairs, and watch gold accuracy.",
        )
    return Reading(
        "poor",
        f"Krippendorff's alpha is {alpha:.2f}: raters agree little more than chance. Before "
        "training, check the guidelines, the gold accuracy of each rater and the flagged raters: "
        "a reward model cannot learn a preference that its labels do not share.",
    )


def headline_reading(coefficients: dict[str, Any]) -> list[Reading]:
    """Sentences on the headline numbers of a report's ``coefficients`` section."""
    readings = []
    percent = coefficients["percent_agreement"]["value"]
    kappa = coefficients["fleiss_kappa"]["value"]
    alpha = coefficients["krippendorff_alpha_nominal"]["value"]
    interval = coefficients["krippendorff_alpha_interval"]["value"]
    if percent is None:
        return [Reading("fair", "No pair has two judgments yet, so there is nothing to compare.")]
    readings.append(
        Reading(
            "fair",
            f"Two raters of the same pair give the same answer {percent:.0%} of the time. "
            f"Beyond what chance would give, that is {kappa_band(kappa)} agreement "
            f"(Fleiss' kappa {kappa:.2f}, Landis & Koch's bands)."
            if kappa is not None
            else f"Two raters of the same pair give the same answer {percent:.0%} of the time.",
        )
    )
    if alpha is not None:
        readings.append(_alpha_reading(alpha))
    if interval is not None and alpha is not None:
        closer = "more" if interval > alpha else "less"
        readings.append(
            Reading(
                "fair",
                f"On the strength scale (-3 to +3, tie 0) alpha is {interval:.2f}: raters agree "
                f"{closer} on how much better one response is than on the choice alone.",
            )
        )
    left = coefficients["left_rate"]
    if left["value"] is not None and left["low"] is not None:
        if left["low"] > 0.5 or left["high"] < 0.5:
            side = "left" if left["low"] > 0.5 else "right"
            readings.append(
                Reading(
                    "poor",
                    f"Raters pick the {side} response more often than chance "
                    f"({left['value']:.1%} left, 95% interval {left['low']:.1%} to "
                    f"{left['high']:.1%}): a position bias. Sides are shuffled, so labels stay "
                    "unbiased, but the raters with the strongest lean are worth a look.",
                )
            )
        else:
            readings.append(
                Reading("good", "No sign of position bias: left and right are picked about evenly.")
            )
    return readings
