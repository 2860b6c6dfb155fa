"""Failed logins are limited per (username, client address), per address, and per username from
all addresses together (a higher ceiling), in the database (not Redis)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import LoginFailure
from tests.factories import PASSWORD


@pytest.fixture(autouse=True)
def _small_limits(settings):
    settings.LOGIN_FAILURE_LIMITS = {
        "per_username_and_ip": 3,
        "per_ip": 5,
        "per_username": 6,
        "window_minutes": 15,
    }


def _try(client, username, password, ip="10.0.0.1"):
    return client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_after_too_many_failures_even_the_right_password_is_refused_with_a_message(client, rater):
    for _ in range(3):
        assert _try(client, "rita", "wrong").status_code == 200
    response = _try(client, "rita", PASSWORD)
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()
    assert "Try again in 15 minute(s)" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_the_username_limit_from_one_address_ignores_letter_case(client, rater):
    for name in ["rita", "RITA", "Rita"]:
        _try(client, name, "wrong", ip="10.0.0.1")
    assert _try(client, "rita", PASSWORD, ip="10.0.0.1").status_code == 429


def test_a_stranger_guessing_from_another_address_does_not_lock_the_user_out(client, rater):
    guesses = [_try(client, "rita", "wrong", ip="10.6.6.6").status_code for _ in range(6)]
    assert guesses == [200, 200, 200, 429, 429, 429]  # the guesser is locked out after 3
    assert _try(client, "rita", PASSWORD, ip="10.0.0.1").status_code == 302  # rita is not


def test_the_username_ceiling_holds_across_addresses(client, rater):
    for n in range(6):
        _try(client, "rita", "wrong", ip=f"10.0.1.{n}")
    assert _try(client, "rita", PASSWORD, ip="10.9.9.9").status_code == 429


def test_the_address_limit_holds_across_usernames(client, rater):
    for n in range(5):
        _try(client, f"guess{n}", "wrong", ip="10.0.0.7")
    assert _try(client, "rita", PASSWORD, ip="10.0.0.7").status_code == 429
    assert _try(client, "rita", PASSWORD, ip="10.0.0.8").status_code == 302


def test_failures_older_than_the_window_no_longer_count(client, rater):
    for _ in range(3):
        _try(client, "rita", "wrong")
    LoginFailure.objects.update(created_at=timezone.now() - timedelta(minutes=16))
    assert _try(client, "rita", PASSWORD).status_code == 302


def test_old_failures_are_swept_when_a_new_one_is_recorded(client, rater):
    _try(client, "rita", "wrong")
    LoginFailure.objects.update(created_at=timezone.now() - timedelta(hours=1))
    _try(client, "rita", "wrong")
    assert LoginFailure.objects.count() == 1


def test_a_successful_login_clears_the_username_count_but_not_the_address_count(client, rater):
    for _ in range(2):
        _try(client, "rita", "wrong")
    assert _try(client, "rita", PASSWORD).status_code == 302
    assert not LoginFailure.objects.filter(username="rita").exists()
    assert LoginFailure.objects.filter(ip="10.0.0.1").count() == 2


def test_a_wrong_password_under_the_limit_gets_the_usual_message(client, rater):
    response = _try(client, "rita", "wrong")
    assert response.status_code == 200
    assert "password didn't match" in response.content.decode()


def test_the_admin_login_counts_and_refuses_too(client, staff):
    for _ in range(3):
        client.post("/admin/login/", {"username": "stella", "password": "wrong"})
    response = client.post("/admin/login/", {"username": "stella", "password": PASSWORD})
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session
