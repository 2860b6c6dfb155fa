import dataclasses

import pytest

from rewardtrain.config import TrainConfig
from rewardtrain.data import PreferencePair, data_sha256, heldout_split


def _pairs(prompts: int, per_prompt: int) -> list[PreferencePair]:
    return [
        PreferencePair(prompt=f"prompt {p}", chosen=f"good {i}", rejected=f"bad {i}")
        for p in range(prompts)
        for i in range(per_prompt)
    ]


def test_heldout_split_keeps_every_prompt_on_one_side():
    train, heldout = heldout_split(_pairs(200, 3), salt="project-1", fraction=0.2)

    train_prompts = {pair.prompt for pair in train}
    heldout_prompts = {pair.prompt for pair in heldout}
    assert not train_prompts & heldout_prompts
    assert len(train) + len(heldout) == 600
    assert 0.1 < len(heldout) / 600 < 0.3


def test_heldout_split_is_stable_as_new_data_arrives():
    before = _pairs(100, 2)
    after = before + _pairs(300, 2)[200:]

    _, heldout_before = heldout_split(before, salt="s", fraction=0.3)
    _, heldout_after = heldout_split(after, salt="s", fraction=0.3)

    assert set(map(id, heldout_before)) <= set(map(id, heldout_after))


def test_another_salt_gives_another_split():
    pairs = _pairs(100, 1)

    _, first = heldout_split(pairs, salt="a", fraction=0.5)
    _, second = heldout_split(pairs, salt="b", fraction=0.5)

    assert first != second


def test_equal_chat_prompts_share_a_group_whatever_the_key_order():
    one = PreferencePair(prompt=[{"role": "user", "content": "hi"}], chosen="a", rejected="b")
    two = PreferencePair(prompt=[{"content": "hi", "role": "user"}], chosen="c", rejected="d")
    text = PreferencePair(prompt="hi", chosen="a", rejected="b")

    assert one.group == two.group != text.group


def test_the_data_digest_follows_every_field_and_the_order():
    pairs = _pairs(3, 1)
    changed = [*pairs[:2], dataclasses.replace(pairs[2], margin=0.5)]

    assert data_sha256(pairs) == data_sha256(list(pairs))
    assert data_sha256(pairs) != data_sha256(changed)
    assert data_sha256(pairs) != data_sha256(pairs[::-1])


def test_a_train_config_round_trips_through_its_stored_form():
    config = TrainConfig(base_model="/models/minilm", learning_rate=1e-4, seed=7)

    assert TrainConfig.from_dict(config.to_dict()) == config


def test_a_stored_config_with_an_unknown_field_is_refused():
    stored = TrainConfig(base_model="/m").to_dict() | {"lr_typo": 1.0}

    with pytest.raises(ValueError, match="lr_typo"):
        TrainConfig.from_dict(stored)
