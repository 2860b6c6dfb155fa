"""The export page: a form that starts a streamed download by POST (a GET only shows the form,
so a link or a prefetch can never start an export)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpResponseBase, StreamingHttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from annotation.exports.aggregation import TIE_POLICIES
from annotation.exports.labels import AGGREGATIONS, as_aggregation
from annotation.http import HtmxHttpRequest
from annotation.models import Batch, Membership, Project
from annotation.selectors.access import project_access
from annotation.selectors.exports import (
    EXPORT_FORMATS,
    ExportFile,
    ExportOptions,
    export_row_count,
    export_stream,
)

_FORMAT_LABELS = {
    "trl": "TRL preferences (JSONL: prompt, chosen, rejected, margin, p_chosen)",
    "judgments": "Judgments (JSONL, one line per judgment)",
    "csv": "Judgments (CSV, for spreadsheets)",
    "parquet": "Parquet",
}
_TIE_LABELS = {
    "exclude": "Count them: a pair needs a majority of all votes",
    "abstain": "Set them aside: the decisive votes alone decide",
}

_DATE = forms.DateInput(attrs={"type": "date"})


def export_response(file: ExportFile) -> StreamingHttpResponse:
    """A download that a browser saves and never renders: attachment, server-chosen name and
    type, nosniff, not cached. Shared by the page and the API."""
    response = StreamingHttpResponse(file.chunks, content_type=file.content_type)
    response["Content-Disposition"] = f'attachment; filename="{file.filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    return response


class ExportForm(forms.Form):
    format = forms.ChoiceField(choices=[(f, _FORMAT_LABELS[f]) for f in EXPORT_FORMATS])
    table = forms.ChoiceField(
        label="Parquet holds",
        choices=[("trl", "TRL preferences"), ("judgments", "Judgments")],
        initial="trl",
        required=False,
    )
    batches = forms.ModelMultipleChoiceField(
        queryset=Batch.objects.none(),
        required=False,
        help_text="None selected: every batch.",
        widget=forms.CheckboxSelectMultiple,
    )
    since = forms.DateField(label="Judged from (UTC, inclusive)", required=False, widget=_DATE)
    until = forms.DateField(label="Judged until (UTC, inclusive)", required=False, widget=_DATE)
    min_agreement = forms.FloatField(
        label="Minimum agreement",
        min_value=0.0,
        max_value=1.0,
        initial=0.0,
        required=False,
        help_text="The winner's share of a pair's counted votes, 0 to 1.",
    )
    ties = forms.ChoiceField(
        label="Tie and both-bad votes",
        choices=[(t, _TIE_LABELS[t]) for t in TIE_POLICIES],
        initial="exclude",
        required=False,
    )
    aggregation = forms.ChoiceField(
        label="Label each pair by",
        choices=[(a, Project.Aggregation(a).label) for a in AGGREGATIONS],
        required=False,
        help_text="Starts at the project's setting; pairs whose p_chosen is below the "
        "project's minimum are left out.",
    )
    include_gold = forms.BooleanField(label="Include gold pairs", required=False)
    include_seed = forms.BooleanField(label="Include seed labels from imports", required=False)

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["batches"]
        assert isinstance(field, forms.ModelMultipleChoiceField)
        # Only this project's batches are choices: another project's batch id is refused.
        field.queryset = Batch.objects.filter(project=project).order_by("-created_at")
        self.fields["aggregation"].initial = project.aggregation
        self.project = project

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and until < since:
            self.add_error("until", "The end date is before the start date.")
        return data

    def options(self) -> ExportOptions:
        data = self.cleaned_data
        return ExportOptions(
            format=data["format"],
            table=data.get("table") or "trl",
            batch_ids=tuple(batch.id for batch in data["batches"]),
            since=_midnight(data["since"]),
            until=_midnight(data["until"] + timedelta(days=1)) if data["until"] else None,
            min_agreement=data["min_agreement"] or 0.0,
            include_gold=data["include_gold"],
            include_seed=data["include_seed"],
            ties=data.get("ties") or "exclude",
            aggregation=as_aggregation(data.get("aggregation") or self.project.aggregation),
            min_posterior=self.project.min_posterior,
        )


def _midnight(day: date | None) -> datetime | None:
    return datetime.combine(day, time.min, tzinfo=UTC) if day else None


@login_required
@require_http_methods(["GET", "POST"])
def export(request: HtmxHttpRequest, slug: str) -> HttpResponseBase:
    """GET: the form, with how many rows the default options give; htmx asks the count again
    (`#export-preview`, options in the query string) as the options change. POST: the file."""
    access = project_access(user=request.user, slug=slug, min_role=Membership.Role.LEAD)
    if request.method == "GET" and request.htmx:
        preview = ExportForm(request.GET, project=access.project)
        options = preview.options() if preview.is_valid() else None
        return render(
            request,
            "annotation/export.html#export-preview",
            {"preview": _preview(access.project, options)},
        )
    form = ExportForm(request.POST or None, project=access.project)
    if request.method == "POST" and form.is_valid():
        return export_response(export_stream(project=access.project, options=form.options()))
    return render(
        request,
        "annotation/export.html",
        {
            "access": access,
            "project": access.project,
            "form": form,
            "current": "export",
            # The form's initial options; after an invalid POST, no count until it is fixed.
            "preview": _preview(access.project, None if form.is_bound else ExportOptions()),
        },
        status=400 if request.method == "POST" else 200,
    )


def _preview(project: Project, options: ExportOptions | None) -> dict[str, Any] | None:
    if options is None:
        return None  # invalid options: the form says why when submitted
    count, capped = export_row_count(project=project, options=options)
    return {"count": count, "capped": capped, "rows": options.rows}
