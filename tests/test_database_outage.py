"""A request that loses the database (a PostgreSQL restart) gets a clean 503 with Retry-After:
JSON for API clients, so they retry with their idempotency keys, a short page for people."""

from contextlib import ExitStack
from unittest import mock

import pytest
from django.db import OperationalError
from django.db.backends.utils import CursorWrapper
from django.test import Client

from tests.conftest import login


@pytest.fixture
def database_down(db):
    """Calling it makes every query fail as it does while PostgreSQL restarts, until the test
    ends (undone here, before the database fixtures' own teardown runs its queries)."""

    def refuse(*args, **kwargs):
        raise OperationalError("terminating connection due to administrator command")

    with ExitStack() as patches:
        yield lambda: [
            patches.enter_context(mock.patch.object(CursorWrapper, name, refuse))
            for name in ("execute", "executemany")
        ]


@pytest.fixture
def browser(rater) -> Client:
    return login(Client(raise_request_exception=False), rater)


@pytest.mark.parametrize("url", ["/api/v1/projects/", "/api/v1/projects/alpha/next/"])
def test_an_api_request_during_a_database_outage_gets_json_503_with_retry_after(
    browser, project, database_down, url
):
    database_down()
    response = browser.get(url)
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "5"
    assert "database is unavailable" in response.json()["detail"]


def test_a_judgment_posted_during_a_database_outage_gets_json_503(browser, project, database_down):
    database_down()
    response = browser.post(
        "/api/v1/projects/alpha/judgments/",
        {"assignment": 1, "choice": "left"},
        content_type="application/json",
        headers={"Idempotency-Key": "k-1"},
    )
    assert response.status_code == 503
    assert response["Retry-After"] == "5"


def test_a_page_during_a_database_outage_gets_a_short_503_page(browser, project, database_down):
    database_down()
    response = browser.get("/p/alpha/rate/")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "cannot reach its database" in response.content.decode()


def test_other_errors_are_still_500(browser, project, monkeypatch):
    monkeypatch.setattr(
        "annotation.apis.people.project_list_for",
        lambda **kwargs: (_ for _ in ()).throw(RuntimeError("a bug")),
    )
    assert browser.get("/api/v1/projects/").status_code == 500
