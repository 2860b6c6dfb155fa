"""Attention for training in bf16 on the CPU, registered with transformers as `ATTENTION`.

PyTorch's fused CPU attention (SDPA's flash kernel) is the slow part of a bf16 training step on
the CPU: its bf16 backward pass is slower than its fp32 one, and a bf16 model would have to cast
to fp32 and back around it. This computes attention the plain way, softmax(QK^T * scale + mask) V,
with bf16 matrix products (AMX where present), a few sequences at a time so that each chunk's
scores stay in cache. The measurements behind it are in docs/benchmarks_training.md
(`benchmarks/attention_cpu.py`).

It is a twin of SDPA, the reference: anything else (CUDA, fp32, dropout inside attention,
position biases, decoding with a cache) is handed to transformers' own SDPA path unchanged,
`TrainConfig(fast_attention=False)` trains with SDPA throughout, and
tests/rewardtrain/test_ml_attention.py checks outputs and gradients against SDPA on every
machine. The name is set on a model only while it trains (`rewardtrain.train`); saved
checkpoints carry the standard implementation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

ATTENTION = "pairwise_cpu_bf16"
# Sequences per chunk: 8 x 12 heads x 148^2 bf16 scores is about 4 MB, near the L2 of two cores.
_CHUNK = 8


class _ChunkedAttention(torch.autograd.Function):
    """softmax(Q K^T * scale + bias) V over (batch, heads, length, dim) tensors, in chunks of
    the batch. Keeps each chunk's probabilities (bf16) for the backward pass."""

    @staticmethod
    def forward(
        ctx: Any, query: Tensor, key: Tensor, value: Tensor, bias: Tensor, scale: float
    ) -> Tensor:
        output = query.new_empty((*query.shape[:3], value.shape[-1]))
        probabilities = []
        for start in range(0, query.shape[0], _CHUNK):
            rows = slice(start, start + _CHUNK)
            scores = torch.matmul(query[rows], key[rows].transpose(-1, -2))
            chunk = torch.softmax(scores.mul_(scale).add_(bias[rows]), dim=-1)
            output[rows] = torch.matmul(chunk, value[rows])
            probabilities.append(chunk)
        ctx.save_for_backward(query, key, value, *probabilities)
        ctx.scale = scale
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: Tensor) -> tuple[Tensor, Tensor, Tensor, None, None]:
        query, key, value, *probabilities = ctx.saved_tensors
        grad_query = torch.empty_like(query)
        grad_key = torch.empty_like(key)
        grad_value = torch.empty_like(value)
        for index, chunk in enumerate(probabilities):
            rows = slice(index * _CHUNK, (index + 1) * _CHUNK)
            grad_value[rows] = torch.matmul(chunk.transpose(-1, -2), grad_output[rows])
            grad_probabilities = torch.matmul(grad_output[rows], value[rows].transpose(-1, -2))
            grad_scores = torch._softmax_backward_data(grad_probabilities, chunk, -1, chunk.dtype)
            grad_query[rows] = torch.matmul(grad_scores, key[rows]).mul_(ctx.scale)
            grad_key[rows] = torch.matmul(grad_scores.transpose(-1, -2), query[rows]).mul_(
                ctx.scale
            )
        return grad_query, grad_key, grad_value, None, None


def _handled_here(query: Tensor, key: Tensor, dropout: float, kwargs: dict[str, Any]) -> bool:
    return (
        query.device.type == "cpu"
        and query.dtype == torch.bfloat16
        and dropout == 0.0
        and query.shape[2] == key.shape[2]
        and kwargs.get("position_bias") is None
        and kwargs.get("softcap") is None
        and not kwargs.get("output_attentions", False)
    )


def chunked_attention_forward(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """transformers' attention signature; returns (batch, length, heads, dim) like SDPA's."""
    if not _handled_here(query, key, dropout, kwargs):
        return sdpa_attention_forward(
            module,
            query,
            key,
            value,
            attention_mask,
            dropout=dropout,
            scaling=scaling,
            is_causal=is_causal,
            **kwargs,
        )
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    length = query.shape[2]
    if attention_mask is None:
        causal = is_causal if is_causal is not None else getattr(module, "is_causal", False)
        attention_mask = torch.ones((length, length), dtype=torch.bool, device=query.device)
        if causal:
            attention_mask = attention_mask.tril()
        attention_mask = attention_mask[None, None]
    if attention_mask.dtype == torch.bool:
        # The most negative finite value, not -inf: a row with nothing to attend stays finite.
        bias = torch.zeros(attention_mask.shape, dtype=query.dtype, device=query.device)
        bias.masked_fill_(~attention_mask, torch.finfo(query.dtype).min)
    else:
        bias = attention_mask.to(query.dtype)
    bias = bias.expand(query.shape[0], -1, -1, -1)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    output = _ChunkedAttention.apply(query, key, value, bias, scale)
    return output.transpose(1, 2).contiguous(), None


AttentionInterface.register(ATTENTION, chunked_attention_forward)
AttentionMaskInterface.register(ATTENTION, sdpa_mask)
