import pytest
from django.db import IntegrityError, transaction

from annotation.models import Judgment, Pair
from tests.factories import AssignmentFactory, JudgmentFactory, PairFactory, ResponseFactory


def test_a_second_judgment_of_the_same_pair_by_the_same_rater_is_refused(db):
    judgment = JudgmentFactory()
    second = AssignmentFactory(pair=PairFactory())
    with pytest.raises(IntegrityError), transaction.atomic():
        Judgment.objects.create(
            pair=judgment.pair,
            rater=judgment.rater,
            assignment=second,
            choice="b",
            swapped=False,
            duration_ms=1,
        )


def test_a_pair_of_a_response_with_itself_is_refused(db):
    response = ResponseFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Pair.objects.create(
            project=response.prompt.project,
            batch=response.batch,
            prompt=response.prompt,
            response_a=response,
            response_b=response,
            judgments_needed=3,
        )


def test_the_same_two_responses_make_one_pair_whichever_way_round(db):
    pair = PairFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Pair.objects.create(
            project=pair.project,
            batch=pair.batch,
            prompt=pair.prompt,
            response_a=pair.response_b,
            response_b=pair.response_a,
            judgments_needed=3,
        )


def test_strength_on_a_tie_is_refused(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        JudgmentFactory(choice="tie", strength=2)
