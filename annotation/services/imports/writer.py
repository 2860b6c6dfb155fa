"""Writing validated records: prompts, responses and pairs, de-duplicated within the project.

Records come in chunks (bounded by count and by characters, so a file of multi-megabyte responses
does not fill memory). On PostgreSQL each chunk is COPYed into three temporary tables and moved
into place with one `INSERT ... SELECT ... ON CONFLICT DO NOTHING` per table: a prompt or
response that exists already is reused, a pair that exists already (from this or an earlier
batch) is not created again. Other databases (the embedded SQLite default) take the same chunks
through the ORM's bulk_create, which is slower but needs nothing special.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from django.db import connection
from django.db.models import Model
from django.utils import timezone

from annotation.imports.hashing import canonical_messages, prompt_hash, sha256_text
from annotation.imports.pairing import PairingRule, pairs_from_responses
from annotation.imports.records import PairRecord, PreferenceRecord, Record, ResponsesRecord
from annotation.imports.records import Prompt as PromptContent
from annotation.models import Batch, Pair, Project, Prompt, Response

CHUNK_RECORDS = 10_000  # records per round trip: few statements, bounded memory
CHUNK_CHARS = 32_000_000  # ...and at most this much text, whatever the record count


def prompt_fields(content: PromptContent) -> dict:
    """The stored form of a prompt: plain text, or chat messages, with its content hash."""
    text = content if isinstance(content, str) else ""
    messages = canonical_messages(content)
    return {"text": text, "messages": messages, "content_hash": prompt_hash(content)}


@dataclass(frozen=True, slots=True)
class PromptRow:
    fields: dict  # prompt_fields()
    external_id: str
    metadata: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ResponseRow:
    text: str
    model: str
    metadata: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PairRow:
    prompt_hash: str
    hash_a: str
    hash_b: str
    external_id: str
    gold: str
    seed: str
    metadata: Mapping[str, Any]


@dataclass
class Chunk:
    """The rows one chunk of records makes, each prompt and response once (the first wins)."""

    records: int = 0
    prompts: dict[str, PromptRow] = field(default_factory=dict)
    responses: dict[tuple[str, str], ResponseRow] = field(default_factory=dict)  # (prompt, text)
    pairs: list[PairRow] = field(default_factory=list)


@dataclass
class WriteCounts:
    prompts: int = 0
    responses: int = 0
    pairs: int = 0


def _record_chars(record: Record) -> int:
    prompt = record.prompt
    size = len(prompt) if isinstance(prompt, str) else sum(len(m.content) for m in prompt)
    if isinstance(record, PairRecord):
        return size + len(record.response_a) + len(record.response_b)
    if isinstance(record, ResponsesRecord):
        return size + sum(len(r.text) for r in record.responses)
    return size + len(record.chosen) + len(record.rejected)


def record_chunks(records: Iterator[Record]) -> Iterator[list[Record]]:
    """Consecutive records, at most CHUNK_RECORDS of them and about CHUNK_CHARS of text."""
    while True:
        chunk: list[Record] = []
        chars = 0
        for record in islice(records, CHUNK_RECORDS):
            chunk.append(record)
            chars += _record_chars(record)
            if chars >= CHUNK_CHARS:
                break
        if not chunk:
            return
        yield chunk


_Side = tuple[str, str, Mapping[str, Any]]  # a response's text, model and metadata


class ChunkBuilder:
    """Turns records into the prompt, response and pair rows of a batch."""

    def __init__(self, *, project: Project, known_answers: str) -> None:
        self.project = project
        self.known_answers = known_answers
        self.rule: PairingRule = (
            "all" if project.pairing_rule == Project.PairingRule.ALL else "k_per_prompt"
        )

    def build(self, records: list[Record]) -> Chunk:
        chunk = Chunk(records=len(records))
        for record in records:
            fields = prompt_fields(record.prompt)
            prompt_hash = fields["content_hash"]
            # The extra fields of a record of one pair describe that pair (scores of chosen and
            # rejected, human labels, its source); those of a prompt's responses, the prompt.
            of_pair = not isinstance(record, ResponsesRecord)
            pair_metadata = record.metadata if of_pair else {}
            if prompt_hash not in chunk.prompts:
                chunk.prompts[prompt_hash] = PromptRow(
                    fields, (record.external_id or "")[:200], {} if of_pair else record.metadata
                )
            for (text_a, model_a, meta_a), (text_b, model_b, meta_b), known in self._pairs(
                record, prompt_hash
            ):
                hash_a, hash_b = sha256_text(text_a), sha256_text(text_b)
                if hash_a == hash_b:
                    continue  # two identical responses: nothing to compare
                for text, text_hash, model, meta in (
                    (text_a, hash_a, model_a, meta_a),
                    (text_b, hash_b, model_b, meta_b),
                ):
                    key = (prompt_hash, text_hash)
                    if key not in chunk.responses:
                        chunk.responses[key] = ResponseRow(text, model[:200], meta)
                gold = known if self.known_answers == Batch.KnownAnswers.GOLD else ""
                seed = known if self.known_answers == Batch.KnownAnswers.SEED else ""
                chunk.pairs.append(
                    PairRow(
                        prompt_hash,
                        hash_a,
                        hash_b,
                        (record.external_id or "")[:200],
                        gold,
                        seed,
                        pair_metadata,
                    )
                )
        return chunk

    def _pairs(self, record: Record, prompt_hash: str) -> Iterator[tuple[_Side, _Side, str]]:
        """(text, model, metadata) of response a and of response b, and the known answer."""
        if isinstance(record, PairRecord):
            yield (
                (record.response_a, record.model_a or "", {}),
                (record.response_b, record.model_b or "", {}),
                "",
            )
        elif isinstance(record, ResponsesRecord):
            pairs = pairs_from_responses(record, rule=self.rule, k=self.project.pairs_per_prompt)
            for i, j in pairs:
                first, second = record.responses[i], record.responses[j]
                yield (
                    (first.text, first.model or "", first.metadata),
                    (second.text, second.model or "", second.metadata),
                    "",
                )
        elif isinstance(record, PreferenceRecord):
            # Which response is stored as "a" is decided by a hash, not always "chosen", so that
            # nothing downstream can learn "a wins" from storage order.
            chosen_first = int(sha256_text(prompt_hash + record.chosen)[0], 16) % 2 == 0
            chosen: _Side = (record.chosen, "", {})
            rejected: _Side = (record.rejected, "", {})
            if chosen_first:
                yield chosen, rejected, "a"
            else:
                yield rejected, chosen, "b"


def judgments_needed(*, project: Project, batch: Batch) -> int:
    """Pairs with a known answer need no judgments of their own (gold pairs are served anyway)."""
    return 0 if batch.known_answers != Batch.KnownAnswers.NONE else project.raters_per_pair


def _column_defaults(model: type[Model], given: set[str]) -> dict[str, Any]:
    """Values for the columns of `model` that the import does not set itself, so that a field
    added to the model later gets its default instead of breaking the COPY."""
    values: dict[str, Any] = {}
    for model_field in model._meta.concrete_fields:
        column = model_field.column
        if model_field.primary_key or column is None or column in given:
            continue
        if getattr(model_field, "auto_now", False) or getattr(model_field, "auto_now_add", False):
            value: Any = timezone.now()
        else:
            value = model_field.get_default()
        values[column] = model_field.get_db_prep_save(value, connection)
    return values


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


class _CopyInto:
    """`COPY <table> (<given columns>, <defaulted columns>) FROM STDIN` for one model."""

    def __init__(self, model: type[Model], columns: list[str]) -> None:
        quote = connection.ops.quote_name
        self.defaults = _column_defaults(model, set(columns))
        names = ", ".join(quote(c) for c in [*columns, *self.defaults])
        self.sql = f"COPY {quote(model._meta.db_table)} ({names}) FROM STDIN"
        self.tail = tuple(self.defaults.values())


class CopyWriter:
    """PostgreSQL: COPY new rows straight into the tables, with ids drawn beforehand.

    Existing prompts, responses and pairs are looked up first and skipped (COPY has no ON
    CONFLICT). That is only safe if nobody else inserts into the project meanwhile, so an import
    holds a transaction-level advisory lock on its project: imports into one project take turns.
    """

    LOCK_SPACE = 0x5057  # advisory lock key space of imports ("PW"), the project id is the key

    def __init__(self, *, project: Project, batch: Batch) -> None:
        self.project = project
        self.batch = batch
        self.needed = judgments_needed(project=project, batch=batch)
        self.counts = WriteCounts()
        self.prompt_copy = _CopyInto(
            Prompt,
            [
                "id",
                "project_id",
                "batch_id",
                "content_hash",
                "text",
                "messages",
                "external_id",
                "metadata",
            ],
        )
        self.response_copy = _CopyInto(
            Response,
            ["id", "prompt_id", "batch_id", "content_hash", "text", "model_name", "metadata"],
        )
        self.pair_copy = _CopyInto(
            Pair,
            [
                "project_id",
                "batch_id",
                "prompt_id",
                "response_a_id",
                "response_b_id",
                "external_id",
                "gold_choice",
                "seed_choice",
                "judgments_needed",
                "metadata",
            ],
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [self.LOCK_SPACE, project.id])

    def _ids(self, cursor: Any, model: type[Model], count: int) -> list[int]:
        if count == 0:
            return []
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [model._meta.db_table, count],
        )
        return [row[0] for row in cursor.fetchall()]

    def write(self, chunk: Chunk) -> None:
        with connection.cursor() as cursor:
            raw = cursor.cursor  # psycopg's own cursor, for COPY
            prompt_ids, old_prompts = self._prompts(cursor, raw, chunk)
            response_ids = self._responses(cursor, raw, chunk, prompt_ids, old_prompts)
            self._pairs(cursor, raw, chunk, prompt_ids, response_ids, old_prompts)

    def _prompts(self, cursor: Any, raw: Any, chunk: Chunk) -> tuple[dict[str, int], set[int]]:
        cursor.execute(
            "SELECT content_hash, id FROM annotation_prompt "
            "WHERE project_id = %s AND content_hash = ANY(%s)",
            [self.project.id, list(chunk.prompts)],
        )
        prompt_ids: dict[str, int] = dict(cursor.fetchall())
        old = set(prompt_ids.values())
        new = [h for h in chunk.prompts if h not in prompt_ids]
        ids = self._ids(cursor, Prompt, len(new))  # before the COPY: it holds the connection
        with raw.copy(self.prompt_copy.sql) as copy:
            for prompt_hash, new_id in zip(new, ids, strict=True):
                row = chunk.prompts[prompt_hash]
                messages = row.fields["messages"]
                copy.write_row(
                    (
                        new_id,
                        self.project.id,
                        self.batch.id,
                        prompt_hash,
                        row.fields["text"],
                        None if messages is None else _json(messages),
                        row.external_id,
                        _json(dict(row.metadata)),
                        *self.prompt_copy.tail,
                    )
                )
                prompt_ids[prompt_hash] = new_id
        self.counts.prompts += len(new)
        return prompt_ids, old

    def _responses(
        self, cursor: Any, raw: Any, chunk: Chunk, prompt_ids: dict[str, int], old_prompts: set[int]
    ) -> dict[tuple[int, str], int]:
        response_ids: dict[tuple[int, str], int] = {}
        if old_prompts:  # only a prompt that existed before can have responses already
            cursor.execute(
                "SELECT prompt_id, content_hash, id FROM annotation_response "
                "WHERE prompt_id = ANY(%s)",
                [list(old_prompts)],
            )
            response_ids = {(p, h): i for p, h, i in cursor.fetchall()}
        new = [
            (prompt_ids[p], h, row)
            for (p, h), row in chunk.responses.items()
            if (prompt_ids[p], h) not in response_ids
        ]
        ids = self._ids(cursor, Response, len(new))
        with raw.copy(self.response_copy.sql) as copy:
            for (prompt_id, text_hash, row), new_id in zip(new, ids, strict=True):
                copy.write_row(
                    (
                        new_id,
                        prompt_id,
                        self.batch.id,
                        text_hash,
                        row.text,
                        row.model,
                        _json(dict(row.metadata)),
                        *self.response_copy.tail,
                    )
                )
                response_ids[(prompt_id, text_hash)] = new_id
        self.counts.responses += len(new)
        return response_ids

    def _pairs(
        self,
        cursor: Any,
        raw: Any,
        chunk: Chunk,
        prompt_ids: dict[str, int],
        response_ids: dict[tuple[int, str], int],
        old_prompts: set[int],
    ) -> None:
        # (lower, higher response id) of the pairs that exist: only a prompt that existed before
        # this chunk (in an earlier batch or an earlier chunk) can have any.
        seen: set[tuple[int, int]] = set()
        if old_prompts:
            cursor.execute(
                "SELECT response_a_id, response_b_id FROM annotation_pair "
                "WHERE prompt_id = ANY(%s)",
                [list(old_prompts)],
            )
            seen.update((min(a, b), max(a, b)) for a, b in cursor.fetchall())
        created = 0
        with raw.copy(self.pair_copy.sql) as copy:
            for row in chunk.pairs:
                prompt_id = prompt_ids[row.prompt_hash]
                a = response_ids[(prompt_id, row.hash_a)]
                b = response_ids[(prompt_id, row.hash_b)]
                key = (min(a, b), max(a, b))
                if key in seen:
                    continue
                seen.add(key)
                copy.write_row(
                    (
                        self.project.id,
                        self.batch.id,
                        prompt_id,
                        a,
                        b,
                        row.external_id,
                        row.gold,
                        row.seed,
                        self.needed,
                        _json(dict(row.metadata)),
                        *self.pair_copy.tail,
                    )
                )
                created += 1
        self.counts.pairs += created

    def finish(self) -> WriteCounts:
        return self.counts


class OrmWriter:
    """Any database: a handful of bulk_create and lookup queries per chunk."""

    def __init__(self, *, project: Project, batch: Batch) -> None:
        self.project = project
        self.batch = batch
        self.needed = judgments_needed(project=project, batch=batch)

    def write(self, chunk: Chunk) -> None:
        prompt_ids = self._upsert_prompts(chunk.prompts)
        response_ids = self._upsert_responses(chunk.responses, prompt_ids)
        pairs = [
            Pair(
                project=self.project,
                batch=self.batch,
                prompt_id=prompt_ids[row.prompt_hash],
                response_a_id=response_ids[(prompt_ids[row.prompt_hash], row.hash_a)],
                response_b_id=response_ids[(prompt_ids[row.prompt_hash], row.hash_b)],
                external_id=row.external_id,
                gold_choice=row.gold,
                seed_choice=row.seed,
                judgments_needed=self.needed,
                metadata=dict(row.metadata),
            )
            for row in chunk.pairs
        ]
        # ON CONFLICT DO NOTHING: a pair that exists already (from this or an earlier batch) stays.
        Pair.objects.bulk_create(pairs, ignore_conflicts=True)

    def finish(self) -> WriteCounts:
        return WriteCounts(
            prompts=Prompt.objects.filter(batch=self.batch).count(),
            responses=Response.objects.filter(batch=self.batch).count(),
            pairs=Pair.objects.filter(batch=self.batch).count(),
        )

    def _upsert_prompts(self, prompts: dict[str, PromptRow]) -> dict[str, int]:
        def lookup() -> dict[str, int]:
            rows = Prompt.objects.filter(project=self.project, content_hash__in=prompts)
            return dict(rows.values_list("content_hash", "id"))

        existing = lookup()
        new = [
            Prompt(
                project=self.project,
                batch=self.batch,
                external_id=row.external_id,
                metadata=dict(row.metadata),
                **row.fields,
            )
            for key, row in prompts.items()
            if key not in existing
        ]
        Prompt.objects.bulk_create(new, ignore_conflicts=True)  # a concurrent import may win
        return lookup() if new else existing

    def _upsert_responses(
        self, responses: dict[tuple[str, str], ResponseRow], prompt_ids: dict[str, int]
    ) -> dict[tuple[int, str], int]:
        wanted = {(prompt_ids[p], h): row for (p, h), row in responses.items()}

        def lookup() -> dict[tuple[int, str], int]:
            # By prompt alone: given a second IN list for the hashes, SQLite probes the (prompt,
            # hash) index for every combination of the two, minutes for a 10,000-record chunk.
            rows = Response.objects.filter(prompt_id__in={p for p, _ in wanted}).values_list(
                "prompt_id", "content_hash", "id"
            )
            return {(p, h): i for p, h, i in rows if (p, h) in wanted}

        existing = lookup()
        new = [
            Response(
                prompt_id=prompt_id,
                batch=self.batch,
                content_hash=text_hash,
                text=row.text,
                model_name=row.model,
                metadata=dict(row.metadata),
            )
            for (prompt_id, text_hash), row in wanted.items()
            if (prompt_id, text_hash) not in existing
        ]
        Response.objects.bulk_create(new, ignore_conflicts=True)
        return lookup() if new else existing


def writer_for(
    *, project: Project, batch: Batch, use_copy: bool | None = None
) -> CopyWriter | OrmWriter:
    """The writer of an import. OrmWriter is the reference and runs on any database; CopyWriter
    is its PostgreSQL twin (COPY), chosen by `use_copy` (None: wherever PostgreSQL is).
    tests/annotation/test_import_writers.py imports the same files through both and compares
    the rows they store."""
    if use_copy is None:
        use_copy = connection.vendor == "postgresql"
    if use_copy:
        return CopyWriter(project=project, batch=batch)
    return OrmWriter(project=project, batch=batch)
