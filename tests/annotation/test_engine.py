"""Every rule of the assignment engine, through its service functions."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Assignment, Judgment, Membership, Pair, Project
from annotation.services import rating
from annotation.services.rating import (
    AlreadyJudged,
    IdempotencyConflict,
    LeaseLost,
    LeaseNotHeld,
    RatingError,
    Submission,
    assignment_next,
    assignment_skip,
    judgment_record,
    judgment_undo,
)
from tests.annotation.engine_data import make_pairs, make_raters

LEFT = Submission(choice="left", strength=2)


def _judge(project, rater, submission=LEFT):
    assignment = assignment_next(project=project, rater=rater)
    if assignment is None:
        return None
    judgment, _ = judgment_record(
        project=project, rater=rater, assignment_id=assignment.id, submission=submission
    )
    return judgment


def _expire(assignment):
    Assignment.objects.filter(id=assignment.id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )


def test_each_pair_gets_k_judgments_from_distinct_raters_and_no_more(project):
    pairs = make_pairs(project, 2)
    raters = make_raters(project, 5)
    for rater in raters:
        while _judge(project, rater) is not None:
            pass
    for pair in pairs:
        judges = list(Judgment.objects.filter(pair=pair).values_list("rater", flat=True))
        assert len(judges) == 3
        assert len(set(judges)) == 3
        pair.refresh_from_db()
        assert pair.judgments_count == 3
    assert Judgment.objects.filter(rater__in=raters[3:]).count() == 0


def test_a_rater_is_never_handed_the_same_pair_twice(project):
    first, second = make_pairs(project, 2)
    (rater,) = make_raters(project, 1)
    seen = [_judge(project, rater).pair_id, _judge(project, rater).pair_id]
    assert sorted(seen) == sorted([first.id, second.id])
    assert assignment_next(project=project, rater=rater) is None


def test_the_current_lease_is_returned_again_on_reload(project):
    make_pairs(project, 3)
    (rater,) = make_raters(project, 1)
    first = assignment_next(project=project, rater=rater)
    assert assignment_next(project=project, rater=rater).id == first.id
    assert Assignment.objects.filter(rater=rater).count() == 1


def test_a_pair_is_never_leased_beyond_what_it_needs(project):
    project.raters_per_pair = 2
    project.save()
    make_pairs(project, 1)
    holders = [assignment_next(project=project, rater=r) for r in make_raters(project, 3)]
    assert [h is not None for h in holders] == [True, True, False]


def test_an_expired_lease_returns_to_the_pool(project):
    project.raters_per_pair = 1
    project.save()
    (pair,) = make_pairs(project, 1)
    slow, quick = make_raters(project, 2)
    lease = assignment_next(project=project, rater=slow)
    assert assignment_next(project=project, rater=quick) is None
    _expire(lease)
    assert assignment_next(project=project, rater=quick).pair_id == pair.id


def test_a_late_answer_never_makes_a_pair_exceed_its_count(project):
    project.raters_per_pair = 1
    project.save()
    (pair,) = make_pairs(project, 1)
    slow, quick = make_raters(project, 2)
    late = assignment_next(project=project, rater=slow)
    _expire(late)
    _judge(project, quick)
    with pytest.raises(LeaseLost):
        judgment_record(project=project, rater=slow, assignment_id=late.id, submission=LEFT)
    assert Judgment.objects.filter(pair=pair).count() == 1
    pair.refresh_from_db()
    assert pair.judgments_count == 1


def test_a_late_answer_still_counts_while_the_pair_has_room(project):
    project.raters_per_pair = 2
    project.save()
    (pair,) = make_pairs(project, 1)
    slow, other = make_raters(project, 2)
    late = assignment_next(project=project, rater=slow)
    _expire(late)
    assignment_next(project=project, rater=other)  # takes the second slot
    _, created = judgment_record(
        project=project, rater=slow, assignment_id=late.id, submission=LEFT
    )
    assert created
    pair.refresh_from_db()
    assert pair.judgments_count == 1


def test_a_late_answer_is_refused_while_its_slot_is_leased_to_someone_else(project):
    project.raters_per_pair = 1
    project.save()
    make_pairs(project, 1)
    slow, quick = make_raters(project, 2)
    late = assignment_next(project=project, rater=slow)
    _expire(late)
    assert assignment_next(project=project, rater=quick) is not None
    with pytest.raises(LeaseLost):
        judgment_record(project=project, rater=slow, assignment_id=late.id, submission=LEFT)
    assert not Judgment.objects.exists()


def test_fill_first_prefers_partly_judged_pairs(project):
    pairs = make_pairs(project, 5)
    first, second, third = make_raters(project, 3)
    Pair.objects.filter(id=pairs[3].id).update(judgments_count=1)
    assert assignment_next(project=project, rater=first).pair_id == pairs[3].id
    assert assignment_next(project=project, rater=second).pair_id == pairs[3].id
    assert assignment_next(project=project, rater=third).pair_id == pairs[0].id  # 3 is full


def test_random_order_spreads_raters_over_the_pairs(project):
    project.assignment_order = Project.AssignmentOrder.RANDOM
    project.save()
    make_pairs(project, 30)
    # Fill-first hands these five the same pair; at random all five match 1 time in 810,000.
    firsts = {assignment_next(project=project, rater=r).pair_id for r in make_raters(project, 5)}
    assert len(firsts) > 1


def _by_uncertainty(project, exploration_share=0.0):
    project.assignment_order = Project.AssignmentOrder.UNCERTAINTY
    project.exploration_share = exploration_share
    project.gold_rate = 0.0
    project.save()


def test_uncertainty_order_serves_the_most_uncertain_open_pair_first(project):
    _by_uncertainty(project)
    pairs = make_pairs(project, 7, judgments_needed=1)
    for pair, uncertainty in zip(pairs, [0.2, None, 0.9, 0.05, None, 1.0, 0.9], strict=True):
        pair.model_uncertainty = uncertainty
    Pair.objects.bulk_update(pairs, ["model_uncertainty"])
    Pair.objects.filter(id=pairs[4].id).update(judgments_needed=2, judgments_count=1)
    Pair.objects.filter(id=pairs[5].id).update(flagged_at=timezone.now())  # held: not served
    (rater,) = make_raters(project, 1)
    served = []
    while (judgment := _judge(project, rater)) is not None:
        served.append(judgment.pair_id)
    # Most uncertain first (ties by id), then the unscored ones in fill-first order.
    expected = [pairs[2], pairs[6], pairs[0], pairs[3], pairs[4], pairs[1]]
    assert served == [pair.id for pair in expected]


def test_uncertainty_order_fills_the_most_uncertain_pair_with_k_distinct_raters(project):
    _by_uncertainty(project)
    low, high = make_pairs(project, 2)
    Pair.objects.filter(id=low.id).update(model_uncertainty=0.1)
    Pair.objects.filter(id=high.id).update(model_uncertainty=0.7)
    raters = make_raters(project, 4)
    assert [_judge(project, r).pair_id for r in raters] == [high.id] * 3 + [low.id]


def test_the_random_share_of_the_uncertainty_order_holds(project, monkeypatch):
    """With the default share, about one request in ten takes a random open pair rather than the
    most uncertain one, and its lease says so (`served_by`): the share is measured on what the
    leases record, and every lease recorded as chosen by the model is `top`."""
    share, requests = 0.1, 1000
    _by_uncertainty(project, exploration_share=share)
    top, *rest = make_pairs(project, 200)
    Pair.objects.filter(id=top.id).update(model_uncertainty=0.9)
    Pair.objects.filter(id__in=[pair.id for pair in rest]).update(model_uncertainty=0.1)
    (rater,) = make_raters(project, 1)
    monkeypatch.setattr(rating, "_draw", random.Random(18))
    served = []
    for _ in range(requests):
        lease = assignment_next(project=project, rater=rater)
        stored = Assignment.objects.get(id=lease.id)
        assert stored.served_by == lease.served_by  # the lease as returned is the row written
        served.append((stored.served_by, lease.pair_id))
        lease.delete()  # so that the rater may be handed `top` again
    explored = sum(reason == Assignment.ServedBy.EXPLORATION for reason, _ in served)
    spread = (requests * share * (1 - share)) ** 0.5  # binomial standard deviation, about 9.5
    assert abs(explored - requests * share) < 3.5 * spread, explored
    chosen = {pair_id for reason, pair_id in served if reason != Assignment.ServedBy.EXPLORATION}
    assert chosen == {top.id}
    assert {reason for reason, _ in served} == {
        Assignment.ServedBy.UNCERTAINTY,
        Assignment.ServedBy.EXPLORATION,
    }


def test_every_way_of_serving_a_pair_is_recorded_on_its_lease(project, monkeypatch):
    """Each serving order, the gold turn, and the wait for a locked pair (simulated by a
    candidate query that finds every open pair locked) record their own reason."""
    make_pairs(project, 4, judgments_needed=5)
    (gold,) = make_pairs(project, 1, gold_choice="a")
    raters = iter(make_raters(project, 6))

    def served_by(**settings):
        Project.objects.filter(id=project.id).update(**settings)
        project.refresh_from_db()
        lease = assignment_next(project=project, rater=next(raters))
        return lease.pair_id, Assignment.objects.get(id=lease.id).served_by

    assert served_by(gold_rate=1.0) == (gold.id, Assignment.ServedBy.GOLD)
    for order in Project.AssignmentOrder:  # no random share: the order alone decides
        assert served_by(gold_rate=0.0, exploration_share=0.0, assignment_order=order)[1] == (
            order.value
        )
    assert served_by(exploration_share=1.0)[1] == Assignment.ServedBy.EXPLORATION
    # Every open pair locked by others this instant: the candidate query finds none.
    columns, joins = rating._SHOWN_COLUMNS, rating._SHOWN_JOINS
    all_locked = f"SELECT {columns} FROM {rating._PAIR} p {joins} WHERE 1 = 0"  # noqa: S608
    for key in rating._CANDIDATE_SQL:
        monkeypatch.setitem(rating._CANDIDATE_SQL, key, all_locked)
    assert served_by(assignment_order=Project.AssignmentOrder.FILL_FIRST)[1] == "queue"


def test_the_random_share_applies_to_the_uncertainty_order_only(project):
    project.exploration_share = 1.0
    project.gold_rate = 0.0
    project.save()
    first, *_ = make_pairs(project, 30)
    raters = make_raters(project, 3)
    assert {assignment_next(project=project, rater=r).pair_id for r in raters} == {first.id}


def test_a_skipped_pair_goes_back_to_the_pool_but_not_to_the_skipper(project):
    project.raters_per_pair = 1
    project.save()
    (pair,) = make_pairs(project, 1)
    skipper, other = make_raters(project, 2)
    lease = assignment_next(project=project, rater=skipper)
    assignment_skip(project=project, rater=skipper, assignment_id=lease.id)
    assert assignment_next(project=project, rater=skipper) is None
    assert assignment_next(project=project, rater=other).pair_id == pair.id
    with pytest.raises(LeaseLost):
        judgment_record(project=project, rater=skipper, assignment_id=lease.id, submission=LEFT)


def test_skipping_a_lease_one_does_not_hold_is_refused(project):
    make_pairs(project, 1)
    holder, other = make_raters(project, 2)
    lease = assignment_next(project=project, rater=holder)
    with pytest.raises(LeaseNotHeld):
        assignment_skip(project=project, rater=other, assignment_id=lease.id)
    lease.refresh_from_db()
    assert lease.status == Assignment.Status.ACTIVE


def test_undo_within_the_window_gives_the_pair_back_to_the_same_rater(project):
    project.raters_per_pair = 1
    project.save()
    (pair,) = make_pairs(project, 1)
    rater, other = make_raters(project, 2)
    judgment = _judge(project, rater)
    restored = judgment_undo(project=project, rater=rater)
    assert restored.id == judgment.assignment_id
    assert restored.status == Assignment.Status.ACTIVE
    assert not Judgment.objects.exists()
    pair.refresh_from_db()
    assert pair.judgments_count == 0
    assert assignment_next(project=project, rater=other) is None  # the slot stayed with the rater
    assert assignment_next(project=project, rater=rater).id == restored.id
    again, created = judgment_record(
        project=project,
        rater=rater,
        assignment_id=restored.id,
        submission=Submission(choice="right"),
    )
    assert created
    assert again.choice in ("a", "b")


def test_undo_outside_the_window_changes_nothing(project):
    make_pairs(project, 1)
    (rater,) = make_raters(project, 1)
    judgment = _judge(project, rater)
    Judgment.objects.filter(id=judgment.id).update(created_at=timezone.now() - timedelta(minutes=3))
    assert judgment_undo(project=project, rater=rater) is None
    assert Judgment.objects.filter(id=judgment.id).exists()


def test_a_double_submit_records_one_row_and_gives_the_same_answer(project):
    make_pairs(project, 1)
    (rater,) = make_raters(project, 1)
    lease = assignment_next(project=project, rater=rater)
    first, created_first = judgment_record(
        project=project, rater=rater, assignment_id=lease.id, submission=LEFT
    )
    second, created_second = judgment_record(
        project=project, rater=rater, assignment_id=lease.id, submission=LEFT
    )
    assert (created_first, created_second) == (True, False)
    assert second.id == first.id
    assert Judgment.objects.count() == 1


def test_a_second_different_answer_is_refused(project):
    make_pairs(project, 1)
    (rater,) = make_raters(project, 1)
    lease = assignment_next(project=project, rater=rater)
    judgment_record(project=project, rater=rater, assignment_id=lease.id, submission=LEFT)
    with pytest.raises(AlreadyJudged):
        judgment_record(
            project=project,
            rater=rater,
            assignment_id=lease.id,
            submission=Submission(choice="tie"),
        )
    assert Judgment.objects.get().strength == 2


def test_an_idempotency_key_replays_the_first_answer(project):
    make_pairs(project, 1)
    (rater,) = make_raters(project, 1)
    lease = assignment_next(project=project, rater=rater)
    first, _ = judgment_record(
        project=project, rater=rater, assignment_id=lease.id, submission=LEFT, idempotency_key="k-1"
    )
    replay, created = judgment_record(
        project=project, rater=rater, assignment_id=lease.id, submission=LEFT, idempotency_key="k-1"
    )
    assert (replay.id, created) == (first.id, False)


def test_a_retry_reporting_more_active_time_is_the_same_answer(project):
    make_pairs(project, 1)
    (rater,) = make_raters(project, 1)
    lease = assignment_next(project=project, rater=rater)
    sent = Submission(choice="left", strength=2, active_ms=9_000)
    retried = Submission(choice="left", strength=2, active_ms=12_500)
    first, _ = judgment_record(
        project=project, rater=rater, assignment_id=lease.id, submission=sent, idempotency_key="k-1"
    )
    replay, created = judgment_record(
        project=project,
        rater=rater,
        assignment_id=lease.id,
        submission=retried,
        idempotency_key="k-1",
    )
    assert (replay.id, created) == (first.id, False)
    assert Judgment.objects.get().active_ms == 9_000


def test_an_idempotency_key_with_another_body_is_refused(project):
    make_pairs(project, 2)
    (rater,) = make_raters(project, 1)
    lease = assignment_next(project=project, rater=rater)
    judgment_record(
        project=project, rater=rater, assignment_id=lease.id, submission=LEFT, idempotency_key="k-1"
    )
    with pytest.raises(IdempotencyConflict):
        judgment_record(
            project=project,
            rater=rater,
            assignment_id=lease.id,
            submission=Submission(choice="tie"),
            idempotency_key="k-1",
        )
    other = assignment_next(project=project, rater=rater)
    with pytest.raises(IdempotencyConflict):
        judgment_record(
            project=project,
            rater=rater,
            assignment_id=other.id,
            submission=LEFT,
            idempotency_key="k-1",
        )
    assert Judgment.objects.count() == 1
    other.refresh_from_db()
    assert other.status == Assignment.Status.ACTIVE


def test_a_judgment_on_another_raters_lease_is_refused(project):
    make_pairs(project, 1)
    holder, intruder = make_raters(project, 2)
    lease = assignment_next(project=project, rater=holder)
    with pytest.raises(LeaseNotHeld):
        judgment_record(project=project, rater=intruder, assignment_id=lease.id, submission=LEFT)
    assert not Judgment.objects.exists()


def test_a_lease_of_another_project_is_not_held_here(project, other_project):
    make_pairs(other_project, 1)
    (rater,) = make_raters(other_project, 1)
    lease = assignment_next(project=other_project, rater=rater)
    with pytest.raises(LeaseNotHeld):
        judgment_record(rater=rater, assignment_id=lease.id, submission=LEFT, project=project)


def test_a_paused_rater_is_served_nothing_not_even_the_current_lease(project):
    make_pairs(project, 2)
    (rater,) = make_raters(project, 1)
    assert assignment_next(project=project, rater=rater) is not None
    Membership.objects.filter(user=rater).update(paused_at=timezone.now())
    assert assignment_next(project=project, rater=rater) is None


def test_gold_pairs_come_at_the_gold_rate_and_do_not_count_against_k(project):
    project.raters_per_pair = 1
    project.gold_rate = 1.0
    project.save()
    (gold,) = make_pairs(project, 1, gold_choice="a")
    (ordinary,) = make_pairs(project, 1)
    raters = make_raters(project, 3)
    for rater in raters:
        assert _judge(project, rater).pair_id == gold.id  # gold first at rate 1
    assert Judgment.objects.filter(pair=gold).count() == 3  # beyond k = 1
    assert _judge(project, raters[0]).pair_id == ordinary.id
    assert assignment_next(project=project, rater=raters[1]) is None


def test_gold_pairs_are_not_served_at_gold_rate_zero(project):
    project.gold_rate = 0.0
    project.save()
    make_pairs(project, 3, gold_choice="b")
    (rater,) = make_raters(project, 1)
    assert assignment_next(project=project, rater=rater) is None


def test_inactive_and_seed_pairs_are_not_served(project):
    make_pairs(project, 2, is_active=False)
    make_pairs(project, 2, seed_choice="a")
    (rater,) = make_raters(project, 1)
    assert assignment_next(project=project, rater=rater) is None


def test_a_lease_on_a_pair_retired_since_is_not_served_again(project):
    (pair,) = make_pairs(project, 1)
    (rater,) = make_raters(project, 1)
    assert assignment_next(project=project, rater=rater) is not None
    Pair.objects.filter(id=pair.id).update(is_active=False)
    assert assignment_next(project=project, rater=rater) is None


def test_the_side_shown_is_mapped_back_to_the_pair(project):
    make_pairs(project, 2)
    (rater,) = make_raters(project, 1)
    for swapped, expected in ((False, "a"), (True, "b")):
        lease = assignment_next(project=project, rater=rater)
        Assignment.objects.filter(id=lease.id).update(swapped=swapped)
        judgment, _ = judgment_record(
            project=project,
            rater=rater,
            assignment_id=lease.id,
            submission=Submission(choice="left", criteria=None),
        )
        assert (judgment.choice, judgment.swapped) == (expected, swapped)


@pytest.mark.parametrize(
    ("submission", "field"),
    [
        (Submission(choice="sideways"), "choice"),
        (Submission(choice="tie", strength=2), "strength"),
        (Submission(choice="left", strength=7), "strength"),
        (Submission(choice="left", criteria={"humour": "left"}), "criteria"),
    ],
)
def test_an_invalid_submission_says_which_field_and_records_nothing(project, submission, field):
    make_pairs(project, 1)
    (rater,) = make_raters(project, 1)
    lease = assignment_next(project=project, rater=rater)
    with pytest.raises(RatingError) as caught:
        judgment_record(project=project, rater=rater, assignment_id=lease.id, submission=submission)
    assert caught.value.field == field
    assert not Judgment.objects.exists()
    assert Pair.objects.get().judgments_count == 0
