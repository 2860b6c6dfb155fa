"""How a reward model is trained: one frozen, JSON-storable config per training run.

The Django side stores `TrainConfig.to_dict()` on the run, so a run can be replayed exactly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Device = Literal["auto", "cpu", "cuda"]
TiePolicy = Literal["drop", "model"]
RECOMPUTE_FROM_LENGTH = 1024  # max_length from which gradient checkpointing is on by default


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    base_model: str  # a local Hugging Face directory; never a hub id (nothing is downloaded)
    max_length: int = 256  # tokens of prompt + response; the prompt is cut from the left
    batch_size: int = 16  # pairs per optimizer step (2 x this many sequences per forward)
    learning_rate: float = 5e-5  # peak AdamW rate, reached at the end of warm-up
    epochs: int = 1  # passes over the training pairs
    warmup_ratio: float = 0.1  # share of all steps spent ramping the rate up from 0
    weight_decay: float = 0.0  # AdamW decoupled decay; biases and LayerNorms are never decayed
    grad_clip: float = 1.0  # max global gradient norm; 0 turns clipping off
    bf16: bool = True  # bf16 compute, fp32 master weights, where the hardware has bf16 (AVX-512
    # BF16/AMX CPUs, CUDA); scoring uses bf16 autocast
    fast_attention: bool = True  # in bf16 on the CPU, train with rewardtrain.attention's chunked
    # kernel; False keeps transformers' SDPA, the reference it is tested against
    use_margin: bool = False  # subtract each pair's margin inside the loss (Llama 2 style)
    soft_labels: bool = False  # train toward each pair's p_chosen rather than 1, so a 2-1 split
    # pushes less than a unanimous call; off: benchmarks/label_quality.py measured no gain over
    # hard labels beyond its seed-to-seed spread (docs/benchmarks_labels.md)
    tie_policy: TiePolicy = "drop"  # "model": pairs the raters called a tie are kept and pull
    # their rewards together under Davidson's tie likelihood (rewardtrain.train.preference_loss);
    # "drop" stays the default for the same reason as soft_labels
    tie_weight: float = 1.0  # Davidson's nu: a tie between equal rewards has probability
    # nu / (2 + nu); 1 makes win, loss and tie equally likely between equals
    disable_dropout: bool = True  # dropout gives chosen and rejected different noise (TRL too)
    seed: int = 0  # same pairs + same config => same checkpoint on the same hardware
    device: Device = "auto"  # "auto" takes CUDA when present, else the CPU
    num_threads: int = 0  # CPU threads for torch; 0 means one per core this process may use
    eval_batch_size: int = 64  # sequences per forward pass when scoring; no gradients kept
    length_bucket_batches: int = 64  # batches sorted together by length, then shuffled: less pad
    # Recompute each layer's activations in the backward pass instead of keeping them (gradient
    # checkpointing): about a third more compute for memory that no longer grows with the layers
    # times the square of the length. None: on from RECOMPUTE_FROM_LENGTH tokens.
    gradient_checkpointing: bool | None = None
    # Linear heads of the version's uncertainty ensemble (rewardtrain.ensemble), fitted after
    # training on bootstrap resamples of the pairs. 5 is the usual deep-ensemble size (Coste et
    # al. 2023 use 5): the spread of 2-3 heads is too noisy to rank pairs by, and more adds
    # little; fitting costs one forward pass over the pairs. 0: no uncertainty.
    ensemble_heads: int = 5

    def __post_init__(self) -> None:
        # MODEL_DIR-style Path objects are welcome, but the stored config must be plain JSON.
        object.__setattr__(self, "base_model", str(self.base_model))
        if self.max_length < 8:
            raise ValueError("max_length must be at least 8 tokens")
        if self.batch_size < 1 or self.eval_batch_size < 1 or self.epochs < 1:
            raise ValueError("batch sizes and epochs must be positive")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError("warmup_ratio must be in [0, 1)")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be positive")
        if self.tie_policy not in ("drop", "model"):
            raise ValueError(f"unknown tie_policy {self.tie_policy!r}; use drop or model")
        if self.tie_weight <= 0:
            raise ValueError("tie_weight must be positive")
        if self.ensemble_heads < 0 or self.ensemble_heads == 1:
            raise ValueError("ensemble_heads must be 0 (none) or 2 or more: one head has no spread")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"unknown device {self.device!r}")

    @property
    def recompute_activations(self) -> bool:
        if self.gradient_checkpointing is None:
            return self.max_length >= RECOMPUTE_FROM_LENGTH
        return self.gradient_checkpointing

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild a stored config; unknown keys are refused rather than silently dropped."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(unknown)}")
        return cls(**data)
