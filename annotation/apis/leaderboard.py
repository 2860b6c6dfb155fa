"""The leaderboard in the JSON API: `GET /api/v1/projects/{slug}/leaderboard/`.

Computed on demand with the same short cache as the page (annotation.services.leaderboard);
the same JSON as `manage.py leaderboard --json`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Membership
from annotation.selectors.access import project_access
from annotation.selectors.batches import batches_outside
from annotation.selectors.leaderboard import LeaderboardScope
from annotation.services.leaderboard import leaderboard_as_json, leaderboard_compute


class LeaderboardQuerySerializer(serializers.Serializer):
    batch = serializers.IntegerField(
        min_value=1, required=False, default=None, help_text="A batch id of this project."
    )
    since = serializers.DateField(
        required=False, default=None, help_text="First day (UTC) of judgments counted."
    )
    until = serializers.DateField(
        required=False, default=None, help_text="Last day (UTC) of judgments counted, included."
    )
    criterion = serializers.CharField(
        required=False, default=None, help_text="Rate on this criterion's choices instead."
    )
    rater = serializers.IntegerField(
        min_value=1, required=False, default=None, help_text="Only this rater's judgments."
    )
    include_known = serializers.BooleanField(
        required=False, default=False, help_text="Count gold pairs and seed-labelled pairs too."
    )
    both_bad = serializers.ChoiceField(
        choices=["tie", "exclude"],
        required=False,
        default="tie",
        help_text="Count 'both bad' as a tie (default) or leave it out.",
    )
    style_control = serializers.BooleanField(
        required=False, default=False, help_text="Control for length and Markdown structure."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since > until:
            raise serializers.ValidationError({"until": "must be on or after since"})
        return attrs


_MODELS = inline_serializer(
    "LeaderboardModel",
    many=True,
    fields={
        "model": serializers.CharField(),
        "rating": serializers.FloatField(),
        "ci_low": serializers.FloatField(),
        "ci_high": serializers.FloatField(),
        "rank": serializers.IntegerField(),
        "rank_ci": serializers.ListField(child=serializers.IntegerField()),
        "wins": serializers.FloatField(),
        "losses": serializers.FloatField(),
        "ties": serializers.FloatField(),
        "battles": serializers.IntegerField(),
        "davidson_rating": serializers.FloatField(
            allow_null=True,
            help_text="Under Davidson's tie model; null with style control or without a tie",
        ),
    },
)
_LEADERBOARD = inline_serializer(
    "Leaderboard",
    {
        "models": _MODELS,
        "battles": serializers.IntegerField(),
        "style": serializers.JSONField(
            help_text="controlled, coefficients: see docs/leaderboard.md"
        ),
        "davidson": serializers.JSONField(help_text="tie_parameter: Davidson's nu, or null"),
        "bootstrap": serializers.JSONField(help_text="rounds, clusters (prompts), unit"),
        "win_probability": serializers.JSONField(help_text="models, matrix: P(row beats column)"),
        "scope": serializers.JSONField(help_text="The filters applied."),
    },
)


class LeaderboardApi(APIView):
    """Bradley-Terry ratings of the project's models with bootstrap intervals (leads, admins)."""

    @extend_schema(parameters=[LeaderboardQuerySerializer], responses={200: _LEADERBOARD})
    def get(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=Membership.Role.LEAD)
        query = LeaderboardQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        data = query.validated_data
        project = access.project
        if batches_outside(project=project, batch_ids=[data["batch"]]):
            raise serializers.ValidationError({"batch": "No such batch in this project."})
        if data["criterion"] is not None and data["criterion"] not in project.criteria:
            raise serializers.ValidationError({"criterion": "No such criterion in this project."})
        scope = LeaderboardScope(
            batch_id=data["batch"],
            since=data["since"],
            until=data["until"],
            criterion=data["criterion"],
            rater_id=data["rater"],
            include_known=data["include_known"],
            both_bad=data["both_bad"],
        )
        board = leaderboard_compute(
            project=project, scope=scope, style_control=data["style_control"]
        )
        return Response(leaderboard_as_json(board, scope=scope))
