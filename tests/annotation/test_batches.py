"""Batches in: the import service, the upload page and the API, through their public interfaces.

Covers reliability.md items 14 to 18 at the service and API level (the parser's own tests cover
each hostile file in depth), gold and seed preference imports, the HH split, retiring, large
imports in a worker, and who may do what.
"""

import gzip
import io
import json
from pathlib import Path

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Batch, Judgment, Pair, Prompt, Response
from annotation.services.imports import (
    ImportRejected,
    batch_import,
    batch_import_run,
    batch_retire,
    batch_unretire,
)
from annotation.services.imports import writer as writer_module
from tests.conftest import login
from tests.factories import JudgmentFactory

HH_20 = Path(__file__).parent.parent / "imports" / "data" / "hh-harmless-base-20.jsonl"


@pytest.fixture(autouse=True)
def _upload_dir(settings, tmp_path):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"


def jsonl(*records: dict) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in records)


def pair(i: int, **extra: object) -> dict:
    record = {"id": f"p{i}", "prompt": f"Prompt {i}?", "response_a": f"A{i}", "response_b": f"B{i}"}
    return record | extra


def import_bytes(project, user, data: bytes, name: str = "upload.jsonl", **kwargs):
    return batch_import(
        project=project, fileobj=io.BytesIO(data), filename=name, uploaded_by=user, **kwargs
    )


def rejected_by(project, user, data: bytes, **kwargs) -> ImportRejected:
    with pytest.raises(ImportRejected) as caught:
        import_bytes(project, user, data, **kwargs)
    return caught.value


def nothing_imported(project) -> bool:
    return not (
        Batch.objects.filter(project=project).exists()
        or Prompt.objects.filter(project=project).exists()
        or Pair.objects.filter(project=project).exists()
    )


# --- the service ---------------------------------------------------------------------------


def test_an_invalid_row_at_the_end_imports_nothing_then_the_fixed_file_imports(
    project, admin_member
):
    rows = [pair(i) for i in range(1, 12_000)]  # more than one chunk is written before line 12000
    bad = jsonl(*rows, {"id": "last", "prompt": "Q", "response_a": "A"})
    problem = rejected_by(project, admin_member, bad)
    assert [(i.line, i.field) for i in problem.issues] == [(12_000, "response_b")]
    assert nothing_imported(project)

    fixed = jsonl(*rows, pair(12_000))
    batch = import_bytes(project, admin_member, fixed).batch
    assert (batch.records, batch.pairs_created, batch.prompts_created) == (12_000, 12_000, 12_000)
    assert batch.responses_created == 24_000
    assert Pair.objects.filter(project=project, judgments_needed=project.raters_per_pair).count()


def test_gzip_and_a_byte_order_mark_import(project, admin_member):
    plain = jsonl(pair(1), pair(2))
    zipped = import_bytes(project, admin_member, gzip.compress(plain), "a.jsonl.gz").batch
    assert zipped.records == 2
    with_bom = b"\xef\xbb\xbf" + jsonl(pair(3))
    assert import_bytes(project, admin_member, with_bom).batch.pairs_created == 1


@pytest.mark.parametrize(
    ("data", "line", "words"),
    [
        (jsonl(pair(1)) + b'{"prompt": "\xff", "response_a": "a", "response_b": "b"}\n', 2, "UTF"),
        (jsonl(pair(1)) + b'{"prompt": "x\x00", "response_a": "a", "response_b": "b"}\n', 2, "NUL"),
    ],
    ids=["invalid-utf8", "nul-byte"],
)
def test_undecodable_lines_are_refused_with_their_line(project, admin_member, data, line, words):
    problem = rejected_by(project, admin_member, data)
    assert problem.issues[0].line == line
    assert words in problem.issues[0].message
    assert nothing_imported(project)


def test_a_ragged_csv_row_and_a_missing_column_are_refused(project, admin_member):
    ragged = b"prompt_id,prompt,model,response\n1,Q,m1,R1\n1,Q,m2\n"
    problem = rejected_by(project, admin_member, ragged, format="responses")
    assert problem.issues[0].line == 3
    assert problem.issues[0].unit == "row"
    missing = b"prompt_id,prompt,model\n1,Q,m1\n"
    problem = rejected_by(project, admin_member, missing)
    assert "response" in str(problem)
    assert nothing_imported(project)


def test_duplicate_ids_are_reported_with_both_lines(project, admin_member):
    problem = rejected_by(project, admin_member, jsonl(pair(1), pair(2), pair(1, prompt="x")))
    assert problem.issues[0].line == 3
    assert problem.issues[0].field == "id"
    assert "line 1" in problem.issues[0].message
    assert "line 3" in problem.issues[0].message


def test_the_same_file_twice_is_recognised_and_imports_again_only_when_asked(project, admin_member):
    data = jsonl(pair(1), pair(2))
    first = import_bytes(project, admin_member, data).batch
    problem = rejected_by(project, admin_member, data)
    assert problem.duplicate_of == first
    assert "already imported" in str(problem)
    again = import_bytes(project, admin_member, data, allow_duplicate=True).batch
    assert again.sha256 == first.sha256
    assert (again.pairs_created, again.prompts_created) == (0, 0)  # nothing is copied twice
    assert Pair.objects.filter(project=project).count() == 2


def test_unicode_and_multi_megabyte_texts_round_trip_byte_identical(project, admin_member):
    texts = {
        "rtl": "\u202eمرحبا بالعالم\u202c and \u200fעברית",  # noqa: RUF001
        "zwj": "👩\u200d👩\u200d👧\u200d👦 family, 🏳️\u200d🌈",
        "cjk": "你好，世界。日本語のテキスト。한국어",  # noqa: RUF001
        "big": "x\u00e9\U0001f600" * 333_333,  # 999,999 characters, just under the limit: 2.3 MB
    }
    records = [
        {"prompt": f"{key} prompt {value[:50]}", "response_a": value, "response_b": value + "!"}
        for key, value in texts.items()
    ]
    import_bytes(project, admin_member, jsonl(*records))
    stored = set(Response.objects.filter(prompt__project=project).values_list("text", flat=True))
    for value in texts.values():
        assert value in stored
        assert value + "!" in stored


def test_paths_and_urls_in_data_are_stored_as_text(project, admin_member):
    record = {"prompt": "/data/../../etc/passwd", "response_a": "http://169.254.169.254/",
              "response_b": "file:///etc/shadow"}  # fmt: skip
    import_bytes(project, admin_member, jsonl(record))
    assert Prompt.objects.get(project=project).text == "/data/../../etc/passwd"
    texts = set(Response.objects.values_list("text", flat=True))
    assert texts == {"http://169.254.169.254/", "file:///etc/shadow"}


def test_hh_transcripts_split_at_the_last_assistant_turn_into_gold_pairs(project, admin_member):
    data = HH_20.read_bytes()
    batch = import_bytes(project, admin_member, data, known_answers="gold").batch
    assert batch.format == "preference"
    originals = [json.loads(line) for line in data.splitlines()]
    pairs = Pair.objects.filter(batch=batch).select_related("prompt", "response_a", "response_b")
    assert batch.pairs_created == len(pairs) > 0
    chosen = {originals_line["chosen"] for originals_line in originals}
    for p in pairs:
        assert p.prompt.text.endswith("\n\nAssistant:")
        winner = p.response_a if p.gold_choice == "a" else p.response_b
        assert p.prompt.text + winner.text in chosen  # byte for byte what was uploaded
        assert p.seed_choice == ""
        assert p.judgments_needed == 0
    assert {p.gold_choice for p in pairs} == {"a", "b"}  # storage order does not give it away


def test_preference_records_become_seed_labels_when_asked(project, admin_member):
    record = {"prompt": "Q", "chosen": "good", "rejected": "bad"}
    batch = import_bytes(project, admin_member, jsonl(record), known_answers="seed").batch
    stored = Pair.objects.select_related("response_a", "response_b").get(batch=batch)
    winner = stored.response_a if stored.seed_choice == "a" else stored.response_b
    assert (winner.text, stored.gold_choice, batch.known_answers) == ("good", "", "seed")


def test_preference_records_need_gold_or_seed_chosen(project, admin_member):
    preference = jsonl({"chosen": "a", "rejected": "b", "prompt": "Q"})
    problem = rejected_by(project, admin_member, preference)
    assert problem.issues[0].field == "as"
    assert nothing_imported(project)
    problem = rejected_by(project, admin_member, jsonl(pair(1)), known_answers="gold")
    assert "only preference records" in str(problem)


def test_the_orm_writer_of_the_embedded_default_writes_the_same_rows(
    project, admin_member, monkeypatch
):
    monkeypatch.setattr("annotation.services.imports.importing.writer_for", writer_module.OrmWriter)
    pairs = import_bytes(project, admin_member, jsonl(pair(1), pair(2), pair(2, id="again"))).batch
    assert (pairs.prompts_created, pairs.responses_created, pairs.pairs_created) == (2, 4, 2)
    responses = [{"text": "r1", "model": "m1"}, {"text": "r2", "model": "m2"}, {"text": "r3"}]
    batch = import_bytes(project, admin_member, jsonl({"prompt": "Q", "responses": responses}))
    counts = (batch.batch.prompts_created, batch.batch.responses_created, batch.batch.pairs_created)
    assert counts == (1, 3, 3)


def test_retiring_a_batch_stops_serving_its_pairs_and_keeps_judgments(project, admin_member):
    batch = import_bytes(project, admin_member, jsonl(pair(1), pair(2))).batch
    judgment = JudgmentFactory(
        assignment__pair=Pair.objects.filter(batch=batch).first(),
        assignment__rater=admin_member,
    )
    batch_retire(batch=batch)
    assert not Pair.objects.filter(batch=batch, is_active=True).exists()
    assert Judgment.objects.filter(id=judgment.id).exists()
    batch.refresh_from_db()
    assert batch.retired_at is not None
    batch_unretire(batch=batch)
    assert Pair.objects.filter(batch=batch, is_active=True).count() == 2


# --- the page ------------------------------------------------------------------------------


def url(project, name="annotation:batches", **kwargs):
    return reverse(name, kwargs={"slug": project.slug, **kwargs})


def upload(client, project, data: bytes, name="upload.jsonl", htmx=True, **fields):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    return client.post(url(project), {"file": _named(data, name), **fields}, **headers)


def _named(data: bytes, name: str) -> io.BytesIO:
    fileobj = io.BytesIO(data)
    fileobj.name = name
    return fileobj


def test_who_may_see_and_use_the_batches_page(client, project, rater, lead, admin_member, outsider):
    assert login(client, rater).get(url(project)).status_code == 403
    assert login(client, outsider).get(url(project)).status_code == 404
    assert upload(client, project, jsonl(pair(1))).status_code == 404
    page = login(client, lead).get(url(project))
    assert page.status_code == 200
    assert b"upload-form" not in page.content
    assert upload(client, project, jsonl(pair(1))).status_code == 403
    page = login(client, admin_member).get(url(project))
    assert b"upload-form" in page.content
    assert b">Batches</a>" in page.content


def test_a_dry_run_lists_every_bad_line_then_the_fixed_file_imports(client, project, admin_member):
    login(client, admin_member)
    rows = [pair(i) for i in range(1, 8)]
    rows[1].pop("response_a")
    rows[4]["prompt"] = ""
    rows[6]["response_b"] = 7
    page = upload(client, project, jsonl(*rows)).content.decode()
    assert "Nothing imported" in page
    assert "3 errors" in page
    for line in ("line 2", "line 5", "line 7"):
        assert line in page
    assert nothing_imported(project)

    fixed = jsonl(*(pair(i) for i in range(1, 8)))
    page = upload(client, project, fixed).content.decode()
    assert "is valid" in page
    assert nothing_imported(project)  # a dry run writes nothing
    token = page.split('name="token" value="')[1].split('"')[0]
    result = client.post(
        url(project, "annotation:batch-import"),
        {"token": token, "known_answers": "none"},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "Imported upload.jsonl" in result
    assert "7 new pairs" in result
    assert Batch.objects.get(project=project).pairs_created == 7


def test_the_dry_run_preview_shows_untrusted_text_escaped(client, project, admin_member):
    login(client, admin_member)
    evil = {"prompt": "<script>alert(1)</script>", "response_a": '"><img src=x onerror=alert(2)>',
            "response_b": "<button hx-post='/logout/'>x</button>", "source": "web"}  # fmt: skip
    page = upload(client, project, jsonl(evil)).content.decode()
    assert "<script>alert(1)" not in page
    assert "<img src=x" not in page
    assert "&lt;script&gt;" in page
    assert "hx-disable" in page
    assert "<code>source</code>" in page  # extra keys are kept as metadata


def test_the_same_file_twice_offers_import_again_anyway(client, project, admin_member):
    login(client, admin_member)
    import_bytes(project, admin_member, jsonl(pair(1)))
    page = upload(client, project, jsonl(pair(1))).content.decode()
    assert "already imported" in page
    token = page.split('name="token" value="')[1].split('"')[0]
    refused = client.post(
        url(project, "annotation:batch-import"), {"token": token, "known_answers": "none"},
        HTTP_HX_REQUEST="true",
    ).content.decode()  # fmt: skip
    assert "Import again anyway" in refused
    again = client.post(
        url(project, "annotation:batch-import"),
        {"token": token, "known_answers": "none", "allow_duplicate": "on"},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    assert "Imported" in again
    assert Batch.objects.filter(project=project).count() == 2


def test_a_duplicate_file_says_so_and_offers_import_only_when_asked(client, project, admin_member):
    login(client, admin_member)
    import_bytes(project, admin_member, jsonl(pair(1), pair(2)))
    page = upload(client, project, jsonl(pair(1), pair(2))).content.decode()
    assert "Duplicate: this file was already imported" in page
    assert "Nothing new to import." in page
    # The only import button is inside the closed "Import it again anyway" disclosure.
    before, again = page.split('<details class="again"><summary>Import it again anyway</summary>')
    assert "Import 2 records" not in before
    assert "Import 2 records again</button>" in again.split("</details>")[0]
    assert '<input type="hidden" name="allow_duplicate" value="on">' in again
    fresh = upload(client, project, jsonl(pair(3))).content.decode()
    assert "<details" not in fresh
    assert 'class="primary">Import 1 record</button>' in fresh


def test_the_dry_run_preview_is_a_named_region_keyboard_users_can_scroll(
    client, project, admin_member
):
    login(client, admin_member)
    page = upload(client, project, jsonl(pair(1, response_a="```\n" + "x" * 400 + "\n```"))).content
    assert (
        b'<div class="preview-scroll" hx-disable tabindex="0" role="region" '
        b'aria-label="Preview of the first pairs">'
    ) in page


def test_a_large_file_imports_in_a_worker_and_the_page_polls_until_done(
    client, project, admin_member, settings, django_capture_on_commit_callbacks
):
    settings.IMPORT_BACKGROUND_RECORDS = 2
    login(client, admin_member)
    page = upload(client, project, jsonl(pair(1), pair(2), pair(3))).content.decode()
    token = page.split('name="token" value="')[1].split('"')[0]
    with django_capture_on_commit_callbacks() as callbacks:
        result = client.post(
            url(project, "annotation:batch-import"), {"token": token, "known_answers": "none"},
            HTTP_HX_REQUEST="true",
        ).content.decode()  # fmt: skip
    batch = Batch.objects.get(project=project)
    assert batch.status == "pending"
    assert 'hx-trigger="every 1s"' in result
    assert len(callbacks) == 1  # the worker's task is sent once the batch is committed

    batch_import_run(batch_id=batch.id)
    batch.refresh_from_db()
    assert (batch.status, batch.progress, batch.pairs_created) == ("done", 1.0, 3)
    fragment = client.get(
        url(project, "annotation:batch-progress", batch_id=batch.id), HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "every 1s" not in fragment  # the poll stops by itself
    assert "3 new pairs" in fragment
    assert batch_import_run(batch_id=batch.id).pairs_created == 3  # a redelivery changes nothing
    assert not any(settings.IMPORT_UPLOAD_DIR.iterdir())  # the staged upload is cleaned up


def test_retire_and_unretire_from_the_page(client, project, admin_member, lead):
    batch = import_bytes(project, admin_member, jsonl(pair(1))).batch
    retire = url(project, "annotation:batch-retire", batch_id=batch.id)
    assert login(client, lead).post(retire, {"confirm": "yes"}).status_code == 403
    assert client.get(retire).status_code == 403
    login(client, admin_member)
    row = client.post(retire, {"confirm": "yes"}, HTTP_HX_REQUEST="true").content.decode()
    assert "Serve again" in row
    assert not Pair.objects.get(batch=batch).is_active
    client.post(url(project, "annotation:batch-unretire", batch_id=batch.id))
    assert Pair.objects.get(batch=batch).is_active


def test_retiring_a_batch_asks_first_without_javascript_and_in_a_dialog_with_it(
    client, project, admin_member
):
    batch = import_bytes(project, admin_member, jsonl(pair(1))).batch
    retire = url(project, "annotation:batch-retire", batch_id=batch.id)
    login(client, admin_member)
    listing = client.get(url(project, "annotation:batches")).content.decode()
    assert f'<form method="get" action="{retire}"' in listing  # no one-click retire
    assert "hx-confirm=" in listing  # with htmx: a dialog, then a POST with confirm
    page = client.get(retire).content.decode()
    assert f"Retire the batch {batch.filename}?" in page
    assert '<input type="hidden" name="confirm" value="yes">' in page
    assert client.post(retire).status_code == 200  # no `confirm`: asked, nothing retired
    assert Pair.objects.get(batch=batch).is_active
    assert client.post(retire, {"confirm": "yes"}).status_code == 302
    assert not Pair.objects.get(batch=batch).is_active


# --- the API -------------------------------------------------------------------------------


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def api_url(project, suffix=""):
    return f"/api/v1/projects/{project.slug}/batches/{suffix}"


def test_the_api_imports_a_file_and_answers_with_counts(project, admin_member):
    response = api(admin_member).post(
        api_url(project), {"file": _named(jsonl(pair(1), pair(2)), "two.jsonl")}, format="multipart"
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["records"], body["pairs_created"], body["status"]) == (2, 2, "done")
    listed = api(admin_member).get(api_url(project)).json()
    assert [b["filename"] for b in listed] == ["two.jsonl"]


def test_the_api_reports_row_errors_and_imports_nothing(project, admin_member):
    data = jsonl(pair(1), {"prompt": "Q", "response_a": "A"})
    response = api(admin_member).post(api_url(project), {"file": _named(data, "x.jsonl")},
                                      format="multipart")  # fmt: skip
    assert response.status_code == 400
    body = response.json()
    assert body["imported"] == 0
    assert body["error_count"] == 1
    assert body["errors"][0]["line"] == 2
    assert body["errors"][0]["field"] == "response_b"
    assert body["errors"][0]["message"]
    assert nothing_imported(project)


def test_the_api_dry_run_and_gold_or_seed_choice(project, admin_member):
    data = jsonl({"prompt": "Q", "chosen": "good", "rejected": "bad"})
    client = api(admin_member)
    dry = client.post(api_url(project), {"file": _named(data, "p.jsonl"), "dry_run": "true"},
                      format="multipart")  # fmt: skip
    assert dry.status_code == 200
    assert (dry.json()["format"], dry.json()["records"]) == ("preference", 1)
    assert nothing_imported(project)
    unchosen = client.post(api_url(project), {"file": _named(data, "p.jsonl")}, format="multipart")
    assert unchosen.status_code == 400
    assert unchosen.json()["errors"][0]["field"] == "as"
    seed = client.post(api_url(project), {"file": _named(data, "p.jsonl"), "as": "seed"},
                       format="multipart")  # fmt: skip
    assert seed.status_code == 201
    assert seed.json()["known_answers"] == "seed"
    twice = client.post(api_url(project), {"file": _named(data, "p.jsonl"), "as": "seed"},
                        format="multipart")  # fmt: skip
    assert twice.status_code == 400
    assert twice.json()["duplicate_of"] == seed.json()["id"]


def test_the_api_retires_a_batch_and_keeps_projects_apart(
    project, other_project, admin_member, rater, lead, outsider
):
    batch = import_bytes(project, admin_member, jsonl(pair(1))).batch
    retire = api_url(project, f"{batch.id}/retire/")
    assert api(rater).get(api_url(project)).status_code == 403
    assert api(lead).get(api_url(project)).status_code == 200
    assert api(lead).post(retire).status_code == 403
    assert api(outsider).get(api_url(project)).status_code == 404
    assert api(outsider).post(retire).status_code == 404
    assert api(outsider).post(api_url(other_project, f"{batch.id}/retire/")).status_code == 404
    assert Pair.objects.get(batch=batch).is_active
    response = api(admin_member).post(retire)
    assert response.status_code == 200
    assert response.json()["retired_at"]
    assert not Pair.objects.get(batch=batch).is_active
    assert api(admin_member).post(api_url(project, f"{batch.id}/unretire/")).status_code == 200
    assert Pair.objects.get(batch=batch).is_active
