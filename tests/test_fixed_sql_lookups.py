"""The lookups every request makes (token, project membership) use SQL written once
(config.rows): what they return must be exactly what the ORM would have returned."""

import pytest
from django.http import Http404
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from annotation.models import Membership, Project
from annotation.selectors.access import project_access


def _fields(instance):
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def test_project_access_reads_the_same_project_and_membership_as_the_orm(project, rater):
    Project.objects.filter(pk=project.pk).update(
        criteria=["helpfulness", "harmlessness"], stats={"pairs": 3}, lease_minutes=7
    )
    Membership.objects.filter(user=rater).update(paused_at=timezone.now())

    access = project_access(user=rater, slug="alpha")

    assert _fields(access.project) == _fields(Project.objects.get(pk=project.pk))
    assert _fields(access.membership) == _fields(Membership.objects.get(user=rater))
    assert access.project.criteria == ["helpfulness", "harmlessness"]
    assert access.project.lease_duration.total_seconds() == 7 * 60
    assert access.is_paused


def test_project_access_refuses_an_archived_project_and_other_members(project, rater, outsider):
    with pytest.raises(Http404):
        project_access(user=outsider, slug="alpha")
    Project.objects.filter(pk=project.pk).update(archived_at=timezone.now())
    with pytest.raises(Http404):
        project_access(user=rater, slug="alpha")


def test_a_token_authenticates_its_user_with_every_field_read(rater):
    token = Token.objects.create(user=rater)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    answer = api.get("/api/v1/projects/")

    assert answer.status_code == 200
    assert [p["slug"] for p in answer.json()] == ["alpha"]
    request_user = answer.wsgi_request.user
    assert _fields(request_user) == _fields(type(rater).objects.get(pk=rater.pk))
    assert answer.wsgi_request.auth == token


@pytest.mark.parametrize("header", ["Token wrong", "Token ", "Token a b"])
def test_a_bad_token_is_refused_with_401(rater, header):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=header)
    assert api.get("/api/v1/projects/").status_code == 401


def test_the_token_of_a_deactivated_user_is_refused(rater):
    token = Token.objects.create(user=rater)
    type(rater).objects.filter(pk=rater.pk).update(is_active=False)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")

    answer = api.get("/api/v1/projects/")

    assert answer.status_code == 401
    assert "inactive" in answer.json()["detail"]
