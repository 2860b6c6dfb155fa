"""The rater page, /p/<slug>/rate/: one leased pair at a time, judged, skipped, flagged or taken
back.

Every action renders the pair card (`rate.html#pair-card`) for htmx, so the next pair swaps in
without a reload; without JavaScript the same forms post normally, get a redirect after a
successful post, and the full page after a refused one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from annotation.http import HtmxHttpRequest, signed_in_user
from annotation.models import Assignment, Flag, Project
from annotation.selectors.access import ProjectAccess, project_access
from annotation.selectors.rating import (
    assignment_live_for,
    pair_shown,
    rater_progress,
)
from annotation.services.flags import assignment_flag
from annotation.services.rating import (
    UNDO_WINDOW,
    AlreadyJudged,
    LeaseLost,
    LeaseNotHeld,
    RatingError,
    Submission,
    allowed_choices,
    assignment_next,
    assignment_skip,
    judgment_record,
    judgment_undo,
)

# Short labels keep the whole choice bar on one line at laptop widths; the legends say the rest.
_CHOICES = {
    "left": ("Left better", "1"),
    "right": ("Right better", "2"),
    "tie": ("Tie", "3"),
    "both_bad": ("Both bad", "4"),
}
_STRENGTHS = {1: ("Slightly", "q"), 2: ("Clearly", "w"), 3: ("Much", "e")}
_MAX_ACTIVE_MS = 24 * 3600 * 1000  # a browser reporting more than a day is not measuring


@dataclass(frozen=True, kw_only=True)
class Option:
    value: str
    label: str
    key: str
    checked: bool


@dataclass(frozen=True, kw_only=True)
class CriterionField:
    field: str  # the form field: criterion-<index>, since names are free text
    name: str
    options: list[Option]


def _options(project: Project, picked: str) -> list[Option]:
    return [
        Option(value=v, label=_CHOICES[v][0], key=_CHOICES[v][1], checked=v == picked)
        for v in allowed_choices(project)
    ]


def _form(project: Project, values: QueryDict | None) -> dict[str, Any]:
    """The choice controls of the project's scheme, re-checked from a refused submission."""
    values = values or QueryDict()
    return {
        "choices": _options(project, values.get("choice", "")),
        "strengths": [
            Option(value=str(n), label=label, key=key, checked=values.get("strength") == str(n))
            for n, (label, key) in _STRENGTHS.items()
        ]
        if project.use_strength
        else [],
        "criteria": [
            CriterionField(
                field=f"criterion-{index}",
                name=name,
                options=[
                    Option(value=o.value, label=o.label, key="", checked=o.checked)
                    for o in _options(project, values.get(f"criterion-{index}", ""))
                ],
            )
            for index, name in enumerate(project.criteria)
        ],
        "rationale": values.get("rationale", ""),
        "rationale_mode": project.rationale,
    }


def _render(
    request: HtmxHttpRequest,
    access: ProjectAccess,
    *,
    assignment: Assignment | None = None,
    notice: str = "",
    error: str = "",
    error_field: str | None = None,
    values: QueryDict | None = None,
    status: int = 200,
) -> HttpResponse:
    project = access.project
    user = signed_in_user(request)
    context = {
        "access": access,
        "project": project,
        "paused": access.is_paused,
        "shown": pair_shown(assignment=assignment) if assignment is not None else None,
        "progress": rater_progress(project=project, rater=user),
        "form": _form(project, values),
        "notice": notice,
        "error": error,
        "error_field": error_field,  # marks the control at fault (aria-invalid) and focuses it
        "undo_minutes": int(UNDO_WINDOW.total_seconds() // 60),
        "flag_reasons": Flag.Reason.choices,
    }
    template = "annotation/rate.html"
    if request.htmx:
        template += "#pair-card"
    return render(request, template, context, status=status)


def _next(request: HtmxHttpRequest, access: ProjectAccess, **kwargs: Any) -> HttpResponse:
    """The card with the rater's next pair (or the end state)."""
    assignment = assignment_next(project=access.project, rater=signed_in_user(request))
    return _render(request, access, assignment=assignment, **kwargs)


def _done(
    request: HtmxHttpRequest,
    access: ProjectAccess,
    notice: str,
    *,
    assignment: Assignment | None = None,
) -> HttpResponse:
    """After a successful post: for htmx the card with `assignment` or else the next pair; without
    htmx a redirect (post/redirect/get), where the newest lease is shown, an undone one included."""
    if not request.htmx:
        messages.success(request, notice)
        return redirect("annotation:rate", slug=access.project.slug)
    if assignment is None:
        return _next(request, access, notice=notice)
    return _render(request, access, assignment=assignment, notice=notice)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _submission(post: QueryDict, project: Project) -> Submission:
    """The form as the engine's Submission; the engine checks it against the project."""
    choice = post.get("choice", "")
    if not choice:
        raise RatingError(
            "Choose which response is better (keys 1 to 4) before submitting.", field="choice"
        )
    decisive = choice in ("left", "right")
    # A radio cannot be unchecked without JavaScript: a strength left over from an earlier
    # pick of left/right is dropped for a tie or both bad instead of refusing the judgment.
    strength = _int(post.get("strength")) if decisive and project.use_strength else None
    criteria: dict[str, str] = {}
    for index, name in enumerate(project.criteria):
        value = post.get(f"criterion-{index}", "")
        if value:
            criteria[str(name)] = str(value)
    active_ms = _int(post.get("active_ms"))
    if active_ms is not None and not 0 <= active_ms <= _MAX_ACTIVE_MS:
        active_ms = None
    return Submission(
        choice=choice,
        strength=strength,
        criteria=criteria or None,
        rationale=post.get("rationale", "").strip(),
        active_ms=active_ms,
    )


@login_required
@require_http_methods(["GET", "POST"])
def rate(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug)
    user = signed_in_user(request)
    if access.is_paused:
        return _render(request, access)
    if request.method == "GET":
        # A GET leases a pair (or returns the one already held): the API's GET next/ does too.
        return _next(request, access)

    assignment_id = _int(request.POST.get("assignment")) or 0
    try:
        submission = _submission(request.POST, access.project)
        judgment_record(
            rater=user, assignment_id=assignment_id, submission=submission, project=access.project
        )
    except AlreadyJudged:
        # A retry after a lost response, re-sent with a longer active time: the first answer
        # stands, so move on rather than show an error about an answer the rater did give.
        return _done(request, access, "You had already judged this pair; your answer is kept.")
    except (LeaseNotHeld, LeaseLost) as error:
        return _next(request, access, error=f"{error} Here is your next pair.")
    except RatingError as error:
        assignment = assignment_live_for(
            project=access.project, rater=user, assignment_id=assignment_id
        )
        if assignment is None:  # the lease ran out meanwhile
            return _next(request, access, error=str(error))
        return _render(
            request,
            access,
            assignment=assignment,
            error=str(error),
            error_field=error.field,
            values=request.POST,
            status=422,
        )
    return _done(request, access, "Saved.")


@login_required
@require_POST
def rate_skip(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug)
    if access.is_paused:
        return _render(request, access)
    try:
        assignment_skip(
            rater=signed_in_user(request),
            assignment_id=_int(request.POST.get("assignment")) or 0,
            project=access.project,
        )
    except LeaseNotHeld as error:
        return _next(request, access, error=f"Could not skip: {error}")
    return _done(request, access, "Skipped. The pair went back to the pool for other raters.")


@login_required
@require_POST
def rate_flag(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug)
    if access.is_paused:
        return _render(request, access)
    user = signed_in_user(request)
    assignment_id = _int(request.POST.get("assignment")) or 0
    try:
        assignment_flag(
            project=access.project,
            assignment_id=assignment_id,
            rater=user,
            reason=request.POST.get("reason", ""),
            note=request.POST.get("note", "").strip(),
        )
    except LeaseNotHeld as error:
        return _next(request, access, error=f"Could not report the pair: {error}")
    except RatingError as error:
        assignment = assignment_live_for(
            project=access.project, rater=user, assignment_id=assignment_id
        )
        message = f"Could not report the pair: {error}"
        if error.field == "reason":
            message = "Could not report the pair: choose what is wrong with it."
        if assignment is None:  # the lease ran out meanwhile
            return _next(request, access, error=message)
        return _render(request, access, assignment=assignment, error=message, status=422)
    return _done(request, access, "Thank you for the report. The pair went to the project's lead.")


@login_required
@require_POST
def rate_undo(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug)
    if access.is_paused:
        return _render(request, access)
    assignment = judgment_undo(project=access.project, rater=signed_in_user(request))
    if assignment is None:
        minutes = int(UNDO_WINDOW.total_seconds() // 60)
        return _next(
            request,
            access,
            error=f"Nothing to undo: only your last judgment of the past {minutes} minutes "
            "can be taken back.",
            status=409,
        )
    return _done(
        request,
        access,
        "Your last judgment was taken back. Judge this pair again.",
        assignment=assignment,
    )
