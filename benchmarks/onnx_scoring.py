"""Could ONNX Runtime be issue 18's fast twin on the AMD host? Its fused graphs against ours.

    .venv/bin/python -m pip install --target var/onnx-bench onnxruntime onnx   # once
    .venv/bin/python benchmarks/onnx_scoring.py [--version DIR] [--rounds 3]

ONNX Runtime has kernels of its own (fused BERT attention, int8 products through MLAS), so the
bound that PyTorch's kernel rates put on an int8 twin (docs/benchmarks_training.md) does not
cover it. This measures it the way `benchmarks/int8_scoring.py` measures PyTorch's int8, on the
same fine-tuned MiniLM (`--version`: the folder that script wrote; without it, one is
fine-tuned here): MiniLM exported with eager attention (what the optimizer recognises), fused by
`onnxruntime.transformers.optimize_model`, then quantised by `quantize_dynamic` (int8 weights
with one scale per output channel; activations get one scale per tensor, the only dynamic mode
ONNX Runtime has). Each graph scores the held-out items in the reference's length-sorted batches
on 2 threads; speed is the best of `--rounds`, models alternating. onnxruntime and onnx are not
project dependencies: this benchmark is their only user, and finds them in var/onnx-bench, after
the venv's own packages (so the venv's numpy and torch win).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "var" / "onnx-bench"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "true")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from active_learning import hh_pairs  # noqa: E402
from int8_scoring import TRAIN_PAIRS, fine_tuned_version  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

from rewardtrain.model import (  # noqa: E402
    SCORE_BATCH_TOKENS,
    Encoded,
    RewardModel,
    length_sorted_batches,
    load_model,
    load_reward_model,
    pad_batch,
)

CPU = torch.device("cpu")


class _Positional(torch.nn.Module):
    """The model with its inputs by position, as the ONNX exporter passes them."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True))).logits


def export_graphs(version: Path, reference: RewardModel, folder: Path) -> dict[str, Path]:
    """The version as ONNX: fused fp32, and fused with dynamic int8 products."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.optimizer import optimize_model

    model, _ = load_model(version, device=CPU)
    model.config._attn_implementation = "eager"
    model.eval()
    sample = _batch(reference, reference.encoder.encode(["a prompt"] * 2, ["one", "and two"]))
    names = list(sample)

    plain = folder / "model.onnx"
    torch.onnx.export(
        _Positional(model, names), tuple(sample[n] for n in names), str(plain), input_names=names,
        output_names=["logits"], opset_version=17, dynamo=False,
        dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "logits": {0: "batch"}},
    )  # fmt: skip
    optimized = optimize_model(str(plain), model_type="bert", num_heads=12, hidden_size=384)
    fused = {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}
    print(f"fused: {fused}", flush=True)
    graphs = {"ONNX Runtime fp32, fused": folder / "fused.onnx"}
    optimized.save_model_to_file(str(graphs["ONNX Runtime fp32, fused"]))
    graphs["ONNX Runtime int8, fused"] = folder / "int8.onnx"
    quantize_dynamic(
        str(graphs["ONNX Runtime fp32, fused"]), str(graphs["ONNX Runtime int8, fused"]),
        weight_type=QuantType.QInt8, per_channel=True,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # for the fused nodes
    )  # fmt: skip
    return graphs


def _batch(reference: RewardModel, items: list[Encoded]) -> dict[str, torch.Tensor]:
    return pad_batch(
        items,
        pad_token_id=reference.tokenizer.pad_token_id,
        token_type_ids=reference.spec.token_type_ids,
        device=CPU,
    )


def graph_scorer(path: Path, reference: RewardModel) -> Any:
    """score(encoded) -> rewards, running the graph in the reference's batches."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]

    def score(encoded: list[Encoded]) -> list[float]:
        rewards = [0.0] * len(encoded)
        lengths = [len(item.input_ids) for item in encoded]
        for indices in length_sorted_batches(lengths, 64, max_tokens=SCORE_BATCH_TOKENS):
            batch = _batch(reference, [encoded[i] for i in indices])
            feed = {name: batch[name].numpy().astype(np.int64) for name in inputs}
            for index, reward in zip(indices, session.run(None, feed)[0][:, 0], strict=True):
                rewards[index] = float(reward)
        return rewards

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", type=Path, help="a version int8_scoring.py wrote")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import onnxruntime

    pairs = hh_pairs()
    held = pairs[TRAIN_PAIRS:]
    version = args.version or fine_tuned_version(
        pairs[:TRAIN_PAIRS], Path(tempfile.mkdtemp(prefix="onnx-"))
    )
    reference = load_reward_model(version)
    encoded = reference.encoder.encode(
        [p for p, _, _ in held] * 2, [c for _, c, _ in held] + [r for _, _, r in held]
    )
    scorers = {"reference": lambda items: reference.score_encoded(items, dedupe=False)}
    for name, path in export_graphs(version, reference, Path(tempfile.mkdtemp())).items():
        scorers[name] = graph_scorer(path, reference)
    baseline = np.array(scorers["reference"](encoded))
    for name, score in scorers.items():
        rewards = np.array(score(encoded))
        accuracy = 100 * float((rewards[: len(held)] > rewards[len(held) :]).mean())
        rank = spearmanr(baseline, rewards).statistic
        print(f"{name:28s} held-out accuracy {accuracy:.2f}%, Spearman {rank:.4f}", flush=True)
    best = dict.fromkeys(scorers, 0.0)
    for _ in range(args.rounds):
        for name, score in scorers.items():
            started = time.perf_counter()
            score(encoded)
            best[name] = max(best[name], len(encoded) / (time.perf_counter() - started))
    for name, rate in best.items():
        print(f"{name:28s} {rate:.0f} items/s ({rate / best['reference']:.2f}x)")
    print(
        f"{len(encoded)} items, best of {args.rounds}; onnxruntime {onnxruntime.__version__}, "
        f"torch threads {torch.get_num_threads()}, load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
