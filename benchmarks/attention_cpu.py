"""Attention on the CPU at MiniLM's training shapes: PyTorch's SDPA against rewardtrain's own.

    .venv/bin/python benchmarks/attention_cpu.py [--batch 32] [--length 148] [--repeat 5]

One layer's attention, 12 heads of 32, a padding mask, forward + backward (training) and forward
alone (inference, no gradients), for: SDPA in bf16 and fp32, SDPA's math path in bf16, and the
chunked bf16 attention that `rewardtrain.train` uses on the CPU (`rewardtrain/attention.py`).
Run it again after a torch upgrade: when SDPA's bf16 backward is as fast as ours, drop ours.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rewardtrain.attention import chunked_attention_forward

HEADS, DIM = 12, 32


class _Layer(torch.nn.Module):
    is_causal = False
    num_key_value_groups = 1


def _time(step: Callable[[], None], repeat: int) -> float:
    step()  # warm-up: first calls allocate and pick kernels
    started = time.perf_counter()
    for _ in range(repeat):
        step()
    return (time.perf_counter() - started) / repeat * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32, help="sequences (16 pairs = 32)")
    parser.add_argument("--length", type=int, default=148, help="tokens, HH's mean padded width")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch, HEADS, args.length, DIM)
    inputs = [torch.randn(shape, generator=generator) for _ in range(3)]
    lengths = torch.randint(args.length // 2, args.length + 1, (args.batch,), generator=generator)
    keep = torch.arange(args.length)[None, :] < lengths[:, None]
    mask = keep[:, None, None, :].expand(args.batch, 1, args.length, args.length)
    grad = torch.randn(args.batch, args.length, HEADS, DIM, generator=generator)

    def sdpa(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        output = functional.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        return output.transpose(1, 2)

    def ours(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return chunked_attention_forward(_Layer(), query, key, value, mask)[0]

    variants: list[tuple[str, torch.dtype, Callable[..., torch.Tensor], SDPBackend | None]] = [
        ("SDPA (flash), bf16", torch.bfloat16, sdpa, None),
        ("SDPA (flash), fp32", torch.float32, sdpa, None),
        ("SDPA math path, bf16", torch.bfloat16, sdpa, SDPBackend.MATH),
        ("ours (rewardtrain.attention), bf16", torch.bfloat16, ours, None),
    ]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.batch} sequences "
        f"x {HEADS} heads x {args.length} tokens x {DIM}, padding mask"
    )
    for name, dtype, attend, backend in variants:
        tensors = [t.to(dtype).requires_grad_() for t in inputs]

        def train_step() -> None:
            for tensor in tensors:  # noqa: B023 - run within this iteration
                tensor.grad = None  # as in a model, where q, k and v are not leaves
            attend(*tensors).backward(grad.to(dtype))  # noqa: B023

        def infer_step() -> None:
            with torch.inference_mode():
                attend(*tensors)  # noqa: B023

        with sdpa_kernel(backend) if backend is not None else torch.enable_grad():
            training, inference = _time(train_step, args.repeat), _time(infer_step, args.repeat)
        print(f"{name:38} forward + backward {training:7.1f} ms   forward only {inference:6.1f} ms")


if __name__ == "__main__":
    main()
