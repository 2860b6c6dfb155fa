"""How (prompt, response) becomes reward-model input, and scoring with a trained model.

The rule, recorded as an `InputSpec` in every version's `pairwise.json`:

- `text_pair` (tokenizers without a chat template, e.g. BERT): the prompt and the response are the
  tokenizer's text pair (`[CLS] prompt [SEP] response [SEP]`). A prompt given as chat messages is
  first written as an HH transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...").
- `chat` (tokenizers with a chat template): the conversation with the response as the last
  assistant turn, rendered by the template; the prompt is everything the conversation shares with
  the template's generation prompt, the response is the rest.

Either way the prompt is cut from the LEFT until prompt + response fit `max_length`, so the
response's end, where chosen and rejected differ, always survives. A response that alone is too
long keeps its last tokens. Nothing is dropped for being long.
"""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch.nn import functional
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rewardtrain.checkpoints import MANIFEST_NAME, checkpoint_verify
from rewardtrain.data import Prompt

Template = Literal["text_pair", "chat"]

_HH_ROLES = {"user": "Human", "assistant": "Assistant", "system": "System"}


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    template: Template
    max_length: int  # tokens, special tokens included
    token_type_ids: bool  # segment ids 0 for the prompt, 1 for the response (text_pair only)
    truncation_side: Literal["left"] = "left"  # of the prompt; the response end is never cut

    def rule(self) -> str:
        if self.template == "chat":
            layout = "the tokenizer's chat template with the response as the last assistant turn"
        else:
            layout = (
                "the tokenizer's text pair (prompt, response); chat messages as an HH transcript"
            )
        return (
            f"Input is {layout}. The prompt is cut from the left until the whole fits "
            f"{self.max_length} tokens; a response longer than that alone keeps its last tokens."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "max_length": self.max_length,
            "token_type_ids": self.token_type_ids,
            "truncation_side": self.truncation_side,
            "rule": self.rule(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputSpec:
        if data.get("truncation_side", "left") != "left":
            raise ValueError("only prompts cut from the left are supported")
        return cls(
            template=data["template"],
            max_length=int(data["max_length"]),
            token_type_ids=bool(data["token_type_ids"]),
        )


def input_spec_for(tokenizer: PreTrainedTokenizerBase, *, max_length: int) -> InputSpec:
    """The input rule a tokenizer implies: its chat template when it has one, else a text pair."""
    template: Template = "chat" if getattr(tokenizer, "chat_template", None) else "text_pair"
    return InputSpec(
        template=template,
        max_length=max_length,
        token_type_ids=template == "text_pair" and "token_type_ids" in tokenizer.model_input_names,
    )


@dataclass(frozen=True, slots=True)
class Encoded:
    input_ids: list[int]
    token_type_ids: list[int]
    response_cut: bool  # the response alone exceeded max_length and lost its beginning


class InputEncoder:
    """Applies an `InputSpec` with a tokenizer, in batches, through the Rust tokenizer."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, spec: InputSpec) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TypeError(f"{type(tokenizer).__name__} has no fast (Rust) tokenizer backend")
        # A private copy: tokenizer.json files may carry their own padding and truncation, which
        # would pad every sequence to a fixed length and cut the wrong side.
        self._backend = copy.deepcopy(backend)
        self._backend.no_padding()
        self._backend.no_truncation()
        self._tokenizer = tokenizer
        self.spec = spec
        self._special_tokens = (
            tokenizer.num_special_tokens_to_add(pair=True) if spec.template == "text_pair" else 0
        )
        if spec.max_length <= self._special_tokens:
            raise ValueError(f"max_length {spec.max_length} leaves no room for any token")

    def encode(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[Encoded]:
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses must have the same length")
        if self.spec.template == "chat":
            prompt_texts, response_texts = self._render_chat(prompts, responses)
        else:
            prompt_texts = [_as_text(prompt) for prompt in prompts]
            response_texts = list(responses)
        prompt_encodings = self._backend.encode_batch(prompt_texts, add_special_tokens=False)
        response_encodings = self._backend.encode_batch(response_texts, add_special_tokens=False)
        budget = self.spec.max_length - self._special_tokens
        encoded = []
        for prompt_encoding, response_encoding in zip(
            prompt_encodings, response_encodings, strict=True
        ):
            response_cut = len(response_encoding.ids) > budget
            if response_cut:
                response_encoding.truncate(budget, direction="left")
            prompt_encoding.truncate(budget - len(response_encoding.ids), direction="left")
            if self.spec.template == "chat":
                ids = prompt_encoding.ids + response_encoding.ids
                type_ids = [0] * len(ids)
            else:
                pair = self._backend.post_process(
                    prompt_encoding, response_encoding, add_special_tokens=True
                )
                ids, type_ids = pair.ids, pair.type_ids
            encoded.append(Encoded(ids, type_ids, response_cut))
        return encoded

    def _render_chat(
        self, prompts: Sequence[Prompt], responses: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        prompt_texts, response_texts = [], []
        for prompt, response in zip(prompts, responses, strict=True):
            messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
            opening = self._tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
            whole = self._tokenizer.apply_chat_template(
                [*messages, {"role": "assistant", "content": response}], tokenize=False
            )
            if not isinstance(opening, str) or not isinstance(whole, str):
                raise TypeError("the chat template did not render to text")
            # Templates that re-render earlier turns (e.g. strip reasoning) still share a prefix.
            shared = _common_prefix_length(opening, whole)
            prompt_texts.append(whole[:shared])
            response_texts.append(whole[shared:])
        return prompt_texts, response_texts


def _common_prefix_length(first: str, second: str) -> int:
    for index, (a, b) in enumerate(zip(first, second, strict=False)):
        if a != b:
            return index
    return min(len(first), len(second))


def _as_text(prompt: Prompt) -> str:
    if isinstance(prompt, str):
        return prompt
    turns = [f"\n\n{_HH_ROLES.get(m['role'], m['role'].title())}: {m['content']}" for m in prompt]
    return "".join(turns)


def pad_batch(
    encoded: Sequence[Encoded], *, pad_token_id: int, token_type_ids: bool, device: torch.device
) -> dict[str, torch.Tensor]:
    """Right-pad to the longest sequence of this batch only (dynamic padding)."""
    width = max(len(item.input_ids) for item in encoded)
    input_ids = torch.full((len(encoded), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)
    segments = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, item in enumerate(encoded):
        length = len(item.input_ids)
        input_ids[row, :length] = torch.tensor(item.input_ids)
        attention_mask[row, :length] = 1
        segments[row, :length] = torch.tensor(item.token_type_ids)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if token_type_ids:
        batch["token_type_ids"] = segments
    return {name: tensor.to(device, non_blocking=True) for name, tensor in batch.items()}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but no CUDA device is available")
    return torch.device(name)


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # oneDNN's own check for AVX-512 BF16 or AMX: without them bf16 is emulated and slower.
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast(device: torch.device, *, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    if bf16 and bf16_supported(device):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_model(
    path: str | Path, *, device: torch.device
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A one-output sequence classifier and its tokenizer from a local directory, fp32 weights.

    Safetensors only, never the hub. Tokenizers without a pad token get one, as the classifier
    finds each sequence's last token through it.
    """
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=1, local_files_only=True, use_safetensors=True, dtype=torch.float32
    )
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": "[PAD]"})
            model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    _score_head_in_fp32(model)
    return model.to(device), tokenizer


def cast_parameters(module: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast the floating-point parameters to `dtype` in place. Unlike `module.to(dtype)`, buffers
    keep their precision: a rotary embedding's frequencies rounded to bf16 would put every
    position of a Llama- or Qwen-based reward model slightly off."""
    for param in module.parameters():
        if param.is_floating_point():
            param.data = param.data.to(dtype)


def reward_head(model: PreTrainedModel) -> torch.nn.Linear | None:
    """The layer that turns features into the reward: the last one-output Linear (`classifier`
    in BERT, `out_proj` in RoBERTa, `score` in Llama or Qwen)."""
    heads = [
        module
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module.out_features == 1
    ]
    return heads[-1] if heads else None


class _Fp32Linear(torch.nn.Linear):
    """A Linear computed in fp32 whatever autocast or its input says (`_score_head_in_fp32`)."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):
            bias = None if self.bias is None else self.bias.float()
            return functional.linear(features.float(), self.weight.float(), bias)


class _PrepackedLinear(torch.nn.Linear):
    """The twin of a plain bf16 `Linear` (its reference): the same product through the weight
    oneDNN laid out once at load (`_prepack_linear_weights`)."""

    prepacked_weight: torch.Tensor

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(
            features, self.prepacked_weight, self.bias, "none", [], ""
        )


def prepacking_available(device: torch.device) -> bool:
    """Whether `_prepack_linear_weights` can run here: a CPU with bf16 and a torch build with
    oneDNN's private linear operators. Elsewhere the loader keeps plain `Linear`."""
    mkldnn = torch.ops.mkldnn
    return (
        device.type == "cpu"
        and bf16_supported(device)
        and torch.backends.mkldnn.is_available()
        and hasattr(mkldnn, "_reorder_linear_weight")
        and hasattr(mkldnn, "_linear_pointwise")
    )


@torch.no_grad()
def _prepack_linear_weights(model: PreTrainedModel, *, keep: torch.nn.Module | None) -> None:
    """Lay out every bf16 Linear weight for oneDNN once, at load, instead of on every call, as
    torch.compile's freezing prepares weights, without the compiler. The scores are those of the
    plain bf16 `Linear` to the bit (tests/rewardtrain/test_ml_reward_model.py); the speed-up is
    in docs/benchmarks_training.md. For inference only: the packed copy does not follow later
    changes to the weights. The caller checks `prepacking_available` first."""
    for module in model.modules():
        if (
            type(module) is torch.nn.Linear
            and module is not keep
            and module.weight.dtype == torch.bfloat16
        ):
            module.__class__ = _PrepackedLinear
            module.prepacked_weight = torch.ops.mkldnn._reorder_linear_weight(
                module.weight, SCORE_BATCH_TOKENS
            )


def _score_head_in_fp32(model: PreTrainedModel) -> None:
    """Compute the reward head in fp32 whatever the rest runs in. A bf16 output has 8 bits of
    mantissa: rewards near 0.75 would come in steps of 0.004, so close chosen and rejected
    responses would tie (and a tie counts as wrong). Only the module's class changes: the
    weights, their names and the saved checkpoint are the model's own."""
    head = reward_head(model)
    if head is not None:
        head.__class__ = _Fp32Linear


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, *, max_tokens: int | None = None
) -> Iterator[list[int]]:
    """Indices sorted by length and cut into batches of at most `batch_size` items and, with
    `max_tokens`, at most that many tokens once padded to the batch's longest item (a single
    item longer than that still gets a batch of its own)."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    batch: list[int] = []
    for index in order:
        too_many = len(batch) == batch_size or (
            max_tokens is not None and (len(batch) + 1) * lengths[index] > max_tokens
        )
        if batch and too_many:
            yield batch
            batch = []
        batch.append(index)
    if batch:
        yield batch


def distinct(encoded: Sequence[Encoded]) -> tuple[list[Encoded], list[int]]:
    """The distinct items of `encoded` (the same token and segment ids) in first-seen order, and
    for each item of `encoded` the position of its twin among them. Scoring the distinct items
    alone gives every item's score: a pool whose prompts have n responses, compared all against
    all, holds n (n - 1) items but only n distinct ones. Memory: one key per item, bounded by
    the caller's batch."""
    position: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
    unique: list[Encoded] = []
    where: list[int] = []
    for item in encoded:
        key = (tuple(item.input_ids), tuple(item.token_type_ids))
        if key not in position:
            position[key] = len(unique)
            unique.append(item)
        where.append(position[key])
    return unique, where


# Padded tokens per forward pass when scoring: batches of similar length waste little on padding,
# and larger matrix products keep AMX busy. The size that scored fastest among those measured
# (docs/benchmarks_training.md, "Scoring").
SCORE_BATCH_TOKENS = 4096


class RewardModel:
    """Scores (prompt, response) pairs with a reward model, batched, without gradients."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        spec: InputSpec,
        *,
        bf16: bool = True,
        manifest: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.spec = spec
        self.manifest = manifest or {}
        self.bf16 = bf16
        self.encoder = InputEncoder(tokenizer, spec)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def score(
        self,
        prompts: Sequence[Prompt],
        responses: Sequence[str],
        *,
        batch_size: int = 64,
        max_tokens: int = SCORE_BATCH_TOKENS,
    ) -> list[float]:
        return self.score_encoded(
            self.encoder.encode(prompts, responses), batch_size=batch_size, max_tokens=max_tokens
        )

    def score_encoded(
        self,
        encoded: Sequence[Encoded],
        *,
        batch_size: int = 64,
        max_tokens: int = SCORE_BATCH_TOKENS,
        dedupe: bool = True,
    ) -> list[float]:
        """Each item's reward. With `dedupe` (the default), repeated items are run through the
        model once (`distinct`); `dedupe=False`, every item once, is the reference it is tested
        against."""
        if dedupe:
            unique, where = distinct(encoded)
            scores = self.score_encoded(
                unique, batch_size=batch_size, max_tokens=max_tokens, dedupe=False
            )
            return [scores[index] for index in where]
        scores = [0.0] * len(encoded)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode(), autocast(self.device, bf16=self.bf16):
                lengths = [len(item.input_ids) for item in encoded]
                for indices in length_sorted_batches(lengths, batch_size, max_tokens=max_tokens):
                    batch = pad_batch(
                        [encoded[i] for i in indices],
                        pad_token_id=self.tokenizer.pad_token_id,
                        token_type_ids=self.spec.token_type_ids,
                        device=self.device,
                    )
                    rewards = self.model(**batch).logits[:, 0].float().tolist()
                    for index, reward in zip(indices, rewards, strict=True):
                        scores[index] = reward
        finally:
            self.model.train(was_training)
        return scores


def load_reward_model(
    path: str | Path,
    *,
    checkpoint_root: str | Path | None = None,
    expected_sha256: dict[str, str] | None = None,
    device: str = "auto",
    bf16: bool = True,
    bf16_weights: bool = True,
    prepack: bool = True,
) -> RewardModel:
    """Verify a version directory, then load it for scoring.

    With `checkpoint_root`, the directory must lie inside it; with `expected_sha256` (the
    checksums the database recorded), every file must match them, else those `pairwise.json`
    lists. Pickle-capable files are refused either way.

    With `bf16` and `bf16_weights` on hardware that has bf16, the weights themselves become bf16
    (faster than autocast over fp32 weights: docs/benchmarks_training.md), and scores move by
    bf16 rounding only (autocast rounds the matrix products' weights the same way). Comparing
    versions wants `bf16_weights=False`, the numerics a freshly trained model is evaluated with.
    With `prepack` where `prepacking_available`, the bf16 weights are also laid out for oneDNN
    once: the returned model is for scoring, and changing its weights afterwards would not reach
    those copies. `prepack=False` keeps plain `Linear` layers, the reference it is tested against.
    """
    path = Path(path)
    root = Path(checkpoint_root) if checkpoint_root is not None else path.parent
    checkpoint_verify(path, root=root, expected_sha256=expected_sha256)
    manifest = json.loads((path / MANIFEST_NAME).read_text(encoding="utf-8"))
    target = resolve_device(device)
    model, tokenizer = load_model(path, device=target)
    if bf16 and bf16_weights and bf16_supported(target):
        cast_parameters(model, torch.bfloat16)
        head = reward_head(model)
        if head is not None:
            cast_parameters(head, torch.float32)  # a few hundred weights: keep them exact
        if prepack and prepacking_available(target):
            _prepack_linear_weights(model, keep=head)
    model.eval()
    spec = InputSpec.from_dict(manifest["input"])
    return RewardModel(model, tokenizer, spec, bf16=bf16, manifest=manifest)
