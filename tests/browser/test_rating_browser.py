"""The rater page in a real browser: keyboard-only rating with undo, and hostile content inert.

Set PAIRWISE_SCREENSHOT_DIR to also save the page as rate.png there (docs/screenshots.py takes
the README's picture from the demo data instead).
"""

import os
from pathlib import Path

import pytest

from annotation.models import Assignment, Judgment, Membership
from tests.browser.conftest import PHONE, assert_accessible, axe_violations, log_in
from tests.factories import (
    MembershipFactory,
    PairFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
)

pytestmark = pytest.mark.browser

KEYS = {"left": "1", "right": "2", "tie": "3", "both_bad": "4"}
STRENGTH_KEYS = {1: "q", 2: "w", 3: "e"}


@pytest.fixture
def rating_project(project):
    project.gold_rate = 0.0
    project.save(update_fields=["gold_rate"])
    return project


def card_assignment(page) -> int:
    return int(page.locator("#pair-card").get_attribute("data-assignment"))


def swap_card(page, *keys: str) -> None:
    """Press `keys` and wait until htmx has swapped in the next card and settled it."""
    expect_card(page)
    for key in keys:
        page.keyboard.press(key)
    wait_for_card(page)


def expect_card(page) -> None:
    """Arm a promise that settles when htmx has swapped in the next card, or fails at once with
    the status when the server answers with an error."""
    page.evaluate(
        """() => {  // a statement, not an expression: evaluate() would await the promise
            window.cardSettled = new Promise((resolve, reject) => {
                const body = document.body;
                body.addEventListener('htmx:afterSettle',
                    event => event.target.id === 'pair-card' && resolve());
                body.addEventListener('htmx:responseError',
                    event => reject(new Error('HTTP ' + event.detail.xhr.status)));
            });
        }"""
    )


def wait_for_card(page) -> None:
    page.evaluate("window.cardSettled")
    assert_accessible(page)


def judge(page, choice: str, strength: int | None = None) -> int:
    """Judge the pair on screen with the keyboard only. Returns the judged assignment's id."""
    judged = card_assignment(page)
    keys = [KEYS[choice], *([STRENGTH_KEYS[strength]] if strength else []), "Enter"]
    swap_card(page, *keys)
    assert card_assignment(page) != judged
    return judged


def in_pair_terms(choice: str, swapped: bool) -> str:
    if choice == "left":
        return "b" if swapped else "a"
    if choice == "right":
        return "a" if swapped else "b"
    return choice


def test_a_rater_judges_five_pairs_by_keyboard_and_undoes_one(browser_page, rating_project, rater):
    page = browser_page
    PairFactory.create_batch(7, project=rating_project, prompt__batch__project=rating_project)
    log_in(page, rater, next_path=f"/p/{rating_project.slug}/rate/")
    page.evaluate("window.notReloaded = true")
    expected: dict[int, tuple[str, int | None]] = {}

    for choice, strength in [("left", 2), ("right", None), ("tie", None)]:
        third = judge(page, choice, strength)
        expected[third] = (choice, strength)

    swap_card(page, "u")  # take back the third: it comes back on screen
    assert card_assignment(page) == third
    assert page.evaluate("document.activeElement.id") == "pair-card-title"
    assert "taken back" in page.locator("#pair-card").inner_text()
    del expected[third]
    expected[judge(page, "right", 3)] = ("right", 3)

    for choice, strength in [("both_bad", None), ("left", 1)]:
        expected[judge(page, choice, strength)] = (choice, strength)

    if os.environ.get("PAIRWISE_SCREENSHOT_DIR"):
        page.screenshot(path=str(Path(os.environ["PAIRWISE_SCREENSHOT_DIR"]) / "rate.png"))
    assert page.evaluate("window.notReloaded") is True  # every swap was htmx, no page load
    assert page.locator("#pair-card .progress dd").nth(1).inner_text() == "5"
    judgments = Judgment.objects.filter(rater=rater).select_related("assignment")
    assert len(judgments) == 5
    for judgment in judgments:
        choice, strength = expected[judgment.assignment_id]
        assert judgment.choice == in_pair_terms(choice, judgment.assignment.swapped)
        assert judgment.swapped == judgment.assignment.swapped
        assert judgment.strength == strength
        assert judgment.active_ms is not None
    assert Assignment.objects.get(id=third).status == Assignment.Status.DONE
    assert Judgment.objects.get(assignment_id=third).choice == in_pair_terms(
        "right", Assignment.objects.get(id=third).swapped
    )
    assert page.dialogs == []
    assert page.csp_errors == []


HOSTILE = (
    "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n"
    "[click me](javascript:alert(1))\n\n"
    '<div hx-get="/boom" hx-trigger="load">boom</div>\n\n'
    '<a href="/boom" hx-get="/boom" hx-trigger="load">boom link</a>'
)


# Mostly whitespace, blank lines, an indented block of spaces and one endless word.
BLOWUP = (
    " " * 20_000 + "\n" * 3_000 + ("        \n" * 500) + "x" * 20_000 + "\n\n    " + "y" * 5_000
)


def hostile_pair(project, n):
    prompt = PromptFactory(batch__project=project, text=f"Prompt {n}\n\n{HOSTILE}")
    return PairFactory(
        project=project,
        prompt=prompt,
        response_a=ResponseFactory(prompt=prompt, text=f"First {n}\n\n{HOSTILE}"),
        response_b=ResponseFactory(prompt=prompt, text=f"Second {n}\n\n{HOSTILE}\n\n{BLOWUP}"),
    )


def assert_inert(page) -> None:
    card = page.locator("#pair-card")
    for panel in card.locator(".response-body, .prompt-body").all():
        text = panel.inner_text()
        assert "<script>alert(1)</script>" in text
        assert "<img src=x onerror=alert(1)>" in text
        assert '<div hx-get="/boom" hx-trigger="load">' in text
    assert card.locator("script, img, iframe, [hx-get='/boom'], a[href^='javascript']").count() == 0
    # The whitespace and the long word stay inside their scrolling panels.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    for panel in card.locator(".response-body").all():
        assert panel.bounding_box()["height"] <= 0.6 * 800


def test_hostile_prompts_and_responses_show_as_text_and_nothing_fires(
    browser_page, rating_project, rater
):
    page = browser_page
    hostile_pair(rating_project, 1)
    hostile_pair(rating_project, 2)
    log_in(page, rater, next_path=f"/p/{rating_project.slug}/rate/")
    page.wait_for_load_state("networkidle")
    assert_inert(page)  # rendered by the full page

    judge(page, "tie")
    page.wait_for_load_state("networkidle")
    assert_inert(page)  # and swapped in by htmx
    page.wait_for_timeout(300)  # time for a load trigger or an onerror to fire, were they live

    assert page.dialogs == []
    assert [url for url in page.requests if "/boom" in url or url.startswith("javascript")] == []
    assert page.csp_errors == []
    assert Judgment.objects.filter(rater=rater).count() == 1


LONG = "\n\n".join(
    f"Paragraph {i}: " + "a sentence that goes on for a while. " * 6 for i in range(40)
)


def in_view(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    viewport = page.viewport_size
    return (
        box is not None
        and box["x"] >= 0
        and box["y"] >= 0
        and box["x"] + box["width"] <= viewport["width"]
        and box["y"] + box["height"] <= viewport["height"]
    )


def click_and_settle(page, selector: str) -> None:
    expect_card(page)
    page.locator(selector).click()
    wait_for_card(page)


def test_a_mouse_user_skips_with_the_skip_button_in_view(browser_page, rating_project, rater):
    page = browser_page
    PairFactory.create_batch(2, project=rating_project, prompt__batch__project=rating_project)
    log_in(page, rater, next_path=f"/p/{rating_project.slug}/rate/")
    skipped = card_assignment(page)
    assert in_view(page, "#skip-button")
    assert axe_violations(page, impacts=("moderate", "minor")) == []  # landmark-unique and all

    click_and_settle(page, "#skip-button")

    assert card_assignment(page) != skipped
    assert Assignment.objects.get(id=skipped).status == Assignment.Status.SKIPPED


def test_on_a_phone_the_choices_submit_and_skip_stay_in_reach(browser_page, rating_project):
    page = browser_page
    page.set_viewport_size(PHONE)
    rater = MembershipFactory(
        project=rating_project,
        user=UserFactory(username="a.rather.long.username@example.org"),
        role=Membership.Role.RATER,
    ).user
    for n in range(2):
        PairFactory(
            project=rating_project,
            prompt__batch__project=rating_project,
            prompt__text=f"{n} {LONG}",
            response_a__text=f"Left {LONG}",
            response_b__text=f"Right {LONG}",
        )
    log_in(page, rater, next_path=f"/p/{rating_project.slug}/rate/")

    who = page.locator(".who").bounding_box()
    assert who["height"] < 30  # one line, cut with an ellipsis, not wrapped
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert in_view(page, "#guidelines summary")  # folded above the pair, one tap away
    for panel in page.locator(".response-body, .prompt-body").all():
        assert panel.bounding_box()["height"] <= 0.5 * PHONE["height"]
    for control in [
        "label[for=choice-left]",
        "label[for=choice-both_bad]",
        "#submit-button",
        "#skip-button",
    ]:
        assert in_view(page, control), control

    page.locator(".responses").scroll_into_view_if_needed()
    page.mouse.wheel(0, 600)
    assert in_view(page, "#submit-button")  # the bar stays while the text scrolls
    judged = card_assignment(page)
    page.locator("label[for=choice-right]").click()
    click_and_settle(page, "#submit-button")
    assert Judgment.objects.get(assignment_id=judged).choice in {"a", "b"}

    skipped = card_assignment(page)
    assert in_view(page, "#skip-button")
    click_and_settle(page, "#skip-button")
    assert Assignment.objects.get(id=skipped).status == Assignment.Status.SKIPPED


def test_a_response_over_the_render_budget_scrolls_in_a_focusable_panel_axe_accepts(
    browser_page, rating_project, rater, settings
):
    settings.MARKDOWN_RENDER_MAX_CHARS = 1000
    page = browser_page
    long_text = "**Not formatted** <b>nor markup</b>\n" * 2000
    PairFactory(
        project=rating_project,
        prompt__batch__project=rating_project,
        response_a__text=long_text,
        response_b__text=long_text + "!",
    )
    log_in(page, rater, next_path=f"/p/{rating_project.slug}/rate/")

    panel = page.locator("pre.plain-text").first
    assert "shown as plain text" in page.locator(".responses").inner_text()
    assert panel.evaluate("el => el.scrollHeight > el.clientHeight")  # it does scroll
    panel.focus()
    assert page.evaluate("document.activeElement.classList.contains('plain-text')")
    assert page.locator("b", has_text="nor markup").count() == 0

    assert axe_violations(page) == []
