"""Layering rules: the web side never imports torch; annotation never imports rewardtrain; the ML
core of rewardtrain never imports Django."""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ML_CORE = ["config", "data", "model", "attention", "train", "checkpoints", "bundle", "launch"]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_web_side_does_not_import_torch():
    code = (
        "import sys, django; django.setup(); "
        "import config.urls, config.wsgi; "
        "from django.urls import get_resolver; get_resolver().url_patterns; "
        "bad = sorted(m for m in ('torch', 'transformers', 'safetensors') if m in sys.modules); "
        "assert not bad, bad"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


@pytest.mark.parametrize("path", sorted((ROOT / "annotation").rglob("*.py")), ids=str)
def test_annotation_never_imports_rewardtrain(path):
    assert not any(name.split(".")[0] == "rewardtrain" for name in _imports(path))


@pytest.mark.parametrize("module", ML_CORE)
def test_the_ml_core_never_imports_django(module):
    path = ROOT / "rewardtrain" / f"{module}.py"
    if not path.exists():
        pytest.fail(f"rewardtrain/{module}.py is part of the ML core and must exist")
    assert not any(name.split(".")[0] == "django" for name in _imports(path))


@pytest.mark.parametrize(
    "path", sorted((ROOT / "annotation" / "leaderboard").glob("*.py")), ids=lambda p: p.name
)
def test_the_leaderboard_mathematics_never_imports_django(path):
    assert not any(name.split(".")[0] == "django" for name in _imports(path))


def _lint_imports(*arguments: str) -> subprocess.CompletedProcess[str]:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    return subprocess.run(
        [str(lint_imports), "--no-cache", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_import_linter_contracts_hold():
    """The contracts in pyproject.toml ([tool.importlinter]) state the rules above for indirect
    imports too: a chain annotation -> x -> rewardtrain fails here though each file looks clean."""
    result = _lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_task_names_services_send_are_the_tasks_names():
    """Services send annotation tasks by name (annotation.task_names) so that they never import
    the task module; each name must be a registered task's, found in a fresh process (the web's)
    that has not imported annotation.tasks yet."""
    code = (
        "import sys, django; django.setup(); "
        "from unittest import mock; "
        "from annotation import task_names; "
        "from config.celery import enqueue_on_commit; "
        "assert 'annotation.tasks' not in sys.modules; "
        "names = (task_names.BATCH_IMPORT_RUN, task_names.PROJECT_STATS_REFRESH); "
        "patched = mock.patch('django.db.transaction.on_commit'); "
        "patched.start(); [enqueue_on_commit(name, 1) for name in names]; patched.stop(); "
        "from annotation import tasks; "
        "assert tasks.batch_import_run.name == task_names.BATCH_IMPORT_RUN; "
        "assert tasks.project_stats_refresh.name == task_names.PROJECT_STATS_REFRESH"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)


def test_the_modules_of_rewardtrain_import_each_other_without_cycles():
    """Imports inside functions and under TYPE_CHECKING count: a cycle hidden that way still
    means no module of it can be read, tested or changed on its own."""
    result = _lint_imports("--contract", "rewardtrain-acyclic")
    assert result.returncode == 0, result.stdout + result.stderr


def test_writing_a_checkpoint_knows_nothing_of_training():
    """It takes weights and a metadata dict, as nanochat's checkpoint manager does."""
    names = _imports(ROOT / "rewardtrain" / "checkpoints.py")
    assert not names & {"rewardtrain.train", "rewardtrain.model", "rewardtrain"}


def test_every_beat_entry_names_a_registered_task(settings):
    """A misspelt task in CELERY_BEAT_SCHEDULE fails only in production, every period, silently
    for the web: each entry must name a task the workers register."""
    from config.celery import app

    app.loader.import_default_modules()
    for entry, schedule in settings.CELERY_BEAT_SCHEDULE.items():
        assert schedule["task"] in app.tasks, f"beat entry {entry!r}: no task {schedule['task']!r}"
