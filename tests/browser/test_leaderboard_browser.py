"""The leaderboard in a real browser: a lead opens the demo's leaderboard, filters it by batch,
downloads the CSV, and axe-core finds no serious or critical accessibility problem."""

import csv
import io
import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from annotation.models import Batch
from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def axe_violations(page) -> list[str]:
    """Serious and critical axe-core findings on the page. The script goes in through the
    DevTools protocol (page.evaluate), which the page's Content-Security-Policy does not govern."""
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    result = page.evaluate("axe.run(document).then(r => r.violations)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']}"
        for v in result
        if v["impact"] in ("serious", "critical")
    ]


def test_a_lead_filters_the_demo_leaderboard_by_batch_and_downloads_it(
    browser_page, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    call_command("demo", "--simulate", "150", stdout=io.StringIO())
    password = json.loads((tmp_path / "demo-logins.json").read_text())["demo-lead"]
    lead = get_user_model().objects.get(username="demo-lead")
    batch = Batch.objects.get(project__slug="demo")
    page = browser_page
    log_in(page, lead, password=password, next_path="/p/demo/leaderboard/")

    assert page.get_by_role("heading", name="Leaderboard: Demo: which answer is better?")
    assert page.locator("#ratings tbody tr").count() == 7
    assert axe_violations(page) == []

    page.get_by_label("Batch").select_option(str(batch.id))
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(f"**batch={batch.id}**")
    assert page.locator("#ratings tbody tr").count() == 7

    with page.expect_download() as download:
        page.get_by_role("link", name="Download as CSV").click()
    path = download.value.path()
    rows = list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))
    assert len(rows) == 7
    assert download.value.suggested_filename == "demo-leaderboard.csv"
    assert page.csp_errors == []
