"""Importing a batch: validate the whole file, then write it in one transaction.

The file is read twice: `scan` validates every record (and hashes the upload), and only a clean
file is streamed a second time into the database in chunks (see `writer`), inside one
transaction, so an invalid or interrupted import leaves nothing behind. Prompts and responses are
deduplicated by content hash within the project; a pair that already exists is not created again.

Small files import in the request (`batch_import`); large ones in a Celery worker
(`batch_import_run`), which reports its heartbeat and progress on the Batch row from a second
connection; `recovery.batch_imports_sweep` retries or fails a batch whose worker died.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from annotation.imports.parsing import ImportFileInvalid, ScanResult, iter_records, scan
from annotation.imports.reader import human_bytes
from annotation.imports.records import (
    ImportFormat,
    ImportIssue,
    ImportLimits,
    PairRecord,
    PreferenceRecord,
    ResponsesRecord,
    has_empty_response,
)
from annotation.imports.state import KnownPairs
from annotation.models import Batch, Pair, Project
from annotation.services.imports.errors import ImportRejected, nothing_valid, rejected
from annotation.services.imports.rejects import RejectsWriter
from annotation.services.imports.staging import (
    StagedUpload,
    staged_upload_discard,
    staged_upload_open,
)
from annotation.services.imports.writer import ChunkBuilder, record_chunks, writer_for
from annotation.task_names import BATCH_IMPORT_RUN, POOL_SCORE, PROJECT_STATS_REFRESH
from config.celery import enqueue_on_commit

logger = logging.getLogger(__name__)


def import_limits() -> ImportLimits:
    """The limits uploads are read under: safe defaults, overridden by settings.IMPORT_LIMITS."""
    return ImportLimits(**settings.IMPORT_LIMITS)


@dataclass(frozen=True)
class ImportOutcome:
    batch: Batch
    scan: ScanResult | None  # None when a worker imports the file later
    timings: dict[str, float] = field(default_factory=dict)  # seconds
    skipped: tuple[
        ImportIssue, ...
    ] = ()  # on_invalid=skip: the issues of the first records left out

    @property
    def in_background(self) -> bool:
        return self.batch.is_in_progress


def batch_scan(
    *, fileobj: BinaryIO, filename: str, format: str | None, project: Project | None = None
) -> ScanResult:
    """Validate a whole file without writing anything (the dry run); with `project`, records
    that repeat one of its pairs are warnings naming that pair."""
    known = None if project is None else _known_pairs(project)
    return scan(
        fileobj, filename=filename, format=format, limits=import_limits(), known_pairs=known
    )


def _known_pairs(project: Project) -> KnownPairs:
    def lookup(prompt_hashes: list[str]) -> Iterator[tuple[str, str, str, str]]:
        rows = Pair.objects.filter(
            project=project, prompt__content_hash__in=prompt_hashes
        ).values_list(
            "prompt__content_hash",
            "response_a__content_hash",
            "response_b__content_hash",
            "id",
            "batch_id",
            "batch__filename",
        )
        for prompt, hash_a, hash_b, pair_id, batch_id, filename in rows.iterator():
            yield prompt, hash_a, hash_b, f'pair {pair_id} of batch {batch_id} ("{filename}")'

    return lookup


def batch_duplicate_of(*, project: Project, sha256: str | None) -> Batch | None:
    """The earlier batch of `project` with the same bytes, if any (failed ones do not count)."""
    if not sha256:
        return None
    return (
        Batch.objects.filter(project=project, sha256=sha256)
        .exclude(status=Batch.Status.FAILED)
        .order_by("created_at")
        .first()
    )


def import_checks(
    *,
    project: Project,
    format: ImportFormat | str | None,
    record_count: int,
    sha256: str | None,
    known_answers: str,
    allow_duplicate: bool,
) -> None:
    """What stops a file that scanned clean from being imported, as ImportRejected."""
    if record_count == 0:
        raise rejected("the file holds no records")
    _check_known_answers(format, known_answers)
    if not allow_duplicate:
        earlier = batch_duplicate_of(project=project, sha256=sha256)
        if earlier is not None:
            raise ImportRejected([duplicate_issue(earlier)], duplicate_of=earlier)


def duplicate_issue(earlier: Batch) -> ImportIssue:
    return ImportIssue(
        None,
        None,
        f"this file was already imported on {earlier.created_at:%Y-%m-%d %H:%M} UTC "
        f'as "{earlier.filename}" (batch {earlier.id}); import it again only if you mean to',
    )


def batch_import(
    *,
    project: Project,
    fileobj: BinaryIO,
    filename: str,
    uploaded_by: User,
    format: str | None = None,
    known_answers: str = Batch.KnownAnswers.NONE,
    allow_duplicate: bool = False,
    on_invalid: str = Batch.OnInvalid.REFUSE,
) -> ImportOutcome:
    """Import a file into `project` now, or raise ImportRejected and write nothing.

    `fileobj` must be seekable. Parsing is the dearest part of an import, so the file is parsed
    once, optimistically: records are written as they are read, inside one transaction, and the
    first invalid record rolls everything back; only then is the file scanned again to report
    every error. A valid file (the usual case, after a dry run) costs one parse, not two.
    With `on_invalid="skip"` records with errors are left out and counted on the batch instead
    (see `rejects`); only a problem with the whole file, or no valid record at all, rejects it.
    """
    limits = import_limits()
    started = time.perf_counter()
    sha256 = _sha256_of(fileobj, limits)
    if not allow_duplicate:
        earlier = batch_duplicate_of(project=project, sha256=sha256)
        if earlier is not None:
            raise ImportRejected([duplicate_issue(earlier)], duplicate_of=earlier)
    with transaction.atomic():
        batch = Batch.objects.create(
            project=project,
            filename=filename[:255],
            sha256=sha256,
            format=format or "",
            known_answers=known_answers,
            on_invalid=on_invalid,
            uploaded_by=uploaded_by,
            status=Batch.Status.DONE,
            progress=1.0,
        )
        skipped = _write(batch=batch, fileobj=fileobj, limits=limits, filename=filename)
    return ImportOutcome(
        batch=batch,
        scan=None,
        timings={"import": time.perf_counter() - started},
        skipped=skipped,
    )


def _sha256_of(fileobj: BinaryIO, limits: ImportLimits) -> str:
    """The upload's sha256, in a pass of its own: hashing costs far less than parsing, and a
    duplicate file is recognised before any of it is parsed."""
    digest = hashlib.sha256()
    size = 0
    while block := fileobj.read(1024 * 1024):
        size += len(block)
        if size > limits.max_upload_bytes:
            raise rejected(
                f"the file is larger than the limit of {human_bytes(limits.max_upload_bytes)}"
            )
        digest.update(block)
    fileobj.seek(0)
    return digest.hexdigest()


def batch_import_later(
    *,
    project: Project,
    upload: StagedUpload,
    uploaded_by: User,
    known_answers: str,
    on_invalid: str = Batch.OnInvalid.REFUSE,
) -> Batch:
    """A pending batch for a checked, staged upload, and a worker asked to import it."""
    with transaction.atomic():
        batch = Batch.objects.create(
            project=project,
            filename=upload.filename,
            sha256=upload.sha256,
            format=upload.format or "",
            known_answers=known_answers,
            on_invalid=on_invalid,
            records=upload.records or 0,
            uploaded_by=uploaded_by,
            status=Batch.Status.PENDING,
            staged_upload=upload.token,
            heartbeat_at=timezone.now(),  # when it was sent: the sweep sends it again later
        )
        enqueue_on_commit(BATCH_IMPORT_RUN, batch.id)
    return batch


class _Superseded(Exception):
    """The batch is no longer this attempt's (the sweep gave it to another): roll back, stop."""


def batch_import_run(*, batch_id: int) -> Batch:
    """Import a pending batch's staged file (in a worker), as a new attempt.

    Idempotent: a batch that is not pending is left alone. That includes a running one whose
    worker died (its transaction rolled back with the lost connection): the broker may redeliver
    its message at once, but only the sweep, once the heartbeat has stopped, starts it again.
    """
    with transaction.atomic():
        batch = Batch.objects.select_for_update().get(id=batch_id)
        if batch.status != Batch.Status.PENDING:
            return batch  # redelivered, or taken by another worker
        batch.status = Batch.Status.RUNNING
        batch.attempts += 1
        batch.progress = 0.0
        batch.heartbeat_at = timezone.now()
        batch.save(update_fields=["status", "attempts", "progress", "heartbeat_at"])
    token = batch.staged_upload
    try:
        with _Heartbeat(batch=batch) as heartbeat:
            _import_staged(batch=batch, heartbeat=heartbeat)
        ended = True
    except _Superseded:
        logger.warning("import of batch %s attempt %s was taken away", batch.id, batch.attempts)
        ended = False
    except ImportRejected as exc:
        ended = _fail(batch, "; ".join(str(issue) for issue in exc.issues[:20]))
    except Exception:
        logger.exception("import of batch %s failed", batch_id)
        ended = _fail(batch, "the import stopped with an internal error; nothing was imported")
    if ended:
        staged_upload_discard(token=token)  # else the attempt that has the batch needs the file
    batch.refresh_from_db()
    return batch


def _import_staged(*, batch: Batch, heartbeat: _Heartbeat) -> None:
    """Write the staged file in one transaction that commits only if this attempt still owns
    the batch (the final update names the attempt)."""
    limits = import_limits()
    with staged_upload_open(token=batch.staged_upload, project=batch.project) as staged:
        if _sha256_of(staged.file, limits) != batch.sha256:
            raise rejected("the stored upload changed after it was checked")
        with transaction.atomic():
            _write(
                batch=batch,
                fileobj=staged.file,
                limits=limits,
                filename=batch.filename,
                on_progress=heartbeat.progress,
            )
            done = _this_attempt(batch).update(
                status=Batch.Status.DONE,
                progress=1.0,
                staged_upload="",
                error="",
                heartbeat_at=timezone.now(),
            )
            if not done:
                raise _Superseded


def _this_attempt(batch: Batch) -> QuerySet[Batch]:
    """The batch, as long as it is running as the attempt `batch` holds."""
    return Batch.objects.filter(id=batch.id, status=Batch.Status.RUNNING, attempts=batch.attempts)


def _fail(batch: Batch, message: str) -> bool:
    """Fail the batch if this attempt still owns it; whether it did."""
    return bool(
        _this_attempt(batch).update(status=Batch.Status.FAILED, error=message, staged_upload="")
    )


def _write(
    *,
    batch: Batch,
    fileobj: BinaryIO,
    limits: ImportLimits,
    filename: str,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[ImportIssue, ...]:
    """Write a file's records into `batch`, inside the caller's transaction, which any
    ImportRejected from here must roll back: a record may be invalid after thousands were written.
    With `batch.on_invalid` "skip", records with errors are left out into a rejects file instead;
    the issues of the first max_errors of them are returned.
    """
    skip = batch.on_invalid == Batch.OnInvalid.SKIP
    rejects = RejectsWriter(max_listed=limits.max_errors) if skip else None
    try:
        _write_records(batch, fileobj, limits, filename, rejects, on_progress)
    except BaseException:
        if rejects is not None:
            rejects.discard()
        raise
    if rejects is None:
        _written(batch)
        return ()
    rejects.close()
    batch.skipped = rejects.count
    batch.skipped_reasons = rejects.by_reason
    batch.rejects_file = rejects.name
    batch.rejects_kept = rejects.kept
    batch.save(update_fields=["skipped", "skipped_reasons", "rejects_file", "rejects_kept"])
    _written(batch)
    return tuple(rejects.listed)


def _written(batch: Batch) -> None:
    """Once the import commits: refresh the project's counts, score the new pairs."""
    enqueue_on_commit(PROJECT_STATS_REFRESH, batch.project_id)
    enqueue_on_commit(POOL_SCORE, batch.project_id)


def _write_records(
    batch: Batch,
    fileobj: BinaryIO,
    limits: ImportLimits,
    filename: str,
    rejects: RejectsWriter | None,
    on_progress: Callable[[int], None] | None,
) -> None:
    builder = ChunkBuilder(project=batch.project, known_answers=batch.known_answers)
    writer = writer_for(project=batch.project, batch=batch)
    done = empty = offered = 0
    asked = batch.format or None
    records = iter_records(fileobj, format=asked, limits=limits, on_rejected=rejects)
    try:
        for chunk in record_chunks(records):
            if done == 0:
                batch.format = _FORMATS[type(chunk[0])]
                _check_known_answers(batch.format, batch.known_answers)
            built = builder.build(chunk)
            offered += len(built.pairs)
            writer.write(built)
            done += len(chunk)
            empty += sum(map(has_empty_response, chunk))
            if on_progress is not None:
                on_progress(done)
    except ImportFileInvalid:
        fileobj.seek(0)
        result = scan(fileobj, filename=filename, format=asked, limits=limits)
        errors = [e for e in result.errors if rejects is None or not e.skippable]
        raise ImportRejected(errors, total=len(errors) if rejects else result.error_count) from None
    if done == 0 and rejects is not None:
        raise ImportRejected([nothing_valid(rejects.count)])
    counts = writer.finish()
    batch.records = done
    batch.prompts_created = counts.prompts
    batch.responses_created = counts.responses
    batch.pairs_created = counts.pairs
    batch.empty_responses = empty
    batch.merged = offered - counts.pairs
    batch.save(
        update_fields=[
            "format",
            "records",
            "prompts_created",
            "responses_created",
            "pairs_created",
            "empty_responses",
            "merged",
        ]
    )


_FORMATS = {
    PairRecord: ImportFormat.PAIR,
    ResponsesRecord: ImportFormat.RESPONSES,
    PreferenceRecord: ImportFormat.PREFERENCE,
}


class _Heartbeat:
    """A running import's heartbeat and progress, written where the sweep and the page see them.

    The import is one transaction, invisible to others until it commits, so a thread writes
    `heartbeat_at` and `progress` every second on its own connection, whatever the import is
    doing (hashing, waiting for the project's import lock, writing, rescanning an invalid file):
    the heartbeat stops only when the worker does. Updating the batch row does not wait on the
    import: inserting pairs only takes a key-share lock on it. `progress`, called by the import
    after each chunk, stops it when the sweep has given the batch to another attempt.

    SQLite has a single writer, held by the import: there no thread runs, the progress stays at 0
    until the end, and the sweep waits for the task's time limit instead of the heartbeat.
    """

    EVERY_S = 1.0

    def __init__(self, *, batch: Batch) -> None:
        self.batch = batch
        self.done = 0
        self._stop = threading.Event()
        self._thread = (
            threading.Thread(target=self._beat, name=f"batch-{batch.id}-heartbeat", daemon=True)
            if connection.vendor == "postgresql"
            else None
        )

    def __enter__(self) -> _Heartbeat:
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def progress(self, done: int) -> None:
        self.done = done
        if not _this_attempt(self.batch).exists():  # in the import's own transaction
            raise _Superseded

    def _beat(self) -> None:
        try:
            while not self._stop.wait(self.EVERY_S):
                fraction = min(self.done / max(self.batch.records, 1), 0.99)
                try:
                    connection.close_if_unusable_or_obsolete()  # reconnect after a DB restart
                    _this_attempt(self.batch).update(heartbeat_at=timezone.now(), progress=fraction)
                except DatabaseError:  # one missed beat; the import itself decides its fate
                    logger.warning("no heartbeat for batch %s", self.batch.id, exc_info=True)
        finally:
            connection.close()  # this thread's own connection


def _check_known_answers(format: ImportFormat | str | None, known_answers: str) -> None:
    if format == ImportFormat.PREFERENCE and known_answers == Batch.KnownAnswers.NONE:
        raise rejected(
            "preference records carry a known answer: choose whether they become gold pairs "
            "(quality control) or seed labels (training data)",
            "as",
        )
    if format != ImportFormat.PREFERENCE and known_answers != Batch.KnownAnswers.NONE:
        raise rejected("only preference records (chosen/rejected) have known answers", "as")
