"""The disputed pairs queue in a real browser: a lead filters the pairs to the disputed ones,
opens one, reads the raters' rationales, decides it and the next one by keyboard, and sees the
queue empty; axe-core checks every state."""

import pytest

from annotation.models import Adjudication, Membership
from tests.annotation.test_pairs_review import pair_with_judgments
from tests.browser.conftest import assert_accessible, log_in
from tests.factories import BatchFactory, MembershipFactory, ProjectFactory, UserFactory

pytestmark = pytest.mark.browser


def test_a_lead_works_through_the_disputed_queue_by_keyboard(browser_page):
    project = ProjectFactory(slug="review", name="Review", raters_per_pair=2)
    lead = UserFactory(username="lena")
    MembershipFactory(project=project, user=lead, role=Membership.Role.LEAD)
    r1, r2 = UserFactory(username="ria"), UserFactory(username="rob")
    batch = BatchFactory(project=project, uploaded_by=lead)
    first = pair_with_judgments(
        batch, "Describe a zebra.", "Stripes.", "Spots.", ("m1", "m2"), [(r1, "a"), (r2, "b")]
    )
    second = pair_with_judgments(
        batch, "Best colour?", "Blue", "Red", ("m1", "m3"), [(r1, "tie"), (r2, "a")]
    )
    pair_with_judgments(batch, "Agreed?", "Yes", "No", ("m2", "m3"), [(r1, "a"), (r2, "a")])
    page = browser_page
    log_in(page, lead, next_path="/p/review/pairs/")
    assert page.locator("#pair-table tbody tr").count() == 3
    assert_accessible(page)

    page.get_by_label("Status").select_option("disputed")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**status=disputed**")
    assert page.locator("#pair-table tbody tr").count() == 2
    assert_accessible(page)

    page.get_by_role("link", name=f"#{first.id}").click()
    page.wait_for_url(f"**/pairs/{first.id}/")
    assert page.get_by_text("ria thinks a").is_visible()
    assert page.get_by_text("rob thinks b").is_visible()
    assert_accessible(page)

    page.keyboard.press("1")
    page.wait_for_url(f"**/pairs/{second.id}/")
    assert page.get_by_text(f"Pair {first.id}: a is better (adjudicated).").is_visible()
    assert_accessible(page)

    page.keyboard.press("x")
    page.wait_for_url("**/pairs/?status=disputed")
    assert page.locator("#no-pairs").is_visible()
    assert_accessible(page)
    decided = dict(Adjudication.objects.values_list("pair_id", "decision"))
    assert decided == {first.id: "a", second.id: "exclude"}
    assert page.csp_errors == []


def test_a_lead_finds_where_the_model_disagrees_and_reads_its_view(browser_page):
    project = ProjectFactory(slug="model-review", name="Model review", raters_per_pair=2)
    lead = UserFactory(username="lena")
    MembershipFactory(project=project, user=lead, role=Membership.Role.LEAD)
    r1, r2 = UserFactory(username="ria"), UserFactory(username="rob")
    batch = BatchFactory(project=project, uploaded_by=lead)
    against = pair_with_judgments(
        batch, "Describe a zebra.", "Stripes.", "Spots.", ("m1", "m2"), [(r1, "a"), (r2, "a")],
        model_p_a=0.08, model_uncertainty=0.05, model_version=2,
    )  # fmt: skip
    pair_with_judgments(
        batch, "Agreed?", "Yes", "No", ("m2", "m3"), [(r1, "a"), (r2, "a")],
        model_p_a=0.9, model_uncertainty=0.02, model_version=2,
    )  # fmt: skip
    unscored = pair_with_judgments(
        batch, "Best colour?", "Blue", "Red", ("m1", "m3"), [(r1, "b"), (r2, "a")]
    )
    page = browser_page
    log_in(page, lead, next_path="/p/model-review/pairs/")
    page.get_by_label("Agreement below").fill("0.6")
    page.get_by_label("Sort").select_option("lowest_agreement")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**agreement_below=0.6**")
    assert page.locator("#pair-table tbody tr").count() == 1
    assert_accessible(page)

    page.get_by_role("link", name="Where the model disagrees with the raters").click()
    page.wait_for_url("**disagrees_with_model=on**")
    assert page.locator("#pair-table tbody tr").count() == 1
    assert_accessible(page)

    page.get_by_role("link", name=f"#{against.id}").click()
    page.wait_for_url(f"**/pairs/{against.id}/")
    view = page.locator("#model-view")
    assert "Version 2 gives A a 8% chance of being better" in view.inner_text()
    assert "a confident disagreement" in view.inner_text()
    assert_accessible(page)

    page.goto(page.url.replace(f"/pairs/{against.id}/", f"/pairs/{unscored.id}/"))
    view = page.locator("#model-view")
    assert view.inner_text() == "No published model has scored this pair yet."
    assert_accessible(page)
    assert page.csp_errors == []
