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
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef
from django.db.models.expressions import CombinedExpression
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotation.models import (
    VOTE_CHOICES,
    Assignment,
    Judgment,
    Membership,
    Pair,
    Project,
    Prompt,
    Response,
    to_pair_terms,
    vote_field,
)
from annotation.services.agreement import pair_overlap_extend

UNDO_WINDOW = timedelta(minutes=2)
# Rounds of "lock a candidate, find it filled meanwhile" before giving up. Each such round means
# somebody else leased the slot, so running out needs dozens of raters winning every race.
_ATTEMPTS = 50

# Draws which requests explore in the uncertainty order (tests seed their own in its place).
_draw = secrets.SystemRandom()

SHOWN_CHOICES = ("left", "right", "tie", "both_bad")
_SHOWN_PAIR = ("pair__prompt", "pair__response_a", "pair__response_b")

# The rater's hot path (next, judge) runs SQL written once here rather than querysets: building a
# four-table join with the ORM cost more CPU per request than PostgreSQL spends answering it.
# This SQL is a twin of the model layer's rules, never their only statement: "open pair" is
# Pair.objects.open() (OPEN_PAIR) and "live lease" is Assignment.objects.live(now).
# tests/annotation/test_engine_twins.py runs both on the same data and asserts the same answer.
_ASSIGNMENT = Assignment._meta.db_table
_PAIR = Pair._meta.db_table
_JUDGMENT = Judgment._meta.db_table
# What a rater is shown of a pair `p`, in the column order _shown_lease reads.
_SHOWN_COLUMNS = (
    "p.id, p.prompt_id, p.response_a_id, p.response_b_id, p.judgments_count, "
    "p.judgments_needed, p.gold_choice, pr.text, pr.messages, ra.text, rb.text"
)
_SHOWN_JOINS = (
    f"JOIN {Prompt._meta.db_table} pr ON pr.id = p.prompt_id "
    f"JOIN {Response._meta.db_table} ra ON ra.id = p.response_a_id "
    f"JOIN {Response._meta.db_table} rb ON rb.id = p.response_b_id"
)
_CURRENT_SQL = f"""
    SELECT a.id, a.swapped, a.created_at, a.expires_at, {_SHOWN_COLUMNS}
    FROM {_ASSIGNMENT} a JOIN {_PAIR} p ON p.id = a.pair_id {_SHOWN_JOINS}
    WHERE a.rater_id = %(rater)s AND a.status = 'active' AND a.expires_at > %(now)s
      AND p.project_id = %(project)s AND p.is_active
    ORDER BY a.created_at DESC, a.id DESC
    LIMIT 1
"""  # noqa: S608
# Pairs with room for one more rater that this rater has never been handed. The conditions of
# _OPEN_PAIR_SQL are those of the partial indexes `pair_open_by_progress` and
# `pair_open_by_uncertainty`, so finished pairs cost nothing.
_OPEN_PAIR_SQL = """
    p.project_id = %(project)s AND p.is_active AND p.gold_choice = '' AND p.seed_choice = ''
    AND p.flagged_at IS NULL AND p.judgments_count < p.judgments_needed
"""
_ROOM_FOR_RATER_SQL = f"""
    p.judgments_count + (
      SELECT count(*) FROM {_ASSIGNMENT} a
      WHERE a.pair_id = p.id AND a.status = 'active' AND a.expires_at > %(now)s
    ) < p.judgments_needed
    AND NOT EXISTS (
      SELECT 1 FROM {_ASSIGNMENT} a WHERE a.pair_id = p.id AND a.rater_id = %(rater)s
    )
"""  # noqa: S608
_OPEN_PAIRS = f"FROM {_PAIR} p {_SHOWN_JOINS} WHERE {_OPEN_PAIR_SQL} AND {_ROOM_FOR_RATER_SQL}"
_ORDER = {
    # Partly judged pairs first, so that complete, agreement-ready pairs accumulate.
    Project.AssignmentOrder.FILL_FIRST: "ORDER BY p.judgments_count DESC, p.id",
    # Pair.objects.by_uncertainty(), read by the index `pair_open_by_uncertainty`.
    Project.AssignmentOrder.UNCERTAINTY: (
        "ORDER BY p.model_uncertainty IS NULL, p.model_uncertainty DESC, "
        "p.judgments_count DESC, p.id"
    ),
}
# Raters lock a candidate without waiting for each other, and wait only when every open pair is
# locked. SQLite (the embedded default) has no row locks: its IMMEDIATE transactions take the
# database's write lock at BEGIN (settings.DATABASES), which serialises the engine there instead.
_SKIP_LOCKED = "FOR NO KEY UPDATE OF p SKIP LOCKED"
_WAIT_LOCKED = "FOR NO KEY UPDATE OF p"
_PICK_SQL = {
    order: f"SELECT {_SHOWN_COLUMNS} {_OPEN_PAIRS} {by} LIMIT 1" for order, by in _ORDER.items()
}
# The random order draws 32 open pairs from the partial index alone, then takes one of those
# that has room for this rater and is not locked, at random, with its texts: each such pair is
# as likely as any other. Sorting every open pair's whole row at random, texts and room checks
# included, cost 50 times as much at 3,000 open pairs (an on-disk sort), which the uncertainty
# order's random share would pay on every tenth request. When none of the 32 has room for this
# rater (one who has seen most of the pool), the engine queues for the lowest id (_QUEUE_SQL).
# The inner `p` is the subquery's own.
_PICK_SQL[Project.AssignmentOrder.RANDOM] = f"""
    SELECT {_SHOWN_COLUMNS} FROM {_PAIR} p {_SHOWN_JOINS}
    WHERE p.id IN (SELECT p.id FROM {_PAIR} p WHERE {_OPEN_PAIR_SQL} ORDER BY random() LIMIT 32)
      AND {_ROOM_FOR_RATER_SQL}
    ORDER BY random() LIMIT 1
"""  # noqa: S608
# The candidate query of each reason an open pair is served for (recorded on the lease as
# Assignment.served_by): the uncertainty order's random share draws as the random order does.
_SERVED = Assignment.ServedBy
_PICK_ORDER = {
    _SERVED.FILL_FIRST: Project.AssignmentOrder.FILL_FIRST,
    _SERVED.RANDOM: Project.AssignmentOrder.RANDOM,
    _SERVED.UNCERTAINTY: Project.AssignmentOrder.UNCERTAINTY,
    _SERVED.EXPLORATION: Project.AssignmentOrder.RANDOM,
}
_CANDIDATE_SQL = {
    (served_by, lock): f"{_PICK_SQL[order]} {lock}"
    for served_by, order in _PICK_ORDER.items()
    for lock in (_SKIP_LOCKED, "")
}
# Waiting for a locked open pair, whatever the order. A row that a locking statement locked and
# then found filled (PostgreSQL rechecks it once the lock is granted) stays locked until the
# transaction ends while the statement moves on to the next row. Waiters that visit rows in
# different orders, or that still hold rows from an earlier statement, can therefore each hold
# what another waits for: with ORDER BY random() they deadlocked. So a waiter starts a transaction
# of its own and goes in id order, which never changes: every waiter locks in the same order.
_QUEUE_SQL = f"SELECT {_SHOWN_COLUMNS} {_OPEN_PAIRS} ORDER BY p.id LIMIT 1"
# A select list of its own: PostgreSQL accepts an empty one, SQLite does not.
_ANY_OPEN_SQL = f"SELECT EXISTS (SELECT 1 {_OPEN_PAIRS})"
# Lock the rater's lease: double clicks, retries and concurrent duplicate POSTs queue here.
_LOCK_LEASE_SQL = f"""
    SELECT a.status, a.swapped, a.created_at, a.expires_at, p.id, p.gold_choice
    FROM {_ASSIGNMENT} a JOIN {_PAIR} p ON p.id = a.pair_id
    WHERE a.id = %(assignment)s AND a.rater_id = %(rater)s AND p.project_id = %(project)s
"""  # noqa: S608
_LOCK_LEASE = "FOR NO KEY UPDATE OF a"
# Counting the judgment on the pair comes first: its UPDATE takes the pair's row lock and returns
# the row as it is now (judgments_needed may have grown, see pair_overlap_extend). One statement
# per stored choice, which also counts it in its vote column; judgment_undo's ORM update,
# counted_change, is its twin (test_engine_twins.py compares them).
_PAIR_COLUMNS = {f.name: f.column for f in Pair._meta.concrete_fields}
_COUNT_SQL = {
    choice: f"""
    UPDATE {_PAIR} SET judgments_count = judgments_count + 1, "{column}" = "{column}" + 1
    WHERE id = %(pair)s RETURNING judgments_count, judgments_needed
"""  # noqa: S608
    for choice in VOTE_CHOICES
    for column in [_PAIR_COLUMNS[vote_field(choice)]]
}
_CLOSE_SQL = f"UPDATE {_ASSIGNMENT} SET status = 'done' WHERE id = %(assignment)s"  # noqa: S608
# Every concrete field of Judgment but its id, in model order: a field added to the model is
# inserted here without editing SQL (its value comes from the Judgment built in _judgment_of, so a
# model default applies). The reference is Judgment.save(); test_engine_twins.py compares them.
_JUDGE_FIELDS = tuple(f for f in Judgment._meta.concrete_fields if not f.primary_key)
_JUDGE_COLUMNS = ", ".join(f'"{f.column}"' for f in _JUDGE_FIELDS)  # quoted: any name is safe
_JUDGE_SQL = (
    f"INSERT INTO {_JUDGMENT} ({_JUDGE_COLUMNS}) "  # noqa: S608
    f"VALUES ({', '.join(['%s'] * len(_JUDGE_FIELDS))}) RETURNING id"
)
# Run under the pair's lock, in a statement of its own: see the module docstring. The pair row it
# reads cannot change meanwhile (we hold its lock), and the lease count sees every commit so far.
_LEASE_SQL = f"""
    INSERT INTO {_ASSIGNMENT} (pair_id, rater_id, swapped, status, created_at, expires_at,
                               served_by)
    SELECT p.id, %(rater)s, %(swapped)s, 'active', %(now)s, %(expires)s, %(served_by)s
    FROM {_PAIR} p
    WHERE p.id = %(pair)s
      AND p.judgments_count + (
        SELECT count(*) FROM {_ASSIGNMENT} a
        WHERE a.pair_id = p.id AND a.status = 'active' AND a.expires_at > %(now)s
      ) < p.judgments_needed
      AND NOT EXISTS (
        SELECT 1 FROM {_ASSIGNMENT} a WHERE a.pair_id = p.id AND a.rater_id = %(rater)s
      )
    RETURNING id
"""  # noqa: S608


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


def _lock(clause: str) -> str:
    return "" if connection.vendor == "sqlite" else clause


def _db_time(value: datetime) -> Any:
    """A datetime as the database stores it (SQLite keeps naive UTC text)."""
    return connection.ops.adapt_datetimefield_value(value)


def _aware(value: Any) -> datetime:
    """A datetime read through raw SQL: SQLite's converter gives naive UTC."""
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


def _is_paused(*, project: Project, rater: User, membership: Membership | None) -> bool:
    """Whether the rater is paused in `project`; `membership`, when the caller has it, saves
    the query."""
    if membership is not None:
        return membership.paused_at is not None
    return Membership.objects.filter(project=project, user=rater, paused_at__isnull=False).exists()


def _shown_pair(row: tuple[Any, ...], project: Project) -> Pair:
    """A pair with what the rater is shown, from the _SHOWN_COLUMNS of a row. Fields not read
    stay deferred, so touching one loads it rather than answering a wrong default."""
    (pair_id, prompt_id, a_id, b_id, judged, needed, gold, prompt, messages, text_a, text_b) = row
    pair = Pair.from_db(
        "default",
        [
            "id",
            "prompt_id",
            "response_a_id",
            "response_b_id",
            "gold_choice",
            "judgments_needed",
            "judgments_count",
        ],
        [pair_id, prompt_id, a_id, b_id, gold, needed, judged],
    )
    pair.project = project
    pair.prompt = Prompt.from_db(
        "default",
        ["id", "text", "messages"],
        [prompt_id, prompt, None if messages is None else json.loads(messages)],
    )
    pair.response_a = Response.from_db("default", ["id", "text"], [a_id, text_a])
    pair.response_b = Response.from_db("default", ["id", "text"], [b_id, text_b])
    return pair


def _lease_of(
    *,
    lease_id: int,
    pair: Pair,
    rater: User,
    swapped: bool,
    created_at: datetime,
    expires_at: datetime,
    served_by: str | None = None,
) -> Assignment:
    """A live lease as read or just written, with its pair attached (no query to show it).
    Fields not read (served_by, for a lease read back) stay deferred."""
    read: dict[str, Any] = {
        "id": lease_id,
        "pair_id": pair.id,
        "rater_id": rater.id,
        "swapped": swapped,
        "status": Assignment.Status.ACTIVE,
        "created_at": created_at,
        "expires_at": expires_at,
    }
    if served_by is not None:
        read["served_by"] = served_by
    assignment = Assignment.from_db("default", list(read), list(read.values()))
    assignment.pair = pair
    assignment.rater = rater
    return assignment


def assignment_current(*, project: Project, rater: User) -> Assignment | None:
    """The live lease the rater holds in this project, if any (page reloads keep it).

    The newest first: after an undo, the restored lease is the one the rater sees next.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            _CURRENT_SQL,
            {"rater": rater.id, "project": project.id, "now": _db_time(timezone.now())},
        )
        row = cursor.fetchone()
    if row is None:
        return None
    lease_id, swapped, created_at, expires_at = row[:4]
    return _lease_of(
        lease_id=lease_id,
        pair=_shown_pair(row[4:], project),
        rater=rater,
        swapped=swapped,
        created_at=_aware(created_at),
        expires_at=_aware(expires_at),
    )


def assignment_next(
    *, project: Project, rater: User, membership: Membership | None = None
) -> Assignment | None:
    """The rater's current lease, or a new lease on the best open pair; None when nothing is
    left for this rater or the rater is paused.

    `membership`, the rater's membership of `project` as the caller just read it, saves a query.
    """
    if _is_paused(project=project, rater=rater, membership=membership):
        return None
    current = assignment_current(project=project, rater=rater)
    if current is not None:
        return current
    if _gold_turn(project):
        gold = _lease_gold(project=project, rater=rater)
        if gold is not None:
            return gold
    return _lease_open(project=project, rater=rater)


def _gold_turn(project: Project) -> bool:
    """Whether this request draws a gold pair: with probability `gold_rate`."""
    return project.gold_rate > 0 and secrets.randbelow(10_000) < project.gold_rate * 10_000


def _lease_open(*, project: Project, rater: User) -> Assignment | None:
    """A new lease on the open pair that the project's order ranks first (or a random one, for
    the uncertainty order's random share); None when no open pair is left for this rater.
    Bounded by _ATTEMPTS rounds of losing a race for a slot."""
    served_by = _served_by(project)
    candidate_sql = _CANDIDATE_SQL[served_by, _lock(_SKIP_LOCKED)]
    queue = False
    for _ in range(_ATTEMPTS):
        with transaction.atomic(), connection.cursor() as cursor:
            params: dict[str, Any] = {
                "project": project.id,
                "rater": rater.id,
                "now": _db_time(timezone.now()),
            }
            sql = f"{_QUEUE_SQL} {_lock(_WAIT_LOCKED)}" if queue else candidate_sql
            row = _fetch(cursor, sql, params)
            if row is None:
                cursor.execute(_ANY_OPEN_SQL, params)
                if not cursor.fetchone()[0]:
                    return None
                # Every open pair is locked by someone leasing or judging it this instant (or, in
                # random order, none of those drawn has room for this rater): queue for one
                # rather than report "nothing left" while work remains, in a new transaction
                # (see _QUEUE_SQL).
                queue = True
                continue
            lease = _lease_locked(
                cursor,
                pair=_shown_pair(row, project),
                rater=rater,
                served_by=_SERVED.QUEUE if queue else served_by,
            )
            queue = False
            if lease is not None:
                return lease
        # The pair filled up between the candidate query's snapshot and the lock: look again.
    return None


def _served_by(project: Project) -> Assignment.ServedBy:
    """Why this request's open pair is chosen: the project's order, except that in the
    uncertainty order a share of the requests (`exploration_share`) takes a random open pair
    instead (`exploration`), so that the judged pairs still hold an unbiased sample on which to
    evaluate the model that chose the others."""
    order = Project.AssignmentOrder(project.assignment_order)
    if order == Project.AssignmentOrder.UNCERTAINTY and _draw.random() < project.exploration_share:
        return _SERVED.EXPLORATION
    return _SERVED(order.value)


def _fetch(cursor: Any, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    cursor.execute(sql, params)
    row: tuple[Any, ...] | None = cursor.fetchone()
    return row


def _lease_locked(
    cursor: Any, *, pair: Pair, rater: User, served_by: Assignment.ServedBy
) -> Assignment | None:
    """Lease `pair`, whose row lock the caller holds, if it still has room for this rater
    (_LEASE_SQL recounts the live leases); None when it filled up meanwhile. `served_by` is
    recorded on the lease."""
    now = timezone.now()  # after the lock: see the module docstring
    swapped = secrets.randbelow(2) == 1
    expires_at = now + pair.project.lease_duration
    leased = _fetch(
        cursor,
        _LEASE_SQL,
        {
            "pair": pair.id,
            "rater": rater.id,
            "swapped": swapped,
            "now": _db_time(now),
            "expires": _db_time(expires_at),
            "served_by": served_by.value,
        },
    )
    if leased is None:
        return None
    return _lease_of(
        lease_id=leased[0],
        pair=pair,
        rater=rater,
        swapped=swapped,
        created_at=now,
        expires_at=expires_at,
        served_by=served_by,
    )


def _lease(
    *, pair: Pair, rater: User, now: datetime, project: Project, served_by: Assignment.ServedBy
) -> Assignment:
    """The ORM twin of _LEASE_SQL's insert, without its room check (gold pairs have no quota);
    test_engine_twins.py compares the rows the two write."""
    pair.project = project  # the caller's copy: no query to read the lease duration
    return Assignment.objects.create(
        pair=pair,
        rater=rater,
        swapped=secrets.randbelow(2) == 1,
        created_at=now,
        expires_at=now + project.lease_duration,
        served_by=served_by,
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
            return _lease(
                pair=pair, rater=rater, now=timezone.now(), project=project, served_by=_SERVED.GOLD
            )
    except IntegrityError:
        return None  # the same rater leased it in another tab a moment ago


def assignment_skip(*, project: Project, rater: User, assignment_id: int) -> None:
    """Give the pair back to the pool; this rater will not be handed it again. A lease of
    another project counts as not held."""
    leases = Assignment.objects.filter(
        id=assignment_id, rater=rater, status=Assignment.Status.ACTIVE, pair__project=project
    )
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
        """What makes two submissions the same answer. Active time is telemetry, not the answer:
        a retry after a lost response reports a larger one and must still count as a repeat."""
        answer = {k: v for k, v in self.__dict__.items() if k != "active_ms"}
        body = json.dumps([assignment_id, answer], sort_keys=True, default=str)
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


def judgment_record(
    *,
    project: Project,
    rater: User,
    assignment_id: int,
    submission: Submission,
    idempotency_key: str = "",
) -> tuple[Judgment, bool]:
    """Record the rater's judgment of a leased pair. Returns (judgment, created).

    Safe to repeat: a double click, a retry, or ten identical concurrent POSTs give the same
    judgment and one row (they queue on the assignment's row lock, and all but the first find it
    judged). The same Idempotency-Key with another body raises IdempotencyConflict. A lease of
    another project counts as not held.
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


@dataclass(frozen=True, kw_only=True)
class _HeldLease:
    """The rater's lease as read under its row lock, with what recording needs of its pair."""

    assignment_id: int
    status: str
    swapped: bool
    leased_at: datetime
    expires_at: datetime
    pair_id: int
    gold_choice: str


def _record(
    *,
    rater: User,
    assignment_id: int,
    submission: Submission,
    idempotency_key: str,
    fingerprint: str,
    project: Project,
) -> tuple[Judgment, bool]:
    lease = _lock_lease(project=project, rater=rater, assignment_id=assignment_id)
    if lease.status == Assignment.Status.DONE:
        return _repeat(lease, fingerprint=fingerprint, idempotency_key=idempotency_key), False
    if lease.status == Assignment.Status.SKIPPED:
        raise LeaseLost("You skipped this pair; it went back to the pool.", field="assignment")
    _validate(project, submission)
    now = timezone.now()  # the judgment's time; expiry is checked on a reading after the lock
    judgment = _judgment_of(
        submission,
        lease=lease,
        rater=rater,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        now=now,
    )
    # A refusal below rolls all three statements back (the caller holds a transaction).
    judged_after, judgments_needed = _count_close_insert(judgment)
    _refuse_if_completed_by_others(lease, judged_after=judged_after, needed=judgments_needed)
    if judged_after >= judgments_needed:  # only a complete pair can need one more rater
        pair = Pair(
            id=lease.pair_id, gold_choice=lease.gold_choice, judgments_needed=judgments_needed
        )
        pair_overlap_extend(pair=pair, project=project)  # still under the pair's row lock
    return judgment, True


def _lock_lease(*, project: Project, rater: User, assignment_id: int) -> _HeldLease:
    """Lock the rater's lease in `project` (LeaseNotHeld if there is none)."""
    with connection.cursor() as cursor:
        row = _fetch(
            cursor,
            f"{_LOCK_LEASE_SQL} {_lock(_LOCK_LEASE)}",
            {"assignment": assignment_id, "rater": rater.id, "project": project.id},
        )
    if row is None:
        raise LeaseNotHeld("This pair is not leased to you.", field="assignment")
    status, swapped, leased_at, expires_at, pair_id, gold_choice = row
    return _HeldLease(
        assignment_id=assignment_id,
        status=status,
        swapped=swapped,
        leased_at=_aware(leased_at),
        expires_at=_aware(expires_at),
        pair_id=pair_id,
        gold_choice=gold_choice,
    )


def _repeat(lease: _HeldLease, *, fingerprint: str, idempotency_key: str) -> Judgment:
    """The judgment already recorded for a judged lease, when this submission repeats it (a
    double click, a retry: same answer, no new row); a different answer is refused."""
    earlier = Judgment.objects.get(assignment_id=lease.assignment_id)
    if earlier.request_fingerprint == fingerprint:
        return earlier
    if idempotency_key and earlier.idempotency_key == idempotency_key:
        raise IdempotencyConflict(
            "This Idempotency-Key was already used for a different judgment; "
            "use a new key for a new judgment."
        )
    raise AlreadyJudged(
        "You already judged this pair with a different answer; undo it to change it.",
        field="assignment",
    )


def _judgment_of(
    submission: Submission,
    *,
    lease: _HeldLease,
    rater: User,
    idempotency_key: str,
    fingerprint: str,
    now: datetime,
) -> Judgment:
    """The judgment to store, in pair terms, from a valid submission on a held lease."""
    swapped = lease.swapped
    decisive = submission.choice in ("left", "right")
    return Judgment(
        pair_id=lease.pair_id,
        rater=rater,
        assignment_id=lease.assignment_id,
        choice=to_pair_terms(submission.choice, swapped),
        strength=submission.strength if decisive else None,
        criteria={
            name: to_pair_terms(value, swapped)
            for name, value in (submission.criteria or {}).items()
        },
        rationale=submission.rationale,
        swapped=swapped,
        duration_ms=max(0, int((now - lease.leased_at).total_seconds() * 1000)),
        active_ms=submission.active_ms,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
        created_at=now,
    )


def _count_close_insert(judgment: Judgment) -> tuple[int, int]:
    """Count the judgment on its pair (taking the pair's row lock), close its lease and insert
    it; sets `judgment.id`. Returns the pair's judgments_count after it and judgments_needed."""
    with connection.cursor() as cursor:
        cursor.execute(_COUNT_SQL[judgment.choice], {"pair": judgment.pair_id})
        judged_after, judgments_needed = cursor.fetchone()
        cursor.execute(_CLOSE_SQL, {"assignment": judgment.assignment_id})
        _insert_judgment(cursor, judgment)
    return judged_after, judgments_needed


def _insert_judgment(cursor: Any, judgment: Judgment) -> None:
    """Insert `judgment` with _JUDGE_SQL, each value prepared by its field as save() would."""
    cursor.execute(
        _JUDGE_SQL,
        [f.get_db_prep_save(getattr(judgment, f.attname), connection) for f in _JUDGE_FIELDS],
    )
    (judgment.id,) = cursor.fetchone()
    judgment._state.adding = False


def _refuse_if_completed_by_others(lease: _HeldLease, *, judged_after: int, needed: int) -> None:
    """An answer on an expired lease counts only if the pair still has room for it: LeaseLost
    when others completed the pair meanwhile (gold pairs have no quota)."""
    now = timezone.now()  # after the lock: see the module docstring
    if lease.expires_at > now or lease.gold_choice:
        return
    others = (
        Assignment.objects.live(now).filter(pair_id=lease.pair_id).exclude(id=lease.assignment_id)
    )
    if judged_after - 1 + others.count() >= needed:
        raise LeaseLost(
            "Your time on this pair ran out and other raters completed it; ask for a new pair.",
            field="assignment",
        )


def counted_change(choice: str, delta: int) -> dict[str, CombinedExpression]:
    """The Pair update that counts `delta` judgments of `choice` (a stored choice): the ORM twin
    of _COUNT_SQL, for judgment_undo."""
    field = vote_field(choice)
    return {"judgments_count": F("judgments_count") + delta, field: F(field) + delta}


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
        .values("id", "assignment_id", "pair_id", "choice")
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
        Pair.objects.filter(id=judgment["pair_id"]).update(**counted_change(judgment["choice"], -1))
        now = timezone.now()
        assignment.status = Assignment.Status.ACTIVE
        assignment.created_at = now
        assignment.expires_at = now + project.lease_duration
        assignment.save(update_fields=["status", "created_at", "expires_at"])
    return assignment
