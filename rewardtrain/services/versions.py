"""Model versions: the rule that publishes a new version, and publishing or rolling back by hand.

Exactly one version per project is published (a database constraint); every flip happens in one
transaction under the project's row lock, which a finishing training run takes too.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from annotation.models import Project
from rewardtrain.models import ModelVersion
from rewardtrain.services.pool import pool_score_enqueue

logger = logging.getLogger(__name__)


class PublishError(Exception):
    """The version cannot be published; the message says why."""


def promotion_decision(
    *, accuracy: float | None, compared_with: dict[str, Any] | None, min_gain_points: float
) -> tuple[bool, str]:
    """Whether a new version replaces the published one, and the reason in words.

    It must be strictly more accurate on the same held-out pairs, by at least `min_gain_points`
    accuracy points (the project's promote_min_gain). The paired test's p-value is recorded and
    shown, not required: on the few hundred held-out pairs of a young project a real gain rarely
    reaches significance, and a lead can roll back in one click.
    """
    if compared_with is None:
        return True, "first version: nothing was published"
    if "error" in compared_with:
        return True, (
            f"the published v{compared_with['version']} failed to load "
            f"({compared_with['error']}), so it could not serve either"
        )
    old = compared_with["metrics"]["accuracy"]
    if accuracy is None or old is None:
        return False, "no held-out pairs to compare on: publish by hand if it is better"
    gain = (accuracy - old) * 100
    p_value = compared_with["test"]["p_value"]
    summary = (
        f"held-out accuracy {accuracy:.1%} against {old:.1%} for v{compared_with['version']} "
        f"({gain:+.1f} points, paired test p = {p_value:.3g})"
    )
    if gain > 0 and gain >= min_gain_points - 1e-9:
        return True, summary
    needed = f"at least {min_gain_points:g} points" if min_gain_points > 0 else "a gain"
    return False, f"{summary}; the rule needs {needed}"


@transaction.atomic
def model_version_publish(*, version: ModelVersion, user: User | None) -> ModelVersion:
    """Publish `version` (a candidate, or a retired one: a roll-back); the previously published
    version is retired. Publishing the published version changes nothing."""
    Project.objects.select_for_update().get(id=version.project_id)
    version = ModelVersion.objects.select_for_update().get(id=version.id)
    if version.state == ModelVersion.State.PUBLISHED:
        return version
    root = Path(settings.CHECKPOINT_ROOT).resolve()
    directory = (root / version.path).resolve()
    if not directory.is_relative_to(root) or not directory.is_dir():
        raise PublishError(
            f"v{version.version}: its directory {version.path} is missing from the checkpoint "
            "store; it cannot be served"
        )
    ModelVersion.objects.filter(
        project_id=version.project_id, state=ModelVersion.State.PUBLISHED
    ).update(state=ModelVersion.State.RETIRED)
    version.state = ModelVersion.State.PUBLISHED
    version.published_at = timezone.now()
    version.save(update_fields=["state", "published_at"])
    pool_score_enqueue(project_id=version.project_id)
    logger.info("%s published by %s", version, user)
    return version
