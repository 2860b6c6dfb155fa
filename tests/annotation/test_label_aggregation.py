"""Aggregation as a project setting and an export option: majority, weighted, dawid_skene."""

import io
import json
from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from annotation.exports import labels
from annotation.exports.labels import AGGREGATIONS
from annotation.models import Project
from annotation.services.projects import project_update
from tests.annotation.test_exports import _export, _judge, _lines, _pair
from tests.conftest import login
from tests.factories import BatchFactory, UserFactory


@pytest.fixture
def crowd(project):
    """One careful rater and two who answer every gold pair backwards. On the open pair the
    careful one says a and the two others b: majority picks b, reliability-aware rules pick a."""
    careful, flip1, flip2 = (UserFactory(username=name) for name in ("careful", "flip1", "flip2"))
    batch = BatchFactory(project=project)
    for i in range(6):
        gold = _pair(batch, f"Gold {i}?", "right", "wrong", gold_choice="a", judgments_needed=0)
        _judge(gold, careful, "a", 3)
        _judge(gold, flip1, "b", 3)
        _judge(gold, flip2, "b", 3)
    open_pair = _pair(batch, "Open?", "good", "bad")
    _judge(open_pair, careful, "a", 3)
    _judge(open_pair, flip1, "b", 3)
    _judge(open_pair, flip2, "b", 3)
    return {"careful": careful, "flips": (flip1, flip2), "open": open_pair}


def test_the_project_setting_names_the_same_rules_as_the_engine():
    assert tuple(Project.Aggregation.values) == AGGREGATIONS


def test_majority_follows_the_crowd_and_reliability_aware_rules_follow_the_gold(project, crowd):
    majority = _lines(_export(project, format="trl"))
    assert [(line["prompt"], line["chosen"]) for line in majority] == [("Open?", "bad")]
    assert majority[0]["p_chosen"] == pytest.approx(2 / 3, abs=1e-6)
    for rule in ("weighted", "dawid_skene"):
        lines = _lines(_export(project, format="trl", aggregation=rule))
        assert [(line["prompt"], line["chosen"]) for line in lines] == [("Open?", "good")], rule
        assert lines[0]["p_chosen"] > 0.9
        # The margin still counts the raters' votes: one for, two against, so nothing.
        assert lines[0]["margin"] == 0.0


def test_pairs_below_the_posterior_threshold_are_left_out(project, crowd):
    assert _lines(_export(project, format="trl", min_posterior=0.7)) == []
    kept = _lines(_export(project, format="trl", aggregation="dawid_skene", min_posterior=0.7))
    assert [line["prompt"] for line in kept] == ["Open?"]


def test_the_api_takes_the_aggregation_and_defaults_to_the_project_setting(
    client, project, lead, crowd
):
    token, _ = Token.objects.get_or_create(user=lead)
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token.key}"  # the export API takes tokens only
    url = f"/api/v1/projects/{project.slug}/export/"
    by_default = _lines(b"".join(client.get(url).streaming_content))
    assert by_default[0]["chosen"] == "bad"
    asked = _lines(b"".join(client.get(url, {"aggregation": "weighted"}).streaming_content))
    assert asked[0]["chosen"] == "good"
    project_update(project=project, aggregation="dawid_skene", min_posterior=0.6)
    stored = _lines(b"".join(client.get(url).streaming_content))
    assert stored[0]["chosen"] == "good"
    refused = client.get(url, {"aggregation": "mean"})
    assert refused.status_code == 400
    assert "aggregation" in refused.json()


def test_the_page_and_the_command_take_the_aggregation(client, project, lead, crowd, tmp_path):
    login(client, lead)
    page = client.post(
        f"/p/{project.slug}/export/", {"format": "trl", "aggregation": "dawid_skene"}
    )
    assert _lines(b"".join(page.streaming_content))[0]["chosen"] == "good"
    path = tmp_path / "out.jsonl"
    call_command(
        "export", project.slug, "--aggregation", "weighted", "-o", str(path), stderr=io.StringIO()
    )
    assert json.loads(path.read_text().splitlines()[0])["chosen"] == "good"


def test_the_judgments_export_carries_each_raters_estimated_accuracy(project, crowd):
    lines = _lines(_export(project, format="judgments", include_gold=True))
    accuracy = {line["rater"]: line["rater_accuracy"] for line in lines}
    careful = {line["rater_accuracy"] for line in lines if line["choice"] == "a"}
    assert len(accuracy) == 3
    assert min(careful) > 0.8
    assert sorted(accuracy.values())[:2] == [pytest.approx(0.0, abs=0.2)] * 2


def test_the_settings_refuse_a_threshold_below_one_half(project):
    with pytest.raises(ValidationError) as caught:
        project_update(project=project, min_posterior=0.3)
    assert "min_posterior" in caught.value.message_dict
    with pytest.raises(ValidationError) as caught:
        project_update(project=project, aggregation="mean")
    assert "aggregation" in caught.value.message_dict


def test_the_settings_page_offers_the_label_settings(client, project, admin_member):
    login(client, admin_member)
    page = client.get(f"/p/{project.slug}/settings/")
    assert b'name="aggregation"' in page.content
    assert b'name="min_posterior"' in page.content


@pytest.mark.parametrize(
    ("options", "fits"),
    [
        ({"format": "judgments", "aggregation": "majority"}, 1),
        ({"format": "judgments", "aggregation": "weighted"}, 1),
        ({"format": "judgments", "aggregation": "dawid_skene"}, 1),
        ({"format": "trl", "aggregation": "majority"}, 0),
        ({"format": "trl", "aggregation": "weighted"}, 0),
        ({"format": "trl", "aggregation": "dawid_skene"}, 1),
    ],
)
def test_an_export_fits_dawid_skene_once_and_only_where_it_reads_it(project, crowd, options, fits):
    """A judgments export fits Dawid-Skene once, for rater_accuracy, whatever the rule; a trl
    export only under the dawid_skene rule, whose posteriors it decides by."""
    with mock.patch.object(labels, "dawid_skene", wraps=labels.dawid_skene) as fit:
        assert _lines(_export(project, include_gold=True, **options))
    assert fit.call_count == fits
