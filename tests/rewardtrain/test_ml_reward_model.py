import json
import math
import os
import time

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from rewardtrain.checkpoints import CheckpointError, checkpoint_write, sweep_partial
from rewardtrain.config import TrainConfig
from rewardtrain.data import PreferencePair
from rewardtrain.model import (
    InputEncoder,
    RewardModel,
    bf16_supported,
    cast_parameters,
    input_spec_for,
    length_sorted_batches,
    load_reward_model,
    reward_head,
)
from rewardtrain.train import (
    TrainingCancelled,
    bradley_terry_loss,
    evaluate,
    mcnemar_exact_test,
    preference_metrics,
    train,
)
from tests.rewardtrain.helpers import WORDS, build_tiny_model


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


def _polite_pairs(count: int, offset: int = 0) -> list[PreferencePair]:
    return [
        PreferencePair(
            prompt=f"tell me about the {WORDS[i % 10]} number {i + offset}",
            chosen=f"sure, gladly: the {WORDS[(i + 3) % 10]} is lovely, thank you",
            rejected=f"no. go away, {WORDS[(i + 5) % 10]}",
        )
        for i in range(count)
    ]


def _config(model_dir, **changes) -> TrainConfig:
    settings = {"base_model": str(model_dir), "max_length": 64, "batch_size": 8}
    return TrainConfig(**(settings | {"learning_rate": 1e-3, "epochs": 6} | changes))


@pytest.fixture(scope="module")
def trained(tiny_model_dir):
    return train(_config(tiny_model_dir), _polite_pairs(64))


def test_equal_rewards_give_a_loss_of_ln_2():
    rewards = torch.tensor([0.3, -1.2, 5.0])

    assert bradley_terry_loss(rewards, rewards).item() == pytest.approx(math.log(2))


def test_a_margin_asks_for_a_wider_gap():
    chosen, rejected = torch.tensor([1.0]), torch.tensor([0.0])

    assert bradley_terry_loss(chosen, rejected, torch.tensor([0.5])) > bradley_terry_loss(
        chosen, rejected
    )


def test_truncation_keeps_the_end_of_the_response(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoder = InputEncoder(tokenizer, input_spec_for(tokenizer, max_length=32))
    prompt = "first words of a long prompt " + "more " * 100 + "last prompt words"

    (encoded,) = encoder.encode([prompt], ["the answer ends here"])

    tokens = tokenizer.convert_ids_to_tokens(encoded.input_ids)
    assert len(tokens) == 32
    assert tokens[-5:] == ["the", "answer", "ends", "here", "[SEP]"]
    assert tokens[:2] == ["[CLS]", "more"]
    assert "first" not in tokens
    assert "last" in tokens
    assert not encoded.response_cut


def test_a_response_longer_than_max_length_keeps_its_end(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoder = InputEncoder(tokenizer, input_spec_for(tokenizer, max_length=16))

    (encoded,) = encoder.encode(["a question"], ["start " + "word " * 50 + "finally"])

    tokens = tokenizer.convert_ids_to_tokens(encoded.input_ids)
    assert len(tokens) == 16
    assert tokens[-2:] == ["finally", "[SEP]"]
    assert "start" not in tokens
    assert encoded.response_cut


def test_chat_prompts_go_through_the_chat_template_and_keep_the_response_end(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = (
        "{% for m in messages %}[{{ m.role }}] {{ m.content }} {% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    spec = input_spec_for(tokenizer, max_length=20)
    messages = [{"role": "user", "content": "hello " * 40}, {"role": "user", "content": "why"}]

    (encoded,) = InputEncoder(tokenizer, spec).encode([messages], ["because it rains"])

    text = tokenizer.decode(encoded.input_ids)
    assert spec.template == "chat"
    assert len(encoded.input_ids) == 20
    assert text.endswith("[ assistant ] because it rains")
    assert "why" in text


def test_training_learns_an_obvious_preference(tiny_model_dir, trained):
    unseen = _polite_pairs(20, offset=1000)

    metrics = evaluate(trained.model, trained.tokenizer, trained.spec, unseen)

    assert metrics["accuracy"] == 1.0
    assert metrics["margin"] > 1.0
    assert metrics["loss"] < 0.5
    assert trained.loss_history[-1] < trained.loss_history[0]


def test_a_seed_makes_training_deterministic(tiny_model_dir):
    pairs = _polite_pairs(24)
    config = _config(tiny_model_dir, epochs=1, seed=3)

    first, second = train(config, pairs), train(config, pairs)
    other_seed = train(_config(tiny_model_dir, epochs=1, seed=4), pairs)

    assert first.loss_history == second.loss_history
    assert first.loss_history != other_seed.loss_history
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name])


def test_progress_is_reported_and_a_stop_request_cancels(tiny_model_dir):
    reports = []
    train(
        _config(tiny_model_dir, epochs=1),
        _polite_pairs(16),
        progress=lambda f, m: reports.append(f),
    )

    assert reports[-1] == 1.0
    with pytest.raises(TrainingCancelled):
        train(_config(tiny_model_dir), _polite_pairs(16), should_stop=lambda: True)


def test_equal_scores_count_as_wrong():
    pairs = [PreferencePair(prompt="p", chosen="a", rejected="b", strength=s) for s in (1, 2, None)]

    metrics = preference_metrics([1.0, 2.0, 0.5], [1.0, 1.0, 0.0], pairs)

    assert metrics["correct"] == [False, True, True]
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert metrics["accuracy_by_strength"] == {"1": 0.0, "2": 1.0, "none": 1.0}


def test_a_confident_and_right_model_is_well_calibrated():
    pairs = [PreferencePair(prompt="p", chosen="a", rejected="b")] * 4

    assert preference_metrics([20.0] * 4, [0.0] * 4, pairs)["calibration_error"] < 1e-6
    assert preference_metrics([0.0] * 4, [20.0] * 4, pairs)["calibration_error"] > 0.99


def test_the_paired_test_needs_disagreements_to_favour_one_side():
    assert mcnemar_exact_test([True, False] * 10, [True, False] * 10)["p_value"] == 1.0
    clearly_better = mcnemar_exact_test([True] * 12, [False] * 10 + [True] * 2)
    assert clearly_better["new_only"] == 10
    assert clearly_better["p_value"] == pytest.approx(2 / 2**10)


def _write(root, trained, version=1, **changes):
    arguments = {
        "root": root,
        "project": "alpha",
        "version": version,
        "result": trained,
        "data_cutoff": 42,
        "data_sha256": "0" * 64,
        "counts": {"train": 64, "heldout": 0},
        "metrics": {"accuracy": 1.0},
    }
    return checkpoint_write(**(arguments | changes))


def test_a_checkpoint_round_trips_and_scores_the_same(tmp_path, trained):
    written = _write(tmp_path, trained)
    prompts, responses = ["tell me about rivers", "hi"], ["sure, thank you", "go away"]

    reward_model = load_reward_model(
        written.path,
        checkpoint_root=tmp_path,
        expected_sha256=written.files_sha256,
        bf16_weights=False,
    )

    manifest = json.loads((written.path / "pairwise.json").read_text())
    assert written.path == tmp_path / "alpha" / "v1"
    assert manifest["input"]["truncation_side"] == "left"
    assert manifest["data_cutoff"] == 42
    assert set(manifest["files"]) | {"pairwise.json"} == set(written.files_sha256)
    assert "model.safetensors" in written.files_sha256
    assert reward_model.score(prompts, responses) == pytest.approx(
        _scores(trained, prompts, responses), abs=1e-6
    )
    plain = AutoModelForSequenceClassification.from_pretrained(written.path)
    assert plain.config.num_labels == 1
    assert not list(tmp_path.glob("alpha/.tmp-*"))


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="this CPU has no bf16")
def test_served_weights_are_bf16_and_score_within_bf16_rounding(tmp_path, trained):
    written = _write(tmp_path, trained)
    prompts = [f"tell me about the {word}" for word in WORDS]
    responses = [f"sure, the {word} is lovely, thank you" for word in WORDS[::-1]]

    reward_model = load_reward_model(written.path, checkpoint_root=tmp_path)
    exact = load_reward_model(written.path, checkpoint_root=tmp_path, bf16=False)

    head = reward_head(reward_model.model)
    body = [
        p for p in reward_model.model.parameters() if all(p is not q for q in head.parameters())
    ]
    assert {p.dtype for p in body} == {torch.bfloat16}
    assert {p.dtype for p in head.parameters()} == {torch.float32}
    assert {p.dtype for p in exact.model.parameters()} == {torch.float32}
    reference = exact.score(prompts, responses)
    served = reward_model.score(prompts, responses)
    assert served == pytest.approx(reference, rel=0.01)
    # The head runs in fp32: rewards are not rounded to bf16's 8-bit mantissa (steps of 0.004
    # near 0.75), which would make close responses tie.
    assert not all(torch.tensor(s).to(torch.bfloat16).item() == s for s in served)


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="this CPU has no bf16")
def test_prepacked_weights_score_exactly_like_plain_bf16_weights(tmp_path, trained):
    written = _write(tmp_path, trained)
    prompts = [f"tell me about the {word}" for word in WORDS]
    responses = [f"sure, the {word} is lovely, thank you" for word in WORDS[::-1]]
    plain = load_reward_model(written.path, checkpoint_root=tmp_path, bf16_weights=False)
    cast_parameters(plain.model, torch.bfloat16)
    cast_parameters(reward_head(plain.model), torch.float32)

    served = load_reward_model(written.path, checkpoint_root=tmp_path)

    packed = [m for m in served.model.modules() if hasattr(m, "prepacked_weight")]
    linears = [m for m in served.model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(packed) == len(linears) - 1  # all but the fp32 head
    assert served.score(prompts, responses) == plain.score(prompts, responses)


def test_scoring_batches_keep_padded_tokens_under_the_budget():
    lengths = [100, 10, 12, 300, 11, 90, 95]

    batches = list(length_sorted_batches(lengths, 64, max_tokens=200))

    # 3 x 12 = 36 and 2 x 95 = 190 fit, 3 x 100 does not; 300 is over the budget on its own.
    assert batches == [[1, 4, 2], [5, 6], [0], [3]]
    assert list(length_sorted_batches(lengths, 3)) == [[1, 4, 2], [5, 6, 0], [3]]


def test_a_score_does_not_depend_on_the_batch_it_was_padded_in(trained):
    reward_model = RewardModel(trained.model, trained.tokenizer, trained.spec, bf16=False)
    prompts = [" ".join(WORDS[: 2 + 3 * i]) for i in range(8)]
    responses = [" ".join(WORDS[i : i + 1 + i * 2]) for i in range(8)]

    one_by_one = reward_model.score(prompts, responses, batch_size=1)

    assert reward_model.score(prompts, responses, max_tokens=10_000) == pytest.approx(
        one_by_one, abs=1e-5
    )
    assert reward_model.score(prompts, responses, max_tokens=40) == pytest.approx(
        one_by_one, abs=1e-5
    )


def _scores(trained, prompts, responses):
    return RewardModel(trained.model, trained.tokenizer, trained.spec).score(prompts, responses)


def test_a_tampered_checkpoint_file_is_refused(tmp_path, trained):
    written = _write(tmp_path, trained)
    config = written.path / "config.json"
    config.write_text(config.read_text() + " ")

    with pytest.raises(CheckpointError, match=r"config\.json"):
        load_reward_model(written.path, checkpoint_root=tmp_path)


def test_a_file_that_differs_from_the_database_record_is_refused(tmp_path, trained):
    written = _write(tmp_path, trained)
    recorded = written.files_sha256 | {"model.safetensors": "f" * 64}

    with pytest.raises(CheckpointError, match=r"model\.safetensors"):
        load_reward_model(written.path, checkpoint_root=tmp_path, expected_sha256=recorded)


def test_a_pickle_in_the_checkpoint_dir_is_refused(tmp_path, trained):
    written = _write(tmp_path, trained)
    (written.path / "pytorch_model.bin").write_bytes(b"\x80\x04K\x01.")

    with pytest.raises(CheckpointError, match="pickle"):
        load_reward_model(written.path, checkpoint_root=tmp_path)


def test_a_missing_file_is_refused(tmp_path, trained):
    written = _write(tmp_path, trained)
    (written.path / "model.safetensors").unlink()

    with pytest.raises(CheckpointError, match="missing"):
        load_reward_model(written.path, checkpoint_root=tmp_path)


def test_a_path_outside_the_checkpoint_root_is_refused(tmp_path, trained):
    elsewhere = _write(tmp_path / "elsewhere", trained)
    root = tmp_path / "root"
    root.mkdir()
    (root / "alpha").symlink_to(elsewhere.path.parent)

    for path in (root / "alpha" / "v1", root / ".." / "elsewhere" / "alpha" / "v1"):
        with pytest.raises(CheckpointError, match="outside"):
            load_reward_model(path, checkpoint_root=root)


def test_an_existing_version_is_never_overwritten(tmp_path, trained):
    first = _write(tmp_path, trained)

    with pytest.raises(FileExistsError):
        _write(tmp_path, trained, metrics={"accuracy": 0.0})

    assert json.loads((first.path / "pairwise.json").read_text())["metrics"]["accuracy"] == 1.0


def test_a_failed_write_leaves_nothing_behind(tmp_path, trained):
    with pytest.raises(ValueError, match="JSON"):
        _write(tmp_path, trained, metrics={"accuracy": float("nan")})

    assert list((tmp_path / "alpha").iterdir()) == []


def test_sweeping_removes_only_stale_staging_directories(tmp_path):
    stale = tmp_path / "alpha" / ".tmp-v3-abc"
    fresh = tmp_path / "alpha" / ".tmp-v4-def"
    published = tmp_path / "alpha" / "v2"
    for directory in (stale, fresh, published):
        directory.mkdir(parents=True)
    an_hour_ago = time.time() - 3700
    os.utime(stale, (an_hour_ago, an_hour_ago))
    os.utime(published, (an_hour_ago, an_hour_ago))

    assert sweep_partial(tmp_path, older_than_s=3600) == [stale]
    assert fresh.exists()
    assert published.exists()


def test_casting_parameters_leaves_buffers_such_as_rotary_frequencies_alone():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_labels=1,
    )
    model = LlamaForSequenceClassification(config)
    buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}

    cast_parameters(model, torch.bfloat16)

    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert any(buffer.is_floating_point() for buffer in buffers.values())
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, buffers[name])
        assert buffer.dtype == buffers[name].dtype
