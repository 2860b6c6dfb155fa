"""The engine with real parallel database connections: every thread has its own connection and
its own transactions, as gunicorn workers do."""

import threading
from collections import Counter

import pytest
from django.db import connection
from rest_framework.test import APIClient

from annotation.models import Assignment, Judgment, Pair, Project
from annotation.services.rating import Submission, assignment_next, judgment_record
from tests.annotation.engine_data import make_pairs, make_raters, score_pairs
from tests.factories import ProjectFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]


def _in_parallel(count: int, work) -> list:
    """Run work(i) in `count` threads released at the same instant; return their results."""
    start = threading.Barrier(count)
    results: list = [None] * count
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=100)
    assert not errors, errors
    return results


@pytest.mark.parametrize("order", list(Project.AssignmentOrder))
def test_twenty_raters_at_once_give_every_pair_exactly_k_distinct_judgments(order):
    """In every serving order; in the uncertainty order with its random share, over pairs scored
    with ties and pairs left unscored, so that each branch of the order is raced."""
    project = ProjectFactory(raters_per_pair=3, gold_rate=0.0, assignment_order=order)
    pairs = make_pairs(project, 30)
    score_pairs(pairs, seed=18)
    raters = make_raters(project, 20)

    def rate_until_nothing_is_left(i: int) -> int:
        recorded = 0
        while (lease := assignment_next(project=project, rater=raters[i])) is not None:
            _, created = judgment_record(
                project=project,
                rater=raters[i],
                assignment_id=lease.id,
                submission=Submission(choice="tie"),
            )
            recorded += created
        return recorded

    recorded = _in_parallel(20, rate_until_nothing_is_left)

    judgments = list(Judgment.objects.values_list("pair_id", "rater_id"))
    assert sum(recorded) == len(judgments) == 90  # nothing lost, nothing extra
    assert len(set(judgments)) == 90  # no (pair, rater) twice
    per_pair = Counter(pair_id for pair_id, _ in judgments)
    assert per_pair == dict.fromkeys((p.id for p in pairs), 3)
    assert set(Pair.objects.values_list("judgments_count", flat=True)) == {3}
    assert not Assignment.objects.filter(status=Assignment.Status.ACTIVE).exists()


def test_ten_identical_concurrent_posts_record_one_judgment_and_get_one_answer():
    project = ProjectFactory(raters_per_pair=3, gold_rate=0.0)
    make_pairs(project, 1)
    (rater,) = make_raters(project, 1)
    lease = assignment_next(project=project, rater=rater)
    body = {"assignment": lease.id, "choice": "left", "strength": 3, "rationale": "clearer"}

    def post(_: int):
        client = APIClient()
        client.force_authenticate(rater)
        response = client.post(
            f"/api/v1/projects/{project.slug}/judgments/",
            body,
            format="json",
            HTTP_IDEMPOTENCY_KEY="same-key",
        )
        return response.status_code, response.json()

    answers = _in_parallel(10, post)

    assert sorted(code for code, _ in answers) == [200] * 9 + [201]
    assert len({repr(data) for _, data in answers}) == 1
    assert Judgment.objects.count() == 1
    assert Pair.objects.get().judgments_count == 1
