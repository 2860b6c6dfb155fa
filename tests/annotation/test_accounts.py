import pytest
from django.urls import reverse

from tests.conftest import login
from tests.factories import PASSWORD


def test_the_login_page_is_served_to_anonymous_visitors(client, db):
    response = client.get("/login/")
    assert response.status_code == 200
    assert b'name="password"' in response.content


def test_pages_send_anonymous_visitors_to_the_login_page(client, project):
    response = client.get(f"/p/{project.slug}/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


def test_a_rater_logs_in_and_lands_on_their_projects(client, project, rater):
    response = client.post("/login/", {"username": "rita", "password": PASSWORD}, follow=True)
    assert response.status_code == 200
    assert project.name.encode() in response.content


def test_a_wrong_password_is_refused_with_a_message(client, rater):
    response = client.post("/login/", {"username": "rita", "password": "nope"})
    assert response.status_code == 200
    assert b"password didn't match" in response.content
    assert "_auth_user_id" not in client.session


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"],
)
def test_next_pointing_off_site_falls_back_to_an_in_app_page(client, rater, target):
    response = client.post(
        "/login/?next=" + target, {"username": "rita", "password": PASSWORD, "next": target}
    )
    assert response.status_code == 302
    assert response["Location"] == reverse("annotation:home")


def test_there_is_no_sign_up_page(client, db):
    for path in ("/signup/", "/register/", "/accounts/signup/"):
        assert client.get(path).status_code == 404


def test_logout_needs_a_post_and_ends_the_session(client, rater):
    login(client, rater)
    assert client.get("/logout/").status_code == 405
    assert client.post("/logout/").status_code == 302
    assert "_auth_user_id" not in client.session


def test_pages_carry_the_security_headers(client, rater):
    login(client, rater)
    response = client.get("/")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
