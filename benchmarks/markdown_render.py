"""Time the `markdown` filter on prose and on adversarial Markdown, under and over the budget.

    DEBUG=true .venv/bin/python benchmarks/markdown_render.py

Prints, for each text shape, the seconds of a first (uncached) render, a second (cached) one,
and the characters per second of the first: the figures that set MARKDOWN_RENDER_MAX_CHARS.
Texts over the budget are shown plain, so their "render" is escaping only.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.core.cache import caches  # noqa: E402

from annotation.templatetags.pairwise_markdown import markdown_html  # noqa: E402

PROSE = "Some **bold** prose with `code`, a [link](https://example.com) and a list:\n\n- one\n\n"
SHAPES = {
    "prose": PROSE,
    "*a (emphasis)": "*a",
    "[ (brackets)": "[",
    "a\\n (soft breaks)": "a\n",
    "_a (underscores)": "_a",
}


def timed(text: str) -> float:
    started = time.perf_counter()
    markdown_html(text)
    return time.perf_counter() - started


def main() -> None:
    budget = settings.MARKDOWN_RENDER_MAX_CHARS
    print(f"python {platform.python_version()}, budget {budget:,} characters")
    print(f"{'text':20} {'chars':>10} {'first s':>8} {'cached s':>9} {'chars/s':>10}")
    for size in (budget, 5 * 1024 * 1024):
        for name, unit in SHAPES.items():
            text = (unit * (size // len(unit) + 1))[:size]
            caches["markdown"].clear()
            first, second = timed(text), timed(text)
            print(f"{name:20} {size:>10,} {first:8.3f} {second:9.4f} {size / first:10,.0f}")


if __name__ == "__main__":
    main()
