"""The dry run's preview: the first pairs of a file as a rater will see them.

Pure (no database): built from the sample records a scan keeps, with the project's pairing rule
for the responses format. Long texts are cut for the page; the import keeps them whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from annotation.imports.pairing import PairingRule, pairs_from_responses
from annotation.imports.records import PairRecord, PreferenceRecord, Record, ResponsesRecord
from annotation.imports.records import Prompt as PromptContent
from annotation.models import Project

PREVIEW_CHARS = 5_000  # per text on the dry-run page
PREVIEW_MESSAGES = 20  # per chat prompt: a record may hold thousands, each rendered as Markdown
PREVIEW_PAIRS = 5


@dataclass(frozen=True)
class PreviewText:
    text: str
    cut: int  # characters left out

    @classmethod
    def of(cls, text: str) -> PreviewText:
        return cls(text[:PREVIEW_CHARS], max(len(text) - PREVIEW_CHARS, 0))


@dataclass(frozen=True)
class PreviewMessage:
    role: str
    content: PreviewText


@dataclass(frozen=True)
class PreviewPair:
    line: int
    prompt: PreviewText | None  # a plain-text prompt
    messages: tuple[PreviewMessage, ...]  # or chat messages
    left: PreviewText
    right: PreviewText
    model_left: str
    model_right: str
    known: str  # "left" or "right" for preference records: the chosen response
    messages_cut: int = 0  # chat messages left out


def _prompt(
    content: PromptContent,
) -> tuple[PreviewText | None, tuple[PreviewMessage, ...], int]:
    """The prompt as previewed: its text, or its first chat messages and how many are left out."""
    if isinstance(content, str):
        return PreviewText.of(content), (), 0
    shown = content[:PREVIEW_MESSAGES]
    messages = tuple(PreviewMessage(m.role, PreviewText.of(m.content)) for m in shown)
    return None, messages, len(content) - len(shown)


def _pairs_of(record: Record, project: Project) -> Iterator[PreviewPair]:
    prompt, messages, messages_cut = _prompt(record.prompt)
    if isinstance(record, PairRecord):
        yield PreviewPair(
            record.line,
            prompt,
            messages,
            PreviewText.of(record.response_a),
            PreviewText.of(record.response_b),
            record.model_a or "",
            record.model_b or "",
            "",
            messages_cut,
        )
    elif isinstance(record, ResponsesRecord):
        rule: PairingRule = (
            "all" if project.pairing_rule == Project.PairingRule.ALL else "k_per_prompt"
        )
        for i, j in pairs_from_responses(record, rule=rule, k=project.pairs_per_prompt):
            first, second = record.responses[i], record.responses[j]
            yield PreviewPair(
                record.line,
                prompt,
                messages,
                PreviewText.of(first.text),
                PreviewText.of(second.text),
                first.model or "",
                second.model or "",
                "",
                messages_cut,
            )
    elif isinstance(record, PreferenceRecord):
        yield PreviewPair(
            record.line,
            prompt,
            messages,
            PreviewText.of(record.chosen),
            PreviewText.of(record.rejected),
            "",
            "",
            "left",
            messages_cut,
        )


def preview_pairs(*, samples: tuple[Record, ...], project: Project) -> list[PreviewPair]:
    pairs: list[PreviewPair] = []
    for record in samples:
        for pair in _pairs_of(record, project):
            pairs.append(pair)
            if len(pairs) == PREVIEW_PAIRS:
                return pairs
    return pairs
