"""What one pass over a file has learnt so far: its format, the ids seen, the extra keys."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice
from typing import Literal

from annotation.imports.hashing import pair_key, prompt_hash, sha256_text
from annotation.imports.reader import FileRefused
from annotation.imports.records import (
    ImportFormat,
    ImportIssue,
    ImportLimits,
    PairRecord,
    PreferenceRecord,
    Record,
)


class FileState:
    """What one pass has learnt about the file so far: its format, the ids seen, the extra keys."""

    def __init__(self, fmt: ImportFormat | None, *, limits: ImportLimits) -> None:
        self.format = fmt
        self.forced = fmt is not None
        self.format_line: int | None = None
        self.limits = limits
        self.records = 0
        self.extra_keys: set[str] = set()
        self.csv_header = b""  # the header row as uploaded, for the rejects file
        # The one structure that grows with the file: about 100 bytes per id, at most
        # max_records of them (some 200 MB at the default 2,000,000), for duplicate detection.
        self.ids: dict[str, int] = {}
        # Like it, for repeated pairs: 8 bytes of hash of (prompt, the two responses in order)
        # to the first line, about 100 bytes per pair record; and the prompts of those pairs, to
        # look for them among the project's (`project_repeats`).
        self.pairs: dict[bytes, int] = {}
        self.pair_prompts: set[str] = set()
        self.pair_unit: Literal["line", "row"] = "line"

    def count_record(self, line: int, unit: Literal["line", "row"]) -> None:
        self.records += 1
        if self.records > self.limits.max_records:
            raise FileRefused(
                ImportIssue(
                    line,
                    None,
                    f"more than the limit of {self.limits.max_records:,} records; split the file",
                    unit,
                )
            )

    def match_format(
        self, detected: ImportFormat, line: int, unit: Literal["line", "row"]
    ) -> ImportIssue | None:
        if self.format is None:
            self.format, self.format_line = detected, line
            return None
        if detected is self.format:
            return None
        origin = "as asked" if self.forced else f"from {unit} {self.format_line}"
        return ImportIssue(
            line,
            None,
            f'a "{detected}" record, but this file holds "{self.format}" records ({origin}); '
            "one file holds one format",
            unit,
        )

    def claim_id(
        self, external_id: str | None, line: int, unit: Literal["line", "row"]
    ) -> ImportIssue | None:
        if external_id is None:
            return None
        first = self.ids.setdefault(external_id, line)
        if first == line:
            return None
        return ImportIssue(
            line, "id", f'"{external_id}" is used twice: on {unit} {first} and {unit} {line}', unit
        )

    def claim_pair(
        self, record: Record, line: int, unit: Literal["line", "row"]
    ) -> ImportIssue | None:
        """A warning when the record repeats the pair of an earlier one, in either order."""
        if isinstance(record, PairRecord):
            sides = (record.response_a, record.response_b)
        elif isinstance(record, PreferenceRecord):
            sides = (record.chosen, record.rejected)
        else:
            return None  # the pairing rule picks the pairs of a responses record
        prompt, one, other = (
            prompt_hash(record.prompt),
            sha256_text(sides[0]),
            sha256_text(sides[1]),
        )
        keys = (pair_key(prompt, one, other), pair_key(prompt, other, one))
        first = self.pairs.get(keys[0])
        swapped = first is None and (first := self.pairs.get(keys[1])) is not None
        if first is None:
            self.pairs[keys[0]] = line
            self.pair_prompts.add(prompt)
            self.pair_unit = unit
            return None
        order = ", in the other order" if swapped else ""
        return ImportIssue(
            line,
            None,
            f"repeats the pair of {unit} {first}{order}: merged into it, not created again",
            unit,
            warning=True,
        )

    def project_repeats(self, known_pairs: KnownPairs) -> list[ImportIssue]:
        """A warning for each record whose pair the project holds already, in either order."""
        repeats: list[ImportIssue] = []
        prompts = iter(self.pair_prompts)
        while chunk := list(islice(prompts, KNOWN_PAIRS_CHUNK)):
            for prompt, hash_a, hash_b, where in known_pairs(chunk):
                for key in (pair_key(prompt, hash_a, hash_b), pair_key(prompt, hash_b, hash_a)):
                    if (line := self.pairs.get(key)) is not None:
                        repeats.append(_project_repeat(line, where, self.pair_unit))
        return sorted(repeats, key=lambda issue: issue.line or 0)

    def note_extra_keys(self, keys: set[str]) -> None:
        if len(self.extra_keys) < 50:
            self.extra_keys.update(keys)


# Given some prompt hashes, the project's pairs of those prompts: (prompt hash, hash of response
# a, hash of response b, where the pair is, e.g. 'pair 12 of batch 3 ("day1.jsonl")').
KnownPairs = Callable[[list[str]], Iterable[tuple[str, str, str, str]]]
KNOWN_PAIRS_CHUNK = 2_000  # prompt hashes per query


def _project_repeat(line: int, where: str, unit: Literal["line", "row"]) -> ImportIssue:
    return ImportIssue(
        line,
        None,
        f"repeats {where}, already in the project: merged into it, not created again",
        unit,
        warning=True,
    )
