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

    def __iter__(self) -> _Feed:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.pending += len(line.data)
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

    def next_row(self, row: int) -> list[ImportIssue]:
        issues = [ImportIssue(row, None, problem, "row") for problem in self.problems]
        self.problems.clear()
        self.pending = 0
        self.row = row + 1
        return issues


@dataclass
class _Group:
    row: int
    prompt: str
    items: list[ResponseItem] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    failed: bool = False  # a row of it was invalid: already reported, the group is not checked


def _rows(
    feed: _Feed, first_row: int, skip_blank: Callable[[], int]
) -> Iterator[tuple[int, list[str] | ImportIssue]]:
    """The rows from `first_row` on. Between rows (never inside a quoted cell, where a blank
    line is text) runs of blank lines are skipped in bulk; each still counts as a row."""
    reader = csv.reader(feed, strict=True)
    row = first_row - 1
    while True:
        if row >= first_row:
            row += skip_blank()
        feed.row = row + 1
        try:
            cells: list[str] | ImportIssue = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            cells = ImportIssue(row + 1, None, f"malformed CSV: {exc}", "row")
        row += 1
        for issue in feed.next_row(row):
            yield row, issue
        yield row, cells


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
) -> Iterator[Record | ImportIssue]:
    """The records and issues of a CSV file whose first (non-blank) line is `first_row`."""
    limits = state.limits
    # A process-wide setting, so it is only ever raised: the row cap in _Feed bounds memory,
    # and text fields are checked against max_field_chars with a clearer message.
    if csv.field_size_limit() < limits.max_line_bytes:
        csv.field_size_limit(limits.max_line_bytes)
    rows = _rows(_Feed(lines, max_row_bytes=limits.max_line_bytes), first_row, skip_blank)
    header: list[str] | None = None
    groups: dict[str, _Group] = {}
    for row, cells in rows:
        if isinstance(cells, ImportIssue):
            yield cells
            continue
        if not cells:
            continue
        if header is None:
            header, fmt = _header(cells, row, state.format)
            state.match_format(fmt, row, "row")
            required = set(_REQUIRED[fmt])
            continue
        state.count_record(row, "row")
        if len(cells) != len(header):
            yield ImportIssue(
                row, None, f"expected {len(header)} columns, found {len(cells)}", "row"
            )
            continue
        fields = {
            name: cell for name, cell in zip(header, cells, strict=True) if cell or name in required
        }
        checker = RecordChecker(fields, line=row, limits=limits, unit="row")
        if fmt is ImportFormat.RESPONSES:
            yield from _long_form_row(checker, groups)
            continue
        record = checker.record(fmt)
        yield from checker.issues
        if record is not None:
            state.note_extra_keys(
                fields.keys() - set(_REQUIRED[fmt]) - {"model_a", "model_b", "id"}
            )
            if duplicate := state.claim_id(record.external_id, row, "row"):
                yield duplicate
            else:
                yield record
    if header is None or state.records == 0:
        yield ImportIssue(None, None, "the file holds no records")
        return
    if fmt is ImportFormat.RESPONSES:
        state.note_extra_keys(set(header) - _LONG_FORM_KNOWN)
        yield from _long_form_groups(groups, state)


def _long_form_row(checker: RecordChecker, groups: dict[str, _Group]) -> Iterator[ImportIssue]:
    fields = checker.fields
    prompt_id = checker.check_name("prompt_id", fields.get("prompt_id"))
    prompt = checker.check_text(fields.get("prompt"), "prompt")
    text = checker.check_text(fields.get("response"), "response")
    model = checker.check_name("model", fields.get("model"))
    metadata = checker.check_metadata(
        {key: value for key, value in fields.items() if key not in _LONG_FORM_KNOWN},
        set(),
        "metadata",
    )
    if prompt_id is not None and prompt is not None:
        group = groups.setdefault(prompt_id, _Group(checker.line, prompt))
        if group.prompt != prompt:
            group.failed = True
            checker.fail(
                "prompt",
                f'differs from the prompt on row {group.row}, which has the same prompt_id "'
                f'{prompt_id}"',
            )
        elif text is not None and not checker.issues:
            group.items.append(ResponseItem(text=text, model=model, metadata=metadata))
            group.rows.append(checker.line)
        else:
            group.failed = True
    yield from checker.issues


def _long_form_groups(
    groups: dict[str, _Group], state: FileState
) -> Iterator[Record | ImportIssue]:
    for prompt_id, group in groups.items():
        if group.failed:
            continue
        checker = RecordChecker({}, line=group.row, limits=state.limits, unit="row")
        if not checker.check_response_count(len(group.items), "response"):
            yield from checker.issues
            continue
        first_row: dict[str, int] = {}
        for item, row in zip(group.items, group.rows, strict=True):
            if item.text in first_row:
                yield ImportIssue(
                    row,
                    "response",
                    f"identical to the response on row {first_row[item.text]} for the same "
                    "prompt_id",
                    "row",
                )
            first_row.setdefault(item.text, row)
        if len(first_row) == len(group.items):
            yield ResponsesRecord(group.row, group.prompt, tuple(group.items), prompt_id, {})
