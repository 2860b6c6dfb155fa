"""Who may do what: role x membership x every endpoint and method of the app, each cell asserted.

Rows are (URL name, method); columns are who asks:

    anon      not logged in
    rater     rater of project alpha (the project every URL points at)
    lead      lead of alpha
    admin     admin of alpha
    other     a rater, a lead and an admin of project beta, each asked separately (3 cells)
    staff     site staff who is a member of nothing
    super     superuser (an admin of every project)

A refused cell (4xx, or the login redirect or 401 of an anonymous caller) also asserts that no
row of the project's data changed. Allowed cells send a valid request, so a 2xx/302 there shows
the action really ran. `test_every_route_is_in_the_matrix` walks Django's URL resolver and fails
on a route the table does not cover, and every method a row does not list must answer 405, so a
new endpoint or method cannot slip in untested (reliability.md items 2 and 8).

The world is built once per module and every test runs in a savepoint that is rolled back.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection, transaction
from django.test import Client, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token

from annotation.forms import ProjectForm
from annotation.models import (
    Adjudication,
    AgreementReport,
    Assignment,
    Batch,
    Invitation,
    Judgment,
    Membership,
    Pair,
    Project,
)
from annotation.services.agreement import agreement_report_create
from annotation.services.projects import invitation_create
from rewardtrain.models import ModelVersion, TrainingRun
from tests.factories import (
    AssignmentFactory,
    BatchFactory,
    JudgmentFactory,
    MembershipFactory,
    PairFactory,
    ProjectFactory,
    UserFactory,
)

User = get_user_model()
Role = Membership.Role

COLUMNS = ("anon", "rater", "lead", "admin", "other", "staff", "super")
# The cells each column stands for: "other" is asked as each role of the other project.
ACTORS = {
    "anon": ("anon",),
    "rater": ("rater",),
    "lead": ("lead",),
    "admin": ("admin",),
    "other": ("rater@beta", "lead@beta", "admin@beta"),
    "staff": ("staff",),
    "super": ("super",),
}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class E:
    """Expected statuses, in the column order above."""

    anon: int
    rater: int
    lead: int
    admin: int
    other: int
    staff: int
    super: int


# fmt: off
MATRIX: dict[tuple[str, str], E] = {
    # ---------------------------------------------------- pages, /p/<slug>/... and the site
    #                                                 anon rater lead admin other staff super
    ("annotation:home", "GET"):                     E(302, 200, 200, 200, 200, 200, 200),
    ("annotation:overview", "GET"):                 E(302, 200, 200, 200, 404, 404, 200),
    ("annotation:batches", "GET"):                  E(302, 403, 200, 200, 404, 404, 200),
    ("annotation:batches", "POST"):                 E(302, 403, 403, 200, 404, 404, 200),
    ("annotation:batch-import", "POST"):            E(302, 403, 403, 200, 404, 404, 200),
    ("annotation:batch-progress", "GET"):           E(302, 403, 200, 200, 404, 404, 200),
    # Destructive actions: a GET is their confirmation page; only a POST with confirm acts.
    ("annotation:batch-retire", "GET"):             E(302, 403, 403, 200, 404, 404, 200),
    ("annotation:batch-rejects", "GET"):            E(302, 403, 200, 200, 404, 404, 200),
    ("annotation:batch-retire", "POST"):            E(302, 403, 403, 302, 404, 404, 302),
    ("annotation:batch-unretire", "POST"):          E(302, 403, 403, 302, 404, 404, 302),
    ("annotation:agreement", "GET"):                E(302, 403, 200, 200, 404, 404, 200),
    ("annotation:agreement-csv", "GET"):            E(302, 403, 200, 200, 404, 404, 200),
    ("annotation:bias-lens", "GET"):                E(302, 403, 200, 200, 404, 404, 200),
    ("annotation:agreement-refresh", "POST"):       E(302, 403, 302, 302, 404, 404, 302),
    # The poll that follows a refresh; a plain GET is sent on to the dashboard.
    ("annotation:agreement-refresh-status", "GET"): E(302, 403, 302, 302, 404, 404, 302),
    ("annotation:rater-unpause", "POST"):           E(302, 403, 302, 302, 404, 404, 302),
    ("annotation:leaderboard", "GET"):              E(302, 403, 200, 200, 404, 404, 200),
    ("annotation:leaderboard-csv", "GET"):          E(302, 403, 200, 200, 404, 404, 200),
    ("annotation:export", "GET"):                   E(302, 403, 200, 200, 404, 404, 200),
    ("annotation:export", "POST"):                  E(302, 403, 200, 200, 404, 404, 200),
    ("annotation:pairs", "GET"):                    E(302, 403, 200, 200, 404, 404, 200),
    ("annotation:pair-detail", "GET"):              E(302, 403, 200, 200, 404, 404, 200),
    ("annotation:pair-adjudicate", "POST"):         E(302, 403, 302, 302, 404, 404, 302),
    ("annotation:pair-adjudication-undo", "POST"):  E(302, 403, 302, 302, 404, 404, 302),
    ("annotation:pair-flags-clear", "POST"):        E(302, 403, 302, 302, 404, 404, 302),
    ("annotation:project-create", "GET"):           E(302, 403, 403, 403, 403, 200, 200),
    ("annotation:project-create", "POST"):          E(302, 403, 403, 403, 403, 302, 302),
    ("annotation:guidelines-preview", "POST"):      E(302, 200, 200, 200, 200, 200, 200),
    ("annotation:project-settings", "GET"):         E(302, 403, 403, 200, 404, 404, 200),
    ("annotation:project-settings", "POST"):        E(302, 403, 403, 302, 404, 404, 302),
    ("annotation:members", "GET"):                  E(302, 403, 403, 200, 404, 404, 200),
    ("annotation:member-add", "POST"):              E(302, 403, 403, 302, 404, 404, 302),
    ("annotation:member-role", "POST"):             E(302, 403, 403, 302, 404, 404, 302),
    ("annotation:member-remove", "GET"):            E(302, 403, 403, 200, 404, 404, 200),
    ("annotation:member-remove", "POST"):           E(302, 403, 403, 302, 404, 404, 302),
    # Deactivating an account also needs site staff: a project admin who is not staff gets 403.
    ("annotation:member-deactivate", "GET"):        E(302, 403, 403, 403, 404, 404, 200),
    ("annotation:member-deactivate", "POST"):       E(302, 403, 403, 403, 404, 404, 302),
    ("annotation:invitation-create", "POST"):       E(302, 403, 403, 201, 404, 404, 201),
    ("annotation:invitation-revoke", "POST"):       E(302, 403, 403, 302, 404, 404, 302),
    ("annotation:my-token", "GET"):                 E(302, 200, 200, 200, 200, 200, 200),
    ("annotation:my-token", "POST"):                E(302, 200, 200, 200, 200, 200, 200),
    ("annotation:rate", "GET"):                     E(302, 200, 200, 200, 404, 404, 200),
    ("annotation:rate", "POST"):                    E(302, 302, 302, 302, 404, 404, 302),
    ("annotation:rate-skip", "POST"):               E(302, 302, 302, 302, 404, 404, 302),
    ("annotation:rate-flag", "POST"):               E(302, 302, 302, 302, 404, 404, 302),
    ("annotation:rate-undo", "POST"):               E(302, 302, 302, 302, 404, 404, 302),
    ("rewardtrain:training", "GET"):                E(302, 403, 200, 200, 404, 404, 200),
    ("rewardtrain:train-now", "POST"):              E(302, 403, 302, 302, 404, 404, 302),
    ("rewardtrain:run-status", "GET"):              E(302, 403, 200, 200, 404, 404, 200),
    ("rewardtrain:version-publish", "POST"):        E(302, 403, 302, 302, 404, 404, 302),
    ("rewardtrain:version-download", "GET"):        E(302, 403, 200, 200, 404, 404, 200),
    # Logged-in callers are sent on from the login page; a wrong password is the form again.
    ("login", "GET"):                               E(200, 302, 302, 302, 302, 302, 302),
    ("login", "POST"):                              E(200, 302, 302, 302, 302, 302, 302),
    # Django's FormView takes PUT as POST (the body is not read as a form, so it is invalid).
    ("login", "PUT"):                               E(200, 302, 302, 302, 302, 302, 302),
    ("login", "PATCH"):                             E(405, 302, 302, 302, 302, 302, 302),
    ("login", "DELETE"):                            E(405, 302, 302, 302, 302, 302, 302),
    ("logout", "POST"):                             E(302, 302, 302, 302, 302, 302, 302),
    # Public by design: the invitation's token is the credential (the form here is invalid).
    ("invite-accept", "GET"):                       E(200, 200, 200, 200, 200, 200, 200),
    ("invite-accept", "POST"):                      E(400, 400, 400, 400, 400, 400, 400),
    ("schema", "GET"):                              E(200, 200, 200, 200, 200, 200, 200),
    ("favicon", "GET"):                             E(301, 301, 301, 301, 301, 301, 301),
    ("api-docs", "GET"):                            E(200, 200, 200, 200, 200, 200, 200),
    # The admin's views answer every method; only staff get past its login.
    ("admin:index", "GET"):                         E(302, 302, 302, 302, 302, 200, 200),
    ("admin:index", "POST"):                        E(302, 302, 302, 302, 302, 200, 200),
    ("admin:index", "PUT"):                         E(302, 302, 302, 302, 302, 200, 200),
    ("admin:index", "PATCH"):                       E(302, 302, 302, 302, 302, 200, 200),
    ("admin:index", "DELETE"):                      E(302, 302, 302, 302, 302, 200, 200),
    # ---------------------------------------------------- JSON API, /api/v1/
    #                                                 anon rater lead admin other staff super
    ("api:project-list", "GET"):                    E(401, 200, 200, 200, 200, 200, 200),
    ("api:project-list", "POST"):                   E(401, 403, 403, 403, 403, 201, 201),
    ("api:project-detail", "GET"):                  E(401, 200, 200, 200, 404, 404, 200),
    ("api:project-detail", "PATCH"):                E(401, 403, 403, 200, 404, 404, 200),
    ("api:user-list", "GET"):                       E(401, 403, 403, 403, 403, 200, 200),
    ("api:user-list", "POST"):                      E(401, 403, 403, 403, 403, 201, 201),
    ("api:user-token", "POST"):                     E(401, 403, 403, 403, 403, 201, 201),
    ("api:member-list", "GET"):                     E(401, 403, 403, 200, 404, 404, 200),
    ("api:member-list", "POST"):                    E(401, 403, 403, 201, 404, 404, 201),
    ("api:member-detail", "PATCH"):                 E(401, 403, 403, 200, 404, 404, 200),
    ("api:member-detail", "DELETE"):                E(401, 403, 403, 204, 404, 404, 204),
    ("api:batch-list", "GET"):                      E(401, 403, 200, 200, 404, 404, 200),
    ("api:batch-list", "POST"):                     E(401, 403, 403, 201, 404, 404, 201),
    ("api:batch-detail", "GET"):                    E(401, 403, 200, 200, 404, 404, 200),
    ("api:batch-rejects", "GET"):                   E(401, 403, 200, 200, 404, 404, 200),
    ("api:batch-retire", "POST"):                   E(401, 403, 403, 200, 404, 404, 200),
    ("api:batch-unretire", "POST"):                 E(401, 403, 403, 200, 404, 404, 200),
    ("api:rating-next", "GET"):                     E(401, 200, 200, 200, 404, 404, 200),
    ("api:rating-judgments", "POST"):               E(401, 201, 201, 201, 404, 404, 201),
    ("api:rating-undo", "POST"):                    E(401, 200, 200, 200, 404, 404, 200),
    ("api:rating-skip", "POST"):                    E(401, 204, 204, 204, 404, 404, 204),
    ("api:rating-flag", "POST"):                    E(401, 204, 204, 204, 404, 404, 204),
    ("api:agreement", "GET"):                       E(401, 403, 200, 200, 404, 404, 200),
    ("api:leaderboard", "GET"):                     E(401, 403, 200, 200, 404, 404, 200),
    # With an API token only (a session cookie gets 401: test_export_api_refuses_a_session).
    ("api:export", "GET"):                          E(401, 403, 200, 200, 404, 404, 200),
    ("api:pair-list", "GET"):                       E(401, 403, 200, 200, 404, 404, 200),
    ("api:pair-detail", "GET"):                     E(401, 403, 200, 200, 404, 404, 200),
    ("api:pair-adjudication", "POST"):              E(401, 403, 201, 201, 404, 404, 201),
    ("api:pair-adjudication", "DELETE"):            E(401, 403, 200, 200, 404, 404, 200),
    ("training-api:run-list", "GET"):               E(401, 403, 200, 200, 404, 404, 200),
    ("training-api:run-list", "POST"):              E(401, 403, 201, 201, 404, 404, 201),
    ("training-api:run-detail", "GET"):             E(401, 403, 200, 200, 404, 404, 200),
    ("training-api:model-list", "GET"):             E(401, 403, 200, 200, 404, 404, 200),
    ("training-api:model-publish", "POST"):         E(401, 403, 200, 200, 404, 404, 200),
    ("training-api:model-download", "GET"):         E(401, 403, 200, 200, 404, 404, 200),
    # Any member may score; nothing is published in this world, hence 503 for them.
    ("training-api:score", "POST"):                 E(401, 503, 503, 503, 404, 404, 503),
}
# fmt: on

# Routes the matrix leaves out on purpose, each with the reason.
NOT_IN_MATRIX = {
    "admin": "Django's own admin site: staff only by Django (admin:index is in the matrix).",
}
# Routes that answer anyone (no login), so an unlisted method is a plain 405 for everyone.
PUBLIC = {"login", "logout", "invite-accept", "schema", "api-docs", "favicon"}


# ------------------------------------------------------------------------------ the world


@dataclass
class World:
    alpha: Project
    beta: Project
    users: dict[str, Any]  # actor -> user (no "anon")
    target: Any  # a paused rater of alpha that membership actions act on
    loner: Any  # an active user who is in no project
    peers: dict[str, Any]  # another staff user and another superuser, raters of alpha
    tokens: dict[str, str]  # actor -> API token key, for the routes that take a token only
    target_membership: Membership
    batch: Batch
    leases: dict[str, Assignment]  # actor -> a live lease in alpha
    invitation: Invitation
    invite_token: str
    run: TrainingRun
    version: ModelVersion
    # Objects of both projects created A, B, A so that B's id is A's +-1 (see test_ids_around).
    interleaved: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict)
    adjudicated: Pair | None = None  # a pair of alpha with a live adjudication, to undo


def _fake_version(project: Project, number: int, root: Path) -> ModelVersion:
    relative = f"{project.slug}/v{number}"
    directory = root / relative
    directory.mkdir(parents=True)
    files = {"config.json": b'{"num_labels": 1}', "model.safetensors": os.urandom(256)}
    for name, content in files.items():
        (directory / name).write_bytes(content)
    sha = {name: hashlib.sha256(content).hexdigest() for name, content in files.items()}
    return ModelVersion.objects.create(
        project=project, version=number, path=relative, file_sha256=sha
    )


def _interleave(make: Callable[[Project], Any], alpha: Project, beta: Project) -> tuple:
    first, middle, last = make(alpha), make(beta), make(alpha)
    assert first.pk + 1 == middle.pk == last.pk - 1, "ids must be adjacent for the +-1 test"
    return first, middle, last


def _build(root: Path) -> World:
    alpha = ProjectFactory(slug="alpha", name="Alpha")
    beta = ProjectFactory(slug="beta", name="Beta")
    users: dict[str, Any] = {}
    for project, suffix in ((alpha, ""), (beta, "@beta")):
        for role in (Role.RATER, Role.LEAD, Role.ADMIN):
            user = UserFactory(username=f"{role}-{project.slug}")
            MembershipFactory(project=project, user=user, role=role)
            users[f"{role}{suffix}"] = user
    users["staff"] = UserFactory(username="stella", is_staff=True)
    users["super"] = UserFactory(username="root", is_staff=True, is_superuser=True)
    target = UserFactory(username="tara")
    target_membership = MembershipFactory(
        project=alpha, user=target, role=Role.RATER, paused_at=timezone.now()
    )
    loner = UserFactory(username="loner")
    peers = {
        "staff": UserFactory(username="stan", is_staff=True),
        "super": UserFactory(username="sue", is_staff=True, is_superuser=True),
    }
    for peer in peers.values():
        MembershipFactory(project=alpha, user=peer, role=Role.RATER)
    tokens = {actor: Token.objects.create(user=user).key for actor, user in users.items()}

    batch = BatchFactory(
        project=alpha, uploaded_by=users["admin"], skipped=1, rejects_file="r" * 32 + ".jsonl"
    )
    rejects = Path(settings.IMPORT_REJECTS_DIR)
    rejects.mkdir(parents=True, exist_ok=True)
    (rejects / batch.rejects_file).write_bytes(b'{"prompt": ""}\n')
    leases = {}
    for actor in ("rater", "lead", "admin", "super"):
        user = users[actor]
        leases[actor] = AssignmentFactory(pair=PairFactory(prompt__batch=batch), rater=user)
        judged = PairFactory(prompt__batch=batch, judgments_count=1, votes_a=1)  # as counted
        JudgmentFactory(
            assignment=AssignmentFactory(pair=judged, rater=user, status=Assignment.Status.DONE)
        )
    agreement_report_create(project=alpha)
    adjudicated = PairFactory(prompt__batch=batch)
    Adjudication.objects.create(pair=adjudicated, decided_by=users["lead"], decision="a")
    issued = invitation_create(project=alpha, role=Role.RATER, created_by=users["admin"])
    run = TrainingRun.objects.create(
        project=alpha,
        trigger=TrainingRun.Trigger.MANUAL,
        status=TrainingRun.Status.SUCCEEDED,
        finished_at=timezone.now(),
    )
    version = _fake_version(alpha, 1, root)
    world = World(
        alpha=alpha,
        beta=beta,
        users=users,
        target=target,
        loner=loner,
        peers=peers,
        tokens=tokens,
        target_membership=target_membership,
        batch=batch,
        leases=leases,
        invitation=issued.invitation,
        invite_token=issued.token,
        run=run,
        version=version,
        adjudicated=adjudicated,
    )
    world.interleaved = {
        "batch": _interleave(lambda p: BatchFactory(project=p), alpha, beta),
        "membership": _interleave(
            lambda p: MembershipFactory(project=p, user=UserFactory(), role=Role.RATER),
            alpha,
            beta,
        ),
        "invitation": _interleave(
            lambda p: (
                invitation_create(project=p, role=Role.RATER, created_by=users["super"]).invitation
            ),
            alpha,
            beta,
        ),
        "run": _interleave(
            lambda p: TrainingRun.objects.create(
                project=p, trigger=TrainingRun.Trigger.MANUAL, status=TrainingRun.Status.FAILED
            ),
            alpha,
            beta,
        ),
        "assignment": _interleave(
            lambda p: AssignmentFactory(
                pair=PairFactory(prompt__batch=BatchFactory(project=p)),
                rater=users["rater" if p == alpha else "rater@beta"],
            ),
            alpha,
            beta,
        ),
    }
    return world


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[World]:
    """One world for the whole module, rolled back at its end; each test runs in a savepoint."""
    root = tmp_path_factory.mktemp("matrix")
    with (
        override_settings(
            CHECKPOINT_ROOT=root / "checkpoints",
            IMPORT_UPLOAD_DIR=root / "uploads",
            IMPORT_REJECTS_DIR=root / "rejects",
        ),
        django_db_blocker.unblock(),
        transaction.atomic(),
    ):
        yield _build(root / "checkpoints")
        transaction.set_rollback(True)


@pytest.fixture(autouse=True)
def _recent(world: World, db) -> None:
    """The world outlives the undo window and leases: make its judgments and leases recent."""
    now = timezone.now()
    Judgment.objects.update(created_at=now)
    Assignment.objects.filter(status=Assignment.Status.ACTIVE).update(
        created_at=now, expires_at=now + timedelta(minutes=30)
    )


# ------------------------------------------------------------------------------ requests


@dataclass(frozen=True)
class Call:
    """How to ask for a route: URL kwargs, body and headers, given the world and the actor."""

    kwargs: Callable[[World, str], dict] = lambda w, a: {"slug": w.alpha.slug}
    data: Callable[[World, str], Any] = lambda w, a: {}
    json: bool = False
    htmx: bool = False
    token: bool = False  # ask with the actor's API token instead of a session


def _lease(w: World, actor: str) -> Assignment:
    """The caller's own live lease; outsiders try the rater's (an id they might have guessed)."""
    return w.leases.get(actor, w.leases["rater"])


def _jsonl_file(name: str = "pairs.jsonl") -> SimpleUploadedFile:
    rows = [
        {"id": f"m{i}", "prompt": f"Matrix prompt {i}?", "response_a": "yes", "response_b": "no"}
        for i in range(2)
    ]
    body = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    return SimpleUploadedFile(name, body, content_type="application/x-ndjson")


def _settings_data(w: World, actor: str) -> dict:
    form = ProjectForm(instance=Project.objects.get(pk=w.alpha.pk))
    data = {}
    for name in form.fields:
        value = form[name].value()
        if isinstance(value, bool):
            if value:
                data[name] = "on"
        elif value is not None:
            data[name] = value
    data["name"] = "Alpha renamed"
    return data


def _create_data(w: World, actor: str) -> dict:
    return {**_settings_data(w, actor), "slug": "gamma", "name": "Gamma"}


def _slug(w: World, a: str) -> dict:
    return {"slug": w.alpha.slug}


def _batch(w: World, a: str) -> dict:
    return {"slug": w.alpha.slug, "batch_id": w.batch.id}


def _membership(w: World, a: str) -> dict:
    return {"slug": w.alpha.slug, "membership_id": w.target_membership.id}


def _version(w: World, a: str) -> dict:
    return {"slug": w.alpha.slug, "version": w.version.version}


def _pair(w: World, a: str) -> dict:
    return {"slug": w.alpha.slug, "pair_id": w.leases["rater"].pair_id}


def _adjudicated(w: World, a: str) -> dict:
    assert w.adjudicated is not None
    return {"slug": w.alpha.slug, "pair_id": w.adjudicated.id}


def _none(w: World, a: str) -> dict:
    return {}


def _confirm(w: World, a: str) -> dict:
    return {"confirm": "yes"}


CALLS: dict[tuple[str, str], Call] = {
    ("annotation:home", "GET"): Call(kwargs=_none),
    ("annotation:batches", "POST"): Call(data=lambda w, a: {"file": _jsonl_file()}),
    ("annotation:batch-import", "POST"): Call(data=lambda w, a: {"token": "x" * 32}),
    ("annotation:batch-progress", "GET"): Call(kwargs=_batch, htmx=True),
    ("annotation:batch-retire", "GET"): Call(kwargs=_batch),
    ("annotation:batch-retire", "POST"): Call(kwargs=_batch, data=_confirm),
    ("annotation:batch-rejects", "GET"): Call(kwargs=_batch),
    ("annotation:batch-unretire", "POST"): Call(kwargs=_batch),
    ("annotation:rater-unpause", "POST"): Call(
        kwargs=lambda w, a: {"slug": w.alpha.slug, "user_id": w.target.id}
    ),
    ("annotation:export", "POST"): Call(data=lambda w, a: {"format": "trl"}),
    ("annotation:pair-detail", "GET"): Call(kwargs=_pair),
    ("annotation:pair-adjudicate", "POST"): Call(
        kwargs=_pair, data=lambda w, a: {"decision": "b", "note": "checked"}
    ),
    ("annotation:pair-adjudication-undo", "POST"): Call(kwargs=_adjudicated),
    ("annotation:pair-flags-clear", "POST"): Call(kwargs=_pair),
    ("annotation:project-create", "GET"): Call(kwargs=_none),
    ("annotation:project-create", "POST"): Call(kwargs=_none, data=_create_data),
    ("annotation:guidelines-preview", "POST"): Call(
        kwargs=_none, data=lambda w, a: {"guidelines": "# Be *kind*"}
    ),
    ("annotation:project-settings", "POST"): Call(data=_settings_data),
    ("annotation:member-add", "POST"): Call(
        data=lambda w, a: {"username": w.loner.username, "role": Role.RATER}
    ),
    ("annotation:member-role", "POST"): Call(
        kwargs=_membership, data=lambda w, a: {"role": "lead"}
    ),
    ("annotation:member-remove", "GET"): Call(kwargs=_membership),
    ("annotation:member-remove", "POST"): Call(kwargs=_membership, data=_confirm),
    ("annotation:member-deactivate", "GET"): Call(kwargs=_membership),
    ("annotation:member-deactivate", "POST"): Call(kwargs=_membership, data=_confirm),
    ("annotation:invitation-create", "POST"): Call(data=lambda w, a: {"role": Role.RATER}),
    ("annotation:invitation-revoke", "POST"): Call(
        kwargs=lambda w, a: {"slug": w.alpha.slug, "invitation_id": w.invitation.id}
    ),
    ("annotation:my-token", "GET"): Call(kwargs=_none),
    ("annotation:my-token", "POST"): Call(kwargs=_none, data=_confirm),
    ("annotation:rate", "POST"): Call(
        data=lambda w, a: {"assignment": _lease(w, a).id, "choice": "left", "strength": "2"}
    ),
    ("annotation:rate-skip", "POST"): Call(data=lambda w, a: {"assignment": _lease(w, a).id}),
    ("annotation:rate-flag", "POST"): Call(
        data=lambda w, a: {"assignment": _lease(w, a).id, "reason": "broken"}
    ),
    ("rewardtrain:run-status", "GET"): Call(
        kwargs=lambda w, a: {"slug": w.alpha.slug, "run_id": w.run.id}
    ),
    ("rewardtrain:version-publish", "POST"): Call(kwargs=_version),
    ("rewardtrain:version-download", "GET"): Call(kwargs=_version),
    ("login", "GET"): Call(kwargs=_none),
    ("favicon", "GET"): Call(kwargs=_none),
    ("login", "POST"): Call(
        kwargs=_none, data=lambda w, a: {"username": "nobody", "password": "wrong-password"}
    ),
    ("logout", "POST"): Call(kwargs=_none),
    ("invite-accept", "GET"): Call(kwargs=lambda w, a: {"token": w.invite_token}),
    ("invite-accept", "POST"): Call(
        kwargs=lambda w, a: {"token": w.invite_token},
        data=lambda w, a: {"username": "newbie", "password1": "a", "password2": "b"},
    ),
    ("schema", "GET"): Call(kwargs=_none),
    ("api-docs", "GET"): Call(kwargs=_none),
    ("admin:index", "GET"): Call(kwargs=_none),
    ("api:project-list", "GET"): Call(kwargs=_none),
    ("api:project-list", "POST"): Call(
        kwargs=_none, data=lambda w, a: {"slug": "delta", "name": "Delta"}, json=True
    ),
    ("api:user-list", "GET"): Call(kwargs=_none),
    ("api:user-list", "POST"): Call(kwargs=_none, data=lambda w, a: {"username": "u2"}, json=True),
    ("api:user-token", "POST"): Call(kwargs=lambda w, a: {"user_id": w.loner.id}),
    ("api:member-list", "POST"): Call(
        data=lambda w, a: {"username": w.loner.username, "role": Role.RATER}, json=True
    ),
    ("api:member-detail", "PATCH"): Call(
        kwargs=lambda w, a: {"slug": w.alpha.slug, "username": w.target.username},
        data=lambda w, a: {"role": Role.LEAD},
        json=True,
    ),
    ("api:member-detail", "DELETE"): Call(
        kwargs=lambda w, a: {"slug": w.alpha.slug, "username": w.target.username}
    ),
    ("api:batch-list", "POST"): Call(data=lambda w, a: {"file": _jsonl_file()}),
    ("api:batch-detail", "GET"): Call(kwargs=_batch),
    ("api:batch-rejects", "GET"): Call(kwargs=_batch),
    ("api:project-detail", "GET"): Call(kwargs=_slug),
    ("api:project-detail", "PATCH"): Call(
        kwargs=_slug, data=lambda w, a: {"name": "Alpha renamed"}, json=True
    ),
    ("api:batch-retire", "POST"): Call(kwargs=_batch),
    ("api:batch-unretire", "POST"): Call(kwargs=_batch),
    ("api:rating-judgments", "POST"): Call(
        data=lambda w, a: {"assignment": _lease(w, a).id, "choice": "left", "strength": 2},
        json=True,
    ),
    ("api:rating-skip", "POST"): Call(
        kwargs=lambda w, a: {"slug": w.alpha.slug, "assignment_id": _lease(w, a).id}
    ),
    ("api:rating-flag", "POST"): Call(
        kwargs=lambda w, a: {"slug": w.alpha.slug, "assignment_id": _lease(w, a).id},
        data=lambda w, a: {"reason": "other", "note": "Unreadable."},
        json=True,
    ),
    ("api:export", "GET"): Call(token=True),
    ("api:pair-detail", "GET"): Call(kwargs=_pair),
    ("api:pair-adjudication", "POST"): Call(
        kwargs=_pair, data=lambda w, a: {"decision": "tie", "note": ""}, json=True
    ),
    ("api:pair-adjudication", "DELETE"): Call(kwargs=_adjudicated),
    ("training-api:run-detail", "GET"): Call(kwargs=lambda w, a: {"run_id": w.run.id}),
    ("training-api:model-publish", "POST"): Call(kwargs=_version),
    ("training-api:model-download", "GET"): Call(kwargs=_version),
    ("training-api:score", "POST"): Call(
        data=lambda w, a: {"items": [{"prompt": "Hi?", "response": "Hello."}]}, json=True
    ),
}


def _call_for(route: str, method: str) -> Call:
    """The row's call; a row without one takes its route's URL kwargs and sends no body."""
    if (route, method) in CALLS:
        return CALLS[route, method]
    same_route = next((call for (r, _), call in CALLS.items() if r == route), Call())
    return Call(kwargs=same_route.kwargs, token=same_route.token)


def _fingerprint(skip_leases_of: Any = None) -> dict[str, str]:
    """A digest of every row the app's actions could touch: a refused request must leave all of
    them as they were. `skip_leases_of`: a rater whose active leases do not count (the rater page
    answers a refused post with the next pair, which leases one). PostgreSQL digests all tables
    in one query; SQLite, which has no md5, sends the rows to be digested here."""
    models = [
        User,
        Token,
        Project,
        Membership,
        Invitation,
        Batch,
        Pair,
        Assignment,
        Judgment,
        AgreementReport,
        TrainingRun,
        ModelVersion,
        Adjudication,
    ]
    quote = connection.ops.quote_name
    selects: dict[str, tuple[str, list[Any], str]] = {}
    for model in models:
        # last_login moves when the test client logs in; it is no data of the app.
        columns = ", ".join(
            quote(f.column) for f in model._meta.concrete_fields if f.name != "last_login"
        )
        where, params = "", []
        if model is Assignment and skip_leases_of is not None:
            where, params = "WHERE NOT (rater_id = %s AND status = 'active')", [skip_leases_of.pk]
        rows = f"SELECT {columns} FROM {quote(model._meta.db_table)} {where}"  # noqa: S608
        selects[model.__name__] = (rows, params, quote(model._meta.pk.column))
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                " UNION ALL ".join(
                    f"SELECT '{name}', count(*), md5(coalesce(string_agg((t.*)::text, '|' "  # noqa: S608
                    f"ORDER BY t.{pk}), '')) FROM ({rows}) AS t"
                    for name, (rows, _, pk) in selects.items()
                ),
                [param for _, params, _ in selects.values() for param in params],
            )
            return {name: f"{count}:{digest}" for name, count, digest in cursor.fetchall()}
        digests = {}
        for name, (rows, params, pk) in selects.items():
            cursor.execute(f"{rows} ORDER BY {pk}", params)
            found = cursor.fetchall()
            digests[name] = f"{len(found)}:{hashlib.sha256(repr(found).encode()).hexdigest()}"
        return digests


_CLIENT: list[Client] = []


def _client(world: World, actor: str, *, token: bool = False) -> Client:
    """One test client for the module, its cookies cleared: each new Client loads the middleware
    again, and WhiteNoise then scans every static file (a quarter of a second each time).
    `token`: the actor asks with their API token, and without a session."""
    if not _CLIENT:
        _CLIENT.append(Client())
    client = _CLIENT[0]
    client.cookies = SimpleCookie()
    client.defaults.pop("HTTP_AUTHORIZATION", None)
    if actor != "anon" and token:
        client.defaults["HTTP_AUTHORIZATION"] = f"Token {world.tokens[actor]}"
    elif actor != "anon":
        client.force_login(world.users[actor])
    return client


def _request(client: Client, method: str, url: str, call: Call, w: World, actor: str):
    data = call.data(w, actor)
    headers = {"HX-Request": "true"} if call.htmx else {}
    if method == "GET":
        return client.get(url, data, headers=headers)
    if call.json:
        return client.generic(
            method, url, json.dumps(data), content_type="application/json", headers=headers
        )
    if method == "POST":
        return client.post(url, data, headers=headers)
    return client.generic(method, url, headers=headers)


def _consume(response) -> None:
    """Read a streamed body to its end (the test client closes the response then; closing it
    here would fire request_finished, whose handler drops the test's connection)."""
    if getattr(response, "streaming", False):
        b"".join(response.streaming_content)


def _refused(status: int, actor: str) -> bool:
    return status >= 400 or (actor == "anon" and status in (302, 401))


def _cells() -> Iterator[Any]:
    for (route, method), expected in MATRIX.items():
        for column in COLUMNS:
            for actor in ACTORS[column]:
                status = getattr(expected, column)
                yield pytest.param(
                    route, method, actor, status, id=f"{method} {route} as {actor} -> {status}"
                )


@pytest.mark.parametrize(("route", "method", "actor", "expected"), list(_cells()))
def test_cell(world: World, db, route: str, method: str, actor: str, expected: int) -> None:
    call = _call_for(route, method)
    url = reverse(route, kwargs=call.kwargs(world, actor))
    client = _client(world, actor, token=call.token)
    before = _fingerprint()

    response = _request(client, method, url, call, world, actor)
    _consume(response)

    assert response.status_code == expected, getattr(response, "content", b"")[:500]
    if _refused(expected, actor) and route not in PUBLIC:
        assert _fingerprint() == before, "a refused request changed data"
    if actor == "anon" and expected == 302 and route not in PUBLIC:
        assert response["Location"].startswith(("/login/", "/admin/login/"))


# ------------------------------------------------------------------------------ other methods


def _unlisted_methods() -> Iterator[Any]:
    routes: dict[str, set[str]] = {}
    for route, method in MATRIX:
        routes.setdefault(route, set()).add(method)
    for route, listed in routes.items():
        for method in METHODS:
            if method not in listed:
                for actor in ("anon", "super"):
                    yield pytest.param(route, method, actor, id=f"{method} {route} as {actor}")


@pytest.mark.parametrize(("route", "method", "actor"), list(_unlisted_methods()))
def test_unlisted_method_is_not_allowed(world: World, db, route: str, method: str, actor: str):
    """A method the matrix does not list: 405, even for a superuser, who passes every other
    check (anonymous callers are sent to log in first)."""
    listed = next(m for (r, m) in MATRIX if r == route)
    call = _call_for(route, listed)
    url = reverse(route, kwargs=call.kwargs(world, actor))
    client = _client(world, actor, token=call.token)
    before = _fingerprint()

    response = client.generic(method, url)
    _consume(response)

    expected = 405
    if actor == "anon" and route not in PUBLIC:
        expected = 401 if url.startswith("/api/") else 302
    assert response.status_code == expected
    assert _fingerprint() == before


# ------------------------------------------------------------------------------ completeness


def _routes(resolver: URLResolver, namespace: str = "") -> Iterator[tuple[str, str, str]]:
    """(namespace, name, pattern) of every route, included URLconfs walked recursively."""
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _routes(entry, inner)
        elif isinstance(entry, URLPattern):
            yield namespace, entry.name or "", str(entry.pattern)


def test_every_route_is_in_the_matrix() -> None:
    covered = {route for route, _ in MATRIX}
    missing = []
    for namespace, name, pattern in _routes(get_resolver()):
        if namespace.split(":")[0] in NOT_IN_MATRIX:
            continue
        if f"{namespace}{name}" not in covered:
            missing.append(f"{namespace}{name or '(unnamed)'} at {pattern}")
    assert not missing, "routes without rows in MATRIX: " + ", ".join(sorted(missing))
    assert set(CALLS) <= set(MATRIX), "CALLS names a row that MATRIX lacks"


# ------------------------------------------------------------------------------ ids at +-1


IDOR = {
    # kind: (route, method, kwargs(slug, obj) or None when the id goes in the body, body)
    "batch": [
        ("api:batch-detail", "GET", lambda s, o: {"slug": s, "batch_id": o.id}),
        ("api:batch-rejects", "GET", lambda s, o: {"slug": s, "batch_id": o.id}),
        ("annotation:batch-rejects", "GET", lambda s, o: {"slug": s, "batch_id": o.id}),
        ("api:batch-retire", "POST", lambda s, o: {"slug": s, "batch_id": o.id}),
        ("api:batch-unretire", "POST", lambda s, o: {"slug": s, "batch_id": o.id}),
        ("annotation:batch-progress", "GET", lambda s, o: {"slug": s, "batch_id": o.id}),
        ("annotation:batch-retire", "POST", lambda s, o: {"slug": s, "batch_id": o.id}),
        ("annotation:batch-unretire", "POST", lambda s, o: {"slug": s, "batch_id": o.id}),
    ],
    "membership": [
        ("annotation:member-role", "POST", lambda s, o: {"slug": s, "membership_id": o.id}),
        ("annotation:member-remove", "POST", lambda s, o: {"slug": s, "membership_id": o.id}),
        ("annotation:member-deactivate", "POST", lambda s, o: {"slug": s, "membership_id": o.id}),
        ("annotation:rater-unpause", "POST", lambda s, o: {"slug": s, "user_id": o.user_id}),
        ("api:member-detail", "DELETE", lambda s, o: {"slug": s, "username": o.user.username}),
    ],
    "invitation": [
        ("annotation:invitation-revoke", "POST", lambda s, o: {"slug": s, "invitation_id": o.id}),
    ],
    "run": [
        ("rewardtrain:run-status", "GET", lambda s, o: {"slug": s, "run_id": o.id}),
        ("training-api:run-detail", "GET", lambda s, o: {"run_id": o.id}),
    ],
    "assignment": [
        ("api:rating-skip", "POST", lambda s, o: {"slug": s, "assignment_id": o.id}),
        ("api:rating-flag", "POST", lambda s, o: {"slug": s, "assignment_id": o.id}),
        ("api:rating-judgments", "POST", None),
        ("annotation:rate-skip", "POST", None),
        ("annotation:rate-flag", "POST", None),
        ("annotation:rate", "POST", None),
    ],
}


def _idor_cases() -> Iterator[Any]:
    for kind, routes in IDOR.items():
        for route, method, kwargs in routes:
            for asker in ("alpha", "beta"):
                yield pytest.param(kind, route, method, kwargs, asker, id=f"{route} {asker}")


@pytest.mark.parametrize(("kind", "route", "method", "kwargs", "asker"), list(_idor_cases()))
def test_ids_around(world: World, db, kind, route, method, kwargs, asker) -> None:
    """A member of one project, in their own project's URLs, asks for the other project's object
    whose id is one of their own objects' id +-1 (the objects are interleaved): 404 or, for
    rating, "not leased to you", and nothing changes."""
    first, middle, last = world.interleaved[kind]
    if asker == "alpha":
        slug, targets = world.alpha.slug, [middle]
        actor = "rater" if kind == "assignment" else "admin"
    else:
        slug, targets = world.beta.slug, [first, last]
        actor = "rater@beta" if kind == "assignment" else "admin@beta"
    if kind == "membership":
        # Deactivation also needs site staff: make the admin staff so the only thing between
        # them and the other project's member is the project boundary.
        User.objects.filter(pk=world.users[actor].pk).update(is_staff=True)
    client = _client(world, actor)
    page = route in ("annotation:rate", "annotation:rate-skip", "annotation:rate-flag")
    for target in targets:
        before = _fingerprint(world.users[actor] if page else None)
        if kwargs is None:
            url = reverse(route, kwargs={"slug": slug})
            body = {"assignment": target.id, "choice": "left", "strength": 2}
            if route == "annotation:rate-flag":
                body = {"assignment": target.id, "reason": "other"}
            if route.startswith("api:"):
                response = client.post(url, body, content_type="application/json")
            else:
                response = client.post(url, body)
        else:
            url = reverse(route, kwargs=kwargs(slug, target))
            # A flag goes with a valid body: what is refused is the lease, not the request.
            flag = json.dumps({"reason": "other"}) if route == "api:rating-flag" else ""
            response = client.generic(
                method, url, flag, content_type="application/json", headers={"HX-Request": "true"}
            )
        _consume(response)
        if page:
            # The rater page answers a pair not leased to you with your own next pair.
            assert response.status_code == 200
        else:
            assert response.status_code == 404, (route, target.pk)
        assert _fingerprint(world.users[actor] if page else None) == before, (route, target.pk)


# ------------------------------------------------------------------------------ accounts


@dataclass(frozen=True)
class Cell:
    status: int
    done: bool  # the account really changed (token issued, deactivated, edited)


def Y(status: int) -> Cell:
    return Cell(status, done=True)


def N(status: int) -> Cell:
    return Cell(status, done=False)


ACCOUNT_ACTORS = ("anon", "rater", "lead", "admin", "staff", "super")
ACCOUNT_TARGETS = ("self", "user", "staff", "super")
# Every endpoint that acts on an account, every actor against every kind of target: oneself, a
# plain user, another staff user, another superuser (reliability.md item 8). One rule decides
# them all (annotation.selectors.people.user_manage_refusal): staff manage plain users and
# themselves; only a superuser manages another staff user or superuser. For the members page,
# staff and superusers are made admins of alpha first, so that the project boundary (covered
# by MATRIX) is not what refuses them; for the Django admin, staff are given the permission to
# change users, so that the rule is what refuses them. Anonymous callers have no "self" (None).
# fmt: off
ACCOUNT_MATRIX: dict[tuple[str, str], dict[str, tuple[Cell | None, ...]]] = {
    #                              self        user       staff      super
    ("api:user-token", "POST"): {
        "anon":                    (None,      N(401),    N(401),    N(401)),
        "rater":                   (N(403),    N(403),    N(403),    N(403)),
        "lead":                    (N(403),    N(403),    N(403),    N(403)),
        "admin":                   (N(403),    N(403),    N(403),    N(403)),
        "staff":                   (Y(201),    Y(201),    N(403),    N(403)),
        "super":                   (Y(201),    Y(201),    Y(201),    Y(201)),
    },
    # Nobody deactivates their own account: that refusal is a message on the page.
    ("annotation:member-deactivate", "POST"): {
        "anon":                    (None,      N(302),    N(302),    N(302)),
        "rater":                   (N(403),    N(403),    N(403),    N(403)),
        "lead":                    (N(403),    N(403),    N(403),    N(403)),
        "admin":                   (N(403),    N(403),    N(403),    N(403)),
        "staff":                   (N(302),    Y(302),    N(403),    N(403)),
        "super":                   (N(302),    Y(302),    Y(302),    Y(302)),
    },
    # Only staff get past the admin's login; the rest are sent to it.
    ("admin:auth_user_change", "POST"): {
        "anon":                    (None,      N(302),    N(302),    N(302)),
        "rater":                   (N(302),    N(302),    N(302),    N(302)),
        "lead":                    (N(302),    N(302),    N(302),    N(302)),
        "admin":                   (N(302),    N(302),    N(302),    N(302)),
        "staff":                   (Y(302),    Y(302),    N(403),    N(403)),
        "super":                   (Y(302),    Y(302),    Y(302),    Y(302)),
    },
}
# fmt: on
EDITED_EMAIL = "edited@example.org"


def _account_target(world: World, actor: str, kind: str) -> Any:
    if kind == "self":
        return world.users[actor]
    if kind == "user":
        return world.target
    return world.peers[kind]


def _account_cells() -> Iterator[Any]:
    for (route, method), rows in ACCOUNT_MATRIX.items():
        for actor in ACCOUNT_ACTORS:
            for kind, cell in zip(ACCOUNT_TARGETS, rows[actor], strict=True):
                if cell is not None:
                    label = f"{'done' if cell.done else 'refused'} {cell.status}"
                    yield pytest.param(
                        route, method, actor, kind, cell, id=f"{route} {actor} on {kind}: {label}"
                    )


def _admin_form(target: Any) -> dict[str, str]:
    """The admin's change form for `target` as it is, with a new e-mail address."""
    data = {
        "username": target.username,
        "email": EDITED_EMAIL,
        "is_active": "on",
        "date_joined_0": target.date_joined.strftime("%Y-%m-%d"),
        "date_joined_1": target.date_joined.strftime("%H:%M:%S"),
    }
    for flag in ("is_staff", "is_superuser"):
        if getattr(target, flag):
            data[flag] = "on"
    return data


def _account_url(world: World, route: str, actor: str, target: Any) -> str:
    if route == "annotation:member-deactivate":
        if actor in ("staff", "super"):
            Membership.objects.update_or_create(
                project=world.alpha, user=world.users[actor], defaults={"role": Role.ADMIN}
            )
        membership = Membership.objects.get(project=world.alpha, user=target)
        return reverse(route, kwargs={"slug": world.alpha.slug, "membership_id": membership.id})
    if route == "admin:auth_user_change":
        if actor == "staff":
            world.users["staff"].user_permissions.add(
                Permission.objects.get(codename="change_user", content_type__app_label="auth")
            )
        return reverse(route, kwargs={"object_id": target.pk})
    return reverse(route, kwargs={"user_id": target.pk})


def _account_changed(route: str, target: Any, response: Any) -> bool:
    target.refresh_from_db()
    if route == "api:user-token":
        return Token.objects.filter(user=target, key=response.json().get("token")).exists()
    if route == "annotation:member-deactivate":
        return not target.is_active
    return target.email == EDITED_EMAIL


@pytest.mark.parametrize(("route", "method", "actor", "kind", "cell"), list(_account_cells()))
def test_account_cell(world: World, db, route: str, method: str, actor: str, kind: str, cell: Cell):
    target = _account_target(world, actor, kind)
    url = _account_url(world, route, actor, target)
    data = _admin_form(target) if route == "admin:auth_user_change" else {}
    if route == "annotation:member-deactivate":
        data = {"confirm": "yes"}  # past the confirmation step: the POST that acts
    client = _client(world, actor)
    before = _fingerprint()

    response = client.post(url, data)

    assert response.status_code == cell.status, response.content[:500]
    if cell.done:
        assert _account_changed(route, target, response)
    else:
        assert _fingerprint() == before, "a refused request changed an account"


@pytest.mark.parametrize("actor", ["rater", "lead", "admin", "super"])
def test_export_api_refuses_a_session(world: World, db, actor: str) -> None:
    """A cross-site GET carries the session cookie: the export API answers it 401, for every
    role, so another site cannot make a browser start exports (reliability.md item 7)."""
    client = _client(world, actor)
    response = client.get(reverse("api:export", kwargs={"slug": world.alpha.slug}))
    _consume(response)
    assert response.status_code == 401
