"""The agreement dashboard for leads and admins: stored reports only, so it opens instantly."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from annotation import tasks
from annotation.http import HtmxHttpRequest
from annotation.leaderboard.bias import FAR, MIN_DIFFERENCE, MIN_JUDGMENTS
from annotation.models import Batch, Membership, Project
from annotation.selectors.access import project_access
from annotation.selectors.agreement import (
    AgreementScope,
    agreement_csv_rows,
    agreement_dashboard,
    agreement_report_latest,
    agreement_report_ready,
)
from annotation.services.agreement import membership_unpause
from annotation.services.leaderboard import bias_lens_compute
from config.celery import enqueue_on_commit

LEAD = Membership.Role.LEAD


class ScopeForm(forms.Form):
    """The dashboard's filters; an invalid value is reported and the whole project shown."""

    batch = forms.ModelChoiceField(queryset=Batch.objects.none(), required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        batch_field = self.fields["batch"]
        assert isinstance(batch_field, forms.ModelChoiceField)
        batch_field.queryset = Batch.objects.filter(project=project).order_by("-created_at")
        batch_field.empty_label = "All batches"

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            raise forms.ValidationError("The start date is after the end date.")
        return cleaned

    def scope(self) -> AgreementScope:
        if not self.is_valid():
            return AgreementScope()
        batch: Batch | None = self.cleaned_data["batch"]
        since: date | None = self.cleaned_data["since"]
        until: date | None = self.cleaned_data["until"]
        return AgreementScope(batch_id=batch.id if batch else None, since=since, until=until)


def _scope_query(scope: AgreementScope) -> str:
    """The filters as a query string (the form's field names are the stored scope's keys)."""
    return urlencode(scope.as_json())


REFRESH_WAIT = timedelta(minutes=2)  # polling for a fresh report stops after this


@dataclass(frozen=True)
class RefreshStatus:
    """Where a "refresh now" stands, for the status line that polls until the report exists."""

    ready: bool
    given_up: bool  # no report after REFRESH_WAIT: a worker is probably not running
    query: str  # the scope and `requested`, for the poll's URL

    @property
    def waiting(self) -> bool:
        return not self.ready and not self.given_up


def _requested(request: HttpRequest) -> datetime | None:
    """When the refresh being followed was asked (`?requested=` in ms since the epoch)."""
    value = request.GET.get("requested", "")
    if not value.isdigit() or len(value) > 15:
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def _refresh_status(
    project: Project, scope: AgreementScope, requested: datetime | None
) -> RefreshStatus | None:
    if requested is None:
        return None
    ready = agreement_report_ready(project=project, scope=scope, since=requested)
    query = urlencode({**scope.as_json(), "requested": round(requested.timestamp() * 1000)})
    return RefreshStatus(
        ready=ready,
        given_up=not ready and timezone.now() - requested > REFRESH_WAIT,
        query=query,
    )


@login_required
@require_GET
def agreement(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    form = ScopeForm(request.GET or None, project=access.project)
    scope = form.scope()
    dashboard = agreement_dashboard(
        project=access.project, scope=scope, sort=request.GET.get("sort")
    )
    template = "annotation/agreement.html"
    if request.htmx and request.htmx.target == "raters":
        template += "#raters"
    return render(
        request,
        template,
        {
            "access": access,
            "project": access.project,
            "form": form,
            "dashboard": dashboard,
            "scope_query": _scope_query(scope),
            "refresh": _refresh_status(access.project, scope, _requested(request)),
        },
    )


@login_required
@require_GET
def agreement_csv(request: HttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    scope = ScopeForm(request.GET or None, project=access.project).scope()
    report = agreement_report_latest(project=access.project, scope=scope)
    if report is None:
        raise Http404("No agreement report for these filters yet.")
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    filename = f"{access.project.slug}-raters-{report.created_at:%Y%m%d-%H%M}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    csv.writer(response).writerows(agreement_csv_rows(report=report, sort=request.GET.get("sort")))
    return response


@login_required
@require_POST
def agreement_refresh(request: HttpRequest, slug: str) -> HttpResponse:
    """Compute a fresh report in a worker, then show the dashboard with a status line that polls
    `agreement_refresh_status` until the report exists."""
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    scope = ScopeForm(request.POST or None, project=access.project).scope()
    enqueue_on_commit(tasks.agreement_report_refresh, access.project.id, scope.as_json() or None)
    requested = round(timezone.now().timestamp() * 1000)
    page = reverse("annotation:agreement", args=[slug])
    return redirect(f"{page}?{urlencode({**scope.as_json(), 'requested': requested})}")


@login_required
@require_GET
def agreement_refresh_status(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The status line's poll (htmx): 204 while the report is computed, then `HX-Redirect` to
    the dashboard; a plain GET goes to the dashboard."""
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    page = reverse("annotation:agreement", args=[slug])
    scope = ScopeForm(request.GET or None, project=access.project).scope()
    status = _refresh_status(access.project, scope, _requested(request))
    if not request.htmx or status is None:
        return redirect(f"{page}?{request.GET.urlencode()}" if request.GET else page)
    if status.waiting:
        # No swap (htmx keeps polling): replacing the live region with the same words every 2 s
        # would have screen readers announce them again and again.
        return HttpResponse(status=204)
    response = render(
        request,
        "annotation/agreement.html#refresh-status",
        {"project": access.project, "refresh": status},
    )
    if status.ready:
        messages.success(request, "The report below is fresh.")
        query = _scope_query(scope)
        response["HX-Redirect"] = f"{page}?{query}" if query else page
    return response


@login_required
@require_POST
def rater_unpause(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    try:
        member = membership_unpause(project=access.project, user_id=user_id)
    except Membership.DoesNotExist:
        raise Http404("This person is not a member of the project.") from None
    messages.success(request, f"{member.user.get_username()} can rate again.")
    return redirect("annotation:agreement", slug=slug)


@login_required
@require_GET
def bias_lens(request: HtmxHttpRequest, slug: str) -> HttpResponse:
    """The length and Markdown lean of the raters, loaded into the agreement page by htmx (it
    reads every decisive judgment, so the page itself stays quick)."""
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    scope = ScopeForm(request.GET or None, project=access.project).scope()
    template = "annotation/bias_lens.html" + ("#lens" if request.htmx else "")
    context = {
        "access": access,
        "project": access.project,
        "lens": bias_lens_compute(project=access.project, scope=scope),
        "min_difference_percent": round(100 * MIN_DIFFERENCE),
        "far_points": round(100 * FAR),
        "min_judgments": MIN_JUDGMENTS,
    }
    return render(request, template, context)
