"""The benchmarks that write rows straight into the tables (COPY, INSERT ... SELECT) name every
NOT NULL column themselves, so a new column breaks them unseen by any other test: Pair's counts
of votes and flags (migration 0017) left `benchmarks/export_speed.py`, `pairs_page.py`,
`leaderboard.py` and `agreement.py --from-db` failing with a NotNullViolation until they were
fixed. The loaders that take a size run here at a tiny one (the leaderboard's is fixed at
1,000,008 judgments), and the pairs' vote counts must match the judgments, as the engine keeps
them."""

import importlib.util
import os
import random
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest
from django.db.models import Count, Q

from annotation.models import Judgment, Pair, Project

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
CHOICES = ("a", "b", "tie", "both_bad")

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db]


def _benchmark(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """Import benchmarks/<name>.py; the environment defaults it sets for its own runs are undone."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # the scripts import their siblings
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ):
        spec.loader.exec_module(module)
    return module


def _assert_votes_match_judgments(project: Project) -> None:
    counted = Pair.objects.filter(project=project).annotate(
        **{f"n_{c}": Count("judgments", filter=Q(judgments__choice=c)) for c in CHOICES}
    )
    assert counted.exists()
    for pair in counted:
        for choice in CHOICES:
            assert getattr(pair, f"votes_{choice}") == getattr(pair, f"n_{choice}"), pair.id


def test_the_export_benchmark_seeds_a_project(monkeypatch):
    export_speed = _benchmark("export_speed", monkeypatch)
    export_speed._seed(40, random.Random(0))
    project = Project.objects.get(slug=export_speed.SLUG)
    assert Judgment.objects.filter(pair__project=project).count() == 40
    _assert_votes_match_judgments(project)


def test_the_agreement_benchmark_loads_its_judgments(monkeypatch):
    agreement = _benchmark("agreement", monkeypatch)
    arrays = agreement.synthetic_judgments(pairs=30, raters=6, per_pair=3, seed=0)
    project = agreement.load_into_database(arrays)
    assert Judgment.objects.filter(pair__project=project).count() == len(arrays)
    _assert_votes_match_judgments(project)


def test_the_pairs_page_benchmark_seeds_a_project(monkeypatch):
    pairs_page = _benchmark("pairs_page", monkeypatch)
    pairs_page._seed(30)
    project = Project.objects.get(slug=pairs_page.SLUG)
    assert Pair.objects.filter(project=project).count() == 30
    _assert_votes_match_judgments(project)
