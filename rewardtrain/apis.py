"""Training runs, model versions and scoring in the JSON API (design.md section 5).

Runs and versions are for the project's leads and admins; scoring is for any member. Outsiders
get 404 everywhere: a project is the boundary that never leaks.
"""

from __future__ import annotations

from django.http import Http404, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.apis.strict import StrictFieldsMixin, reject_unknown_fields
from annotation.models import Membership
from annotation.selectors.access import project_access
from rewardtrain import selectors
from rewardtrain.models import ModelVersion, TrainingRun
from rewardtrain.services.runs import TrainingRequestError, training_run_request
from rewardtrain.services.score_client import ScoresUnavailable, scores_for
from rewardtrain.services.versions import PublishError, model_version_publish
from rewardtrain.views import version_archive_response

LEAD = Membership.Role.LEAD
MAX_SCORE_ITEMS = 512


class TrainingRunOutputSerializer(serializers.ModelSerializer):
    project: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="slug", read_only=True
    )
    requested_by: serializers.SlugRelatedField = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )
    version = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "project",
            "status",
            "trigger",
            "requested_by",
            "data_cutoff_judgment_id",
            "config",
            "progress",
            "loss_curve",
            "metrics",
            "error",
            "attempts",
            "version",
            "created_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_version(self, run: TrainingRun) -> int | None:
        version = getattr(run, "version", None)
        return version.version if version is not None else None


class ModelVersionOutputSerializer(serializers.ModelSerializer):
    run: serializers.PrimaryKeyRelatedField = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True
    )

    class Meta:
        model = ModelVersion
        fields = [
            "version",
            "state",
            "run",
            "path",
            "file_sha256",
            "metrics",
            "created_at",
            "published_at",
        ]
        read_only_fields = fields


class TrainingRunListCreateApi(APIView):
    """A project's training runs, newest first; POST queues a run on the judgments so far."""

    @extend_schema(responses=TrainingRunOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=LEAD)
        runs = selectors.training_run_list(project=access.project, limit=100)
        return Response(TrainingRunOutputSerializer(runs, many=True).data)

    @extend_schema(
        request=None,
        responses={
            201: TrainingRunOutputSerializer,
            200: OpenApiResponse(
                TrainingRunOutputSerializer, description="A run was already active: that run."
            ),
            400: OpenApiResponse(description="The project's training settings are not valid."),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=LEAD)
        reject_unknown_fields(request.data)
        try:
            run, created = training_run_request(
                project=access.project,
                trigger=TrainingRun.Trigger.MANUAL,
                user=request.user,  # type: ignore[arg-type]
            )
        except TrainingRequestError as error:
            return Response({"detail": str(error)}, status=status.HTTP_400_BAD_REQUEST)
        return Response(
            TrainingRunOutputSerializer(run).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class TrainingRunDetailApi(APIView):
    """One run, with progress, loss curve and metrics."""

    @extend_schema(responses=TrainingRunOutputSerializer)
    def get(self, request: Request, run_id: int) -> Response:
        run = selectors.training_run_get(run_id=run_id)
        if run is None:
            raise Http404("No such training run.")
        project_access(user=request.user, slug=run.project.slug, min_role=LEAD)
        return Response(TrainingRunOutputSerializer(run).data)


class ModelVersionListApi(APIView):
    """A project's model versions, newest first; exactly one is `published` once any is."""

    @extend_schema(responses=ModelVersionOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=LEAD)
        versions = selectors.model_version_list(project=access.project)
        return Response(ModelVersionOutputSerializer(versions, many=True).data)


def _version(request: Request, slug: str, version: int) -> ModelVersion:
    access = project_access(user=request.user, slug=slug, min_role=LEAD)
    found = selectors.model_version_get(project=access.project, version=version)
    if found is None:
        raise Http404("No such model version in this project.")
    return found


class ModelVersionPublishApi(APIView):
    """Publish a version: promote a candidate, or roll back to a retired one."""

    @extend_schema(
        request=None,
        responses={
            200: ModelVersionOutputSerializer,
            409: OpenApiResponse(description="The version's files are missing."),
        },
    )
    def post(self, request: Request, slug: str, version: int) -> Response:
        target = _version(request, slug, version)
        reject_unknown_fields(request.data)
        try:
            published = model_version_publish(
                version=target,
                user=request.user,  # type: ignore[arg-type]
            )
        except PublishError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return Response(ModelVersionOutputSerializer(published).data)


class ModelVersionDownloadApi(APIView):
    """The version directory as a streamed .tar.gz, checked against the recorded sha256s."""

    @extend_schema(
        responses={
            (200, "application/gzip"): OpenApiTypes.BINARY,
            409: OpenApiResponse(description="The files on disk are not the recorded ones."),
        }
    )
    def get(self, request: Request, slug: str, version: int) -> Response | StreamingHttpResponse:
        target = _version(request, slug, version)
        try:
            archive = selectors.model_version_archive(version=target)
        except selectors.ArchiveError as error:
            return Response({"detail": str(error)}, status=status.HTTP_409_CONFLICT)
        return version_archive_response(archive)


class ScoreItemSerializer(StrictFieldsMixin, serializers.Serializer):
    prompt = serializers.JSONField(help_text="Text, or chat messages [{role, content}].")
    response = serializers.CharField(trim_whitespace=False, allow_blank=True)

    def validate_prompt(self, value: object) -> object:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in value
        ):
            return value
        raise serializers.ValidationError("Give text, or a list of {role, content} messages.")


class ScoreInputSerializer(StrictFieldsMixin, serializers.Serializer):
    items = serializers.ListField(
        child=ScoreItemSerializer(), min_length=1, max_length=MAX_SCORE_ITEMS
    )


class ScoreOutputSerializer(serializers.Serializer):
    model_version = serializers.IntegerField()
    scores = serializers.ListField(child=serializers.FloatField())


class ScoreApi(APIView):
    """Reward scores of (prompt, response) pairs by the project's published model, in order.

    Higher means raters would prefer the response. Any member of the project may score.
    """

    @extend_schema(
        request=ScoreInputSerializer,
        responses={
            200: ScoreOutputSerializer,
            503: OpenApiResponse(description="No model is published, or the score server is down."),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug)
        serializer = ScoreInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            scores = scores_for(project=access.project, items=serializer.validated_data["items"])
        except ScoresUnavailable as error:
            return Response({"detail": str(error)}, status=status.HTTP_503_SERVICE_UNAVAILABLE)
        return Response({"model_version": scores.model_version, "scores": scores.scores})
