"""Writes for agreement: stored reports, the pauses they trigger, and adaptive overlap.

Reports are computed from the database (annotation.selectors.agreement) by the pure metrics
(annotation.agreement.metrics) and stored whole, so the dashboard and the API only read JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from annotation.agreement.metrics import agreement_summary
from annotation.agreement.reliability import attach_reliability
from annotation.models import AgreementReport, Judgment, Membership, Pair, Project
from annotation.selectors.agreement import (
    AgreementScope,
    agreement_report_is_current,
    agreement_report_latest,
    judgment_arrays_load,
)

# A pair "has a majority" when its most frequent choice holds at least two thirds of its
# judgments: 2 of 3 is a majority, 2 of 4 and 3 of 5 are not. Kept as integers (2/3) so that
# 2 of 3 compares exactly.
MAJORITY = (2, 3)
MIN_GOLD_JUDGMENTS = 5  # fewer gold answers say too little to flag anyone on gold accuracy
KEEP_FULL_REPORTS = 20  # per scope; older reports keep only their headline numbers (the trend)
# The rater flags, in display order; `spammer` and `inverted` come from Dawid-Skene
# (annotation.agreement.reliability). Any flag counts for pausing.
RATER_FLAGS = ("too_fast", "low_gold_accuracy", "low_agreement", "spammer", "inverted")
_HEAVY_SECTIONS = ("raters", "rater_pairs", "pair_agreement")


def _annotate_raters(
    *, project: Project, raters: list[dict[str, Any]], rater_ids: list[int]
) -> None:
    """Name each rater row and decide its flags with the project's quality rules."""
    names = dict(get_user_model().objects.filter(id__in=rater_ids).values_list("id", "username"))
    for row in raters:
        user_id = rater_ids[row["rater"]]
        row["user_id"] = user_id
        row["username"] = names.get(user_id, f"user {user_id}")
        row["low_gold_accuracy"] = bool(
            row["low_gold_accuracy"] and row["gold_judgments"] >= MIN_GOLD_JUDGMENTS
        )
        flags = [name for name in RATER_FLAGS if row.get(name)]
        # Too few judgments say nothing reliable about a rater: never flag on them.
        row["flags"] = flags if row["judgments"] >= project.quality_min_judgments else []


def _auto_pause(*, project: Project, raters: list[dict[str, Any]]) -> list[str]:
    """Pause the flagged raters who are not paused yet; returns their usernames.

    A rater a lead unpaused is paused again only on fresh evidence: at least
    `quality_min_judgments` judgments made since the unpause.
    """
    flagged = {row["user_id"]: row["username"] for row in raters if row["flags"]}
    if not flagged:
        return []
    now = timezone.now()
    paused = []
    members = Membership.objects.select_for_update().filter(
        project=project, role=Membership.Role.RATER, paused_at__isnull=True, user_id__in=flagged
    )
    for member in members:
        if member.unpaused_at is not None:
            fresh = Judgment.objects.filter(
                pair__project=project, rater_id=member.user_id, created_at__gt=member.unpaused_at
            ).count()
            if fresh < project.quality_min_judgments:
                continue
        member.paused_at = now
        member.save(update_fields=["paused_at"])
        paused.append(flagged[member.user_id])
    return sorted(paused)


def _thin_old_reports(*, project: Project, scope: AgreementScope) -> None:
    """Keep the per-rater sections of the newest reports only; the trend needs just headlines.

    A report of 200 raters weighs about a megabyte, and beat makes one every few minutes.
    """
    old = (
        AgreementReport.objects.filter(
            project=project, scope=scope.as_json(), metrics__has_key="raters"
        )
        .order_by("-created_at", "-id")
        .values_list("id", flat=True)[KEEP_FULL_REPORTS:]
    )
    for report in AgreementReport.objects.filter(id__in=list(old)).only("id", "metrics"):
        for section in _HEAVY_SECTIONS:
            report.metrics.pop(section, None)
        report.save(update_fields=["metrics"])


@dataclass(frozen=True, kw_only=True)
class AgreementMetrics:
    """A freshly computed report, not stored yet."""

    metrics: dict[str, Any]
    judgments: int
    last_judgment_id: int | None


def agreement_metrics_compute(
    *, project: Project, scope: AgreementScope | None = None
) -> AgreementMetrics:
    """Read the scope's judgments and compute the report's JSON, with flags; stores nothing."""
    loaded = judgment_arrays_load(project=project, scope=scope or AgreementScope())
    metrics = agreement_summary(
        loaded.arrays,
        too_fast_ms=project.too_fast_ms,
        min_gold_accuracy=project.min_gold_accuracy,
        min_agreement=project.min_agreement,
    )
    attach_reliability(metrics["raters"], loaded.arrays)
    _annotate_raters(project=project, raters=metrics["raters"], rater_ids=loaded.rater_ids.tolist())
    metrics["thresholds"] = {
        "too_fast_ms": project.too_fast_ms,
        "min_gold_accuracy": project.min_gold_accuracy,
        "min_agreement": project.min_agreement,
        "min_judgments": project.quality_min_judgments,
        "min_gold_judgments": MIN_GOLD_JUDGMENTS,
        "auto_pause": project.auto_pause,
    }
    return AgreementMetrics(
        metrics=metrics, judgments=len(loaded.arrays), last_judgment_id=loaded.last_judgment_id
    )


def agreement_report_compute(
    *, project: Project, scope: AgreementScope | None = None
) -> AgreementReport:
    """The agreement report of `project` in `scope` (whole project if None) as of now, unsaved:
    it writes nothing and pauses nobody (`auto_paused` is empty), so a GET may ask for it."""
    scope = scope or AgreementScope()
    computed = agreement_metrics_compute(project=project, scope=scope)
    return AgreementReport(
        project=project,
        created_at=timezone.now(),
        judgments=computed.judgments,
        last_judgment_id=computed.last_judgment_id,
        scope=scope.as_json(),
        metrics={**computed.metrics, "auto_paused": []},
    )


def agreement_report_create(
    *, project: Project, scope: AgreementScope | None = None
) -> AgreementReport:
    """Compute and store the agreement report of `project` in `scope` (whole project if None).

    A whole-project report of a project with `auto_pause` also pauses the raters it flags.
    """
    scope = scope or AgreementScope()
    report = agreement_report_compute(project=project, scope=scope)
    with transaction.atomic():
        if project.auto_pause and scope.is_whole_project:
            report.metrics["auto_paused"] = _auto_pause(
                project=project, raters=report.metrics["raters"]
            )
        report.save()
        _thin_old_reports(project=project, scope=scope)
    return report


def agreement_report_refresh(
    *, project_id: int, scope: AgreementScope | None = None
) -> AgreementReport | None:
    """A current report of the scope: the stored one if no judgment changed since, else a new one.

    Idempotent, so beat, a "refresh now" click and a redelivered task may all call it. The project
    row is held (FOR NO KEY UPDATE, which imports inserting pairs do not wait on) while computing,
    and a refresh that finds it held leaves the work to the one holding it.
    """
    scope = scope or AgreementScope()
    with transaction.atomic():
        project = (
            Project.objects.select_for_update(skip_locked=True, no_key=True)
            .filter(id=project_id, archived_at__isnull=True)
            .first()
        )
        if project is None:
            return None  # archived, deleted, or being refreshed right now
        latest = agreement_report_latest(project=project, scope=scope)
        if latest is not None and agreement_report_is_current(report=latest, project=project):
            return latest
        return agreement_report_create(project=project, scope=scope)


def membership_unpause(*, project: Project, user_id: int) -> Membership:
    """Lift a rater's pause. Raises Membership.DoesNotExist for someone not in the project."""
    with transaction.atomic():
        member = Membership.objects.select_for_update().get(project=project, user_id=user_id)
        if member.paused_at is not None:
            member.paused_at = None
            member.unpaused_at = timezone.now()
            member.save(update_fields=["paused_at", "unpaused_at"])
    return member


def pair_overlap_extend(*, pair: Pair, project: Project) -> bool:
    """Adaptive overlap: ask one more rater for a pair whose raters so far have no majority.

    Call with the pair's row lock held and its new judgment saved (judgment_record does). Raises
    `judgments_needed` to one more than the judgments the pair has, never above the project's
    `max_raters_per_pair`, and only once the pair has all the judgments it needed; gold pairs are
    left alone (every rater is scored on them anyway). Returns whether the pair now needs another
    judgment.
    """
    if pair.gold_choice:
        return False
    counts = list(
        Judgment.objects.filter(pair_id=pair.id)
        .values("choice")
        .annotate(n=Count("id"))
        .values_list("n", flat=True)
    )
    total = sum(counts)
    share, out_of = MAJORITY
    if not counts or max(counts) * out_of >= total * share:
        return False
    wanted = min(total + 1, project.max_raters_per_pair)
    # The row conditions read the locked row itself, so a `pair` loaded before the lock cannot
    # make this act on a stale judgments_needed.
    extended = Pair.objects.filter(
        id=pair.id, judgments_needed__lte=total, judgments_needed__lt=wanted
    ).update(judgments_needed=wanted)
    if extended:
        pair.judgments_needed = wanted
    return bool(extended)
