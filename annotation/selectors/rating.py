"""Reads for the rater page: the pair as it is shown, and the rater's progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import Count, Exists, Max, OuterRef, Q
from django.utils import timezone

from annotation.models import Assignment, Judgment, Pair, Project, Response, shown_sides
from annotation.services.rating import UNDO_WINDOW


@dataclass(frozen=True, kw_only=True)
class RaterProgress:
    judged_today: int
    judged_in_project: int
    left_for_me: int  # open pairs this rater may still be handed, the one on screen included
    can_undo: bool  # the last judgment is still inside the undo window


def rater_progress(*, project: Project, rater: User) -> RaterProgress:
    """Two queries, whatever the size of the project."""
    now = timezone.now()
    midnight = timezone.make_aware(datetime.combine(timezone.localdate(now), time.min))
    mine = Judgment.objects.filter(pair__project=project, rater=rater).aggregate(
        total=Count("id"),
        today=Count("id", filter=Q(created_at__gte=midnight)),
        last=Max("created_at"),
    )
    # A pair stays "left for me" until I judged or skipped it, or it has all its judgments. Gold
    # pairs, served unannounced, are not counted.
    finished = Assignment.objects.filter(pair=OuterRef("pk"), rater=rater).exclude(
        status=Assignment.Status.ACTIVE
    )
    left = Pair.objects.open().filter(project=project).filter(~Exists(finished)).count()
    return RaterProgress(
        judged_today=mine["today"],
        judged_in_project=mine["total"],
        left_for_me=left,
        can_undo=mine["last"] is not None and mine["last"] > now - UNDO_WINDOW,
    )


def assignment_live_for(*, project: Project, rater: User, assignment_id: int) -> Assignment | None:
    """One of the rater's live leases in this project by id: the pair of a refused submission."""
    return (
        Assignment.objects.live(timezone.now())
        .filter(id=assignment_id, rater=rater, pair__project=project)
        .select_related("pair__prompt", "pair__response_a", "pair__response_b")
        .first()
    )


@dataclass(frozen=True, kw_only=True)
class ShownPair:
    """A leased pair in screen terms: which response is on which side comes from the lease."""

    assignment: Assignment
    left: Response
    right: Response

    @property
    def prompt_messages(self) -> list[dict[str, str]] | None:
        """The chat transcript as (role, content) rows, each formatted on its own; None for a
        plain-text prompt, and for a transcript too long to format (settings.
        MARKDOWN_RENDER_MAX_CHARS, all messages together), which shows as one `prompt_text`."""
        messages = self.assignment.pair.prompt.messages
        if not isinstance(messages, list):
            return None
        rows = [
            {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
            for m in messages
            if isinstance(m, dict)
        ]
        if sum(len(row["content"]) for row in rows) > settings.MARKDOWN_RENDER_MAX_CHARS:
            return None
        return rows

    @property
    def prompt_text(self) -> str:
        """The prompt as one text: the plain-text prompt, or a transcript as "role: content"."""
        return self.assignment.pair.prompt.display_text


def pair_shown(*, assignment: Assignment) -> ShownPair:
    """Left is response B when the lease is swapped. No query: the lease comes with its pair."""
    left, right = shown_sides(assignment.pair, assignment.swapped)
    return ShownPair(assignment=assignment, left=left, right=right)
