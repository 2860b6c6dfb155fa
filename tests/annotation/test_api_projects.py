"""GET and PATCH /api/v1/projects/{slug}/ cover every setting of the settings page, and every
write endpoint answers an unknown body field with a 400 that names it (issue 13, item 6)."""

import io

import pytest
from rest_framework.test import APIClient

from annotation.models import Judgment, Project
from annotation.services.projects import PROJECT_EDITABLE_FIELDS
from tests.factories import AssignmentFactory, UserFactory


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def url(project) -> str:
    return f"/api/v1/projects/{project.slug}/"


def test_get_shows_every_setting_the_settings_page_edits(project, rater):
    body = api(rater).get(url(project)).json()
    assert set(body) == {"slug", *PROJECT_EDITABLE_FIELDS}
    assert body["raters_per_pair"] == project.raters_per_pair


def test_an_admin_patches_settings_through_the_page_rules(project, admin_member):
    changes = {
        "name": "Renamed",
        "raters_per_pair": 4,
        "max_raters_per_pair": 6,
        "criteria": ["helpfulness", "harmlessness"],
        "use_strength": False,
        "gold_rate": 0.2,
        "assignment_order": "uncertainty",
        "exploration_share": 0.25,
        "train_config": {"epochs": 2},
    }
    response = api(admin_member).patch(url(project), changes, format="json")

    assert response.status_code == 200, response.json()
    project.refresh_from_db()
    for name, value in changes.items():
        assert getattr(project, name) == value


def test_a_patch_that_breaks_a_rule_changes_nothing_and_names_the_field(project, admin_member):
    before = project.raters_per_pair
    response = api(admin_member).patch(
        url(project), {"raters_per_pair": 9, "max_raters_per_pair": 3}, format="json"
    )
    assert response.status_code == 400
    assert "max_raters_per_pair" in str(response.json())
    project.refresh_from_db()
    assert project.raters_per_pair == before


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("exploration_share", 1.5, "less than or equal to 1"),
        ("exploration_share", -0.1, "greater than or equal to 0"),
        ("assignment_order", "most_uncertain", "not one of the available choices"),
    ],
)
def test_a_bad_serving_order_setting_is_a_400_naming_the_field_and_why(
    project, admin_member, field, value, message
):
    response = api(admin_member).patch(url(project), {field: value}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert message in response.json()[field][0]


@pytest.mark.parametrize("field", ["slug", "colour", "stats"])
def test_a_patch_with_an_unknown_field_is_a_400_naming_it(project, admin_member, field):
    response = api(admin_member).patch(url(project), {field: "x", "name": "N"}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == [field]
    project.refresh_from_db()
    assert project.name != "N"


def test_only_admins_patch(project, lead, rater):
    for user in (lead, rater):
        assert api(user).patch(url(project), {"name": "N"}, format="json").status_code == 403


def test_create_takes_the_overlap_cap_and_refuses_unknown_fields(staff):
    created = api(staff).post(
        "/api/v1/projects/",
        {"slug": "gamma", "name": "G", "raters_per_pair": 2, "max_raters_per_pair": 7},
        format="json",
    )
    assert created.status_code == 201
    assert Project.objects.get(slug="gamma").max_raters_per_pair == 7

    refused = api(staff).post(
        "/api/v1/projects/", {"slug": "delta", "name": "D", "colour": "red"}, format="json"
    )
    assert refused.status_code == 400
    assert list(refused.json()) == ["colour"]
    assert not Project.objects.filter(slug="delta").exists()


def test_other_write_endpoints_name_unknown_fields(
    project, admin_member, rater, settings, tmp_path
):
    settings.IMPORT_UPLOAD_DIR = tmp_path
    UserFactory(username="newcomer")
    member = api(admin_member).post(
        f"{url(project)}members/", {"username": "newcomer", "role": "rater", "x": 1}, format="json"
    )
    assert (member.status_code, list(member.json())) == (400, ["x"])

    fileobj = io.BytesIO(b'{"prompt": "p", "response_a": "a", "response_b": "b"}\n')
    fileobj.name = "x.jsonl"
    batch = api(admin_member).post(
        f"{url(project)}batches/", {"file": fileobj, "on_invalide": "skip"}, format="multipart"
    )
    assert batch.status_code == 400
    assert [e["field"] for e in batch.json()["errors"]] == ["on_invalide"]

    assignment = AssignmentFactory(
        pair__project=project, pair__prompt__batch__project=project, rater=rater
    )
    judgment = api(rater).post(
        f"{url(project)}judgments/",
        {"assignment": assignment.id, "choice": "a", "rater": admin_member.id},
        format="json",
    )
    assert judgment.status_code == 400
    assert "rater" in judgment.json()
    assert not Judgment.objects.exists()
