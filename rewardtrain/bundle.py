"""A run bundle: one attempt's inputs frozen into a directory, runnable without the database.

Layout, under `<CHECKPOINT_ROOT>/_runs/<run>-<attempt>/` (a name no project slug can take):

- `train.jsonl`, `heldout.jsonl`: the pairs, one `PreferencePair.to_dict()` a line, in order;
- `config.json`: the `TrainConfig`;
- `job.json`: what to write and compare with (project, version number, data cut-off, counts),
  the base model's path and the sha256 of each of its files, the warm-start and published
  versions (paths relative to the checkpoint root, and their checksums);
- `manifest.json`: the sha256 of each of the files above, written last, so a bundle without it
  is incomplete.

The launch (`rewardtrain.launch`) adds `progress.json` beside them: the only file that changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rewardtrain.config import TrainConfig
from rewardtrain.data import PreferencePair

RUNS_DIR = "_runs"  # project slugs start with a letter or digit: this never collides
MANIFEST = "manifest.json"
PROGRESS = "progress.json"  # written by rank 0 of the launch: the only file that changes
INPUT_FILES = ("train.jsonl", "heldout.jsonl", "config.json", "job.json")


class BundleError(Exception):
    """A bundle that is incomplete, changed since it was written, or names changed weights."""


@dataclass(frozen=True, kw_only=True)
class Bundle:
    directory: Path
    config: TrainConfig
    train_pairs: list[PreferencePair]
    heldout: list[PreferencePair]
    job: dict[str, Any]

    @property
    def checkpoint_root(self) -> Path:
        return self.directory.parent.parent


def bundle_dir(root: str | Path, *, run_id: int, attempt: int) -> Path:
    return Path(root) / RUNS_DIR / f"{run_id}-{attempt}"


def bundle_run_id(directory: Path) -> int | None:
    """The run a bundle directory belongs to, by its name (`bundle_dir`); None for another name."""
    run, dash, attempt = directory.name.partition("-")
    if not (dash and run.isdigit() and attempt.isdigit()):
        return None
    return int(run)


def bundle_write(
    directory: Path,
    *,
    config: TrainConfig,
    train_pairs: Sequence[PreferencePair],
    heldout: Sequence[PreferencePair],
    job: Mapping[str, Any],
) -> Path:
    """Freeze an attempt's inputs into `directory` (created; an older copy is replaced).

    `job["base_sha256"]` is filled here from the files of `config.base_model`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in (MANIFEST, PROGRESS, *INPUT_FILES):
        (directory / name).unlink(missing_ok=True)
    _write_jsonl(directory / "train.jsonl", train_pairs)
    _write_jsonl(directory / "heldout.jsonl", heldout)
    _write_json(directory / "config.json", config.to_dict())
    _write_json(
        directory / "job.json", {**job, "base_sha256": files_sha256(Path(config.base_model))}
    )
    _write_json(directory / MANIFEST, {name: sha256(directory / name) for name in INPUT_FILES})
    return directory


def bundle_read(directory: str | Path) -> Bundle:
    """Read a bundle back, refusing any file that is missing or differs from the manifest, and
    base weights that changed since the bundle was written."""
    directory = Path(directory).resolve()
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{directory}: {MANIFEST} is missing (the bundle is incomplete)")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for name in INPUT_FILES:
        if name not in manifest or not (directory / name).is_file():
            raise BundleError(f"{directory}: {name} is missing")
        if sha256(directory / name) != manifest[name]:
            raise BundleError(f"{directory}: {name} does not match its sha256 in {MANIFEST}")
    config = TrainConfig.from_dict(_read_json(directory / "config.json"))
    job = _read_json(directory / "job.json")
    if files_sha256(Path(config.base_model)) != job["base_sha256"]:
        raise BundleError(f"{config.base_model}: the base model changed since the run was queued")
    return Bundle(
        directory=directory,
        config=config,
        train_pairs=_read_jsonl(directory / "train.jsonl"),
        heldout=_read_jsonl(directory / "heldout.jsonl"),
        job=job,
    )


def progress_read(directory: str | Path) -> dict[str, Any] | None:
    """The last progress record of a run directory, or None before rank 0 wrote one."""
    try:
        record: dict[str, Any] = json.loads((Path(directory) / PROGRESS).read_text("utf-8"))
    except FileNotFoundError:
        return None
    return record


def files_sha256(directory: Path) -> dict[str, str]:
    """sha256 of each regular file directly in a model directory (empty when it is missing)."""
    if not directory.is_dir():
        return {}
    return {
        entry.name: sha256(entry)
        for entry in sorted(directory.iterdir())
        if entry.is_file() and not entry.is_symlink()
    }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, value: Any) -> None:
    """Replace `path` in one rename, so a reader on any machine sees the old or the new file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(value, allow_nan=False), encoding="utf-8")
    os.replace(temporary, path)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True, allow_nan=False) + "\n")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_jsonl(path: Path, pairs: Sequence[PreferencePair]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for pair in pairs:
            handle.write(json.dumps(pair.to_dict(), ensure_ascii=False, allow_nan=False) + "\n")


def _read_jsonl(path: Path) -> list[PreferencePair]:
    with path.open(encoding="utf-8") as handle:
        return [PreferencePair(**json.loads(line)) for line in handle if line.strip()]
