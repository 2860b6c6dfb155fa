"""Fixtures for browser tests: Chromium through Playwright against pytest-django's live server.

Browser tests skip with the reason when /usr/bin/chromium is missing, unless REQUIRE_BROWSER=1
(CI), where a missing browser fails them instead.

Every page state a test reaches is checked by axe-core (vendored in tests/browser/vendor): call
`assert_accessible(page)` after each change of state; `log_in` checks the login page, and the
fixture checks the last state when the test ends. A serious or critical violation fails the test.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections

from tests.factories import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
VIEWPORT = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
AXE_SCRIPT = Path(__file__).parent / "vendor" / "axe.min.js"
FAILING_IMPACTS = ("serious", "critical")


def _need_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = (
        f"{CHROMIUM} is missing: apt-get install chromium (Debian's build) to run browser tests"
    )
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(reason + " (REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item: the page fixture checks the last page state
    only after a test that passed, so a failure is not buried under a second report."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def browser_page(live_server, monkeypatch, settings, request) -> Iterator:
    """A fresh Chromium page at 1280x800 whose relative URLs go to the live server.

    The page records what would betray injected content: `page.dialogs` (alert/confirm/prompt,
    dismissed), `page.requests` (every URL asked for) and `page.csp_errors` (console messages
    about the Content-Security-Policy, which would also catch the page's own inline code).
    """
    _need_chromium()
    # The live server serves /static/ from the finders, which know the source names only, not
    # the hashed names that the production storage writes into pages.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    # Playwright's sync API keeps an asyncio loop in this thread; the ORM calls the tests make
    # between browser steps are still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
        context.set_default_timeout(10_000)
        page = context.new_page()
        page.dialogs = []
        page.requests = []
        page.csp_errors = []

        def on_dialog(dialog) -> None:
            page.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("request", lambda request: page.requests.append(request.url))
        page.on(
            "console",
            lambda message: (
                page.csp_errors.append(message.text)
                if "Content Security Policy" in message.text
                else None
            ),
        )
        try:
            yield page
            passed = getattr(request.node, "report_call", None)
            if passed and passed.passed and page.url.startswith(live_server.url):
                assert_accessible(page)
        finally:
            context.close()
            browser.close()
            # The ORM calls made while Playwright runs get connections of their own (Django's
            # connections follow contextvars, and Playwright's greenlet has its own): close them,
            # or the test database cannot be flushed and dropped afterwards.
            connections.close_all()


def axe_violations(page, *, impacts: tuple[str, ...] = FAILING_IMPACTS) -> list[str]:
    """axe-core's violations of the given impacts (serious and critical unless told) on the
    page as it is now, one line each: rule id, impact, the offending elements and the page URL.

    The script goes in through `evaluate` (the DevTools protocol), which the pages' strict CSP
    does not govern, so the CSP stays on and still catches the pages' own inline code.
    """
    page.wait_for_load_state("load")
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(AXE_SCRIPT.read_text(encoding="utf-8"))
    results = page.evaluate(
        """async () => {
            const results = await axe.run(document, {resultTypes: ['violations']});
            return results.violations.map(v => ({
                id: v.id, impact: v.impact, targets: v.nodes.map(n => n.target.join(' ')),
            }));
        }"""
    )
    return [
        f"{found['id']} ({found['impact']}) at {page.url}: {', '.join(found['targets'][:5])}"
        for found in results
        if found["impact"] in impacts
    ]


def assert_accessible(page) -> None:
    """Fail on any serious or critical axe-core violation in the page's current state."""
    violations = axe_violations(page)
    assert not violations, "axe-core found:\n" + "\n".join(violations)


def log_in(page, user, *, password: str = PASSWORD, next_path: str = "/") -> None:
    """Log in through the real login form, as a person would, and land on `next_path`."""
    page.goto(f"/login/?next={next_path}")
    assert_accessible(page)
    page.get_by_label("Username").fill(user.get_username())
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"**{next_path}")
