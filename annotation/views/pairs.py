"""The data browser for leads and admins: pairs with filters, one pair with its judgments, and
a lead's adjudication of it (annotation.services.adjudication)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotation.models import Adjudication, Batch, Membership, Pair, Project
from annotation.selectors.access import project_access
from annotation.selectors.pairs import (
    STATUSES,
    PairFilter,
    as_status,
    model_names,
    next_disputed,
    pair_detail,
    pair_page,
    pair_status,
)
from annotation.services.adjudication import (
    AdjudicationError,
    adjudication_undo,
    pair_adjudicate,
)
from annotation.services.flags import NotFlagged, flags_clear

LEAD = Membership.Role.LEAD
DECISION_KEYS = {"a": "1", "b": "2", "tie": "3", "both_bad": "4", "exclude": "x"}


class PairFilterForm(forms.Form):
    """The browser's filters; an invalid value is reported and no filter applied."""

    batch = forms.ModelChoiceField(queryset=Batch.objects.none(), required=False)
    status = forms.ChoiceField(required=False)
    model = forms.ChoiceField(required=False)
    rater = forms.ModelChoiceField(queryset=get_user_model().objects.none(), required=False)
    q = forms.CharField(required=False, max_length=200, label="Text")
    after = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        batch = self.fields["batch"]
        assert isinstance(batch, forms.ModelChoiceField)
        batch.queryset = Batch.objects.filter(project=project).order_by("-created_at")
        batch.empty_label = "All batches"
        rater = self.fields["rater"]
        assert isinstance(rater, forms.ModelChoiceField)
        rater.queryset = (
            get_user_model().objects.filter(memberships__project=project).order_by("username")
        )
        rater.empty_label = "All raters"
        status = self.fields["status"]
        assert isinstance(status, forms.ChoiceField)
        status.choices = [("", "Any status")] + [(s, s.capitalize()) for s in STATUSES]
        model = self.fields["model"]
        assert isinstance(model, forms.ChoiceField)
        model.choices = [("", "Any model")] + [(m, m) for m in model_names(project=project)]

    def filters(self) -> PairFilter:
        if not self.is_valid():
            return PairFilter()
        data = self.cleaned_data
        return PairFilter(
            batch_id=data["batch"].id if data["batch"] else None,
            status=as_status(data["status"]) if data["status"] else None,
            model=data["model"],
            rater_id=data["rater"].id if data["rater"] else None,
            text=data["q"].strip(),
        )

    def after_id(self) -> int | None:
        return self.cleaned_data.get("after") if self.is_valid() else None


@login_required
@require_GET
def pair_browser(request: HttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    form = PairFilterForm(request.GET or None, project=access.project)
    page = pair_page(project=access.project, filters=form.filters(), after=form.after_id())
    next_url = None
    if page.next_after is not None:
        query = {k: v for k, v in request.GET.items() if k != "after" and v}
        next_url = f"?{urlencode({**query, 'after': page.next_after})}"
    context = {
        "access": access,
        "project": access.project,
        "form": form,
        "rows": [(pair, pair_status(pair)) for pair in page.pairs],
        "next_url": next_url,
        "filtered": bool(request.GET),
    }
    return render(request, "annotation/pairs.html", context)


@login_required
@require_GET
def pair_page_view(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    detail = pair_detail(project=access.project, pair_id=pair_id)
    if detail is None:
        raise Http404("No such pair in this project.")
    context = {
        "access": access,
        "project": access.project,
        "detail": detail,
        "pair": detail.pair,
        "decisions": [
            (value, label, DECISION_KEYS[value]) for value, label in Adjudication.Decision.choices
        ],
    }
    return render(request, "annotation/pair_detail.html", context)


def _after_decision(project: Project, pair_id: int) -> HttpResponse:
    """On to the next pair of the disputed queue, or back to the queue when it is empty."""
    following = next_disputed(project=project, after=pair_id)
    if following is not None:
        return redirect("annotation:pair-detail", slug=project.slug, pair_id=following)
    queue = reverse("annotation:pairs", args=[project.slug])
    return redirect(f"{queue}?{urlencode({'status': 'disputed'})}")


@login_required
@require_POST
def pair_adjudicate_view(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    try:
        adjudication = pair_adjudicate(
            project=access.project,
            pair_id=pair_id,
            decided_by=request.user,  # type: ignore[arg-type]
            decision=request.POST.get("decision", ""),
            note=request.POST.get("note", ""),
        )
    except AdjudicationError as error:
        messages.error(request, str(error))
        return redirect("annotation:pair-detail", slug=slug, pair_id=pair_id)
    except Pair.DoesNotExist:
        raise Http404("No such pair in this project.") from None
    messages.success(
        request, f"Pair {pair_id}: {adjudication.get_decision_display().lower()} (adjudicated)."
    )
    if request.POST.get("then") == "queue":
        return _after_decision(access.project, pair_id)
    return redirect("annotation:pair-detail", slug=slug, pair_id=pair_id)


@login_required
@require_POST
def pair_flags_clear_view(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    try:
        cleared = flags_clear(
            project=access.project,
            pair_id=pair_id,
            cleared_by=request.user,  # type: ignore[arg-type]
        )
    except NotFlagged as error:
        messages.error(request, str(error))
    except Pair.DoesNotExist:
        raise Http404("No such pair in this project.") from None
    else:
        flags = f"{cleared} flag{pluralize(cleared)}"
        messages.success(request, f"Pair {pair_id}: {flags} cleared; it is served again.")
    return redirect("annotation:pair-detail", slug=slug, pair_id=pair_id)


@login_required
@require_POST
def pair_adjudication_undo_view(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    try:
        adjudication_undo(
            project=access.project,
            pair_id=pair_id,
            undone_by=request.user,  # type: ignore[arg-type]
        )
    except AdjudicationError as error:
        messages.error(request, str(error))
    except Pair.DoesNotExist:
        raise Http404("No such pair in this project.") from None
    else:
        messages.success(request, f"Pair {pair_id}: decision undone; its votes decide it again.")
    return redirect("annotation:pair-detail", slug=slug, pair_id=pair_id)
