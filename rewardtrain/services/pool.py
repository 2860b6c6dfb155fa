"""Pool scoring: the published version's p(a wins) and disagreement for every open pair.

After a publication, and after each import, `rewardtrain.tasks.pool_score` (training queue) runs
`pool_score`: it loads the published version once, then takes the project's open pairs that
this version has not scored yet (`model_version` differs), `POOL_BATCH_PAIRS` at a time in id
order, scores them and writes the three fields in one transaction per batch. Nothing else is
remembered, so the work is idempotent and resumable: a worker killed mid-way loses at most the
batch in flight, and the next run (a redelivery, the next import or publication, or the sweep)
starts where the database says. It stops when a lead publishes another version meanwhile; that
publication queues its own run. Memory: one batch of pairs and their features.

A message can still be lost (the broker down when it was sent, or restarted without its queue):
`pool_score_sweep` (beat, every POOL_SWEEP_SECONDS) sends it again for every project whose
published version has open pairs left to score.

torch is imported inside `pool_score` only: the web process imports this module to queue it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from annotation.models import Pair, PairQuerySet
from annotation.task_names import POOL_SCORE
from config.celery import enqueue_on_commit
from rewardtrain.models import ModelVersion

logger = logging.getLogger(__name__)

POOL_BATCH_PAIRS = 256  # pairs per scoring batch and per transaction
MODEL_FIELDS = ["model_p_a", "model_uncertainty", "model_version"]


@dataclass(frozen=True)
class PoolOutcome:
    version: int | None  # the version that scored, None when nothing is published
    scored: int  # pairs scored by this call
    batches: int


def pool_score_enqueue(*, project_id: int) -> None:
    """Queue pool scoring once the current transaction commits (sent by name, as imports do)."""
    enqueue_on_commit(POOL_SCORE, project_id)


def pairs_to_score(*, project_id: int | OuterRef, version: int | OuterRef) -> PairQuerySet:
    """The project's open pairs that `version` has not scored (NULL counts as not scored).
    Either may be an OuterRef, for the sweep's one query over every project."""
    return Pair.objects.open().filter(project_id=project_id).exclude(model_version=version)


def pool_score_sweep() -> list[int]:
    """Queue pool scoring again for every live project whose published version has open pairs
    left to score (their message may have been lost); return those project ids.

    One query finds them (an EXISTS per published version, which stops at the first unscored
    pair), so a tick with nothing pending costs that query alone. A version whose pool scoring
    beat its heartbeat within the last POOL_SWEEP_SECONDS is being scored: it is left alone, so a
    large pool is not sent again every tick while it is scored. The loop sends one message per
    such project: it is bounded by the number of projects with a published version. Sending
    twice is safe: a run that finds nothing left returns after one query, and two runs at once
    score the same pairs with the same result (see `pool_score`).
    """
    unscored = pairs_to_score(project_id=OuterRef("project_id"), version=OuterRef("version"))
    beating = timezone.now() - timedelta(seconds=settings.POOL_SWEEP_SECONDS)
    project_ids = list(
        ModelVersion.objects.filter(
            Exists(unscored),
            state=ModelVersion.State.PUBLISHED,
            project__archived_at__isnull=True,  # nobody is served from an archived project
        )
        .exclude(pool_heartbeat_at__gte=beating)  # a scoring in progress: its message was not lost
        .order_by("project_id")
        .values_list("project_id", flat=True)
    )
    for project_id in project_ids:
        pool_score_enqueue(project_id=project_id)
    if project_ids:
        logger.info("pool scoring sent again for projects %s", project_ids)
    return project_ids


def pool_score(*, project_id: int, batch_pairs: int = POOL_BATCH_PAIRS) -> PoolOutcome:
    """Score every open pair of the project that the published version has not scored yet."""
    from rewardtrain.ensemble import ensemble_load, pair_estimates
    from rewardtrain.model import load_reward_model

    published = ModelVersion.objects.filter(
        project_id=project_id, state=ModelVersion.State.PUBLISHED
    ).first()
    if published is None:
        return PoolOutcome(version=None, scored=0, batches=0)
    if not pairs_to_score(project_id=project_id, version=published.version).exists():
        return PoolOutcome(version=published.version, scored=0, batches=0)
    root = Path(settings.CHECKPOINT_ROOT)
    directory = root / published.path
    reward_model = load_reward_model(
        directory, checkpoint_root=root, expected_sha256=published.file_sha256, device="auto"
    )
    heads = ensemble_load(directory)
    scored = batches = after = 0
    # Keyset by id: each batch starts past the last one, so a pool of N pairs is read once, not
    # rescanned from its first pair N / batch_pairs times. Bounded by the open pairs past `after`.
    while _still_published(published):
        pairs = list(
            pairs_to_score(project_id=project_id, version=published.version)
            .filter(id__gt=after)
            .select_related("prompt", "response_a", "response_b")
            .order_by("id")[:batch_pairs]
        )
        if not pairs:
            break
        after = pairs[-1].id
        estimates = pair_estimates(
            reward_model,
            heads,
            [pair.prompt.messages or pair.prompt.text for pair in pairs],
            [pair.response_a.text for pair in pairs],
            [pair.response_b.text for pair in pairs],
        )
        for pair, estimate in zip(pairs, estimates, strict=True):
            pair.model_p_a = estimate.p_a
            pair.model_uncertainty = estimate.uncertainty
            pair.model_version = published.version
        with transaction.atomic():
            Pair.objects.bulk_update(pairs, MODEL_FIELDS)
        scored += len(pairs)
        batches += 1
    logger.info("pool of project %s: %s pairs scored by v%s", project_id, scored, published.version)
    return PoolOutcome(version=published.version, scored=scored, batches=batches)


def _still_published(version: ModelVersion) -> bool:
    """Whether `version` is still the published one; if so, beat the pool heartbeat (one query)."""
    still = ModelVersion.objects.filter(id=version.id, state=ModelVersion.State.PUBLISHED)
    return bool(still.update(pool_heartbeat_at=timezone.now()))
