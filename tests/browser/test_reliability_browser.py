"""The agreement page's rater-reliability section in a real browser: axe finds no serious or
critical violation in it, and its confusion-matrix table opens."""

from pathlib import Path

import pytest

from annotation.services.agreement import agreement_report_create
from tests.annotation.test_agreement_reliability import mixed  # noqa: F401 - a fixture
from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser
AXE = Path(__file__).parent / "vendor" / "axe.min.js"


def test_the_reliability_section_passes_axe(browser_page, project, lead, mixed):  # noqa: F811
    agreement_report_create(project=mixed)
    page = browser_page
    log_in(page, lead, next_path=f"/p/{project.slug}/agreement/")
    section = page.locator("#reliability")
    section.get_by_text("Rater reliability (Dawid-Skene)").wait_for()

    # Evaluated through DevTools: a script tag would be inline code, which the CSP refuses.
    page.evaluate(AXE.read_text(encoding="utf-8"))
    result = page.evaluate("async () => await axe.run('#reliability')")

    serious = [v["id"] for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == []
    section.get_by_text("As a table").first.click()
    assert section.get_by_role("columnheader", name="says a").first.is_visible()
