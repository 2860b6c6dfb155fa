"""Training data follows the project's label rule: aggregation, p_chosen threshold and ties."""

import pytest

from annotation.services.projects import project_update
from rewardtrain.models import TrainingRun
from rewardtrain.selectors import LabelRule, judgment_cutoff_now, training_data_at
from rewardtrain.services.runs import training_run_request
from tests.annotation.test_exports import _judge, _pair
from tests.annotation.test_label_aggregation import crowd  # noqa: F401 - a fixture
from tests.factories import BatchFactory, UserFactory


def _data(project, rule=None):
    return training_data_at(
        project=project,
        judgment_cutoff=judgment_cutoff_now(project=project),
        pair_cutoff=10**9,
        rule=rule,
    )


@pytest.fixture
def split_and_tie(project):
    """One pair split 2-1 for a, one unanimous for b, one that two of three called a tie."""
    raters = [UserFactory(username=f"t{i}") for i in range(3)]
    batch = BatchFactory(project=project)
    split = _pair(batch, "Split?", "left", "right")
    unanimous = _pair(batch, "Unanimous?", "worse", "better")
    tied = _pair(batch, "Tied?", "same", "alike")
    for rater, choice in zip(raters, ("a", "a", "b"), strict=True):
        _judge(split, rater, choice, 3)
        _judge(unanimous, rater, "b", 3)
    for rater, choice in zip(raters, ("tie", "tie", "a"), strict=True):
        _judge(tied, rater, choice)
    return raters


def test_majority_training_pairs_carry_the_winners_share_as_p_chosen(project, split_and_tie):
    pairs = {pair.prompt: pair for pair in _data(project).pairs}
    assert sorted(pairs) == ["Split?", "Unanimous?"]
    assert pairs["Split?"].p_chosen == pytest.approx(2 / 3, abs=1e-6)
    assert pairs["Unanimous?"].p_chosen == 1.0
    assert not any(pair.tie for pair in pairs.values())


def test_kept_ties_become_tie_pairs_and_the_threshold_leaves_splits_out(project, split_and_tie):
    data = _data(project, LabelRule(keep_ties=True, min_posterior=0.9))
    pairs = {pair.prompt: pair for pair in data.pairs}
    assert sorted(pairs) == ["Tied?", "Unanimous?"]
    assert pairs["Tied?"].tie
    assert pairs["Tied?"].p_chosen == 0.5
    assert data.from_judgments == 2


def test_dawid_skene_training_data_reads_inverted_raters_backwards(project, crowd):  # noqa: F811
    majority = {pair.prompt: pair.chosen for pair in _data(project).pairs}
    estimated = {
        pair.prompt: pair.chosen
        for pair in _data(project, LabelRule(aggregation="dawid_skene")).pairs
    }
    assert majority["Open?"] == "bad"
    assert estimated["Open?"] == "good"


def test_a_run_freezes_the_projects_label_rule_when_requested(project):
    project = project_update(project=project, aggregation="weighted", min_posterior=0.7)
    run, _ = training_run_request(
        project=project, trigger=TrainingRun.Trigger.MANUAL, enqueue=False
    )
    project_update(project=project, aggregation="majority")
    run.refresh_from_db()
    assert run.config["labels"] == {"aggregation": "weighted", "min_posterior": 0.7}
