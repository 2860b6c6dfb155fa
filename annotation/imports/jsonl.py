"""One JSON Lines line to a JSON object, refusing what json.loads would choke on or accept wrongly.

Nesting is measured before parsing: json.loads recurses once per level, so 100,000 nested
brackets would raise RecursionError (or, under a raised recursion limit, crash the process).
Duplicate keys and NaN/Infinity, which json.loads accepts silently, are refused: the first
loses data without a word, the second cannot be stored in a PostgreSQL jsonb column.
"""

from __future__ import annotations

import json
import re
from typing import Any

from annotation.imports.fields import kind_of

_STRUCTURE = re.compile(r'[\\"\[\]{}]')


class LineInvalid(ValueError):
    """The line is not a usable JSON object; the message says why."""


def nesting_exceeds(text: str, max_depth: int) -> bool:
    """Whether brackets outside strings nest deeper than max_depth. Linear and iterative."""
    if text.count("{") + text.count("[") <= max_depth:
        return False
    depth = 0
    in_string = False
    skip = -1
    for match in _STRUCTURE.finditer(text):
        at = match.start()
        if at == skip:
            continue
        char = text[at]
        if in_string:
            if char == "\\":
                skip = at + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > max_depth:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _refuse_constant(name: str) -> Any:
    raise LineInvalid(f"not valid JSON: {name} is not allowed")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        keys = [key for key, _ in pairs]
        duplicate = next(key for i, key in enumerate(keys) if key in keys[:i])
        raise LineInvalid(f'not valid JSON: the key "{duplicate}" appears twice in one object')
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_refuse_constant)


def parse_object(text: str, *, max_depth: int) -> dict[str, Any]:
    if nesting_exceeds(text, max_depth):
        raise LineInvalid(f"nested deeper than the limit of {max_depth} levels")
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise LineInvalid(f"not valid JSON: {exc.msg} at character {exc.pos + 1}") from None
    except RecursionError:
        raise LineInvalid(f"nested deeper than the limit of {max_depth} levels") from None
    except LineInvalid:
        raise
    except ValueError as exc:  # e.g. an integer longer than Python's int digit limit
        raise LineInvalid(f"not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise LineInvalid(f"expected a JSON object {{...}}, found {kind_of(value)}")
    return value
