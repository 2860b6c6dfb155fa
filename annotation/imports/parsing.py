"""The API the batch import service calls: validate a whole upload, then stream its records.

The service calls `scan` on the upload; when the result is `ok` it rewinds the file and writes
what `iter_records` yields (an invalid file imports nothing). Both stream: memory is bounded by
one line (max_line_bytes), plus the id set for duplicate detection and, for the CSV long form of
the responses format, the grouping by prompt_id (see `csvfile`).

A file is JSONL when its first non-blank character is "{", CSV otherwise; gzip is recognised by
its magic bytes whatever the file is called. The record format is named by the caller or
detected from the first record, and every other record must be of the same format.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO, Literal

from annotation.imports.containers import array_events, parquet_events
from annotation.imports.csvfile import csv_events
from annotation.imports.fields import RecordChecker, detect_format, unknown_keys
from annotation.imports.jsonl import LineInvalid, parse_object
from annotation.imports.pairing import PairingRule, pairs_from_responses
from annotation.imports.reader import UTF8_BOM, FileRefused, Line, Upload, human_bytes
from annotation.imports.records import (
    ChatMessage,
    ImportFormat,
    ImportIssue,
    ImportLimits,
    PairRecord,
    PreferenceRecord,
    Prompt,
    Record,
    Rejected,
    ResponseItem,
    ResponsesRecord,
    transcript_messages,
)
from annotation.imports.state import FileState, KnownPairs

__all__ = [
    "ChatMessage",
    "ImportFileInvalid",
    "ImportFormat",
    "ImportIssue",
    "ImportLimits",
    "PairRecord",
    "PairingRule",
    "PreferenceRecord",
    "Prompt",
    "Record",
    "ResponseItem",
    "ResponsesRecord",
    "ScanResult",
    "iter_records",
    "pairs_from_responses",
    "scan",
    "transcript_messages",
]

DEFAULT_LIMITS = ImportLimits()
Container = Literal["jsonl", "csv", "json", "parquet"]
_CONTAINERS: dict[str, Container] = {c: c for c in ("jsonl", "csv", "json", "parquet")}


class ImportFileInvalid(ValueError):
    """`iter_records` met a problem: the file is not the one that scanned clean."""

    def __init__(self, issue: ImportIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


@dataclass(frozen=True)
class ScanResult:
    filename: str
    sha256: str | None  # of the bytes as uploaded; None if the file was too large to read whole
    size_bytes: int  # bytes read of the upload
    compressed: bool  # gzip
    container: Container | None  # None when the file could not be opened
    format: ImportFormat | None
    record_count: int  # valid records (for the CSV long form, prompts)
    response_count: int  # responses in the valid records
    errors: tuple[ImportIssue, ...]  # the first max_errors, in file order
    error_count: int  # all of them
    samples: tuple[Record, ...]  # the first max_samples valid records, for the preview
    extra_keys: tuple[str, ...]  # unknown fields and columns, kept as metadata
    warnings: tuple[ImportIssue, ...] = ()  # the first max_errors (empty responses), in order
    warning_count: int = 0
    skipped: SkipTally = field(default_factory=lambda: SkipTally())  # records with errors

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    @property
    def ok_when_skipping(self) -> bool:
        """Whether `on_invalid=skip` would import something: records, and no file-wide error."""
        return self.record_count > 0 and not self.skipped.refused


class SkipTally:
    """The records with errors, counted by reason (at most MAX_REASONS of them, the rest
    together under OTHER_REASONS); `refused` when a problem was with the whole file."""

    MAX_REASONS = 100
    OTHER_REASONS = "other reasons"

    def __init__(self) -> None:
        self.count = 0
        self.by_reason: dict[str, int] = {}
        self.refused = False
        self._pending: list[ImportIssue] = []  # the issues of the record being read

    def issue(self, issue: ImportIssue) -> None:
        if not issue.skippable:
            self.refused = True
        else:
            self._pending.append(issue)

    def rejected(self) -> tuple[str, list[ImportIssue]]:
        """Count a rejected record under the reason of its first issue; its reason and issues."""
        issues, self._pending = self._pending, []
        reason = issues[0].reason if issues else self.OTHER_REASONS
        self.count += 1
        if reason not in self.by_reason and len(self.by_reason) >= self.MAX_REASONS:
            reason = self.OTHER_REASONS
        self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
        return reason, issues


def _format_arg(value: str | None) -> ImportFormat | None:
    if not value:
        return None
    try:
        return ImportFormat(value)
    except ValueError:
        choices = ", ".join(f.value for f in ImportFormat)
        raise ValueError(f"unknown import format {value!r}; expected one of {choices}") from None


def _response_count(record: Record) -> int:
    return len(record.responses) if isinstance(record, ResponsesRecord) else 2


def _jsonl_events(
    lines: Iterable[Line], state: FileState
) -> Iterator[Record | ImportIssue | Rejected]:
    """Each record, or its issues followed by a `Rejected` (blank lines are no records)."""
    for line in lines:
        data = line.data.removeprefix(UTF8_BOM) if line.number == 1 else line.data
        if not line.too_long and (not data or data.isspace()):
            continue
        state.count_record(line.number, "line")
        record, findings = _jsonl_record(line, data, state)
        yield from findings
        if record is not None:
            yield record
        else:
            yield Rejected(line.number, "line", None if line.too_long else line.data)


def _jsonl_record(
    line: Line, data: bytes, state: FileState
) -> tuple[Record | None, list[ImportIssue]]:
    """One line's record (None when invalid) and what to report about it."""
    limits, number = state.limits, line.number

    def refuse(message: str) -> tuple[None, list[ImportIssue]]:
        return None, [ImportIssue(number, None, message)]

    if line.too_long:
        return refuse(f"longer than the limit of {human_bytes(limits.max_line_bytes)}")
    if b"\x00" in data:
        return refuse("contains a NUL byte; is this a binary or UTF-16 file?")
    try:
        obj = parse_object(data.decode("utf-8"), max_depth=limits.max_depth)
    except UnicodeDecodeError as exc:
        return refuse(
            f"not valid UTF-8: byte 0x{data[exc.start]:02x} at byte {exc.start + 1} of the line"
        )
    except LineInvalid as exc:
        return refuse(str(exc))
    detected = detect_format(set(obj))
    if detected == "ambiguous":
        return refuse(
            "has fields of more than one format (response_a/response_b, "
            "responses, chosen/rejected); one record is one format"
        )
    if detected is None:
        if state.format is None:
            return refuse(
                'not a known record: expected "response_a" and "response_b" '
                '(pair), "responses" (responses) or "chosen" and "rejected" (preference)'
            )
        detected = state.format
    if mismatch := state.match_format(detected, number, "line"):
        return None, [mismatch]
    checker = RecordChecker(obj, line=number, limits=limits)
    record = checker.record(detected)
    if record is None:
        return None, checker.findings()
    state.note_extra_keys(unknown_keys(detected, set(obj)))
    if duplicate := state.claim_id(record.external_id, number, "line"):
        return None, [duplicate]
    repeat = state.claim_pair(record, number, "line")
    return record, checker.findings() + ([repeat] if repeat else [])


def _first_line(upload: Upload) -> Line | None:
    """The first line that is not blank (or is too long to tell); the blank ones are not kept."""
    for line in upload.lines(skip_blank=True):
        if line.too_long or not line.data.removeprefix(UTF8_BOM).isspace():
            return line
    return None


def _events(upload: Upload, state: FileState) -> Iterator[Record | ImportIssue | Rejected | str]:
    """Records and issues in file order, preceded by the container name once it is known."""
    try:
        upload.open()
        if upload.parquet:
            yield "parquet"
            yield from parquet_events(upload, state, _jsonl_record)
            if state.records == 0:
                yield ImportIssue(None, None, "the file holds no records")
            return
        first = _first_line(upload)
        start = first.data.removeprefix(UTF8_BOM).lstrip()[:1] if first else b""
        if first is None or not start:
            yield ImportIssue(None, None, "the file holds no records")
            return
        if start == b"[":
            yield "json"
            yield from array_events(upload, first, state, _jsonl_record)
            if state.records == 0:
                yield ImportIssue(None, None, "the file holds no records")
            return
        if start == b"{":
            yield "jsonl"
            yield from _jsonl_events(itertools.chain([first], upload.lines(skip_blank=True)), state)
            if state.records == 0:
                yield ImportIssue(None, None, "the file holds no records")
        else:
            yield "csv"
            body = itertools.chain([first], upload.lines())
            yield from csv_events(
                body, state, first_row=first.number, skip_blank=upload.skip_blank_lines
            )
    except FileRefused as exc:
        yield replace(exc.issue, fatal=True)


@dataclass
class _ScanTally:
    """What a scan found so far: counts of everything, and the first `max_errors` errors and
    warnings and `max_samples` records (bounded whatever the file's size)."""

    limits: ImportLimits
    container: Container | None = None
    errors: list[ImportIssue] = field(default_factory=list)
    warnings: list[ImportIssue] = field(default_factory=list)
    error_count: int = 0
    warning_count: int = 0
    record_count: int = 0
    response_count: int = 0
    samples: list[Record] = field(default_factory=list)
    skipped: SkipTally = field(default_factory=SkipTally)

    def add(self, event: str | Rejected | ImportIssue | Record) -> None:
        if isinstance(event, str):
            self.container = _CONTAINERS[event]
        elif isinstance(event, Rejected):
            self.skipped.rejected()
        elif isinstance(event, ImportIssue) and event.warning:
            self.warning_count += 1
            if len(self.warnings) < self.limits.max_errors:
                self.warnings.append(event)
        elif isinstance(event, ImportIssue):
            self.error_count += 1
            self.skipped.issue(event)
            if len(self.errors) < self.limits.max_errors:
                self.errors.append(event)
        else:
            self.record_count += 1
            self.response_count += _response_count(event)
            if len(self.samples) < self.limits.max_samples:
                self.samples.append(event)

    def add_repeats(self, repeats: list[ImportIssue]) -> None:
        """Warnings about records that repeat the project's pairs, merged in line order."""
        self.warning_count += len(repeats)
        merged = sorted(self.warnings + repeats, key=lambda issue: issue.line or 0)
        self.warnings = merged[: self.limits.max_errors]


def scan(
    fileobj: BinaryIO,
    *,
    filename: str,
    format: str | None = None,
    limits: ImportLimits = DEFAULT_LIMITS,
    known_pairs: KnownPairs | None = None,
) -> ScanResult:
    """Read the whole upload once and report everything wrong with it, capped at max_errors.

    With `known_pairs` (the project's pairs, by prompt), records that repeat one of them are
    warnings too."""
    state = FileState(_format_arg(format), limits=limits)
    upload = Upload(fileobj, limits=limits)
    tally = _ScanTally(limits)
    for event in _events(upload, state):
        tally.add(event)
    sha256 = upload.finish()
    if known_pairs is not None and (repeats := state.project_repeats(known_pairs)):
        tally.add_repeats(repeats)
    return ScanResult(
        filename=filename,
        sha256=sha256,
        size_bytes=upload.size,
        compressed=upload.compressed,
        container=tally.container,
        format=state.format,
        record_count=tally.record_count,
        response_count=tally.response_count,
        errors=tuple(tally.errors),
        error_count=tally.error_count,
        samples=tuple(tally.samples),
        extra_keys=tuple(sorted(state.extra_keys)),
        warnings=tuple(tally.warnings),
        warning_count=tally.warning_count,
        skipped=tally.skipped,
    )


RejectSink = Callable[[Rejected, str, list[ImportIssue]], None]


def iter_records(
    fileobj: BinaryIO,
    *,
    format: str | None,
    limits: ImportLimits = DEFAULT_LIMITS,
    on_rejected: RejectSink | None = None,
) -> Iterator[Record]:
    """Stream the records of a file that `scan` found valid; pass the format it detected.

    Raises ImportFileInvalid at the first problem, so a file that changed between the passes
    cannot be half imported silently; the caller's transaction rolls back. With `on_rejected`
    (`on_invalid=skip`), a record with errors is handed to it with its reason and issues
    instead, and only a problem with the whole file raises.
    """
    state = FileState(_format_arg(format), limits=limits)
    skipped = SkipTally()
    for event in _events(Upload(fileobj, limits=limits), state):
        if isinstance(event, Rejected):
            if on_rejected is not None:
                on_rejected(event, *skipped.rejected())
        elif isinstance(event, ImportIssue):
            if event.warning:
                continue
            if on_rejected is None or not event.skippable:
                raise ImportFileInvalid(event)
            skipped.issue(event)
        elif not isinstance(event, str):
            yield event
