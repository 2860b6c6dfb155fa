"""The import's two writers on the same files: OrmWriter (bulk_create, the reference that runs on
any database) and CopyWriter, its PostgreSQL twin (COPY into the tables, ids drawn beforehand).

Each writer imports the same three files into a project of its own; the prompts, responses and
pairs they store must be the same, field by field (ids, batches and times aside, related rows
named by content hash). The files hold every case the writers tell apart: text and chat prompts,
a pair record repeated within the file and across files, a responses record paired k ways, gold
and seed answers, metadata, and a prompt an earlier batch created.
"""

import io
import json

import pytest
from django.db.models import DateTimeField, Model

from annotation.models import Pair, Project, Prompt, Response
from annotation.services.imports import batch_import
from annotation.services.imports import writer as writer_module


def _jsonl(*records: dict) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


_CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
_FILES = [
    (
        _jsonl(
            {"id": "p1", "prompt": "Q1?", "response_a": "A1", "response_b": "B1", "source": "x"},
            {"id": "p2", "prompt": _CHAT, "response_a": "Hello.", "response_b": "Hi!"},
            {"id": "p1-again", "prompt": "Q1?", "response_a": "B1", "response_b": "A1"},
        ),
        {},
    ),
    (
        _jsonl(
            {"prompt": "Q3?", "responses": [{"text": "r1", "model": "m1"}, {"text": "r2"}]},
            {"prompt": "Q1?", "responses": [{"text": "A1"}, {"text": "B1"}, {"text": "D1"}]},
        ),
        {},
    ),
    (
        _jsonl(
            {"prompt": "Q1?", "chosen": "A1", "rejected": "C1", "score_chosen": 8},
            {"prompt": "Q4?", "chosen": "good", "rejected": "bad"},
        ),
        {"known_answers": "gold"},
    ),
    (
        _jsonl(
            {"prompt": "Q5?", "chosen": "yes", "rejected": "no"},
            {"prompt": "Q1?", "chosen": "A1", "rejected": "B1"},
        ),
        {"known_answers": "seed"},
    ),
]
_NOT_COMPARED = {"id", "project", "batch"}  # and times: each import has its own


def _rows(model: type[Model], related: dict[str, str], **where) -> list[str]:
    names = [
        f.attname
        for f in model._meta.concrete_fields
        if f.name not in _NOT_COMPARED and not f.is_relation and not isinstance(f, DateTimeField)
    ]
    values = model.objects.filter(**where).values(*names, **related)
    return sorted(json.dumps(row, sort_keys=True, default=str) for row in values)


def _stored(project: Project) -> dict[str, list[str]]:
    from django.db.models import F

    return {
        "prompts": _rows(Prompt, {}, project=project),
        "responses": _rows(
            Response, {"of_prompt": F("prompt__content_hash")}, prompt__project=project
        ),
        "pairs": _rows(
            Pair,
            {
                "of_prompt": F("prompt__content_hash"),
                "a": F("response_a__content_hash"),
                "b": F("response_b__content_hash"),
            },
            project=project,
        ),
    }


def _import_all(project: Project, user, monkeypatch, *, use_copy: bool) -> list[tuple]:
    monkeypatch.setattr(
        "annotation.services.imports.importing.writer_for",
        lambda **kwargs: writer_module.writer_for(**kwargs, use_copy=use_copy),
    )
    counts = []
    for number, (data, options) in enumerate(_FILES):
        batch = batch_import(
            project=project,
            fileobj=io.BytesIO(data),
            filename=f"file{number}.jsonl",
            uploaded_by=user,
            **options,
        ).batch
        counts.append((batch.prompts_created, batch.responses_created, batch.pairs_created))
    return counts


@pytest.mark.postgres_only  # CopyWriter needs COPY FROM STDIN
def test_the_copy_writer_stores_what_the_orm_writer_stores(
    project, other_project, admin_member, monkeypatch
):
    copied = _import_all(project, admin_member, monkeypatch, use_copy=True)
    reference = _import_all(other_project, admin_member, monkeypatch, use_copy=False)
    assert copied == reference
    fast, plain = _stored(project), _stored(other_project)
    assert all(plain.values()), "every table must get rows, or the comparison proves little"
    assert fast == plain


def test_the_reference_writer_runs_on_any_database(project, admin_member, monkeypatch):
    counts = _import_all(project, admin_member, monkeypatch, use_copy=False)
    assert counts[0] == (2, 4, 2)
    assert all(_stored(project).values())
