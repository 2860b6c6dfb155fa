"""Skipping invalid records in a real browser: a file of 50 records with 3 invalid ones is
refused by default with the 3 lines named; the admin chooses to import the 47 valid records and
skip 3, sees the counts and the reasons, and downloads the 3 skipped lines as uploaded."""

import json

import pytest

from annotation.models import Batch, Pair
from tests.browser.conftest import assert_accessible, log_in

pytestmark = pytest.mark.browser

BAD_LINES = {7: "response_b", 23: "prompt", 41: "response_a"}


def records_file(tmp_path) -> tuple:
    rows: list[dict] = [
        {"prompt": f"Question {i}?", "response_a": f"A {i}", "response_b": f"B {i}"}
        for i in range(1, 51)
    ]
    del rows[6]["response_b"]  # line 7: missing
    rows[22]["prompt"] = 23  # line 23: a number where text belongs
    rows[40]["response_a"] = True  # line 41: a boolean where text belongs
    lines = [json.dumps(row).encode() + b"\n" for row in rows]
    path = tmp_path / "fifty.jsonl"
    path.write_bytes(b"".join(lines))
    return path, lines


def test_an_admin_imports_the_47_valid_records_skips_3_and_downloads_them(
    browser_page, project, admin_member, tmp_path, settings
):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    settings.IMPORT_REJECTS_DIR = tmp_path / "rejects"
    path, lines = records_file(tmp_path)
    page = browser_page
    log_in(page, admin_member, next_path=f"/p/{project.slug}/batches/")

    page.get_by_label("File (.jsonl, .csv, or either gzipped)").set_input_files(path)
    page.get_by_role("button", name="Check the file (dry run)").click()
    report = page.locator("#upload-result")
    report.get_by_text("Nothing imported: 3 records of fifty.jsonl with errors").wait_for()
    assert_accessible(page)
    errors = report.locator("table.errors tbody tr")
    assert [errors.nth(i).locator("td").nth(1).inner_text() for i in range(3)] == list(
        BAD_LINES.values()
    )
    assert [errors.nth(i).locator("td").first.inner_text() for i in range(3)] == [
        f"line {n}" for n in BAD_LINES
    ]
    assert not Batch.objects.filter(project=project).exists()

    page.get_by_role("button", name="Import the 47 valid records and skip 3").click()
    report.get_by_text("Imported fifty.jsonl").wait_for()
    assert_accessible(page)
    assert "47 records" in report.inner_text()
    assert "47 new pairs" in report.inner_text()
    assert "Skipped 3 records with errors" in report.inner_text()
    reasons = report.locator("ul.skipped-reasons li")
    assert reasons.count() == 3
    assert Pair.objects.filter(project=project).count() == 47
    batch = Batch.objects.get(project=project)
    assert (batch.records, batch.skipped) == (47, 3)

    with page.expect_download() as started:
        report.get_by_role("link", name="download as uploaded").click()
    with open(started.value.path(), "rb") as rejects:
        assert rejects.read().splitlines(keepends=True) == [lines[n - 1] for n in BAD_LINES]
    page.locator("#batch-list").get_by_role("cell", name="fifty.jsonl").wait_for()
    assert_accessible(page)
    assert page.dialogs == []
    assert page.csp_errors == []
