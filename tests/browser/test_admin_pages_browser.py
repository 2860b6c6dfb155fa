"""The pages an admin and a lead meet in the first hour, in Chromium, each state checked with
axe-core: no serious or critical violation. Also what only a browser shows: the copy button, the
htmx confirmation dialog of Retire, the agreement page reloading itself once a fresh report is
ready, and the heatmap's labels drawn inside the chart.

axe comes from tests/browser/vendor (tests only, never served); it is evaluated through the
DevTools protocol, so the page's Content-Security-Policy stays in force for the page's own code.
"""

import json
from pathlib import Path

import pytest

from annotation.models import Batch, Membership, Pair
from annotation.services.agreement import agreement_report_create, agreement_report_refresh
from annotation.services.projects import user_allow_project_creation
from tests.browser.conftest import log_in
from tests.factories import JudgmentFactory, MembershipFactory, PairFactory, UserFactory

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
BLOCKING = ("serious", "critical")


def axe_violations(page) -> list[str]:
    """Serious and critical axe violations of the page as it is now, one line each."""
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(AXE.read_text(encoding="utf-8"))
    found = page.evaluate(
        """async () => (await axe.run(document)).violations.map(v => ({
            id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))
        }))"""
    )
    return [f"{v['id']} ({v['impact']}) at {v['nodes']}" for v in found if v["impact"] in BLOCKING]


def assert_accessible(page, state: str) -> None:
    violations = axe_violations(page)
    assert violations == [], f"{state}: {violations}"


def _file(tmp_path, name: str, rows: list[dict]) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_an_admin_starts_a_project_uploads_twice_and_manages_members(
    browser_page, admin_member, rater, tmp_path, settings
):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    user_allow_project_creation(user=admin_member)
    page = browser_page
    log_in(page, admin_member)
    assert_accessible(page, "my projects")

    page.get_by_role("link", name="New project").click()
    assert page.locator("#id_train_config").input_value() == ""
    assert_accessible(page, "new project form")
    page.get_by_label("Slug").fill("gamma")
    page.get_by_label("Name").fill("Gamma")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url("**/p/gamma/batches/")
    assert "Next: upload a batch" in page.locator(".flash").inner_text()
    assert_accessible(page, "batches after creating, with a flash message")

    code = "```python\n" + "x = 1  # " + "long line " * 40 + "\n```"
    rows = [{"prompt": f"Q{i}?", "response_a": code, "response_b": f"B{i}"} for i in range(3)]
    upload = _file(tmp_path, "pairs.jsonl", rows)
    file_field = page.get_by_label("File (.jsonl, .csv, or either gzipped)")
    file_field.set_input_files(upload)
    page.get_by_role("button", name="Check the file (dry run)").click()
    page.get_by_role("region", name="Preview of the first pairs").wait_for()
    assert_accessible(page, "dry run with preview")
    page.get_by_role("button", name="Import 3 records").click()
    page.locator("#upload-result").get_by_text("3 new pairs").wait_for()

    file_field.set_input_files(upload)
    page.get_by_role("button", name="Check the file (dry run)").click()
    page.get_by_text("Duplicate: this file was already imported").wait_for()
    assert not page.get_by_role("button", name="Import 3 records again").is_visible()
    assert_accessible(page, "duplicate dry run")

    # With htmx, Retire asks in a dialog first (the fixture dismisses it: nothing happens).
    page.get_by_role("button", name="Retire…").click()
    page.wait_for_function("() => true")
    assert page.dialogs == ["Retire pairs.jsonl? Its pairs stop being served; the judgments stay."]
    assert Pair.objects.filter(batch=Batch.objects.get(), is_active=True).count() == 3

    MembershipFactory(project=Batch.objects.get().project, user=rater)
    page.goto("/p/gamma/members/")
    assert_accessible(page, "members")
    page.get_by_role("button", name="Make invitation link").click()
    page.get_by_role("button", name="Copy link").click()
    page.get_by_text("Copied to the clipboard.").or_(page.get_by_text("press Ctrl+C")).wait_for()
    assert_accessible(page, "members with an invitation link")
    page.get_by_role("row", name="rita").get_by_role("button", name="Remove from project…").click()
    page.get_by_role("heading", name="Remove rita from Gamma?").wait_for()
    assert_accessible(page, "confirm removal")
    page.get_by_role("button", name="Remove rita").click()
    page.wait_for_url("**/p/gamma/members/")
    assert not Membership.objects.filter(user=rater, project__slug="gamma").exists()

    page.goto("/p/gamma/export/")
    page.get_by_label("Format").select_option("judgments")
    page.get_by_text("judgment rows").wait_for()
    assert_accessible(page, "export")
    page.goto("/p/no-such-project/")
    assert_accessible(page, "404")
    assert page.csp_errors == []


def test_a_lead_reads_the_agreement_charts_and_refresh_reloads_the_page(
    browser_page, project, lead
):
    pair_raters = [MembershipFactory(project=project, user=UserFactory()).user for _ in range(3)]
    for number in range(4):
        pair = PairFactory(project=project)
        for rater, choice in zip(pair_raters, ("a", "a", "ab"[number % 2]), strict=True):
            JudgmentFactory(assignment__pair=pair, assignment__rater=rater, choice=choice)
    agreement_report_create(project=project)
    page = browser_page
    log_in(page, lead, next_path=f"/p/{project.slug}/agreement/")
    chart = page.locator("figure.heatmap svg")
    box = chart.bounding_box()
    assert box["width"] < 320  # three raters: a small grid, not a screenful
    for label in chart.locator("text").all():
        inner = label.bounding_box()
        assert inner["x"] >= box["x"] - 1
        assert inner["x"] + inner["width"] <= box["x"] + box["width"] + 1
        assert inner["y"] >= box["y"] - 1
    assert_accessible(page, "agreement dashboard")

    JudgmentFactory(assignment__pair=PairFactory(project=project), assignment__rater=lead)
    page.get_by_role("button", name="Refresh now").click()
    page.get_by_text("updates by itself when it is ready").wait_for()
    assert_accessible(page, "agreement, refresh pending")
    agreement_report_refresh(project_id=project.id)  # what the worker does
    page.get_by_text("The report below is fresh.").wait_for()
    assert "requested=" not in page.url
    assert page.csp_errors == []


def test_a_failed_login_keeps_the_username_and_error_pages_have_a_way_back(browser_page, rater):
    page = browser_page
    page.goto("/login/")
    page.get_by_label("Username").fill("rita")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("didn't match").wait_for()
    assert page.get_by_label("Username").input_value() == "rita"
    assert_accessible(page, "failed login")
    log_in(page, rater)
    page.goto("/projects/new/")
    page.get_by_role("heading", name="You cannot create projects yet").wait_for()
    assert_accessible(page, "project creation refused")
    page.get_by_role("link", name="Back to my projects").click()
    page.wait_for_url("**/")
    assert page.request.get("/favicon.ico", max_redirects=0).status == 301
