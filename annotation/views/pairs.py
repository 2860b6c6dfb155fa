"""The data browser for leads and admins: pairs with filters, one pair with its judgments, and
a lead's adjudication of it (annotation.services.adjudication)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from annotation.models import Adjudication, Batch, Membership, Pair, Project
from annotation.selectors.access import project_access
from annotation.selectors.pair_order import MODEL_DISAGREEMENT, ORDERINGS, Ordering, as_ordering
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
    agreement_below = forms.FloatField(
        required=False,
        min_value=0,
        max_value=1,
        label="Agreement below",
        widget=forms.NumberInput(attrs={"step": "0.01", "placeholder": "e.g. 0.67"}),
    )
    gold_failures = forms.BooleanField(required=False, label="Gold failures")
    disagrees_with_model = forms.BooleanField(
        required=False,
        label="Model disagrees",
        help_text=f"The model gives the side the raters did not choose at least "
        f"{MODEL_DISAGREEMENT:.0%}.",
    )
    ordering = forms.ChoiceField(required=False, choices=list(ORDERINGS.items()), label="Sort")
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
            agreement_below=data["agreement_below"],
            gold_failures=data["gold_failures"],
            disagrees_with_model=data["disagrees_with_model"],
        )

    def order(self) -> Ordering:
        chosen = self.cleaned_data.get("ordering") if self.is_valid() else None
        return as_ordering(chosen) if chosen else "id"

    def after_id(self) -> int | None:
        return self.cleaned_data.get("after") if self.is_valid() else None


@login_required
@require_GET
def pair_browser(request: HttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    form = PairFilterForm(request.GET or None, project=access.project)
    page = pair_page(
        project=access.project,
        filters=form.filters(),
        ordering=form.order(),
        after=form.after_id(),
    )
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
        "order_label": ORDERINGS[form.order()],
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


def _lead_action(
    request: HttpRequest,
    slug: str,
    pair_id: int,
    act: Callable[[Project, User], str],
    *,
    refused: type[Exception],
    onward: Callable[[Project], HttpResponse] | None = None,
) -> HttpResponse:
    """A lead's action on a pair, the part the actions share: `act(project, lead)` calls the
    service and returns the message to show; a `refused` error is shown instead; a pair of another
    project is a 404. Then back to the pair's page, or to `onward(project)` after a success."""
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    try:
        done = act(access.project, cast(User, request.user))  # login_required: not anonymous
    except Pair.DoesNotExist:
        raise Http404("No such pair in this project.") from None
    except refused as error:
        messages.error(request, str(error))
    else:
        messages.success(request, done)
        if onward is not None:
            return onward(access.project)
    return redirect("annotation:pair-detail", slug=slug, pair_id=pair_id)


@login_required
@require_POST
def pair_adjudicate_view(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    def act(project: Project, lead: User) -> str:
        decision = pair_adjudicate(
            project=project,
            pair_id=pair_id,
            decided_by=lead,
            decision=request.POST.get("decision", ""),
            note=request.POST.get("note", ""),
        )
        return f"Pair {pair_id}: {decision.get_decision_display().lower()} (adjudicated)."

    queue = request.POST.get("then") == "queue"
    onward = (lambda project: _after_decision(project, pair_id)) if queue else None
    return _lead_action(request, slug, pair_id, act, refused=AdjudicationError, onward=onward)


@login_required
@require_POST
def pair_flags_clear_view(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    def act(project: Project, lead: User) -> str:
        cleared = flags_clear(project=project, pair_id=pair_id, cleared_by=lead)
        return f"Pair {pair_id}: {cleared} flag{pluralize(cleared)} cleared; it is served again."

    return _lead_action(request, slug, pair_id, act, refused=NotFlagged)


@login_required
@require_POST
def pair_adjudication_undo_view(request: HttpRequest, slug: str, pair_id: int) -> HttpResponse:
    def act(project: Project, lead: User) -> str:
        adjudication_undo(project=project, pair_id=pair_id, undone_by=lead)
        return f"Pair {pair_id}: decision undone; its votes decide it again."

    return _lead_action(request, slug, pair_id, act, refused=AdjudicationError)
