"""Creating projects (site staff, and accounts with `annotation.add_project`) and editing their
settings (project admins)."""

import json
from pathlib import Path

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Membership, Pair, Project
from annotation.selectors.server_paths import PUBLIC_REFUSAL
from annotation.services.projects import project_update, user_allow_project_creation
from tests.conftest import login
from tests.factories import MembershipFactory, PairFactory

SETTINGS_FIELDS = {
    "name": "Alpha renamed",
    "guidelines": "Prefer **honest** answers.",
    "choice_scheme": "ab_tie",
    "use_strength": "on",
    "criteria": "helpfulness, harmlessness",
    "rationale": "required",
    "raters_per_pair": "3",
    "max_raters_per_pair": "5",
    "gold_rate": "0.1",
    "pairing_rule": "all",
    "pairs_per_prompt": "3",
    "assignment_order": "uncertainty",
    "exploration_share": "0.2",
    "lease_minutes": "20",
    "flag_threshold": "3",
    "base_model": "",
    "train_config": '{"epochs": 2}',
    "retrain_min_new_judgments": "100",
    "full_retrain_every": "4",
    "auto_retrain": "",
    "promote_min_gain": "0.5",
    "too_fast_ms": "3000",
    "min_gold_accuracy": "0.8",
    "min_agreement": "0.6",
    "quality_min_judgments": "40",
    "auto_pause": "on",
    "aggregation": "dawid_skene",
    "min_posterior": "0.6",
}


def _settings_url(project):
    return reverse("annotation:project-settings", args=[project.slug])


def test_staff_create_a_project_and_become_its_admin(client, staff):
    login(client, staff)
    response = client.post(
        reverse("annotation:project-create"), {**SETTINGS_FIELDS, "slug": "gamma", "name": "Gamma"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/p/gamma/batches/"  # the next step: upload a batch
    project = Project.objects.get(slug="gamma")
    assert project.criteria == ["helpfulness", "harmlessness"]
    assert project.train_config == {"epochs": 2}
    assert project.auto_retrain is False
    assert Membership.objects.get(project=project, user=staff).role == Membership.Role.ADMIN


def test_the_home_page_offers_new_project_to_staff_only(client, staff, rater):
    login(client, staff)
    assert b"New project" in client.get("/").content
    login(client, rater)
    assert b"New project" not in client.get("/").content


def test_after_creating_a_project_the_page_points_to_uploading_a_batch(client, staff):
    login(client, staff)
    response = client.post(
        reverse("annotation:project-create"),
        {**SETTINGS_FIELDS, "slug": "gamma", "name": "Gamma"},
        follow=True,
    )
    page = response.content.decode()
    assert "Next: upload a batch" in page
    assert 'id="upload-form"' in page
    overview = client.get(reverse("annotation:overview", args=["gamma"])).content.decode()
    assert 'Next step: <a href="/p/gamma/batches/">upload a batch</a>' in overview


def test_a_project_admin_without_the_permission_gets_a_page_saying_who_may_create(
    client, admin_member
):
    login(client, admin_member)
    response = client.get(reverse("annotation:project-create"))
    assert response.status_code == 403
    page = response.content.decode()
    assert "site staff, and accounts given the “Can add project” permission" in page
    assert "Ask a site administrator" in page
    assert 'href="/"' in page  # a way back
    assert 'class="brand"' in page  # in the site's layout


def test_an_account_with_the_add_project_permission_creates_projects_on_page_and_api(
    client, admin_member
):
    user_allow_project_creation(user=admin_member)
    login(client, admin_member)
    assert b"New project" in client.get("/").content
    response = client.post(
        reverse("annotation:project-create"), {**SETTINGS_FIELDS, "slug": "gamma", "name": "G"}
    )
    assert response.status_code == 302
    api = APIClient()
    api.force_authenticate(admin_member)
    created = api.post("/api/v1/projects/", {"slug": "delta", "name": "Delta"}, format="json")
    assert created.status_code == 201
    roles = Membership.objects.filter(user=admin_member, project__slug__in=["gamma", "delta"])
    assert {m.role for m in roles} == {Membership.Role.ADMIN}


def test_only_staff_and_permitted_accounts_may_create_projects(client, admin_member):
    login(client, admin_member)
    assert client.get(reverse("annotation:project-create")).status_code == 403
    response = client.post(
        reverse("annotation:project-create"), {**SETTINGS_FIELDS, "slug": "gamma"}
    )
    assert response.status_code == 403
    assert not Project.objects.filter(slug="gamma").exists()


def test_a_taken_slug_is_refused_with_a_message(client, staff, project):
    login(client, staff)
    response = client.post(
        reverse("annotation:project-create"), {**SETTINGS_FIELDS, "slug": project.slug}
    )
    assert response.status_code == 200
    assert "already exists" in response.context["form"].errors["slug"][0]


def test_an_admin_edits_the_settings(client, project, admin_member):
    login(client, admin_member)
    response = client.post(_settings_url(project), SETTINGS_FIELDS)
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.name == "Alpha renamed"
    assert project.choice_scheme == "ab_tie"
    assert project.rationale == "required"
    assert project.lease_minutes == 20
    assert project.flag_threshold == 3
    assert project.criteria == ["helpfulness", "harmlessness"]
    assert (project.too_fast_ms, project.min_gold_accuracy, project.auto_pause) == (3000, 0.8, True)
    assert project.promote_min_gain == 0.5
    assert (project.aggregation, project.min_posterior) == ("dawid_skene", 0.6)
    assert (project.assignment_order, project.exploration_share) == ("uncertainty", 0.2)


def test_the_settings_page_shows_criteria_comma_separated_and_the_preview(
    client, project, admin_member
):
    Project.objects.filter(pk=project.pk).update(
        criteria=["helpfulness", "honesty"], guidelines="Use *care*."
    )
    login(client, admin_member)
    response = client.get(_settings_url(project))
    assert response.status_code == 200
    assert b'value="helpfulness, honesty"' in response.content
    assert b"<em>care</em>" in response.content
    assert b"Members" in response.content  # the nav links for admins


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("criteria", "helpfulness, Helpfulness", "listed twice"),
        ("criteria", "ok, <script>", "letters, digits"),
        ("criteria", ",".join(f"c{n}" for n in range(11)), "At most 10"),
        ("train_config", "[1, 2]", "JSON object"),
        ("train_config", "{not json", "Enter a valid JSON"),
        ("max_raters_per_pair", "2", "at least the raters per pair"),
        ("gold_rate", "1.5", "less than or equal to 1"),
        ("exploration_share", "1.1", "less than or equal to 1"),
        ("exploration_share", "ten percent", "Enter a number"),
        ("base_model", "sentence-transformers/all-MiniLM-L6-v2", "Not an allowed base model"),
        ("base_model", "/nonexistent/model", "Not an allowed base model"),
        ("raters_per_pair", "0", "greater than or equal to 1"),
    ],
)
def test_invalid_settings_are_refused_with_the_field_and_reason(
    client, project, admin_member, field, value, message
):
    login(client, admin_member)
    response = client.post(_settings_url(project), {**SETTINGS_FIELDS, field: value})
    assert response.status_code == 200
    errors = response.context["form"].errors[field]
    assert any(message in error for error in errors), errors
    assert not response.context["form"].non_field_errors()
    assert b"Nothing was saved" in response.content
    project.refresh_from_db()
    assert project.name == "Alpha"


def _model_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def test_a_base_model_under_an_allowed_root_is_accepted(
    client, project, admin_member, tmp_path, settings
):
    settings.BASE_MODEL_ROOTS = [tmp_path / "models"]
    model = _model_dir(tmp_path / "models" / "tiny")
    login(client, admin_member)
    response = client.post(_settings_url(project), {**SETTINGS_FIELDS, "base_model": str(model)})
    assert response.status_code == 302
    project.refresh_from_db()
    assert project.base_model == str(model)


def test_an_admin_cannot_train_from_another_projects_checkpoint(
    client, project, admin_member, tmp_path, settings
):
    """Even when an allowed root contains the checkpoint store, a project's base model is
    never a checkpoint: another project's published model stays that project's."""
    settings.BASE_MODEL_ROOTS = [tmp_path]
    settings.CHECKPOINT_ROOT = tmp_path / "checkpoints"
    theirs = _model_dir(tmp_path / "checkpoints" / "other-project" / "v1")
    login(client, admin_member)
    response = client.post(_settings_url(project), {**SETTINGS_FIELDS, "base_model": str(theirs)})
    assert response.status_code == 200
    assert "Not an allowed base model" in response.context["form"].errors["base_model"][0]
    project.refresh_from_db()
    assert project.base_model == ""


@pytest.mark.parametrize("kind", ["outside the roots", "missing", "no config.json", "traversal"])
def test_a_refused_base_model_tells_a_project_admin_no_server_path(
    client, project, admin_member, tmp_path, settings, kind
):
    """One message whatever the reason, so the field cannot probe which directories exist."""
    settings.BASE_MODEL_ROOTS = [tmp_path / "models"]
    (tmp_path / "models" / "empty").mkdir(parents=True)
    _model_dir(tmp_path / "elsewhere")
    value = {
        "outside the roots": str(tmp_path / "elsewhere"),
        "missing": str(tmp_path / "models" / "nothing"),
        "no config.json": str(tmp_path / "models" / "empty"),
        "traversal": str(tmp_path / "models" / ".." / "elsewhere"),
    }[kind]
    login(client, admin_member)
    response = client.post(_settings_url(project), {**SETTINGS_FIELDS, "base_model": value})
    errors = response.context["form"].errors["base_model"]
    assert errors == [PUBLIC_REFUSAL]
    assert response.content.decode().count(str(tmp_path)) == 1  # only their own input, echoed


def test_staff_are_told_why_a_base_model_is_refused(client, project, staff, tmp_path, settings):
    settings.BASE_MODEL_ROOTS = [tmp_path]
    (tmp_path / "empty").mkdir()
    MembershipFactory(project=project, user=staff, role=Membership.Role.ADMIN)
    login(client, staff)
    response = client.post(
        _settings_url(project), {**SETTINGS_FIELDS, "base_model": str(tmp_path / "empty")}
    )
    assert "has no config.json" in response.context["form"].errors["base_model"][0]


def test_mass_assignment_of_fields_outside_the_form_is_ignored(client, project, admin_member):
    login(client, admin_member)
    response = client.post(
        _settings_url(project),
        {
            **SETTINGS_FIELDS,
            "slug": "hijacked",
            "archived_at": "2020-01-01T00:00:00Z",
            "stats": json.dumps({"pairs": 99}),
            "is_staff": "on",
            "role": "admin",
        },
    )
    assert response.status_code == 302
    project.refresh_from_db()
    admin_member.refresh_from_db()
    assert project.slug == "alpha"
    assert project.archived_at is None
    assert project.stats == {}
    assert admin_member.is_staff is False


def test_raters_and_leads_get_403_and_other_projects_admins_404(
    client, project, rater, lead, outsider
):
    for user in (rater, lead):
        login(client, user)
        assert client.get(_settings_url(project)).status_code == 403
        assert client.post(_settings_url(project), SETTINGS_FIELDS).status_code == 403
    login(client, outsider)
    assert client.get(_settings_url(project)).status_code == 404
    assert client.post(_settings_url(project), SETTINGS_FIELDS).status_code == 404
    project.refresh_from_db()
    assert project.name == "Alpha"


def test_the_guidelines_preview_renders_sanitised_markdown(client, rater):
    login(client, rater)
    response = client.post(
        reverse("annotation:guidelines-preview"),
        {"guidelines": "# Title\n<script>alert(1)</script> [x](javascript:alert(1))"},
        headers={"HX-Request": "true"},
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "<h1>Title</h1>" in body
    assert "<script>" not in body
    assert 'href="javascript:' not in body
    assert 'id="guidelines-preview"' in body
    assert "hx-disable" in body
    assert "<html" not in body  # only the fragment


def test_the_preview_refuses_overlong_text_with_a_message(client, rater):
    login(client, rater)
    response = client.post(reverse("annotation:guidelines-preview"), {"guidelines": "x" * 100_001})
    assert b"longer than 100,000 characters" in response.content


def test_the_preview_needs_a_login_and_a_post(client, rater):
    assert client.post(reverse("annotation:guidelines-preview")).status_code == 302
    login(client, rater)
    assert client.get(reverse("annotation:guidelines-preview")).status_code == 405


def _pair(project, *, needed, count, **fields):
    return PairFactory(
        project=project,
        prompt__batch__project=project,
        judgments_needed=needed,
        judgments_count=count,
        **fields,
    )


def test_raising_raters_per_pair_reaches_open_pairs_only(project):
    open_pair = _pair(project, needed=3, count=1)
    complete = _pair(project, needed=3, count=3)
    gold = _pair(project, needed=0, count=0, gold_choice="a")
    retired = _pair(project, needed=3, count=0, is_active=False)
    project_update(project=project, raters_per_pair=4)
    counts = dict(Pair.objects.values_list("id", "judgments_needed"))
    assert counts == {open_pair.id: 4, complete.id: 3, gold.id: 0, retired.id: 3}


def test_lowering_raters_per_pair_completes_open_pairs_that_have_enough(project):
    enough = _pair(project, needed=3, count=2)
    fewer = _pair(project, needed=3, count=1)
    project_update(project=project, raters_per_pair=2)
    enough.refresh_from_db()
    fewer.refresh_from_db()
    assert enough.judgments_needed == 2 == enough.judgments_count
    assert fewer.judgments_needed == 2


def test_project_update_refuses_fields_it_does_not_own(project):
    with pytest.raises(ValueError, match="slug"):
        project_update(project=project, slug="other")
