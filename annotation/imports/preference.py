"""Preference records: a prompt with a chosen and a rejected response, in the forms people have.

Explicit (`prompt` + `chosen` + `rejected`, TRL's explicit-prompt form, the answers as text, as
one assistant message, or as the whole conversation repeating the prompt's turns, as UltraFeedback
binarized has them), Anthropic HH transcripts without `prompt` (split at the last
"\n\nAssistant:"), and TRL's implicit-prompt conversational form (two message lists that share
all but their last message).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from annotation.imports.records import (
    ASSISTANT_MARKER,
    ChatMessage,
    ImportFormat,
    PreferenceRecord,
    Prompt,
)

if TYPE_CHECKING:
    from annotation.imports.fields import RecordChecker


def preference_record(checker: RecordChecker) -> PreferenceRecord | None:
    f = checker.fields
    raw_prompt = f.get("prompt")
    chosen, rejected = f.get("chosen"), f.get("rejected")
    from_transcript = False
    prompt: Prompt | None
    if raw_prompt is not None:
        prompt = checker.prompt(raw_prompt)
        chosen = _answer(checker, chosen, "chosen", prompt)
        rejected = _answer(checker, rejected, "rejected", prompt)
    elif isinstance(chosen, list) and isinstance(rejected, list):
        prompt, chosen, rejected = _split_conversations(checker, chosen, rejected)
    elif isinstance(chosen, str) and isinstance(rejected, str):
        prompt, chosen, rejected = _split_transcripts(checker, chosen, rejected)
        from_transcript = True
    else:
        prompt = None
        chosen = _answer(checker, chosen, "chosen", None)
        rejected = _answer(checker, rejected, "rejected", None)
        if chosen is not None and rejected is not None:
            checker.fail(
                "prompt",
                'missing; give a "prompt" or full conversations in both "chosen" and "rejected"',
            )
    if chosen is not None and chosen == rejected:
        checker.fail("rejected", 'identical to "chosen"; the two responses must differ')
    external_id = checker.external_id()
    metadata = checker.metadata(ImportFormat.PREFERENCE)
    if checker.issues or prompt is None or chosen is None or rejected is None:
        return None
    return PreferenceRecord(
        checker.line, prompt, chosen, rejected, external_id, metadata, from_transcript
    )


def _answer(checker: RecordChecker, value: Any, name: str, prompt: Prompt | None) -> str | None:
    """A response as text, or in TRL's conversational form: one assistant message, or the whole
    conversation, whose turns before its last must then be those of the prompt."""
    if not isinstance(value, list):
        return checker.check_response(value, name)
    if not value or not all(isinstance(item, dict) for item in value):
        checker.fail(name, "expected text, one assistant message or the whole conversation")
        return None
    messages = checker.messages(value, name)
    if messages is None:
        return None
    last = len(messages) - 1
    if messages[last].role != "assistant":
        checker.fail(f"{name}[{last}].role", "expected assistant: the answer comes last")
        return None
    if last and prompt is not None and messages[:last] != _as_messages(prompt):
        checker.fail(
            name,
            f'the turns before the answer differ from "prompt"; a whole conversation in "{name}" '
            "must repeat the prompt's turns exactly",
        )
        return None
    return checker.check_response(messages[last].content, f"{name}[{last}].content")


def _as_messages(prompt: Prompt) -> tuple[ChatMessage, ...]:
    if isinstance(prompt, str):
        return (ChatMessage(role="user", content=prompt),)
    return prompt


def _split_transcripts(
    checker: RecordChecker, chosen: str, rejected: str
) -> tuple[str | None, str | None, str | None]:
    """HH: the prompt is everything up to and including the last "\\n\\nAssistant:"."""
    cuts = []
    for text, name in ((chosen, "chosen"), (rejected, "rejected")):
        at = text.rfind(ASSISTANT_MARKER)
        if at < 0:
            checker.fail(
                name,
                'has no "\\n\\nAssistant:" turn to split at; give a "prompt" '
                "field or full HH transcripts",
            )
            return None, None, None
        cuts.append(at + len(ASSISTANT_MARKER))
    prompt = chosen[: cuts[0]]
    if rejected[: cuts[1]] != prompt:
        checker.fail(
            "rejected",
            'the conversation before its last "\\n\\nAssistant:" differs '
            'from that of "chosen"; both must continue the same prompt',
        )
        return None, None, None
    return (
        checker.check_text(prompt, "prompt"),
        checker.check_response(chosen[cuts[0] :], "chosen"),
        checker.check_response(rejected[cuts[1] :], "rejected"),
    )


def _split_conversations(
    checker: RecordChecker, chosen: list[Any], rejected: list[Any]
) -> tuple[tuple[ChatMessage, ...] | None, str | None, str | None]:
    """TRL implicit-prompt conversational form: the shared messages before the last one."""
    chosen_messages = checker.messages(chosen, "chosen")
    rejected_messages = checker.messages(rejected, "rejected")
    if chosen_messages is None or rejected_messages is None:
        return None, None, None
    answers = []
    for messages, name in ((chosen_messages, "chosen"), (rejected_messages, "rejected")):
        if len(messages) < 2 or messages[-1].role != "assistant":
            checker.fail(name, "expected the conversation to end with an assistant message")
            return None, None, None
        answers.append(checker.check_response(messages[-1].content, f"{name}[{len(messages) - 1}]"))
    if chosen_messages[:-1] != rejected_messages[:-1]:
        checker.fail(
            "rejected",
            'the messages before the last one differ from those of "chosen"; '
            "both must continue the same prompt",
        )
        return None, None, None
    return chosen_messages[:-1], answers[0], answers[1]
