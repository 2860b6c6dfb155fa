"""The rater engine's fixed SQL against its ORM reference, on the same data.

services/rating.py states "open pair" and "live lease" in hand-written SQL for speed; the model
layer states them once, as Pair.objects.open() and Assignment.objects.live(now). Each test below
asks both the same question of a project where every state occurs (retired, gold, seed, full,
held for the lead by flags, leased by others live and expired, skipped, seen by the rater, scored
by a model or not) and asserts the same answer. They run on SQLite and on PostgreSQL.
"""

import random
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection, transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.utils import timezone

from annotation.models import VOTE_CHOICES, Assignment, Judgment, Pair, Project, vote_field
from annotation.services import rating
from tests.annotation.engine_data import make_pairs, make_raters, score_pairs

_RATERS = 4


@pytest.fixture
def mixed(project):
    """40 pairs in every state the rules distinguish, leased at random by four raters."""
    rng = random.Random(14)
    pairs = make_pairs(project, 40)
    raters = make_raters(project, _RATERS)
    now = timezone.now()
    for pair in pairs:
        pair.judgments_needed = rng.choice([1, 2, 3])
        pair.judgments_count = rng.randint(0, pair.judgments_needed)
        pair.is_active = rng.random() > 0.15
        kind = rng.random()
        pair.gold_choice = "a" if kind < 0.1 else ""
        pair.seed_choice = "b" if 0.1 <= kind < 0.2 else ""
        pair.flagged_at = now if rng.random() < 0.15 else None
    Pair.objects.bulk_update(
        pairs,
        [
            "judgments_needed",
            "judgments_count",
            "is_active",
            "gold_choice",
            "seed_choice",
            "flagged_at",
        ],
    )
    Assignment.objects.bulk_create(
        Assignment(
            pair=pair,
            rater=rater,
            swapped=rng.random() < 0.5,
            status=rng.choice(list(Assignment.Status)),
            created_at=now - timedelta(minutes=rng.randint(1, 60)),
            expires_at=now + timedelta(minutes=rng.choice([-5, 5])),
        )
        for pair in pairs
        for rater in raters
        if rng.random() < 0.3
    )
    score_pairs(pairs, seed=14)
    return project, raters, now


def _params(project: Project, rater, now) -> dict:
    return {"project": project.id, "rater": rater.id, "now": rating._db_time(now)}


def _reference_open_for(project: Project, rater, now) -> set[int]:
    """Open pairs with a slot free of live leases that this rater was never handed."""
    live = Assignment.objects.live(now).filter(pair=OuterRef("pk"))
    seen = Assignment.objects.filter(pair=OuterRef("pk"), rater=rater)
    return set(
        Pair.objects.open()
        .filter(project=project)
        .annotate(leased=Count("assignments", filter=Q(assignments__in=live.values("pk"))))
        .filter(leased__lt=F("judgments_needed") - F("judgments_count"))
        .filter(~Exists(seen))
        .values_list("id", flat=True)
    )


def test_open_pairs_sql_equals_pair_objects_open(mixed):
    project, raters, now = mixed
    some = False
    for rater in raters:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT p.id {rating._OPEN_PAIRS}", _params(project, rater, now))
            fast = {row[0] for row in cursor.fetchall()}
        reference = _reference_open_for(project, rater, now)
        assert fast == reference
        some = some or bool(reference)
    assert some, "the data must leave some pair open, or the comparison proves nothing"


def test_uncertainty_order_sql_equals_pair_objects_by_uncertainty(mixed):
    """The whole order, not only its first pair: scored pairs by uncertainty (ties included),
    then the unscored ones in fill-first order."""
    project, raters, now = mixed
    sql = f"SELECT p.id {rating._OPEN_PAIRS} {rating._ORDER[Project.AssignmentOrder.UNCERTAINTY]}"
    for rater in raters:
        with connection.cursor() as cursor:
            cursor.execute(sql, _params(project, rater, now))
            fast = [row[0] for row in cursor.fetchall()]
        reference = list(
            Pair.objects.filter(id__in=_reference_open_for(project, rater, now))
            .by_uncertainty()
            .values_list("id", flat=True)
        )
        assert fast == reference
    values = list(Pair.objects.open().filter(project=project).values_list("model_uncertainty"))
    known = [value for (value,) in values if value is not None]
    assert (None,) in values, "some pair must be unscored, or the comparison proves little"
    assert len(set(known)) < len(known), "some scores must tie, or the comparison proves little"


def test_random_pick_sql_draws_only_open_pairs_and_finds_one_if_any(mixed):
    """The random order draws among ids alone (its own shape of SQL): every draw is one of the
    reference's open pairs, and a rater with some open pair gets one (here the project has fewer
    open pairs than the 32 it draws, so all of them are drawn)."""
    project, raters, now = mixed
    sql = rating._PICK_SQL[Project.AssignmentOrder.RANDOM]
    drawn = set()
    for rater in raters:
        reference = _reference_open_for(project, rater, now)
        for _ in range(10):
            with connection.cursor() as cursor:
                cursor.execute(sql, _params(project, rater, now))
                row = cursor.fetchone()
            assert (row is None) == (not reference)
            if row is not None:
                assert row[0] in reference
                drawn.add(row[0])
    assert len(drawn) > 1, "draws at random, not one fixed pair"


def test_any_open_sql_equals_the_reference(mixed):
    project, raters, now = mixed
    for rater in raters:
        with connection.cursor() as cursor:
            cursor.execute(rating._ANY_OPEN_SQL, _params(project, rater, now))
            assert bool(cursor.fetchone()[0]) == bool(_reference_open_for(project, rater, now))


def test_current_lease_sql_equals_assignment_objects_live(mixed):
    project, raters, now = mixed
    some = False
    for rater in raters:
        with connection.cursor() as cursor:
            cursor.execute(rating._CURRENT_SQL, _params(project, rater, now))
            row = cursor.fetchone()
        reference = (
            Assignment.objects.live(now)
            .filter(rater=rater, pair__project=project, pair__is_active=True)
            .order_by("-created_at", "-id")
            .values_list("id", flat=True)
            .first()
        )
        assert (row[0] if row else None) == reference
        some = some or reference is not None
    assert some, "some rater must hold a live lease, or the comparison proves nothing"


def test_lease_sql_leases_exactly_where_the_reference_finds_room(mixed):
    """_LEASE_SQL's guard (room left once live leases count, never handed to this rater) against
    the ORM, pair by pair; each trial insert is rolled back."""
    project, raters, now = mixed
    outcomes = set()
    for rater in raters:
        for pair in Pair.objects.filter(project=project):
            room = (
                pair.judgments_count + Assignment.objects.live(now).filter(pair=pair).count()
                < pair.judgments_needed
            )
            fresh = not Assignment.objects.filter(pair=pair, rater=rater).exists()
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    rating._LEASE_SQL,
                    {
                        "pair": pair.id,
                        "rater": rater.id,
                        "swapped": False,
                        "now": rating._db_time(now),
                        "expires": rating._db_time(now + timedelta(minutes=5)),
                        "served_by": Assignment.ServedBy.FILL_FIRST,
                    },
                )
                leased = cursor.fetchone() is not None
                transaction.set_rollback(True)
            assert leased == (room and fresh), f"pair {pair.id}, rater {rater.username}"
            outcomes.add(leased)
    assert outcomes == {True, False}


def test_lease_sql_stores_what_the_orm_lease_stores(project, monkeypatch):
    """The open pair's lease is written by _lease_locked (_LEASE_SQL), the gold pair's by _lease
    (the ORM): for the same lease, the two rows are equal field by field, `served_by` included.
    Every field but the status (a new lease is always active) differs from its default, so a
    column that _LEASE_SQL leaves out shows."""
    (pair,) = make_pairs(project, 1)
    (rater,) = make_raters(project, 1)
    monkeypatch.setattr(rating, "secrets", SimpleNamespace(randbelow=lambda n: 1))  # swapped
    now = timezone.now() - timedelta(seconds=3)
    lease = Assignment(
        pair=pair,
        rater=rater,
        swapped=True,
        created_at=now,
        expires_at=now + project.lease_duration,
        served_by=Assignment.ServedBy.EXPLORATION,
    )
    fields = [f.attname for f in Assignment._meta.concrete_fields if not f.primary_key]
    rows = []
    for insert in (
        lambda: connection.cursor().execute(
            rating._LEASE_SQL,
            {
                "pair": pair.id,
                "rater": rater.id,
                "swapped": lease.swapped,
                "now": rating._db_time(lease.created_at),
                "expires": rating._db_time(lease.expires_at),
                "served_by": lease.served_by,
            },
        ),
        lambda: rating._lease(
            pair=pair,
            rater=rater,
            now=lease.created_at,
            project=project,
            served_by=lease.served_by,
        ),
    ):
        with transaction.atomic():
            insert()
            rows.append(Assignment.objects.filter(rater=rater).values(*fields).get())
            transaction.set_rollback(True)
    fast, reference = rows
    assert fast == reference
    defaults = {f.attname: f.get_default() for f in Assignment._meta.concrete_fields}
    assert all(value != defaults[name] for name, value in fast.items() if name != "status")


def _judgment_row(judgment_id: int) -> dict:
    fields = [f.attname for f in Judgment._meta.concrete_fields if not f.primary_key]
    return Judgment.objects.filter(id=judgment_id).values(*fields).get()


def test_judge_sql_stores_what_judgment_save_stores(project):
    """_JUDGE_SQL's column list is generated from Judgment's fields: the row it writes equals,
    field by field, the row Judgment.save() writes for the same judgment. Every field carries a
    value that differs from its default, so a column left out shows."""
    (pair,) = make_pairs(project, 1)
    (rater,) = make_raters(project, 1)
    lease = rating.assignment_next(project=project, rater=rater)
    now = timezone.now()
    judgment = Judgment(
        pair=pair,
        rater=rater,
        assignment=lease,
        choice="a",
        strength=2,
        criteria={"helpfulness": "b", "safety": "tie"},
        rationale="A <b>cites</b> its source; «B» does not.",
        swapped=True,
        duration_ms=1234,
        active_ms=987,
        idempotency_key="key-1",
        request_fingerprint="f" * 64,
        created_at=now - timedelta(seconds=3),
    )
    rows = []
    for insert in (
        lambda j: rating._insert_judgment(connection.cursor(), j),
        lambda j: j.save(force_insert=True),
    ):
        with transaction.atomic():
            judgment.pk, judgment._state.adding = None, True
            insert(judgment)
            rows.append(_judgment_row(judgment.pk))
            transaction.set_rollback(True)
    fast, reference = rows
    assert fast == reference
    defaults = {f.attname: f.get_default() for f in Judgment._meta.concrete_fields}
    assert all(value != defaults[name] for name, value in reference.items())


_COUNTED = ["judgments_count", *(vote_field(c) for c in VOTE_CHOICES)]


def _counts(pair_id: int) -> dict:
    return Pair.objects.filter(id=pair_id).values(*_COUNTED).get()


def test_count_sql_counts_what_its_orm_twin_counts(project):
    """Recording counts a judgment with _COUNT_SQL, undo takes it back with counted_change: for
    each choice, the SQL adds to judgments_count and to that choice's column alone, exactly what
    counted_change(choice, +1) adds, and counted_change(choice, -1) takes it back."""
    (pair,) = make_pairs(project, 1)
    Pair.objects.filter(id=pair.id).update(votes_a=2, votes_b=1, votes_tie=1, judgments_count=4)
    before = _counts(pair.id)
    for choice in VOTE_CHOICES:
        expected = before | {
            "judgments_count": before["judgments_count"] + 1,
            vote_field(choice): before[vote_field(choice)] + 1,
        }
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(rating._COUNT_SQL[choice], {"pair": pair.id})
            assert cursor.fetchone() == (expected["judgments_count"], pair.judgments_needed)
            assert _counts(pair.id) == expected, f"_COUNT_SQL[{choice!r}]"
            Pair.objects.filter(id=pair.id).update(**rating.counted_change(choice, -1))
            assert _counts(pair.id) == before, f"counted_change({choice!r}, -1)"
            Pair.objects.filter(id=pair.id).update(**rating.counted_change(choice, 1))
            assert _counts(pair.id) == expected, f"counted_change({choice!r}, 1)"
            transaction.set_rollback(True)
