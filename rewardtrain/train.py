"""Training a Bradley-Terry reward model from preference pairs, and evaluating one.

`train()` is one loop, top to bottom: tokenize once, bucket pairs by length, and for each batch
run chosen and rejected through the model in one padded forward pass, in bf16 with fp32 master
weights where the hardware has bf16. `evaluate()` reports TRL's metric names;
`mcnemar_exact_test()` tests a new version against the published one on the same held-out pairs.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch import distributed as dist
from torch.nn import functional
from torch.nn.parallel import DistributedDataParallel
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rewardtrain.attention import ATTENTION
from rewardtrain.config import TrainConfig
from rewardtrain.data import PreferencePair
from rewardtrain.model import (
    InputEncoder,
    InputSpec,
    RewardModel,
    bf16_supported,
    cast_parameters,
    input_spec_for,
    load_model,
    pad_batch,
    resolve_device,
)

logger = logging.getLogger(__name__)

Progress = Callable[[float, dict[str, float]], None]


class TrainingCancelled(Exception):
    """`should_stop` asked the loop to stop; nothing trained so far should be kept."""


@dataclass(kw_only=True)
class TrainResult:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    spec: InputSpec
    config: TrainConfig
    base_model: str
    init_from: str | None
    loss_history: list[float] = field(default_factory=list)  # one mean loss per step
    pairs: int = 0  # pairs trained on, each epoch counted
    responses_cut: int = 0  # sequences whose response alone exceeded max_length
    seconds: float = 0.0  # wall time of the whole call, loading and tokenizing included
    device: str = "cpu"
    bf16: bool = False  # whether the model actually computed in bf16

    def stats(self) -> dict[str, Any]:
        return {
            "steps": len(self.loss_history),
            "pairs": self.pairs,
            "responses_cut": self.responses_cut,
            "seconds": round(self.seconds, 3),
            "pairs_per_second": round(self.pairs / self.seconds, 3) if self.seconds else None,
            "device": self.device,
            "bf16": self.bf16,
            "loss_history": [round(loss, 5) for loss in self.loss_history],
        }


def bradley_terry_loss(chosen: Tensor, rejected: Tensor, margin: Tensor | None = None) -> Tensor:
    """Mean of -log sigmoid(r_chosen - r_rejected - margin): the pairwise preference likelihood."""
    difference = chosen - rejected
    if margin is not None:
        difference = difference - margin
    return -functional.logsigmoid(difference).mean()


def preference_loss(
    chosen: Tensor,
    rejected: Tensor,
    *,
    margin: Tensor | None = None,
    target: Tensor | None = None,
    tie: Tensor | None = None,
    tie_weight: float | None = None,
) -> Tensor:
    """Mean negative log-likelihood of soft and tied preferences; with none of the options it is
    `bradley_terry_loss`.

    d = r_chosen - r_rejected - margin. `target` is each pair's p_chosen: the loss is the
    cross-entropy of the model's P(chosen better) against it, so at p = 2/3 the gradient on d at
    d = 0 is a third of a unanimous pair's.

    Bradley-Terry (`tie_weight` None): P(chosen better) = sigmoid(d); at d = 0 the loss is log 2
    whatever the target.

    Davidson's ties (`tie_weight` = nu > 0): R. R. Davidson, "On Extending the Bradley-Terry
    Model to Accommodate Ties in Paired Comparison Experiments", Journal of the American
    Statistical Association 65(329), 1970, 317-328. With strengths pi = exp(r),
        P(chosen better) = pi_c / (pi_c + pi_r + nu sqrt(pi_c pi_r)) = e^(d/2) / Z,
        P(rejected better) = e^(-d/2) / Z,  P(tie) = nu / Z,  Z = e^(d/2) + e^(-d/2) + nu.
    A pair with `tie` true costs -log P(tie), least at d = 0, so tie votes pull the two rewards
    together; a decisive pair costs the cross-entropy over the two wins. At d = 0 those are
    log((2 + nu) / nu) and log(2 + nu).
    """
    difference = chosen - rejected
    if margin is not None:
        difference = difference - margin
    p = target if target is not None else torch.ones_like(difference)
    if tie_weight is None:
        if tie is not None and bool(tie.any()):
            raise ValueError("tie pairs need a tie likelihood: pass tie_weight")
        losses = -(
            p * functional.logsigmoid(difference) + (1 - p) * functional.logsigmoid(-difference)
        )
        return losses.mean()
    half = difference / 2
    log_z = torch.logsumexp(
        torch.stack([half, -half, torch.full_like(half, math.log(tie_weight))]), dim=0
    )
    decisive = log_z - (2 * p - 1) * half
    if tie is None:
        return decisive.mean()
    return torch.where(tie, log_z - math.log(tie_weight), decisive).mean()


def train(
    config: TrainConfig,
    train_pairs: Sequence[PreferencePair],
    *,
    init_from: str | Path | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train a reward model on `train_pairs`, from `config.base_model` or warm from `init_from`.

    `progress(fraction_done, {"step", "loss", "learning_rate"})` is called about 100 times;
    `should_stop()` is asked before every step and raises `TrainingCancelled` when true.

    Under `torch.distributed` (`rewardtrain.launch` starts it), each rank trains its share of
    every batch through DistributedDataParallel: `config.batch_size` is then the per-device
    batch, and each step takes `batch_size x world_size` pairs, as TRL counts its global batch.
    """
    if config.tie_policy == "drop":
        train_pairs = [pair for pair in train_pairs if not pair.tie]
    if not train_pairs:
        raise ValueError("no pairs to train on")
    started = time.perf_counter()
    device = resolve_device(config.device)
    if device.type == "cpu":
        torch.set_num_threads(config.num_threads or len(os.sched_getaffinity(0)))
    rank, world_size = _rank_and_world_size()
    random_order = random.Random(config.seed)  # noqa: S311 - reproducible, not secret
    torch.manual_seed(config.seed)  # the new reward head's initial weights

    source = str(init_from) if init_from is not None else config.base_model
    model, tokenizer = load_model(source, device=device)
    if config.disable_dropout:
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    spec = input_spec_for(tokenizer, max_length=config.max_length)
    encoder = InputEncoder(tokenizer, spec)
    prompts = [pair.prompt for pair in train_pairs]
    chosen = encoder.encode(prompts, [pair.chosen for pair in train_pairs])
    rejected = encoder.encode(prompts, [pair.rejected for pair in train_pairs])
    lengths = [
        max(len(c.input_ids), len(r.input_ids)) for c, r in zip(chosen, rejected, strict=True)
    ]
    margins = [pair.margin for pair in train_pairs]
    targets = [pair.p_chosen if config.soft_labels else 1.0 for pair in train_pairs]
    ties = [pair.tie for pair in train_pairs]
    tie_weight = config.tie_weight if config.tie_policy == "model" else None

    batches = [
        batch
        for _ in range(config.epochs)
        for batch in bucketed_batches(
            lengths,
            batch_size=config.batch_size * world_size,  # the global batch, cut per rank below
            bucket_batches=config.length_bucket_batches,
            rng=random_order,
        )
    ]
    bf16 = config.bf16 and bf16_supported(device)
    weights = _MasterWeights(model, bf16=bf16)
    decay = [p for p in weights.trained if p.ndim >= 2]
    no_decay = [p for p in weights.trained if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=config.learning_rate,
        fused=device.type in ("cpu", "cuda"),
    )
    warmup_steps = math.ceil(config.warmup_ratio * len(batches))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: _linear_warmup_decay(step, warmup_steps, len(batches))
    )
    result = TrainResult(
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        config=config,
        base_model=config.base_model,
        init_from=str(init_from) if init_from is not None else None,
        responses_cut=sum(item.response_cut for item in (*chosen, *rejected)),
        device=str(device),
        bf16=bf16,
    )
    report_every = max(1, len(batches) // 100)

    attention = model.config._attn_implementation
    if bf16 and device.type == "cpu":
        try:
            model.set_attn_implementation(ATTENTION)
        except ValueError as error:  # an architecture that cannot take it keeps its own
            logger.warning("training with %s attention: %s", attention, error)
    forward = _distributed_model(model, device) if world_size > 1 else model
    if config.recompute_activations:
        model.activation_checkpointing_enable({"use_reentrant": False})
    model.train()
    try:
        for step, global_batch in enumerate(batches, start=1):
            if should_stop is not None and should_stop():
                raise TrainingCancelled(f"stopped before step {step} of {len(batches)}")
            batch, share = rank_share(global_batch, rank=rank, world_size=world_size)
            inputs = pad_batch(
                [chosen[i] for i in batch] + [rejected[i] for i in batch],
                pad_token_id=tokenizer.pad_token_id,
                token_type_ids=spec.token_type_ids,
                device=device,
            )
            rewards = forward(**inputs).logits[:, 0].float()
            margin = None
            if config.use_margin:  # a tie pair's margin is 0: there is no side to favour
                margin = torch.tensor([margins[i] for i in batch], device=device)
            loss = preference_loss(
                rewards[: len(batch)],
                rewards[len(batch) :],
                margin=margin,
                target=torch.tensor([targets[i] for i in batch], device=device),
                tie=torch.tensor([ties[i] for i in batch], device=device),
                tie_weight=tie_weight,
            )
            (loss * share).backward()  # DDP averages over ranks: the global batch's mean
            weights.gradients_to_master()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(weights.trained, config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            weights.master_to_model()

            result.loss_history.append(_global_loss(loss, share, world_size))
            result.pairs += len(global_batch)
            if progress is not None and (step % report_every == 0 or step == len(batches)):
                progress(
                    step / len(batches),
                    {
                        "step": step,
                        "loss": result.loss_history[-1],
                        "learning_rate": float(scheduler.get_last_lr()[0]),
                    },
                )
    finally:
        model.set_attn_implementation(attention)
        if model.is_activation_checkpointing:
            model.activation_checkpointing_disable()
    weights.finish()
    model.eval()
    result.seconds = time.perf_counter() - started
    return result


class _MasterWeights:
    """bf16 training with fp32 master weights: the model computes in bf16 (weights and
    activations; buffers such as rotary frequencies keep their precision), while the optimizer
    updates fp32 copies of the trainable weights, so small updates are not rounded away. Without
    bf16 the optimizer works on the model's own weights.

    Chosen over autocast: on the CPU, autocast's casts of weights and activations between fp32
    and bf16 took 13% of a MiniLM step, and its fp32 activations double the memory traffic of
    every element-wise operation (docs/benchmarks_training.md).
    """

    def __init__(self, model: PreTrainedModel, *, bf16: bool) -> None:
        self.model = model
        self._params: list[Tensor] = [p for p in model.parameters() if p.requires_grad]
        self.trained: list[Tensor]
        if bf16:
            self.trained = [p.detach().clone().float().requires_grad_() for p in self._params]
            cast_parameters(model, torch.bfloat16)
        else:
            self.trained = self._params

    def gradients_to_master(self) -> None:
        if self.trained is self._params:
            return
        for master, param in zip(self.trained, self._params, strict=True):
            master.grad = None if param.grad is None else param.grad.float()
            param.grad = None

    @torch.no_grad()
    def master_to_model(self) -> None:
        if self.trained is not self._params:
            for master, param in zip(self.trained, self._params, strict=True):
                param.copy_(master)

    @torch.no_grad()
    def finish(self) -> None:
        """The model back in fp32 with the exact master weights, as checkpoints store it."""
        if self.trained is not self._params:
            cast_parameters(self.model, torch.float32)
            for master, param in zip(self.trained, self._params, strict=True):
                param.data = master.detach()


def bucketed_batches(
    lengths: Sequence[int], *, batch_size: int, bucket_batches: int, rng: random.Random
) -> list[list[int]]:
    """Shuffled batches of similar length, so padding to the longest wastes little.

    Pairs are shuffled, cut into buckets of `bucket_batches` batches, sorted by length within a
    bucket and batched; then the batches are shuffled, so no run of steps sees only long pairs.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    bucket_size = batch_size * bucket_batches
    batches: list[list[int]] = []
    for start in range(0, len(order), bucket_size):
        bucket = sorted(order[start : start + bucket_size], key=lengths.__getitem__)
        batches.extend(bucket[i : i + batch_size] for i in range(0, len(bucket), batch_size))
    rng.shuffle(batches)
    return batches


def rank_share(batch: list[int], *, rank: int, world_size: int) -> tuple[list[int], float]:
    """This rank's pairs of a global batch, and the weight of their mean loss.

    Rank r takes every world_size-th pair from the r-th: deterministic, and as even as can be.
    The weight `len(share) * world_size / len(batch)` makes DDP's average of the ranks'
    gradients the gradient of the global batch's mean loss, however unevenly it splits. A rank
    left without a pair (a batch smaller than the world) runs the first pair with weight 0, so
    it still joins every all-reduce.
    """
    if world_size == 1:
        return batch, 1.0
    share = batch[rank::world_size]
    if not share:
        return batch[:1], 0.0
    return share, len(share) * world_size / len(batch)


def _rank_and_world_size() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _distributed_model(model: PreTrainedModel, device: torch.device) -> torch.nn.Module:
    """DDP around the model: it broadcasts rank 0's weights and all-reduces every gradient."""
    device_ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def _global_loss(loss: Tensor, share: float, world_size: int) -> float:
    """The global batch's mean loss: each rank's weighted mean, summed over the ranks."""
    if world_size == 1:
        return loss.item()
    total = (loss.detach() * share / world_size).reshape(1)
    dist.all_reduce(total)
    return total.item()


def _linear_warmup_decay(step: int, warmup_steps: int, total_steps: int) -> float:
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def evaluate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    spec: InputSpec,
    pairs: Sequence[PreferencePair],
    *,
    batch_size: int = 64,
    bf16: bool = True,
) -> dict[str, Any]:
    """Held-out metrics of a model on `pairs`, with the input rule it was trained with."""
    reward_model = RewardModel(model, tokenizer, spec, bf16=bf16)
    prompts = [pair.prompt for pair in pairs]
    encoded = reward_model.encoder.encode(prompts, [pair.chosen for pair in pairs])
    encoded += reward_model.encoder.encode(prompts, [pair.rejected for pair in pairs])
    scores = reward_model.score_encoded(encoded, batch_size=batch_size)
    return preference_metrics(scores[: len(pairs)], scores[len(pairs) :], pairs)


def preference_metrics(
    chosen: Sequence[float], rejected: Sequence[float], pairs: Sequence[PreferencePair]
) -> dict[str, Any]:
    """accuracy (a tie counts as wrong), mean margin, loss, accuracy by strength, calibration.

    `calibration_error` is the expected calibration error of sigmoid(r_chosen - r_rejected) read
    as the confidence in the side the model prefers, over ten equal-width bins in [0.5, 1].
    Undefined values (no pairs) are None, never NaN, so the result stays valid JSON.
    """
    differences = [c - r for c, r in zip(chosen, rejected, strict=True)]
    correct = [difference > 0 for difference in differences]
    count = len(differences)
    by_strength: dict[str, list[bool]] = defaultdict(list)
    for pair, is_correct in zip(pairs, correct, strict=True):
        by_strength["none" if pair.strength is None else str(pair.strength)].append(is_correct)

    if count == 0:
        return {
            "count": 0,
            "accuracy": None,
            "margin": None,
            "loss": None,
            "calibration_error": None,
            "accuracy_by_strength": {},
            "correct": [],
        }
    bins: dict[int, list[tuple[float, bool]]] = defaultdict(list)
    for difference, is_correct in zip(differences, correct, strict=True):
        confidence = max(_sigmoid(difference), 1.0 - _sigmoid(difference))
        bins[min(9, int((confidence - 0.5) * 20))].append((confidence, is_correct))
    calibration_error = (
        sum(
            abs(sum(conf for conf, _ in items) - sum(ok for _, ok in items))
            for items in bins.values()
        )
        / count
    )
    loss = bradley_terry_loss(torch.tensor(differences, dtype=torch.float64), torch.zeros(count))
    return {
        "count": count,
        "accuracy": sum(correct) / count,
        "margin": sum(differences) / count,
        "loss": loss.item(),
        "calibration_error": calibration_error,
        "accuracy_by_strength": {
            strength: sum(values) / len(values) for strength, values in sorted(by_strength.items())
        },
        "correct": correct,
    }


def _sigmoid(value: float) -> float:
    if value >= 0:
        return 1.0 / (1.0 + math.exp(-value))
    exp = math.exp(value)
    return exp / (1.0 + exp)


def mcnemar_exact_test(correct_new: Sequence[bool], correct_old: Sequence[bool]) -> dict[str, Any]:
    """Exact McNemar test of two models' correctness on the same pairs.

    Only the pairs where they disagree carry information: under "equally good", each such pair is
    a fair coin. `p_value` is two-sided.
    """
    if len(correct_new) != len(correct_old):
        raise ValueError("both models must be scored on the same pairs")
    new_only = sum(new and not old for new, old in zip(correct_new, correct_old, strict=True))
    old_only = sum(old and not new for new, old in zip(correct_new, correct_old, strict=True))
    disagreements = new_only + old_only
    tail = sum(math.comb(disagreements, k) for k in range(min(new_only, old_only) + 1))
    # Exact integers until the last division: 2**n underflows no float for n in the thousands.
    p_value = min(1.0, 2 * tail / 2**disagreements)
    count = len(correct_new)
    return {
        "count": count,
        "new_only": new_only,
        "old_only": old_only,
        "accuracy_new": sum(correct_new) / count if count else None,
        "accuracy_old": sum(correct_old) / count if count else None,
        "p_value": p_value,
    }
