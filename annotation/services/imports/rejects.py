"""The rejects file of a batch imported with `on_invalid=skip`: the records it left out.

Each skipped record is written as it was uploaded: its JSONL line, or its CSV row after the
file's header row, so the file can be fixed and uploaded again. It lives in IMPORT_REJECTS_DIR
under a random name that the batch stores (never a name the user chose), and holds at most
IMPORT_REJECTS_MAX_BYTES: past that, and for lines over the line limit (never held whole),
records are counted but not kept. `Batch.rejects_kept` says how many the file holds.

The file is written inside the import's transaction, and its name reaches the database only when
that commits. A failed import removes it (`RejectsWriter.discard`); what nothing removes (a commit
that failed after the writer closed, a killed worker, a deleted batch) `rejects_orphans_clean`
sweeps: hourly, a day after the file was last written.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.http import FileResponse, Http404

from annotation.imports.records import ImportIssue, Rejected
from annotation.models import Batch

_NAME = re.compile(r"[A-Za-z0-9_-]{32}\.(jsonl|csv)")
# A rejects file that no batch names a day after it was last written belongs to no import: an
# import writes its rejects within its task's time limit (an hour) and names the file on commit.
ORPHAN_SECONDS = 24 * 60 * 60
_SWEEP_CHUNK = 500  # file names looked up per query, and held at once


def rejects_dir() -> Path:
    return Path(settings.IMPORT_REJECTS_DIR)


class RejectsWriter:
    """Receives the records an import skips (`iter_records(on_rejected=...)`), counts them by
    reason, lists the issues of the first ones and writes their original bytes. `discard`
    removes the file if the import fails."""

    def __init__(self, *, max_listed: int) -> None:
        self.count = 0
        self.kept = 0
        self.by_reason: dict[str, int] = {}
        self.listed: list[ImportIssue] = []  # the issues of the first max_listed records
        self._max_listed = max_listed
        self.name = ""
        self._file: BinaryIO | None = None
        self._size = 0

    def __call__(self, rejected: Rejected, reason: str, issues: list[ImportIssue]) -> None:
        self.count += 1
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        if self.count <= self._max_listed:
            self.listed.extend(issues)
        if rejected.raw is None:
            return
        data = rejected.raw if rejected.raw.endswith(b"\n") else rejected.raw + b"\n"
        out = self._open(rejected)
        if self._size + len(data) > settings.IMPORT_REJECTS_MAX_BYTES:
            return
        out.write(data)
        self._size += len(data)
        self.kept += 1

    def _open(self, rejected: Rejected) -> BinaryIO:
        if self._file is None:
            folder = rejects_dir()
            folder.mkdir(parents=True, exist_ok=True)
            self.name = (
                f"{secrets.token_urlsafe(24)}.{'csv' if rejected.unit == 'row' else 'jsonl'}"
            )
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
            self._file = os.fdopen(os.open(folder / self.name, flags, 0o600), "wb")
            if rejected.header:
                header = rejected.header.rstrip(b"\r\n") + b"\n"
                self._file.write(header)
                self._size = len(header)
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    def discard(self) -> None:
        self.close()
        if self.name:
            (rejects_dir() / self.name).unlink(missing_ok=True)
            self.name = ""


def rejects_path(batch: Batch) -> Path | None:
    """The batch's rejects file, if it kept one and it is still there."""
    if not _NAME.fullmatch(batch.rejects_file):
        return None
    path = rejects_dir() / batch.rejects_file
    return path if path.is_file() else None


def rejects_response(batch: Batch) -> FileResponse:
    """The rejects file as a download (for the page and the API); 404 when there is none."""
    path = rejects_path(batch)
    if path is None:
        raise Http404("This batch kept no skipped records.")
    stem = Path(batch.filename).name.split(".")[0] or "batch"
    name = f"{stem}-skipped.{path.suffix.lstrip('.')}"
    return FileResponse(
        path.open("rb"), as_attachment=True, filename=name, content_type="application/octet-stream"
    )


def rejects_orphans_clean(*, keep_seconds: float = ORPHAN_SECONDS) -> int:
    """Remove the rejects files that no batch names and nobody wrote for `keep_seconds`; how
    many. Work: one pass over the folder; memory: _SWEEP_CHUNK names at a time."""
    folder = rejects_dir()
    if not folder.is_dir():
        return 0
    cutoff = time.time() - keep_seconds
    removed = 0
    chunk: list[Path] = []
    for path in folder.iterdir():
        if _NAME.fullmatch(path.name) and _older_than(path, cutoff):
            chunk.append(path)
        if len(chunk) == _SWEEP_CHUNK:
            removed += _remove_unnamed(chunk)
            chunk = []
    return removed + _remove_unnamed(chunk)


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.is_file() and path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def _remove_unnamed(paths: list[Path]) -> int:
    """Remove those of `paths` that no batch names; how many."""
    named = set(
        Batch.objects.filter(rejects_file__in=[path.name for path in paths]).values_list(
            "rejects_file", flat=True
        )
    )
    removed = 0
    for path in paths:
        if path.name not in named:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed
