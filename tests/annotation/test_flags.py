"""Flags from raters: a pair flagged by `flag_threshold` raters stops being served, the lead
clears the flags (served again) or excludes the pair (it leaves the export)."""

import json

import pytest
from rest_framework.test import APIClient

from annotation.models import Assignment, Flag, Pair
from annotation.selectors.exports import ExportOptions, export_stream
from annotation.selectors.pairs import PairFilter, pair_list
from annotation.services.adjudication import pair_adjudicate
from annotation.services.flags import NotFlagged, flags_clear
from tests.annotation.engine_data import make_pairs, make_raters
from tests.annotation.test_rate_page import HTMX, shown, url
from tests.conftest import login


def _client(user):
    api = APIClient()
    api.force_authenticate(user)
    return api


def _next(user, project):
    response = _client(user).get(f"/api/v1/projects/{project.slug}/next/")
    return response.json()["assignment"] if response.status_code == 200 else None


def _flag(user, project, assignment, **body):
    url = f"/api/v1/projects/{project.slug}/assignments/{assignment}/flag/"
    return _client(user).post(url, body, format="json")


def _judge(user, project, assignment):
    url = f"/api/v1/projects/{project.slug}/judgments/"
    body = {"assignment": assignment, "choice": "left"}
    assert _client(user).post(url, body, format="json").status_code == 201


def _trl(project):
    body = b"".join(export_stream(project=project, options=ExportOptions(format="trl")).chunks)
    return [json.loads(line) for line in body.decode().splitlines()]


@pytest.fixture
def flagging(project, lead):
    project.raters_per_pair = 3
    project.max_raters_per_pair = 3
    project.gold_rate = 0.0
    project.save()
    (pair,) = make_pairs(project, 1)
    Pair.objects.filter(id=pair.id).update(judgments_needed=3)
    return project, pair, make_raters(project, 4)


def test_a_pair_stops_being_served_at_the_threshold_and_clearing_serves_it_again(flagging, lead):
    project, pair, (r1, r2, r3, _) = flagging
    first = _next(r1, project)
    assert (
        _flag(r1, project, first, reason="broken", note="Response B is cut off").status_code == 204
    )
    assert Assignment.objects.get(id=first).status == Assignment.Status.SKIPPED
    assert _next(r1, project) is None  # never handed again to the rater who flagged it
    second = _next(r2, project)
    assert second is not None  # one flag is below the threshold of 2
    assert _flag(r2, project, second, reason="harmful").status_code == 204
    pair.refresh_from_db()
    assert pair.flagged_at is not None
    assert _next(r3, project) is None
    assert [p.id for p in pair_list(project=project, filters=PairFilter(status="flagged"))] == [
        pair.id
    ]

    assert flags_clear(project=project, pair_id=pair.id, cleared_by=lead) == 2
    assert _next(r3, project) is not None
    assert not pair_list(project=project, filters=PairFilter(status="flagged")).exists()
    assert Flag.objects.filter(cleared_by=lead).count() == 2  # kept as history
    with pytest.raises(NotFlagged):
        flags_clear(project=project, pair_id=pair.id, cleared_by=lead)


def test_excluding_a_flagged_pair_drops_it_from_the_export_and_keeps_it_held(flagging, lead):
    project, pair, (r1, r2, r3, r4) = flagging
    _judge(r1, project, _next(r1, project))
    for rater in (r2, r3):
        assert (
            _flag(rater, project, _next(rater, project), reason="cannot_judge").status_code == 204
        )
    assert [row["prompt"] for row in _trl(project)] == [pair.prompt.text]
    pair_adjudicate(project=project, pair_id=pair.id, decided_by=lead, decision="exclude")
    assert _trl(project) == []
    assert _next(r4, project) is None
    assert not pair_list(project=project, filters=PairFilter(status="flagged")).exists()


def test_a_flag_needs_an_offered_reason_and_the_raters_own_lease(flagging, other_project):
    project, _, (r1, r2, _, _) = flagging
    lease = _next(r1, project)
    refused = _flag(r1, project, lease, reason="boring")
    assert refused.status_code == 400
    assert "reason" in refused.json()
    assert _flag(r1, project, lease, reason="other", extra=1).json() == {
        "extra": ['Unknown field "extra"; this endpoint takes: note, reason.']
    }
    assert _flag(r2, project, lease, reason="other").status_code == 404
    assert not Flag.objects.exists()
    assert Assignment.objects.get(id=lease).status == Assignment.Status.ACTIVE


def test_the_rate_page_reports_a_pair_with_and_without_htmx(client, flagging):
    project, _, (r1, r2, _, _) = flagging
    make_pairs(project, 1)
    login(client, r1)
    first = shown(client.get(url(project)))
    response = client.post(
        url(project, "flag"),
        {"assignment": first.id, "reason": "other", "note": "<b>odd</b>"},
        **HTMX,
    )
    assert b"Thank you for the report" in response.content
    assert shown(response).pair_id != first.pair_id  # the next pair swapped in
    assert Flag.objects.get().note == "<b>odd</b>"

    login(client, r2)
    lease = shown(client.get(url(project)))
    refused = client.post(url(project, "flag"), {"assignment": lease.id}, **HTMX)
    assert refused.status_code == 422
    assert b"choose what is wrong with it" in refused.content
    assert shown(refused).id == lease.id
    plain = client.post(url(project, "flag"), {"assignment": lease.id, "reason": "broken"})
    assert plain.status_code == 302
    assert Flag.objects.count() == 2


def test_the_pair_page_shows_the_flags_and_the_lead_clears_them(client, flagging, lead):
    project, pair, (r1, r2, r3, _) = flagging
    _flag(r1, project, _next(r1, project), reason="broken", note="<script>x</script>")
    _flag(r2, project, _next(r2, project), reason="harmful")
    login(client, lead)
    page = client.get(f"/p/{project.slug}/pairs/{pair.id}/")
    body = page.content.decode()
    assert f"Pair {pair.id}: Flagged" in body
    assert "Broken or unreadable" in body
    assert "Harmful content" in body
    assert "&lt;script&gt;x&lt;/script&gt;" in body
    assert 'id="clear-flags"' in body
    listed = client.get(f"/p/{project.slug}/pairs/?status=flagged")
    assert f"/p/{project.slug}/pairs/{pair.id}/" in listed.content.decode()

    cleared = client.post(f"/p/{project.slug}/pairs/{pair.id}/flags/clear/", follow=True)
    assert "2 flags cleared; it is served again" in cleared.content.decode()
    assert 'id="clear-flags"' not in cleared.content.decode()
    assert _next(r3, project) is not None
    again = client.post(f"/p/{project.slug}/pairs/{pair.id}/flags/clear/", follow=True)
    assert "has no flag to clear" in again.content.decode()


def test_the_threshold_is_a_project_setting_of_at_least_one(project, admin_member):
    url = f"/api/v1/projects/{project.slug}/"
    assert _client(admin_member).get(url).json()["flag_threshold"] == 2
    refused = _client(admin_member).patch(url, {"flag_threshold": 0}, format="json")
    assert refused.status_code == 400
    assert "flag_threshold" in refused.json()
    assert _client(admin_member).patch(url, {"flag_threshold": 3}, format="json").status_code == 200
    project.refresh_from_db()
    assert project.flag_threshold == 3
