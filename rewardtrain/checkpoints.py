"""Model version directories: written atomically, verified before anything loads them.

Layout (design.md section 7): `<root>/<project>/v<N>/` holds config.json, model.safetensors,
the tokenizer files, `pairwise.json` (the input rule, data, metrics and every file's sha256) and
a README.md model card. A version is written under `.tmp-v<N>-<random>` beside its final name,
fsynced, re-read and checked, then renamed into place, so a crash leaves either nothing under the
final name or a complete version. Nothing here ever unpickles: pickle-capable files are refused.
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

import torch
from safetensors.torch import load_file

if TYPE_CHECKING:
    from rewardtrain.ensemble import EnsembleHeads
    from rewardtrain.train import TrainResult

MANIFEST_NAME = "pairwise.json"
CARD_NAME = "README.md"
MANIFEST_FORMAT = 1
# Formats that can carry a pickle, and so run code when loaded with torch.load or numpy.
PICKLE_SUFFIXES = frozenset({".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".npz"})
TMP_PREFIX = ".tmp-"
_PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


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
    result: TrainResult,
    data_cutoff: int | str | None,
    data_sha256: str,
    counts: Mapping[str, int],
    metrics: Mapping[str, Any],
    launch: Mapping[str, Any] | None = None,
    ensemble: EnsembleHeads | None = None,
    created_at: datetime | None = None,
) -> WrittenCheckpoint:
    """Write `<root>/<project>/v<version>/` and return its path and every file's checksum.

    `launch` says how it was trained: `launcher`, `world_size` (also a top-level key) and
    `devices`; without it, one process. `ensemble`: the uncertainty heads, written to their own
    file and listed under "ensemble" in pairwise.json.

    Refuses to replace an existing version. `metrics` must be JSON-serialisable, without NaN.
    """
    if not _PROJECT_NAME.fullmatch(project):
        raise CheckpointError(f"project name {project!r} is not a safe directory name")
    if version < 1:
        raise CheckpointError("versions start at 1")
    project_dir = Path(root) / project
    project_dir.mkdir(parents=True, exist_ok=True)
    final = project_dir / f"v{version}"
    if final.exists():
        raise FileExistsError(f"{final} already exists; versions are never overwritten")

    staging = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}v{version}-", dir=project_dir))
    try:
        result.model.save_pretrained(staging)
        result.tokenizer.save_pretrained(staging)
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "version": version,
            "project": project,
            "base_model": result.base_model,
            "init_from": result.init_from,
            "input": result.spec.to_dict(),
            "max_length": result.spec.max_length,
            "truncation_side": result.spec.truncation_side,
            "data_cutoff": data_cutoff,
            "data_sha256": data_sha256,
            "counts": dict(counts),
            "metrics": dict(metrics),
            "train": {"config": result.config.to_dict(), **result.stats()},
            "created_at": (created_at or datetime.now(UTC)).isoformat(),
            "world_size": (launch or {}).get("world_size", 1),
            "launch": dict(launch or {"launcher": "inline", "world_size": 1}),
        }
        if ensemble is not None:
            manifest["ensemble"] = ensemble.save(staging)
        (staging / CARD_NAME).write_text(_model_card(manifest), encoding="utf-8")
        manifest["files"] = {name: _sha256(staging / name) for name in _file_names(staging)}
        text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
        (staging / MANIFEST_NAME).write_text(text + "\n", encoding="utf-8")
        for name in _file_names(staging):
            _fsync_file(staging / name)
        _fsync_dir(staging)

        files_sha256 = checkpoint_verify(staging, root=project_dir, expected_sha256=None)
        _check_weights_match(
            staging, result.model.state_dict(), besides=manifest.get("ensemble", {}).get("file")
        )
        # rename() would silently replace an empty directory created meanwhile: look again.
        if final.exists():
            raise FileExistsError(f"{final} already exists; versions are never overwritten")
        os.rename(staging, final)
        _fsync_dir(project_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return WrittenCheckpoint(path=final, files_sha256=files_sha256)


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
    directory: Path, state: Mapping[str, torch.Tensor], *, besides: str | None
) -> None:
    """Read the written weights back: what is on disk must be exactly what was trained.
    `besides`: a safetensors file that is not the model's (the ensemble heads)."""
    stored: dict[str, torch.Tensor] = {}
    for weights in sorted(directory.glob("*.safetensors")):
        if weights.name != besides:
            stored.update(load_file(weights))
    if not stored:
        raise CheckpointError("no safetensors weights were written")
    for name, tensor in stored.items():
        if name not in state or not torch.equal(tensor, state[name].detach().to("cpu")):
            raise CheckpointError(f"weight {name} did not round-trip")


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
