"""Turning one parsed record (a JSON object or a CSV row as a dict) into a typed record.

Every check reports an `ImportIssue` naming the field; a record with any issue yields no record.
Keys this layer does not know are kept in `metadata` rather than refused: real datasets carry
extras (`source`, `margin`, `question_id`) and dropping or refusing them would lose data or block
imports. A typo in a required field still fails as "missing"; `ScanResult.extra_keys` lists the
kept keys so the dry run can show them.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from annotation.imports.preference import preference_record
from annotation.imports.records import (
    ChatMessage,
    ImportFormat,
    ImportIssue,
    ImportLimits,
    PairRecord,
    Prompt,
    Record,
    ResponseItem,
    ResponsesRecord,
)

_ROLES = ("system", "user", "assistant")
# NUL cannot be stored in a PostgreSQL text column; a lone surrogate (from a JSON "\ud800"
# escape) cannot be encoded as UTF-8. Both would fail later, inside the database write.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_FORMAT_KEYS = {
    ImportFormat.PAIR: ("response_a", "response_b"),
    ImportFormat.RESPONSES: ("responses",),
    ImportFormat.PREFERENCE: ("chosen", "rejected"),
}
_KNOWN_KEYS = {
    ImportFormat.PAIR: {
        "prompt",
        "response_a",
        "response_b",
        "model_a",
        "model_b",
        "id",
        "metadata",
    },
    ImportFormat.RESPONSES: {"prompt", "responses", "id", "metadata"},
    ImportFormat.PREFERENCE: {"prompt", "chosen", "rejected", "id", "metadata"},
}
_ITEM_KEYS = {"text", "model", "metadata"}
EMPTY_RESPONSE_WARNING = 'empty response: imported as it is; raters see "(empty response)"'


def kind_of(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "null"


def _has_unstorable(value: Any) -> bool:
    """Any NUL or lone surrogate in the keys or strings of a JSON value (depth already capped)."""
    if isinstance(value, str):
        return _UNSTORABLE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_unstorable(k) or _has_unstorable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unstorable(v) for v in value)
    return False


def detect_format(keys: set[str]) -> ImportFormat | Literal["ambiguous"] | None:
    """The format whose keys appear, None if none does, "ambiguous" if several do."""
    found = [fmt for fmt, marks in _FORMAT_KEYS.items() if keys.intersection(marks)]
    if len(found) > 1:
        return "ambiguous"
    return found[0] if found else None


def unknown_keys(fmt: ImportFormat, keys: set[str]) -> set[str]:
    return keys - _KNOWN_KEYS[fmt]


class RecordChecker:
    """Checks one record's fields; `issues` collects what is wrong with it."""

    def __init__(
        self,
        fields: dict[str, Any],
        *,
        line: int,
        limits: ImportLimits,
        unit: Literal["line", "row"] = "line",
    ) -> None:
        self.fields = fields
        self.line = line
        self.limits = limits
        self.unit = unit
        self.issues: list[ImportIssue] = []
        self.warnings: list[ImportIssue] = []

    def fail(self, field: str | None, message: str) -> None:
        self.issues.append(ImportIssue(self.line, field, message, self.unit))

    def findings(self) -> list[ImportIssue]:
        """What to report for this record: its errors, or when it has none, its warnings."""
        return self.issues or self.warnings

    def record(self, fmt: ImportFormat) -> Record | None:
        if fmt is ImportFormat.PAIR:
            return self._pair()
        if fmt is ImportFormat.RESPONSES:
            return self._responses()
        return preference_record(self)

    # -- scalar fields -----------------------------------------------------------------------

    def check_text(self, value: Any, name: str) -> str | None:
        if value is None:
            self.fail(name, "missing")
            return None
        if not isinstance(value, str):
            self.fail(name, f"expected text, found {kind_of(value)}")
            return None
        if not value.strip():
            self.fail(name, "empty")
            return None
        return self._storable(value, name, self.limits.max_field_chars)

    def check_response(self, value: Any, name: str) -> str | None:
        """A response: text like any other, except that empty or only whitespace is data (models
        do answer nothing, and raters judge that). It is kept as it is, with a warning."""
        if isinstance(value, str) and not value.strip():
            self.warnings.append(
                ImportIssue(self.line, name, EMPTY_RESPONSE_WARNING, self.unit, warning=True)
            )
            return self._storable(value, name, self.limits.max_field_chars)
        return self.check_text(value, name)

    def _storable(self, value: str, name: str, max_chars: int) -> str | None:
        if len(value) > max_chars:
            self.fail(name, f"longer than the limit of {max_chars:,} characters")
            return None
        if bad := _UNSTORABLE.search(value):
            if bad.group() == "\x00":
                self.fail(name, "contains a NUL character, which cannot be stored")
            else:
                self.fail(name, "contains an unpaired surrogate, which is not valid Unicode")
            return None
        return value

    def check_name(self, key: str, value: Any) -> str | None:
        """An optional short string: a model name or an id (a JSON number id becomes text)."""
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            self.fail(key, f"expected text, found {kind_of(value)}")
            return None
        if not value.strip():
            self.fail(key, "empty; leave it out instead")
            return None
        return self._storable(value, key, self.limits.max_name_chars)

    def external_id(self) -> str | None:
        return self.check_name("id", self.fields.get("id"))

    def metadata(self, fmt: ImportFormat) -> dict[str, Any]:
        return self.check_metadata(self.fields, _KNOWN_KEYS[fmt], "metadata")

    def check_metadata(self, obj: dict[str, Any], known: set[str], name: str) -> dict[str, Any]:
        explicit = obj.get("metadata")
        if explicit is None:
            explicit = {}
        elif not isinstance(explicit, dict):
            self.fail(name, f"expected an object, found {kind_of(explicit)}")
            return {}
        merged = dict(explicit)
        for key in obj.keys() - known:
            if key in merged:
                self.fail(key, f'appears both as a field and inside "{name}"')
            merged[key] = obj[key]
        if _has_unstorable(merged):
            self.fail(
                name, "contains a NUL character or an unpaired surrogate, which cannot be stored"
            )
        return merged

    # -- prompts -----------------------------------------------------------------------------

    def prompt(self, value: Any) -> Prompt | None:
        if isinstance(value, list):
            return self.messages(value, "prompt")
        return self.check_text(value, "prompt")

    def messages(self, value: list[Any], name: str) -> tuple[ChatMessage, ...] | None:
        if not value:
            self.fail(name, "an empty list of messages")
            return None
        messages = []
        for i, item in enumerate(value):
            where = f"{name}[{i}]"
            if not isinstance(item, dict):
                self.fail(where, f'expected a message {{"role", "content"}}, found {kind_of(item)}')
                continue
            if extra := item.keys() - {"role", "content"}:
                self.fail(where, f"unexpected keys {sorted(extra)}; a message has role and content")
                continue
            role, content = item.get("role"), item.get("content")
            if role not in _ROLES:
                self.fail(f"{where}.role", f"expected one of {', '.join(_ROLES)}, found {role!r}")
                continue
            if not isinstance(content, str):
                self.fail(f"{where}.content", f"expected text, found {kind_of(content)}")
                continue
            if self._storable(content, f"{where}.content", self.limits.max_field_chars) is None:
                continue
            messages.append(ChatMessage(role=role, content=content))
        return tuple(messages) if len(messages) == len(value) else None

    # -- the three formats -------------------------------------------------------------------

    def _pair(self) -> PairRecord | None:
        f = self.fields
        prompt = self.prompt(f.get("prompt"))
        response_a = self.check_response(f.get("response_a"), "response_a")
        response_b = self.check_response(f.get("response_b"), "response_b")
        if response_a is not None and response_a == response_b:
            self.fail("response_b", 'identical to "response_a"; the two responses must differ')
        model_a = self.check_name("model_a", f.get("model_a"))
        model_b = self.check_name("model_b", f.get("model_b"))
        external_id = self.external_id()
        metadata = self.metadata(ImportFormat.PAIR)
        if self.issues or prompt is None or response_a is None or response_b is None:
            return None
        return PairRecord(
            self.line, prompt, response_a, response_b, model_a, model_b, external_id, metadata
        )

    def _responses(self) -> ResponsesRecord | None:
        prompt = self.prompt(self.fields.get("prompt"))
        items = self.response_items(self.fields.get("responses"))
        external_id = self.external_id()
        metadata = self.metadata(ImportFormat.RESPONSES)
        if self.issues or prompt is None or items is None:
            return None
        return ResponsesRecord(self.line, prompt, items, external_id, metadata)

    def response_items(self, value: Any) -> tuple[ResponseItem, ...] | None:
        if value is None:
            self.fail("responses", "missing")
            return None
        if not isinstance(value, list):
            self.fail("responses", f"expected a list, found {kind_of(value)}")
            return None
        if not self.check_response_count(len(value), "responses"):
            return None
        items = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.fail(
                    f"responses[{i}]",
                    f'expected an object {{"text", "model"}}, found {kind_of(item)}',
                )
                continue
            text = self.check_response(item.get("text"), f"responses[{i}].text")
            model = self.check_name(f"responses[{i}].model", item.get("model"))
            metadata = self.check_metadata(item, _ITEM_KEYS, f"responses[{i}].metadata")
            if text is not None:
                items.append(ResponseItem(text=text, model=model, metadata=metadata))
        if len(items) != len(value):
            return None
        first_seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.text in first_seen:
                self.fail(
                    f"responses[{i}].text", f"identical to responses[{first_seen[item.text]}]"
                )
            first_seen.setdefault(item.text, i)
        return tuple(items)

    def check_response_count(self, count: int, name: str) -> bool:
        if count < 2:
            self.fail(name, f"needs at least 2 responses, found {count}")
            return False
        if count > self.limits.max_responses:
            self.fail(
                name, f"{count} responses, more than the limit of {self.limits.max_responses}"
            )
            return False
        return True
