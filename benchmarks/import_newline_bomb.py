"""Newline bombs through the parser: seconds and peak RSS growth for gzips of newlines.

    .venv/bin/python benchmarks/import_newline_bomb.py

Each file is scanned in a fresh child process (what a dry run does to an upload), which
reports the growth of its own peak RSS (ru_maxrss) over the scan. Issue 11, item 1: before the
fix a gzip of 10 MiB of newlines grew a worker by 1.4 GB; now nothing is kept for blank lines.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
from pathlib import Path

MIB = 1024 * 1024
RECORD = b'{"prompt": "p", "response_a": "a", "response_b": "b"}\n'
CHILD = """
import json, resource, sys, time
from annotation.imports.parsing import scan
usage = resource.getrusage(resource.RUSAGE_SELF)
before, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
started = time.perf_counter()
with open(sys.argv[1], "rb") as f:
    result = scan(f, filename="bomb.gz")
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": time.perf_counter() - started,
                  "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu,
                  "grown_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
                  "records": result.record_count,
                  "errors": [str(e) for e in result.errors]}))
"""


def bomb(path: Path, head: bytes, newlines: int, tail: bytes) -> Path:
    """head, then newlines, then tail, as concatenated gzip members (one per MiB)."""
    block = gzip.compress(b"\n" * MIB, compresslevel=9)
    with path.open("wb") as out:
        out.write(gzip.compress(head))
        for _ in range(newlines // MIB):
            out.write(block)
        out.write(gzip.compress(tail))
    return path


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    cases = [
        ("10 MiB newlines, then a record", b"", 10 * MIB, RECORD),
        ("a record, 10 MiB newlines, a record", RECORD, 10 * MIB, RECORD),
        (
            "CSV header, 10 MiB newlines, a row",
            b"prompt,response_a,response_b\n",
            10 * MIB,
            b"p,a,b\n",
        ),
        ("1 GiB newlines, then a record", b"", 1024 * MIB, RECORD),
    ]
    with tempfile.TemporaryDirectory() as folder:
        for name, head, newlines, tail in cases:
            path = bomb(Path(folder) / "bomb.gz", head, newlines, tail)
            done = subprocess.run(
                [sys.executable, "-c", CHILD, str(path)], capture_output=True, check=True, cwd=root
            )
            report = json.loads(done.stdout)
            outcome = report["errors"][0] if report["errors"] else f"{report['records']} record(s)"
            print(
                f"{name:40} {path.stat().st_size / 1024:8.0f} KiB gzip  "
                f"{report['seconds']:6.2f} s ({report['cpu_seconds']:5.2f} s CPU)  "
                f"+{report['grown_mib']:5.1f} MiB  {outcome}"
            )


if __name__ == "__main__":
    main()
