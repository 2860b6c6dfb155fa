"""Flags in a real browser: a rater reports a pair by keyboard from the rate page and is handed
the next one; the lead reads the report on the pair page and clears it, so the pair is served
again. axe-core checks every state."""

import pytest

from annotation.models import Flag, Membership, Pair
from tests.browser.conftest import assert_accessible, log_in
from tests.factories import MembershipFactory, PairFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.browser


def test_a_rater_flags_a_pair_by_keyboard_and_the_lead_clears_it(browser_page):
    project = ProjectFactory(slug="flags", name="Flags", gold_rate=0.0, flag_threshold=1)
    lead = UserFactory(username="lena")
    MembershipFactory(project=project, user=lead, role=Membership.Role.LEAD)
    rater = UserFactory(username="ria")
    MembershipFactory(project=project, user=rater, role=Membership.Role.RATER)
    PairFactory.create_batch(2, project=project, prompt__batch__project=project)
    page = browser_page
    log_in(page, rater, next_path="/p/flags/rate/")
    first = page.locator("#flag-pair input[name=assignment]").input_value()

    page.keyboard.press("f")
    assert page.locator("#flag-broken").evaluate("el => el === document.activeElement")
    assert_accessible(page)
    page.keyboard.press("Space")
    page.keyboard.press("Tab")
    page.keyboard.type("The right answer is cut off mid-sentence.")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.get_by_text("Thank you for the report").wait_for()
    assert page.locator("#flag-pair input[name=assignment]").input_value() != first
    assert_accessible(page)
    flag = Flag.objects.get()
    assert (flag.reason, flag.assignment_id) == ("broken", int(first))
    assert Pair.objects.get(id=flag.pair_id).flagged_at is not None

    page.context.clear_cookies()
    log_in(page, lead, next_path=f"/p/flags/pairs/{flag.pair_id}/")
    assert page.get_by_text("The right answer is cut off mid-sentence.").is_visible()
    assert page.get_by_role("cell", name="Broken or unreadable").is_visible()
    assert_accessible(page)
    page.get_by_role("button", name="Clear the flags and serve the pair again").click()
    page.get_by_text("1 flag cleared; it is served again.").wait_for()
    assert_accessible(page)
    assert Pair.objects.get(id=flag.pair_id).flagged_at is None
    assert page.csp_errors == []
