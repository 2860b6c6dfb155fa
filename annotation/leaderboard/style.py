"""Style counts of one response, as LMArena's style control counts them.

Length is in characters (LMArena counts tokens; the web process has no tokenizer, and only the
ratio of the two responses' lengths enters the fit). Headers are lines starting with one to six
`#` and a space; list items are lines starting with `-`, `*`, `+` or `1.` and a space; bold spans
are `**text**` or `__text__` on one line. Fenced code blocks are left out, as LMArena does, so a
`# comment` or `- x` in code is not Markdown structure.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_CODE_BLOCK = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_HEADER = re.compile(r"^#{1,6}\s", re.MULTILINE)
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+\.)\s", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")


class StyleCounts(NamedTuple):
    length: int
    headers: int
    list_items: int
    bold: int


def style_counts(text: str) -> StyleCounts:
    prose = _CODE_BLOCK.sub("", text)
    return StyleCounts(
        length=len(text),
        headers=len(_HEADER.findall(prose)),
        list_items=len(_LIST_ITEM.findall(prose)),
        bold=len(_BOLD.findall(prose)),
    )
