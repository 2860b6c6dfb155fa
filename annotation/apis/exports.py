"""The export in the JSON API: `GET /api/v1/projects/{slug}/export/?format=trl&...`, streamed.

GET, as the API contract says, and with an API token only (`Authorization: Token ...`): a
session cookie is not accepted here. A browser sends its cookie with any cross-site GET, so with
session auth another site could make a lead's browser start exports (a full snapshot and stream
each time) without the lead knowing; a token is never sent by a browser on its own. Scripts keep
working unchanged, and people in a browser use the export page, which starts exports only by a
POST under CSRF protection (reliability item 7).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.http import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from annotation.exports.aggregation import TIE_POLICIES
from annotation.exports.labels import AGGREGATIONS, as_aggregation
from annotation.models import Membership
from annotation.selectors.access import project_access
from annotation.selectors.batches import batches_outside
from annotation.selectors.exports import EXPORT_FORMATS, ExportOptions, export_stream
from annotation.views.exports import export_response
from config.authentication import TokenAuthentication


class ExportQuerySerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=EXPORT_FORMATS, default="trl")
    table = serializers.ChoiceField(
        choices=["trl", "judgments"], default="trl", help_text="What a Parquet export holds."
    )
    batch = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        required=False,
        default=list,
        help_text="Batch ids of this project (repeat the parameter); none: every batch.",
    )
    since = serializers.DateTimeField(
        required=False, default=None, help_text="Judgments made at or after (ISO 8601)."
    )
    until = serializers.DateTimeField(
        required=False, default=None, help_text="Judgments made before (ISO 8601)."
    )
    min_agreement = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.0)
    include_gold = serializers.BooleanField(default=False)
    include_seed = serializers.BooleanField(default=False)
    ties = serializers.ChoiceField(choices=TIE_POLICIES, default="exclude")
    aggregation = serializers.ChoiceField(
        choices=AGGREGATIONS,
        required=False,
        help_text="How votes become a label; default: the project's setting. Pairs whose "
        "p_chosen is below the project's min_posterior are left out.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and until <= since:
            raise serializers.ValidationError({"until": "must be after since"})
        return attrs


class _IgnoreFormatParameter(DefaultContentNegotiation):
    """`format` names the export here, not DRF's response renderer; errors are always JSON."""

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, renderer.media_type


_FILE = OpenApiResponse(
    response=OpenApiTypes.BINARY,
    description="The export as an attachment: JSONL for trl and judgments, CSV, or Parquet.",
)


class ProjectExportApi(APIView):
    """Stream an export of the project (leads and admins, with an API token)."""

    authentication_classes = [TokenAuthentication]  # never a session cookie: see the docstring
    renderer_classes = [JSONRenderer]
    content_negotiation_class = _IgnoreFormatParameter

    @extend_schema(
        operation_id="projects_export",
        parameters=[
            ExportQuerySerializer,
            OpenApiParameter("batch", OpenApiTypes.INT, many=True, explode=True),
        ],
        responses={
            (200, "application/jsonl"): _FILE,
            (200, "text/csv"): _FILE,
            (200, "application/vnd.apache.parquet"): _FILE,
            400: OpenApiResponse(
                OpenApiTypes.OBJECT, description="A filter is invalid: {field: [message]}."
            ),
            403: OpenApiResponse(OpenApiTypes.OBJECT, description="Raters never export."),
            404: OpenApiResponse(OpenApiTypes.OBJECT, description="Not a member."),
        },
    )
    def get(self, request: Request, slug: str) -> HttpResponseBase:
        access = project_access(user=request.user, slug=slug, min_role=Membership.Role.LEAD)
        query = ExportQuerySerializer(
            data={**request.query_params.dict(), "batch": request.query_params.getlist("batch")}
        )
        query.is_valid(raise_exception=True)
        data = query.validated_data
        batch_ids = tuple(dict.fromkeys(data["batch"]))
        if unknown := batches_outside(project=access.project, batch_ids=batch_ids):
            raise serializers.ValidationError(
                {"batch": [f"batch {b} is not a batch of this project" for b in unknown]}
            )
        options = ExportOptions(
            format=data["format"],
            table=data["table"],
            batch_ids=batch_ids,
            since=data["since"],
            until=data["until"],
            min_agreement=data["min_agreement"],
            include_gold=data["include_gold"],
            include_seed=data["include_seed"],
            ties=data["ties"],
            aggregation=as_aggregation(data.get("aggregation") or access.project.aggregation),
            min_posterior=access.project.min_posterior,
        )
        return export_response(export_stream(project=access.project, options=options))
