"""The CPU bf16 training attention gives SDPA's answers and gradients, and stays out of
checkpoints."""

import json
import logging

import pytest
import torch
from torch.nn import functional
from transformers import AutoModelForSequenceClassification

from rewardtrain import attention
from rewardtrain import train as training
from rewardtrain.attention import ATTENTION, chunked_attention_forward
from rewardtrain.config import TrainConfig
from rewardtrain.data import PreferencePair
from rewardtrain.model import bf16_supported
from rewardtrain.train import train
from tests.rewardtrain.helpers import build_tiny_model


class _Module(torch.nn.Module):
    def __init__(self, *, is_causal: bool = False, groups: int = 1) -> None:
        super().__init__()
        self.is_causal = is_causal
        self.num_key_value_groups = groups


def _inputs(batch=11, heads=4, length=37, dim=16, kv_heads=None):
    generator = torch.Generator().manual_seed(0)

    def tensor(heads_here):
        return torch.randn(batch, heads_here, length, dim, generator=generator)

    return tensor(heads), tensor(kv_heads or heads), tensor(kv_heads or heads)


def _padding_mask(batch, length):
    lengths = torch.arange(batch) % length // 2 + length // 2  # every row keeps its first token
    keep = torch.arange(length)[None, :] < lengths[:, None]
    return keep[:, None, None, :].expand(batch, 1, length, length)


def _reference(query, key, value, mask, *, is_causal=False):
    return functional.scaled_dot_product_attention(
        query, key, value, attn_mask=mask, is_causal=is_causal
    ).transpose(1, 2)


def _relative_error(ours, reference):
    return ((ours.float() - reference).abs().max() / reference.abs().max()).item()


@pytest.mark.parametrize("causal", [False, True])
def test_outputs_and_gradients_match_sdpa_within_bf16_rounding(causal):
    query, key, value = _inputs()
    mask = None if causal else _padding_mask(query.shape[0], query.shape[2])
    reference_inputs = [t.clone().requires_grad_() for t in (query, key, value)]
    ours_inputs = [t.to(torch.bfloat16).requires_grad_() for t in (query, key, value)]
    grad = torch.randn(query.shape[0], query.shape[2], query.shape[1], query.shape[3])

    expected = _reference(*reference_inputs, mask, is_causal=causal)
    expected.backward(grad)
    ours, _ = chunked_attention_forward(_Module(is_causal=causal), *ours_inputs, mask, dropout=0.0)
    ours.backward(grad.to(torch.bfloat16))

    assert ours.shape == expected.shape
    assert _relative_error(ours, expected) < 0.02
    for mine, theirs in zip(ours_inputs, reference_inputs, strict=True):
        assert _relative_error(mine.grad, theirs.grad) < 0.03


def test_grouped_query_heads_are_shared_like_sdpa():
    query, key, value = _inputs(heads=4, kv_heads=2)
    mask = _padding_mask(query.shape[0], query.shape[2])
    expected = _reference(query, key.repeat_interleave(2, 1), value.repeat_interleave(2, 1), mask)

    ours, _ = chunked_attention_forward(
        _Module(groups=2), *(t.to(torch.bfloat16) for t in (query, key, value)), mask
    )

    assert _relative_error(ours, expected) < 0.02


def test_fp32_and_dropout_go_to_sdpa_unchanged():
    query, key, value = _inputs()
    mask = _padding_mask(query.shape[0], query.shape[2])

    ours, _ = chunked_attention_forward(_Module(), query, key, value, mask)

    assert torch.equal(ours, _reference(query, key, value, mask).contiguous())


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


def _spied_training(tiny_model_dir, monkeypatch, **changes):
    """Train the tiny model; return the result and the dtypes the chunked kernel was called on."""
    seen = []
    original = attention._ChunkedAttention.apply

    def spy(*args):
        seen.append(args[0].dtype)
        return original(*args)

    monkeypatch.setattr(attention._ChunkedAttention, "apply", spy)
    pairs = [
        PreferencePair(prompt=f"question {i}", chosen="yes, gladly", rejected="no")
        for i in range(16)
    ]
    settings = {"base_model": str(tiny_model_dir), "max_length": 32, "batch_size": 8}
    config = TrainConfig(**settings, device="cpu", **changes)
    return train(config, pairs), seen


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="this CPU has no bf16")
def test_training_uses_it_but_the_saved_model_does_not_name_it(
    tiny_model_dir, tmp_path, monkeypatch
):
    result, seen = _spied_training(tiny_model_dir, monkeypatch)
    result.model.save_pretrained(tmp_path)

    assert seen
    assert set(seen) == {torch.bfloat16}
    assert result.bf16
    assert result.model.config._attn_implementation != ATTENTION
    assert all(p.dtype == torch.float32 for p in result.model.parameters())
    assert ATTENTION not in json.dumps(json.loads((tmp_path / "config.json").read_text()))
    AutoModelForSequenceClassification.from_pretrained(tmp_path)


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="this CPU has no bf16")
def test_an_architecture_that_refuses_it_trains_with_its_own_attention(
    tiny_model_dir, monkeypatch, caplog
):
    from transformers import PreTrainedModel

    original = PreTrainedModel.set_attn_implementation

    def refuse_ours(self, implementation, *args, **kwargs):
        if implementation == ATTENTION:
            raise ValueError("this architecture does not support custom attention")
        return original(self, implementation, *args, **kwargs)

    monkeypatch.setattr(PreTrainedModel, "set_attn_implementation", refuse_ours)
    # Another test's logging set-up (Celery's, in process) may have disabled existing loggers.
    monkeypatch.setattr(training.logger, "disabled", False)
    caplog.set_level(logging.WARNING, logger=training.logger.name)
    calls = []
    monkeypatch.setattr(attention._ChunkedAttention, "apply", lambda *args: calls.append(args))
    pairs = [
        PreferencePair(prompt=f"question {i}", chosen="yes, gladly", rejected="no")
        for i in range(16)
    ]
    config = TrainConfig(base_model=str(tiny_model_dir), max_length=32, batch_size=8, device="cpu")

    result = train(config, pairs)

    assert result.bf16
    assert not calls
    assert len(result.loss_history) == 2
    assert "does not support custom attention" in caplog.text


def test_the_sdpa_reference_can_be_forced_and_trains_like_the_chunked_kernel(
    tiny_model_dir, monkeypatch
):
    """Runs on every CPU: with `fast_attention=False` training never calls the chunked kernel,
    and its losses match the default's within bf16 rounding (identical where the CPU has no
    bf16, since both then run SDPA in fp32)."""
    fast, fast_calls = _spied_training(tiny_model_dir, monkeypatch)
    reference, reference_calls = _spied_training(tiny_model_dir, monkeypatch, fast_attention=False)

    assert not reference_calls
    assert bool(fast_calls) == fast.bf16
    assert len(reference.loss_history) == len(fast.loss_history) == 2
    assert reference.loss_history == pytest.approx(fast.loss_history, rel=0.02)


def test_a_cpu_without_bf16_trains_with_the_sdpa_reference_in_fp32(tiny_model_dir, monkeypatch):
    monkeypatch.setattr(training, "bf16_supported", lambda device: False)

    result, calls = _spied_training(tiny_model_dir, monkeypatch)

    assert not calls
    assert not result.bf16
    assert result.model.config._attn_implementation != ATTENTION
