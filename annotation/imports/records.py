"""The records an import file holds, the limits it is read under, and the problems found in it.

Plain frozen dataclasses. Text is kept exactly as uploaded (whitespace, Unicode, line breaks), so
what goes in comes back out byte for byte. `metadata` holds JSON values; the dataclasses are frozen
but the dicts inside are not, so treat them as read-only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

_INDEX = re.compile(r"\[\d+\]")
_NUMBER = re.compile(r"\b\d+(?:[.,]\d+)*\b")


class ImportFormat(StrEnum):
    PAIR = "pair"
    RESPONSES = "responses"
    PREFERENCE = "preference"


MB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class ImportLimits:
    max_upload_bytes: int = 200 * MB  # the file as uploaded, compressed or not
    max_decompressed_bytes: int = 1024 * MB  # after gunzip: a 1 MB gzip bomb can expand to 1 GB
    max_line_bytes: int = 32 * MB  # one JSONL line or one CSV row; the memory one record may take
    max_depth: int = 20  # JSON nesting; the record object itself is level 1
    max_records: int = 2_000_000  # JSONL lines or CSV rows holding data
    max_field_chars: int = 1_000_000  # one prompt, response or message content (~250k tokens)
    max_name_chars: int = 200  # an id or a model name
    max_responses: int = 100  # per prompt in the responses format; "all" pairs grows as n^2
    max_errors: int = 1000  # errors kept for the report; all of them are counted
    max_samples: int = 5  # valid records returned by a scan for the dry-run preview


@dataclass(frozen=True)
class ImportIssue:
    """One problem, located by its 1-based line (JSONL) or row (CSV, the header being row 1).

    `line` is None for a problem with the whole file (too large, not gzip, no records). A
    `warning` does not stop the record (an empty response: data, but worth a look).
    """

    line: int | None
    field: str | None
    message: str
    unit: Literal["line", "row"] = "line"
    warning: bool = False
    fatal: bool = False  # reading stopped here: the whole file is refused, even in skip mode

    @property
    def skippable(self) -> bool:
        """A problem with one record, which `on_invalid=skip` leaves out; not with the file."""
        return self.line is not None and not self.fatal

    @property
    def reason(self) -> str:
        """What went wrong, without the record's own numbers: the key skipped records are
        counted by ("responses[n].text: longer than the limit of N characters")."""
        field = _INDEX.sub("[n]", self.field) if self.field else "record"
        return f"{field}: {_NUMBER.sub('N', self.message)}"

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"{self.unit} {self.line}")
        if self.field is not None:
            where.append(f'{"column" if self.unit == "row" else "field"} "{self.field}"')
        return f"{', '.join(where)}: {self.message}" if where else self.message


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


Prompt = str | tuple[ChatMessage, ...]


@dataclass(frozen=True)
class ResponseItem:
    text: str
    model: str | None
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class PairRecord:
    line: int
    prompt: Prompt
    response_a: str
    response_b: str
    model_a: str | None
    model_b: str | None
    external_id: str | None
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class ResponsesRecord:
    line: int  # for the CSV long form, the first row of the prompt_id
    prompt: Prompt
    responses: tuple[ResponseItem, ...]
    external_id: str | None
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class PreferenceRecord:
    """A pair with a known answer. `from_transcript` marks an HH record split by us: then `prompt`
    is the raw transcript up to and including the last "\\n\\nAssistant:", and `chosen`/`rejected`
    are the rest, so `prompt + chosen` is the uploaded "chosen" string byte for byte.
    `transcript_messages(prompt)` gives the same prompt as chat messages.
    """

    line: int
    prompt: Prompt
    chosen: str
    rejected: str
    external_id: str | None
    metadata: Mapping[str, Any]
    from_transcript: bool = False


Record = PairRecord | ResponsesRecord | PreferenceRecord


@dataclass(frozen=True)
class Rejected:
    """A record that had errors (reported just before it): `on_invalid=skip` leaves it out.

    `raw` is its original line (JSONL) or row (CSV), for the rejects file; None when the line
    was over the line limit and so never held whole.
    """

    line: int
    unit: Literal["line", "row"]
    raw: bytes | None
    header: bytes = b""  # a CSV file's header row, so that the rejects file is a CSV file too


def has_empty_response(record: Record) -> bool:
    """Whether a response of the record is empty or only whitespace (imported, with a warning)."""
    if isinstance(record, ResponsesRecord):
        return any(not item.text.strip() for item in record.responses)
    if isinstance(record, PairRecord):
        return not record.response_a.strip() or not record.response_b.strip()
    return not record.chosen.strip() or not record.rejected.strip()


ASSISTANT_MARKER = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


def transcript_messages(transcript: str) -> tuple[ChatMessage, ...]:
    """The turns of an HH transcript ("\\n\\nHuman: ...\\n\\nAssistant: ...") as chat messages.

    A lossy view for display and for chat templates: turn text is stripped of surrounding
    whitespace, and a final empty "Assistant:" (the cue to answer) is dropped. Keep the
    transcript itself when bytes matter. Raises ValueError for text that is not a transcript.
    """
    parts = _TURN.split(transcript)
    if parts[0].strip() or len(parts) < 3:
        raise ValueError('an HH transcript starts with "\\n\\nHuman:" and alternates turns')
    messages = [
        ChatMessage(role="user" if speaker == "Human" else "assistant", content=text.strip())
        for speaker, text in zip(parts[1::2], parts[2::2], strict=True)
    ]
    if messages[-1].role == "assistant" and not messages[-1].content:
        messages.pop()
    return tuple(messages)
