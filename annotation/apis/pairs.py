"""The data browser in the JSON API (leads and admins): `GET /api/v1/projects/{slug}/pairs/`
with the page's filters and keyset pagination, `GET .../pairs/{id}/`, and a lead's decision,
`POST` / `DELETE .../pairs/{id}/adjudication/` (annotation.services.adjudication)."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.apis.strict import StrictFieldsMixin, reject_unknown_fields
from annotation.http import signed_in_user
from annotation.models import Adjudication, Membership, Pair
from annotation.selectors.access import project_access
from annotation.selectors.pair_order import MODEL_DISAGREEMENT, ORDERINGS
from annotation.selectors.pairs import (
    STATUSES,
    PairFilter,
    pair_detail,
    pair_page,
    pair_status,
)
from annotation.services.adjudication import (
    NOTE_MAX_CHARS,
    AlreadyAdjudicated,
    NotAdjudicated,
    adjudication_undo,
    pair_adjudicate,
)

LEAD = Membership.Role.LEAD
# The URL takes digits only: a negative id is no route at all, so the schema says so.
PAIR_ID = OpenApiParameter(
    "pair_id", {"type": "integer", "minimum": 0}, location=OpenApiParameter.PATH
)


class PairQuerySerializer(serializers.Serializer):
    batch = serializers.IntegerField(min_value=1, required=False, default=None)
    status = serializers.ChoiceField(choices=list(STATUSES), required=False, default=None)
    model = serializers.CharField(required=False, default="", max_length=200)
    rater = serializers.IntegerField(
        min_value=1, required=False, default=None, help_text="Pairs this user id judged."
    )
    q = serializers.CharField(
        required=False,
        default="",
        max_length=200,
        help_text="Text in the prompt or a response (full-text search on PostgreSQL).",
    )
    agreement_below = serializers.FloatField(
        min_value=0,
        max_value=1,
        required=False,
        default=None,
        help_text="Pairs whose agreement (the majority's share of the decisive judgments) is "
        "below this.",
    )
    gold_failures = serializers.BooleanField(
        required=False, help_text="Gold pairs with a judgment other than the gold answer."
    )
    disagrees_with_model = serializers.BooleanField(
        required=False,
        help_text="Pairs whose raters' majority the published model contradicts: it gives the "
        f"other side a probability of at least {MODEL_DISAGREEMENT}.",
    )
    ordering = serializers.ChoiceField(
        choices=list(ORDERINGS.items()),
        required=False,
        default="id",
        help_text="Ties are broken by pair id; pairs without the key come last.",
    )
    after = serializers.IntegerField(
        min_value=0, required=False, default=None, help_text="The `next_after` of the last page."
    )

    def filters(self) -> PairFilter:
        data: dict[str, Any] = self.validated_data
        return PairFilter(
            batch_id=data["batch"],
            status=data["status"],
            model=data["model"],
            rater_id=data["rater"],
            text=data["q"].strip(),
            agreement_below=data["agreement_below"],
            gold_failures=data["gold_failures"],
            disagrees_with_model=data["disagrees_with_model"],
        )


class PairRowSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    batch_id = serializers.IntegerField()
    external_id = serializers.CharField()
    prompt = serializers.CharField(source="prompt_snippet", help_text="The first 200 characters.")
    model_a = serializers.CharField()
    model_b = serializers.CharField()
    judgments_count = serializers.IntegerField()
    judgments_needed = serializers.IntegerField()
    status = serializers.SerializerMethodField()
    adjudicated = serializers.CharField(allow_null=True, help_text="The live decision, if any.")
    agreement = serializers.FloatField(
        allow_null=True, help_text="The majority's share of the decisive judgments."
    )
    model_p_a = serializers.FloatField(
        allow_null=True, help_text="The scoring model's probability that A is better."
    )
    model_uncertainty = serializers.FloatField(
        allow_null=True, help_text="Its ensemble's disagreement about that."
    )
    model_version = serializers.IntegerField(allow_null=True, help_text="The version that scored.")

    def get_status(self, pair: Pair) -> str:
        return pair_status(pair)


class PairPageSerializer(serializers.Serializer):
    results = PairRowSerializer(many=True)
    next_after = serializers.IntegerField(allow_null=True)


class JudgmentRowSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="judgment.id")
    rater = serializers.CharField(source="rater_name")
    pseudonym = serializers.CharField()
    choice = serializers.CharField(source="judgment.choice", help_text="In the pair's terms.")
    shown_left = serializers.CharField(source="left", help_text="A or B.")
    strength = serializers.IntegerField(source="judgment.strength", allow_null=True)
    criteria = serializers.DictField(source="judgment.criteria", child=serializers.CharField())
    rationale = serializers.CharField(source="judgment.rationale")
    duration_ms = serializers.IntegerField(source="judgment.duration_ms")
    active_ms = serializers.IntegerField(source="judgment.active_ms", allow_null=True)
    created_at = serializers.DateTimeField(source="judgment.created_at")
    served_by = serializers.CharField(
        source="judgment.assignment.served_by",
        help_text="Which engine rule served the pair to this rater: fill_first, random, "
        "uncertainty, exploration (the uncertainty order's random share), gold or queue; blank "
        "for leases made before it was recorded.",
    )


class AdjudicationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    decision = serializers.CharField()
    note = serializers.CharField()
    decided_by = serializers.CharField(source="decided_by.username")
    created_at = serializers.DateTimeField()
    undone_at = serializers.DateTimeField(allow_null=True)


class LabelSerializer(serializers.Serializer):
    winner = serializers.CharField()
    agreement = serializers.FloatField()
    margin = serializers.FloatField()


class PairDetailSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="pair.id")
    status = serializers.CharField()
    prompt = serializers.CharField(source="pair.prompt.display_text")
    response_a = serializers.CharField(source="pair.response_a.text")
    response_b = serializers.CharField(source="pair.response_b.text")
    model_a = serializers.CharField(source="pair.response_a.model_name")
    model_b = serializers.CharField(source="pair.response_b.model_name")
    gold_choice = serializers.CharField(source="pair.gold_choice")
    judgments = JudgmentRowSerializer(many=True)
    majority = LabelSerializer(
        source="label", allow_null=True, help_text="The majority label of the judgments."
    )
    agreement = serializers.FloatField(
        source="pair.agreement",
        allow_null=True,
        help_text="The majority's share of the decisive judgments (what `agreement_below` reads).",
    )
    model_p_a = serializers.FloatField(source="pair.model_p_a", allow_null=True)
    model_uncertainty = serializers.FloatField(source="pair.model_uncertainty", allow_null=True)
    model_version = serializers.IntegerField(source="pair.model_version", allow_null=True)
    adjudications = AdjudicationSerializer(many=True, help_text="Newest first, undone included.")
    next_disputed = serializers.IntegerField(allow_null=True)


class AdjudicationInputSerializer(StrictFieldsMixin, serializers.Serializer):
    decision = serializers.ChoiceField(choices=Adjudication.Decision.values)
    note = serializers.CharField(
        required=False, default="", allow_blank=True, max_length=NOTE_MAX_CHARS
    )


class ProblemSerializer(serializers.Serializer):
    detail = serializers.CharField()


class PairListApi(APIView):
    """The project's pairs with filters, 50 at a time in the chosen ordering (leads, admins)."""

    @extend_schema(
        operation_id="projects_pairs_list",
        parameters=[PairQuerySerializer],
        responses={200: PairPageSerializer},
    )
    def get(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=LEAD)
        query = PairQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        page = pair_page(
            project=access.project,
            filters=query.filters(),
            ordering=query.validated_data["ordering"],
            after=query.validated_data["after"],
        )
        body = {"results": page.pairs, "next_after": page.next_after}
        return Response(PairPageSerializer(body).data)


class PairDetailApi(APIView):
    """One pair with every judgment, its majority label and its adjudications."""

    @extend_schema(parameters=[PAIR_ID], responses={200: PairDetailSerializer})
    def get(self, request: Request, slug: str, pair_id: int) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=LEAD)
        detail = pair_detail(project=access.project, pair_id=pair_id)
        if detail is None:
            raise Http404("No such pair in this project.")
        return Response(PairDetailSerializer(detail).data)


class PairAdjudicationApi(APIView):
    """A lead's decision on a pair: it overrides the votes in exports and training."""

    @extend_schema(
        parameters=[PAIR_ID],
        request=AdjudicationInputSerializer,
        responses={
            201: AdjudicationSerializer,
            404: OpenApiResponse(ProblemSerializer, description="No such pair."),
            409: OpenApiResponse(ProblemSerializer, description="Already decided; undo first."),
        },
    )
    def post(self, request: Request, slug: str, pair_id: int) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=LEAD)
        body = AdjudicationInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            adjudication = pair_adjudicate(
                project=access.project,
                pair_id=pair_id,
                decided_by=signed_in_user(request),
                decision=body.validated_data["decision"],
                note=body.validated_data["note"],
            )
        except Pair.DoesNotExist:
            raise Http404("No such pair in this project.") from None
        except AlreadyAdjudicated as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return Response(AdjudicationSerializer(adjudication).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[PAIR_ID],
        request=None,
        responses={
            200: AdjudicationSerializer,
            404: OpenApiResponse(ProblemSerializer, description="No such pair."),
            409: OpenApiResponse(ProblemSerializer, description="Nothing to undo."),
        },
    )
    def delete(self, request: Request, slug: str, pair_id: int) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=LEAD)
        reject_unknown_fields(request.data)
        try:
            adjudication = adjudication_undo(
                project=access.project,
                pair_id=pair_id,
                undone_by=signed_in_user(request),
            )
        except Pair.DoesNotExist:
            raise Http404("No such pair in this project.") from None
        except NotAdjudicated as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return Response(AdjudicationSerializer(adjudication).data)
