"""Fixtures shared by the whole suite: users in roles around a project, and a second project
with disjoint members, because a project is the boundary that must never leak."""

from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from annotation.models import Membership
from tests.factories import PASSWORD, MembershipFactory, ProjectFactory, UserFactory

POSTGRES_ONLY = "postgres_only"


def _on_sqlite() -> bool:
    return settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"


def pytest_configure(config: pytest.Config) -> None:
    """On SQLite, tests use a database file next to DATABASE_URL's rather than Django's shared
    in-memory one: the engine's threads, Celery workers and other child processes must see it,
    and an in-memory database fails with "table is locked" where a file waits its turn, as the
    embedded default does."""
    if _on_sqlite():
        name = Path(settings.DATABASES["default"]["NAME"])
        test = settings.DATABASES["default"].setdefault("TEST", {})
        test["NAME"] = str(name.with_name(f"test_{name.name}"))


_DATABASE_FIXTURES = {"db", "transactional_db", "live_server", "django_db_setup"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--database-tests-only",
        action="store_true",
        help="deselect the tests that use no database: make test's SQLite pass, whose other "
        "pass runs them already",
    )


def _uses_database(item: pytest.Item) -> bool:
    names = set(getattr(item, "fixturenames", ()))
    return bool(names & _DATABASE_FIXTURES) or item.get_closest_marker("django_db") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked postgres_only need PostgreSQL itself (COPY, ...): on SQLite they are
    skipped, and everything else runs on both."""
    if config.getoption("--database-tests-only"):
        dropped = [item for item in items if not _uses_database(item)]
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if _uses_database(item)]
    if not _on_sqlite():
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL itself (marked postgres_only)")
    for item in items:
        if item.get_closest_marker(POSTGRES_ONLY):
            item.add_marker(skip)


@pytest.fixture
def project(db):
    return ProjectFactory(slug="alpha", name="Alpha")


@pytest.fixture
def other_project(db):
    return ProjectFactory(slug="beta", name="Beta")


def _member(project, role, username):
    return MembershipFactory(project=project, user=UserFactory(username=username), role=role).user


@pytest.fixture
def rater(project):
    return _member(project, Membership.Role.RATER, "rita")


@pytest.fixture
def lead(project):
    return _member(project, Membership.Role.LEAD, "leo")


@pytest.fixture
def admin_member(project):
    return _member(project, Membership.Role.ADMIN, "ada")


@pytest.fixture
def outsider(other_project):
    """An admin of the other project: powerful, but not here."""
    return _member(other_project, Membership.Role.ADMIN, "otto")


@pytest.fixture
def staff(db):
    return UserFactory(username="stella", is_staff=True)


def login(client: Client, user) -> Client:
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture(scope="session", autouse=True)
def _collected_static(tmp_path_factory):
    """The suite runs with production settings, where pages link to hashed static files."""
    from django.conf import settings
    from django.core.management import call_command

    settings.STATIC_ROOT = str(tmp_path_factory.mktemp("static"))
    call_command("collectstatic", "--noinput", verbosity=0)
    # WhiteNoise indexes STATIC_ROOT whenever a handler is built, i.e. for every test Client
    # (~0.25 s each); with autorefresh it looks files up per request instead, and tests ask few.
    settings.WHITENOISE_AUTOREFRESH = True


@pytest.fixture(scope="session", autouse=True)
def _fast_password_hashing():
    """PBKDF2 at production strength costs ~0.3 s per user; the suite makes hundreds of users."""
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
