"""How a lead's adjudication (annotation.models.Adjudication) overrides aggregation: one rule,
shared by exports (annotation.selectors.exports) and training (rewardtrain.selectors).

The live adjudication of a pair (the one not undone) wins over its raters' votes: `a` or `b`
becomes the label with full agreement, margin and p_chosen; `tie`, `both_bad` and `exclude` leave
the pair out of preference data (a tie stays in training only as a tie pair when the run keeps
ties). Adjudications are never votes: agreement metrics read judgments only.
"""

from __future__ import annotations

from django.db.models import OuterRef, Subquery

from annotation.exports.aggregation import Decision, decide_by_known_answer
from annotation.models import Adjudication

DECIDED_BY_AGGREGATION = "aggregation"
DECIDED_BY_ADJUDICATION = "adjudicated"


def live_adjudication(pair_ref: str = "pk") -> Subquery:
    """The decision of the live adjudication of the pair at `OuterRef(pair_ref)`, or NULL."""
    live = Adjudication.objects.filter(pair=OuterRef(pair_ref), undone_at__isnull=True)
    return Subquery(live.values("decision")[:1])


def adjudicated_decision(decision: str) -> Decision | None:
    """The label an adjudication gives a pair; None when the pair leaves preference data."""
    return decide_by_known_answer(decision)
