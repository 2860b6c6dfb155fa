"""Rating through the JSON API: the next pair for me, my judgment of it, skip, flag and undo.

The same engine as the rater page (annotation.services.rating). Pairs are shown in screen terms:
`left` and `right`, never which response is A or B nor which model wrote it, because raters who
know the models judge the names instead of the texts.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import JSONParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.apis.strict import StrictFieldsMixin, reject_unknown_fields
from annotation.http import signed_in_user
from annotation.models import Assignment, Flag, Judgment, Project, shown_sides, to_screen_terms
from annotation.selectors.access import project_access
from annotation.services.flags import NOTE_MAX_CHARS, assignment_flag
from annotation.services.rating import (
    SHOWN_CHOICES,
    UNDO_WINDOW,
    AlreadyJudged,
    IdempotencyConflict,
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

IDEMPOTENCY_KEY_MAX = 128  # Judgment.idempotency_key's column width


class RatingProblemSerializer(serializers.Serializer):
    detail = serializers.CharField()


class ChatMessageSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()


class PromptShownSerializer(serializers.Serializer):
    text = serializers.CharField(help_text="The prompt as plain text; empty for a chat prompt.")
    messages = ChatMessageSerializer(
        many=True, allow_null=True, help_text="The chat transcript, or null for a text prompt."
    )


class ResponseShownSerializer(serializers.Serializer):
    text = serializers.CharField()


class ChoiceSchemeSerializer(serializers.Serializer):
    choices = serializers.ListField(
        child=serializers.ChoiceField(choices=SHOWN_CHOICES),
        help_text="The choices this project offers.",
    )
    strength = serializers.BooleanField(
        help_text="Whether a strength (1 slightly, 2 clearly, 3 much better) may go with "
        "left or right."
    )
    criteria = serializers.ListField(
        child=serializers.CharField(), help_text="Criteria that may each get their own choice."
    )
    rationale = serializers.ChoiceField(
        choices=Project.Rationale.choices, help_text="Whether a short reason is asked for."
    )
    guidelines = serializers.CharField(help_text="The project's guidelines, as Markdown.")


class AssignmentShownSerializer(serializers.Serializer):
    assignment = serializers.IntegerField(help_text="The lease id to send with the judgment.")
    expires_at = serializers.DateTimeField(help_text="The lease ends then; answer before.")
    prompt = PromptShownSerializer()
    left = ResponseShownSerializer()
    right = ResponseShownSerializer()
    scheme = ChoiceSchemeSerializer()


# The output serializers above document the responses; the views build the same shapes as plain
# dicts, which costs a fraction of serializing them on the hot path of every rater.
def _shown(assignment: Assignment, project: Project) -> dict[str, Any]:
    pair = assignment.pair
    prompt = pair.prompt
    left, right = shown_sides(pair, assignment.swapped)
    messages = prompt.messages if isinstance(prompt.messages, list) else None
    return {
        "assignment": assignment.id,
        "expires_at": assignment.expires_at,
        "prompt": {
            "text": prompt.text if messages is None else "",
            "messages": None
            if messages is None
            else [
                {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
                for m in messages
                if isinstance(m, dict)
            ],
        },
        "left": {"text": left.text},
        "right": {"text": right.text},
        "scheme": {
            "choices": list(allowed_choices(project)),
            "strength": project.use_strength,
            "criteria": [str(name) for name in project.criteria],
            "rationale": project.rationale,
            "guidelines": project.guidelines,
        },
    }


class AssignmentNextApi(APIView):
    """The pair I should judge now: the lease I hold, or a new one."""

    @extend_schema(
        operation_id="rating_next",
        responses={
            200: AssignmentShownSerializer,
            204: OpenApiResponse(
                description="Nothing left for me: every pair has its judgments, I judged or "
                "skipped the rest, or I am paused in this project."
            ),
            404: OpenApiResponse(RatingProblemSerializer, description="Not a member."),
        },
    )
    def get(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug)
        assignment = assignment_next(
            project=access.project,
            rater=signed_in_user(request),
            membership=access.membership,
        )
        if assignment is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(_shown(assignment, access.project))


class JudgmentInputSerializer(StrictFieldsMixin, serializers.Serializer):
    """What a rater may send. Anything else in the body (rater, created_at, ...) is a 400."""

    assignment = serializers.IntegerField(min_value=1)
    choice = serializers.ChoiceField(choices=SHOWN_CHOICES)
    strength = serializers.IntegerField(
        min_value=1, max_value=3, required=False, allow_null=True, default=None
    )
    criteria = serializers.DictField(
        child=serializers.ChoiceField(choices=SHOWN_CHOICES), required=False, default=dict
    )
    rationale = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=5000, trim_whitespace=False
    )
    active_ms = serializers.IntegerField(
        min_value=0,
        max_value=2**31 - 1,
        required=False,
        allow_null=True,
        default=None,
        help_text="Milliseconds the rater actively spent on the pair, as the client measured.",
    )


class JudgmentOutputSerializer(serializers.Serializer):
    judgment = serializers.IntegerField()
    assignment = serializers.IntegerField()
    choice = serializers.ChoiceField(choices=SHOWN_CHOICES, help_text="In screen terms.")
    strength = serializers.IntegerField(allow_null=True)
    criteria = serializers.DictField(child=serializers.ChoiceField(choices=SHOWN_CHOICES))
    rationale = serializers.CharField()
    active_ms = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()


def _judgment_data(judgment: Judgment) -> dict[str, Any]:
    return {
        "judgment": judgment.id,
        "assignment": judgment.assignment_id,
        "choice": to_screen_terms(judgment.choice, judgment.swapped),
        "strength": judgment.strength,
        "criteria": {
            name: to_screen_terms(value, judgment.swapped)
            for name, value in judgment.criteria.items()
        },
        "rationale": judgment.rationale,
        "active_ms": judgment.active_ms,
        "created_at": judgment.created_at,
    }


def _idempotency_key(request: Request) -> str:
    key = request.headers.get("Idempotency-Key", "")
    if len(key) > IDEMPOTENCY_KEY_MAX or not all(" " < c <= "~" for c in key):
        raise serializers.ValidationError(
            {
                "Idempotency-Key": f"At most {IDEMPOTENCY_KEY_MAX} printable ASCII characters "
                "without spaces, e.g. a UUID."
            }
        )
    return key


def _problem(error: RatingError) -> Response:
    if isinstance(error, LeaseNotHeld):
        return Response({"detail": str(error)}, status=status.HTTP_404_NOT_FOUND)
    if isinstance(error, IdempotencyConflict):
        # 422 as the IETF Idempotency-Key draft asks for a key reused with another payload.
        return Response({"detail": str(error)}, status=status.HTTP_422_UNPROCESSABLE_ENTITY)
    if isinstance(error, LeaseLost | AlreadyJudged):
        return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
    if error.field:
        return Response({error.field: [str(error)]}, status=status.HTTP_400_BAD_REQUEST)
    return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)


class JudgmentRecordApi(APIView):
    """Record my judgment of the pair I hold. Safe to retry with the same Idempotency-Key."""

    parser_classes = [JSONParser]

    @extend_schema(
        operation_id="rating_judge",
        request=JudgmentInputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="A key of your choosing (e.g. a UUID) per judgment. Repeating the "
                "request with the same key and body returns the first answer (200) without "
                "recording twice; the same key with another body is refused (422).",
            )
        ],
        responses={
            201: OpenApiResponse(JudgmentOutputSerializer, description="Recorded."),
            200: OpenApiResponse(
                JudgmentOutputSerializer,
                description="Recorded earlier by the same request (a retry or a double click).",
            ),
            400: OpenApiResponse(
                OpenApiTypes.OBJECT, description="A field is invalid: {field: [message]}."
            ),
            404: OpenApiResponse(
                RatingProblemSerializer, description="That pair is not leased to you."
            ),
            409: OpenApiResponse(
                RatingProblemSerializer,
                description="The lease was skipped, or ran out and others completed the pair, "
                "or you already judged this pair differently.",
            ),
            422: OpenApiResponse(
                RatingProblemSerializer,
                description="The Idempotency-Key was used before for a different judgment.",
            ),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug)
        key = _idempotency_key(request)
        serializer = JudgmentInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        submission = Submission(
            choice=data["choice"],
            strength=data["strength"],
            criteria=data["criteria"] or None,
            rationale=data["rationale"],
            active_ms=data["active_ms"],
        )
        try:
            judgment, created = judgment_record(
                rater=signed_in_user(request),
                assignment_id=data["assignment"],
                submission=submission,
                idempotency_key=key,
                project=access.project,
            )
        except RatingError as error:
            return _problem(error)
        return Response(
            _judgment_data(judgment),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class AssignmentSkipApi(APIView):
    """Give a pair back without judging it; it is not offered to me again."""

    @extend_schema(
        operation_id="rating_skip",
        request=None,
        responses={
            204: OpenApiResponse(description="Skipped; ask for the next pair."),
            404: OpenApiResponse(
                RatingProblemSerializer, description="That pair is not leased to you."
            ),
        },
    )
    def post(self, request: Request, slug: str, assignment_id: int) -> Response:
        access = project_access(user=request.user, slug=slug)
        reject_unknown_fields(request.data)
        try:
            assignment_skip(
                rater=signed_in_user(request),
                assignment_id=assignment_id,
                project=access.project,
            )
        except RatingError as error:
            return _problem(error)
        return Response(status=status.HTTP_204_NO_CONTENT)


class FlagInputSerializer(StrictFieldsMixin, serializers.Serializer):
    reason = serializers.ChoiceField(choices=Flag.Reason.choices)
    note = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=NOTE_MAX_CHARS
    )


# The URL takes digits only: a negative id is no route at all, so the schema says so.
ASSIGNMENT_ID = OpenApiParameter(
    "assignment_id", {"type": "integer", "minimum": 0}, location=OpenApiParameter.PATH
)


class AssignmentFlagApi(APIView):
    """Report a problem with the pair I hold instead of judging it. My lease ends as with skip;
    once enough raters flag the pair it is no longer served and waits for the lead."""

    @extend_schema(
        operation_id="rating_flag",
        parameters=[ASSIGNMENT_ID],
        request=FlagInputSerializer,
        responses={
            204: OpenApiResponse(description="Flagged; ask for the next pair."),
            400: OpenApiResponse(description="A reason that is not offered, or a long note."),
            404: OpenApiResponse(
                RatingProblemSerializer, description="That pair is not leased to you."
            ),
        },
    )
    def post(self, request: Request, slug: str, assignment_id: int) -> Response:
        access = project_access(user=request.user, slug=slug)
        body = FlagInputSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            assignment_flag(
                project=access.project,
                assignment_id=assignment_id,
                rater=signed_in_user(request),
                reason=body.validated_data["reason"],
                note=body.validated_data["note"],
            )
        except RatingError as error:
            return _problem(error)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JudgmentUndoApi(APIView):
    """Take back my last judgment in this project, if it is recent enough, and hold its pair
    again."""

    @extend_schema(
        operation_id="rating_undo",
        request=None,
        responses={
            200: OpenApiResponse(
                AssignmentShownSerializer, description="Undone; the pair is leased to me again."
            ),
            409: OpenApiResponse(RatingProblemSerializer, description="Nothing to undo."),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug)
        reject_unknown_fields(request.data)
        assignment = judgment_undo(project=access.project, rater=signed_in_user(request))
        if assignment is None:
            minutes = int(UNDO_WINDOW.total_seconds() // 60)
            return Response(
                {
                    "detail": f"Nothing to undo: you have no judgment here from the last {minutes} "
                    "minutes."
                },
                status=status.HTTP_409_CONFLICT,
            )
        return Response(_shown(assignment, access.project))
