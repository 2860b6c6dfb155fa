"""The rule that turns the judgments of one pair into one preference, or into none.

Votes: every judgment is one vote for `a`, `b`, `tie` or `both_bad`. Under the default tie policy
(`exclude`) every vote counts, so a pair that raters mostly called a tie or both bad is left out;
under `abstain`, tie and both-bad votes are set aside and the decisive votes alone decide.

Winner: the side with a strict majority (more than half) of the counted votes; a pair without
one (a split, a draw, a plurality of ties) is not exported.

Agreement: the winner's share of the counted votes, in (0.5, 1].

Margin: the strength-weighted net agreement, in [0, 1]. Each counted vote weighs its strength
divided by 3 ("slightly" 1/3, "clearly" 2/3, "much" 1), or 1 when the project does not ask for
strength; ties and both-bad weigh 0. The margin is (winner's weight - loser's weight) / counted
votes, floored at 0. Three raters who all say "much better" give 1; two of three "clearly" for
the winner and one "slightly" against give (4/3 - 1/3) / 3 = 1/3; without strength it is simply
(winner votes - loser votes) / counted votes. TRL's RewardTrainer subtracts it inside the loss
(-log sigmoid(r_chosen - r_rejected - margin)), so confident, unanimous pairs push harder.

p_chosen: the probability that the chosen response is better. Under this rule it is the winner's
share of the decisive votes (ties and both-bad left out): 2/3 for a 2-1 split, 1 when unanimous.
The `weighted` and `dawid_skene` rules (`labels.py`) estimate it from every rater's reliability
instead, and `decide_by_probability` turns their estimate into a decision with the same margin.

A known answer (a gold pair's or a seed label's) is one decisive vote without strength: agreement
1, margin 1, p_chosen 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

TiePolicy = Literal["exclude", "abstain"]
TIE_POLICIES: tuple[TiePolicy, ...] = ("exclude", "abstain")
FULL_STRENGTH = 3  # the top of the 1-3 strength scale; a vote without strength counts as this


@dataclass(frozen=True, kw_only=True)
class Votes:
    """One pair's counted judgments; strength sums count a missing strength as FULL_STRENGTH."""

    a: int = 0
    b: int = 0
    tie: int = 0
    both_bad: int = 0
    strength_a: int = 0
    strength_b: int = 0


@dataclass(frozen=True)
class Decision:
    winner: Literal["a", "b"]
    agreement: float  # the winner's share of the counted votes
    margin: float  # strength-weighted net agreement, 0 to 1
    p_chosen: float = 1.0  # the probability that the winner is the better response, 0.5 to 1


def decide(votes: Votes, *, ties: TiePolicy = "exclude") -> Decision | None:
    """The pair's preference under the majority rule above, or None when there is none."""
    counted = votes.a + votes.b
    if ties == "exclude":
        counted += votes.tie + votes.both_bad
    if votes.a == votes.b or counted == 0:
        return None
    winner: Literal["a", "b"] = "a" if votes.a > votes.b else "b"
    top = max(votes.a, votes.b)
    if 2 * top <= counted:
        return None
    share = round(top / (votes.a + votes.b), 6)
    return Decision(winner, round(top / counted, 6), _margin(votes, winner, counted), share)


def decide_by_probability(
    votes: Votes, p_a: float, *, ties: TiePolicy = "exclude"
) -> Decision | None:
    """The decision of a rule that estimated P(a better) = `p_a` (None at exactly one half):
    agreement and margin are counted from the votes as above, for the side the estimate picks,
    which may be the side fewer raters chose."""
    if p_a == 0.5:
        return None
    winner: Literal["a", "b"] = "a" if p_a > 0.5 else "b"
    counted = votes.a + votes.b
    if ties == "exclude":
        counted += votes.tie + votes.both_bad
    top = votes.a if winner == "a" else votes.b
    agreement = round(top / counted, 6) if counted else 0.0
    margin = _margin(votes, winner, counted) if counted else 0.0
    return Decision(winner, agreement, margin, round(max(p_a, 1.0 - p_a), 6))


def _margin(votes: Votes, winner: Literal["a", "b"], counted: int) -> float:
    weight_for, weight_against = (
        (votes.strength_a, votes.strength_b)
        if winner == "a"
        else (votes.strength_b, votes.strength_a)
    )
    return round(max(0.0, (weight_for - weight_against) / (FULL_STRENGTH * counted)), 6)


def decide_by_known_answer(choice: str) -> Decision | None:
    """The decision a known answer (a gold pair's or a seed label's) makes, certain and full
    margin; a known tie has no winner to export."""
    if choice == "a":
        return Decision("a", 1.0, 1.0)
    if choice == "b":
        return Decision("b", 1.0, 1.0)
    return None
