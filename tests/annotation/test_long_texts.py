"""Huge prompts and responses (issue 11, item 4): the rate page never renders Markdown at
unbounded cost. Past the render budget a text is shown escaped in a plain, focusable panel, and
a text under it is rendered once, then served from the cache."""

import io
import json
import time
from collections import Counter

import pytest
from django.core.cache import caches
from django.template.loader import get_template

from annotation.services.imports import batch_scan
from annotation.templatetags import pairwise_markdown
from tests.conftest import login
from tests.factories import PairFactory

FIVE_MB = 5 * 1024 * 1024


@pytest.fixture(autouse=True)
def _empty_markdown_cache():
    caches["markdown"].clear()  # a per-process cache: earlier tests may have rendered a text


@pytest.fixture
def quiet_project(project):
    project.gold_rate = 0.0
    project.save(update_fields=["gold_rate"])
    return project


def serve(client, project, rater, **pair):
    """The rate page with one pair to rate, and the seconds it took (templates already loaded)."""
    login(client, rater)
    # What a fresh process does once, not per view: import the URLconf and views, compile the page.
    assert client.get("/").status_code == 200
    get_template("annotation/rate.html")
    PairFactory(project=project, prompt__batch__project=project, **pair)
    started = time.perf_counter()
    page = client.get(f"/p/{project.slug}/rate/")
    return page, time.perf_counter() - started


def test_a_5_mb_response_renders_the_rate_page_in_under_a_second(client, quiet_project, rater):
    huge = ("A **bold** claim with `code` and a [link](https://example.com).\n\n" * 90_000)[
        :FIVE_MB
    ]

    page, seconds = serve(client, quiet_project, rater, response_a__text=huge)

    assert page.status_code == 200
    assert seconds < 1.0
    html = page.content.decode()
    assert "shown as plain text" in html
    assert "A **bold** claim with `code`" in html  # as typed, not formatted
    assert '<pre class="plain-text" tabindex="0" role="region"' in html


def test_a_megabyte_of_emphasis_markers_is_shown_plain_without_stalling(
    client, quiet_project, rater
):
    page, seconds = serve(client, quiet_project, rater, response_b__text="*a" * 500_000)

    assert page.status_code == 200
    assert seconds < 5.0  # 11 s of Markdown parsing before the render budget
    assert "*a*a*a" in page.content.decode()


def test_markup_in_a_text_over_the_budget_is_escaped(client, quiet_project, rater, settings):
    settings.MARKDOWN_RENDER_MAX_CHARS = 100
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">' + "x" * 100

    html = serve(client, quiet_project, rater, response_a__text=evil)[0].content.decode()

    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "155 characters" in html  # the note says why the text is not formatted


def test_a_transcript_over_the_budget_is_shown_as_one_plain_panel(
    client, quiet_project, rater, settings
):
    settings.MARKDOWN_RENDER_MAX_CHARS = 1000
    messages = [{"role": "user", "content": "**u** " * 100}, {"role": "user", "content": "v" * 500}]

    page, _ = serve(client, quiet_project, rater, prompt__text="", prompt__messages=messages)
    html = page.content.decode()

    assert 'class="transcript"' not in html
    assert "user: **u** **u**" in html  # role and content, unformatted
    assert html.count("shown as plain text") == 1


def test_a_short_transcript_is_still_formatted_per_message(client, quiet_project, rater):
    messages = [{"role": "user", "content": "**hi**"}, {"role": "assistant", "content": "`yo`"}]

    page, _ = serve(client, quiet_project, rater, prompt__text="", prompt__messages=messages)
    html = page.content.decode()

    assert 'class="transcript"' in html
    assert "<strong>hi</strong>" in html
    assert "<code>yo</code>" in html


def test_each_text_is_rendered_once_however_often_the_page_is_shown(
    client, quiet_project, rater, monkeypatch
):
    rendered: Counter[str] = Counter()
    real = pairwise_markdown.render_markdown

    def counting(text: str) -> str:
        rendered[text] += 1
        return real(text)

    monkeypatch.setattr(pairwise_markdown, "render_markdown", counting)
    quiet_project.guidelines = "Prefer **honest** answers."
    quiet_project.save(update_fields=["guidelines"])

    serve(client, quiet_project, rater)
    for _ in range(2):
        page = client.get(f"/p/{quiet_project.slug}/rate/")
        assert b"<strong>honest</strong>" in page.content

    assert len(rendered) == 4  # prompt, two responses, guidelines
    assert set(rendered.values()) == {1}


def test_a_response_over_the_import_limit_is_refused_with_its_line_and_field():
    record = {"prompt": "p", "response_a": "a" * 1_000_001, "response_b": "b"}
    data = (json.dumps({"prompt": "p", "response_a": "a", "response_b": "b"}) + "\n").encode()
    data += (json.dumps(record) + "\n").encode()

    result = batch_scan(fileobj=io.BytesIO(data), filename="big.jsonl", format=None)

    [issue] = result.errors
    assert (issue.line, issue.field) == (2, "response_a")
    assert issue.message == "longer than the limit of 1,000,000 characters"


def test_the_dry_run_previews_the_first_20_messages_of_a_long_chat_prompt(
    client, project, admin_member, settings, tmp_path, monkeypatch
):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    messages = [{"role": "user", "content": f"**turn {i}** " + "[" * 4000} for i in range(500)]
    record = {"prompt": messages, "response_a": "A", "response_b": "B"}
    upload = io.BytesIO((json.dumps(record) + "\n").encode())
    upload.name = "chat.jsonl"
    login(client, admin_member)
    rendered: list[str] = []
    real = pairwise_markdown.render_markdown

    def counting(text: str) -> str:
        rendered.append(text)
        return real(text)

    monkeypatch.setattr(pairwise_markdown, "render_markdown", counting)

    page = client.post(f"/p/{project.slug}/batches/", {"file": upload}, HTTP_HX_REQUEST="true")

    html = page.content.decode()
    assert "<strong>turn 19</strong>" in html
    assert "turn 20" not in html
    assert "480 more messages" in html
    # The cost is bounded by what is shown: every message was formatted before (over a minute).
    assert any("turn 19" in text for text in rendered)
    assert not any("turn 20" in text for text in rendered)
    assert len(rendered) <= 20 + 2  # the first 20 messages and the two responses
