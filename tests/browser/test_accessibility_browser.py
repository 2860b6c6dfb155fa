"""Every page a project admin can reach, and the error pages, at 1280 px and at 390 px: axe-core
finds no serious or critical violation on any of them (the other browser tests check the page
states that need interaction: rating, uploading, training)."""

import pytest

from tests.browser.conftest import PHONE, VIEWPORT, assert_accessible, log_in
from tests.factories import PairFactory

pytestmark = pytest.mark.browser

PROJECT_PAGES = ["", "rate/", "batches/", "agreement/", "training/", "export/", "members/"]
OTHER_PAGES = ["/", "/account/token/", "/p/no-such-project/", "/projects/new/"]
# A code block taller than its box scrolls: it must be focusable (scrollable-region-focusable).
LONG_CODE = "```\n" + "\n".join(f"line {i} = {i} * 2" for i in range(80)) + "\n```\n"


@pytest.mark.parametrize("viewport", [VIEWPORT, PHONE], ids=["desktop", "phone"])
def test_every_page_an_admin_reaches_passes_axe(browser_page, project, admin_member, viewport):
    page = browser_page
    page.set_viewport_size(viewport)
    PairFactory.create_batch(
        2, project=project, prompt__batch__project=project, response_a__text=LONG_CODE
    )
    log_in(page, admin_member, next_path=f"/p/{project.slug}/settings/")
    assert_accessible(page)
    for path in [f"/p/{project.slug}/{suffix}" for suffix in PROJECT_PAGES] + OTHER_PAGES:
        page.goto(path)
        assert_accessible(page)
