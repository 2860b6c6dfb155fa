"""Batches in: staging an upload, its dry run, the import itself (in the request or a worker),
recovering background imports, and retiring a batch. The pure parsing and validation live in
`annotation.imports`."""

from annotation.services.imports.batches import batch_retire, batch_unretire
from annotation.services.imports.errors import ImportRejected
from annotation.services.imports.importing import (
    ImportOutcome,
    batch_duplicate_of,
    batch_import,
    batch_import_run,
    batch_scan,
    import_limits,
)
from annotation.services.imports.recovery import ImportSweep, batch_imports_sweep
from annotation.services.imports.rejects import rejects_orphans_clean
from annotation.services.imports.staging import staged_uploads_clean
from annotation.services.imports.uploads import (
    CheckedUpload,
    DryRun,
    upload_check,
    upload_check_and_import,
    upload_import,
)
from annotation.services.imports.writer import prompt_fields

__all__ = [
    "CheckedUpload",
    "DryRun",
    "ImportOutcome",
    "ImportRejected",
    "ImportSweep",
    "batch_duplicate_of",
    "batch_import",
    "batch_import_run",
    "batch_imports_sweep",
    "batch_retire",
    "batch_scan",
    "batch_unretire",
    "import_limits",
    "prompt_fields",
    "rejects_orphans_clean",
    "staged_uploads_clean",
    "upload_check",
    "upload_check_and_import",
    "upload_import",
]
