"""The counts kept on a pair's row (judgments by choice, flags ever raised) equal a recount of its
judgments and flags after any sequence of judging, undoing, flagging, clearing and excluding, as
the rating engine, the flag service and adjudication do them."""

import importlib
import random

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from annotation.models import VOTE_CHOICES, Flag, Judgment, Pair, Project, vote_field
from annotation.services import rating
from annotation.services.adjudication import pair_adjudicate
from annotation.services.flags import NotFlagged, assignment_flag, flags_clear
from tests.annotation.engine_data import make_pairs, make_raters
from tests.factories import (
    AssignmentFactory,
    JudgmentFactory,
    PairFactory,
    UserFactory,
    recounted,
)

_KEPT = ["judgments_count", *(vote_field(c) for c in VOTE_CHOICES), "flags_count"]


def test_vote_choices_are_the_stored_choices():
    assert tuple(Judgment.Choice.values) == VOTE_CHOICES


def _step(
    rng: random.Random, project: Project, rater: User, lead: User, pair_ids: list[int]
) -> str:
    """One random operation by `rater` (or the lead); the name of what it did."""
    move = rng.choice(["judge", "judge", "judge", "undo", "flag", "clear", "exclude"])
    if move == "undo":
        return "undo" if rating.judgment_undo(project=project, rater=rater) else "nothing"
    if move == "clear":
        try:
            flags_clear(project=project, pair_id=rng.choice(pair_ids), cleared_by=lead)
        except NotFlagged:
            return "nothing"
        return "clear"
    if move == "exclude":
        pair_id = rng.choice(pair_ids)
        if Pair.objects.filter(id=pair_id, adjudications__isnull=False).exists():
            return "nothing"
        pair_adjudicate(project=project, pair_id=pair_id, decided_by=lead, decision="exclude")
        return "exclude"
    lease = rating.assignment_next(project=project, rater=rater)
    if lease is None:
        return "nothing"
    if move == "flag":
        assignment_flag(project=project, assignment_id=lease.id, rater=rater, reason="broken")
        return "flag"
    choice = rng.choice(rating.SHOWN_CHOICES)
    submission = rating.Submission(
        choice=choice, strength=2 if choice in ("left", "right") else None
    )
    rating.judgment_record(
        project=project, rater=rater, assignment_id=lease.id, submission=submission
    )
    return "judge"


def test_kept_counts_equal_a_recount_after_random_operations(project):
    project.choice_scheme = Project.ChoiceScheme.AB_TIE_BAD
    project.raters_per_pair = 3
    project.flag_threshold = 2
    project.save()
    rng = random.Random(17)
    pairs = make_pairs(project, 12)
    pair_ids = [p.id for p in pairs]
    raters = make_raters(project, 6)
    lead = UserFactory()
    done = [_step(rng, project, rng.choice(raters), lead, pair_ids) for _ in range(300)]
    assert {"judge", "undo", "flag", "clear", "exclude"} <= set(done)
    for pair in Pair.objects.filter(id__in=pair_ids).values("id", *_KEPT):
        assert pair == {"id": pair["id"], **recounted(pair["id"])}
    totals = [sum(recounted(i)[vote_field(c)] for i in pair_ids) for c in VOTE_CHOICES]
    assert all(totals), "every choice must be counted somewhere, or the test proves little"


def _migrate(target: str) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("annotation", target)])


@pytest.fixture
def back_to_the_latest_migration():
    """Migrate annotation forward to its latest migration afterwards: later tests (with
    transaction=True) use the database as it is, and a migration after 0017 would stay
    unapplied."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes("annotation"))


@pytest.mark.django_db(transaction=True)
def test_migration_0017_backfills_the_counts_chunk_by_chunk(
    monkeypatch, back_to_the_latest_migration
):
    """Judgments and flags stored before 0017 (the counts dropped by migrating back to 0016) are
    counted by its backfill, three pairs a chunk over seven pairs."""
    rng = random.Random(170)
    pairs = [PairFactory() for _ in range(7)]
    for pair in pairs:
        for choice in rng.choices(VOTE_CHOICES, k=rng.randint(0, 4)):
            JudgmentFactory(
                assignment__pair=pair,
                choice=choice,
                strength=2 if choice in ("a", "b") else None,
            )
        for _ in range(rng.randint(0, 2)):
            lease = AssignmentFactory(pair=pair)
            Flag.objects.create(pair=pair, rater=lease.rater, assignment=lease, reason="other")
    backfill = importlib.import_module("annotation.migrations.0017_vote_counts")
    monkeypatch.setattr(backfill, "CHUNK", 3)
    _migrate("0016_uncertainty_order")
    _migrate("0017_vote_counts")
    backfilled = _KEPT[1:]  # judgments_count was kept before 0017
    kept = {p["id"]: p for p in Pair.objects.values("id", *backfilled)}
    expected = {pair.id: {"id": pair.id} for pair in pairs}
    for pair in pairs:
        expected[pair.id] |= {name: recounted(pair.id)[name] for name in backfilled}
    assert kept == expected
    assert any(kept[pair.id]["flags_count"] for pair in pairs)
    assert all(sum(kept[p.id][vote_field(c)] for p in pairs) for c in VOTE_CHOICES)
