"""The two steps of an upload: check it (a dry run), then import it.

`upload_check` stages the file and validates it, writing nothing to the database; the caller
shows the counts, the preview and every error. `upload_import` imports a file that checked
clean: in the request when it is small, in a worker when it is over IMPORT_BACKGROUND_BYTES or
IMPORT_BACKGROUND_RECORDS. A file whose only errors are in some records is kept too: it imports
with `on_invalid="skip"`, which leaves those records out.

The page takes the two steps in two requests (the rater of the file reads the dry run between
them); the API takes both in one request through `upload_check_and_import`, which composes the
same two services.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO

from django.conf import settings
from django.contrib.auth.models import User

from annotation.imports.parsing import ScanResult
from annotation.models import Batch, Project
from annotation.services.imports.errors import ImportRejected, nothing_valid, rejected
from annotation.services.imports.importing import (
    ImportOutcome,
    batch_duplicate_of,
    batch_import,
    batch_import_later,
    batch_scan,
    import_checks,
    import_limits,
)
from annotation.services.imports.preview import PreviewPair, preview_pairs
from annotation.services.imports.staging import (
    StagedUpload,
    staged_upload_discard,
    staged_upload_get,
    staged_upload_mark_checked,
    staged_upload_open,
    upload_stage,
)


@dataclass(frozen=True)
class DryRun:
    upload: StagedUpload | None  # None when nothing of the file can be imported: not kept
    scan: ScanResult
    duplicate_of: Batch | None
    preview: list[PreviewPair]

    @property
    def ok(self) -> bool:
        return self.scan.ok and self.scan.record_count > 0

    @property
    def can_skip(self) -> bool:
        """Some records have errors, and the others import with on_invalid=skip."""
        return self.upload is not None and not self.scan.ok

    @property
    def in_background(self) -> bool:
        return self.upload is not None and is_large(self.upload)


def is_large(upload: StagedUpload) -> bool:
    """Whether the import goes to a worker (too slow to hold a web request for)."""
    return (
        upload.size > settings.IMPORT_BACKGROUND_BYTES
        or (upload.records or 0) > settings.IMPORT_BACKGROUND_RECORDS
    )


def upload_check(
    *, project: Project, user: User, fileobj: IO[bytes], filename: str, format: str | None
) -> DryRun:
    """Stage and validate an upload without importing it; keep it for `upload_import` if clean."""
    upload = upload_stage(
        project=project, user_id=user.id, fileobj=fileobj, filename=filename, limits=import_limits()
    )
    with staged_upload_open(token=upload.token, project=project) as staged:
        result = batch_scan(
            fileobj=staged.file, filename=upload.filename, format=format, project=project
        )
    if not result.ok_when_skipping:
        staged_upload_discard(token=upload.token)
        return DryRun(upload=None, scan=result, duplicate_of=None, preview=[])
    upload = staged_upload_mark_checked(
        upload=upload,
        format=str(result.format),
        records=result.record_count,
        invalid=result.skipped.count,
    )
    return DryRun(
        upload=upload,
        scan=result,
        duplicate_of=batch_duplicate_of(project=project, sha256=result.sha256),
        preview=preview_pairs(samples=result.samples, project=project),
    )


def upload_import(
    *,
    project: Project,
    user: User,
    token: str,
    known_answers: str,
    allow_duplicate: bool,
    on_invalid: str = Batch.OnInvalid.REFUSE,
) -> ImportOutcome:
    """Import a staged upload that checked clean (or, with on_invalid="skip", whose errors are
    all in records it may leave out), or raise ImportRejected (nothing imported).

    A rejected upload stays staged, so that "import again anyway" needs no second upload.
    """
    upload = staged_upload_get(token=token, project=project, user_id=user.id)
    if not upload.checked:
        raise rejected("check the file (dry run) before importing it")
    if upload.invalid and on_invalid != Batch.OnInvalid.SKIP:
        raise rejected(
            f"{upload.invalid:,} records have errors, so nothing was imported; fix the file, "
            "or import the valid records and skip those",
            "on_invalid",
        )
    import_checks(
        project=project,
        format=upload.format,
        record_count=upload.records or 0,
        sha256=upload.sha256,
        known_answers=known_answers,
        allow_duplicate=allow_duplicate,
    )
    if is_large(upload):
        batch = batch_import_later(
            project=project,
            upload=upload,
            uploaded_by=user,
            known_answers=known_answers,
            on_invalid=on_invalid,
        )
        return ImportOutcome(batch=batch, scan=None)
    with staged_upload_open(token=token, project=project, user_id=user.id) as staged:
        outcome = batch_import(
            project=project,
            fileobj=staged.file,
            filename=upload.filename,
            uploaded_by=user,
            format=upload.format,
            known_answers=known_answers,
            allow_duplicate=allow_duplicate,
            on_invalid=on_invalid,
        )
    staged_upload_discard(token=token)
    return outcome


@dataclass(frozen=True)
class CheckedUpload:
    dry_run: DryRun
    outcome: ImportOutcome | None  # None for a dry run


def upload_check_and_import(
    *,
    project: Project,
    user: User,
    fileobj: IO[bytes],
    filename: str,
    format: str | None,
    known_answers: str,
    allow_duplicate: bool,
    on_invalid: str,
    dry_run: bool,
) -> CheckedUpload:
    """Check an upload and, unless `dry_run`, import it, in one call (the API's upload).

    Raises ImportRejected when nothing can be imported as asked: the dry run's errors (with
    `invalid_records` when on_invalid="skip" would import the rest), or the import's refusal.
    Nothing stays staged, except a file a worker is now importing.
    """
    checked = upload_check(
        project=project, user=user, fileobj=fileobj, filename=filename, format=format
    )
    upload = checked.upload
    skip = on_invalid == Batch.OnInvalid.SKIP
    if upload is None or (checked.can_skip and not skip):
        if upload is not None:
            staged_upload_discard(token=upload.token)
        raise _not_importable(checked, skip=skip)
    if dry_run:
        staged_upload_discard(token=upload.token)
        return CheckedUpload(dry_run=checked, outcome=None)
    try:
        outcome = upload_import(
            project=project,
            user=user,
            token=upload.token,
            known_answers=known_answers,
            allow_duplicate=allow_duplicate,
            on_invalid=on_invalid,
        )
    except ImportRejected:
        staged_upload_discard(token=upload.token)
        raise
    return CheckedUpload(dry_run=checked, outcome=outcome)


def _not_importable(checked: DryRun, *, skip: bool) -> ImportRejected:
    """The refusal of a dry run that leaves nothing to import as asked."""
    result = checked.scan
    issues = list(result.errors)
    if skip and result.skipped.count and not result.skipped.refused:
        issues.append(nothing_valid(result.skipped.count))
    return ImportRejected(
        issues,
        total=result.error_count,
        invalid_records=result.skipped.count if checked.can_skip else 0,
    )
