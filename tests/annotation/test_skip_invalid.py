"""Real files in (issue 13): empty responses are data, and `on_invalid=skip` imports the valid
records of a file, reporting, counting and keeping the others, through the API, the command
and the page. The whole shared HH sample goes through each: 1,312 pairs, of which lines 705 and
1100 part before their last Assistant turn (skipped) and lines 296, 527 and 618 have an empty
chosen answer (imported, with a warning)."""

import gzip
import io
import json
import os
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Batch, Pair, Prompt, Response
from annotation.services.imports import batch_import, batch_import_run, rejects_orphans_clean
from annotation.services.imports.rejects import ORPHAN_SECONDS
from tests.conftest import login

HH = Path(__file__).parent.parent / "imports" / "data" / "hh-harmless-base-dev.jsonl"
HH_LINES = HH.read_bytes().splitlines(keepends=True)
HH_PARTED = [705, 1100]
HH_EMPTY = [296, 527, 618]
HH_REASON = (
    'rejected: the conversation before its last "\\n\\nAssistant:" differs from that of '
    '"chosen"; both must continue the same prompt'
)


@pytest.fixture(autouse=True)
def _dirs(settings, tmp_path):
    settings.IMPORT_UPLOAD_DIR = tmp_path / "uploads"
    settings.IMPORT_REJECTS_DIR = tmp_path / "rejects"


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def post(user, project, data: bytes, name: str, **fields):
    fileobj = io.BytesIO(data)
    fileobj.name = name
    return api(user).post(
        f"/api/v1/projects/{project.slug}/batches/", {"file": fileobj, **fields}, format="multipart"
    )


def jsonl(*records: object) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def nothing_imported(project) -> bool:
    return not (
        Batch.objects.filter(project=project).exists()
        or Prompt.objects.filter(project=project).exists()
    )


def assert_hh_batch(batch: Batch) -> None:
    assert (batch.records, batch.pairs_created, batch.skipped) == (1310, 1310, 2)
    assert batch.skipped_reasons == {HH_REASON: 2}
    assert batch.empty_responses == 3
    assert batch.on_invalid == "skip"
    assert batch.rejects_kept == 2


# --- the whole HH sample, three ways -----------------------------------------------------------


def test_the_hh_sample_imports_through_the_api_in_skip_mode(project, admin_member):
    response = post(
        admin_member, project, HH.read_bytes(), HH.name, on_invalid="skip", **{"as": "seed"}
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["records"], body["skipped"], body["empty_responses"]) == (1310, 2, 3)
    assert body["skipped_reasons"] == {HH_REASON: 2}
    assert [(r["line"], r["field"]) for r in body["skipped_records"]] == [
        (705, "rejected"),
        (1100, "rejected"),
    ]
    assert [(w["line"], w["field"]) for w in body["warnings"]] == [(n, "chosen") for n in HH_EMPTY]
    assert_hh_batch(Batch.objects.get(id=body["id"]))
    assert Pair.objects.filter(project=project).exclude(seed_choice="").count() == 1310
    assert Response.objects.filter(prompt__project=project, text=" ").count() == 3

    rejects = api(admin_member).get(body["rejects_url"])
    assert rejects.status_code == 200
    assert b"".join(rejects.streaming_content) == b"".join(HH_LINES[n - 1] for n in HH_PARTED)


def test_the_hh_sample_is_refused_whole_by_default_and_every_error_listed(project, admin_member):
    response = post(admin_member, project, HH.read_bytes(), HH.name, **{"as": "seed"})

    assert response.status_code == 400
    body = response.json()
    assert (body["error_count"], body["invalid_records"], body["imported"]) == (2, 2, 0)
    assert [e["line"] for e in body["errors"]] == HH_PARTED
    assert nothing_imported(project)


def test_the_hh_sample_dry_run_in_skip_mode_says_what_would_be_skipped(project, admin_member):
    response = post(
        admin_member, project, HH.read_bytes(), HH.name, on_invalid="skip", dry_run="true"
    )

    assert response.status_code == 200
    body = response.json()
    assert (body["records"], body["skipped"], body["warning_count"]) == (1310, 2, 3)
    assert [e["line"] for e in body["skipped_records"]] == HH_PARTED
    assert nothing_imported(project)


def test_the_hh_sample_imports_through_the_command_in_skip_mode(project, admin_member, capsys):
    call_command("import_batch", project.slug, str(HH), "--as", "gold", "--skip-invalid")

    out, err = capsys.readouterr()
    assert_hh_batch(Batch.objects.get(project=project))
    assert "Skipped 2 records with errors" in out
    assert f"       2  {HH_REASON}" in out
    assert "3 records have an empty response" in out
    assert [line.split(":")[1] for line in err.splitlines()] == [" skipped", " skipped"]
    assert "line 705, field" in err
    assert "line 1100, field" in err


def test_the_hh_sample_is_refused_whole_by_the_command_by_default(project, admin_member, capsys):
    with pytest.raises(CommandError, match="2 error"):
        call_command("import_batch", project.slug, str(HH), "--as", "gold")
    assert "line 705" in capsys.readouterr().err
    assert nothing_imported(project)


def test_the_hh_sample_imports_through_the_page_in_skip_mode(client, project, admin_member):
    login(client, admin_member)
    page = reverse("annotation:batches", kwargs={"slug": project.slug})
    fileobj = io.BytesIO(HH.read_bytes())
    fileobj.name = HH.name
    dry = client.post(page, {"file": fileobj, "known_answers": "seed"})
    html = dry.content.decode()
    assert "Import the 1310 valid records and skip 2" in html
    assert "line 705" in html
    assert "line 1100" in html
    assert "3 warnings" in html
    assert nothing_imported(project)
    token = dry.context["dry_run"].upload.token

    refused = client.post(
        reverse("annotation:batch-import", kwargs={"slug": project.slug}),
        {"token": token, "known_answers": "seed"},
    )
    assert "2 records have errors, so nothing was imported" in refused.content.decode()
    assert nothing_imported(project)

    done = client.post(
        reverse("annotation:batch-import", kwargs={"slug": project.slug}),
        {"token": token, "known_answers": "seed", "on_invalid": "skip"},
    )
    batch = Batch.objects.get(project=project)
    assert_hh_batch(batch)
    html = done.content.decode()
    assert "Skipped 2 records with errors" in html
    download = reverse(
        "annotation:batch-rejects", kwargs={"slug": project.slug, "batch_id": batch.id}
    )
    assert download in html
    assert b"".join(client.get(download).streaming_content) == b"".join(
        HH_LINES[n - 1] for n in HH_PARTED
    )


# --- other shapes ------------------------------------------------------------------------------


def pandalm(i: int, a: object, b: object) -> dict:
    """A PandaLM human-test record as a pair: the three human labels ride along as metadata."""
    return {
        "prompt": f"Instruction {i}\n\nInput {i}",
        "response_a": a,
        "response_b": b,
        "idx": i,
        "annotator1": 1,
        "annotator2": 2,
        "annotator3": 0,
    }


def test_a_pandalm_shaped_file_keeps_empty_answers_skips_booleans_and_says_repeats(
    project, admin_member
):
    records = [pandalm(i, f"answer {i}a", f"answer {i}b") for i in range(1, 9)]
    records[1] = pandalm(2, "", "answer 2b")  # empty strings are data
    records[2] = pandalm(3, "answer 3a", "")
    records[3] = pandalm(4, True, "answer 4b")  # JSON booleans where text belongs are not
    records[4] = pandalm(5, "answer 5a", False)
    records[6] = pandalm(1, "answer 1a", "answer 1b") | {"idx": 7}  # a repeat of line 1
    records[7] = pandalm(6, "answer 6b", "answer 6a") | {"idx": 8}  # of line 6, swapped
    data = jsonl(*records)

    refused = post(admin_member, project, data, "pandalm.jsonl")
    assert refused.status_code == 400
    assert [(e["line"], e["field"]) for e in refused.json()["errors"]] == [
        (4, "response_a"),
        (5, "response_b"),
    ]
    assert nothing_imported(project)

    response = post(admin_member, project, data, "pandalm.jsonl", on_invalid="skip")
    assert response.status_code == 201
    body = response.json()
    assert (body["records"], body["skipped"], body["empty_responses"]) == (6, 2, 2)
    assert (body["pairs_created"], body["merged"]) == (4, 2)
    assert body["skipped_reasons"] == {
        "response_a: expected text, found true/false": 1,
        "response_b: expected text, found true/false": 1,
    }
    assert [(w["line"], w["message"]) for w in body["warnings"]] == [
        (2, 'empty response: imported as it is; raters see "(empty response)"'),
        (3, 'empty response: imported as it is; raters see "(empty response)"'),
        (7, "repeats the pair of line 1: merged into it, not created again"),
        (8, "repeats the pair of line 6, in the other order: merged into it, not created again"),
    ]
    again = post(admin_member, project, jsonl(pandalm(3, "", "answer 3a")), "more.jsonl")
    assert (again.json()["pairs_created"], again.json()["merged"]) == (0, 1)  # of the project
    kept = Pair.objects.get(project=project, response_a__text="")
    assert kept.metadata == {"idx": 2, "annotator1": 1, "annotator2": 2, "annotator3": 0}
    assert kept.prompt.metadata == {}


def test_the_dry_run_lists_repeats_of_the_projects_pairs_with_both_references(
    project, admin_member
):
    first = post(
        admin_member, project, jsonl(*(pandalm(i, f"{i}a", f"{i}b") for i in (1, 2))), "a.jsonl"
    )
    batch_id = first.json()["id"]
    pair_1, pair_2 = Pair.objects.filter(batch_id=batch_id).order_by("id")
    records = [pandalm(3, "3a", "3b"), pandalm(2, "2b", "2a"), pandalm(1, "1a", "1b")]

    dry = post(admin_member, project, jsonl(*records), "b.jsonl", dry_run="true")

    assert dry.status_code == 200
    assert [(w["line"], w["message"]) for w in dry.json()["warnings"]] == [
        (
            2,
            f'repeats pair {pair_2.id} of batch {batch_id} ("a.jsonl"), already in the project: '
            "merged into it, not created again",
        ),
        (
            3,
            f'repeats pair {pair_1.id} of batch {batch_id} ("a.jsonl"), already in the project: '
            "merged into it, not created again",
        ),
    ]
    imported = post(admin_member, project, jsonl(*records), "b.jsonl").json()
    assert (imported["pairs_created"], imported["merged"]) == (1, 2)


def test_a_file_where_every_record_is_invalid_imports_nothing_in_skip_mode(project, admin_member):
    data = jsonl({"prompt": "", "response_a": "a", "response_b": "b"}, {"prompt": "p"})

    response = post(admin_member, project, data, "bad.jsonl", on_invalid="skip")

    assert response.status_code == 400
    body = response.json()
    assert (body["error_count"], body["invalid_records"], body["imported"]) == (3, 0, 0)
    assert (
        body["errors"][-1]["message"] == "every record has errors (2 of them); nothing was imported"
    )
    assert nothing_imported(project)


def test_the_command_says_so_when_every_record_is_invalid(project, admin_member, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl({"prompt": "", "response_a": "a", "response_b": "b"}))
    with pytest.raises(CommandError, match="1 error"):
        call_command("import_batch", project.slug, str(path), "--skip-invalid")
    assert nothing_imported(project)


def test_a_problem_with_the_whole_file_refuses_it_in_skip_mode_too(project, admin_member):
    truncated = gzip.compress(
        jsonl(*[{"prompt": "p", "response_a": f"a{i}", "response_b": "b"} for i in range(50)])
    )[:-20]

    response = post(admin_member, project, truncated, "x.jsonl.gz", on_invalid="skip")

    assert response.status_code == 400
    assert response.json()["errors"][-1]["line"] is None
    assert nothing_imported(project)


def test_skipped_csv_rows_download_as_csv_with_their_header(project, admin_member):
    data = (
        b'prompt,response_a,response_b,source\np,a,b,x\n,a2,b2,y\nq,"multi\nline",b3,z\nr,a4,a4,w\n'
    )

    response = post(admin_member, project, data, "pairs.csv", on_invalid="skip")

    assert response.status_code == 201
    body = response.json()
    assert (body["records"], body["skipped"]) == (2, 2)
    assert [(e["line"], e["unit"], e["field"]) for e in body["skipped_records"]] == [
        (3, "row", "prompt"),
        (5, "row", "response_b"),
    ]
    rejects = b"".join(api(admin_member).get(body["rejects_url"]).streaming_content)
    assert rejects == b"prompt,response_a,response_b,source\n,a2,b2,y\nr,a4,a4,w\n"


def test_the_batch_list_shows_skipped_counts_by_reason(client, project, admin_member, lead):
    post(admin_member, project, HH.read_bytes(), HH.name, on_invalid="skip", **{"as": "gold"})

    html = login(client, lead).get(reverse("annotation:batches", kwargs={"slug": project.slug}))
    text = html.content.decode()
    assert "<summary>2</summary>" in text
    assert "2 \u00d7 rejected: the conversation before its last" in text
    listed = api(lead).get(f"/api/v1/projects/{project.slug}/batches/").json()[0]
    assert (listed["skipped"], listed["skipped_reasons"]) == (2, {HH_REASON: 2})


def test_an_ultrafeedback_shaped_file_through_the_api_skip_and_refuse(project, admin_member):
    data = (HH.parent / "ultrafeedback-binarized-shaped.jsonl").read_bytes()

    refused = post(admin_member, project, data, "uf.jsonl", **{"as": "seed"})
    assert refused.status_code == 400
    assert [(e["line"], e["field"]) for e in refused.json()["errors"]] == [(3, "rejected")]
    assert nothing_imported(project)

    response = post(admin_member, project, data, "uf.jsonl", on_invalid="skip", **{"as": "seed"})
    assert response.status_code == 201
    body = response.json()
    assert (body["records"], body["skipped"], body["empty_responses"]) == (3, 1, 1)
    pair = Pair.objects.get(project=project, prompt__text="How do I boil an egg?")
    assert pair.metadata == {
        "prompt_id": "a1f3",
        "messages": json.loads(data.splitlines()[0])["messages"],
        "score_chosen": 8.5,
        "score_rejected": 3.0,
        "source": "evol_instruct",
    }
    assert pair.prompt.metadata == {}


def test_ultrafeedback_scores_come_back_in_the_judgments_export(project, admin_member):
    data = (HH.parent / "ultrafeedback-binarized-shaped.jsonl").read_bytes()
    post(admin_member, project, data, "uf.jsonl", on_invalid="skip", **{"as": "seed"})
    url = f"/api/v1/projects/{project.slug}/export/?format=judgments&include_seed=true"

    response = api(admin_member).get(url)

    assert response.status_code == 200
    lines = [json.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    by_prompt = {line["prompt"]: line["pair_metadata"] for line in lines}
    assert by_prompt["Say hi."] == {
        "prompt_id": "d4e6",
        "score_chosen": 6.0,
        "score_rejected": 5.5,
        "source": "ultrachat",
    }
    assert by_prompt["How do I boil an egg?"]["score_rejected"] == 3.0
    assert by_prompt["Name a prime number."]["prompt_id"] == "b2c4"


def test_pair_metadata_is_json_text_in_a_parquet_judgments_export(project, admin_member):
    pq = pytest.importorskip("pyarrow.parquet")
    data = (HH.parent / "ultrafeedback-binarized-shaped.jsonl").read_bytes()
    post(admin_member, project, data, "uf.jsonl", on_invalid="skip", **{"as": "seed"})
    query = "format=parquet&table=judgments&include_seed=true"
    url = f"/api/v1/projects/{project.slug}/export/?{query}"

    response = api(admin_member).get(url)

    table = pq.read_table(io.BytesIO(b"".join(response.streaming_content))).to_pylist()
    by_prompt = {row["prompt"]: json.loads(row["pair_metadata"]) for row in table}
    assert by_prompt["Say hi."]["score_rejected"] == 5.5


def test_a_parquet_file_with_several_row_groups_imports_through_the_api(project, admin_member):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [{"prompt": f"p{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(50)]
    for i in (7, 21, 44):
        rows[i]["response_b"] = ""
        rows[i]["response_a"] = ""  # identical: an error
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out, row_group_size=16)

    response = post(admin_member, project, out.getvalue(), "x.parquet", on_invalid="skip")

    assert response.status_code == 201
    body = response.json()
    assert (body["records"], body["skipped"], body["pairs_created"]) == (47, 3, 47)
    assert [r["line"] for r in body["skipped_records"]] == [8, 22, 45]
    rejects = b"".join(api(admin_member).get(body["rejects_url"]).streaming_content)
    assert [json.loads(line)["prompt"] for line in rejects.splitlines()] == ["p7", "p21", "p44"]


def test_a_json_array_imports_through_the_api(project, admin_member):
    data = json.dumps(
        [{"prompt": f"p{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(4)],
        indent=1,
    ).encode()
    response = post(admin_member, project, data, "x.json")
    assert response.status_code == 201
    assert response.json()["records"] == 4


def test_a_large_file_in_skip_mode_is_imported_by_a_worker_with_its_counts(
    project, admin_member, settings
):
    settings.IMPORT_BACKGROUND_RECORDS = 2
    rows = [{"prompt": f"p{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(4)]
    rows[2]["response_b"] = 3
    response = post(admin_member, project, jsonl(*rows), "big.jsonl", on_invalid="skip")
    assert response.status_code == 202
    batch = Batch.objects.get(id=response.json()["id"])
    assert (batch.status, batch.on_invalid) == ("pending", "skip")

    batch_import_run(batch_id=batch.id)

    batch.refresh_from_db()
    assert (batch.status, batch.records, batch.skipped, batch.rejects_kept) == ("done", 3, 1, 1)
    assert batch.skipped_reasons == {"response_b: expected text, found a number": 1}


# --- rejects files that no batch names ---------------------------------------------------------


def _age(path: Path, seconds: float) -> None:
    then = path.stat().st_mtime - seconds
    os.utime(path, (then, then))


@pytest.mark.django_db(transaction=True)
def test_a_rejects_file_left_by_a_rolled_back_import_is_swept_and_a_named_one_is_kept(
    project, admin_member, settings
):
    hh = b"".join(HH_LINES[:720])  # holds line 705, which is skipped
    options = {"uploaded_by": admin_member, "on_invalid": "skip", "known_answers": "seed"}
    kept = batch_import(project=project, fileobj=io.BytesIO(hh), filename="kept.jsonl", **options)

    def import_then_lose_the_commit() -> None:
        with transaction.atomic():
            batch_import(
                project=project, fileobj=io.BytesIO(hh), filename="lost.jsonl",
                allow_duplicate=True, **options,
            )  # fmt: skip
            raise RuntimeError("the database went away before the commit")

    with pytest.raises(RuntimeError):
        import_then_lose_the_commit()
    folder = Path(settings.IMPORT_REJECTS_DIR)
    files = sorted(folder.iterdir())
    assert len(files) == 2
    stranger = folder / "notes.txt"
    stranger.write_text("not ours")
    for path in [*files, stranger]:
        _age(path, ORPHAN_SECONDS + 60)
    young = folder / ("y" * 32 + ".jsonl")
    young.write_bytes(b"{}\n")

    assert rejects_orphans_clean() == 1

    assert sorted(folder.iterdir()) == sorted([folder / kept.batch.rejects_file, stranger, young])
    assert Batch.objects.get().rejects_file == kept.batch.rejects_file
    assert rejects_orphans_clean(keep_seconds=0) == 1  # the young one, once it is old enough
    assert (folder / kept.batch.rejects_file).is_file()
