"""Writing an uploaded batch: validate the whole file, then write it in one transaction.

The file is read twice: `scan` validates every record (and hashes the upload), and only a clean
file is streamed a second time into the database in chunks with bulk inserts, inside one
transaction, so an invalid or interrupted import leaves nothing behind. Prompts and responses are
deduplicated by content hash within the project; a pair that already exists is not created again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, BinaryIO

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction

from annotation.imports.pairing import PairingRule, pairs_from_responses
from annotation.imports.parsing import ScanResult, iter_records, scan
from annotation.imports.records import (
    ImportFormat,
    ImportIssue,
    ImportLimits,
    PairRecord,
    PreferenceRecord,
    Record,
    ResponsesRecord,
)
from annotation.imports.records import (
    Prompt as PromptContent,
)
from annotation.models import Batch, Pair, Project, Prompt, Response
from annotation.tasks import project_stats_refresh
from config.celery import enqueue_on_commit

CHUNK = 2000  # records per round of bulk inserts: bounded memory, few round trips


class ImportRejected(Exception):
    """The file was not imported; `issues` says why, each with its line or row and field."""

    def __init__(self, issues: Iterable[ImportIssue], *, total: int | None = None) -> None:
        self.issues = list(issues)
        self.total = total if total is not None else len(self.issues)
        super().__init__("; ".join(str(issue) for issue in self.issues[:3]))


def import_limits() -> ImportLimits:
    """The limits uploads are read under: safe defaults, overridden by settings.IMPORT_LIMITS."""
    return ImportLimits(**settings.IMPORT_LIMITS)


@dataclass(frozen=True)
class ImportOutcome:
    batch: Batch
    scan: ScanResult


def batch_scan(*, fileobj: BinaryIO, filename: str, format: str | None) -> ScanResult:
    """Validate a whole file without writing anything (the dry run)."""
    return scan(fileobj, filename=filename, format=format, limits=import_limits())


def batch_import(
    *,
    project: Project,
    fileobj: BinaryIO,
    filename: str,
    uploaded_by: User,
    format: str | None = None,
    known_answers: str = Batch.KnownAnswers.NONE,
    allow_duplicate: bool = False,
) -> ImportOutcome:
    """Import a file into `project`, or raise ImportRejected and write nothing.

    `fileobj` must be seekable: it is read once to validate and once to write.
    """
    limits = import_limits()
    result = scan(fileobj, filename=filename, format=format, limits=limits)
    if result.error_count:
        raise ImportRejected(result.errors, total=result.error_count)
    if result.record_count == 0:
        raise ImportRejected([ImportIssue(None, None, "the file holds no records")])
    _check_known_answers(result.format, known_answers)
    if not allow_duplicate:
        earlier = Batch.objects.filter(project=project, sha256=result.sha256).first()
        if earlier is not None:
            raise ImportRejected(
                [
                    ImportIssue(
                        None,
                        None,
                        f"this file was already imported on {earlier.created_at:%Y-%m-%d %H:%M} "
                        f'as "{earlier.filename}"; import it again only if you mean to',
                    )
                ]
            )
    fileobj.seek(0)
    with transaction.atomic():
        batch = Batch.objects.create(
            project=project,
            filename=filename[:255],
            sha256=result.sha256 or "",
            format=str(result.format),
            known_answers=known_answers,
            records=result.record_count,
            uploaded_by=uploaded_by,
        )
        writer = _BatchWriter(project=project, batch=batch)
        records = iter_records(fileobj, format=result.format, limits=limits)
        for chunk in _chunks(records, CHUNK):
            writer.write(chunk)
        batch.prompts_created = Prompt.objects.filter(batch=batch).count()
        batch.responses_created = Response.objects.filter(batch=batch).count()
        batch.pairs_created = Pair.objects.filter(batch=batch).count()
        batch.save(update_fields=["prompts_created", "responses_created", "pairs_created"])
        enqueue_on_commit(project_stats_refresh, project.id)
    return ImportOutcome(batch=batch, scan=result)


def _check_known_answers(format: ImportFormat | None, known_answers: str) -> None:
    if format == ImportFormat.PREFERENCE and known_answers == Batch.KnownAnswers.NONE:
        raise ImportRejected(
            [
                ImportIssue(
                    None,
                    None,
                    "preference records carry a known answer: choose whether they become gold "
                    "pairs (quality control) or seed labels (training data)",
                )
            ]
        )
    if format != ImportFormat.PREFERENCE and known_answers != Batch.KnownAnswers.NONE:
        raise ImportRejected(
            [
                ImportIssue(
                    None, None, "only preference records (chosen/rejected) have known answers"
                )
            ]
        )


def _chunks(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    while chunk := list(islice(records, size)):
        yield chunk


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def prompt_fields(content: PromptContent) -> dict:
    """The stored form of a prompt: plain text, or chat messages, with its content hash."""
    if isinstance(content, str):
        return {"text": content, "messages": None, "content_hash": _sha256(content)}
    messages = [{"role": m.role, "content": m.content} for m in content]
    canonical = json.dumps(messages, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return {"text": "", "messages": messages, "content_hash": _sha256("messages:" + canonical)}


@dataclass(frozen=True)
class _PairSpec:
    prompt_hash: str
    text_a: str
    text_b: str
    model_a: str
    model_b: str
    external_id: str
    gold: str
    seed: str


class _BatchWriter:
    """Writes chunks of validated records with a handful of bulk queries per chunk."""

    def __init__(self, *, project: Project, batch: Batch) -> None:
        self.project = project
        self.batch = batch
        self.needed = (
            0 if batch.known_answers != Batch.KnownAnswers.NONE else project.raters_per_pair
        )

    def write(self, records: list[Record]) -> None:
        prompts: dict[str, tuple[dict, PromptRecordInfo]] = {}
        responses: dict[tuple[str, str], tuple[str, str]] = {}  # (prompt, text hash) -> text, model
        specs: list[_PairSpec] = []
        for record in records:
            fields = prompt_fields(record.prompt)
            prompt_hash = fields["content_hash"]
            prompts.setdefault(
                prompt_hash, (fields, PromptRecordInfo(record.external_id, record.metadata))
            )
            for spec in self._pair_specs(record, prompt_hash):
                specs.append(spec)
                for text, model in ((spec.text_a, spec.model_a), (spec.text_b, spec.model_b)):
                    responses.setdefault((prompt_hash, _sha256(text)), (text, model))
        prompt_ids = self._upsert_prompts(prompts)
        response_ids = self._upsert_responses(responses, prompt_ids)
        pairs = []
        for spec in specs:
            a = response_ids[(prompt_ids[spec.prompt_hash], _sha256(spec.text_a))]
            b = response_ids[(prompt_ids[spec.prompt_hash], _sha256(spec.text_b))]
            if a == b:
                continue  # two identical responses in a responses record: nothing to compare
            pairs.append(
                Pair(
                    project=self.project,
                    batch=self.batch,
                    prompt_id=prompt_ids[spec.prompt_hash],
                    response_a_id=a,
                    response_b_id=b,
                    external_id=spec.external_id,
                    gold_choice=spec.gold,
                    seed_choice=spec.seed,
                    judgments_needed=self.needed,
                )
            )
        # ON CONFLICT DO NOTHING: a pair that exists already (from this or an earlier batch) stays.
        Pair.objects.bulk_create(pairs, ignore_conflicts=True)

    def _pair_specs(self, record: Record, prompt_hash: str) -> Iterator[_PairSpec]:
        external_id = (record.external_id or "")[:200]
        if isinstance(record, PairRecord):
            yield _PairSpec(
                prompt_hash,
                record.response_a,
                record.response_b,
                record.model_a or "",
                record.model_b or "",
                external_id,
                "",
                "",
            )
        elif isinstance(record, ResponsesRecord):
            rule: PairingRule = (
                "all" if self.project.pairing_rule == Project.PairingRule.ALL else "k_per_prompt"
            )
            for i, j in pairs_from_responses(record, rule=rule, k=self.project.pairs_per_prompt):
                first, second = record.responses[i], record.responses[j]
                yield _PairSpec(
                    prompt_hash,
                    first.text,
                    second.text,
                    first.model or "",
                    second.model or "",
                    external_id,
                    "",
                    "",
                )
        elif isinstance(record, PreferenceRecord):
            # Which response is stored as "a" is decided by a hash, not always "chosen", so that
            # nothing downstream can learn "a wins" from storage order.
            chosen_first = int(_sha256(prompt_hash + record.chosen)[0], 16) % 2 == 0
            a, b = (
                (record.chosen, record.rejected)
                if chosen_first
                else (record.rejected, record.chosen)
            )
            answer = "a" if chosen_first else "b"
            gold = answer if self.batch.known_answers == Batch.KnownAnswers.GOLD else ""
            seed = answer if self.batch.known_answers == Batch.KnownAnswers.SEED else ""
            yield _PairSpec(prompt_hash, a, b, "", "", external_id, gold, seed)

    def _upsert_prompts(self, prompts: dict[str, tuple[dict, PromptRecordInfo]]) -> dict[str, int]:
        existing = dict(
            Prompt.objects.filter(project=self.project, content_hash__in=prompts).values_list(
                "content_hash", "id"
            )
        )
        Prompt.objects.bulk_create(
            [
                Prompt(
                    project=self.project,
                    batch=self.batch,
                    external_id=(info.external_id or "")[:200],
                    metadata=dict(info.metadata),
                    **fields,
                )
                for key, (fields, info) in prompts.items()
                if key not in existing
            ],
            ignore_conflicts=True,  # a concurrent import of the same prompt wins; we reuse it
        )
        if len(existing) < len(prompts):
            existing = dict(
                Prompt.objects.filter(project=self.project, content_hash__in=prompts).values_list(
                    "content_hash", "id"
                )
            )
        return existing

    def _upsert_responses(
        self, responses: dict[tuple[str, str], tuple[str, str]], prompt_ids: dict[str, int]
    ) -> dict[tuple[int, str], int]:
        wanted = {(prompt_ids[p], h): value for (p, h), value in responses.items()}
        hashes = {h for _, h in wanted}

        def lookup() -> dict[tuple[int, str], int]:
            rows = Response.objects.filter(
                prompt_id__in={p for p, _ in wanted}, content_hash__in=hashes
            ).values_list("prompt_id", "content_hash", "id")
            return {(p, h): i for p, h, i in rows}

        existing = lookup()
        Response.objects.bulk_create(
            [
                Response(
                    prompt_id=prompt_id,
                    batch=self.batch,
                    content_hash=text_hash,
                    text=text,
                    model_name=model[:200],
                )
                for (prompt_id, text_hash), (text, model) in wanted.items()
                if (prompt_id, text_hash) not in existing
            ],
            ignore_conflicts=True,
        )
        return lookup() if len(existing) < len(wanted) else existing


@dataclass(frozen=True)
class PromptRecordInfo:
    external_id: str | None
    metadata: Mapping[str, Any]
