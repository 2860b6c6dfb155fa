"""From uploaded bytes to bounded lines: hashing, gzip detection, size caps, line length caps.

Memory stays bounded whatever the upload: bytes are read in 64 KiB blocks, gzip output is
decompressed in blocks and counted against a cap (a gzip bomb stops at the cap, not at the end),
and a line longer than the limit is skipped in blocks without ever being held whole. Runs of
blank lines are skipped in blocks too (`skip_blank_lines`), so a file of a billion newlines costs
what decompressing it costs, and nothing is kept for them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

from annotation.imports.records import ImportIssue, ImportLimits

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_BLOCK = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_UNSUPPORTED_MAGIC = {
    b"PK\x03\x04": "a zip archive (or an Excel file)",
    b"BZh": "bzip2-compressed",
    b"\xfd7zXZ": "xz-compressed",
    b"\x28\xb5\x2f\xfd": "zstd-compressed",
}
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_BLANK = b" \t\r\n\x0b\x0c"  # what bytes.isspace() counts as space
_NEWLINES = b"\n" * _BLOCK
UTF8_BOM = b"\xef\xbb\xbf"


class FileRefused(Exception):
    """A problem after which the rest of the file cannot be read meaningfully."""

    def __init__(self, issue: ImportIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


def human_bytes(n: int) -> str:
    for unit, size in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


class _HashingReader(io.RawIOBase):
    """Reads the upload, hashing and counting every byte, refusing past the upload cap."""

    def __init__(self, fileobj: BinaryIO, max_bytes: int) -> None:
        self.fileobj = fileobj
        self._max_bytes = max_bytes
        self._sha256 = hashlib.sha256()
        self.size = 0
        self.too_large = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer)
        data = self.fileobj.read(len(view))
        if not data:
            return 0
        self.size += len(data)
        if self.size > self._max_bytes:
            self.too_large = True
            raise FileRefused(
                ImportIssue(
                    None,
                    None,
                    f"the file is larger than the limit of {human_bytes(self._max_bytes)}",
                )
            )
        self._sha256.update(data)
        view[: len(data)] = data
        return len(data)

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


class _CappedReader(io.RawIOBase):
    """Counts decompressed bytes and refuses past the cap."""

    def __init__(self, source: gzip.GzipFile, max_bytes: int) -> None:
        self._source = source
        self._max_bytes = max_bytes
        self._total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        try:
            n = self._source.readinto(buffer)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise FileRefused(
                ImportIssue(None, None, f"the gzip data is corrupt or truncated ({exc})")
            ) from exc
        self._total += n
        if self._total > self._max_bytes:
            raise FileRefused(
                ImportIssue(
                    None,
                    None,
                    "the file decompresses to more than the limit of "
                    f"{human_bytes(self._max_bytes)}",
                )
            )
        return n


@dataclass(frozen=True)
class Line:
    number: int  # 1-based physical line
    data: bytes  # the line with its ending; for a line over the limit, only its start
    too_long: bool


class Upload:
    """One pass over an uploaded file: `lines()` yields its decompressed lines, then `finish()`
    reads whatever is left so that `sha256` covers every byte of the upload."""

    def __init__(self, fileobj: BinaryIO, *, limits: ImportLimits) -> None:
        self._limits = limits
        self._raw = _HashingReader(fileobj, limits.max_upload_bytes)
        self._buffered = io.BufferedReader(self._raw, _BLOCK)
        self.compressed = False
        self.parquet = False
        self._read_whole = False  # by `seekable`, before a reader that seeks took the file
        self._stream: io.BufferedReader[Any] = self._buffered
        self.line_number = 0  # of the last line read or skipped

    @property
    def size(self) -> int:
        return self._raw.size

    def open(self) -> None:
        """Sniff the first bytes: gzip is recognised by its magic number, never by the name."""
        head = self._buffered.peek(4)[:4]
        self.parquet = head == b"PAR1"
        for magic, what in _UNSUPPORTED_MAGIC.items():
            if head.startswith(magic):
                raise FileRefused(
                    ImportIssue(
                        None,
                        None,
                        f"the file is {what}; upload .jsonl, .json, .csv, .parquet or .gz",
                    )
                )
        if head.startswith(_UTF16_BOMS):
            raise FileRefused(ImportIssue(None, None, "the file is UTF-16; save it as UTF-8"))
        if head.startswith(_GZIP_MAGIC):
            self.compressed = True
            unzipped = gzip.GzipFile(fileobj=self._buffered, mode="rb")
            capped = _CappedReader(unzipped, self._limits.max_decompressed_bytes)
            self._stream = io.BufferedReader(capped, _BLOCK)

    def skip_blank_lines(self) -> int:
        """Skip the whole blank lines at the current position, a buffer at a time; how many."""
        skipped = 0
        while True:
            head = self._stream.peek(_BLOCK)
            if head == _NEWLINES[: len(head)]:  # the usual bomb, compared at memcmp speed
                end = newlines = len(head)
            else:
                blank = len(head) - len(head.lstrip(_BLANK))
                end = head.rfind(b"\n", 0, blank) + 1
                newlines = head.count(b"\n", 0, end)
            if end == 0:
                self.line_number += skipped
                return skipped
            skipped += newlines
            self._stream.read(end)

    def lines(self, *, skip_blank: bool = False) -> Iterator[Line]:
        """The lines from the current position; with `skip_blank`, blank lines are left out
        (their numbers are still counted, so numbers stay physical)."""
        limit = self._limits.max_line_bytes
        while True:
            if skip_blank:
                self.skip_blank_lines()
            line = self._stream.readline(limit + 1)
            if not line:
                return
            self.line_number += 1
            if len(line) <= limit or line.endswith(b"\n"):
                yield Line(self.line_number, line, too_long=False)
                continue
            start = line[:64]
            del line
            while (rest := self._stream.readline(_BLOCK)) and not rest.endswith(b"\n"):
                pass
            yield Line(self.line_number, start, too_long=True)

    def read(self, size: int) -> bytes:
        """Up to `size` bytes from the current position (of the decompressed stream)."""
        return self._stream.read(size)

    def seekable(self) -> BinaryIO:
        """The upload itself, for a format read out of order (Parquet): it is read through once
        first, so that the size cap holds and `finish` has the sha256."""
        while self._buffered.read(_BLOCK):
            pass
        self._read_whole = True
        fileobj = self._raw.fileobj
        fileobj.seek(0)
        return fileobj

    def finish(self) -> str | None:
        """The sha256 of the raw upload, or None when it was too large to read to the end."""
        if self._raw.too_large:
            return None
        if self._read_whole:
            return self._raw.hexdigest()
        try:
            while self._buffered.read(_BLOCK):
                pass
        except FileRefused:
            return None
        return self._raw.hexdigest()
