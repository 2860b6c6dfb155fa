"""Agreement reports, the quality control that acts on them, the dashboard, API and command."""

import csv
import io
import json
import re
from datetime import timedelta

import numpy as np
import pytest
from django.core.management import call_command
from django.utils import timezone

from annotation import tasks
from annotation.models import AgreementReport, Membership, Pair
from annotation.selectors.agreement import HEATMAP_RATERS, AgreementScope, judgment_arrays_load
from annotation.services.agreement import agreement_report_create, agreement_report_refresh
from annotation.services.rating import Submission, judgment_record
from tests.conftest import login
from tests.factories import (
    AssignmentFactory,
    BatchFactory,
    JudgmentFactory,
    MembershipFactory,
    PairFactory,
    UserFactory,
)


def judge(pair, rater, choice, **fields):
    strength = 2 if choice in ("a", "b") else None
    return JudgmentFactory(
        assignment__pair=pair, assignment__rater=rater, choice=choice, strength=strength, **fields
    )


def raters_of(project, *names):
    return [
        MembershipFactory(project=project, user=UserFactory(username=name)).user for name in names
    ]


@pytest.fixture
def batch(project):
    return BatchFactory(project=project)


@pytest.fixture
def small(project, batch):
    """Three raters on four pairs; the last pair is gold ("a").

    pair 1: a a a   pair 2: a a b   pair 3: b b b   pair 4 (gold a): a b tie
    """
    u1, u2, u3 = raters_of(project, "u1", "u2", "u3")
    answers = [("a", "a", "a"), ("a", "a", "b"), ("b", "b", "b"), ("a", "b", "tie")]
    for number, choices in enumerate(answers):
        pair = PairFactory(prompt__batch=batch, gold_choice="a" if number == 3 else "")
        for rater, choice in zip((u1, u2, u3), choices, strict=True):
            judge(pair, rater, choice)
    return u1, u2, u3


def by_name(report):
    return {row["username"]: row for row in report.metrics["raters"]}


def test_a_report_of_a_small_project_has_the_hand_computed_values(project, small):
    report = agreement_report_create(project=project)

    assert report.judgments == 12
    assert report.metrics["counts"] == {
        "judgments": 12,
        "pairs": 4,
        "pairs_judged_twice_or_more": 4,
        "raters": 3,
    }
    coefficients = report.metrics["coefficients"]
    # Per pair: 1, 1/3, 1, 0 of rater couples agree.
    assert coefficients["percent_agreement"]["value"] == pytest.approx(7 / 12)
    # Chance: shares a 6/12, b 5/12, tie 1/12, so (84/144 - 62/144) / (82/144).
    assert coefficients["fleiss_kappa"]["value"] == pytest.approx(22 / 82)
    low, high = coefficients["fleiss_kappa"]["low"], coefficients["fleiss_kappa"]["high"]
    assert low <= 22 / 82 <= high
    raters = by_name(report)
    # Gold pair 4 is "a": only u1 got it.
    assert [raters[n]["gold_accuracy"] for n in ("u1", "u2", "u3")] == [1.0, 0.0, 0.0]
    assert raters["u3"]["agreement_with_others"] == pytest.approx(0.5)
    assert raters["u1"]["agreement_with_others"] == pytest.approx(2.5 / 4)
    assert raters["u1"]["user_id"] == small[0].id
    assert report.metrics["thresholds"]["min_agreement"] == project.min_agreement
    assert report.last_judgment_id == max(project.pairs.values_list("judgments__id", flat=True))


@pytest.mark.postgres_only  # COPY ... TO STDOUT (FORMAT BINARY)
def test_the_copy_reader_and_the_row_reader_give_the_same_arrays(project, small):
    Pair.objects.filter(project=project).first().judgments.update(active_ms=500)
    fast = judgment_arrays_load(project=project, scope=AgreementScope(), use_copy=True)
    plain = judgment_arrays_load(project=project, scope=AgreementScope(), use_copy=False)
    assert np.array_equal(fast.pair_ids, plain.pair_ids)
    assert np.array_equal(fast.rater_ids, plain.rater_ids)
    # Neither reader sorts (the metrics do not depend on row order): compare by (pair, rater).
    by_fast = np.lexsort((fast.arrays.rater, fast.arrays.pair))
    by_plain = np.lexsort((plain.arrays.rater, plain.arrays.pair))
    for column in ("pair", "rater", "choice", "left_chosen", "duration_ms", "gold"):
        ours, theirs = (
            getattr(fast.arrays, column)[by_fast],
            getattr(plain.arrays, column)[by_plain],
        )
        assert np.array_equal(ours, theirs)
    assert np.array_equal(
        fast.arrays.signed_strength[by_fast], plain.arrays.signed_strength[by_plain], equal_nan=True
    )
    assert fast.last_judgment_id == plain.last_judgment_id
    # Time on task is the shorter of the server's and the browser's measure.
    assert sorted(fast.arrays.duration_ms)[:3] == [500.0, 500.0, 500.0]


def test_a_report_of_one_batch_or_some_days_counts_only_those(project, small):
    other = BatchFactory(project=project)
    u1, u2, _ = small
    late = PairFactory(prompt__batch=other)
    judge(late, u1, "a", created_at=timezone.now() - timedelta(days=3))
    judge(late, u2, "b", created_at=timezone.now() - timedelta(days=3))

    only_other = agreement_report_create(project=project, scope=AgreementScope(batch_id=other.id))
    assert only_other.judgments == 2
    assert only_other.scope == {"batch": other.id}
    today = timezone.now().date()
    recent = agreement_report_create(project=project, scope=AgreementScope(since=today))
    assert recent.judgments == 12
    old = AgreementScope(until=today - timedelta(days=2))
    assert agreement_report_create(project=project, scope=old).judgments == 2


def test_the_refresh_task_stores_a_new_report_only_when_judgments_changed(project, small):
    tasks.agreement_report_refresh(project.id)
    tasks.agreement_report_refresh(project.id)  # a second delivery, or beat right after
    assert AgreementReport.objects.filter(project=project).count() == 1

    judge(PairFactory(prompt__batch=project.batches.first()), small[0], "a")
    tasks.agreement_report_refresh(project.id)
    assert AgreementReport.objects.filter(project=project).count() == 2
    assert agreement_report_refresh(project_id=project.id).judgments == 13


def test_beat_refreshes_only_projects_with_judgments_since_their_last_report(
    project, other_project, small, monkeypatch
):
    sent = []
    monkeypatch.setattr(tasks.agreement_report_refresh, "delay", sent.append)
    tasks.agreement_report_refresh_due()
    assert sent == [project.id]  # the other project has no judgments

    agreement_report_create(project=project)
    sent.clear()
    tasks.agreement_report_refresh_due()
    assert sent == []


def test_old_reports_keep_only_their_headline_numbers(project, small, monkeypatch):
    monkeypatch.setattr("annotation.services.agreement.KEEP_FULL_REPORTS", 2)
    for _ in range(4):
        agreement_report_create(project=project)
    reports = list(AgreementReport.objects.filter(project=project).order_by("created_at", "id"))
    assert ["raters" in r.metrics for r in reports] == [False, False, True, True]
    assert all("coefficients" in r.metrics for r in reports)


@pytest.fixture
def strict(project):
    project.auto_pause = True
    project.min_agreement = 0.6
    project.quality_min_judgments = 4
    project.save()
    return project


def test_a_rater_below_the_agreement_threshold_is_flagged_and_paused(strict, small, lead):
    report = agreement_report_create(project=strict)
    raters = by_name(report)
    assert raters["u3"]["flags"] == ["low_agreement"]
    assert raters["u1"]["flags"] == []
    assert report.metrics["auto_paused"] == ["u3"]
    paused = Membership.objects.get(project=strict, user=small[2])
    assert paused.paused_at is not None
    assert Membership.objects.get(project=strict, user=small[0]).paused_at is None


def test_no_one_is_flagged_on_too_few_judgments_or_paused_without_auto_pause(project, small):
    project.min_agreement = 0.6
    project.quality_min_judgments = 5
    project.save()
    assert by_name(agreement_report_create(project=project))["u3"]["flags"] == []

    project.quality_min_judgments = 4
    project.save()
    assert by_name(agreement_report_create(project=project))["u3"]["flags"] == ["low_agreement"]
    assert not Membership.objects.filter(project=project, paused_at__isnull=False).exists()


def test_a_lead_unpauses_a_rater_and_the_next_report_does_not_pause_again(
    client, strict, small, lead
):
    agreement_report_create(project=strict)
    u3 = small[2]
    login(client, lead)
    response = client.post(f"/p/{strict.slug}/agreement/raters/{u3.id}/unpause/")
    assert response.status_code == 302
    member = Membership.objects.get(project=strict, user=u3)
    assert member.paused_at is None
    assert member.unpaused_at is not None

    agreement_report_create(project=strict)
    assert Membership.objects.get(project=strict, user=u3).paused_at is None


def test_a_rater_cannot_unpause_anyone(client, strict, small):
    agreement_report_create(project=strict)
    u1, _, u3 = small
    login(client, u1)
    assert client.post(f"/p/{strict.slug}/agreement/raters/{u3.id}/unpause/").status_code == 403
    assert Membership.objects.get(project=strict, user=u3).paused_at is not None


def test_unpausing_someone_outside_the_project_is_404(client, project, lead, outsider):
    login(client, lead)
    response = client.post(f"/p/{project.slug}/agreement/raters/{outsider.id}/unpause/")
    assert response.status_code == 404


# --- adaptive overlap ---------------------------------------------------------------------------


def record(pair, rater, shown):
    assignment = AssignmentFactory(pair=pair, rater=rater, swapped=False)
    judgment_record(
        project=pair.project,
        rater=rater,
        assignment_id=assignment.id,
        submission=Submission(choice=shown),
    )
    pair.refresh_from_db()


@pytest.fixture
def open_pair(project, batch):
    project.max_raters_per_pair = 4
    project.save()
    return PairFactory(prompt__batch=batch, judgments_needed=3)


def test_a_pair_whose_raters_all_disagree_gets_one_more_judgment_up_to_the_cap(project, open_pair):
    u1, u2, u3, u4 = raters_of(project, "u1", "u2", "u3", "u4")
    record(open_pair, u1, "left")
    record(open_pair, u2, "right")
    assert open_pair.judgments_needed == 3  # still collecting the first three
    record(open_pair, u3, "tie")
    assert open_pair.judgments_needed == 4
    record(open_pair, u4, "left")  # 2 of 4: still no majority, but the cap is 4
    assert open_pair.judgments_needed == 4
    assert open_pair.judgments_count == 4


def test_a_two_to_one_majority_needs_no_extra_judgment(project, open_pair):
    u1, u2, u3 = raters_of(project, "u1", "u2", "u3")
    for rater, shown in ((u1, "left"), (u2, "left"), (u3, "right")):
        record(open_pair, rater, shown)
    assert open_pair.judgments_needed == 3


def test_gold_pairs_never_get_extra_judgments(project, batch):
    gold = PairFactory(prompt__batch=batch, judgments_needed=3, gold_choice="a")
    for rater, shown in zip(
        raters_of(project, "u1", "u2", "u3"), ("left", "right", "tie"), strict=True
    ):
        record(gold, rater, shown)
    assert gold.judgments_needed == 3


# --- dashboard ----------------------------------------------------------------------------------


def test_raters_get_403_and_members_of_other_projects_404(client, project, rater, outsider):
    login(client, rater)
    assert client.get(f"/p/{project.slug}/agreement/").status_code == 403
    assert client.get(f"/p/{project.slug}/agreement/raters.csv").status_code == 403
    client.logout()
    login(client, outsider)
    assert client.get(f"/p/{project.slug}/agreement/").status_code == 404
    assert client.post(f"/p/{project.slug}/agreement/refresh/").status_code == 404


def test_the_dashboard_before_any_report_offers_a_refresh(client, project, lead):
    login(client, lead)
    response = client.get(f"/p/{project.slug}/agreement/")
    assert response.status_code == 200
    assert b"No agreement report for this project yet" in response.content


def test_the_dashboard_shows_the_stored_report_with_charts_and_tables(
    client, project, small, admin_member
):
    agreement_report_create(project=project)
    agreement_report_create(project=project)
    login(client, admin_member)
    response = client.get(f"/p/{project.slug}/agreement/")
    content = response.content.decode()
    assert response.status_code == 200
    assert "Fleiss&#x27; kappa" in content
    assert "0.268" in content
    assert "fair" in content  # Landis & Koch's band for 0.27
    assert "Report time (UTC)" in content  # the trend chart's labelled axis
    # trend, rater grid, per-pair distribution; and a confusion matrix per rater (3 raters)
    assert content.count("<svg") == 3 + content.count('<svg class="confusion"') == 6
    assert "Trend as a table" in content
    assert "Distribution as a table" in content
    assert 'href="/p/alpha/agreement/"' in content  # the project nav links here
    assert "style=" not in content


def test_the_rater_table_sorts_by_allow_listed_keys_only(client, project, small, lead):
    agreement_report_create(project=project)
    login(client, lead)
    response = client.get(f"/p/{project.slug}/agreement/?sort=rater__password")
    assert response.status_code == 200
    assert response.context["dashboard"].sort == "agreement"
    assert response.context["dashboard"].raters[0]["username"] == "u3"

    response = client.get(f"/p/{project.slug}/agreement/?sort=-rater")
    assert [r["username"] for r in response.context["dashboard"].raters] == ["u3", "u2", "u1"]


def test_sorting_with_htmx_returns_only_the_rater_table(client, project, small, lead):
    agreement_report_create(project=project)
    login(client, lead)
    response = client.get(
        f"/p/{project.slug}/agreement/?sort=gold", HTTP_HX_REQUEST="true", HTTP_HX_TARGET="raters"
    )
    assert response.content.decode().lstrip().startswith('<section id="raters"')
    assert b"<svg" not in response.content


def test_a_hostile_username_shows_as_text(client, project, batch, lead):
    hostile = MembershipFactory(
        project=project, user=UserFactory(username='<img src=x onerror="alert(1)">')
    ).user
    other = raters_of(project, "plain")[0]
    pair = PairFactory(prompt__batch=batch)
    judge(pair, hostile, "a")
    judge(pair, other, "b")
    agreement_report_create(project=project)
    login(client, lead)
    content = client.get(f"/p/{project.slug}/agreement/").content
    assert b"<img src=x" not in content
    assert b"&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in content


def test_the_rater_csv_is_an_attachment_with_formulas_neutralised(client, project, batch, lead):
    sneaky = MembershipFactory(project=project, user=UserFactory(username="=HYPERLINK(1)")).user
    other = raters_of(project, "plain")[0]
    pair = PairFactory(prompt__batch=batch)
    judge(pair, sneaky, "a")
    judge(pair, other, "b")
    agreement_report_create(project=project)
    login(client, lead)
    response = client.get(f"/p/{project.slug}/agreement/raters.csv?sort=rater")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment; filename=")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][0] == "username"
    assert [row[0] for row in rows[1:]] == ["'=HYPERLINK(1)", "plain"]
    assert rows[1][2] == "0.0"  # numbers stay numbers


def test_refresh_now_is_a_post_that_enqueues_after_commit(
    client, project, lead, django_capture_on_commit_callbacks
):
    login(client, lead)
    assert client.get(f"/p/{project.slug}/agreement/refresh/").status_code == 405
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(f"/p/{project.slug}/agreement/refresh/", {"since": "2024-01-02"})
    assert response.status_code == 302
    assert re.fullmatch(
        rf"/p/{project.slug}/agreement/\?since=2024-01-02&requested=\d{{13}}", response["Location"]
    )
    assert len(callbacks) == 1


def _poll(client, project, query):
    return client.get(
        f"/p/{project.slug}/agreement/refresh/status/?{query}", HTTP_HX_REQUEST="true"
    )


def test_after_refresh_now_the_page_polls_until_the_report_exists_then_reloads(
    client, project, batch, small, lead
):
    agreement_report_create(project=project)
    judge(PairFactory(prompt__batch=batch), small[0], "a")  # the stored report is now stale
    login(client, lead)
    page = client.post(f"/p/{project.slug}/agreement/refresh/", follow=True).content.decode()
    query = re.search(
        r'hx-get="/p/alpha/agreement/refresh/status/\?([^"]+)" hx-trigger="every 2s"', page
    )
    assert query, "the status line polls"
    assert "updates by itself when it is ready" in page
    waiting = _poll(client, project, query.group(1).replace("&amp;", "&"))
    assert waiting.status_code == 204  # still computing: nothing swapped, the poll goes on
    assert "HX-Redirect" not in waiting

    agreement_report_refresh(project_id=project.id)  # what the worker does
    ready = _poll(client, project, query.group(1).replace("&amp;", "&"))
    assert ready["HX-Redirect"] == f"/p/{project.slug}/agreement/"
    assert "every 2s" not in ready.content.decode()
    reloaded = client.get(ready["HX-Redirect"]).content.decode()
    assert "The report below is fresh." in reloaded


def test_a_refresh_that_finds_nothing_new_is_ready_at_once(client, project, small, lead):
    agreement_report_create(project=project)
    login(client, lead)
    page = client.post(f"/p/{project.slug}/agreement/refresh/", follow=True).content.decode()
    assert "The report below is fresh." in page  # the stored report is current
    assert "every 2s" not in page


def test_polling_gives_up_after_two_minutes_and_says_why(client, project, small, lead):
    login(client, lead)
    asked = round((timezone.now() - timedelta(minutes=3)).timestamp() * 1000)
    status = _poll(client, project, f"requested={asked}").content.decode()
    assert "may not be running" in status
    assert "hx-trigger" not in status


def test_invalid_filters_are_reported_and_the_whole_project_shown(client, project, small, lead):
    agreement_report_create(project=project)
    login(client, lead)
    response = client.get(f"/p/{project.slug}/agreement/?since=2024-05-02&until=2024-05-01")
    assert b"The start date is after the end date." in response.content
    assert response.context["dashboard"].report is not None


def test_the_dashboard_needs_few_queries_however_many_reports(
    client, project, small, lead, django_assert_max_num_queries
):
    for _ in range(5):
        agreement_report_create(project=project)
    login(client, lead)
    with django_assert_max_num_queries(10):
        assert client.get(f"/p/{project.slug}/agreement/").status_code == 200


# --- API and command ----------------------------------------------------------------------------


def test_the_api_computes_a_missing_report_without_storing_it_then_serves_the_stored_one(
    client, project, small, lead
):
    """A GET writes nothing: without a stored report it answers one computed now (id null),
    stores none and pauses nobody, even in a project that pauses flagged raters."""
    project.auto_pause = True
    project.save(update_fields=["auto_pause"])
    login(client, lead)
    first = client.get(f"/api/v1/projects/{project.slug}/agreement/")
    assert first.status_code == 200
    body = first.json()
    assert body["id"] is None
    assert body["judgments"] == 12
    assert body["metrics"]["coefficients"]["percent_agreement"]["value"] == pytest.approx(7 / 12)
    assert body["metrics"]["auto_paused"] == []
    assert not AgreementReport.objects.filter(project=project).exists()
    assert not Membership.objects.filter(project=project, paused_at__isnull=False).exists()
    stored = agreement_report_create(project=project)
    second = client.get(f"/api/v1/projects/{project.slug}/agreement/")
    assert second.json()["id"] == stored.id


def test_the_api_refuses_raters_outsiders_and_foreign_batches(
    client, project, other_project, rater, lead, outsider
):
    login(client, rater)
    assert client.get(f"/api/v1/projects/{project.slug}/agreement/").status_code == 403
    client.logout()
    login(client, outsider)
    assert client.get(f"/api/v1/projects/{project.slug}/agreement/").status_code == 404
    client.logout()
    login(client, lead)
    foreign = BatchFactory(project=other_project)
    response = client.get(f"/api/v1/projects/{project.slug}/agreement/?batch={foreign.id}")
    assert response.status_code == 400
    assert "batch" in response.json()


def test_the_command_prints_fresh_numbers_and_json(project, small):
    out = io.StringIO()
    call_command("agreement", project.slug, stdout=out)
    text = out.getvalue()
    assert "12 judgments on 4 pairs" in text
    assert "Fleiss' kappa" in text
    assert "0.268" in text

    out = io.StringIO()
    call_command("agreement", project.slug, "--json", stdout=out)
    report = json.loads(out.getvalue())
    assert report["counts"]["raters"] == 3
    assert not AgreementReport.objects.exists()  # computed, not stored


def test_with_more_raters_than_the_grid_holds_the_couple_table_covers_them_all(
    client, project, batch, lead
):
    raters = raters_of(project, *(f"judge{i:02d}" for i in range(HEATMAP_RATERS + 5)))
    pair = PairFactory(prompt__batch=batch)
    for number, rater in enumerate(raters):
        judge(pair, rater, "a" if number % 3 else "b")
    agreement_report_create(project=project)
    login(client, lead)
    response = client.get(f"/p/{project.slug}/agreement/")
    dashboard = response.context["dashboard"]
    assert dashboard.heatmap_raters == HEATMAP_RATERS
    assert len(dashboard.heatmap.labels) == HEATMAP_RATERS
    in_table = {couple.first for couple in dashboard.heatmap_table} | {
        couple.second for couple in dashboard.heatmap_table
    }
    assert len(in_table) == len(raters)  # the table is the fallback beyond the grid
    page = response.content.decode()
    assert f"The {HEATMAP_RATERS} raters with most judgments are shown" in page
    assert re.search(r'<svg width="[\d.]+" height="[\d.]+" viewBox=', page)
