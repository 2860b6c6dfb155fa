"""The leaderboard in plain words: who leads, which orders are settled, what style is worth."""

from __future__ import annotations

from itertools import pairwise

from annotation.leaderboard.fit import Leaderboard, ModelRating

MAX_OPEN_ORDERS = 5  # unsettled neighbours named one by one; beyond that they are counted

STYLE_WORDS = {
    "length": ("twice as long", "longer"),
    "headers": ("with twice as many headers", "more headers"),
    "list_items": ("with twice as many list items", "more list items"),
    "bold": ("with twice as much bold text", "more bold text"),
}


def _overlap(first: ModelRating, second: ModelRating) -> bool:
    return first.ci_low <= second.ci_high and second.ci_low <= first.ci_high


def _percent(share: float) -> str:
    return f"{100 * share:.0f}%"


def leaderboard_reading(board: Leaderboard) -> list[str]:
    """A few sentences a lead can repeat in a meeting."""
    ratings = board.ratings
    top, second = ratings[0], ratings[1]
    lines = [
        f"{top.model} leads with {top.rating:.0f} points "
        f"(95% interval {top.ci_low:.0f} to {top.ci_high:.0f}) over {board.battles} battles "
        f"on {board.clusters} prompts.",
        f"The fit has {top.model} beat {second.model} in "
        f"{_percent(float(board.win_probability[0, 1]))} of head-to-heads, "
        f"and {ratings[-1].model} in {_percent(float(board.win_probability[0, -1]))}.",
    ]
    unsettled = [(first, after) for first, after in pairwise(ratings) if _overlap(first, after)]
    for first, after in unsettled[:MAX_OPEN_ORDERS]:
        lines.append(
            f"The intervals of {first.model} and {after.model} overlap, so their order is not "
            "settled."
        )
    if len(unsettled) > MAX_OPEN_ORDERS:
        lines.append(f"{len(unsettled) - MAX_OPEN_ORDERS} more neighbouring orders are open.")
    if not unsettled:
        lines.append("No two neighbours' intervals overlap: the whole order is settled.")
    lines += style_reading(board)
    return lines


def style_reading(board: Leaderboard) -> list[str]:
    lines = []
    for effect in board.style:
        twice, more = STYLE_WORDS[effect.name]
        share = _percent(effect.twice_as_much_wins)
        if effect.ci_low > 0 or effect.ci_high < 0:
            lean = "favour" if effect.coefficient > 0 else "penalise"
            lines.append(
                f"Raters {lean} {more}: all else equal, a response {twice} as the other wins "
                f"{share} of the time against an equally rated model, instead of 50%."
            )
        else:
            lines.append(
                f"No clear effect of {more} (a response {twice} wins {share}; the 95% interval "
                "includes no effect)."
            )
    return lines
