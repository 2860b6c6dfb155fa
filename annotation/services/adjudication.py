"""A lead settles a pair: `pair_adjudicate` records a decision, `adjudication_undo` takes it back.

Concurrency: both take the pair's row lock (FOR NO KEY UPDATE, as the rating engine does) before
reading the pair's live adjudication, so two leads deciding one pair at once are serialised: the
first decision wins and the second is refused with `AlreadyAdjudicated`, naming who decided. The
partial unique constraint `one_live_adjudication_per_pair` backs this on databases without row
locks (SQLite serialises writers anyway).
"""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone

from annotation.models import Adjudication, Pair, Project

NOTE_MAX_CHARS = 2000


class AdjudicationError(Exception):
    """A decision that cannot be recorded or undone; the message says why."""


class AlreadyAdjudicated(AdjudicationError):
    pass


class NotAdjudicated(AdjudicationError):
    pass


def _locked_pair(project: Project, pair_id: int) -> Pair:
    pair = Pair.objects.select_for_update(no_key=True).filter(project=project, pk=pair_id).first()
    if pair is None:
        raise Pair.DoesNotExist(f"No pair {pair_id} in this project.")
    return pair


def pair_adjudicate(
    *, project: Project, pair_id: int, decided_by: User, decision: str, note: str = ""
) -> Adjudication:
    """Record `decided_by`'s decision on the pair; refused when a live one exists."""
    if decision not in Adjudication.Decision.values:
        allowed = ", ".join(Adjudication.Decision.values)
        raise AdjudicationError(f"decision: {decision!r} is not one of {allowed}.")
    if len(note) > NOTE_MAX_CHARS:
        raise AdjudicationError(f"note: at most {NOTE_MAX_CHARS} characters, got {len(note)}.")
    with transaction.atomic():
        pair = _locked_pair(project, pair_id)
        live = pair.adjudications.filter(undone_at__isnull=True).select_related("decided_by")
        current = live.first()
        if current is not None:
            raise AlreadyAdjudicated(
                f"Pair {pair_id} was already decided ({current.decision}) by "
                f"{current.decided_by.username}; undo that decision first."
            )
        try:
            with transaction.atomic():
                return Adjudication.objects.create(
                    pair=pair, decided_by=decided_by, decision=decision, note=note
                )
        except IntegrityError as error:
            raise AlreadyAdjudicated(
                f"Pair {pair_id} was decided by another lead at the same moment."
            ) from error


def adjudication_undo(*, project: Project, pair_id: int, undone_by: User) -> Adjudication:
    """Take back the pair's live decision (kept as history); its votes decide it again."""
    with transaction.atomic():
        pair = _locked_pair(project, pair_id)
        current = pair.adjudications.filter(undone_at__isnull=True).first()
        if current is None:
            raise NotAdjudicated(f"Pair {pair_id} has no decision to undo.")
        current.undone_at = timezone.now()
        current.undone_by = undone_by
        current.save(update_fields=["undone_at", "undone_by"])
        return current
