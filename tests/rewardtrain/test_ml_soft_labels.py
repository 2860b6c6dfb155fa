"""Soft targets (p_chosen) and Davidson ties in the reward model's loss, and in training."""

import math

import pytest
import torch

from rewardtrain.config import TrainConfig
from rewardtrain.data import PreferencePair
from rewardtrain.model import RewardModel
from rewardtrain.train import bradley_terry_loss, preference_loss, train
from tests.rewardtrain.helpers import WORDS, build_tiny_model

EQUAL = torch.tensor([0.3, -1.2, 5.0])


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.mark.parametrize("p", [1.0, 2 / 3, 0.5])
def test_equal_rewards_cost_log_2_under_bradley_terry_whatever_the_target(p):
    loss = preference_loss(EQUAL, EQUAL, target=torch.full((3,), p))
    assert loss.item() == pytest.approx(math.log(2))


@pytest.mark.parametrize("nu", [0.5, 1.0, 3.0])
def test_equal_rewards_cost_the_davidson_closed_form(nu):
    decisive = preference_loss(EQUAL, EQUAL, tie=torch.zeros(3, dtype=torch.bool), tie_weight=nu)
    tied = preference_loss(EQUAL, EQUAL, tie=torch.ones(3, dtype=torch.bool), tie_weight=nu)
    assert decisive.item() == pytest.approx(math.log(2 + nu))
    assert tied.item() == pytest.approx(math.log((2 + nu) / nu))


def test_without_options_it_is_the_bradley_terry_loss():
    chosen, rejected = torch.tensor([1.0, -0.5, 2.0]), torch.tensor([0.0, 0.5, 2.5])
    assert preference_loss(chosen, rejected).item() == pytest.approx(
        bradley_terry_loss(chosen, rejected).item()
    )


@pytest.mark.parametrize("nu", [None, 1.0])
def test_a_two_to_one_split_pushes_less_than_a_unanimous_call(nu):
    def push(p: float) -> float:
        chosen = torch.zeros(1, requires_grad=True)
        preference_loss(chosen, torch.zeros(1), target=torch.tensor([p]), tie_weight=nu).backward()
        assert chosen.grad is not None
        return -chosen.grad.item()

    assert 0 < push(2 / 3) < push(1.0)
    assert push(2 / 3) == pytest.approx(push(1.0) / 3)
    assert push(0.5) == pytest.approx(0.0)


def test_a_tie_pulls_rewards_together_from_either_side():
    for gap in (1.5, -1.5):
        chosen = torch.tensor([gap], requires_grad=True)
        tie = torch.ones(1, dtype=torch.bool)
        preference_loss(chosen, torch.zeros(1), tie=tie, tie_weight=1.0).backward()
        assert chosen.grad is not None
        assert chosen.grad.item() * gap > 0  # descending the loss moves the gap towards 0


def test_tie_pairs_need_a_tie_likelihood():
    with pytest.raises(ValueError, match="tie_weight"):
        preference_loss(EQUAL, EQUAL, tie=torch.ones(3, dtype=torch.bool))


def test_the_config_refuses_an_unknown_tie_policy(tiny_model_dir):
    with pytest.raises(ValueError, match="tie_policy"):
        TrainConfig(base_model=str(tiny_model_dir), tie_policy="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tie_weight"):
        TrainConfig(base_model=str(tiny_model_dir), tie_weight=0.0)


def _tie_pairs(count: int) -> list[PreferencePair]:
    return [
        PreferencePair(
            prompt=f"tell me about the {WORDS[i % 10]} number {i}",
            chosen=f"sure, gladly: the {WORDS[(i + 3) % 10]} is lovely, thank you",
            rejected=f"no. go away, {WORDS[(i + 5) % 10]}",
            p_chosen=0.5,
            tie=True,
        )
        for i in range(count)
    ]


def _gap(result, pairs) -> float:
    reward_model = RewardModel(result.model, result.tokenizer, result.spec, bf16=False)
    prompts = [pair.prompt for pair in pairs]
    a = reward_model.score(prompts, [pair.chosen for pair in pairs])
    b = reward_model.score(prompts, [pair.rejected for pair in pairs])
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(pairs)


def test_a_model_trained_on_tie_only_pairs_moves_its_rewards_together(tiny_model_dir, tmp_path):
    pairs = _tie_pairs(32)
    settings = {"base_model": str(tiny_model_dir), "max_length": 48, "batch_size": 8}
    settings |= {"num_threads": 1, "bf16": False, "learning_rate": 3e-3, "epochs": 10}
    # First a model that tells the two sides apart (a random head scores everything alike)...
    decided = [PreferencePair(prompt=p.prompt, chosen=p.chosen, rejected=p.rejected) for p in pairs]
    apart = train(TrainConfig(**settings), decided)
    apart.model.save_pretrained(tmp_path)
    apart.tokenizer.save_pretrained(tmp_path)
    # ...then the same pairs, all called ties, from there.
    together = train(TrainConfig(**settings, tie_policy="model"), pairs, init_from=tmp_path)

    before, after = _gap(apart, pairs), _gap(together, pairs)
    assert before > 1.0
    assert after < before / 2
    assert together.loss_history[-1] < together.loss_history[0]


def test_the_drop_policy_trains_on_no_tie_pair(tiny_model_dir):
    config = TrainConfig(base_model=str(tiny_model_dir), max_length=48, num_threads=1)
    with pytest.raises(ValueError, match="no pairs to train on"):
        train(config, _tie_pairs(4))
