"""Reliability items 5 to 7 through the URLs: user-supplied filter and ordering names never reach
the ORM, `?next=` never leaves the site, and state changes need a POST with a CSRF token from our
own origin (exports and retraining included)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.authtoken.models import Token

from annotation.models import Judgment, Membership
from annotation.services.agreement import agreement_report_create
from annotation.services.projects import token_issue
from rewardtrain.models import TrainingRun
from tests.conftest import login
from tests.factories import AssignmentFactory, BatchFactory, JudgmentFactory, PairFactory

# Keys an attacker would try to smuggle into a queryset's filter() or order_by().
HOSTILE_QUERIES = [
    {"ordering": "rater__password"},
    {"ordering": "-uploaded_by__password"},
    {"sort": "rater__password"},
    {"sort": "-user__password"},
    {"sort": "__class__"},
    {"rater__password__startswith": "md5"},
    {"uploaded_by__password__startswith": "md5"},
    {"_connector": "OR"},
    {"_negated": "true"},
    {"id__gt": "0", "_connector": "OR"},
    {"search": "' OR 1=1 --"},
]
PASSWORD_HASH = re.compile(rb"(md5|pbkdf2_sha256|argon2|bcrypt)\$")


@pytest.fixture
def judged(project, rater, lead, admin_member):
    """A project with judgments by two raters and a stored agreement report."""
    batch = BatchFactory(project=project, uploaded_by=admin_member)
    for _ in range(3):
        pair = PairFactory(prompt__batch=batch, judgments_count=2)
        for user in (rater, lead):
            JudgmentFactory(assignment=AssignmentFactory(pair=pair, rater=user))
    agreement_report_create(project=project)
    return project


def _api(user) -> Client:
    return Client(headers={"Authorization": f"Token {token_issue(user=user).key}"})


def _body(response) -> bytes:
    return b"".join(response.streaming_content) if response.streaming else response.content


# ------------------------------------------------------------------ 5. allow-listed names only


API_LISTS = [
    "/api/v1/projects/",
    "/api/v1/users/",
    "/api/v1/projects/alpha/batches/",
    "/api/v1/projects/alpha/members/",
    "/api/v1/projects/alpha/agreement/",
    "/api/v1/projects/alpha/training-runs/",
    "/api/v1/projects/alpha/models/",
    "/api/v1/projects/alpha/export/",
    "/api/v1/projects/alpha/export/?format=judgments",
    "/api/v1/projects/alpha/export/?format=csv",
]

PAGES = [
    "/p/alpha/agreement/",
    "/p/alpha/agreement/raters.csv",
    "/p/alpha/batches/",
    "/p/alpha/export/",
    "/p/alpha/members/",
    "/p/alpha/training/",
    "/p/alpha/",
    "/",
]


@pytest.mark.parametrize("url", API_LISTS)
def test_api_lists_ignore_unknown_filter_and_ordering_keys(judged, admin_member, url):
    admin_member.is_staff = True
    admin_member.save(update_fields=["is_staff"])
    client = _api(admin_member)
    path, _, known = url.partition("?")
    base = dict(pair.split("=") for pair in known.split("&")) if known else {}
    plain = client.get(path, base)
    assert plain.status_code == 200
    expected = _body(plain)
    for query in HOSTILE_QUERIES:
        response = client.get(path, {**base, **query})
        body = _body(response)
        assert response.status_code == 200, (query, body[:300])
        assert body == expected, query  # neither filtered nor reordered by the hostile key
        assert not PASSWORD_HASH.search(body)


@pytest.mark.parametrize("url", PAGES)
def test_pages_ignore_unknown_filter_and_sort_keys(client, judged, admin_member, url):
    login(client, admin_member)
    assert client.get(url).status_code == 200
    for query in HOSTILE_QUERIES:
        response = client.get(url, query)
        assert response.status_code == 200, query
        assert not PASSWORD_HASH.search(_body(response))


def test_an_unknown_sort_of_the_rater_table_falls_back_to_the_default(client, judged, lead):
    login(client, lead)
    default = _body(client.get("/p/alpha/agreement/raters.csv"))
    for sort in ("rater__password", "-user__password", "__class__", "username__startswith"):
        assert _body(client.get("/p/alpha/agreement/raters.csv", {"sort": sort})) == default
    by_name = _body(client.get("/p/alpha/agreement/raters.csv", {"sort": "username"}))
    assert sorted(by_name.splitlines()[1:]) == sorted(default.splitlines()[1:])


def test_an_export_filter_that_is_not_a_field_is_ignored_and_a_bad_value_is_a_400(
    judged, lead, other_project
):
    client = _api(lead)
    other_batch = BatchFactory(project=other_project)
    answer = client.get("/api/v1/projects/alpha/export/", {"batch": other_batch.id})
    assert answer.status_code == 400
    assert f"batch {other_batch.id} is not a batch of this project" in answer.json()["batch"][0]
    assert client.get("/api/v1/projects/alpha/export/", {"batch": "1 OR 1=1"}).status_code == 400
    assert client.get("/api/v1/projects/alpha/agreement/", {"batch": "id__gt"}).status_code == 400


# ------------------------------------------------------------------ 6. ?next= stays on the site


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "https:evil.example",
        "http://testserver@evil.example/",
    ],
)
def test_next_to_another_host_falls_back_for_a_logged_in_visitor(client, rater, target):
    """The login form's own case is in tests/annotation/test_accounts.py; a visitor who is
    already logged in is redirected at once, which must not follow an off-site next either."""
    login(client, rater)
    response = client.get("/login/", {"next": target})
    assert response.status_code == 302
    assert response["Location"] == reverse("annotation:home")


# ------------------------------------------------------------------ 7. CSRF and POST-only starts


def _page_post_routes() -> Iterator[tuple[str, str]]:
    """Every page route (not the API, not Django's admin), reversed with placeholder ids: the
    CSRF check runs before any view, so the ids need not exist."""

    def walk(resolver: URLResolver, prefix: str) -> Iterator[tuple[str, URLPattern]]:
        for entry in resolver.url_patterns:
            if isinstance(entry, URLResolver):
                if entry.namespace in ("admin", "api", "training-api"):
                    continue
                yield from walk(entry, f"{prefix}{entry.namespace}:" if entry.namespace else prefix)
            elif entry.name:
                yield f"{prefix}{entry.name}", entry

    for name, pattern in walk(get_resolver(), ""):
        placeholders = {
            key: "alpha" if key == "slug" else "x" * 43 if key == "token" else 1
            for key in pattern.pattern.converters
        }
        yield name, reverse(name, kwargs=placeholders)


PAGE_POSTS = sorted(_page_post_routes())


def _csrf_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def _token(client: Client) -> str:
    client.get("/p/alpha/")
    return client.cookies["csrftoken"].value


@pytest.mark.parametrize(("name", "url"), PAGE_POSTS, ids=[n for n, _ in PAGE_POSTS])
def test_a_form_post_without_the_csrf_token_is_refused(project, admin_member, name, url):
    client = _csrf_client(admin_member)
    before = (Membership.objects.count(), Judgment.objects.count(), TrainingRun.objects.count())
    response = client.post(url, {"name": "x", "role": "admin", "format": "trl"})
    assert response.status_code == 403
    htmx = client.post(url, {"role": "admin"}, headers={"HX-Request": "true"})
    assert htmx.status_code == 403
    after = (Membership.objects.count(), Judgment.objects.count(), TrainingRun.objects.count())
    assert after == before


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://evil.example", "null", "http://testserver.evil"]
)
def test_a_post_with_the_token_but_a_foreign_origin_is_refused(project, admin_member, origin):
    client = _csrf_client(admin_member)
    token = _token(client)
    response = client.post(
        "/p/alpha/invitations/",
        {"role": "admin"},
        headers={"X-CSRFToken": token, "Origin": origin, "HX-Request": "true"},
    )
    assert response.status_code == 403
    assert not project.invitations.exists()


def test_a_post_with_the_token_from_our_origin_goes_through(project, admin_member):
    """The counterpart of the refusals above: the htmx way (token in X-CSRFToken, as base.html's
    hx-headers sends it) and the plain form way both work."""
    client = _csrf_client(admin_member)
    token = _token(client)
    htmx = client.post(
        "/p/alpha/invitations/",
        {"role": "rater"},
        headers={"X-CSRFToken": token, "Origin": "http://testserver", "HX-Request": "true"},
    )
    assert htmx.status_code == 201
    form = client.post(
        "/projects/guidelines-preview/", {"guidelines": "x", "csrfmiddlewaretoken": token}
    )
    assert form.status_code == 200


def test_the_api_with_a_session_cookie_needs_the_csrf_token(project, rater):
    """A browser's cookie does not carry the API past CSRF; a token (a header no other site can
    set) does."""
    lease = AssignmentFactory(pair=PairFactory(prompt__batch__project=project), rater=rater)
    body = {"assignment": lease.id, "choice": "left", "strength": 2}
    client = _csrf_client(rater)
    refused = client.post(
        "/api/v1/projects/alpha/judgments/", body, content_type="application/json"
    )
    assert refused.status_code == 403
    assert not Judgment.objects.exists()
    api = Client(
        enforce_csrf_checks=True,
        headers={"Authorization": f"Token {Token.objects.create(user=rater).key}"},
    )
    accepted = api.post("/api/v1/projects/alpha/judgments/", body, content_type="application/json")
    assert accepted.status_code == 201


def test_an_export_starts_only_by_post(client, judged, lead):
    login(client, lead)
    shown = client.get("/p/alpha/export/", {"format": "trl"})
    assert shown.status_code == 200
    assert not shown.streaming
    assert "Content-Disposition" not in shown
    started = client.post("/p/alpha/export/", {"format": "trl"})
    assert started.status_code == 200
    assert started["Content-Disposition"].startswith("attachment;")
    _body(started)


def test_the_export_api_does_not_start_on_a_session_cookie(client, judged, lead):
    """A cross-site GET carries the lead's session cookie: it must not start an export."""
    login(client, lead)
    response = client.get("/api/v1/projects/alpha/export/", {"format": "trl"})
    assert response.status_code == 401
    assert not response.streaming
    assert "Content-Disposition" not in response
    assert _api(lead).get("/api/v1/projects/alpha/export/").status_code == 200


def test_retraining_and_refreshes_start_only_by_post(client, project, lead):
    login(client, lead)
    for url in ("/p/alpha/training/runs/", "/p/alpha/agreement/refresh/"):
        assert client.get(url).status_code == 405
    assert not TrainingRun.objects.exists()
    assert client.post("/p/alpha/training/runs/").status_code == 302
