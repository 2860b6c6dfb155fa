"""The one exception of the import services: the file was not imported, and why."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from annotation.imports.records import ImportIssue

if TYPE_CHECKING:
    from annotation.models import Batch


class ImportRejected(Exception):
    """The file was not imported; `issues` says why, each with its line or row and field.

    `duplicate_of` is the earlier batch when the only problem is that this file was seen before.
    `invalid_records` counts the records with errors when `on_invalid="skip"` would import the
    others (0 when the file has a file-wide error or none is valid).
    """

    def __init__(
        self,
        issues: Iterable[ImportIssue],
        *,
        total: int | None = None,
        duplicate_of: Batch | None = None,
        invalid_records: int = 0,
    ) -> None:
        self.issues = list(issues)
        self.total = total if total is not None else len(self.issues)
        self.duplicate_of = duplicate_of
        self.invalid_records = invalid_records
        super().__init__("; ".join(str(issue) for issue in self.issues[:3]))


def nothing_valid(skipped: int) -> ImportIssue:
    """With on_invalid=skip, a file whose every record has errors: it imports nothing."""
    return ImportIssue(
        None, None, f"every record has errors ({skipped:,} of them); nothing was imported"
    )


def rejected(message: str, field: str | None = None) -> ImportRejected:
    """A rejection of the whole file, with no line to point at."""
    return ImportRejected([ImportIssue(None, field, message)])
