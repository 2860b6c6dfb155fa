"""The assignment engine: who judges which pair, and recording what they said.

Invariants (the database backs the last two with constraints):
- a pair never has more live leases plus judgments than it needs;
- a rater is never handed the same pair twice (one assignment per pair and rater, ever);
- one judgment per pair and rater.

Concurrency: every change to a pair's count of leases or judgments happens while holding that
pair's row lock (`SELECT ... FOR UPDATE`). Raters competing for work lock candidate pairs with
SKIP LOCKED, so they never queue behind each other, and recount the live leases *after* taking the
lock: under READ COMMITTED a fresh statement sees every lease committed before the lock was
granted, whereas the candidate query's own snapshot may predate them.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Assignment, Judgment, Pair, Project

UNDO_WINDOW = timedelta(minutes=2)
_CANDIDATES = 5  # pairs locked per attempt; more only waste locks others could use
_ATTEMPTS = 20  # rounds before concluding that nothing is left while others hold the locks

SHOWN_CHOICES = ("left", "right", "tie", "both_bad")


class RatingError(Exception):
    """A submission that cannot be recorded; the message is shown to the rater."""


class LeaseNotHeld(RatingError):
    """The assignment does not exist or belongs to someone else (shown as 404)."""


class IdempotencyConflict(RatingError):
    """The Idempotency-Key was used before with a different request."""


def _live(now: Any) -> Q:
    return Q(status=Assignment.Status.ACTIVE, expires_at__gt=now)


def _open_pairs(*, project: Project, rater: User, now: Any) -> QuerySet[Pair]:
    """Pairs with room for one more rater that this rater has never been handed."""
    live = (
        Assignment.objects.filter(_live(now), pair=OuterRef("pk"))
        .order_by()
        .values("pair")
        .annotate(n=Count("id"))
        .values("n")
    )
    seen = Assignment.objects.filter(pair=OuterRef("pk"), rater=rater)
    return (
        Pair.objects.filter(project=project, is_active=True)
        .annotate(live=Coalesce(Subquery(live, output_field=IntegerField()), 0))
        .filter(judgments_count__lt=F("judgments_needed") - F("live"))
        .filter(~Exists(seen))
    )


def assignment_current(*, project: Project, rater: User) -> Assignment | None:
    """The live lease the rater already holds in this project, if any (page reloads keep it)."""
    return (
        Assignment.objects.filter(_live(timezone.now()), pair__project=project, rater=rater)
        .select_related("pair__prompt", "pair__response_a", "pair__response_b")
        .order_by("created_at")
        .first()
    )


def assignment_next(*, project: Project, rater: User) -> Assignment | None:
    """The rater's current lease, or a new lease on the best open pair, or None if none is left."""
    current = assignment_current(project=project, rater=rater)
    if current is not None:
        return current
    if project.gold_rate > 0 and secrets.randbelow(10_000) < project.gold_rate * 10_000:
        gold = _lease_gold(project=project, rater=rater)
        if gold is not None:
            return gold
    for _ in range(_ATTEMPTS):
        now = timezone.now()
        with transaction.atomic():
            candidates = _open_pairs(project=project, rater=rater, now=now)
            if project.assignment_order == Project.AssignmentOrder.RANDOM:
                candidates = candidates.order_by("?")
            else:
                # Partly judged pairs first, so that complete, agreement-ready pairs accumulate.
                candidates = candidates.order_by("-judgments_count", "id")
            locked = list(
                candidates.select_for_update(skip_locked=True, of=("self",))[:_CANDIDATES]
            )
            for pair in locked:
                live = pair.assignments.filter(_live(now)).count()  # fresh, after the lock
                if pair.judgments_count + live < pair.judgments_needed:
                    return _lease(pair=pair, rater=rater, now=now)
        if not locked and not _open_pairs(project=project, rater=rater, now=now).exists():
            return None
        time.sleep(0.005)  # every open pair is locked by someone leasing it right now
    return None


def _lease(*, pair: Pair, rater: User, now: Any) -> Assignment:
    assignment = Assignment.objects.create(
        pair=pair,
        rater=rater,
        swapped=secrets.randbelow(2) == 1,
        created_at=now,
        expires_at=now + pair.project.lease_duration,
    )
    return Assignment.objects.select_related(
        "pair__prompt", "pair__response_a", "pair__response_b"
    ).get(id=assignment.id)


def _lease_gold(*, project: Project, rater: User) -> Assignment | None:
    """An unannounced gold pair this rater has not seen. Gold pairs have no quota: every rater
    may be scored on each of them."""
    seen = Assignment.objects.filter(pair=OuterRef("pk"), rater=rater)
    pair = (
        Pair.objects.filter(project=project, is_active=True)
        .exclude(gold_choice="")
        .filter(~Exists(seen))
        .order_by("?")
        .first()
    )
    if pair is None:
        return None
    try:
        with transaction.atomic():
            return _lease(pair=pair, rater=rater, now=timezone.now())
    except IntegrityError:
        return None  # the same rater leased it in another tab a moment ago


def assignment_skip(*, rater: User, assignment_id: int) -> None:
    """Give the pair back to the pool; this rater will not be handed it again."""
    updated = Assignment.objects.filter(
        id=assignment_id, rater=rater, status=Assignment.Status.ACTIVE
    ).update(status=Assignment.Status.SKIPPED)
    if not updated:
        raise LeaseNotHeld("This pair is not leased to you.")


@dataclass(frozen=True, kw_only=True)
class Submission:
    """A judgment as the rater gave it, in terms of the screen (left/right)."""

    choice: str  # left, right, tie or both_bad
    strength: int | None = None
    criteria: dict[str, str] | None = None  # criterion -> left/right/tie/both_bad
    rationale: str = ""
    active_ms: int | None = None  # time the page was visible and in focus, from the browser

    def fingerprint(self, assignment_id: int) -> str:
        body = json.dumps([assignment_id, self.__dict__], sort_keys=True, default=str)
        return hashlib.sha256(body.encode()).hexdigest()


def _validate(project: Project, submission: Submission) -> None:
    allowed = {
        Project.ChoiceScheme.AB: ("left", "right"),
        Project.ChoiceScheme.AB_TIE: ("left", "right", "tie"),
        Project.ChoiceScheme.AB_TIE_BAD: SHOWN_CHOICES,
    }[Project.ChoiceScheme(project.choice_scheme)]
    if submission.choice not in allowed:
        raise RatingError(f"Choose one of: {', '.join(allowed)}.")
    decisive = submission.choice in ("left", "right")
    if submission.strength is not None:
        if not project.use_strength:
            raise RatingError("This project does not ask for a strength.")
        if not decisive:
            raise RatingError("A strength goes with left or right, not with a tie or both bad.")
        if submission.strength not in (1, 2, 3):
            raise RatingError("Strength is 1 (slightly), 2 (clearly) or 3 (much better).")
    criteria = submission.criteria or {}
    unknown = set(criteria) - set(project.criteria)
    if unknown:
        raise RatingError(f"Unknown criteria: {', '.join(sorted(unknown))}.")
    for name, value in criteria.items():
        if value not in allowed:
            raise RatingError(f"Criterion {name!r}: choose one of {', '.join(allowed)}.")
    if project.rationale == Project.Rationale.REQUIRED and not submission.rationale.strip():
        raise RatingError("This project asks for a short reason with every judgment.")
    if len(submission.rationale) > 5000:
        raise RatingError("The reason is too long (at most 5,000 characters).")


def _to_pair_terms(shown: str, swapped: bool) -> str:
    if shown == "left":
        return Judgment.Choice.B if swapped else Judgment.Choice.A
    if shown == "right":
        return Judgment.Choice.A if swapped else Judgment.Choice.B
    return shown


def judgment_record(
    *,
    rater: User,
    assignment_id: int,
    submission: Submission,
    idempotency_key: str = "",
) -> tuple[Judgment, bool]:
    """Record the rater's judgment of a leased pair. Returns (judgment, created).

    Safe to repeat: a double click, a retry, or ten identical concurrent POSTs give the same
    judgment and one row. The same Idempotency-Key with another body raises IdempotencyConflict.
    """
    fingerprint = submission.fingerprint(assignment_id)
    with transaction.atomic():
        if idempotency_key:
            earlier = Judgment.objects.filter(rater=rater, idempotency_key=idempotency_key).first()
            if earlier is not None:
                if earlier.request_fingerprint != fingerprint:
                    raise IdempotencyConflict(
                        "This Idempotency-Key was already used for a different judgment."
                    )
                return earlier, False
        assignment = (
            Assignment.objects.select_for_update()
            .select_related("pair__project")
            .filter(id=assignment_id, rater=rater)
            .first()
        )
        if assignment is None:
            raise LeaseNotHeld("This pair is not leased to you.")
        if assignment.status == Assignment.Status.DONE:
            earlier = Judgment.objects.get(assignment=assignment)
            if idempotency_key and earlier.request_fingerprint != fingerprint:
                raise IdempotencyConflict("You already judged this pair differently.")
            return earlier, False  # a double click or a retry: same answer, no new row
        if assignment.status == Assignment.Status.SKIPPED:
            raise RatingError("You skipped this pair; it went back to the pool.")
        project = assignment.pair.project
        _validate(project, submission)
        pair = Pair.objects.select_for_update().get(id=assignment.pair_id)
        now = timezone.now()
        if assignment.expires_at <= now and not pair.gold_choice:
            others = pair.assignments.filter(_live(now)).exclude(id=assignment.id).count()
            if pair.judgments_count + others >= pair.judgments_needed:
                raise RatingError(
                    "Your time on this pair ran out and other raters completed it; "
                    "here is a new one."
                )
        decisive = submission.choice in ("left", "right")
        judgment = Judgment.objects.create(
            pair=pair,
            rater=rater,
            assignment=assignment,
            choice=_to_pair_terms(submission.choice, assignment.swapped),
            strength=submission.strength if decisive else None,
            criteria={
                name: _to_pair_terms(value, assignment.swapped)
                for name, value in (submission.criteria or {}).items()
            },
            rationale=submission.rationale,
            swapped=assignment.swapped,
            duration_ms=int((now - assignment.created_at).total_seconds() * 1000),
            active_ms=submission.active_ms,
            idempotency_key=idempotency_key,
            request_fingerprint=fingerprint,
            created_at=now,
        )
        Pair.objects.filter(id=pair.id).update(judgments_count=F("judgments_count") + 1)
        assignment.status = Assignment.Status.DONE
        assignment.save(update_fields=["status"])
    return judgment, True


def judgment_undo(*, project: Project, rater: User) -> Assignment | None:
    """Take back the rater's last judgment in this project if it is recent enough.

    The pair returns to the rater as a fresh lease, so the slot is never lost to someone else.
    """
    with transaction.atomic():
        judgment = (
            Judgment.objects.select_for_update()
            .filter(pair__project=project, rater=rater, created_at__gt=timezone.now() - UNDO_WINDOW)
            .order_by("-created_at", "-id")
            .first()
        )
        if judgment is None:
            return None
        Pair.objects.select_for_update().get(id=judgment.pair_id)
        assignment = Assignment.objects.select_for_update().get(id=judgment.assignment_id)
        judgment.delete()
        Pair.objects.filter(id=judgment.pair_id).update(judgments_count=F("judgments_count") - 1)
        now = timezone.now()
        assignment.status = Assignment.Status.ACTIVE
        assignment.created_at = now
        assignment.expires_at = now + project.lease_duration
        assignment.save(update_fields=["status", "created_at", "expires_at"])
    return assignment
