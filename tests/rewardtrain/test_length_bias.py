"""The reward model's length statistics: the pure function, and a model trained on planted
length-only labels."""

import pytest

from rewardtrain.config import TrainConfig
from rewardtrain.data import PreferencePair
from rewardtrain.length_bias import MIN_PAIRS, length_bias, length_sentence
from tests.rewardtrain.helpers import WORDS, build_tiny_model


def _stats(chosen, rejected, len_chosen, len_rejected, ties=None):
    return length_bias(
        chosen_rewards=chosen,
        rejected_rewards=rejected,
        chosen_lengths=len_chosen,
        rejected_lengths=len_rejected,
        ties=ties or [False] * len(chosen),
    )


def test_a_reward_that_is_the_length_correlates_fully_and_is_flagged():
    # 12 pairs where the human picked the longer response, 12 where they picked the shorter.
    len_chosen = [100 + i for i in range(12)] + [20 + i for i in range(12)]
    len_rejected = [20 + i for i in range(12)] + [100 + i for i in range(12)]

    stats = _stats(len_chosen, len_rejected, len_chosen, len_rejected)

    assert stats["spearman"] == pytest.approx(1.0)
    assert stats["pairs"] == 24
    assert stats["prefers_longer"] == 1.0
    assert stats["longer_won"] == {"pairs": 12, "accuracy": 1.0}
    assert stats["shorter_won"] == {"pairs": 12, "accuracy": 0.0}
    assert stats["learning_length"] is True
    assert length_sentence(stats).startswith("This model may be learning length:")


def test_a_model_right_on_both_sides_is_not_flagged():
    len_chosen = [100] * 12 + [20] * 12
    len_rejected = [20] * 12 + [100] * 12

    stats = _stats([1.0] * 24, [0.0] * 24, len_chosen, len_rejected)

    assert stats["longer_won"]["accuracy"] == stats["shorter_won"]["accuracy"] == 1.0
    assert stats["prefers_longer"] == 0.5
    assert stats["learning_length"] is False
    sentence = length_sentence(stats)
    assert "learning length" not in sentence
    assert "in 50% of the 24 held-out pairs" in sentence


def test_close_lengths_and_ties_are_left_out_of_the_split():
    # Lengths within 10% do not count; a tie counts for prefers_longer but not for accuracy.
    stats = _stats([1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [100, 105, 50], [95, 50, 100], [0, 1, 0])

    assert stats["pairs"] == 2
    assert stats["prefers_longer"] == 1.0
    assert stats["longer_won"] == {"pairs": 0, "accuracy": None}
    assert stats["shorter_won"] == {"pairs": 1, "accuracy": 0.0}


def test_too_few_pairs_on_a_side_draw_no_verdict():
    n = MIN_PAIRS - 1
    stats = _stats(
        [100] * n + [20] * n, [20] * n + [100] * n, [100] * n + [20] * n, [20] * n + [100] * n
    )

    assert stats["learning_length"] is False


def test_nothing_to_compare_is_none_never_nan():
    stats = _stats([0.5, 0.5], [0.5, 0.5], [10, 10], [10, 10])

    assert stats["spearman"] is None
    assert stats["pairs"] == 0
    assert stats["prefers_longer"] is None
    assert length_sentence(stats) == ""
    assert _stats([], [], [], [])["spearman"] is None


def _words(i: int, count: int) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % 10] for k in range(count))


def test_a_model_trained_on_length_only_labels_shows_the_correlation_and_the_sentence(tmp_path):
    from rewardtrain.train import evaluate, train

    model_dir = build_tiny_model(tmp_path / "tiny-bert")
    # Planted: the longer response always wins, whatever its words.
    training = [
        PreferencePair(prompt=f"say something {i}", chosen=_words(i, 14), rejected=_words(i + 1, 3))
        for i in range(64)
    ]
    config = TrainConfig(
        base_model=str(model_dir), max_length=48, batch_size=8, learning_rate=1e-3, epochs=6
    )
    trained = train(config, training)
    # Held out: half the humans picked the longer response, half the shorter.
    heldout = [
        PreferencePair(
            prompt=f"say something else {i}",
            chosen=_words(i, 14 if i % 2 else 3),
            rejected=_words(i + 5, 3 if i % 2 else 14),
        )
        for i in range(40)
    ]

    metrics = evaluate(trained.model, trained.tokenizer, trained.spec, heldout, bf16=False)

    length = metrics["length"]
    assert length["spearman"] > 0.6
    assert length["prefers_longer"] > 0.9
    assert length["longer_won"]["accuracy"] > 0.9
    assert length["shorter_won"]["accuracy"] < 0.1
    assert length["learning_length"] is True
    assert length_sentence(length).startswith("This model may be learning length")
