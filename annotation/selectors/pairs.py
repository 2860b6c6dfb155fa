"""Reads for the data browser (annotation.views.pairs, annotation.apis.pairs): pairs with
filters and keyset pagination, and one pair with its judgments, label and adjudications.

Statuses: `open` (still collecting judgments), `complete` (it has the judgments it needs),
`disputed` (complete, its raters' choices are not unanimous, and no live adjudication settles
it: the "disputed pairs" queue), `flagged` (held by raters' flags and not yet settled: the lead
clears the flags or excludes the pair), `adjudicated` (a live adjudication), `gold` (a gold pair).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import Exists, F, OuterRef, Q, QuerySet
from django.db.models.functions import Substr

from annotation.exports.adjudicated import live_adjudication
from annotation.exports.aggregation import FULL_STRENGTH, Decision, Votes, decide
from annotation.models import (
    COMPLETE,
    MODEL_AGAINST,
    SPLIT,
    Adjudication,
    Flag,
    Judgment,
    Pair,
    Project,
)
from annotation.selectors.exports import rater_pseudonym
from annotation.selectors.pair_order import (
    MODEL_DISAGREEMENT,
    ModelView,
    Ordering,
    model_confident,
    model_view,
    ordered,
    with_votes,
)

Status = Literal["open", "complete", "disputed", "flagged", "adjudicated", "gold"]
STATUSES: tuple[Status, ...] = ("open", "complete", "disputed", "flagged", "adjudicated", "gold")
PAGE_SIZE = 50
SNIPPET_CHARS = 200  # the list shows the start of each text, never a whole response


def as_status(name: str) -> Status:
    if name not in STATUSES:
        raise ValueError(f"unknown status {name!r}; use one of {', '.join(STATUSES)}")
    return cast(Status, name)


@dataclass(frozen=True, kw_only=True)
class PairFilter:
    batch_id: int | None = None
    status: Status | None = None
    model: str = ""
    rater_id: int | None = None
    text: str = ""
    agreement_below: float | None = None  # pairs whose agreement (pair_order) is below this
    gold_failures: bool = False  # gold pairs with a judgment other than the gold answer
    disagrees_with_model: bool = False  # the model confidently picks the other side (pair_order)


def text_matches(pairs: QuerySet[Pair], text: str) -> QuerySet[Pair]:
    """Pairs whose prompt or responses contain `text`: PostgreSQL full-text search (English,
    web-search syntax), or a plain case-insensitive substring match on other databases."""
    if connection.vendor == "postgresql":
        vector = SearchVector(
            "prompt__text", "response_a__text", "response_b__text", config="english"
        )
        query = SearchQuery(text, config="english", search_type="websearch")
        return pairs.annotate(search=vector).filter(search=query)
    return pairs.filter(
        Q(prompt__text__icontains=text)
        | Q(response_a__text__icontains=text)
        | Q(response_b__text__icontains=text)
    )


_STATUS_FILTERS: dict[Status, Q] = {
    "open": Q(is_active=True, gold_choice="", seed_choice="", flagged_at__isnull=True) & ~COMPLETE,
    "complete": COMPLETE,
    "disputed": COMPLETE & Q(SPLIT, adjudicated__isnull=True),
    "flagged": Q(flagged_at__isnull=False, adjudicated__isnull=True),
    "adjudicated": Q(adjudicated__isnull=False),
    "gold": ~Q(gold_choice=""),
}


def pair_list(*, project: Project, filters: PairFilter) -> QuerySet[Pair]:
    """The project's pairs matching `filters`, in id order, each annotated with `split` (its
    judgments name more than one choice: annotation.models.SPLIT), `adjudicated` (the live
    decision or None), `votes_p_a` and `agreement` (annotation.selectors.pair_order) and snippets
    of its texts."""
    pairs: QuerySet[Pair] = (
        with_votes(Pair.objects.filter(project=project))
        .annotate(
            split=SPLIT,
            adjudicated=live_adjudication(),
            prompt_snippet=Substr("prompt__text", 1, SNIPPET_CHARS),
            model_a=F("response_a__model_name"),
            model_b=F("response_b__model_name"),
        )
        .order_by("id")
    )
    if filters.batch_id is not None:
        pairs = pairs.filter(batch_id=filters.batch_id)
    if filters.status is not None:
        pairs = pairs.filter(_STATUS_FILTERS[filters.status])
    if filters.model:
        pairs = pairs.filter(
            Q(response_a__model_name=filters.model) | Q(response_b__model_name=filters.model)
        )
    if filters.rater_id is not None:
        judged = Judgment.objects.filter(pair=OuterRef("pk"), rater_id=filters.rater_id)
        pairs = pairs.filter(Exists(judged))
    if filters.text:
        pairs = text_matches(pairs, filters.text)
    return _by_labels(pairs, filters)


def _by_labels(pairs: QuerySet[Pair], filters: PairFilter) -> QuerySet[Pair]:
    """The filters on what raters, the gold answer and the model say of a pair."""
    if filters.agreement_below is not None:
        pairs = pairs.filter(Q(agreement__lt=filters.agreement_below))  # with_votes's
    if filters.gold_failures:
        missed = Judgment.objects.filter(pair=OuterRef("pk")).exclude(
            choice=OuterRef("gold_choice")
        )
        pairs = pairs.exclude(gold_choice="").filter(Exists(missed))
    if filters.disagrees_with_model:
        pairs = (
            pairs.filter(model_confident())
            .alias(model_against=MODEL_AGAINST)
            .filter(model_against__gte=MODEL_DISAGREEMENT)
        )
    return pairs


@dataclass(frozen=True)
class PairPage:
    pairs: list[Pair]
    next_after: int | None  # the `after` of the next page; None on the last one


def pair_page(
    *,
    project: Project,
    filters: PairFilter,
    ordering: Ordering = "id",
    after: int | None = None,
    size: int = PAGE_SIZE,
) -> PairPage:
    """One page of `pair_list` in `ordering`, after the pair `after` (keyset, the id of the last
    pair of the previous page): one query at any depth."""
    pairs = ordered(pair_list(project=project, filters=filters), ordering=ordering, after=after)
    rows = list(pairs[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return PairPage(pairs=rows, next_after=rows[-1].id if more else None)


def pair_status(pair: Pair) -> Status:
    """The status of a pair from `pair_list` (its annotations), by the rules above."""
    if pair.gold_choice:
        return "gold"
    if getattr(pair, "adjudicated", None):
        return "adjudicated"
    if pair.flagged_at is not None:
        return "flagged"
    if pair.judgments_count < pair.judgments_needed:
        return "open"
    return "disputed" if getattr(pair, "split", False) else "complete"


def model_names(*, project: Project) -> list[str]:
    """Every model name the project's responses carry, for the model filter."""
    names = (
        Pair.objects.filter(project=project)
        .values_list("response_a__model_name", flat=True)
        .union(
            Pair.objects.filter(project=project).values_list("response_b__model_name", flat=True)
        )
    )
    return sorted(name for name in names if name)


@dataclass(frozen=True)
class JudgmentShown:
    judgment: Judgment
    rater_name: str
    pseudonym: str

    @property
    def left(self) -> str:
        return "B" if self.judgment.swapped else "A"


@dataclass(frozen=True)
class PairDetail:
    pair: Pair
    status: Status
    judgments: list[JudgmentShown]
    label: Decision | None  # the majority label of its judgments (ties counted against it)
    votes: Votes
    adjudications: list[Adjudication]  # newest first, undone ones included
    live: Adjudication | None
    flags: list[Flag]  # oldest first, cleared ones included
    uncleared_flags: int
    next_disputed: int | None  # the next pair of the disputed queue, after this one
    model: ModelView | None  # None until a published version scores the pair


def pair_detail(*, project: Project, pair_id: int) -> PairDetail | None:
    """One pair of `project` with everything the pair page shows; None when it is not there."""
    pair = (
        pair_list(project=project, filters=PairFilter())
        .annotate(model_against=MODEL_AGAINST)
        .select_related("prompt", "response_a", "response_b", "batch")
        .filter(id=pair_id)
        .first()
    )
    if pair is None:
        return None
    judgments = list(
        pair.judgments.select_related("rater", "assignment").order_by("created_at", "id")
    )
    counts: dict[str, int] = dict.fromkeys(Judgment.Choice.values, 0)
    strength = {"a": 0, "b": 0}
    for j in judgments:
        counts[j.choice] += 1
        if j.choice in strength:
            strength[j.choice] += j.strength or FULL_STRENGTH
    votes = Votes(
        a=counts["a"],
        b=counts["b"],
        tie=counts["tie"],
        both_bad=counts["both_bad"],
        strength_a=strength["a"],
        strength_b=strength["b"],
    )
    adjudications = list(pair.adjudications.select_related("decided_by", "undone_by"))
    flags = list(pair.flags.select_related("rater", "cleared_by"))
    return PairDetail(
        pair=pair,
        status=pair_status(pair),
        judgments=[
            JudgmentShown(j, j.rater.username, rater_pseudonym(j.rater_id)) for j in judgments
        ],
        label=decide(votes),
        votes=votes,
        adjudications=adjudications,
        live=next((a for a in adjudications if a.undone_at is None), None),
        flags=flags,
        uncleared_flags=sum(1 for f in flags if f.cleared_at is None),
        next_disputed=next_disputed(project=project, after=pair.id),
        model=model_view(pair),
    )


def next_disputed(*, project: Project, after: int) -> int | None:
    """The first disputed pair after id `after`, wrapping round to the start of the queue."""
    queue = pair_list(project=project, filters=PairFilter(status="disputed")).exclude(id=after)
    following = queue.filter(id__gt=after).values_list("id", flat=True).first()
    return following or queue.values_list("id", flat=True).first()
