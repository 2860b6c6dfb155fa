"""The two containers that are not read line by line: a JSON array of records, and Parquet.

A JSON array is read in blocks and decoded one element at a time (`raw_decode`), so memory is
bounded by one record (max_line_bytes), as for JSON Lines; each record is located by the line it
starts on. A syntax error inside an array leaves no way to find the next record, so it refuses
the file. Parquet is read one row group at a time (pyarrow, imported only for a Parquet upload);
its rows are numbered from 1 and each becomes a JSON object checked exactly as a JSON Lines
record is. Both feed the same `check` as JSON Lines, with the same limits.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from typing import Any

from annotation.imports.jsonl import _DECODER, LineInvalid
from annotation.imports.reader import FileRefused, Line, Upload, human_bytes
from annotation.imports.records import ImportIssue, Record, Rejected
from annotation.imports.state import FileState

Check = Callable[[Line, bytes, FileState], tuple[Record | None, list[ImportIssue]]]
PARQUET_MAGIC = b"PAR1"
_BLOCK = 64 * 1024


def _refuse(line: int | None, message: str) -> FileRefused:
    return FileRefused(ImportIssue(line, None, message))


class _ArrayText:
    """The decoded text of an array upload, read on demand, with the line each offset is on."""

    def __init__(self, upload: Upload, first: bytes, max_bytes: int) -> None:
        self._upload = upload
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._max_bytes = max_bytes
        self.text = self._decode(first)
        self.pos = 0
        self.line = upload.line_number
        self.eof = False

    def _decode(self, data: bytes, final: bool = False) -> str:
        try:
            return self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            raise _refuse(None, f"not valid UTF-8 ({exc.reason})") from None

    def more(self, at_least: int) -> None:
        data = self._upload.read(max(at_least, _BLOCK))
        self.eof = not data
        self.text = self.text[self.pos :] + self._decode(data, final=self.eof)
        self.pos = 0

    def skip(self, chars: str) -> str:
        """Skip `chars`, reading on; the next character, or "" at the end."""
        while True:
            rest = self.text[self.pos :].lstrip(chars)
            self.line += self.text.count("\n", self.pos, len(self.text) - len(rest))
            self.pos = len(self.text) - len(rest)
            if rest or self.eof:
                return rest[:1]
            self.more(_BLOCK)

    def element(self) -> tuple[Any, str]:
        """The next element and its text; reads more (doubling) until it is whole."""
        want = _BLOCK
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except RecursionError:
                raise _refuse(self.line, "nested too deeply") from None
            except LineInvalid as exc:  # a duplicate key or NaN: whole, but no way past it
                raise _refuse(self.line, str(exc)) from None
            except ValueError as exc:
                if self.eof:
                    raise _refuse(self.line, f"not valid JSON in the array: {exc}") from None
                if len(self.text) - self.pos > self._max_bytes:
                    limit = human_bytes(self._max_bytes)
                    raise _refuse(self.line, f"a record longer than the limit of {limit}") from None
                self.more(want)
                want *= 2
                continue
            text = self.text[self.pos : end]
            self.line += text.count("\n")
            self.pos = end
            return value, text


def array_events(
    upload: Upload, first: Line, state: FileState, check: Check
) -> Iterator[Record | ImportIssue | Rejected]:
    """The records of a JSON array whose first non-blank line is `first`."""
    stream = _ArrayText(upload, first.data, state.limits.max_line_bytes)
    stream.line = first.number
    stream.skip(" \t\r\n\ufeff")
    stream.pos += 1  # the "["
    while True:
        if stream.skip(" \t\r\n") == "]":
            return
        line = stream.line
        value, text = stream.element()
        state.count_record(line, "line")
        data = text.encode("utf-8", "surrogatepass")
        yield from _checked(line, data, _compact(value), state, check)
        following = stream.skip(" \t\r\n")
        if following == ",":
            stream.pos += 1
        elif not following:
            raise _refuse(None, 'the JSON array ends without "]"; is the file truncated?')
        elif following != "]":
            raise _refuse(stream.line, 'expected "," or "]" after a record of the array')


def _compact(value: Any) -> bytes:
    """One record as one JSON Lines line, for the rejects file."""
    return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8", "surrogatepass")


def _checked(
    number: int, data: bytes, raw: bytes, state: FileState, check: Check
) -> Iterator[Record | ImportIssue | Rejected]:
    too_long = len(data) > state.limits.max_line_bytes
    record, findings = check(Line(number, data, too_long), data, state)
    yield from findings
    yield record if record is not None else Rejected(number, "line", raw + b"\n")


def parquet_events(
    upload: Upload, state: FileState, check: Check
) -> Iterator[Record | ImportIssue | Rejected]:
    """The rows of a Parquet file, one row group in memory at a time; row N is "line N"."""
    import pyarrow as pa  # only a Parquet upload pays for loading pyarrow
    import pyarrow.parquet as pq

    limits = state.limits
    try:
        parquet = pq.ParquetFile(upload.seekable())
    except (pa.ArrowException, OSError) as exc:
        raise _refuse(None, f"not a readable Parquet file ({exc})") from None
    meta = parquet.metadata
    if meta.num_rows > limits.max_records:
        raise _refuse(
            None, f"more than the limit of {limits.max_records:,} records; split the file"
        )
    number = 0
    for group in range(meta.num_row_groups):
        size = meta.row_group(group).total_byte_size
        if size > limits.max_line_bytes * 8:
            raise _refuse(
                None,
                f"row group {group + 1} holds {human_bytes(size)}, more than the limit of "
                f"{human_bytes(limits.max_line_bytes * 8)}; write it with smaller row groups",
            )
        try:
            rows = parquet.read_row_group(group).to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise _refuse(None, f"row group {group + 1} cannot be read ({exc})") from None
        for row in rows:
            number += 1
            state.count_record(number, "line")
            data = _compact(row)
            yield from _checked(number, data, data, state, check)
