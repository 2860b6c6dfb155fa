"""The first hour in a real browser, one role after another, with axe-core on every page state:
an admin who is not site staff but may start projects (as the demo's admin may) creates a project,
uploads a batch, sets the raters per pair and adds the members; a rater judges the
whole queue to its end page; a lead presses Train now and sees the new version arrive without
reloading the page.

No Celery worker runs: once the page shows the queued run, the test runs the training service
in its own thread, as the worker would, and the page must notice the end by itself.
"""

import json

import pytest

from annotation.models import Assignment, Judgment, Membership, Project
from annotation.services.projects import user_allow_project_creation
from rewardtrain.models import ModelVersion, TrainingRun
from tests.browser.conftest import assert_accessible, log_in
from tests.browser.test_rating_browser import judge, swap_card
from tests.factories import UserFactory
from tests.rewardtrain.helpers import build_tiny_model, trainable_project

pytestmark = pytest.mark.browser

PAIRS = 10


def pairs_file(tmp_path):
    rows = [
        {
            "id": f"q{i}",
            "prompt": f"Tell me about the number {i}.",
            "response_a": f"Gladly: {i} is a fine number, thank you for asking.",
            "response_b": f"No. {i}. Go away.",
        }
        for i in range(PAIRS)
    ]
    path = tmp_path / "first-batch.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def log_out(page) -> None:
    page.get_by_role("button", name="Log out").click()
    page.wait_for_load_state("load")


def admin_sets_up_a_project(page, admin, tmp_path, *, rater, lead) -> Project:
    log_in(page, admin, next_path="/projects/new/")
    page.locator("#id_slug").fill("first-hour")
    page.locator("#id_name").fill("First hour")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url("**/p/first-hour/batches/")  # the next step: upload a batch
    page.get_by_text("Next: upload a batch").wait_for()
    assert_accessible(page)

    page.goto("/p/first-hour/settings/")
    page.locator("#id_raters_per_pair").fill("1")
    page.get_by_role("button", name="Save settings").click()
    page.get_by_text("Settings saved.").wait_for()
    assert_accessible(page)

    page.goto("/p/first-hour/batches/")
    page.get_by_label("File (.jsonl, .csv, or either gzipped)").set_input_files(
        pairs_file(tmp_path)
    )
    page.get_by_role("button", name="Check the file (dry run)").click()
    page.locator("#upload-result").get_by_text("is valid").wait_for()
    assert_accessible(page)
    page.get_by_role("button", name=f"Import {PAIRS} records").click()
    page.locator("#upload-result").get_by_text(f"{PAIRS} new pairs").wait_for()
    assert_accessible(page)

    page.goto("/p/first-hour/members/")
    for user, role in [(rater, "rater"), (lead, "lead")]:
        add = page.locator("form[action$='/members/add/']")
        add.get_by_label("Username").fill(user.get_username())
        add.get_by_label("Role").select_option(role)
        add.get_by_role("button", name="Add member").click()
        page.get_by_role("cell", name=user.get_username()).first.wait_for()
        assert_accessible(page)
    log_out(page)
    project = Project.objects.get(slug="first-hour")
    assert project.raters_per_pair == 1
    assert Membership.objects.get(project=project, user=admin).role == Membership.Role.ADMIN
    return project


def rater_judges_to_the_end(page, rater, project) -> None:
    log_in(page, rater, next_path=f"/p/{project.slug}/rate/")
    for _ in range(PAIRS - 1):
        judge(page, "left")
    swap_card(page, "1", "Enter")  # the last pair: the end page swaps in, no error
    title = page.locator("#pair-card-title")
    assert title.inner_text() == "Nothing left for you right now"
    assert page.locator("#rate-failure").count() == 0
    assert Judgment.objects.filter(rater=rater).count() == PAIRS

    page.reload()  # the end page loads on its own too
    assert title.inner_text() == "Nothing left for you right now"
    assert f"You have judged {PAIRS} pairs" in page.locator("#pair-card").inner_text()
    assert_accessible(page)
    log_out(page)


def lead_trains_and_sees_the_version_arrive(page, lead, project) -> None:
    from rewardtrain.services.runs import training_run_execute

    log_in(page, lead, next_path=f"/p/{project.slug}/training/")
    assert page.get_by_text("No model is published yet").is_visible()
    page.get_by_role("button", name="Train now").click()
    page.locator(".run-card progress").wait_for()
    assert page.get_by_role("button", name="Train now").is_disabled()
    assert_accessible(page)
    page.evaluate("window.notReloaded = true")

    run = TrainingRun.objects.get(project=project)
    finished = training_run_execute(run_id=run.id)  # the worker's job, in this thread
    assert finished.status == TrainingRun.Status.SUCCEEDED, finished.error

    versions = page.locator("#training-versions")
    versions.get_by_role("cell", name="v1", exact=True).wait_for()
    page.locator("#training-summary .published-version").get_by_text("v1").wait_for()
    assert page.get_by_role("button", name="Train now").is_enabled()
    assert page.locator("#active-run-note").count() == 0
    assert "Published as the project's first version." in page.locator(".run-card").inner_text()
    assert page.evaluate("window.notReloaded") is True  # all of it without a reload
    assert ModelVersion.objects.get(project=project).state == ModelVersion.State.PUBLISHED
    assert_accessible(page)


def test_the_first_hour_as_admin_rater_and_lead(browser_page, tmp_path, settings):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    settings.CHECKPOINT_ROOT = tmp_path / "checkpoints"
    settings.BASE_MODEL_ROOTS = [tmp_path]  # the tiny model below is an allowed base model
    page = browser_page
    rater, lead = UserFactory(username="rita"), UserFactory(username="leo")
    admin = user_allow_project_creation(user=UserFactory(username="ada"))  # not staff

    project = admin_sets_up_a_project(page, admin, tmp_path, rater=rater, lead=lead)
    rater_judges_to_the_end(page, rater, project)
    assert Assignment.objects.filter(pair__project=project, status="done").count() == PAIRS
    trainable_project(project, build_tiny_model(tmp_path / "tiny-model"))
    lead_trains_and_sees_the_version_arrive(page, lead, project)

    assert page.dialogs == []
    assert page.csp_errors == []
