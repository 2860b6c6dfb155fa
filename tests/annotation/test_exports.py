"""Datasets out: formats, aggregation, filters, access, snapshot and the import round trip."""

import csv
import io
import json
import threading
from datetime import UTC, datetime

import pyarrow.json as pa_json
import pyarrow.parquet as pq
import pytest
from django.core.management import call_command
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token

from annotation.exports.aggregation import Decision, Votes, decide, decide_by_known_answer
from annotation.exports.formats import neutralise
from annotation.models import Batch, Judgment
from annotation.selectors import exports as export_selectors
from annotation.selectors.exports import (
    ExportOptions,
    export_row_count,
    export_stream,
    rater_pseudonym,
)
from tests.conftest import login
from tests.factories import (
    BatchFactory,
    JudgmentFactory,
    PairFactory,
    ProjectFactory,
    PromptFactory,
    ResponseFactory,
    UserFactory,
)

TRL_FILE_COLUMNS = ["prompt", "chosen", "rejected", "margin", "p_chosen", "decided_by"]
DAY1 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DAY2 = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)


def _pair(batch, prompt, a, b, **kwargs):
    prompt_row = PromptFactory(batch=batch, project=batch.project, text=prompt)
    return PairFactory(
        prompt=prompt_row,
        project=batch.project,
        batch=batch,
        response_a=ResponseFactory(prompt=prompt_row, text=a, model_name="m-a"),
        response_b=ResponseFactory(prompt=prompt_row, text=b, model_name="m-b"),
        **kwargs,
    )


def _judge(pair, rater, choice, strength=None, at=DAY1, **kwargs):
    return JudgmentFactory(
        assignment__pair=pair,
        assignment__rater=rater,
        choice=choice,
        strength=strength,
        created_at=at,
        **kwargs,
    )


@pytest.fixture
def raters(db):
    return [UserFactory(username=f"judge{i}") for i in range(3)]


@pytest.fixture
def data(project, raters):
    """p1: a, a, b (a wins 2/3); p2: tie, tie, a (no majority unless ties abstain); p3: a, b
    (a draw); p4 judged the next day, b unanimous."""
    batch = BatchFactory(project=project)
    r1, r2, r3 = raters
    p1 = _pair(batch, "Say hi", "Hi! 👋", '=HYPERLINK("http://x")')
    _judge(p1, r1, "a", 3, rationale="warmer", assignment__served_by="exploration")
    _judge(p1, r2, "a", 2)
    _judge(p1, r3, "b", 1)
    p2 = _pair(batch, "Capital of France?", "Paris", "París")
    _judge(p2, r1, "tie")
    _judge(p2, r2, "tie")
    _judge(p2, r3, "a", 2)
    p3 = _pair(batch, "2+2?", "4", "four")
    _judge(p3, r1, "a", 1)
    _judge(p3, r2, "b", 1)
    p4 = _pair(batch, "مرحبا\u200f", "أهلا", "سلام")
    for rater in raters:
        _judge(p4, rater, "b", 3, at=DAY2)
    return {"batch": batch, "pairs": [p1, p2, p3, p4]}


def _export(project, **options) -> bytes:
    return b"".join(export_stream(project=project, options=ExportOptions(**options)).chunks)


def _lines(content: bytes) -> list[dict]:
    return [json.loads(line) for line in content.decode("utf-8").splitlines()]


# -- aggregation ---------------------------------------------------------------------------


def test_a_strict_majority_wins_and_the_margin_weighs_strength_and_dissent():
    votes = Votes(a=2, b=1, strength_a=5, strength_b=1)
    assert decide(votes) == Decision("a", 0.666667, 0.444444, p_chosen=0.666667)


def test_unanimous_full_strength_is_margin_one_and_without_strength_margin_is_net_agreement():
    assert decide(Votes(b=3, strength_b=9)) == Decision("b", 1.0, 1.0)
    assert decide(Votes(a=3, b=1, strength_a=9, strength_b=3)) == Decision(
        "a", 0.75, 0.5, p_chosen=0.75
    )


def test_draws_and_tie_majorities_are_excluded_by_default():
    assert decide(Votes(a=1, b=1, strength_a=3, strength_b=3)) is None
    assert decide(Votes(a=1, tie=2, strength_a=3)) is None
    assert decide(Votes(a=1, tie=1, strength_a=3)) is None  # half is not a majority
    assert decide(Votes(a=2, both_bad=1, strength_a=6)) == Decision("a", 0.666667, 0.666667)


def test_ties_may_abstain_so_the_decisive_votes_decide():
    assert decide(Votes(a=1, tie=2, strength_a=2), ties="abstain") == Decision("a", 1.0, 0.666667)
    assert decide(Votes(tie=3), ties="abstain") is None


def test_the_margin_is_never_negative():
    assert decide(Votes(a=2, b=1, strength_a=2, strength_b=3)) == Decision(
        "a", 0.666667, 0.0, p_chosen=0.666667
    )


# -- formats -------------------------------------------------------------------------------


def test_trl_holds_one_line_per_decided_pair_in_its_exact_form(data):
    content = _export(data["batch"].project, format="trl")
    assert content.decode("utf-8") == (
        '{"prompt": "Say hi", "chosen": "Hi! 👋", "rejected": "=HYPERLINK(\\"http://x\\")", '
        '"margin": 0.444444, "p_chosen": 0.666667, "decided_by": "aggregation"}\n'
        '{"prompt": "مرحبا\u200f", "chosen": "سلام", "rejected": "أهلا", "margin": 1.0, '
        '"p_chosen": 1.0, "decided_by": "aggregation"}\n'
    )


def test_trl_with_abstaining_ties_adds_the_pair_that_raters_mostly_called_a_tie(data):
    lines = _lines(_export(data["batch"].project, format="trl", ties="abstain"))
    assert [line["prompt"] for line in lines] == ["Say hi", "Capital of France?", "مرحبا\u200f"]
    assert lines[1] == {
        "prompt": "Capital of France?",
        "chosen": "Paris",
        "rejected": "París",
        "margin": 0.666667,
        "p_chosen": 1.0,
        "decided_by": "aggregation",
    }


def test_chat_prompts_export_in_trl_conversational_form(project, raters):
    batch = BatchFactory(project=project)
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]
    prompt = PromptFactory(batch=batch, project=project, text="", messages=chat)
    pair = PairFactory(prompt=prompt, project=project, batch=batch)
    text_pair = _pair(batch, "Plain?", "yes", "no")
    for rater in raters:
        _judge(pair, rater, "a", 3)
        _judge(text_pair, rater, "b", 3)
    lines = _lines(_export(project, format="trl"))
    assert lines[0] == {
        "prompt": chat,
        "chosen": [{"role": "assistant", "content": pair.response_a.text}],
        "rejected": [{"role": "assistant", "content": pair.response_b.text}],
        "margin": 1.0,
        "p_chosen": 1.0,
        "decided_by": "aggregation",
    }
    # One file, one form: the plain prompt becomes a user message so every line has one type.
    assert lines[1]["prompt"] == [{"role": "user", "content": "Plain?"}]
    assert lines[1]["chosen"] == [{"role": "assistant", "content": "no"}]


def test_judgments_hold_every_field_with_a_pseudonymous_rater(data, raters):
    lines = _lines(_export(data["batch"].project, format="judgments"))
    assert len(lines) == 11
    p1 = data["pairs"][0]
    first = Judgment.objects.order_by("id").first()
    assert lines[0] == {
        "judgment_id": first.id,
        "source": "rater",
        "batch_id": data["batch"].id,
        "pair_id": p1.id,
        "pair_external_id": "",
        "prompt": "Say hi",
        "response_a": "Hi! 👋",
        "response_b": '=HYPERLINK("http://x")',
        "model_a": "m-a",
        "model_b": "m-b",
        "rater": rater_pseudonym(raters[0].id),
        "choice": "a",
        "strength": 3,
        "criteria": {},
        "rationale": "warmer",
        "swapped": False,
        "duration_ms": 12000,
        "active_ms": None,
        "created_at": "2025-03-01T12:00:00Z",
        "gold_choice": None,
        "rater_accuracy": lines[0]["rater_accuracy"],
        "pair_metadata": {},
        "served_by": "exploration",
    }
    assert lines[1]["served_by"] is None  # a lease from before the engine recorded it
    assert 0.0 < lines[0]["rater_accuracy"] < 1.0
    assert raters[0].username.encode() not in _export(data["batch"].project, format="judgments")


def test_the_rater_pseudonym_is_stable_distinct_and_keyed(settings):
    first = rater_pseudonym(1)
    assert first == rater_pseudonym(1)
    assert first != rater_pseudonym(2)
    assert len(first) == 18
    assert first.startswith("r-")
    settings.SECRET_KEY = "another-" + "k" * 60
    assert rater_pseudonym(1) != first


def test_csv_holds_the_judgments_with_formulas_neutralised(data):
    content = _export(data["batch"].project, format="csv").decode("utf-8")
    rows = list(csv.reader(io.StringIO(content)))
    assert rows[0] == list(export_selectors.JUDGMENT_COLUMNS)
    assert len(rows) == 12
    assert rows[1][5:11] == [
        "Say hi",
        "Hi! 👋",
        '\'=HYPERLINK("http://x")',
        "m-a",
        "m-b",
        rows[1][10],
    ]
    assert rows[1][11:18] == ["a", "3", "{}", "warmer", "false", "12000", ""]


@pytest.mark.parametrize(
    ("cell", "safe"),
    [
        ("=1+2", "'=1+2"),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("fine = ok", "fine = ok"),
        ("", ""),
    ],
)
def test_csv_cells_that_could_run_as_formulas_get_a_leading_apostrophe(cell, safe):
    assert neutralise(cell) == safe


def test_parquet_holds_trl_or_judgments_in_row_groups(data, monkeypatch):
    monkeypatch.setattr("annotation.exports.formats.ROW_GROUP_ROWS", 4)
    project = data["batch"].project
    trl = pq.read_table(io.BytesIO(_export(project, format="parquet")))
    assert trl.to_pylist() == _lines(_export(project, format="trl"))
    judgments = pq.ParquetFile(io.BytesIO(_export(project, format="parquet", table="judgments")))
    assert judgments.num_row_groups == 3
    rows = judgments.read().to_pylist()
    assert [row["judgment_id"] for row in rows] == [
        line["judgment_id"] for line in _lines(_export(project, format="judgments"))
    ]
    assert rows[0]["criteria"] == []


def test_the_trl_file_loads_with_datasets_and_has_reward_trainer_columns(data, tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "trl.jsonl"
    path.write_bytes(_export(data["batch"].project, format="trl"))
    loaded = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    # RewardTrainer: "chosen" and "rejected" required, "prompt" and "margin" optional; it
    # ignores "p_chosen", which a user may filter by or pass as the margin.
    assert loaded.column_names == TRL_FILE_COLUMNS
    assert loaded.filter(lambda row: row["p_chosen"] >= 0.9)["chosen"] == ["سلام"]
    assert loaded[0]["chosen"] == "Hi! 👋"
    table = pa_json.read_json(path)
    assert table.column_names == TRL_FILE_COLUMNS


def test_a_conversational_trl_file_loads_with_datasets(project, raters, tmp_path):
    datasets = pytest.importorskip("datasets")
    batch = BatchFactory(project=project)
    chat = [{"role": "user", "content": "Hi?"}]
    pair = PairFactory(
        prompt=PromptFactory(batch=batch, project=project, messages=chat),
        project=project,
        batch=batch,
    )
    _judge(pair, raters[0], "b", 2)
    path = tmp_path / "trl.jsonl"
    path.write_bytes(_export(project, format="trl"))
    loaded = datasets.load_dataset(
        "json", data_files=str(path), split="train", cache_dir=str(tmp_path / "cache")
    )
    assert loaded[0]["prompt"] == chat
    assert loaded[0]["chosen"] == [{"role": "assistant", "content": pair.response_b.text}]


# -- filters -------------------------------------------------------------------------------


def test_filters_by_batch_dates_and_minimum_agreement(data, raters):
    project = data["batch"].project
    other = BatchFactory(project=project)
    extra = _pair(other, "Other batch?", "x", "y")
    _judge(extra, raters[0], "a", 3)
    every = _lines(_export(project, format="trl"))
    assert len(every) == 3
    only_first = _lines(_export(project, format="trl", batch_ids=(data["batch"].id,)))
    assert [line["prompt"] for line in only_first] == ["Say hi", "مرحبا\u200f"]
    day2 = _lines(_export(project, format="judgments", since=DAY2))
    assert {line["pair_id"] for line in day2} == {data["pairs"][3].id}
    day1 = _lines(_export(project, format="trl", until=DAY2, batch_ids=(data["batch"].id,)))
    assert [line["prompt"] for line in day1] == ["Say hi"]
    agreed = _lines(_export(project, format="trl", min_agreement=0.9))
    assert [line["prompt"] for line in agreed] == ["مرحبا\u200f", "Other batch?"]
    agreed_judgments = _lines(_export(project, format="judgments", min_agreement=0.9))
    assert {line["pair_id"] for line in agreed_judgments} == {data["pairs"][3].id, extra.id}


def test_gold_pairs_and_seed_labels_are_in_only_when_asked(data, raters):
    project = data["batch"].project
    gold = _pair(data["batch"], "Gold?", "right", "wrong", gold_choice="a", judgments_needed=0)
    _judge(gold, raters[0], "b", 1)
    seed_batch = BatchFactory(project=project, known_answers=Batch.KnownAnswers.SEED)
    seed = _pair(seed_batch, "Seed?", "worse", "better", seed_choice="b", judgments_needed=0)
    prompts = [line["prompt"] for line in _lines(_export(project, format="trl"))]
    assert "Gold?" not in prompts
    assert "Seed?" not in prompts
    with_both = _lines(_export(project, format="trl", include_gold=True, include_seed=True))
    gold_line = {"prompt": "Gold?", "chosen": "right", "rejected": "wrong", "margin": 1.0}
    seed_line = {"prompt": "Seed?", "chosen": "better", "rejected": "worse", "margin": 1.0}
    assert {**gold_line, "p_chosen": 1.0, "decided_by": "aggregation"} in with_both
    assert {**seed_line, "p_chosen": 1.0, "decided_by": "aggregation"} in with_both
    judgments = _lines(_export(project, format="judgments", include_gold=True, include_seed=True))
    assert [line["gold_choice"] for line in judgments if line["pair_id"] == gold.id] == ["a"]
    seed_line = next(line for line in judgments if line["pair_id"] == seed.id)
    assert seed_line["source"] == "seed"
    assert seed_line["rater"] is None
    assert seed_line["choice"] == "b"
    assert seed_line["served_by"] is None


# -- the page, the API and the command -----------------------------------------------------


def test_the_page_shows_a_form_and_a_get_never_starts_an_export(client, project, lead, data):
    login(client, lead)
    response = client.get(f"/p/{project.slug}/export/", {"format": "trl"})
    assert response.status_code == 200
    assert "Content-Disposition" not in response
    assert b'method="post"' in response.content
    assert b"Export" in client.get(f"/p/{project.slug}/").content


def test_the_page_previews_how_many_rows_the_options_give(client, project, lead, data):
    login(client, lead)
    page = client.get(f"/p/{project.slug}/export/").content.decode()
    assert "file holds <strong>2</strong> preference rows" in page  # p1 and p4 have a winner
    assert 'hx-params="not csrfmiddlewaretoken"' in page  # the count is asked without the token
    fragment = client.get(
        f"/p/{project.slug}/export/", {"format": "judgments"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert 'id="export-preview"' in fragment
    assert "<html" not in fragment  # only the fragment
    assert "<strong>11</strong> judgment rows" in fragment
    every = len(_lines(_export(project, format="judgments")))
    assert every == 11
    abstain = client.get(
        f"/p/{project.slug}/export/", {"format": "trl", "ties": "abstain"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "<strong>3</strong> preference rows" in abstain
    assert len(_lines(_export(project, ties="abstain"))) == 3
    wrong = client.get(
        f"/p/{project.slug}/export/", {"format": "nope"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "Correct the options" in wrong


def test_the_row_count_stops_at_its_cap(project, data):
    assert export_row_count(project=project, options=ExportOptions(), cap=1) == (1, True)
    assert export_row_count(project=project, options=ExportOptions(), cap=2) == (2, False)


def test_a_post_on_the_page_downloads_the_export(client, project, admin_member, data):
    login(client, admin_member)
    response = client.post(f"/p/{project.slug}/export/", {"format": "csv"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith('attachment; filename="alpha-csv-')
    assert response["Content-Disposition"].endswith('.csv"')
    assert b"".join(response.streaming_content) == _export(project, format="csv")


def test_the_page_refuses_a_post_without_the_csrf_token(project, lead, data):
    client = login(Client(enforce_csrf_checks=True), lead)
    assert client.post(f"/p/{project.slug}/export/", {"format": "trl"}).status_code == 403


def test_the_page_says_what_was_wrong_and_starts_nothing(client, project, lead, other_project):
    foreign = BatchFactory(project=other_project)
    login(client, lead)
    response = client.post(
        f"/p/{project.slug}/export/",
        {"format": "trl", "batches": [foreign.id], "min_agreement": "2"},
    )
    assert response.status_code == 400
    assert "Content-Disposition" not in response
    assert b"Minimum agreement" in response.content
    assert b"Batches" in response.content


def _api(user) -> Client:
    """The export API takes an API token only, never a session cookie."""
    token, _ = Token.objects.get_or_create(user=user)
    return Client(enforce_csrf_checks=True, headers={"Authorization": f"Token {token.key}"})


def test_raters_never_export(client, project, rater):
    login(client, rater)
    assert client.get(f"/p/{project.slug}/export/").status_code == 403
    assert client.post(f"/p/{project.slug}/export/", {"format": "trl"}).status_code == 403
    assert _api(rater).get(f"/api/v1/projects/{project.slug}/export/").status_code == 403
    assert b"/export/" not in client.get(f"/p/{project.slug}/").content


def test_members_of_another_project_get_404(client, project, outsider):
    login(client, outsider)
    assert client.get(f"/p/{project.slug}/export/").status_code == 404
    assert client.post(f"/p/{project.slug}/export/", {"format": "trl"}).status_code == 404
    assert _api(outsider).get(f"/api/v1/projects/{project.slug}/export/").status_code == 404


def test_anonymous_users_are_sent_to_log_in_or_refused(client, project):
    assert client.get(f"/p/{project.slug}/export/").status_code == 302
    assert client.get(f"/api/v1/projects/{project.slug}/export/").status_code == 401


def test_the_api_streams_each_format_with_its_type(project, lead, data):
    client = _api(lead)
    url = f"/api/v1/projects/{project.slug}/export/"
    types = {
        "trl": "application/jsonl; charset=utf-8",
        "judgments": "application/jsonl; charset=utf-8",
        "csv": "text/csv; charset=utf-8",
        "parquet": "application/vnd.apache.parquet",
    }
    for name, content_type in types.items():
        response = client.get(url, {"format": name})
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == content_type
        assert response["X-Content-Type-Options"] == "nosniff"
        assert "attachment" in response["Content-Disposition"]
    response = client.get(url, {"format": "trl", "ties": "abstain", "min_agreement": "0.5"})
    assert b"".join(response.streaming_content) == _export(
        project, format="trl", ties="abstain", min_agreement=0.5
    )


def test_the_api_refuses_bad_filters_with_the_field_named(project, lead, other_project):
    foreign = BatchFactory(project=other_project)
    client = _api(lead)
    url = f"/api/v1/projects/{project.slug}/export/"
    response = client.get(url, {"format": "xml"})
    assert response.status_code == 400
    assert "format" in response.json()
    response = client.get(url, {"batch": [foreign.id]})
    assert response.status_code == 400
    assert response.json() == {"batch": [f"batch {foreign.id} is not a batch of this project"]}
    response = client.get(url, {"since": "2025-03-02T00:00Z", "until": "2025-03-01T00:00Z"})
    assert response.status_code == 400
    assert "until" in response.json()


def test_the_api_takes_a_token_and_not_a_session_cookie(client, project, lead, data):
    response = _api(lead).get(f"/api/v1/projects/{project.slug}/export/?format=judgments")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == _export(project, format="judgments")
    login(client, lead)
    assert client.get(f"/api/v1/projects/{project.slug}/export/").status_code == 401


def test_the_command_writes_the_same_bytes_as_the_api(project, lead, data, tmp_path):
    client = _api(lead)
    for name in ("trl", "judgments", "csv", "parquet"):
        out = tmp_path / f"export.{name}"
        call_command("export", project.slug, "--format", name, "-o", str(out), stderr=io.StringIO())
        response = client.get(f"/api/v1/projects/{project.slug}/export/", {"format": name})
        streamed = b"".join(response.streaming_content)
        if name == "parquet":  # Parquet embeds no timestamp, but compare the rows to be safe
            assert pq.read_table(out).to_pylist() == pq.read_table(io.BytesIO(streamed)).to_pylist()
        assert out.read_bytes() == streamed
    assert not list(tmp_path.glob(".*.partial"))


# -- snapshot and round trip ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_export_holds_exactly_what_was_committed_at_its_start(monkeypatch):
    project = ProjectFactory(slug="snap")
    raters = [UserFactory() for _ in range(3)]
    batch = BatchFactory(project=project)
    pairs = [_pair(batch, f"Q{i}?", f"a{i}", f"b{i}") for i in range(4)]
    for pair in pairs[:3]:
        _judge(pair, raters[0], "a", 2)
    before = _export(project, format="judgments")
    # One row per fetch and per chunk, so the stream is still reading when others write.
    monkeypatch.setattr(export_selectors, "CHUNK_ROWS", 1)
    monkeypatch.setattr("annotation.exports.formats.CHUNK_BYTES", 1)
    stream = export_stream(project=project, options=ExportOptions(format="judgments")).chunks
    first = next(stream)

    def rate_meanwhile():
        from django.db import connection

        _judge(pairs[3], raters[1], "b", 1)  # a new judgment, committed
        Judgment.objects.filter(pair=pairs[2]).delete()  # an undo, committed
        connection.close()

    writer = threading.Thread(target=rate_meanwhile)
    writer.start()
    writer.join()
    content = first + b"".join(stream)
    assert content == before
    assert len(_lines(_export(project, format="judgments"))) == 3  # the next export sees both


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\x00"),
    min_size=1,
    max_size=30,
).filter(lambda text: text.strip() == text and text != "")
_MESSAGES = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user"]), "content": _TEXT}),
    min_size=1,
    max_size=3,
)
_RECORD = st.fixed_dictionaries(
    {"prompt": st.one_of(_TEXT, _MESSAGES), "chosen": _TEXT, "rejected": _TEXT}
).filter(lambda record: record["chosen"] != record["rejected"])


def _import_as_seed(project, user, content: bytes) -> None:
    from annotation.services.imports import batch_import

    batch_import(
        project=project,
        fileobj=io.BytesIO(content),
        filename="prefs.jsonl",
        uploaded_by=user,
        format="preference",
        known_answers=Batch.KnownAnswers.SEED,
    )


@pytest.mark.django_db
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(records=st.lists(_RECORD, min_size=1, max_size=6))
def test_export_reimport_export_is_identical(records):
    user = UserFactory()
    source = ProjectFactory()
    content = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    _import_as_seed(source, user, content)
    first = _export(source, format="trl", include_seed=True)
    assert first
    copy = ProjectFactory()
    _import_as_seed(copy, user, first)
    assert _export(copy, format="trl", include_seed=True) == first


def test_unicode_round_trips_byte_identical_through_import_and_export(project, lead):
    texts = ["שלום\u200f עולם", "👩\u200d💻 done", "漢字かな交じり", "e\u0301 vs \u00e9"]
    record = {"prompt": texts[0], "chosen": texts[1] + " " + texts[3], "rejected": texts[2]}
    _import_as_seed(project, lead, (json.dumps(record, ensure_ascii=False) + "\n").encode())
    content = _export(project, format="trl", include_seed=True)
    for text in (*texts[:3], texts[1] + " " + texts[3]):
        assert text.encode("utf-8") in content


def test_a_known_answer_decides_with_certainty_and_a_known_tie_has_no_winner():
    assert decide_by_known_answer("a") == Decision("a", 1.0, 1.0)
    assert decide_by_known_answer("b") == Decision("b", 1.0, 1.0)
    assert decide_by_known_answer("tie") is None
