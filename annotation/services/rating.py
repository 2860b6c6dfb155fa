"""The assignment engine: who judges which pair, and recording what they said.

Invariants (the database backs the last two with constraints):
- a pair never has more live leases plus judgments than it needs (gold pairs have no quota);
- a rater is never handed the same pair twice (one assignment per pair and rater, ever);
- one judgment per pair and rater.

Concurrency: every change to a pair's count of live leases or judgments happens while holding that
pair's row lock (FOR NO KEY UPDATE: it serialises the engine but not the foreign-key checks of
inserts that merely reference the pair). Raters competing for work lock one candidate pair with
SKIP LOCKED, so they never queue behind each other, and recount the live leases *after* taking the
lock: under READ COMMITTED a fresh statement sees every lease committed before the lock was
granted, whereas the candidate query's own snapshot may predate them. The clock is read after the
lock too, so a lease is "expired" for a late answer only if it was already expired for whoever
handed its slot to somebody else. (Several web machines therefore need synchronised clocks.)

Lock order is always assignment, then pair; nothing holds a pair lock while waiting for another.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Exists, F, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import Assignment, Judgment, Membership, Pair, Project
from annotation.services.agreement import pair_overlap_extend

UNDO_WINDOW = timedelta(minutes=2)
# Rounds of "lock a candidate, find it filled meanwhile" before giving up. Each such round means
# somebody else leased the slot, so running out needs dozens of raters winning every race.
_ATTEMPTS = 50

SHOWN_CHOICES = ("left", "right", "tie", "both_bad")
_SHOWN_PAIR = ("pair__prompt", "pair__response_a", "pair__response_b")


class RatingError(Exception):
    """A submission that cannot be recorded; the message is shown to the rater.

    `field` names the submitted field at fault, when there is one.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class LeaseNotHeld(RatingError):
    """The assignment does not exist or belongs to someone else (shown as 404)."""


class LeaseLost(RatingError):
    """The rater held this lease once but no longer may answer it (skipped, or expired and
    completed by others)."""


class AlreadyJudged(RatingError):
    """A second, different answer for a pair the rater has judged (undo changes an answer)."""


class IdempotencyConflict(RatingError):
    """The Idempotency-Key was used before with a different request."""


def _live(now: datetime) -> Q:
    return Q(status=Assignment.Status.ACTIVE, expires_at__gt=now)


def _served(project: Project) -> QuerySet[Pair]:
    """Pairs that are ever served in the ordinary flow: active, not gold, not seed labels, and
    still short of judgments (the conditions of the partial index `pair_open_by_progress`)."""
    return Pair.objects.filter(
        project=project,
        is_active=True,
        gold_choice="",
        seed_choice="",
        judgments_count__lt=F("judgments_needed"),
    )


def _open_pairs(*, project: Project, rater: User, now: datetime) -> QuerySet[Pair]:
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
        _served(project)
        .annotate(live=Coalesce(Subquery(live, output_field=IntegerField()), 0))
        .filter(judgments_count__lt=F("judgments_needed") - F("live"))
        .filter(~Exists(seen))
    )


def _is_paused(*, project: Project, rater: User) -> bool:
    return Membership.objects.filter(project=project, user=rater, paused_at__isnull=False).exists()


def assignment_current(*, project: Project, rater: User) -> Assignment | None:
    """The live lease the rater holds in this project, if any (page reloads keep it).

    The newest first: after an undo, the restored lease is the one the rater sees next.
    """
    # Ids first: usually there is none, and a three-table select_related costs more CPU to build
    # than the database spends answering it.
    lease_id = (
        Assignment.objects.filter(
            _live(timezone.now()), pair__project=project, pair__is_active=True, rater=rater
        )
        .order_by("-created_at", "-id")
        .values_list("id", flat=True)
        .first()
    )
    if lease_id is None:
        return None
    return Assignment.objects.select_related(*_SHOWN_PAIR).get(id=lease_id)


def assignment_next(
    *, project: Project, rater: User, membership: Membership | None = None
) -> Assignment | None:
    """The rater's current lease, or a new lease on the best open pair; None when nothing is
    left for this rater or the rater is paused.

    `membership`, the rater's membership of `project` as the caller just read it, saves a query.
    """
    if membership is not None:
        if membership.paused_at is not None:
            return None
    elif _is_paused(project=project, rater=rater):
        return None
    current = assignment_current(project=project, rater=rater)
    if current is not None:
        return current
    if project.gold_rate > 0 and secrets.randbelow(10_000) < project.gold_rate * 10_000:
        gold = _lease_gold(project=project, rater=rater)
        if gold is not None:
            return gold
    for _ in range(_ATTEMPTS):
        with transaction.atomic():
            pair = _lock_candidate(project=project, rater=rater, skip_locked=True)
            if pair is None:
                if not _open_pairs(project=project, rater=rater, now=timezone.now()).exists():
                    return None
                # Every open pair is locked by someone leasing or judging it this instant: queue
                # for one rather than report "nothing left" while work remains.
                pair = _lock_candidate(project=project, rater=rater, skip_locked=False)
                if pair is None:
                    continue
            now = timezone.now()  # after the lock: see the module docstring
            if _has_room(pair=pair, rater=rater, now=now):
                return _lease(pair=pair, rater=rater, now=now, project=project)
        # The pair filled up between the candidate query's snapshot and the lock: look again.
    return None


def _lock_candidate(*, project: Project, rater: User, skip_locked: bool) -> Pair | None:
    candidates = _open_pairs(project=project, rater=rater, now=timezone.now())
    if project.assignment_order == Project.AssignmentOrder.RANDOM:
        candidates = candidates.order_by("?")
    else:
        # Partly judged pairs first, so that complete, agreement-ready pairs accumulate.
        candidates = candidates.order_by("-judgments_count", "id")
    # The pair comes with what the rater will be shown, so leasing needs no further read.
    return (
        candidates.select_related("prompt", "response_a", "response_b")
        .select_for_update(skip_locked=skip_locked, no_key=True, of=("self",))
        .first()
    )


def _has_room(*, pair: Pair, rater: User, now: datetime) -> bool:
    """Recount under the pair's lock: the locked row's judgments_count is the latest committed
    one, and this fresh statement sees every committed lease."""
    counts = Assignment.objects.filter(pair=pair).aggregate(
        live=Count("id", filter=_live(now)), mine=Count("id", filter=Q(rater=rater))
    )
    return counts["mine"] == 0 and pair.judgments_count + counts["live"] < pair.judgments_needed


def _lease(*, pair: Pair, rater: User, now: datetime, project: Project) -> Assignment:
    pair.project = project  # the caller's copy: no query to read the lease duration
    return Assignment.objects.create(
        pair=pair,
        rater=rater,
        swapped=secrets.randbelow(2) == 1,
        created_at=now,
        expires_at=now + project.lease_duration,
    )


def _lease_gold(*, project: Project, rater: User) -> Assignment | None:
    """An unannounced gold pair this rater has not seen. Gold pairs have no quota: every rater
    may be scored on each of them, so no pair lock is needed."""
    seen = Assignment.objects.filter(pair=OuterRef("pk"), rater=rater)
    pair = (
        Pair.objects.filter(project=project, is_active=True)
        .exclude(gold_choice="")
        .filter(~Exists(seen))
        .select_related("prompt", "response_a", "response_b")
        .order_by("?")
        .first()
    )
    if pair is None:
        return None
    try:
        with transaction.atomic():
            return _lease(pair=pair, rater=rater, now=timezone.now(), project=project)
    except IntegrityError:
        return None  # the same rater leased it in another tab a moment ago


def assignment_skip(*, rater: User, assignment_id: int, project: Project | None = None) -> None:
    """Give the pair back to the pool; this rater will not be handed it again."""
    leases = Assignment.objects.filter(
        id=assignment_id, rater=rater, status=Assignment.Status.ACTIVE
    )
    if project is not None:
        leases = leases.filter(pair__project=project)
    if not leases.update(status=Assignment.Status.SKIPPED):
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


def allowed_choices(project: Project) -> tuple[str, ...]:
    """The shown choices the project's scheme offers, in screen terms."""
    return {
        Project.ChoiceScheme.AB: ("left", "right"),
        Project.ChoiceScheme.AB_TIE: ("left", "right", "tie"),
        Project.ChoiceScheme.AB_TIE_BAD: SHOWN_CHOICES,
    }[Project.ChoiceScheme(project.choice_scheme)]


def _validate(project: Project, submission: Submission) -> None:
    allowed = allowed_choices(project)
    if submission.choice not in allowed:
        raise RatingError(f"Choose one of: {', '.join(allowed)}.", field="choice")
    decisive = submission.choice in ("left", "right")
    if submission.strength is not None:
        if not project.use_strength:
            raise RatingError("This project does not ask for a strength.", field="strength")
        if not decisive:
            raise RatingError(
                "A strength goes with left or right, not with a tie or both bad.",
                field="strength",
            )
        if submission.strength not in (1, 2, 3):
            raise RatingError(
                "Strength is 1 (slightly), 2 (clearly) or 3 (much better).", field="strength"
            )
    criteria = submission.criteria or {}
    unknown = set(criteria) - set(project.criteria)
    if unknown:
        raise RatingError(f"Unknown criteria: {', '.join(sorted(unknown))}.", field="criteria")
    for name, value in criteria.items():
        if value not in allowed:
            raise RatingError(
                f"Criterion {name!r}: choose one of {', '.join(allowed)}.", field="criteria"
            )
    if project.rationale == Project.Rationale.REQUIRED and not submission.rationale.strip():
        raise RatingError(
            "This project asks for a short reason with every judgment.", field="rationale"
        )
    if len(submission.rationale) > 5000:
        raise RatingError("The reason is too long (at most 5,000 characters).", field="rationale")


def _to_pair_terms(shown: str, swapped: bool) -> str:
    if shown == "left":
        return Judgment.Choice.B if swapped else Judgment.Choice.A
    if shown == "right":
        return Judgment.Choice.A if swapped else Judgment.Choice.B
    return shown


def to_screen_terms(stored: str, swapped: bool) -> str:
    """A stored choice (a/b/tie/both_bad) as the rater saw it (left/right/tie/both_bad)."""
    if stored == Judgment.Choice.A:
        return "right" if swapped else "left"
    if stored == Judgment.Choice.B:
        return "left" if swapped else "right"
    return stored


def judgment_record(
    *,
    rater: User,
    assignment_id: int,
    submission: Submission,
    idempotency_key: str = "",
    project: Project | None = None,
) -> tuple[Judgment, bool]:
    """Record the rater's judgment of a leased pair. Returns (judgment, created).

    Safe to repeat: a double click, a retry, or ten identical concurrent POSTs give the same
    judgment and one row (they queue on the assignment's row lock, and all but the first find it
    judged). The same Idempotency-Key with another body raises IdempotencyConflict. With
    `project`, a lease of another project counts as not held.
    """
    fingerprint = submission.fingerprint(assignment_id)
    try:
        with transaction.atomic():
            return _record(
                rater=rater,
                assignment_id=assignment_id,
                submission=submission,
                idempotency_key=idempotency_key,
                fingerprint=fingerprint,
                project=project,
            )
    except IntegrityError:
        # The assignment lock rules out a second judgment of the same lease, so this is the
        # rater's Idempotency-Key already spent on another assignment.
        earlier = (
            Judgment.objects.filter(rater=rater, idempotency_key=idempotency_key).first()
            if idempotency_key
            else None
        )
        if earlier is None:
            raise
        if earlier.request_fingerprint != fingerprint:
            raise IdempotencyConflict(
                "This Idempotency-Key was already used for a different judgment; "
                "use a new key for a new judgment."
            ) from None
        return earlier, False


def _record(
    *,
    rater: User,
    assignment_id: int,
    submission: Submission,
    idempotency_key: str,
    fingerprint: str,
    project: Project | None,
) -> tuple[Judgment, bool]:
    leases = Assignment.objects.filter(id=assignment_id, rater=rater)
    if project is not None:
        leases = leases.filter(pair__project=project)
    assignment = (
        leases.select_for_update(no_key=True, of=("self",)).select_related("pair__project").first()
    )
    if assignment is None:
        raise LeaseNotHeld("This pair is not leased to you.", field="assignment")
    if assignment.status == Assignment.Status.DONE:
        earlier = Judgment.objects.get(assignment=assignment)
        if earlier.request_fingerprint != fingerprint:
            if idempotency_key and earlier.idempotency_key == idempotency_key:
                raise IdempotencyConflict(
                    "This Idempotency-Key was already used for a different judgment; "
                    "use a new key for a new judgment."
                )
            raise AlreadyJudged(
                "You already judged this pair with a different answer; undo it to change it.",
                field="assignment",
            )
        return earlier, False  # a double click or a retry: same answer, no new row
    if assignment.status == Assignment.Status.SKIPPED:
        raise LeaseLost("You skipped this pair; it went back to the pool.", field="assignment")
    pair = assignment.pair
    _validate(pair.project, submission)
    # Count the judgment first: the UPDATE takes the pair's row lock and returns the row as it
    # is now (judgments_needed may have grown since the pair was read, see pair_overlap_extend).
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Pair._meta.db_table} SET judgments_count = judgments_count + 1 "  # noqa: S608
            "WHERE id = %s RETURNING judgments_count, judgments_needed",
            [pair.id],
        )
        (judged_after, pair.judgments_needed) = cursor.fetchone()
    now = timezone.now()  # after the lock: see the module docstring
    if assignment.expires_at <= now and not pair.gold_choice:
        others = Assignment.objects.filter(_live(now), pair=pair).exclude(id=assignment.id)
        if judged_after - 1 + others.count() >= pair.judgments_needed:
            raise LeaseLost(
                "Your time on this pair ran out and other raters completed it; ask for a new pair.",
                field="assignment",
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
        duration_ms=max(0, int((now - assignment.created_at).total_seconds() * 1000)),
        active_ms=submission.active_ms,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        created_at=now,
    )
    if judged_after >= pair.judgments_needed:  # only a complete pair can need one more rater
        pair_overlap_extend(pair=pair, project=pair.project)  # still under the pair's row lock
    assignment.status = Assignment.Status.DONE
    assignment.save(update_fields=["status"])
    return judgment, True


def judgment_undo(*, project: Project, rater: User) -> Assignment | None:
    """Take back the rater's last judgment in this project if it is recent enough.

    The pair returns to the rater as a fresh lease, so the slot is never lost to someone else.
    Returns that lease, or None when there is nothing to undo.
    """
    now = timezone.now()
    judgment = (
        Judgment.objects.filter(
            pair__project=project, rater=rater, created_at__gt=now - UNDO_WINDOW
        )
        .order_by("-created_at", "-id")
        .values("id", "assignment_id", "pair_id")
        .first()
    )
    if judgment is None:
        return None
    with transaction.atomic():
        assignment = (
            Assignment.objects.select_for_update(no_key=True, of=("self",))
            .select_related(*_SHOWN_PAIR)
            .filter(id=judgment["assignment_id"], status=Assignment.Status.DONE)
            .first()
        )
        if assignment is None or not Judgment.objects.filter(id=judgment["id"]).delete()[0]:
            return None  # undone a moment ago in another tab
        Pair.objects.filter(id=judgment["pair_id"]).update(judgments_count=F("judgments_count") - 1)
        now = timezone.now()
        assignment.status = Assignment.Status.ACTIVE
        assignment.created_at = now
        assignment.expires_at = now + project.lease_duration
        assignment.save(update_fields=["status", "created_at", "expires_at"])
    return assignment
