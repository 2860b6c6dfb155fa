"""Preference pairs as the trainer sees them, the held-out split by prompt, and a data digest.

A prompt is plain text or a list of chat messages (`{"role": ..., "content": ...}`); how either
becomes model input is `rewardtrain.model`'s business.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Prompt = str | list[dict[str, str]]


def prompt_key(prompt: Prompt) -> str:
    """A stable hex digest of a prompt: equal prompts (text or messages) get equal keys."""
    canonical = prompt if isinstance(prompt, str) else _canonical_json(prompt)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, kw_only=True)
class PreferencePair:
    prompt: Prompt
    chosen: str
    rejected: str
    margin: float = 0.0  # how much better chosen is, from strength and agreement; >= 0
    strength: int | None = None  # the raters' strength (1 slightly .. 3 much better), if asked
    p_chosen: float = 1.0  # the probability that chosen is better (0.5 to 1), from aggregation
    tie: bool = False  # the raters called the two equal; chosen and rejected are just a and b
    group: str = field(default="")  # pairs of one group stay on one side of the held-out split

    def __post_init__(self) -> None:
        if not self.group:
            object.__setattr__(self, "group", prompt_key(self.prompt))

    def to_dict(self) -> dict[str, object]:
        return {
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
            "margin": self.margin,
            "strength": self.strength,
            "p_chosen": self.p_chosen,
            "tie": self.tie,
            "group": self.group,
        }


def heldout_split(
    pairs: Iterable[PreferencePair], *, salt: str, fraction: float
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Split into (train, heldout) by group, so every prompt's pairs land on one side.

    Each group's side depends only on sha256(salt, group): a pair never changes side as new data
    arrives, so versions trained months apart are compared on the same held-out prompts. The
    held-out share is `fraction` in expectation, not exactly.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be in [0, 1]")
    train: list[PreferencePair] = []
    heldout: list[PreferencePair] = []
    for pair in pairs:
        digest = hashlib.sha256(f"{salt}\x00{pair.group}".encode()).digest()
        position = int.from_bytes(digest[:8], "big") / 2**64
        (heldout if position < fraction else train).append(pair)
    return train, heldout


def data_sha256(pairs: Sequence[PreferencePair]) -> str:
    """Digest of the pairs in order: training depends on the order, so the digest does too."""
    digest = hashlib.sha256()
    for pair in pairs:
        digest.update(_canonical_json(pair.to_dict()).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
