"""Agreement in the JSON API: `GET /api/v1/projects/{slug}/agreement/`, the latest stored report.

A project (or filter) without a stored report yet gets one computed on the spot and not stored
(`id` null; a GET writes nothing and pauses nobody), so a client never has to poll for the first
one; beat and the dashboard's "Refresh now" store reports. The same JSON as the dashboard and
`manage.py agreement --json`.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import AgreementReport, Membership
from annotation.selectors.access import project_access
from annotation.selectors.agreement import AgreementScope, agreement_report_latest
from annotation.selectors.batches import batches_outside
from annotation.services.agreement import agreement_report_compute


class AgreementQuerySerializer(serializers.Serializer):
    batch = serializers.IntegerField(
        min_value=1, required=False, default=None, help_text="A batch id of this project."
    )
    since = serializers.DateField(
        required=False, default=None, help_text="First day (UTC) of judgments counted."
    )
    until = serializers.DateField(
        required=False, default=None, help_text="Last day (UTC) of judgments counted, included."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since > until:
            raise serializers.ValidationError({"until": "must be on or after since"})
        return attrs


class AgreementReportSerializer(serializers.ModelSerializer):
    id = serializers.IntegerField(
        allow_null=True, read_only=True, help_text="null: computed now, not stored (none was)."
    )
    metrics = serializers.JSONField(
        help_text="counts, coefficients (value, low, high), bootstrap, rater_pairs, raters, "
        "pair_agreement, thresholds, auto_paused: see docs/agreement.md."
    )
    scope = serializers.JSONField(help_text="The filters the report covers: batch, since, until.")

    class Meta:
        model = AgreementReport
        fields = ["id", "created_at", "judgments", "last_judgment_id", "scope", "metrics"]
        read_only_fields = fields


class AgreementReportApi(APIView):
    """The latest agreement report of a project (leads and admins)."""

    @extend_schema(
        parameters=[AgreementQuerySerializer], responses={200: AgreementReportSerializer}
    )
    def get(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=Membership.Role.LEAD)
        query = AgreementQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        batch_id = query.validated_data["batch"]
        if batches_outside(project=access.project, batch_ids=[batch_id]):
            raise serializers.ValidationError({"batch": "No such batch in this project."})
        scope = AgreementScope(
            batch_id=batch_id,
            since=query.validated_data["since"],
            until=query.validated_data["until"],
        )
        report = agreement_report_latest(project=access.project, scope=scope)
        if report is None:
            report = agreement_report_compute(project=access.project, scope=scope)
        return Response(AgreementReportSerializer(report).data)
