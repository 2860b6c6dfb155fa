"""The training page and the training API through their URLs: permissions, buttons, polling,
downloads."""

import io
import json
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from django.urls import reverse

from rewardtrain.models import ModelVersion, TrainingRun
from rewardtrain.services.score_client import score_server_secret
from tests.conftest import login
from tests.rewardtrain.helpers import fake_version


@pytest.fixture
def checkpoints(settings, tmp_path):
    settings.CHECKPOINT_ROOT = tmp_path / "checkpoints"
    return settings.CHECKPOINT_ROOT


def _page(slug="alpha"):
    return reverse("rewardtrain:training", args=[slug])


def test_leads_see_the_training_page_raters_are_refused_and_outsiders_see_nothing(
    client, project, lead, rater, outsider, django_assert_max_num_queries
):
    login(client, lead)
    with django_assert_max_num_queries(10):
        assert client.get(_page()).status_code == 200
    assert login(client, rater).get(_page()).status_code == 403
    assert login(client, outsider).get(_page()).status_code == 404


def test_the_page_shows_versions_with_publish_roll_back_and_download(
    client, project, lead, checkpoints
):
    fake_version(project, 1, state=ModelVersion.State.RETIRED, metrics={"accuracy": 0.61})
    fake_version(project, 2, state=ModelVersion.State.PUBLISHED, metrics={"accuracy": 0.7})
    fake_version(project, 3, metrics={"accuracy": 0.66})

    html = login(client, lead).get(_page()).content.decode()

    assert "Roll back to v1" in html
    assert "Publish v3" in html
    assert "Publish v2" not in html
    assert html.count(">Download<") == 3
    assert '<polyline class="line"' in html  # the accuracy chart


def test_train_now_queues_one_run_and_a_second_click_reuses_it(client, project, lead):
    login(client, lead)
    url = reverse("rewardtrain:train-now", args=["alpha"])

    client.post(url)
    response = client.post(url, follow=True)

    assert TrainingRun.objects.filter(project=project).count() == 1
    assert "already queued" in response.content.decode()


def test_a_rater_cannot_train_or_publish(client, project, rater, checkpoints):
    version = fake_version(project, 1)
    login(client, rater)

    assert client.post(reverse("rewardtrain:train-now", args=["alpha"])).status_code == 403
    publish = reverse("rewardtrain:version-publish", args=["alpha", 1])
    assert client.post(publish).status_code == 403
    version.refresh_from_db()
    assert version.state == ModelVersion.State.CANDIDATE


def test_the_publish_button_publishes_and_rolls_back(client, project, lead, checkpoints):
    fake_version(project, 1, state=ModelVersion.State.PUBLISHED)
    fake_version(project, 2)
    login(client, lead)

    client.post(reverse("rewardtrain:version-publish", args=["alpha", 2]))
    assert ModelVersion.objects.get(state="published").version == 2
    client.post(reverse("rewardtrain:version-publish", args=["alpha", 1]))
    assert ModelVersion.objects.get(state="published").version == 1


def stopped_response_event(client, url):
    return client.get(url, headers={"HX-Request": "true"}).headers.get("HX-Trigger")


def test_an_active_run_card_polls_and_a_finished_one_stops(client, project, lead):
    run = TrainingRun.objects.create(project=project, trigger="manual", status="running")
    url = reverse("rewardtrain:run-status", args=["alpha", run.id])
    login(client, lead)

    polling = client.get(url, headers={"HX-Request": "true"}).content.decode()
    run.status = TrainingRun.Status.FAILED
    run.error = "Failed while training: <script>x</script>"
    run.save()
    stopped = client.get(url, headers={"HX-Request": "true"}).content.decode()

    assert 'hx-trigger="every 2s"' in polling
    assert "<progress" in polling
    assert "hx-trigger" not in stopped
    assert stopped_response_event(client, url) == "training-run-finished"
    assert "&lt;script&gt;x&lt;/script&gt;" in stopped
    assert "<html" not in stopped


def test_a_run_of_another_project_is_not_found(client, project, lead, other_project):
    run = TrainingRun.objects.create(project=other_project, trigger="manual")

    response = login(client, lead).get(reverse("rewardtrain:run-status", args=["alpha", run.id]))

    assert response.status_code == 404


def test_the_download_is_a_tar_gz_of_the_version_directory(client, project, lead, checkpoints):
    version = fake_version(project, 4)

    response = login(client, lead).get(reverse("rewardtrain:version-download", args=["alpha", 4]))

    assert response["Content-Disposition"] == 'attachment; filename="alpha-v4.tar.gz"'
    body = b"".join(response.streaming_content)
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        names = sorted(archive.getnames())
        weights = archive.extractfile("alpha-v4/model.safetensors").read()
    assert names == ["alpha-v4/config.json", "alpha-v4/model.safetensors"]
    assert weights == (checkpoints / version.path / "model.safetensors").read_bytes()


def test_a_tampered_version_is_not_downloaded(client, project, lead, checkpoints):
    version = fake_version(project, 1)
    (checkpoints / version.path / "model.safetensors").write_bytes(b"evil")

    response = login(client, lead).get(reverse("rewardtrain:version-download", args=["alpha", 1]))

    assert response.status_code == 409
    assert "model.safetensors does not match its sha256" in response.content.decode()


def test_the_api_lists_and_starts_runs_for_leads_only(client, project, lead, rater, outsider):
    url = reverse("training-api:run-list", args=["alpha"])

    created = login(client, lead).post(url)
    again = client.post(url)
    listed = client.get(url).json()

    assert created.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == created.json()["id"]
    assert [run["status"] for run in listed] == ["queued"]
    assert login(client, rater).get(url).status_code == 403
    detail = reverse("training-api:run-detail", args=[created.json()["id"]])
    assert login(client, outsider).get(detail).status_code == 404
    assert login(client, lead).get(detail).json()["data_cutoff_judgment_id"] == 0


def test_the_api_publishes_lists_and_downloads_versions(client, project, lead, checkpoints):
    fake_version(project, 1, state=ModelVersion.State.PUBLISHED)
    fake_version(project, 2)
    login(client, lead)

    published = client.post(reverse("training-api:model-publish", args=["alpha", 2]))
    listed = client.get(reverse("training-api:model-list", args=["alpha"])).json()
    download = client.get(reverse("training-api:model-download", args=["alpha", 2]))
    missing = client.post(reverse("training-api:model-publish", args=["alpha", 9]))

    assert published.json()["state"] == "published"
    assert [(v["version"], v["state"]) for v in listed] == [(2, "published"), (1, "retired")]
    assert download["Content-Type"] == "application/gzip"
    assert missing.status_code == 404


def test_scoring_without_a_published_model_is_a_clear_503(client, project, rater):
    url = reverse("training-api:score", args=["alpha"])
    body = {"items": [{"prompt": "hi", "response": "hello"}]}

    response = login(client, rater).post(url, body, content_type="application/json")

    assert response.status_code == 503
    assert "No model is published for project alpha" in response.json()["detail"]


def test_scoring_with_the_score_server_down_is_a_clear_503(
    client, project, rater, settings, checkpoints
):
    fake_version(project, 1, state=ModelVersion.State.PUBLISHED)
    settings.SCORE_SERVER_URL = "http://127.0.0.1:1"  # nothing listens on port 1
    url = reverse("training-api:score", args=["alpha"])
    body = {"items": [{"prompt": "hi", "response": "hello"}]}

    response = login(client, rater).post(url, body, content_type="application/json")

    assert response.status_code == 503
    assert "manage.py score_server" in response.json()["detail"]


def test_score_input_is_validated_and_outsiders_get_404(client, project, rater, outsider):
    url = reverse("training-api:score", args=["alpha"])

    bad = login(client, rater).post(
        url, {"items": [{"prompt": 3}]}, content_type="application/json"
    )
    hidden = login(client, outsider).post(url, {"items": []}, content_type="application/json")

    assert bad.status_code == 400
    assert hidden.status_code == 404


class _FailingScoreServer(BaseHTTPRequestHandler):
    """Answers every score request as the score server does when the published files are gone, and
    remembers the secret it was sent."""

    secrets: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.secrets.append(self.headers.get("X-Score-Server-Secret", ""))
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps(
            {
                "detail": "v1 of alpha was refused: CheckpointError: /srv/ckpt/alpha/v1 is not a "
                "directory"
            }
        ).encode()
        self.send_response(503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def failing_score_server(settings):
    server = HTTPServer(("127.0.0.1", 0), _FailingScoreServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.SCORE_SERVER_URL = f"http://127.0.0.1:{server.server_address[1]}"
    yield _FailingScoreServer.secrets
    server.shutdown()
    server.server_close()


def test_a_score_server_error_reaches_the_member_without_server_paths(
    client, project, rater, checkpoints, failing_score_server
):
    fake_version(project, 1, state=ModelVersion.State.PUBLISHED)
    url = reverse("training-api:score", args=["alpha"])
    body = {"items": [{"prompt": "hi", "response": "hello"}]}

    response = login(client, rater).post(url, body, content_type="application/json")

    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "v1 of alpha was refused" in detail
    assert "/srv/ckpt" not in detail
    assert failing_score_server[-1] == score_server_secret()  # the web sends the shared secret


def test_the_score_server_down_message_names_no_internal_address(
    client, project, rater, settings, checkpoints
):
    fake_version(project, 1, state=ModelVersion.State.PUBLISHED)
    settings.SCORE_SERVER_URL = "http://127.0.0.1:1"
    url = reverse("training-api:score", args=["alpha"])
    body = {"items": [{"prompt": "hi", "response": "hello"}]}

    response = login(client, rater).post(url, body, content_type="application/json")

    assert "127.0.0.1" not in response.json()["detail"]


def test_a_running_card_sends_no_event_and_the_listening_parts_refresh_alone(
    client, project, lead, checkpoints
):
    run = TrainingRun.objects.create(project=project, trigger="manual", status="running")
    login(client, lead)
    page = client.get(_page()).content.decode()
    assert page.count('hx-trigger="training-run-finished from:body"') == 2
    assert "A run is already queued or running" in page
    assert (
        stopped_response_event(client, reverse("rewardtrain:run-status", args=["alpha", run.id]))
        is None
    )

    run.status = TrainingRun.Status.SUCCEEDED
    run.save()
    fake_version(project, 1, state=ModelVersion.State.PUBLISHED, metrics={"accuracy": 0.9})
    summary = client.get(_page(), headers={"HX-Request": "true", "HX-Target": "training-summary"})
    versions = client.get(_page(), headers={"HX-Request": "true", "HX-Target": "training-versions"})

    summary_html, versions_html = summary.content.decode(), versions.content.decode()
    assert summary_html.lstrip().startswith('<section id="training-summary"')
    assert "<html" not in summary_html
    assert "A run is already queued or running" not in summary_html
    assert "disabled" not in summary_html
    assert versions_html.lstrip().startswith('<section id="training-versions"')
    assert "Publish v1" not in versions_html
    assert ">v1<" in versions_html


def test_an_accuracy_on_few_held_out_pairs_is_not_headlined(client, project, lead, checkpoints):
    fake_version(
        project, 1, state=ModelVersion.State.PUBLISHED, metrics={"accuracy": 6 / 7, "count": 7}
    )
    fake_version(project, 2, metrics={"accuracy": 0.8, "count": 200})

    html = login(client, lead).get(_page()).content.decode()

    published = html[html.index('id="published-heading"') : html.index("Train now")]
    assert "not yet meaningful" in published
    expected = "0.857 on 7 held-out pairs, 95% interval 0.487 to 0.974; at least 50 are needed"
    assert expected in published
    assert '0.800 <span class="hint">(95% interval 0.739 to 0.850, 200 held-out pairs)' in html
    assert 'class="dot tentative"' in html  # v1 is hollow on the chart
    assert html.count('class="dot"') == 1


def test_the_minimum_of_held_out_pairs_is_a_setting(client, project, lead, checkpoints, settings):
    settings.TRAINING_MIN_HELDOUT_PAIRS = 5
    fake_version(
        project, 1, state=ModelVersion.State.PUBLISHED, metrics={"accuracy": 6 / 7, "count": 7}
    )

    html = login(client, lead).get(_page()).content.decode()

    assert '<span class="tentative">not yet meaningful</span>' not in html
    assert '0.857 <span class="hint">(95% interval 0.487 to 0.974, 7 held-out pairs)' in html


def test_a_first_run_card_reads_as_sentences_with_a_labelled_loss_chart(client, project, lead):
    TrainingRun.objects.create(
        project=project,
        trigger="manual",
        status="succeeded",
        loss_curve=[[1, 0.70], [2, 0.69], [3, 0.68]],
        metrics={
            "version": 1,
            "heldout": {"accuracy": 6 / 7, "count": 7, "loss": 0.68},
            "counts": {"train_pairs": 60, "heldout_pairs": 7},
            "compared_with": None,
            "warm_start": "from the base model: nothing was published yet",
            "promotion": {"published": True, "reason": "first version: nothing was published"},
        },
    )

    html = login(client, lead).get(_page()).content.decode()

    assert (
        "Trained from the base model because nothing was published yet. "
        "Published as the project&#x27;s first version."
    ) in html
    assert "nothing is published. Published:" not in html
    for label in ("training step", "loss (nats)", "chance: ln 2 = 0.693"):
        assert f">{label}</text>" in html
    assert '<span class="tentative">not yet meaningful</span>' in html
