"""The rater page /p/<slug>/rate/: through its URLs, as a browser with or without htmx uses it."""

import re

import pytest
from django.utils import timezone

from annotation.models import Assignment, Judgment, Project
from tests.conftest import login
from tests.factories import JudgmentFactory, PairFactory, PromptFactory, ResponseFactory

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def quiet_project(project):
    """No gold pairs drawn at random: the tests decide what is served."""
    project.gold_rate = 0.0
    project.save(update_fields=["gold_rate"])
    return project


def make_pairs(project, count, **kwargs):
    return PairFactory.create_batch(
        count, project=project, prompt__batch__project=project, **kwargs
    )


def url(project, action=""):
    return f"/p/{project.slug}/rate/{action + '/' if action else ''}"


def shown(response):
    """The leased pair on the page, from the HTML: htmx fragments carry no test context."""
    found = re.search(rb'name="assignment" value="(\d+)"', response.content)
    return Assignment.objects.get(id=int(found[1])) if found else None


def test_a_member_sees_a_pair_with_the_choice_controls(client, quiet_project, rater):
    pair = make_pairs(quiet_project, 1, prompt__text="What is 2+2?")[0]
    login(client, rater)
    response = client.get(url(quiet_project))
    assert response.status_code == 200
    assert b"What is 2+2?" in response.content
    assert pair.response_a.text.encode() in response.content
    assert pair.response_b.text.encode() in response.content
    assert b"Which response is better?" in response.content
    assert b'id="choice-both_bad"' in response.content
    assert b"model-x" not in response.content  # rating is blind: no model names


def test_the_sides_follow_the_lease(client, quiet_project, rater):
    pair = make_pairs(quiet_project, 1)[0]
    login(client, rater)
    card = client.get(url(quiet_project)).context["shown"]
    if card.assignment.swapped:
        assert (card.left, card.right) == (pair.response_b, pair.response_a)
    else:
        assert (card.left, card.right) == (pair.response_a, pair.response_b)


def test_a_member_of_another_project_gets_404_and_no_lease(client, quiet_project, outsider):
    make_pairs(quiet_project, 1)
    login(client, outsider)
    assert client.get(url(quiet_project)).status_code == 404
    assert client.post(url(quiet_project), {"choice": "left"}).status_code == 404
    assert client.post(url(quiet_project, "skip")).status_code == 404
    assert client.post(url(quiet_project, "undo")).status_code == 404
    assert not Assignment.objects.exists()


def test_anonymous_visitors_are_sent_to_log_in(client, quiet_project):
    response = client.get(url(quiet_project))
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


@pytest.mark.parametrize("swapped", [False, True])
def test_a_plain_form_post_records_the_judgment_in_pair_terms(
    client, quiet_project, rater, swapped
):
    make_pairs(quiet_project, 2)
    login(client, rater)
    assignment = shown(client.get(url(quiet_project)))
    Assignment.objects.filter(id=assignment.id).update(swapped=swapped)
    response = client.post(
        url(quiet_project),
        {"assignment": assignment.id, "choice": "left", "strength": "3", "active_ms": "4200"},
    )
    assert response.status_code == 302
    assert response["Location"] == url(quiet_project)
    judgment = Judgment.objects.get()
    assert judgment.pair_id == assignment.pair_id
    assert judgment.choice == (Judgment.Choice.B if swapped else Judgment.Choice.A)
    assert judgment.swapped is swapped
    assert judgment.strength == 3
    assert judgment.active_ms == 4200
    follow = client.get(response["Location"])
    assert b"Saved." in follow.content
    assert shown(follow).pair_id != assignment.pair_id


def test_an_htmx_post_returns_only_the_card_with_the_next_pair(client, quiet_project, rater):
    make_pairs(quiet_project, 2)
    login(client, rater)
    first = shown(client.get(url(quiet_project)))
    response = client.post(url(quiet_project), {"assignment": first.id, "choice": "tie"}, **HTMX)
    assert response.status_code == 200
    assert response.content.lstrip().startswith(b'<section id="pair-card"')
    assert b"<html" not in response.content
    assert shown(response).pair_id != first.pair_id
    assert f'name="assignment" value="{shown(response).id}"'.encode() in response.content
    assert b"Saved." in response.content
    assert Judgment.objects.get().choice == Judgment.Choice.TIE


def test_a_strength_left_over_from_left_or_right_is_dropped_for_a_tie(client, quiet_project, rater):
    make_pairs(quiet_project, 1)
    login(client, rater)
    assignment = shown(client.get(url(quiet_project)))
    client.post(url(quiet_project), {"assignment": assignment.id, "choice": "tie", "strength": "2"})
    judgment = Judgment.objects.get()
    assert (judgment.choice, judgment.strength) == (Judgment.Choice.TIE, None)


def test_a_required_rationale_is_enforced(client, quiet_project, rater):
    quiet_project.rationale = Project.Rationale.REQUIRED
    quiet_project.save(update_fields=["rationale"])
    make_pairs(quiet_project, 1)
    login(client, rater)
    page = client.get(url(quiet_project))
    assert b'id="rationale"' in page.content
    assignment = shown(page)
    refused = client.post(
        url(quiet_project),
        {"assignment": assignment.id, "choice": "right", "rationale": "   "},
        **HTMX,
    )
    assert refused.status_code == 422
    assert b"asks for a short reason" in refused.content
    assert shown(refused).id == assignment.id  # the same pair, choice kept
    assert b'value="right" id="choice-right" required' in refused.content
    assert b'aria-keyshortcuts="2" checked' in refused.content
    assert b'aria-invalid="true" aria-describedby="card-error rationale-hint"' in refused.content
    assert not Judgment.objects.exists()
    client.post(
        url(quiet_project),
        {"assignment": assignment.id, "choice": "right", "rationale": "More accurate."},
    )
    assert Judgment.objects.get().rationale == "More accurate."


def test_a_choice_is_needed(client, quiet_project, rater):
    make_pairs(quiet_project, 1)
    login(client, rater)
    assignment = shown(client.get(url(quiet_project)))
    refused = client.post(url(quiet_project), {"assignment": assignment.id})
    assert refused.status_code == 422
    assert b"Choose which response is better" in refused.content
    assert not Judgment.objects.exists()


def test_a_choice_outside_the_projects_scheme_is_refused(client, quiet_project, rater):
    quiet_project.choice_scheme = Project.ChoiceScheme.AB
    quiet_project.save(update_fields=["choice_scheme"])
    make_pairs(quiet_project, 1)
    login(client, rater)
    page = client.get(url(quiet_project))
    assert b'id="choice-tie"' not in page.content
    refused = client.post(url(quiet_project), {"assignment": shown(page).id, "choice": "tie"})
    assert refused.status_code == 422
    assert b"Choose one of: left, right." in refused.content


def test_per_criterion_choices_are_mapped_through_the_sides(client, quiet_project, rater):
    quiet_project.criteria = ["helpfulness", "harmlessness"]
    quiet_project.save(update_fields=["criteria"])
    make_pairs(quiet_project, 1)
    login(client, rater)
    page = client.get(url(quiet_project))
    assert b"helpfulness" in page.content
    assignment = shown(page)
    Assignment.objects.filter(id=assignment.id).update(swapped=True)
    client.post(
        url(quiet_project),
        {
            "assignment": assignment.id,
            "choice": "left",
            "criterion-0": "left",
            "criterion-1": "tie",
        },
    )
    assert Judgment.objects.get().criteria == {"helpfulness": "b", "harmlessness": "tie"}


def test_a_judgment_for_someone_elses_lease_is_refused(client, quiet_project, rater, lead):
    make_pairs(quiet_project, 2)
    login(client, lead)
    theirs = shown(client.get(url(quiet_project)))
    login(client, rater)
    response = client.post(url(quiet_project), {"assignment": theirs.id, "choice": "left"}, **HTMX)
    assert b"This pair is not leased to you." in response.content
    assert not Judgment.objects.exists()


def test_a_double_submit_records_one_judgment(client, quiet_project, rater):
    make_pairs(quiet_project, 2)
    login(client, rater)
    assignment = shown(client.get(url(quiet_project)))
    for _ in range(2):
        client.post(url(quiet_project), {"assignment": assignment.id, "choice": "left"}, **HTMX)
    assert Judgment.objects.count() == 1


def test_skip_gives_another_pair_and_never_the_skipped_one_again(client, quiet_project, rater):
    make_pairs(quiet_project, 2)
    login(client, rater)
    first = shown(client.get(url(quiet_project)))
    response = client.post(url(quiet_project, "skip"), {"assignment": first.id}, **HTMX)
    assert b"Skipped." in response.content
    second = shown(response)
    assert second.pair_id != first.pair_id
    client.post(url(quiet_project), {"assignment": second.id, "choice": "left"})
    end = client.get(url(quiet_project))
    assert shown(end) is None
    assert Assignment.objects.get(id=first.id).status == Assignment.Status.SKIPPED


def test_undo_takes_back_the_last_judgment_and_shows_that_pair_again(client, quiet_project, rater):
    make_pairs(quiet_project, 3)
    login(client, rater)
    first = shown(client.get(url(quiet_project)))
    after = client.post(url(quiet_project), {"assignment": first.id, "choice": "left"}, **HTMX)
    assert b'id="undo-button"' in after.content
    response = client.post(url(quiet_project, "undo"), **HTMX)
    assert b"taken back" in response.content
    assert shown(response).id == first.id
    assert not Judgment.objects.exists()
    client.post(url(quiet_project), {"assignment": first.id, "choice": "right"})
    assert Judgment.objects.get().pair_id == first.pair_id


def test_undo_without_javascript_redirects_to_the_undone_pair(client, quiet_project, rater):
    make_pairs(quiet_project, 3)
    login(client, rater)
    first = shown(client.get(url(quiet_project)))
    client.post(url(quiet_project), {"assignment": first.id, "choice": "left"})
    client.get(url(quiet_project))  # leases the next pair, so the undone one is not the oldest
    response = client.post(url(quiet_project, "undo"))
    assert response.status_code == 302
    assert shown(client.get(response["Location"])).id == first.id


def test_undo_after_the_window_explains_why_not(client, quiet_project, rater):
    judgment = JudgmentFactory(
        assignment__pair__project=quiet_project,
        assignment__pair__prompt__batch__project=quiet_project,
        assignment__rater=rater,
        assignment__status=Assignment.Status.DONE,
        created_at=timezone.now() - timezone.timedelta(hours=1),
    )
    login(client, rater)
    page = client.get(url(quiet_project))
    assert b'id="undo-button"' not in page.content
    response = client.post(url(quiet_project, "undo"), **HTMX)
    assert response.status_code == 409
    assert b"Nothing to undo" in response.content
    assert Judgment.objects.get() == judgment


def test_the_end_state_when_nothing_is_left(client, quiet_project, rater):
    login(client, rater)
    response = client.get(url(quiet_project))
    assert response.status_code == 200
    assert shown(response) is None
    assert b"Nothing left for you right now" in response.content
    assert b'id="judgment-form"' not in response.content


def test_progress_counts_today_the_project_and_what_is_left(client, quiet_project, rater):
    make_pairs(quiet_project, 4)
    JudgmentFactory(
        assignment__pair__project=quiet_project,
        assignment__pair__prompt__batch__project=quiet_project,
        assignment__rater=rater,
        assignment__status=Assignment.Status.DONE,
        created_at=timezone.now() - timezone.timedelta(days=3),
    )
    login(client, rater)
    assignment = shown(client.get(url(quiet_project)))
    client.post(url(quiet_project), {"assignment": assignment.id, "choice": "left"}, **HTMX)
    progress = client.get(url(quiet_project)).context["progress"]
    assert (progress.judged_today, progress.judged_in_project) == (1, 2)
    # 5 pairs, minus the one judged days ago and the one just judged; the one on screen counts.
    assert progress.left_for_me == 3


def test_a_paused_rater_sees_a_friendly_message_and_gets_no_pair(client, quiet_project, rater):
    make_pairs(quiet_project, 1)
    rater.memberships.update(paused_at=timezone.now())
    login(client, rater)
    response = client.get(url(quiet_project))
    assert response.status_code == 200
    assert b"Your rating is paused" in response.content
    assert not Assignment.objects.exists()
    assert b"Your rating is paused" in client.post(url(quiet_project), {"choice": "left"}).content
    assert not Judgment.objects.exists()


XSS = (
    "<script>alert(1)</script> <img src=x onerror=alert(1)> [click](javascript:alert(1)) "
    '<div hx-get="/boom" hx-trigger="load">boom</div> <iframe src="/"></iframe>'
)


def test_markup_in_prompts_and_responses_is_shown_as_text(client, quiet_project, rater):
    prompt = PromptFactory(batch__project=quiet_project, text="prompt " + XSS)
    PairFactory(
        project=quiet_project,
        prompt=prompt,
        response_a=ResponseFactory(prompt=prompt, text="left " + XSS),
        response_b=ResponseFactory(prompt=prompt, text="right " + XSS),
    )
    login(client, rater)
    content = client.get(url(quiet_project)).content
    for raw in (
        b"<script>alert",
        b"<img",
        b'href="javascript:',
        b"<div hx-get",
        b"<iframe",
    ):
        assert raw not in content
    assert content.count(b"&lt;script&gt;alert(1)&lt;/script&gt;") == 3
    assert content.count(b'&lt;div hx-get="/boom" hx-trigger="load"&gt;') == 3
    assert content.count(b"hx-disable") >= 3


def test_links_keep_only_safe_targets_and_images_are_not_loaded(client, quiet_project, rater):
    make_pairs(
        quiet_project,
        1,
        response_a__text="[docs](https://example.org/x) [here](/admin/) ![pixel](https://t.example/p.png)",
    )
    login(client, rater)
    content = client.get(url(quiet_project)).content
    assert b'<a href="https://example.org/x" rel="noopener nofollow noreferrer">docs</a>' in content
    assert b'href="/admin/"' not in content
    assert b"<img" not in content


def test_markdown_tables_and_highlighted_code(client, quiet_project, rater):
    text = "| a | b |\n|---|---|\n| 1 | 2 |\n\n```python\ndef f():\n    return '<b>'\n```\n"
    make_pairs(quiet_project, 1, response_a__text=text)
    login(client, rater)
    content = client.get(url(quiet_project)).content
    assert b"<table>" in content
    assert b"<td>1</td>" in content
    # Focusable, so a keyboard can scroll a long block (axe: scrollable-region-focusable).
    assert b'<pre class="highlight" tabindex="0"><code><span class="k">def</span>' in content
    assert b"&#39;&lt;b&gt;&#39;" in content or b"'&lt;b&gt;'" in content
    assert b"pygments" in content  # the stylesheet for the highlighting classes


def test_a_chat_prompt_is_a_transcript_with_roles(client, quiet_project, rater):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi <b>there</b>"},
    ]
    prompt = PromptFactory(batch__project=quiet_project, text="", messages=messages)
    make_pairs(quiet_project, 1, prompt=prompt)
    login(client, rater)
    content = client.get(url(quiet_project)).content
    assert b'<li class="turn" data-role="system">' in content
    assert b'<span class="role">user</span>' in content
    assert b"Hi &lt;b&gt;there&lt;/b&gt;" in content


def test_the_overview_links_to_the_rate_page(client, quiet_project, rater):
    login(client, rater)
    content = client.get(f"/p/{quiet_project.slug}/").content
    assert f'href="{url(quiet_project)}"'.encode() in content


@pytest.mark.parametrize("pairs", [3, 60])
def test_the_submit_and_next_round_trip_needs_few_queries_whatever_the_project_size(
    client, quiet_project, rater, pairs, django_assert_max_num_queries
):
    make_pairs(quiet_project, pairs)
    login(client, rater)
    assignment = shown(client.get(url(quiet_project)))
    # 3 for session, user and membership; 10 for the engine's record-and-lease (4 of them
    # savepoints); 2 for the progress counts. None of them grows with the project.
    with django_assert_max_num_queries(20):
        response = client.post(
            url(quiet_project), {"assignment": assignment.id, "choice": "left"}, **HTMX
        )
    assert shown(response).pair_id != assignment.pair_id


@pytest.mark.parametrize("text", ["", "  \n\t "])
def test_an_empty_response_shows_as_a_visible_empty_response(client, quiet_project, rater, text):
    make_pairs(quiet_project, 1, response_a__text=text, response_b__text="Four.")
    login(client, rater)

    page = client.get(url(quiet_project)).content.decode()

    assert page.count('<p class="empty-response">(empty response)</p>') == 1
    assert "Four." in page
