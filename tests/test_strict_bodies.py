"""Every write endpoint of the JSON API answers a body field it does not take with a 400 that
names the field, and does nothing. The endpoints are found by walking the URL resolver, so a new
one is checked without being listed here."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.urls import URLPattern, get_resolver, reverse
from rest_framework.test import APIClient

from annotation.models import Batch, Pair
from rewardtrain.models import ModelVersion, TrainingRun
from tests.factories import MembershipFactory, PairFactory, UserFactory

WRITE_METHODS = ("post", "put", "patch", "delete")
API_NAMESPACES = ("api", "training-api")


def _api_routes() -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(URL name with its namespace, method, parameter names) of each write method of each API
    view."""
    for namespace in API_NAMESPACES:
        resolver = get_resolver().namespace_dict[namespace][1]
        for pattern in resolver.url_patterns:
            assert isinstance(pattern, URLPattern)
            view = getattr(pattern.callback, "view_class", None)
            for method in WRITE_METHODS:
                if view is not None and hasattr(view, method):
                    params = tuple(pattern.pattern.converters)  # type: ignore[attr-defined]
                    yield f"{namespace}:{pattern.name}", method, params


ROUTES = sorted(_api_routes())


@pytest.fixture
def world(project, rater):
    superuser = UserFactory(is_staff=True, is_superuser=True)
    MembershipFactory(project=project, user=superuser, role="admin")
    pair = PairFactory(batch__project=project, project=project)
    ModelVersion.objects.create(project=project, version=1, path=f"{project.slug}/v1")
    kwargs = {
        "slug": project.slug,
        "batch_id": pair.batch_id,
        "pair_id": pair.id,
        "assignment_id": 1,
        "user_id": UserFactory().id,
        "username": rater.username,
        "version": 1,
    }
    return superuser, kwargs


def test_the_walk_finds_the_write_endpoints():
    names = {(name, method) for name, method, _ in ROUTES}
    assert {
        ("api:batch-list", "post"),
        ("api:batch-retire", "post"),
        ("api:rating-skip", "post"),
        ("api:rating-undo", "post"),
        ("api:user-token", "post"),
        ("api:project-detail", "patch"),
        ("training-api:run-list", "post"),
        ("training-api:model-publish", "post"),
        ("training-api:score", "post"),
    } <= names


@pytest.mark.parametrize(
    ("name", "method", "params"), ROUTES, ids=[f"{n}-{m}" for n, m, _ in ROUTES]
)
def test_an_unknown_body_field_is_a_400_that_names_it(world, name, method, params):
    superuser, kwargs = world
    client = APIClient()
    client.force_authenticate(superuser)
    wanted = {key: kwargs[key] for key in params}
    before = (Batch.objects.count(), Pair.objects.count(), TrainingRun.objects.count())

    send = getattr(client, method)
    url = reverse(name, kwargs=wanted)
    body = {"surplus_field": "1"}
    response = send(url, body, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    if response.status_code == 415:  # an endpoint that takes files takes multipart only
        response = send(url, body, format="multipart", HTTP_IDEMPOTENCY_KEY="k-1")

    assert response.status_code == 400, (name, method, response.content)
    assert b"surplus_field" in response.content
    assert before == (Batch.objects.count(), Pair.objects.count(), TrainingRun.objects.count())


def test_a_score_item_with_an_unknown_field_is_named_too(world):
    superuser, kwargs = world
    client = APIClient()
    client.force_authenticate(superuser)

    response = client.post(
        reverse("training-api:score", kwargs={"slug": kwargs["slug"]}),
        {"items": [{"prompt": "p", "response": "r", "model": "x"}]},
        format="json",
    )

    assert response.status_code == 400
    assert "model" in json.dumps(response.json())
