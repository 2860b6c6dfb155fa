"""Pool scoring: every open pair gets the published version's p(a wins) and uncertainty, once per
version, resuming after a kill; publications and imports queue it."""

import io
import json
from datetime import timedelta
from pathlib import Path

import pytest
from celery import Signature
from django.urls import reverse
from django.utils import timezone

from annotation.models import Batch, Pair
from annotation.services.imports import batch_import
from annotation.task_names import POOL_SCORE
from rewardtrain import ensemble
from rewardtrain.models import ModelVersion, TrainingRun
from rewardtrain.services.pool import pool_score, pool_score_sweep
from rewardtrain.services.runs import training_run_execute, training_run_request
from rewardtrain.services.versions import model_version_publish
from tests.conftest import login
from tests.factories import BatchFactory, PairFactory, ProjectFactory, PromptFactory
from tests.rewardtrain.helpers import WORDS, build_tiny_model, seed_pairs, trainable_project


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert-pool"))


@pytest.fixture
def sent(monkeypatch):
    """Project ids sent to pool scoring: by rewardtrain (publications) or annotation (imports)."""
    messages: list[int] = []

    real = Signature.apply_async

    def apply_async(self, args=None, **kwargs):
        if self.task != POOL_SCORE:
            return real(self, args, **kwargs)
        messages.append(args[0])

    monkeypatch.setattr(Signature, "apply_async", apply_async)
    return messages


@pytest.fixture
def published(project, tiny_model, settings, tmp_path, sent, django_capture_on_commit_callbacks):
    """Version 1 trained on 40 seed pairs and published, and 20 open pairs to score."""
    settings.CHECKPOINT_ROOT = tmp_path / "checkpoints"
    seed_pairs(trainable_project(project, tiny_model), 40)
    run, _ = training_run_request(
        project=project, trigger=TrainingRun.Trigger.MANUAL, enqueue=False
    )
    with django_capture_on_commit_callbacks(execute=True):
        run = training_run_execute(run_id=run.id)
    assert run.status == TrainingRun.Status.SUCCEEDED, run.error
    assert sent == [project.id]  # the publication queued pool scoring
    _open_pairs(project, 20)
    return ModelVersion.objects.get(project=project, state=ModelVersion.State.PUBLISHED)


def _open_pairs(project, count, *, offset=0):
    batch = BatchFactory(project=project)
    for i in range(offset, offset + count):
        PairFactory(
            prompt=PromptFactory(batch=batch, text=f"what about the {WORDS[i % 10]} {i}?"),
            response_a__text=f"sure, the {WORDS[(i + 1) % 10]} is lovely, thank you",
            response_b__text=f"no. {WORDS[(i + 2) % 10]}",
        )


def _open(project):
    return Pair.objects.open().filter(project=project)


def test_every_open_pair_is_scored_once_per_version(project, published):
    outcome = pool_score(project_id=project.id, batch_pairs=8)

    assert (outcome.version, outcome.scored, outcome.batches) == (1, 20, 3)
    for pair in _open(project):
        assert pair.model_version == 1
        assert 0.0 < pair.model_p_a < 1.0
        assert 0.0 <= pair.model_uncertainty <= 0.5
    # Seed-labelled pairs are not open: never served, so not scored.
    assert not Pair.objects.filter(project=project, model_version__isnull=False).exclude(
        id__in=_open(project)
    )
    assert pool_score(project_id=project.id).scored == 0  # idempotent


def _score_until_killed(monkeypatch, project, *, batches: int) -> None:
    """Pool scoring in batches of 8 whose worker dies as it starts batch `batches` + 1."""
    real = ensemble.pair_estimates
    calls = []

    def killed_after(*args):
        calls.append(1)
        if len(calls) > batches:
            raise SystemExit("worker killed")
        return real(*args)

    monkeypatch.setattr(ensemble, "pair_estimates", killed_after)
    with pytest.raises(SystemExit):
        pool_score(project_id=project.id, batch_pairs=8)
    monkeypatch.setattr(ensemble, "pair_estimates", real)


def test_a_killed_run_resumes_where_the_database_says(project, published, monkeypatch):
    _score_until_killed(monkeypatch, project, batches=2)
    assert _open(project).filter(model_version=1).count() == 16
    first_scores = dict(_open(project).filter(model_version=1).values_list("id", "model_p_a"))

    outcome = pool_score(project_id=project.id, batch_pairs=8)

    assert (outcome.scored, outcome.batches) == (4, 1)
    assert _open(project).filter(model_version=1).count() == 20
    kept = dict(_open(project).filter(id__in=first_scores).values_list("id", "model_p_a"))
    assert kept == first_scores  # nothing scored twice


def test_publishing_another_version_queues_scoring_and_it_rescores_the_pool(
    project, published, sent, django_capture_on_commit_callbacks
):
    pool_score(project_id=project.id)
    second = ModelVersion.objects.create(  # the same files: v2 serves what v1 did
        project=project,
        version=2,
        path=published.path,
        file_sha256=published.file_sha256,
        state=ModelVersion.State.CANDIDATE,
    )
    with django_capture_on_commit_callbacks(execute=True):
        model_version_publish(version=second, user=None)
    assert sent[-1] == project.id

    outcome = pool_score(project_id=project.id)

    assert (outcome.version, outcome.scored) == (2, 20)
    assert set(_open(project).values_list("model_version", flat=True)) == {2}


def test_an_import_queues_scoring_of_its_new_pairs(
    project, published, lead, sent, django_capture_on_commit_callbacks
):
    pool_score(project_id=project.id)
    records = "".join(
        json.dumps(
            {"prompt": f"and the {WORDS[i]}?", "response_a": "gladly, thanks", "response_b": "no"}
        )
        + "\n"
        for i in range(5)
    )
    with django_capture_on_commit_callbacks(execute=True):
        batch_import(
            project=project,
            fileobj=io.BytesIO(records.encode()),
            filename="more.jsonl",
            uploaded_by=lead,
            known_answers=Batch.KnownAnswers.NONE,
        )
    assert sent[-1] == project.id

    outcome = pool_score(project_id=project.id)

    assert outcome.scored == 5
    assert not _open(project).filter(model_version__isnull=True).exists()


def test_the_training_page_shows_how_much_of_the_pool_is_scored(client, project, published, lead):
    pool_score(project_id=project.id, batch_pairs=8)
    _open_pairs(project, 3, offset=100)  # arrived since
    login(client, lead)

    page = client.get(reverse("rewardtrain:training", args=[project.slug]))

    assert page.status_code == 200
    assert "Open pairs scored by v1: 20 of 23" in " ".join(page.content.decode().split())
    assert b"every 5s" in page.content  # it refreshes until the pool is scored


def _project_with(*, published: int | None, candidate: int | None = None, **project_fields):
    project = ProjectFactory(**project_fields)
    for number, state in ((published, "published"), (candidate, "candidate")):
        if number is not None:
            ModelVersion.objects.create(
                project=project, version=number, path=f"{project.slug}/v{number}", state=state
            )
    return project


def _pair_scored_by(project, version, **fields):
    return PairFactory(prompt__batch__project=project, model_version=version, **fields)


def test_the_sweep_sends_scoring_where_the_published_version_left_open_pairs(
    db, sent, django_assert_num_queries, django_capture_on_commit_callbacks
):
    """A lost message is sent again: for a project with an open pair never scored (NULL) or
    scored by an older version; not for one whose open pairs the published version scored all
    (pairs that are no longer open do not count), nor one with only a candidate version, nor an
    archived one. One query finds them."""
    never = _project_with(published=1)
    _pair_scored_by(never, 1)
    _pair_scored_by(never, None)
    older = _project_with(published=2, candidate=3)
    _pair_scored_by(older, 1)
    done = _project_with(published=1, candidate=2)
    _pair_scored_by(done, 1)
    _pair_scored_by(done, None, judgments_count=3, judgments_needed=3)  # complete: not open
    _pair_scored_by(done, None, gold_choice="a")  # gold: never in the pool
    unpublished = _project_with(published=None, candidate=1)
    _pair_scored_by(unpublished, None)
    archived = _project_with(published=1, archived_at=timezone.now())
    _pair_scored_by(archived, None)

    with django_assert_num_queries(1), django_capture_on_commit_callbacks(execute=True):
        found = pool_score_sweep()

    assert found == sent == [never.id, older.id]
    Pair.objects.filter(project=never).update(model_version=1)
    Pair.objects.filter(project=older).update(model_version=2)
    sent.clear()
    with django_assert_num_queries(1), django_capture_on_commit_callbacks(execute=True):
        assert pool_score_sweep() == []
    assert sent == []


def test_the_sweep_runs_on_beat_and_sends_the_scoring_task(settings):
    """The beat entry names the sweep task, on the default queue (a busy training worker must
    not hold it up); the sweep sends the task that pool scoring runs as."""
    from rewardtrain import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["sweep-pool-scoring"]
    assert entry["task"] == tasks.pool_score_sweep.name
    assert entry["options"] == {"queue": "default"}
    assert entry["schedule"] > 0
    assert tasks.pool_score.name == POOL_SCORE


def test_nothing_published_scores_nothing(project):
    PairFactory(prompt__batch__project=project)

    assert pool_score(project_id=project.id).version is None


def test_real_hh_records_multi_turn_transcripts_included_are_scored(
    project, published, lead, django_capture_on_commit_callbacks
):
    """Anthropic's HH file through the import: prompts are whole transcripts up to the last
    assistant turn, many several turns long. HH records always carry an answer, so they come in
    as gold pairs, which are served apart from the pool (OPEN_PAIR) and never scored; their answer
    is then dropped, making them ordinary open pairs with the importer's real shapes."""
    data = Path(__file__).resolve().parents[1] / "imports" / "data" / "hh-harmless-base-20.jsonl"
    pool_score(project_id=project.id)
    with data.open("rb") as fileobj, django_capture_on_commit_callbacks(execute=True):
        batch_import(
            project=project,
            fileobj=fileobj,
            filename=data.name,
            uploaded_by=lead,
            known_answers=Batch.KnownAnswers.GOLD,
        )
    in_file = Pair.objects.filter(project=project, batch__filename=data.name)
    assert pool_score(project_id=project.id).scored == 0  # gold pairs are not in the pool
    in_file.update(gold_choice="", judgments_needed=project.raters_per_pair)
    imported = _open(project).filter(batch__filename=data.name)
    assert imported.count() >= 18
    assert imported.filter(prompt__text__contains="Assistant:").exists()  # earlier turns kept

    outcome = pool_score(project_id=project.id)

    assert outcome.scored == imported.count()
    assert not imported.filter(model_version__isnull=True).exists()


def test_the_sweep_leaves_a_scoring_that_beats_alone_and_resends_one_gone_silent(
    project, published, monkeypatch, sent, settings, django_capture_on_commit_callbacks
):
    settings.POOL_SWEEP_SECONDS = 600
    _score_until_killed(monkeypatch, project, batches=1)
    version = ModelVersion.objects.get(project=project, state="published")
    assert version.pool_heartbeat_at is not None
    sent.clear()

    with django_capture_on_commit_callbacks(execute=True):
        assert pool_score_sweep() == []  # it beat a moment ago: a scoring in progress
    silent = timezone.now() - timedelta(seconds=601)
    ModelVersion.objects.filter(id=version.id).update(pool_heartbeat_at=silent)
    with django_capture_on_commit_callbacks(execute=True):
        assert pool_score_sweep() == [project.id]

    assert sent == [project.id]
