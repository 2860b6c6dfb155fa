"""The uncertainty of a version: a last-layer bootstrap ensemble of linear reward heads.

After training, the training pairs are embedded once with the trained encoder: the features the
main reward head reads (its input, e.g. BERT's pooled output). K linear heads are then fitted on
those features, each on its own bootstrap resample of the pairs, with the Bradley-Terry loss
(soft labels when the run used them; tie pairs are left out). Each head starts from the main
head plus its own random offset and is trained by full-batch gradient descent, which moves it
only within the span of the training pairs' feature differences: along directions the training
data never varied the heads keep their different offsets, so they disagree on pairs unlike the
training data, and where the data is thin the resamples disagree too (docs/training.md says why
this method).

For a pair (a, b) the version gives p(a wins) = sigmoid(r(a) - r(b)) from the main head, and the
disagreement: the standard deviation over the K heads of sigmoid(r_k(a) - r_k(b)), in [0, 0.5].

The heads live in their own file (`ENSEMBLE_FILE`), listed under "ensemble" in pairwise.json;
config.json and model.safetensors stay the standard classifier, so `from_pretrained` loads the
version as before, and a version without the file has no uncertainty (`ensemble_load` -> None).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import load_file
from transformers import PreTrainedModel

from rewardtrain.checkpoints import MANIFEST_NAME
from rewardtrain.data import PreferencePair, Prompt
from rewardtrain.model import (
    SCORE_BATCH_TOKENS,
    Encoded,
    InputEncoder,
    RewardModel,
    autocast,
    distinct,
    length_sorted_batches,
    pad_batch,
    reward_head,
)

if TYPE_CHECKING:
    from rewardtrain.train import TrainResult

ENSEMBLE_FILE = "ensemble_heads.safetensors"
DISAGREEMENT = "std of the heads' p(a wins)"
FIT_STEPS = 300  # full-batch gradient steps per fit: a few milliseconds each on 384 features
FIT_MAX_PAIRS = 20_000  # pairs the heads are fitted on at most: bounds the features kept
OFFSET_SCALE = 1.0  # each head's random offset has this times the main head's norm


@dataclass(frozen=True)
class EnsembleHeads:
    weight: torch.Tensor  # (K, features), fp32
    bias: torch.Tensor  # (K,): the main head's bias; it cancels in every pair's difference

    @property
    def count(self) -> int:
        return int(self.weight.shape[0])

    def checkpoint_parts(self) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
        """What checkpoint_write needs to store the heads: their entry for pairwise.json, and
        their tensors, written as ENSEMBLE_FILE beside (never inside) the model's weights."""
        entry = {
            "file": ENSEMBLE_FILE,
            "heads": self.count,
            "method": "last-layer bootstrap ensemble of linear Bradley-Terry heads",
            "disagreement": DISAGREEMENT,
        }
        tensors = {"weight": self.weight.contiguous(), "bias": self.bias.contiguous()}
        return {"ensemble": entry}, {ENSEMBLE_FILE.removesuffix(".safetensors"): tensors}


@dataclass(frozen=True)
class PairEstimate:
    p_a: float  # the main head's probability that `a` is the better response
    uncertainty: float | None  # the heads' disagreement; None when the version has no heads


@torch.no_grad()
def reward_features(
    model: PreTrainedModel,
    encoded: Sequence[Encoded],
    *,
    pad_token_id: int,
    token_type_ids: bool,
    bf16: bool,
    batch_size: int = 64,
    max_tokens: int = SCORE_BATCH_TOKENS,
    dedupe: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's reward from the main head, and the features that head read, both fp32 on the
    CPU: (N,) and (N, features). Length-sorted batches of at most `max_tokens` padded tokens.
    With `dedupe`, repeated items are run through the model once (`distinct`); `dedupe=False`
    is the reference."""
    if dedupe:
        unique, where = distinct(encoded)
        rewards, features = reward_features(
            model,
            unique,
            pad_token_id=pad_token_id,
            token_type_ids=token_type_ids,
            bf16=bf16,
            batch_size=batch_size,
            max_tokens=max_tokens,
            dedupe=False,
        )
        rows = torch.tensor(where, dtype=torch.long)
        return rewards[rows], features[rows]
    head = reward_head(model)
    if head is None:
        raise ValueError(f"{type(model).__name__} has no one-output reward head")
    rewards = torch.empty(len(encoded))
    features = torch.empty(len(encoded), head.in_features)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(lambda _m, args, _out: captured.append(args[0]))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), autocast(model.device, bf16=bf16):
            lengths = [len(item.input_ids) for item in encoded]
            for indices in length_sorted_batches(lengths, batch_size, max_tokens=max_tokens):
                batch = pad_batch(
                    [encoded[i] for i in indices],
                    pad_token_id=pad_token_id,
                    token_type_ids=token_type_ids,
                    device=model.device,
                )
                captured.clear()
                logits = model(**batch).logits
                rows = torch.tensor(indices)
                rewards[rows] = logits[:, 0].float().cpu()
                features[rows] = captured[-1].float().cpu()
    finally:
        hook.remove()
        model.train(was_training)
    return rewards, features


def ensemble_fit(result: TrainResult, pairs: Sequence[PreferencePair]) -> EnsembleHeads | None:
    """Fit `config.ensemble_heads` heads on the pairs a version was trained on (None for 0).
    Memory: the features of at most FIT_MAX_PAIRS pairs."""
    config, model = result.config, result.model
    if config.ensemble_heads == 0:
        return None
    decided = [pair for pair in pairs if not pair.tie]
    if not decided:
        return None
    generator = torch.Generator().manual_seed(config.seed)
    if len(decided) > FIT_MAX_PAIRS:
        keep = torch.randperm(len(decided), generator=generator)[:FIT_MAX_PAIRS].tolist()
        decided = [decided[i] for i in sorted(keep)]
    prompts = [pair.prompt for pair in decided]
    encoder = InputEncoder(result.tokenizer, result.spec)
    encoded = encoder.encode(prompts, [pair.chosen for pair in decided])
    encoded += encoder.encode(prompts, [pair.rejected for pair in decided])
    _, features = reward_features(
        model,
        encoded,
        pad_token_id=result.tokenizer.pad_token_id,
        token_type_ids=result.spec.token_type_ids,
        bf16=False,  # the features of the fp32 model this version is saved as
        batch_size=config.eval_batch_size,
    )
    head = reward_head(model)
    assert head is not None  # reward_features refused a model without one
    targets = torch.tensor([pair.p_chosen if config.soft_labels else 1.0 for pair in decided])
    return fit_heads(
        features[: len(decided)] - features[len(decided) :],
        targets,
        main_weight=head.weight.detach().float().reshape(-1).cpu(),
        main_bias=float(head.bias.detach().float().item()) if head.bias is not None else 0.0,
        heads=config.ensemble_heads,
        generator=generator,
    )


def fit_heads(
    differences: torch.Tensor,
    targets: torch.Tensor,
    *,
    main_weight: torch.Tensor,
    main_bias: float,
    heads: int,
    generator: torch.Generator,
    steps: int = FIT_STEPS,
    resample: bool = True,
    offset_scale: float = OFFSET_SCALE,
) -> EnsembleHeads:
    """K linear Bradley-Terry heads on bootstrap resamples of the pairs' feature differences
    (chosen minus rejected, (N, features)), each from main_weight plus a random offset.
    `resample=False, offset_scale=0` fits one plain head on all the pairs instead.

    Full-batch gradient descent with step 1/L, L = max eigenvalue of D'D / (4N), the loss's
    smoothness bound: it converges without tuning, and it never moves a head outside the span
    of the differences, which is what keeps the heads apart on unfamiliar pairs.
    """
    count, width = differences.shape
    if resample:  # (K, N): how often each pair was drawn into each head's resample
        draws = torch.randint(count, (heads, count), generator=generator)
        counts = torch.stack([torch.bincount(row, minlength=count) for row in draws]).float()
    else:
        counts = torch.ones(heads, count)
    scale = offset_scale * max(float(main_weight.norm()), 1e-3) / math.sqrt(width)
    weight = main_weight.expand(heads, width) + scale * torch.randn(
        heads, width, generator=generator
    )
    smoothness = float(torch.linalg.matrix_norm(differences, ord=2)) ** 2 / (4 * count)
    step = 1.0 / max(smoothness, 1e-12)
    for _ in range(steps):
        margin = differences @ weight.T  # (N, K)
        # d/dm of -(t log sigmoid(m) + (1 - t) log sigmoid(-m)) is sigmoid(m) - t
        residual = (torch.sigmoid(margin) - targets[:, None]) * counts.T
        weight = weight - step * (residual.T @ differences) / count
    return EnsembleHeads(weight=weight.contiguous(), bias=torch.full((heads,), main_bias))


def ensemble_load(directory: str | Path) -> EnsembleHeads | None:
    """The heads of a verified version directory, or None for a version saved without them."""
    path = Path(directory)
    manifest = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    entry = manifest.get("ensemble")
    if not entry:
        return None
    tensors = load_file(path / entry["file"])
    return EnsembleHeads(weight=tensors["weight"].float(), bias=tensors["bias"].float())


def pair_estimates(
    reward_model: RewardModel,
    heads: EnsembleHeads | None,
    prompts: Sequence[Prompt],
    responses_a: Sequence[str],
    responses_b: Sequence[str],
    *,
    dedupe: bool = True,
) -> list[PairEstimate]:
    """p(a wins) and the heads' disagreement for each pair (prompt, a, b); `dedupe` as in
    `reward_features`."""
    encoded = reward_model.encoder.encode([*prompts, *prompts], [*responses_a, *responses_b])
    rewards, features = reward_features(
        reward_model.model,
        encoded,
        pad_token_id=reward_model.tokenizer.pad_token_id,
        token_type_ids=reward_model.spec.token_type_ids,
        bf16=reward_model.bf16,
        dedupe=dedupe,
    )
    count = len(prompts)
    p_a = torch.sigmoid(rewards[:count] - rewards[count:]).tolist()
    if heads is None:
        return [PairEstimate(p_a=p, uncertainty=None) for p in p_a]
    spread = disagreement(features[:count] - features[count:], heads).tolist()
    return [PairEstimate(p_a=p, uncertainty=u) for p, u in zip(p_a, spread, strict=True)]


def disagreement(differences: torch.Tensor, heads: EnsembleHeads) -> torch.Tensor:
    """Per pair, the standard deviation over the heads of sigmoid(r_k(a) - r_k(b)), from the
    pairs' feature differences (a minus b, (N, features))."""
    probabilities = torch.sigmoid(differences @ heads.weight.T)  # (N, K)
    return probabilities.std(dim=1, unbiased=False)
