"""Keeping an upload between its dry run and its import.

The bytes go to IMPORT_UPLOAD_DIR under a random token (`secrets.token_urlsafe`), never under a
name the user chose, with a JSON sidecar saying whose it is (project, uploader), its file name,
size and sha256, and what the dry run found. The token is the only handle the browser gets
back, and it is checked against a strict pattern before it goes near a path. Files are removed
after a successful import, and by `staged_uploads_clean` (beat, hourly) after a day.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import IO, BinaryIO

from django.conf import settings

from annotation.imports.reader import human_bytes
from annotation.imports.records import ImportLimits
from annotation.models import Batch, Project
from annotation.services.imports.errors import rejected

_TOKEN = re.compile(r"[A-Za-z0-9_-]{32}")
_BLOCK = 1024 * 1024
KEEP_SECONDS = 24 * 60 * 60  # a staged upload not imported within a day is removed


@dataclass(frozen=True)
class StagedUpload:
    token: str
    project_id: int
    user_id: int
    filename: str
    size: int
    sha256: str
    created: float  # unix time
    # What the dry run found: the record format and count; None until it ran clean.
    format: str | None = None
    records: int | None = None
    invalid: int = 0  # records with errors, which only on_invalid=skip imports past

    @property
    def checked(self) -> bool:
        return self.format is not None


@dataclass(frozen=True)
class OpenStaged:
    upload: StagedUpload
    file: BinaryIO


def upload_dir() -> Path:
    return Path(settings.IMPORT_UPLOAD_DIR)


def _paths(token: str) -> tuple[Path, Path]:
    if not _TOKEN.fullmatch(token):
        raise rejected("the upload reference is not valid; upload the file again")
    folder = upload_dir()
    return folder / token, folder / f"{token}.json"


def _write_sidecar(upload: StagedUpload) -> None:
    _, sidecar = _paths(upload.token)
    partial = sidecar.with_suffix(".tmp")
    partial.write_text(json.dumps(asdict(upload)), encoding="utf-8")
    partial.replace(sidecar)  # atomic: a reader never sees half a sidecar


def upload_stage(
    *, project: Project, user_id: int, fileobj: IO[bytes], filename: str, limits: ImportLimits
) -> StagedUpload:
    """Copy an upload to the staging folder, hashing it; refuse it past the upload size limit."""
    folder = upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    staged_uploads_clean()
    token = secrets.token_urlsafe(24)
    data, _ = _paths(token)
    digest = hashlib.sha256()
    size = 0
    # O_EXCL: a token that somehow exists is never overwritten; 0o600: only this service reads it.
    with os.fdopen(os.open(data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        while block := fileobj.read(_BLOCK):
            size += len(block)
            if size > limits.max_upload_bytes:
                out.close()
                data.unlink(missing_ok=True)
                raise rejected(
                    f"the file is larger than the upload limit of "
                    f"{human_bytes(limits.max_upload_bytes)}; split it"
                )
            digest.update(block)
            out.write(block)
    upload = StagedUpload(
        token=token,
        project_id=project.id,
        user_id=user_id,
        filename=os.path.basename(filename)[:255] or "upload",
        size=size,
        sha256=digest.hexdigest(),
        created=time.time(),
    )
    _write_sidecar(upload)
    return upload


def staged_upload_get(*, token: str, project: Project, user_id: int | None = None) -> StagedUpload:
    """The staged upload `token` of `project` (and of `user_id`, when given)."""
    _, sidecar = _paths(token)
    try:
        upload = StagedUpload(**json.loads(sidecar.read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError, TypeError):
        upload = None
    if (
        upload is None
        or upload.project_id != project.id
        or (user_id is not None and upload.user_id != user_id)
    ):
        raise rejected(
            "the uploaded file is no longer kept (uploads are kept for a day); upload it again"
        )
    return upload


def staged_upload_mark_checked(
    *, upload: StagedUpload, format: str, records: int, invalid: int
) -> StagedUpload:
    checked = replace(upload, format=format, records=records, invalid=invalid)
    _write_sidecar(checked)
    return checked


@contextlib.contextmanager
def staged_upload_open(
    *, token: str, project: Project, user_id: int | None = None
) -> Iterator[OpenStaged]:
    upload = staged_upload_get(token=token, project=project, user_id=user_id)
    data, _ = _paths(token)
    try:
        fileobj = data.open("rb")
    except FileNotFoundError:
        raise rejected("the uploaded file is no longer kept; upload it again") from None
    with fileobj:
        yield OpenStaged(upload=upload, file=fileobj)


def staged_upload_discard(*, token: str) -> None:
    if not _TOKEN.fullmatch(token or ""):
        return
    for path in _paths(token):
        path.unlink(missing_ok=True)


def staged_uploads_clean(*, keep_seconds: float = KEEP_SECONDS) -> int:
    """Remove staged uploads older than `keep_seconds`, except those a worker is importing."""
    folder = upload_dir()
    if not folder.is_dir():
        return 0
    cutoff = time.time() - keep_seconds
    waiting = set(
        Batch.objects.filter(status__in=[Batch.Status.PENDING, Batch.Status.RUNNING]).values_list(
            "staged_upload", flat=True
        )
    )
    removed = 0
    for path in folder.iterdir():
        token = path.name.split(".", 1)[0]
        if token in waiting or not path.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed
