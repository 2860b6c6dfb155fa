"""The OpenAPI schema validates, and every operation in it answers as the schema says.

`manage.py spectacular --validate --fail-on-warn` must pass (issue 4), and schemathesis generates
requests for each operation of `/api/schema/` against the WSGI app, authenticated with the API
token of a project admin (also site staff, so the user endpoints run for real) on a project with
data. Each operation is fuzzed twice: with the ids of real objects in the path, and with
generated ids. Deterministic (derandomized) and bounded, so the whole run stays well under a
minute. Every request runs in a savepoint that is rolled back, so examples do not see each
other's writes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from annotation.models import Assignment, Membership
from annotation.services.agreement import agreement_report_create
from annotation.services.projects import token_issue
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

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = {"real ids": 15, "generated ids": 8}


def test_schema_validates_without_warnings(tmp_path: Path) -> None:
    call_command(
        "spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml")
    )


def _operations() -> list:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        pytest.param(method.upper(), path, ids, id=f"{method.upper()} {path} ({ids})")
        for path, item in schema["paths"].items()
        for method in item
        for ids in EXAMPLES
    ]


@dataclass(frozen=True)
class ApiWorld:
    token: str
    path_parameters: dict[str, object]


@pytest.fixture
def api_world(db, settings, tmp_path) -> Iterator[ApiWorld]:
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    settings.CHECKPOINT_ROOT = tmp_path / "checkpoints"
    project = ProjectFactory(slug="alpha", name="Alpha")
    admin = UserFactory(username="ada", is_staff=True)
    MembershipFactory(project=project, user=admin, role=Membership.Role.ADMIN)
    rater = UserFactory(username="rita")
    MembershipFactory(project=project, user=rater, role=Membership.Role.RATER)
    batch = BatchFactory(project=project, uploaded_by=admin)
    lease = AssignmentFactory(pair=PairFactory(prompt__batch=batch), rater=admin)
    for user in (admin, rater):
        judged = PairFactory(prompt__batch=batch, judgments_count=1, votes_a=1)  # as counted
        JudgmentFactory(
            assignment=AssignmentFactory(pair=judged, rater=user, status=Assignment.Status.DONE)
        )
    agreement_report_create(project=project)
    run = TrainingRun.objects.create(
        project=project, trigger=TrainingRun.Trigger.MANUAL, status=TrainingRun.Status.FAILED
    )
    directory = settings.CHECKPOINT_ROOT / "alpha" / "v1"
    directory.mkdir(parents=True)
    (directory / "config.json").write_bytes(b"{}")
    ModelVersion.objects.create(
        project=project,
        version=1,
        path="alpha/v1",
        file_sha256={"config.json": hashlib.sha256(b"{}").hexdigest()},
    )
    # The WSGI handler closes the connection at each request's start and end when it is not in
    # autocommit, which a test's transaction never is; the test client does the same unhooking.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield ApiWorld(
            token=token_issue(user=admin).key,
            path_parameters={
                "slug": project.slug,
                "batch_id": batch.id,
                "assignment_id": lease.id,
                "pair_id": lease.pair_id,
                "run_id": run.id,
                "version": 1,
                "user_id": rater.id,
                "username": rater.username,
            },
        )
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.mark.parametrize(("method", "path", "ids"), _operations())
def test_operation_conforms_to_the_schema(
    api_world: ApiWorld, method: str, path: str, ids: str
) -> None:
    # Built here, not at import: the app's WhiteNoise wants the static files collected first.
    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    operation = schema[path][method]
    names = {p["name"] for p in operation.definition.raw.get("parameters", []) if p["in"] == "path"}
    fixed = {k: v for k, v in api_world.path_parameters.items() if k in names}
    if ids == "generated ids":
        fixed = {"slug": fixed["slug"]} if "slug" in fixed else {}
    strategy = operation.as_strategy(
        path_parameters=fixed, headers={"Authorization": f"Token {api_world.token}"}
    )

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES[ids],
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        with transaction.atomic():
            response = case.call()
            transaction.set_rollback(True)
        case.validate_response(response, checks=CHECKS)

    check()
