"""Which responses of a multi-response prompt are compared: a project's pairing rule."""

from __future__ import annotations

import hashlib
import itertools
import random
from typing import Literal

from annotation.imports.records import ResponsesRecord

PairingRule = Literal["all", "k_per_prompt"]


def _model_rank(a: str | None, b: str | None) -> int:
    """0 for two known, different models, 1 when one is unknown, 2 for the same model."""
    if a is None or b is None:
        return 1
    return 0 if a != b else 2


def _rng_for(record: ResponsesRecord, seed: int) -> random.Random:
    # Seeded from the content, not the position in the file: the same record and seed give the
    # same pairs on a re-import, whatever else the file holds.
    key = repr((seed, record.external_id, record.prompt, [r.text for r in record.responses]))
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))  # noqa: S311 (tie-breaking, not secrets)


def pairs_from_responses(
    record: ResponsesRecord, *, rule: PairingRule, k: int = 1, seed: int = 0
) -> list[tuple[int, int]]:
    """Index pairs (i, j), i < j, into `record.responses`, sorted.

    "all" gives every pair (n * (n - 1) / 2). "k_per_prompt" gives k of them (all if there are
    fewer), chosen greedily: pairs of two different known models first, then pairs whose
    responses have been used least, ties broken by a shuffle seeded from `seed` and the record.
    Which side a rater sees first is decided per assignment, not here.
    """
    every = list(itertools.combinations(range(len(record.responses)), 2))
    if rule == "all":
        return every
    if rule != "k_per_prompt":
        raise ValueError(f'unknown pairing rule {rule!r}; expected "all" or "k_per_prompt"')
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if k >= len(every):
        return every
    models = [item.model for item in record.responses]
    _rng_for(record, seed).shuffle(every)
    used = [0] * len(models)
    chosen = []
    for _ in range(k):
        best = min(
            every,
            key=lambda p: (
                _model_rank(models[p[0]], models[p[1]]),
                max(used[p[0]], used[p[1]]),
                used[p[0]] + used[p[1]],
            ),
        )
        every.remove(best)
        chosen.append(best)
        used[best[0]] += 1
        used[best[1]] += 1
    return sorted(chosen)
