"""Uploading a batch in a real browser: a file with three bad rows imports nothing and names the
three lines; the fixed file checks clean and imports, and the page shows the counts; once the
pairs are judged, the export page downloads them as a TRL file."""

import json

import pytest

from annotation.models import Batch, Pair
from tests.browser.conftest import assert_accessible, log_in
from tests.factories import JudgmentFactory, UserFactory

pytestmark = pytest.mark.browser


def pairs_file(tmp_path, *, broken: bool):
    rows = [
        {"id": f"p{i}", "prompt": f"Question {i}?", "response_a": f"A {i}", "response_b": f"B {i}"}
        for i in range(1, 11)
    ]
    if broken:
        del rows[2]["response_b"]  # line 3
        rows[5]["prompt"] = 6  # line 6
        rows[8]["response_a"] = True  # line 9: a boolean where text belongs
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_an_admin_sees_three_bad_lines_fixes_them_and_imports(
    browser_page, project, admin_member, tmp_path, settings
):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    page = browser_page
    log_in(page, admin_member, next_path=f"/p/{project.slug}/batches/")

    page.get_by_label("File (.jsonl, .csv, or either gzipped)").set_input_files(
        pairs_file(tmp_path, broken=True)
    )
    page.get_by_role("button", name="Check the file (dry run)").click()
    report = page.locator("#upload-result")
    report.get_by_text("Nothing imported").wait_for()
    assert_accessible(page)
    text = report.inner_text()
    for line in ("line 3", "line 6", "line 9"):
        assert line in text
    assert "3 errors" in text
    assert not Batch.objects.filter(project=project).exists()

    page.get_by_label("File (.jsonl, .csv, or either gzipped)").set_input_files(
        pairs_file(tmp_path, broken=False)
    )
    page.get_by_role("button", name="Check the file (dry run)").click()
    report.get_by_text("is valid").wait_for()
    assert_accessible(page)
    page.get_by_role("button", name="Import 10 records").click()
    report.get_by_text("10 new pairs").wait_for()
    page.locator("#batch-list").get_by_text("pairs.jsonl").wait_for()  # the list is refreshed
    assert_accessible(page)
    assert Pair.objects.filter(project=project).count() == 10

    judged = Pair.objects.get(project=project, external_id="p1")
    for rater in UserFactory.create_batch(3):
        JudgmentFactory(assignment__pair=judged, assignment__rater=rater, choice="a", strength=2)
    page.goto(f"/p/{project.slug}/export/")
    assert_accessible(page)
    page.get_by_label("Format").select_option("trl")
    with page.expect_download() as started:
        page.get_by_role("button", name="Download").click()
    download = started.value
    assert download.suggested_filename.endswith(".jsonl")
    with open(download.path(), encoding="utf-8") as exported:
        lines = [json.loads(line) for line in exported]
    assert [(line["prompt"], line["chosen"], line["rejected"]) for line in lines] == [
        ("Question 1?", "A 1", "B 1")
    ]
    assert page.dialogs == []
    assert page.csp_errors == []
