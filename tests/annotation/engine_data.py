"""Bulk test data for the assignment engine: hundreds of pairs in a few inserts, so tests can
compare a small project with a big one without waiting for factories."""

import hashlib
import random

from annotation.models import Membership, Pair, Project, Prompt, Response
from tests.factories import BatchFactory, MembershipFactory, UserFactory


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_pairs(project: Project, count: int, **fields) -> list[Pair]:
    """`count` pairs of one new batch, each with its own prompt and two responses."""
    batch = BatchFactory(project=project, uploaded_by=UserFactory())
    prompts = Prompt.objects.bulk_create(
        Prompt(project=project, batch=batch, text=t, content_hash=_sha(t))
        for t in (f"Prompt {i} of batch {batch.id}?" for i in range(count))
    )
    responses = Response.objects.bulk_create(
        Response(
            prompt=prompt, batch=batch, text=t, content_hash=_sha(t), model_name=f"model-{side}"
        )
        for prompt in prompts
        for side, t in (("a", f"Answer A to {prompt.text}"), ("b", f"Answer B to {prompt.text}"))
    )
    fields.setdefault("judgments_needed", project.raters_per_pair)
    return Pair.objects.bulk_create(
        Pair(
            project=project,
            batch=batch,
            prompt=prompt,
            response_a=responses[2 * i],
            response_b=responses[2 * i + 1],
            **fields,
        )
        for i, prompt in enumerate(prompts)
    )


def make_raters(project: Project, count: int, prefix: str = "rater") -> list:
    return [
        MembershipFactory(
            project=project, user=UserFactory(username=f"{prefix}{i}"), role=Membership.Role.RATER
        ).user
        for i in range(count)
    ]


def score_pairs(pairs: list[Pair], seed: int, unscored: float = 0.25) -> None:
    """Give the pairs a published model's uncertainty, as pool scoring would: random values with
    ties (one decimal), and a share `unscored` left as no version scored them."""
    rng = random.Random(seed)
    for pair in pairs:
        pair.model_uncertainty = None if rng.random() < unscored else round(rng.random(), 1)
    Pair.objects.bulk_update(pairs, ["model_uncertainty"])
