"""Rating through the JSON API: next, judge, skip and undo, as scripts and client apps use them."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Assignment, Judgment, Membership, Project
from tests.annotation.engine_data import make_pairs, make_raters, score_pairs
from tests.factories import MembershipFactory


@pytest.fixture
def api():
    return APIClient()


def _as(api, user):
    api.force_authenticate(user)
    return api


def _next(api, project):
    return api.get(f"/api/v1/projects/{project.slug}/next/")


def _judge(api, project, body, key=None):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api.post(f"/api/v1/projects/{project.slug}/judgments/", body, format="json", **headers)


def test_next_shows_the_pair_in_screen_terms_without_models_or_sides(api, project, rater):
    project.criteria = ["helpfulness"]
    project.save()
    (pair,) = make_pairs(project, 1)
    response = _next(_as(api, rater), project)
    assert response.status_code == 200
    data = response.json()
    lease = Assignment.objects.get(id=data["assignment"])
    shown = (
        (pair.response_b, pair.response_a) if lease.swapped else (pair.response_a, pair.response_b)
    )
    assert (data["left"], data["right"]) == ({"text": shown[0].text}, {"text": shown[1].text})
    assert data["prompt"] == {"text": pair.prompt.text, "messages": None}
    assert data["scheme"]["choices"] == ["left", "right", "tie", "both_bad"]
    assert data["scheme"]["criteria"] == ["helpfulness"]
    body = response.content.decode()
    assert "model-a" not in body
    assert "model-b" not in body
    assert "response_a" not in body
    assert "swapped" not in body


def test_a_chat_prompt_comes_as_messages(api, project, rater):
    (pair,) = make_pairs(project, 1)
    pair.prompt.messages = [{"role": "user", "content": "Hi <b>there</b>"}]
    pair.prompt.text = ""
    pair.prompt.save()
    data = _next(_as(api, rater), project).json()
    assert data["prompt"] == {
        "text": "",
        "messages": [{"role": "user", "content": "Hi <b>there</b>"}],
    }


def test_next_answers_204_when_nothing_is_left_or_the_rater_is_paused(api, project, rater):
    assert _next(_as(api, rater), project).status_code == 204
    make_pairs(project, 1)
    Membership.objects.filter(user=rater).update(paused_at=timezone.now())
    assert _next(api, project).status_code == 204


def test_a_judgment_is_recorded_once_and_a_retry_gets_the_same_answer(api, project, rater):
    make_pairs(project, 1)
    lease = _next(_as(api, rater), project).json()["assignment"]
    body = {"assignment": lease, "choice": "right", "strength": 2, "active_ms": 5400}
    first = _judge(api, project, body, key="key-1")
    retry = _judge(api, project, body, key="key-1")
    assert (first.status_code, retry.status_code) == (201, 200)
    assert first.json() == retry.json()
    assert first.json()["choice"] == "right"
    judgment = Judgment.objects.get()
    assert judgment.choice == ("a" if judgment.swapped else "b")
    assert judgment.active_ms == 5400
    assert _next(api, project).status_code == 204


def test_the_same_key_with_another_body_is_refused_clearly(api, project, rater):
    make_pairs(project, 1)
    lease = _next(_as(api, rater), project).json()["assignment"]
    _judge(api, project, {"assignment": lease, "choice": "left"}, key="key-1")
    response = _judge(api, project, {"assignment": lease, "choice": "tie"}, key="key-1")
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json()["detail"]
    assert Judgment.objects.get().choice in ("a", "b")


def test_a_second_different_answer_without_a_key_is_a_conflict(api, project, rater):
    make_pairs(project, 1)
    lease = _next(_as(api, rater), project).json()["assignment"]
    _judge(api, project, {"assignment": lease, "choice": "left"})
    response = _judge(api, project, {"assignment": lease, "choice": "tie"})
    assert response.status_code == 409
    assert "already judged" in response.json()["detail"]


def test_an_overlong_idempotency_key_is_refused_before_anything_happens(api, project, rater):
    make_pairs(project, 1)
    lease = _next(_as(api, rater), project).json()["assignment"]
    response = _judge(api, project, {"assignment": lease, "choice": "left"}, key="k" * 129)
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()
    assert not Judgment.objects.exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"choice": "sideways"}, "choice"),
        ({"choice": "left", "strength": 4}, "strength"),
        ({"choice": "tie", "strength": 2}, "strength"),
        ({"choice": "left", "criteria": {"humour": "left"}}, "criteria"),
        ({"choice": "left", "criteria": {"helpfulness": "up"}}, "criteria"),
        ({"choice": "left", "active_ms": -1}, "active_ms"),
        ({"choice": "left", "rationale": "x" * 5001}, "rationale"),
    ],
)
def test_invalid_judgments_get_400_with_the_field_at_fault(api, project, rater, body, field):
    project.criteria = ["helpfulness"]
    project.save()
    make_pairs(project, 1)
    lease = _next(_as(api, rater), project).json()["assignment"]
    response = _judge(api, project, {"assignment": lease, **body})
    assert response.status_code == 400
    assert field in response.json()
    assert not Judgment.objects.exists()


def test_a_required_rationale_is_asked_for_by_name(api, project, rater):
    project.rationale = Project.Rationale.REQUIRED
    project.save()
    make_pairs(project, 1)
    lease = _next(_as(api, rater), project).json()["assignment"]
    response = _judge(api, project, {"assignment": lease, "choice": "left", "rationale": "  "})
    assert response.status_code == 400
    assert "reason" in response.json()["rationale"][0]


def test_extra_keys_in_the_body_are_refused_by_name_and_change_nothing(api, project, rater, lead):
    make_pairs(project, 1)
    lease = _next(_as(api, rater), project).json()["assignment"]
    response = _judge(
        api,
        project,
        {
            "assignment": lease,
            "choice": "left",
            "rater": lead.id,
            "created_at": "2001-01-01T00:00:00Z",
            "is_staff": True,
        },
    )
    assert response.status_code == 400
    assert {"rater", "created_at", "is_staff"} <= set(response.json())
    assert not Judgment.objects.exists()
    rater.refresh_from_db()
    assert not rater.is_staff


def test_another_raters_lease_is_404_and_records_nothing(api, project, rater):
    make_pairs(project, 2)
    (other,) = make_raters(project, 1, prefix="other")
    theirs = _next(_as(api, other), project).json()["assignment"]
    mine = _next(_as(api, rater), project).json()["assignment"]
    for lease in {theirs, mine - 1, mine + 1} - {mine}:
        response = _judge(api, project, {"assignment": lease, "choice": "left"})
        assert response.status_code == 404
        skip = api.post(f"/api/v1/projects/{project.slug}/assignments/{lease}/skip/")
        assert skip.status_code == 404
    assert not Judgment.objects.exists()
    assert Assignment.objects.get(id=theirs).status == Assignment.Status.ACTIVE


def test_members_of_another_project_get_404_everywhere(api, project, rater, outsider):
    make_pairs(project, 1)
    lease = _next(_as(api, rater), project).json()["assignment"]
    api.force_authenticate(outsider)
    for ident in (lease - 1, lease, lease + 1):
        assert _judge(api, project, {"assignment": ident, "choice": "left"}).status_code == 404
        skip = api.post(f"/api/v1/projects/{project.slug}/assignments/{ident}/skip/")
        assert skip.status_code == 404
    assert _next(api, project).status_code == 404
    assert api.post(f"/api/v1/projects/{project.slug}/judgments/undo/").status_code == 404
    assert not Judgment.objects.exists()


def test_a_lease_from_another_project_cannot_be_judged_through_this_one(
    api, project, other_project, rater
):
    MembershipFactory(project=other_project, user=rater)
    make_pairs(other_project, 1)
    lease = _next(_as(api, rater), other_project).json()["assignment"]
    assert _judge(api, project, {"assignment": lease, "choice": "left"}).status_code == 404
    assert _judge(api, other_project, {"assignment": lease, "choice": "left"}).status_code == 201


def test_anonymous_callers_are_refused(api, project):
    assert _next(api, project).status_code == 401
    assert _judge(api, project, {"assignment": 1, "choice": "left"}).status_code == 401


def test_skip_gives_the_pair_back_and_serves_the_next(api, project, rater):
    make_pairs(project, 2)
    first = _next(_as(api, rater), project).json()["assignment"]
    skip_url = f"/api/v1/projects/{project.slug}/assignments/{first}/skip/"
    assert api.post(skip_url).status_code == 204
    assert api.post(skip_url).status_code == 404
    second = _next(api, project).json()["assignment"]
    assert second != first
    late = _judge(api, project, {"assignment": first, "choice": "left"})
    assert late.status_code == 409
    assert "skipped" in late.json()["detail"]


def test_undo_restores_the_pair_and_a_second_undo_finds_nothing(api, project, rater):
    make_pairs(project, 1)
    shown = _next(_as(api, rater), project).json()
    _judge(api, project, {"assignment": shown["assignment"], "choice": "left"})
    undo_url = f"/api/v1/projects/{project.slug}/judgments/undo/"
    undone = api.post(undo_url)
    assert undone.status_code == 200
    assert undone.json()["assignment"] == shown["assignment"]
    assert undone.json()["left"] == shown["left"]
    assert not Judgment.objects.exists()
    again = api.post(undo_url)
    assert again.status_code == 409
    assert "Nothing to undo" in again.json()["detail"]
    assert _next(api, project).json()["assignment"] == shown["assignment"]


def _round_trip_queries(api, project) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as ask:
        lease = _next(api, project).json()["assignment"]
    with CaptureQueriesContext(connection) as answer:
        response = _judge(api, project, {"assignment": lease, "choice": "left"}, key=f"k{lease}")
    assert response.status_code == 201
    return len(ask), len(answer)


@pytest.mark.parametrize(
    ("order", "exploration_share"),
    [
        (Project.AssignmentOrder.FILL_FIRST, 0.1),
        (Project.AssignmentOrder.RANDOM, 0.1),
        (Project.AssignmentOrder.UNCERTAINTY, 0.0),
        (Project.AssignmentOrder.UNCERTAINTY, 1.0),  # every request takes its random share
    ],
)
def test_next_and_submit_cost_a_handful_of_queries_whatever_the_project_size(
    api, project, other_project, rater, order, exploration_share
):
    for each, size in ((project, 10), (other_project, 500)):
        each.gold_rate = 0.0
        each.assignment_order = order
        each.exploration_share = exploration_share
        each.save()
        score_pairs(make_pairs(each, size), seed=size)
    MembershipFactory(project=other_project, user=rater)
    _as(api, rater)
    small = _round_trip_queries(api, project)
    large = _round_trip_queries(api, other_project)
    assert small == large
    # next: membership, current lease, open pair (locked), recount-and-insert, plus the savepoint
    # pair the test's transaction turns the service's atomic block into;
    # submit: membership, lock the lease, count it on the pair, close the lease, insert the
    # judgment (three plain statements, so that the embedded SQLite default runs them too), plus
    # the savepoints.
    assert small == (6, 7)
