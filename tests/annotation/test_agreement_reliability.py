"""Rater reliability on the agreement report and page: accuracy, confusion, spammer, inverted."""

import random

import pytest

from annotation.models import Membership
from annotation.services.agreement import agreement_report_create
from tests.annotation.test_agreement_app import by_name, judge, raters_of
from tests.conftest import login
from tests.factories import BatchFactory, PairFactory


@pytest.fixture
def mixed(project):
    """40 pairs (10 of them gold) judged by two careful raters, a coin-flipper and one who picks
    the opposite of the truth."""
    rng = random.Random(7)
    careful1, careful2, coin, contrary = raters_of(project, "care1", "care2", "coin", "contra")
    batch = BatchFactory(project=project)
    for number in range(40):
        truth = rng.choice("ab")
        other = "b" if truth == "a" else "a"
        pair = PairFactory(prompt__batch=batch, gold_choice=truth if number < 10 else "")
        judge(pair, careful1, truth if rng.random() < 0.9 else other)
        judge(pair, careful2, truth if rng.random() < 0.9 else other)
        judge(pair, coin, rng.choice("ab"))
        judge(pair, contrary, other)
    return project


def test_the_report_estimates_each_raters_accuracy_and_confusion(mixed):
    raters = by_name(agreement_report_create(project=mixed))
    careful = raters["care1"]["reliability"]
    assert careful["accuracy_low"] < careful["accuracy"] < careful["accuracy_high"]
    assert careful["accuracy"] > 0.75
    assert careful["decisive"] == 40
    assert len(careful["confusion"]) == 2
    assert all(sum(row) == pytest.approx(1.0, abs=1e-3) for row in careful["confusion"])
    assert raters["contra"]["reliability"]["accuracy"] < 0.1
    assert raters["contra"]["inverted"]
    assert not raters["contra"]["spammer"]
    assert raters["coin"]["spammer"]
    assert not raters["care1"]["spammer"]
    assert not raters["care1"]["inverted"]


def test_spammer_and_inverted_flags_pause_by_the_projects_policy(mixed, lead):
    mixed.auto_pause = True
    mixed.quality_min_judgments = 30
    mixed.min_agreement = 0.0
    mixed.min_gold_accuracy = 0.0
    mixed.save()

    report = agreement_report_create(project=mixed)

    raters = by_name(report)
    assert "inverted" in raters["contra"]["flags"]
    assert "spammer" in raters["coin"]["flags"]
    assert report.metrics["auto_paused"] == ["coin", "contra"]
    paused = Membership.objects.filter(project=mixed, paused_at__isnull=False)
    assert sorted(m.user.username for m in paused) == ["coin", "contra"]


def test_no_reliability_flag_below_the_projects_minimum_judgments(mixed):
    mixed.quality_min_judgments = 41
    mixed.save()
    raters = by_name(agreement_report_create(project=mixed))
    assert raters["contra"]["inverted"]
    assert raters["contra"]["flags"] == []


def test_the_page_shows_accuracy_intervals_and_a_confusion_matrix(client, mixed, lead):
    agreement_report_create(project=mixed)
    login(client, lead)
    page = client.get(f"/p/{mixed.slug}/agreement/").content.decode()
    section = page[page.index('id="reliability"') :]
    assert "Rater reliability (Dawid-Skene)" in section
    assert section.count('<svg class="confusion"') == 4
    assert "picks the opposite" in section
    assert "answers carry no information" in section
    assert "says a" in section
