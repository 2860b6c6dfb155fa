"""A rater's queue, judged to its end through the page and the API: the last pair is saved and
answered with the end state (or 204), never an error. Runs on SQLite and PostgreSQL alike, whose
hand-written SQL for "is anything still open?" differs in what each accepts."""

import re

import pytest
from rest_framework.test import APIClient

from annotation.models import Judgment, Pair, Project
from tests.annotation.engine_data import make_pairs, make_raters
from tests.conftest import login

HTMX = {"HTTP_HX_REQUEST": "true"}
END = b"Nothing left for you right now"
ORDERS = [Project.AssignmentOrder.FILL_FIRST, Project.AssignmentOrder.RANDOM]


@pytest.fixture
def queue(project):
    """Three open pairs, no gold drawn at random: the queue holds exactly those."""
    project.gold_rate = 0.0
    project.save(update_fields=["gold_rate"])
    make_pairs(project, 3)
    return project


def _ordered(project: Project, order: str) -> Project:
    project.assignment_order = order
    project.save(update_fields=["assignment_order"])
    return project


def _lease_on(page: bytes) -> int | None:
    found = re.search(rb'name="assignment" value="(\d+)"', page)
    return int(found[1]) if found else None


@pytest.mark.parametrize("order", ORDERS)
def test_judging_the_last_pair_with_htmx_saves_it_and_shows_the_end_state(
    client, queue, rater, order
):
    project = _ordered(queue, order)
    login(client, rater)
    page = client.get(f"/p/{project.slug}/rate/")
    for judged in range(1, 4):
        lease = _lease_on(page.content)
        assert lease is not None, f"no pair shown after {judged - 1} judgments"
        page = client.post(
            f"/p/{project.slug}/rate/", {"assignment": lease, "choice": "left"}, **HTMX
        )
        assert page.status_code == 200
        assert Judgment.objects.filter(rater=rater).count() == judged
    assert b"Saved." in page.content
    assert END in page.content
    assert _lease_on(page.content) is None
    again = client.get(f"/p/{project.slug}/rate/")
    assert (again.status_code, END in again.content) == (200, True)


def test_judging_the_last_pair_without_javascript_redirects_to_the_end_state(client, queue, rater):
    login(client, rater)
    for _ in range(3):
        lease = _lease_on(client.get(f"/p/{queue.slug}/rate/").content)
        response = client.post(f"/p/{queue.slug}/rate/", {"assignment": lease, "choice": "tie"})
        assert response.status_code == 302
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert END in page.content
    assert b"Saved." in page.content
    assert Judgment.objects.filter(rater=rater).count() == 3


def test_a_queue_emptied_by_other_raters_ends_in_the_end_state(client, queue, rater):
    """Each pair needs one judgment and another rater gave them all: nothing is left for rita."""
    Pair.objects.filter(project=queue).update(judgments_needed=1)
    (other,) = make_raters(queue, 1)
    api = APIClient()
    api.force_authenticate(other)
    _judge_to_the_end(api, queue)
    page = login(client, rater).get(f"/p/{queue.slug}/rate/")
    assert (page.status_code, END in page.content) == (200, True)


def _judge_to_the_end(api: APIClient, project: Project) -> int:
    """Judge every pair `next` hands out; the number judged once `next` answers 204."""
    judged = 0
    while (shown := api.get(f"/api/v1/projects/{project.slug}/next/")).status_code == 200:
        body = {"assignment": shown.json()["assignment"], "choice": "right"}
        response = api.post(f"/api/v1/projects/{project.slug}/judgments/", body, format="json")
        assert response.status_code == 201, response.content
        judged += 1
        assert judged <= 3, "the API served more pairs than the queue holds"
    assert shown.status_code == 204
    return judged


@pytest.mark.parametrize("order", ORDERS)
def test_the_api_serves_every_pair_then_answers_204(queue, rater, order):
    project = _ordered(queue, order)
    api = APIClient()
    api.force_authenticate(rater)
    assert _judge_to_the_end(api, project) == 3
    assert Judgment.objects.filter(rater=rater).count() == 3
    assert api.get(f"/api/v1/projects/{project.slug}/next/").status_code == 204
