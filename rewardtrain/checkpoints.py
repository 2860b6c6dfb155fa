"""Model version directories: written atomically, verified before anything loads them.

Layout (design.md section 7): `<root>/<project>/v<N>/` holds config.json, model.safetensors,
the tokenizer files, `pairwise.json` (the input rule, data, metrics and every file's sha256) and
a README.md model card. A version is written under `.tmp-v<N>-<random>` beside its final name,
fsynced, re-read and checked, then renamed into place, so a crash leaves either nothing under the
final name or a complete version. Nothing here ever unpickles: pickle-capable files are refused.

Writing takes the weights (a model and tokenizer that `save_pretrained`) and a metadata dict, as
nanochat's checkpoint manager does; it knows nothing of how they were trained, so this module
imports neither `rewardtrain.train` nor `rewardtrain.model`. torch and safetensors are imported
only by the functions that write and re-read weights: the web process verifies versions
(`checkpoint_verify`) without loading torch.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import Tensor
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

MANIFEST_NAME = "pairwise.json"
CARD_NAME = "README.md"
MANIFEST_FORMAT = 1
# Formats that can carry a pickle, and so run code when loaded with torch.load or numpy.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".npz"})
TMP_PREFIX = ".tmp-"
_PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
_EXTRA_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
# What the model card and the loaders read from the caller's metadata.
METADATA_KEYS = frozenset(
    {"base_model", "init_from", "input", "data_cutoff", "data_sha256", "counts", "metrics"}
)
# What checkpoint_write itself sets in the manifest.
_RESERVED_KEYS = frozenset({"format", "version", "project", "created_at", "files"})


class CheckpointError(Exception):
    """A version directory that must not be loaded, or cannot be written."""


@dataclass(frozen=True, kw_only=True)
class WrittenCheckpoint:
    path: Path
    files_sha256: dict[str, str]  # every file, pairwise.json included: for the database


def checkpoint_write(
    *,
    root: str | Path,
    project: str,
    version: int,
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    metadata: Mapping[str, Any],
    extra_tensors: Mapping[str, Mapping[str, Tensor]] | None = None,
    created_at: datetime | None = None,
) -> WrittenCheckpoint:
    """Write `<root>/<project>/v<version>/` and return its path and every file's checksum.

    `metadata` goes into `pairwise.json` as given; it must hold METADATA_KEYS (what the model
    card shows and the loaders read: `rewardtrain.train.version_metadata` builds it) and be
    JSON-serialisable without NaN. `extra_tensors` maps a lower-case name to tensors written as
    `<name>.safetensors` beside the model's weights, checksummed and re-read like them.

    Refuses to replace an existing version.
    """
    manifest = _manifest(metadata, project=project, version=version, created_at=created_at)
    extras = _extras_checked(extra_tensors or {})
    final = _final_path(root, project, version)
    staging = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}v{version}-", dir=final.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        _save_extras(staging, extras)
        (staging / CARD_NAME).write_text(_model_card(manifest), encoding="utf-8")
        manifest["files"] = {name: _sha256(staging / name) for name in _file_names(staging)}
        text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
        (staging / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")
        for name in _file_names(staging):
            _fsync_file(staging / name)
        _fsync_dir(staging)

        files_sha256 = checkpoint_verify(staging, root=final.parent, expected_sha256=None)
        _check_weights_match(staging, model.state_dict(), extras)
        # rename() would silently replace an empty directory created meanwhile: look again.
        if final.exists():
            raise FileExistsError(f"{final} already exists; versions are never overwritten")
        os.rename(staging, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return WrittenCheckpoint(path=final, files_sha256=files_sha256)


def _final_path(root: str | Path, project: str, version: int) -> Path:
    """Where the version goes; its project directory is created, the version must not exist."""
    if not _PROJECT_NAME.fullmatch(project):
        raise CheckpointError(f"project name {project!r} is not a safe directory name")
    if version < 1:
        raise CheckpointError("versions start at 1")
    project_dir = Path(root) / project
    project_dir.mkdir(parents=True, exist_ok=True)
    final = project_dir / f"v{version}"
    if final.exists():
        raise FileExistsError(f"{final} already exists; versions are never overwritten")
    return final


def _manifest(
    metadata: Mapping[str, Any], *, project: str, version: int, created_at: datetime | None
) -> dict[str, Any]:
    missing = sorted(METADATA_KEYS - set(metadata))
    if missing:
        raise CheckpointError(f"the metadata lacks {', '.join(missing)}")
    reserved = sorted(_RESERVED_KEYS & set(metadata))
    if reserved:
        raise CheckpointError(f"the metadata may not set {', '.join(reserved)}")
    return {
        **metadata,
        "format": MANIFEST_FORMAT,
        "version": version,
        "project": project,
        "created_at": (created_at or datetime.now(UTC)).isoformat(),
    }


def _extras_checked(
    extra_tensors: Mapping[str, Mapping[str, Tensor]],
) -> dict[str, Mapping[str, Tensor]]:
    for name in extra_tensors:
        if not _EXTRA_NAME.fullmatch(name) or name == "model" or name.startswith("model-"):
            raise CheckpointError(f"{name!r} cannot name an extra tensors file")
    return dict(extra_tensors)


def _save_extras(directory: Path, extras: Mapping[str, Mapping[str, Tensor]]) -> None:
    from safetensors.torch import save_file

    for name, tensors in extras.items():
        save_file(
            {key: t.detach().contiguous() for key, t in tensors.items()},
            directory / f"{name}.safetensors",
        )


def checkpoint_verify(
    path: str | Path, *, root: str | Path, expected_sha256: Mapping[str, str] | None
) -> dict[str, str]:
    """Check a version directory before loading it; return every file's sha256.

    Refuses a directory outside `root` (symlinks resolved), symlinks and pickle-capable files
    inside it, and any file missing, extra or changed against `expected_sha256` (the database's
    record) or, without it, against the list in `pairwise.json`.
    """
    directory = Path(path).resolve()
    root_dir = Path(root).resolve()
    if directory == root_dir or not directory.is_relative_to(root_dir):
        raise CheckpointError(f"{path} is outside the checkpoint root {root}")
    if not directory.is_dir():
        raise CheckpointError(f"{path} is not a directory")

    present = []
    for entry in sorted(directory.rglob("*")):
        name = entry.relative_to(directory).as_posix()
        if entry.is_symlink():
            raise CheckpointError(f"{name} is a symlink")
        if entry.suffix.lower() in PICKLE_SUFFIXES:
            raise CheckpointError(f"{name} can hold a pickle; only safetensors are loaded")
        if entry.is_file():
            present.append(name)

    if expected_sha256 is None:
        manifest_path = directory / MANIFEST_NAME
        if not manifest_path.is_file():
            raise CheckpointError(f"{MANIFEST_NAME} is missing")
        listed = json.loads(manifest_path.read_text(encoding="utf-8")).get("files")
        if not isinstance(listed, dict):
            raise CheckpointError(f"{MANIFEST_NAME} lists no files")
        expected = {**listed, MANIFEST_NAME: _sha256(manifest_path)}
    else:
        expected = dict(expected_sha256)

    missing = sorted(set(expected) - set(present))
    if missing:
        raise CheckpointError(f"missing files: {', '.join(missing)}")
    extra = sorted(set(present) - set(expected))
    if extra:
        raise CheckpointError(f"files not in the checksum list: {', '.join(extra)}")
    actual = {name: _sha256(directory / name) for name in present}
    for name, digest in actual.items():
        if not hmac.compare_digest(digest, str(expected[name])):
            raise CheckpointError(f"{name} does not match its sha256")
    return actual


def sweep_partial(root: str | Path, *, older_than_s: float = 3600.0) -> list[Path]:
    """Remove staging directories left by killed writers; return what was removed.

    Only those untouched for `older_than_s`, so a write in progress elsewhere is left alone.
    """
    root_dir = Path(root)
    if not root_dir.is_dir():
        return []
    cutoff = time.time() - older_than_s
    removed = []
    for candidate in [*root_dir.glob(f"{TMP_PREFIX}*"), *root_dir.glob(f"*/{TMP_PREFIX}*")]:
        if candidate.is_dir() and not candidate.is_symlink() and candidate.stat().st_mtime < cutoff:
            shutil.rmtree(candidate)
            removed.append(candidate)
    return removed


def _file_names(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _check_weights_match(
    directory: Path,
    state: Mapping[str, Tensor],
    extras: Mapping[str, Mapping[str, Tensor]],
) -> None:
    """Read the written weights back: what is on disk must be exactly what was trained."""
    from safetensors.torch import load_file

    extra_files = {f"{name}.safetensors": tensors for name, tensors in extras.items()}
    stored: dict[str, Tensor] = {}
    for weights in sorted(directory.glob("*.safetensors")):
        if weights.name in extra_files:
            _check_tensors_equal(load_file(weights), extra_files[weights.name], weights.name)
        else:
            stored.update(load_file(weights))
    if not stored:
        raise CheckpointError("no safetensors weights were written")
    _check_tensors_equal(stored, state, "the model")


def _check_tensors_equal(
    stored: Mapping[str, Tensor], expected: Mapping[str, Tensor], where: str
) -> None:
    import torch

    for name, tensor in stored.items():
        if name not in expected or not torch.equal(tensor, expected[name].detach().to("cpu")):
            raise CheckpointError(f"weight {name} of {where} did not round-trip")


def _model_card(manifest: Mapping[str, Any]) -> str:
    metrics = manifest["metrics"]
    rows = [
        f"| {name} | {value:.4f} |" if isinstance(value, float) else f"| {name} | {value} |"
        for name, value in sorted(metrics.items())
        if isinstance(value, (int, float))
    ]
    counts = ", ".join(f"{name}: {value}" for name, value in sorted(manifest["counts"].items()))
    return "\n".join(
        [
            "---",
            "library_name: transformers",
            "pipeline_tag: text-classification",
            "tags: [reward-model, pairwise]",
            "---",
            "",
            f"# Reward model: {manifest['project']} v{manifest['version']}",
            "",
            "A Bradley-Terry reward model trained by Pairwise from human pairwise preferences.",
            "It maps (prompt, response) to one scalar: higher means raters would prefer it.",
            "",
            "## Input",
            "",
            manifest["input"]["rule"],
            "Load it with `rewardtrain.load_reward_model(path).score(prompts, responses)`, which",
            "applies this rule, or with `AutoModelForSequenceClassification.from_pretrained`,",
            "building the same input yourself (see `pairwise.json`).",
            "",
            "## Data",
            "",
            f"- Base model: `{manifest['base_model']}`"
            + (f", warm-started from `{manifest['init_from']}`" if manifest["init_from"] else ""),
            f"- Judgments up to: {manifest['data_cutoff']}",
            f"- Training data sha256: `{manifest['data_sha256']}`",
            f"- Counts: {counts}",
            "",
            "## Held-out metrics",
            "",
            "| metric | value |",
            "| --- | --- |",
            *rows,
            "",
            "## Intended use and limits",
            "",
            "Ranking or filtering responses for this project's prompts, and as a reward signal for",
            "fine-tuning with human review. The scores are relative, not calibrated probabilities",
            "of quality; they inherit the raters' biases and the guidelines they followed, and",
            "may not transfer to other domains, languages, or inputs much longer than it was",
            "trained on.",
            "",
        ]
    )
