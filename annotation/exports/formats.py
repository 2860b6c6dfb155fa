"""Serialising export rows: JSONL, CSV and Parquet, each as an iterator of byte chunks.

Every writer takes an iterator of rows and yields chunks of about CHUNK_BYTES, so a response or a
file grows while the rows are read and nothing holds the whole export. JSONL is raw
(`ensure_ascii=False`: UTF-8 text comes out byte for byte as it went in); CSV neutralises
spreadsheet formulas; Parquet is written one row group at a time.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

CHUNK_BYTES = 256 * 1024  # large enough to keep per-chunk overhead small, small enough to stream
ROW_GROUP_ROWS = 10_000  # Parquet rows per row group: bounded memory, efficient reads
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset(_FORMULA_STARTS)


def neutralise(cell: str) -> str:
    """A CSV cell that a spreadsheet would run as a formula, made inert with a leading apostrophe
    (OWASP CSV injection). Values are otherwise unchanged."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def _chunked(pieces: Iterable[bytes]) -> Iterator[bytes]:
    buffer: list[bytes] = []
    size = 0
    for piece in pieces:
        buffer.append(piece)
        size += len(piece)
        if size >= CHUNK_BYTES:
            yield b"".join(buffer)
            buffer, size = [], 0
    if buffer:
        yield b"".join(buffer)


def jsonl(rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(", ", ": ")).encode
    return _chunked((dumps(row) + "\n").encode("utf-8") for row in rows)


def _csv_cell(value: Any) -> str:
    # The common cases first and inline: this runs for every cell of a million-row export.
    if type(value) is str:
        return "'" + value if value[:1] in _FORMULA_FIRST else value
    if value is None:
        return ""
    if value is True or value is False:
        return "true" if value else "false"
    if type(value) is int:
        return str(value)
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    return neutralise(str(value))


def csv_rows(header: Sequence[str], rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """RFC 4180 CSV (CRLF line ends, quoting where needed) with every cell neutralised;
    lists and objects (chat prompts, criteria) as JSON text."""
    out = io.StringIO()
    writer = csv.writer(out)

    def lines() -> Iterator[bytes]:
        writer.writerow(header)
        for row in rows:
            writer.writerow([_csv_cell(row[name]) for name in header])
            if out.tell() >= CHUNK_BYTES:
                yield out.getvalue().encode("utf-8")
                out.seek(0)
                out.truncate()
        yield out.getvalue().encode("utf-8")

    return _chunked(lines())


class _Drain(io.RawIOBase):
    """A write-only sink that hands what was written to the caller, chunk by chunk."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def parquet(schema: Any, rows: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Parquet with `schema` (a pyarrow.Schema), one row group per ROW_GROUP_ROWS rows."""
    import pyarrow as pa  # only exports in Parquet pay for loading pyarrow
    import pyarrow.parquet as pq

    sink = _Drain()
    names = schema.names
    with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
        columns: dict[str, list[Any]] = {name: [] for name in names}
        count = 0
        for row in rows:
            for name in names:
                columns[name].append(row[name])
            count += 1
            if count == ROW_GROUP_ROWS:
                writer.write_table(pa.Table.from_pydict(columns, schema=schema))
                columns = {name: [] for name in names}
                count = 0
                yield sink.take()
        if count:
            writer.write_table(pa.Table.from_pydict(columns, schema=schema))
    yield sink.take()
