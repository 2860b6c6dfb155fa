"""The leaderboard page for leads and admins: model ratings, matrices, a reading, a CSV."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotation.agreement.charts import Heatmap
from annotation.leaderboard.charts import matrix_heatmap
from annotation.leaderboard.fit import Leaderboard
from annotation.leaderboard.reading import leaderboard_reading
from annotation.models import Batch, Membership, Project
from annotation.selectors.access import project_access
from annotation.selectors.leaderboard import LeaderboardScope
from annotation.services.leaderboard import CACHE_SECONDS, leaderboard_compute

MATRIX_MODELS = 30  # beyond this a model x model grid stops being readable; the tables hold all


class LeaderboardForm(forms.Form):
    """The page's filters; an invalid value is reported and the whole project shown."""

    batch = forms.ModelChoiceField(queryset=Batch.objects.none(), required=False)
    since = forms.DateField(
        required=False, label="From (UTC)", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="To (UTC)", widget=forms.DateInput(attrs={"type": "date"})
    )
    criterion = forms.ChoiceField(required=False, label="Criterion")
    rater = forms.ModelChoiceField(queryset=get_user_model().objects.none(), required=False)
    style_control = forms.BooleanField(required=False, label="Style control")
    include_known = forms.BooleanField(required=False, label="Include gold and seed pairs")
    both_bad = forms.ChoiceField(
        choices=[("tie", "Both bad counts as a tie"), ("exclude", "Leave both bad out")],
        required=False,
        label="Both bad",
    )

    def __init__(self, *args: Any, project: Project, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        batch = self.fields["batch"]
        assert isinstance(batch, forms.ModelChoiceField)
        batch.queryset = (
            Batch.objects.filter(project=project).select_related("project").order_by("-created_at")
        )
        batch.empty_label = "All batches"
        rater = self.fields["rater"]
        assert isinstance(rater, forms.ModelChoiceField)
        rater.queryset = (
            get_user_model().objects.filter(memberships__project=project).order_by("username")
        )
        rater.empty_label = "All raters"
        criterion = self.fields["criterion"]
        assert isinstance(criterion, forms.ChoiceField)
        criterion.choices = [("", "Overall choice")] + [(c, c) for c in project.criteria]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            raise forms.ValidationError("The start date is after the end date.")
        return cleaned

    def scope(self) -> LeaderboardScope:
        if not self.is_valid():
            return LeaderboardScope()
        data = self.cleaned_data
        return LeaderboardScope(
            batch_id=data["batch"].id if data["batch"] else None,
            since=data["since"],
            until=data["until"],
            criterion=data["criterion"] or None,
            rater_id=data["rater"].id if data["rater"] else None,
            include_known=data["include_known"],
            both_bad="exclude" if data["both_bad"] == "exclude" else "tie",
        )

    @property
    def wants_style_control(self) -> bool:
        return self.is_valid() and bool(self.cleaned_data["style_control"])


@dataclass(frozen=True)
class MatrixRow:
    model: str
    cells: list[str]


def _table(board: Leaderboard, values: Any, fmt: str) -> list[MatrixRow]:
    return [
        MatrixRow(
            model=model,
            cells=[
                "" if i == j or math.isnan(float(v)) else fmt.format(float(v))
                for j, v in enumerate(values[i])
            ],
        )
        for i, model in enumerate(board.order)
    ]


def _charts(board: Leaderboard) -> dict[str, Heatmap | list[MatrixRow] | bool]:
    shown = board.order[:MATRIX_MODELS]
    n = len(shown)
    return {
        "win_chart": matrix_heatmap(
            labels=shown,
            values=board.observed_win_rate[:n, :n],
            describe="{row} against {column}: won {value:.0%} of their battles",
            top=1.0,
        ),
        "count_chart": matrix_heatmap(
            labels=shown,
            values=board.battle_counts[:n, :n],
            describe="{row} against {column}: {value:.0f} battles",
            top=float(board.battle_counts.max()),
        ),
        "matrix_cut": len(board.order) > MATRIX_MODELS,
        "win_table": _table(board, board.observed_win_rate, "{:.0%}"),
        "probability_table": _table(board, board.win_probability, "{:.0%}"),
        "count_table": _table(board, board.battle_counts, "{:.0f}"),
    }


@login_required
@require_GET
def leaderboard(request: HttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=Membership.Role.LEAD)
    form = LeaderboardForm(request.GET or None, project=access.project)
    scope = form.scope()
    board = leaderboard_compute(
        project=access.project, scope=scope, style_control=form.wants_style_control
    )
    context: dict[str, Any] = {
        "access": access,
        "project": access.project,
        "form": form,
        "board": board,
        "cache_seconds": CACHE_SECONDS,
        "query": request.GET.urlencode(),
    }
    if board is not None:
        context["reading"] = leaderboard_reading(board)
        context.update(_charts(board))
    return render(request, "annotation/leaderboard.html", context)


CSV_HEADER = [
    "rank",
    "model",
    "rating",
    "ci_low",
    "ci_high",
    "rank_ci_low",
    "rank_ci_high",
    "wins",
    "losses",
    "ties",
    "battles",
]


def _cell(text: str) -> str:
    """A model name as a CSV cell that a spreadsheet will not run as a formula."""
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@login_required
@require_GET
def leaderboard_csv(request: HttpRequest, slug: str) -> HttpResponse:
    access = project_access(user=request.user, slug=slug, min_role=Membership.Role.LEAD)
    form = LeaderboardForm(request.GET or None, project=access.project)
    board = leaderboard_compute(
        project=access.project, scope=form.scope(), style_control=form.wants_style_control
    )
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{slug}-leaderboard.csv"'
    writer = csv.writer(response)
    writer.writerow(CSV_HEADER)
    for row in board.ratings if board else []:
        writer.writerow(
            [
                row.rank,
                _cell(row.model),
                f"{row.rating:.1f}",
                f"{row.ci_low:.1f}",
                f"{row.ci_high:.1f}",
                *row.rank_ci,
                f"{row.wins:g}",
                f"{row.losses:g}",
                f"{row.ties:g}",
                row.battles,
            ]
        )
    return response
