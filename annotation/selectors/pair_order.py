"""What the data browser (annotation.selectors.pairs) filters and sorts pairs by beyond their own
columns, its orderings with keyset pagination, and the model's view shown on a pair's page.

Definitions, stated once here and read by the list, the pair page and the API:

- `votes_p_a`: the share of a pair's decisive judgments (`a` or `b`, in the pair's terms) that
  name `a`: the `majority` rule's P(a better) of annotation.exports.labels, in SQL. NULL when the
  pair has no decisive judgment; ties and both-bad are left out.
- **agreement**: the share of decisive judgments that agree with the pair's majority,
  max(votes_p_a, 1 - votes_p_a), in [0.5, 1]; under the majority rule it is the label's
  `p_chosen`. A 1-1 split is 0.5. NULL without decisive judgments.
- **model confidence**: how sure the published model is of either side,
  max(model_p_a, 1 - model_p_a); NULL for a pair no version has scored.
- **model disagreement**: the model's probability for the side the raters' majority did *not*
  choose (1 - model_p_a when the majority says `a`, model_p_a when it says `b`); NULL without a
  majority or a score. A pair "disagrees with the model" when it is at least
  MODEL_DISAGREEMENT, i.e. the model confidently picks the other side.

All of them are row expressions over the pair's own columns: its judgments counted by choice
(Pair.votes_a, votes_b...: see annotation.models.vote_field), kept by the rating engine, and its
model scores. annotation.models states each key once (AGREEMENT, BY_AGREEMENT, MODEL_AGAINST,
BY_MODEL_AGAINST, MODEL_CONFIDENCE) for the orderings here and for the index each ordering walks;
"most flags" walks (project, flags_count, id).

Orderings are total: each sorts by its key and then by id in the key's direction, and a key that
is NULL for a pair sorts it last (its key is coalesced to a sentinel beyond every real value). A
page after pair `after` continues strictly after the row (key of `after`, `after`), the key read
from the database in the page's own query, so every page is one query whatever its depth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

from django.db.models import (
    BooleanField,
    Expression,
    F,
    FloatField,
    Func,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Cast, NullIf

from annotation.models import (
    AGREEMENT,
    BY_AGREEMENT,
    BY_MODEL_AGAINST,
    MODEL_CONFIDENCE,
    Pair,
)

# The model gives the side the raters did not choose at least this probability: 4 to 1 odds
# against the raters, well past the ensemble's usual disagreement (~0.05-0.15).
MODEL_DISAGREEMENT = 0.8

Ordering = Literal[
    "id",
    "newest",
    "most_judgments",
    "lowest_agreement",
    "most_flags",
    "model_confidence",
    "model_disagreement",
]
ORDERINGS: dict[Ordering, str] = {
    "id": "Oldest first (pair id)",
    "newest": "Newest first",
    "most_judgments": "Most judgments",
    "lowest_agreement": "Lowest agreement",
    "most_flags": "Most flags",
    "model_confidence": "Model most confident",
    "model_disagreement": "Model disagrees most",
}


def as_ordering(name: str) -> Ordering:
    if name not in ORDERINGS:
        raise ValueError(f"unknown ordering {name!r}; use one of {', '.join(ORDERINGS)}")
    return cast(Ordering, name)


def with_votes(pairs: QuerySet[Pair]) -> QuerySet[Pair]:
    """`pairs` annotated with `votes_p_a` and `agreement` (see the module docstring), read from
    the vote counts on each pair's row."""
    decisive = F("votes_a") + F("votes_b")
    share = Cast(F("votes_a"), FloatField()) / NullIf(decisive, Value(0))
    return pairs.annotate(votes_p_a=share, agreement=AGREEMENT)


def model_confident() -> Q:
    """The model gives one side at least MODEL_DISAGREEMENT: implied by a disagreement that
    large, and read from the pair's own row, so a filter checks it before any vote."""
    return Q(model_p_a__lte=1 - MODEL_DISAGREEMENT) | Q(model_p_a__gte=MODEL_DISAGREEMENT)


@dataclass(frozen=True)
class _Sort:
    key: Callable[[], Expression | F] | None  # None: by id alone
    descending: bool


# Each key is one expression of annotation.models, read by the ordering and its index alike.
_SORTS: dict[Ordering, _Sort] = {
    "id": _Sort(None, descending=False),
    "newest": _Sort(None, descending=True),
    "most_judgments": _Sort(lambda: F("judgments_count"), descending=True),
    "lowest_agreement": _Sort(lambda: BY_AGREEMENT, descending=False),
    "most_flags": _Sort(lambda: F("flags_count"), descending=True),
    "model_confidence": _Sort(lambda: MODEL_CONFIDENCE, descending=True),
    "model_disagreement": _Sort(lambda: BY_MODEL_AGAINST, descending=True),
}


class _Row(Func):
    """A row value `(a, b)`: compared as a whole, which an index on (a, b) can answer."""

    function = ""


def ordered(pairs: QuerySet[Pair], *, ordering: Ordering, after: int | None) -> QuerySet[Pair]:
    """`pairs` (annotated by `with_votes`) in `ordering`, strictly after the pair `after`."""
    sort = _SORTS[ordering]
    sign = "-" if sort.descending else ""
    if sort.key is None:
        if after is not None:
            pairs = pairs.filter(id__lt=after) if sort.descending else pairs.filter(id__gt=after)
        return pairs.order_by(f"{sign}id")
    pairs = pairs.annotate(sort_key=sort.key())
    if after is not None:
        of_after = Pair.objects.filter(id=after).annotate(sort_key=sort.key())
        start = Subquery(of_after.values("sort_key")[:1])
        beyond = Func(
            _Row(F("sort_key"), F("id")),
            _Row(start, Value(after)),
            template="%(expressions)s",
            arg_joiner=" < " if sort.descending else " > ",
            output_field=BooleanField(),
        )
        pairs = pairs.filter(beyond)
    return pairs.order_by(f"{sign}sort_key", f"{sign}id")


@dataclass(frozen=True)
class ModelView:
    """What the scoring model said of a pair (Pair.model_p_a and its neighbours)."""

    version: int | None
    p_a: float  # its probability that A is the better response
    uncertainty: float | None  # its ensemble's disagreement about that
    majority: Literal["a", "b"] | None  # the side most of the raters' decisive judgments chose
    against: float | None  # the model's probability for the side the majority did not choose

    @property
    def disagrees(self) -> bool:
        return self.against is not None and self.against >= MODEL_DISAGREEMENT

    @property
    def minority(self) -> str:
        return "b" if self.majority == "a" else "a"


def model_view(pair: Pair) -> ModelView | None:
    """The model's view of a pair from `pair_list` (with `model_against` annotated), if scored."""
    if pair.model_p_a is None:
        return None
    share = getattr(pair, "votes_p_a", None)
    majority: Literal["a", "b"] | None = None
    if share is not None and share != 0.5:
        majority = "a" if share > 0.5 else "b"
    return ModelView(
        version=pair.model_version,
        p_a=pair.model_p_a,
        uncertainty=pair.model_uncertainty,
        majority=majority,
        against=getattr(pair, "model_against", None),
    )
