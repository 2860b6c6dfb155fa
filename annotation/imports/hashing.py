"""Content hashes of prompts and responses: how the project knows a text it has seen already.

The writer stores them (`Prompt.content_hash`, `Response.content_hash`) and de-duplicates by
them; the scan keys repeated pairs by them, so that a dry run can match a file's pairs against
the project's without reading any stored text.
"""

from __future__ import annotations

import hashlib
import json

from annotation.imports.records import Prompt


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def canonical_messages(content: Prompt) -> list[dict[str, str]] | None:
    """A chat prompt's messages as stored; None for a plain-text prompt."""
    if isinstance(content, str):
        return None
    return [{"role": m.role, "content": m.content} for m in content]


def prompt_hash(content: Prompt) -> str:
    messages = canonical_messages(content)
    if messages is None:
        return sha256_text(str(content))
    canonical = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return sha256_text("messages:" + canonical)


def pair_key(prompt: str, first: str, second: str) -> bytes:
    """8 bytes naming (prompt hash, first response hash, second response hash), in that order."""
    return hashlib.blake2b(f"{prompt}:{first}:{second}".encode(), digest_size=8).digest()
