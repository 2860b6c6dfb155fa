"""What one pass over a file has learnt so far: its format, the ids seen, the extra keys."""

from __future__ import annotations

from typing import Literal

from annotation.imports.reader import FileRefused
from annotation.imports.records import ImportFormat, ImportIssue, ImportLimits


class FileState:
    """What one pass has learnt about the file so far: its format, the ids seen, the extra keys."""

    def __init__(self, fmt: ImportFormat | None, *, limits: ImportLimits) -> None:
        self.format = fmt
        self.forced = fmt is not None
        self.format_line: int | None = None
        self.limits = limits
        self.records = 0
        self.extra_keys: set[str] = set()
        self.csv_header = b""  # the header row as uploaded, for the rejects file
        # The one structure that grows with the file: about 100 bytes per id, at most
        # max_records of them (some 200 MB at the default 2,000,000), for duplicate detection.
        self.ids: dict[str, int] = {}

    def count_record(self, line: int, unit: Literal["line", "row"]) -> None:
        self.records += 1
        if self.records > self.limits.max_records:
            raise FileRefused(
                ImportIssue(
                    line,
                    None,
                    f"more than the limit of {self.limits.max_records:,} records; split the file",
                    unit,
                )
            )

    def match_format(
        self, detected: ImportFormat, line: int, unit: Literal["line", "row"]
    ) -> ImportIssue | None:
        if self.format is None:
            self.format, self.format_line = detected, line
            return None
        if detected is self.format:
            return None
        origin = "as asked" if self.forced else f"from {unit} {self.format_line}"
        return ImportIssue(
            line,
            None,
            f'a "{detected}" record, but this file holds "{self.format}" records ({origin}); '
            "one file holds one format",
            unit,
        )

    def claim_id(
        self, external_id: str | None, line: int, unit: Literal["line", "row"]
    ) -> ImportIssue | None:
        if external_id is None:
            return None
        first = self.ids.setdefault(external_id, line)
        if first == line:
            return None
        return ImportIssue(
            line, "id", f'"{external_id}" is used twice: on {unit} {first} and {unit} {line}', unit
        )

    def note_extra_keys(self, keys: set[str]) -> None:
        if len(self.extra_keys) < 50:
            self.extra_keys.update(keys)
