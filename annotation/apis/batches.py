"""Batches in the JSON API: upload (with a dry run), list, read one, retire and serve again,
download the records an `on_invalid=skip` import left out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.apis.strict import StrictFieldsMixin, reject_unknown_fields
from annotation.http import signed_in_user
from annotation.imports.records import ImportIssue
from annotation.models import Batch, Membership
from annotation.selectors.access import project_access
from annotation.selectors.batches import batch_get, batch_list
from annotation.services.imports import (
    DryRun,
    ImportRejected,
    batch_retire,
    batch_unretire,
    upload_check_and_import,
)
from annotation.services.imports.rejects import rejects_response

ADMIN = Membership.Role.ADMIN
LEAD = Membership.Role.LEAD


class BatchOutputSerializer(serializers.ModelSerializer):
    uploaded_by = serializers.CharField(source="uploaded_by.get_username", read_only=True)
    skipped_reasons = serializers.DictField(
        child=serializers.IntegerField(), read_only=True, help_text="Skipped records by reason."
    )
    rejects_url = serializers.SerializerMethodField(
        help_text="The skipped records as uploaded (JSONL lines or CSV rows), if any were kept."
    )

    def get_rejects_url(self, batch: Batch) -> str | None:
        if not batch.rejects_file:
            return None
        return reverse("api:batch-rejects", args=[batch.project.slug, batch.id])

    class Meta:
        model = Batch
        fields = [
            "id",
            "filename",
            "sha256",
            "format",
            "known_answers",
            "records",
            "prompts_created",
            "responses_created",
            "pairs_created",
            "uploaded_by",
            "created_at",
            "retired_at",
            "status",
            "progress",
            "error",
            "on_invalid",
            "skipped",
            "skipped_reasons",
            "rejects_kept",
            "rejects_url",
            "empty_responses",
            "merged",
        ]
        read_only_fields = fields


class BatchUploadInputSerializer(StrictFieldsMixin, serializers.Serializer):
    file = serializers.FileField(
        help_text="JSON Lines, a JSON array or CSV, optionally gzipped; or Parquet."
    )
    format = serializers.ChoiceField(
        choices=Batch.Format.choices,
        required=False,
        allow_blank=True,
        help_text="Detected from the first record when left out.",
    )
    # Sent as "as" (a Python keyword, so declared under this name and renamed in __init__).
    known_answers = serializers.ChoiceField(
        choices=[Batch.KnownAnswers.GOLD, Batch.KnownAnswers.SEED],
        required=False,
        help_text="Preference files only: gold pairs (quality control) or seed labels.",
    )
    dry_run = serializers.BooleanField(
        default=False, help_text="Validate and count, import nothing."
    )
    allow_duplicate = serializers.BooleanField(
        default=False, help_text="Import a file whose sha256 matches an earlier batch."
    )
    on_invalid = serializers.ChoiceField(
        choices=Batch.OnInvalid.choices,
        default=Batch.OnInvalid.REFUSE,
        help_text='"refuse": a file with any invalid record imports nothing. "skip": the valid '
        "records import, the others are listed, counted by reason and kept for download.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["as"] = self.fields.pop("known_answers")  # keeps source="known_answers"


class IssueSerializer(serializers.Serializer):
    line = serializers.IntegerField(
        allow_null=True, help_text="Line (JSONL) or row (CSV, header = 1)."
    )
    unit = serializers.ChoiceField(choices=["line", "row"])
    field = serializers.CharField(allow_null=True)
    message = serializers.CharField()


# "errors" would shadow Serializer.errors on a declared class, hence inline_serializer.
ImportErrorsSerializer = inline_serializer(
    "ImportErrors",
    {
        "errors": IssueSerializer(many=True, help_text="The first 1,000 problems, in file order."),
        "error_count": serializers.IntegerField(help_text="All problems found."),
        "imported": serializers.IntegerField(
            help_text="Always 0: an invalid file imports nothing."
        ),
        "duplicate_of": serializers.IntegerField(
            allow_null=True, help_text="The earlier batch, when the file was seen before."
        ),
        "invalid_records": serializers.IntegerField(
            help_text="Records with errors; when the file has no file-wide error and some valid "
            "records, on_invalid=skip imports the others."
        ),
    },
)


DryRunSerializer = inline_serializer(
    "BatchDryRun",
    {
        "dry_run": serializers.BooleanField(),
        "filename": serializers.CharField(),
        "sha256": serializers.CharField(),
        "format": serializers.CharField(),
        "records": serializers.IntegerField(),
        "responses": serializers.IntegerField(),
        "extra_keys": serializers.ListField(child=serializers.CharField()),
        "duplicate_of": serializers.IntegerField(allow_null=True),
        "in_background": serializers.BooleanField(),
        "on_invalid": serializers.CharField(),
        "skipped": serializers.IntegerField(help_text="Records with errors, left out by skip."),
        "skipped_reasons": serializers.DictField(child=serializers.IntegerField()),
        "skipped_records": IssueSerializer(
            many=True, help_text="The problems of the skipped records; the first 1,000."
        ),
        "warnings": IssueSerializer(many=True, help_text="E.g. empty responses; the first 1,000."),
        "warning_count": serializers.IntegerField(),
    },
)


def _issue(issue: ImportIssue) -> dict:
    return {"line": issue.line, "unit": issue.unit, "field": issue.field, "message": issue.message}


def _errors(
    issues: Sequence[ImportIssue],
    total: int,
    duplicate_of: Batch | None = None,
    invalid_records: int = 0,
) -> Response:
    return Response(
        {
            "errors": [_issue(i) for i in issues],
            "error_count": total,
            "imported": 0,
            "duplicate_of": duplicate_of.id if duplicate_of else None,
            "invalid_records": invalid_records,
        },
        status=status.HTTP_400_BAD_REQUEST,
    )


def _skip_report(dry_run: DryRun) -> dict:
    """What on_invalid=skip leaves out, and the warnings, from the dry run of the same bytes."""
    result = dry_run.scan
    return {
        "skipped": result.skipped.count,
        "skipped_reasons": result.skipped.by_reason,
        "skipped_records": [_issue(i) for i in result.errors],
        "warnings": [_issue(i) for i in result.warnings],
        "warning_count": result.warning_count,
    }


def _dry_run_data(dry_run: DryRun, on_invalid: str) -> dict:
    result = dry_run.scan
    return {
        "dry_run": True,
        "filename": result.filename,
        "sha256": result.sha256 or "",
        "format": str(result.format or ""),
        "records": result.record_count,
        "responses": result.response_count,
        "extra_keys": list(result.extra_keys),
        "duplicate_of": dry_run.duplicate_of.id if dry_run.duplicate_of else None,
        "in_background": dry_run.in_background,
        "on_invalid": on_invalid,
        **_skip_report(dry_run),
    }


class BatchListCreateApi(APIView):
    """A project's batches (leads and admins); upload a new one (admins)."""

    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(responses=BatchOutputSerializer(many=True))
    def get(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=LEAD)
        return Response(BatchOutputSerializer(batch_list(project=access.project), many=True).data)

    @extend_schema(
        request={"multipart/form-data": BatchUploadInputSerializer},
        responses={
            201: OpenApiResponse(BatchOutputSerializer, description="Imported."),
            202: OpenApiResponse(
                BatchOutputSerializer,
                description="A large file: a worker imports it; poll the batch for `status`.",
            ),
            200: OpenApiResponse(DryRunSerializer, description="`dry_run`: the file is valid."),
            400: OpenApiResponse(
                ImportErrorsSerializer,
                description="Nothing imported: every problem with its line or row and field.",
                examples=[
                    OpenApiExample(
                        "A row without a response",
                        value={
                            "errors": [
                                {
                                    "line": 3,
                                    "unit": "line",
                                    "field": "response_b",
                                    "message": "is missing",
                                }
                            ],
                            "error_count": 1,
                            "imported": 0,
                            "duplicate_of": None,
                        },
                    )
                ],
            ),
        },
    )
    def post(self, request: Request, slug: str) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=ADMIN)
        serializer = BatchUploadInputSerializer(data=request.data)
        if not serializer.is_valid():
            issues = [
                ImportIssue(None, name, " ".join(str(m) for m in messages))
                for name, messages in serializer.errors.items()
            ]
            return _errors(issues, len(issues))
        data = serializer.validated_data
        upload = data["file"]
        try:
            checked = upload_check_and_import(
                project=access.project,
                user=signed_in_user(request),
                fileobj=upload,
                filename=upload.name or "upload",
                format=data.get("format") or None,
                known_answers=data.get("known_answers") or Batch.KnownAnswers.NONE,
                allow_duplicate=data["allow_duplicate"],
                on_invalid=data["on_invalid"],
                dry_run=data["dry_run"],
            )
        except ImportRejected as rejected:
            return _errors(
                rejected.issues, rejected.total, rejected.duplicate_of, rejected.invalid_records
            )
        if checked.outcome is None:
            return Response(_dry_run_data(checked.dry_run, data["on_invalid"]))
        code = (
            status.HTTP_202_ACCEPTED if checked.outcome.in_background else status.HTTP_201_CREATED
        )
        body = BatchOutputSerializer(checked.outcome.batch).data
        if data["on_invalid"] == Batch.OnInvalid.SKIP:
            return Response({**body, **_skip_report(checked.dry_run)}, status=code)
        return Response(body, status=code)


class BatchDetailApi(APIView):
    """One batch: poll `status` and `progress` of a large import here."""

    @extend_schema(responses=BatchOutputSerializer)
    def get(self, request: Request, slug: str, batch_id: int) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=LEAD)
        batch = batch_get(project=access.project, batch_id=batch_id)
        return Response(BatchOutputSerializer(batch).data)


class BatchRetireApi(APIView):
    """Stop serving the pairs this batch created (judgments are kept). Idempotent."""

    @extend_schema(request=None, responses=BatchOutputSerializer)
    def post(self, request: Request, slug: str, batch_id: int) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=ADMIN)
        reject_unknown_fields(request.data)
        batch = batch_retire(batch=batch_get(project=access.project, batch_id=batch_id))
        return Response(BatchOutputSerializer(batch).data)


class BatchUnretireApi(APIView):
    """Serve a retired batch's pairs again. Idempotent."""

    @extend_schema(request=None, responses=BatchOutputSerializer)
    def post(self, request: Request, slug: str, batch_id: int) -> Response:
        access = project_access(user=request.user, slug=slug, min_role=ADMIN)
        reject_unknown_fields(request.data)
        batch = batch_unretire(batch=batch_get(project=access.project, batch_id=batch_id))
        return Response(BatchOutputSerializer(batch).data)


class BatchRejectsApi(APIView):
    """The records an `on_invalid=skip` import left out, as uploaded (JSONL lines or CSV rows)."""

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY})
    def get(self, request: Request, slug: str, batch_id: int) -> FileResponse:
        access = project_access(user=request.user, slug=slug, min_role=LEAD)
        return rejects_response(batch_get(project=access.project, batch_id=batch_id))
