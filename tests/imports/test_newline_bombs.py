"""Newline bombs (issue 11, item 1): nothing the parser keeps may grow with blank lines.

A gzip of 10 MiB of newlines once took 1.6 GB to scan, because every leading blank line was
kept. Each file is scanned in a child process, whose own peak RSS (ru_maxrss) is compared with
its RSS before the scan, so other tests' allocations cannot blur the figure; time is the child's
CPU time, so a loaded machine does not make the test flaky.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

MIB = 1024 * 1024
RECORD = b'{"prompt": "p", "response_a": "a", "response_b": "b"}\n'
CSV_HEADER = b"prompt,response_a,response_b\n"
CSV_ROW = b"p,a,b\n"

_CHILD = """
import json, resource, sys, time
from annotation.imports.parsing import scan
usage = resource.getrusage(resource.RUSAGE_SELF)
before, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
started = time.perf_counter()
with open(sys.argv[1], "rb") as f:
    result = scan(f, filename="bomb.gz")
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "seconds": time.perf_counter() - started,
    "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu,
    "grown_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before,
    "records": result.record_count,
    "errors": [str(e) for e in result.errors],
    "first_line": result.samples[0].line if result.samples else None,
}))
"""


def _gzip_file(path: Path, head: bytes, newlines: int, tail: bytes) -> Path:
    """head, `newlines` newlines, then tail, gzipped. One MiB of newlines is compressed once and
    written as a gzip member per MiB: gunzip reads concatenated members as one stream, and a GiB
    is built in a blink instead of seconds of deflate."""
    mib = gzip.compress(b"\n" * MIB, compresslevel=9)
    with path.open("wb") as out:
        out.write(gzip.compress(head))
        for _ in range(newlines // MIB):
            out.write(mib)
        out.write(gzip.compress(b"\n" * (newlines % MIB) + tail))
    return path


def _scan_in_child(path: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=120,
    )
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("head", "tail"),
    [(b"", RECORD), (RECORD, RECORD), (CSV_HEADER, CSV_ROW)],
    ids=["leading", "between-records", "csv-between-rows"],
)
def test_ten_mib_of_newlines_scans_in_bounded_memory_and_time(tmp_path, head, tail):
    path = _gzip_file(tmp_path / "bomb.jsonl.gz", head, 10 * MIB, tail)
    assert path.stat().st_size < 50_000
    report = _scan_in_child(path)
    assert report["errors"] == []
    assert report["records"] == (2 if head == RECORD else 1)
    assert report["grown_kib"] < 200 * 1024
    assert report["cpu_seconds"] < 5  # CPU time: other processes on the machine do not count


@pytest.mark.parametrize("head", [b"", CSV_HEADER], ids=["jsonl", "csv"])
def test_a_gib_of_newlines_stops_at_the_decompressed_cap_in_bounded_memory_and_time(tmp_path, head):
    path = _gzip_file(tmp_path / "bomb.gz", head, 1024 * MIB, RECORD if not head else CSV_ROW)
    assert path.stat().st_size < 2 * MIB
    report = _scan_in_child(path)
    assert report["errors"] == ["the file decompresses to more than the limit of 1 GB"]
    assert report["grown_kib"] < 200 * 1024
    assert report["cpu_seconds"] < 10


def test_a_record_after_a_mib_of_newlines_keeps_its_physical_line_number(tmp_path):
    path = _gzip_file(tmp_path / "late.jsonl.gz", b"", MIB, RECORD)
    assert _scan_in_child(path)["first_line"] == MIB + 1
