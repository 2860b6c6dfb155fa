"""Production settings pass Django's deployment checklist, and production refuses to start with
a missing, short or placeholder SECRET_KEY (reliability.md, Access 1 and 9)."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _production_env(**overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DEBUG", "HTTPS", "SECRET_KEY", "ALLOWED_HOSTS")
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        SECRET_KEY=secrets.token_urlsafe(48),  # 64 characters
        ALLOWED_HOSTS="pairwise.example.org",
        HTTPS="true",
    )
    env.update(overrides)
    return env


def test_the_deploy_checklist_passes_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "secret_key",
    ["", "short-key", "django-insecure-" + "x" * 60],
    ids=["unset", "short", "django-insecure"],
)
def test_production_refuses_to_start_without_a_real_secret_key(secret_key):
    # An empty value rather than a missing one, so that a developer's .env cannot fill it in.
    env = _production_env(SECRET_KEY=secret_key)
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY must be set to a random string of at least 50 characters" in result.stderr
