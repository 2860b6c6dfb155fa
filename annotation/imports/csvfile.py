"""CSV files: a header row names the columns, each later row is one record (or, in the long form
of the responses format, one response of the prompt its `prompt_id` names).

Rows are numbered as a spreadsheet shows them: the header is row 1, and a quoted cell spanning
several lines is still one row. Columns other than the known ones go into `metadata` as text;
empty optional cells count as absent. A prompt in CSV is always text.

Cost: the long form groups rows by `prompt_id` wherever they are in the file, so it holds every
response of the file in memory until the end (at most max_decompressed_bytes of text). Files too
big for that belong in JSONL, one prompt with its responses per line.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from annotation.imports.fields import RecordChecker
from annotation.imports.reader import UTF8_BOM, FileRefused, Line, human_bytes
from annotation.imports.records import (
    ImportFormat,
    ImportIssue,
    Record,
    Rejected,
    ResponseItem,
    ResponsesRecord,
)
from annotation.imports.state import FileState

_REQUIRED = {
    ImportFormat.PAIR: ("prompt", "response_a", "response_b"),
    ImportFormat.PREFERENCE: ("chosen", "rejected"),
    ImportFormat.RESPONSES: ("prompt_id", "prompt", "response"),
}
_LONG_FORM_KNOWN = {"prompt_id", "prompt", "model", "response"}
_EXPECTED = (
    "expected the columns prompt, response_a, response_b (pair), prompt, chosen, rejected "
    "(preference) or prompt_id, prompt, model, response (responses)"
)


class _Feed:
    """Decoded lines for csv.reader, with the problems of the lines read for the current row.

    csv.reader asks for more lines while a quoted cell is open, so one row can pull in the rest
    of the file; `pending` caps the bytes of one row at the line limit.
    """

    def __init__(self, lines: Iterable[Line], *, max_row_bytes: int) -> None:
        self._lines = iter(lines)
        self._max_row_bytes = max_row_bytes
        self.row = 1
        self.pending = 0
        self.problems: list[str] = []
        self.raw: list[bytes] = []  # the lines of the current row, as uploaded

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.pending += len(line.data)
        self.raw.append(line.data)
        if line.too_long or self.pending > self._max_row_bytes:
            raise FileRefused(
                ImportIssue(
                    self.row,
                    None,
                    f"longer than the limit of {human_bytes(self._max_row_bytes)}; "
                    "check for a quote that is never closed",
                    "row",
                )
            )
        data = line.data.removeprefix(UTF8_BOM) if line.number == 1 else line.data
        if b"\x00" in data:
            self.problems.append("contains a NUL byte; is this a binary or UTF-16 file?")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            self.problems.append(
                f"not valid UTF-8: byte 0x{data[exc.start]:02x} at byte {exc.start + 1} of line "
                f"{line.number}"
            )
            return data.decode("utf-8", "replace")

    def next_row(self, row: int) -> tuple[list[ImportIssue], bytes]:
        """The problems and the raw bytes of the row just read; the next one starts empty."""
        issues = [ImportIssue(row, None, problem, "row") for problem in self.problems]
        raw = b"".join(self.raw)
        self.problems.clear()
        self.raw.clear()
        self.pending = 0
        self.row = row + 1
        return issues, raw


@dataclass(frozen=True)
class _Row:
    number: int
    cells: list[str] | None  # None when the CSV itself is malformed there
    issues: list[ImportIssue]
    raw: bytes


@dataclass
class _Group:
    """The valid rows of one prompt_id of the long form, kept until the end of the file."""

    row: int
    prompt: str
    items: list[ResponseItem] = field(default_factory=list)
    rows: list[_Row] = field(default_factory=list)
    failed_row: int | None = None  # the first invalid row of this prompt_id, if any


def _rows(feed: _Feed, first_row: int, skip_blank: Callable[[], int]) -> Iterator[_Row]:
    """The rows from `first_row` on. Between rows (never inside a quoted cell, where a blank
    line is text) runs of blank lines are skipped in bulk; each still counts as a row."""
    reader = csv.reader(feed, strict=True)
    row = first_row - 1
    while True:
        if row >= first_row:
            row += skip_blank()
        feed.row = row + 1
        malformed = None
        try:
            cells: list[str] | None = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            cells, malformed = None, ImportIssue(row + 1, None, f"malformed CSV: {exc}", "row")
        row += 1
        issues, raw = feed.next_row(row)
        yield _Row(row, cells, [*issues, malformed] if malformed else issues, raw)


def _header(
    cells: list[str], row: int, forced: ImportFormat | None
) -> tuple[list[str], ImportFormat]:
    names = [cell.strip().lower() for cell in cells]
    for i, name in enumerate(names):
        if not name:
            raise FileRefused(ImportIssue(row, None, f"column {i + 1} has no name", "row"))
        if name in names[:i]:
            raise FileRefused(ImportIssue(row, name, "appears twice in the header", "row"))
    found = set(names)
    detected = [
        fmt
        for fmt, marks in (
            (ImportFormat.PAIR, {"response_a", "response_b"}),
            (ImportFormat.PREFERENCE, {"chosen", "rejected"}),
            (ImportFormat.RESPONSES, {"prompt_id", "response"}),
        )
        if found & marks
    ]
    fmt = forced
    if fmt is None:
        if len(detected) != 1:
            what = "columns of several formats" if detected else "no known columns"
            raise FileRefused(ImportIssue(row, None, f"the header has {what}; {_EXPECTED}", "row"))
        fmt = detected[0]
    missing = [name for name in _REQUIRED[fmt] if name not in found]
    if missing:
        raise FileRefused(
            ImportIssue(
                row,
                None,
                f"missing the required column{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} for the {fmt} format (found: {', '.join(names)})",
                "row",
            )
        )
    return names, fmt


def csv_events(
    lines: Iterable[Line], state: FileState, *, first_row: int, skip_blank: Callable[[], int]
) -> Iterator[Record | ImportIssue | Rejected]:
    """The records and issues of a CSV file whose first (non-blank) line is `first_row`; a row
    with issues is followed by its `Rejected`."""
    limits = state.limits
    # A process-wide setting, so it is only ever raised: the row cap in _Feed bounds memory,
    # and text fields are checked against max_field_chars with a clearer message.
    if csv.field_size_limit() < limits.max_line_bytes:
        csv.field_size_limit(limits.max_line_bytes)
    rows = _rows(_Feed(lines, max_row_bytes=limits.max_line_bytes), first_row, skip_blank)
    header = next((row for row in rows if row.issues or row.cells), None)
    if header is None:
        yield ImportIssue(None, None, "the file holds no records")
        return
    if header.issues or header.cells is None:
        raise FileRefused(header.issues[0])
    names, fmt = _header(header.cells, header.number, state.format)
    state.match_format(fmt, header.number, "row")
    state.csv_header = header.raw
    groups: dict[str, _Group] = {}
    for row in rows:
        if not row.issues and not row.cells:
            continue
        state.count_record(row.number, "row")
        record, findings = _csv_record(row, names, fmt, state, groups)
        yield from findings
        if record is not None:
            yield record
        elif findings and not findings[0].warning:
            yield Rejected(row.number, "row", row.raw, header.raw)
    if state.records == 0:
        yield ImportIssue(None, None, "the file holds no records")
        return
    if fmt is ImportFormat.RESPONSES:
        state.note_extra_keys(set(names) - _LONG_FORM_KNOWN)
        yield from _long_form_groups(groups, state)


def _csv_record(
    row: _Row, names: list[str], fmt: ImportFormat, state: FileState, groups: dict[str, _Group]
) -> tuple[Record | None, list[ImportIssue]]:
    """One row's record (None when invalid, or kept for its long-form group) and its findings."""
    if row.issues or row.cells is None:
        return None, row.issues
    if len(row.cells) != len(names):
        message = f"expected {len(names)} columns, found {len(row.cells)}"
        return None, [ImportIssue(row.number, None, message, "row")]
    required = set(_REQUIRED[fmt])
    fields = {
        name: cell for name, cell in zip(names, row.cells, strict=True) if cell or name in required
    }
    checker = RecordChecker(fields, line=row.number, limits=state.limits, unit="row")
    if fmt is ImportFormat.RESPONSES:
        _long_form_row(checker, row, groups)
        return None, checker.findings()
    record = checker.record(fmt)
    if record is None:
        return None, checker.findings()
    state.note_extra_keys(fields.keys() - required - {"model_a", "model_b", "id"})
    if duplicate := state.claim_id(record.external_id, row.number, "row"):
        return None, [duplicate]
    repeat = state.claim_pair(record, row.number, "row")
    return record, checker.findings() + ([repeat] if repeat else [])


def _long_form_row(checker: RecordChecker, row: _Row, groups: dict[str, _Group]) -> None:
    """Check one row of the long form and, when valid, add it to its prompt_id's group."""
    fields = checker.fields
    prompt_id = checker.check_name("prompt_id", fields.get("prompt_id"))
    prompt = checker.check_text(fields.get("prompt"), "prompt")
    text = checker.check_response(fields.get("response"), "response")
    model = checker.check_name("model", fields.get("model"))
    metadata = checker.check_metadata(
        {key: value for key, value in fields.items() if key not in _LONG_FORM_KNOWN},
        set(),
        "metadata",
    )
    if prompt_id is None or prompt is None:
        return
    group = groups.setdefault(prompt_id, _Group(checker.line, prompt))
    if group.prompt != prompt:
        checker.fail(
            "prompt",
            f'differs from the prompt on row {group.row}, which has the same prompt_id "'
            f'{prompt_id}"',
        )
    if text is not None and not checker.issues:
        group.items.append(ResponseItem(text=text, model=model, metadata=metadata))
        group.rows.append(row)
    elif group.failed_row is None:
        group.failed_row = row.number


def _long_form_groups(
    groups: dict[str, _Group], state: FileState
) -> Iterator[Record | ImportIssue | Rejected]:
    """Each prompt_id's record. A prompt_id with an invalid row, or that cannot be a record,
    rejects all of its rows, each with its own issue."""
    for prompt_id, group in groups.items():
        issues = _group_issues(group, state) if group.failed_row is None else []
        if group.failed_row is None and not issues:
            yield ResponsesRecord(group.row, group.prompt, tuple(group.items), prompt_id, {})
            continue
        own = {issue.line: issue for issue in issues}
        first_bad = group.failed_row or issues[0].line
        for row in group.rows:
            yield own.get(row.number) or ImportIssue(
                row.number,
                "prompt_id",
                f'not imported: row {first_bad} of the same prompt_id "{prompt_id}" is invalid',
                "row",
            )
            yield Rejected(row.number, "row", row.raw, state.csv_header)


def _group_issues(group: _Group, state: FileState) -> list[ImportIssue]:
    checker = RecordChecker({}, line=group.row, limits=state.limits, unit="row")
    if not checker.check_response_count(len(group.items), "response"):
        return checker.issues
    issues = []
    first_row: dict[str, int] = {}
    for item, row in zip(group.items, group.rows, strict=True):
        if item.text in first_row:
            issues.append(
                ImportIssue(
                    row.number,
                    "response",
                    f"identical to the response on row {first_row[item.text]} for the same "
                    "prompt_id",
                    "row",
                )
            )
        first_row.setdefault(item.text, row.number)
    return issues
