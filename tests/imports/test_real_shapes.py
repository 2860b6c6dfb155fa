"""The shapes real preference datasets come in (issue 13), at the parser: empty responses are
data (a warning), UltraFeedback's whole conversations, records skipped with their reason and
original bytes, and file-wide problems that no skipping gets past."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import pytest

from annotation.imports.parsing import ImportFileInvalid, iter_records, scan
from annotation.imports.records import (
    ChatMessage,
    ImportIssue,
    ImportLimits,
    PreferenceRecord,
    Rejected,
)

DATA = Path(__file__).parent / "data"
ULTRAFEEDBACK = DATA / "ultrafeedback-binarized-shaped.jsonl"


def scan_bytes(data: bytes, name: str = "upload.jsonl"):
    return scan(io.BytesIO(data), filename=name)


def jsonl(*records: object) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def skipping(data: bytes) -> tuple[list, list[tuple[int, str, bytes | None, list[str]]]]:
    skipped: list[tuple[int, str, bytes | None, list[str]]] = []

    def sink(rejected: Rejected, reason: str, issues: list[ImportIssue]) -> None:
        skipped.append((rejected.line, reason, rejected.raw, [str(i) for i in issues]))

    records = list(iter_records(io.BytesIO(data), format=None, on_rejected=sink))
    return records, skipped


def test_empty_and_blank_responses_import_with_a_warning_in_every_shape():
    pairs = scan_bytes(jsonl({"prompt": "p1", "response_a": "", "response_b": "b"}))
    assert (pairs.ok, pairs.record_count, pairs.warning_count) == (True, 1, 1)
    assert [str(w) for w in pairs.warnings] == [
        'line 1, field "response_a": empty response: imported as it is; raters see '
        '"(empty response)"',
    ]
    responses = scan_bytes(jsonl({"prompt": "p", "responses": [{"text": "a"}, {"text": " \n"}]}))
    assert [(w.line, w.field) for w in responses.warnings] == [(1, "responses[1].text")]
    long_form = scan_bytes(b"prompt_id,prompt,response\nq,P,a\nq,P,\n", "r.csv")
    assert (long_form.record_count, long_form.warnings[0].line) == (1, 3)
    hh = jsonl(
        {"chosen": "\n\nHuman: hi\n\nAssistant:", "rejected": "\n\nHuman: hi\n\nAssistant: yo"}
    )
    assert scan_bytes(hh).samples[0].chosen == ""
    chat = [{"role": "user", "content": "hi"}]
    implicit = jsonl(
        {
            "chosen": [*chat, {"role": "assistant", "content": ""}],
            "rejected": [*chat, {"role": "assistant", "content": "yo"}],
        }
    )
    assert [w.field for w in scan_bytes(implicit).warnings] == ["chosen[1]"]


def test_an_empty_prompt_stays_an_error():
    result = scan_bytes(jsonl({"prompt": " ", "response_a": "a", "response_b": "b"}))
    assert [str(e) for e in result.errors] == ['line 1, field "prompt": empty']


def test_an_ultrafeedback_binarized_file_reads_with_its_scores_kept():
    result = scan_bytes(ULTRAFEEDBACK.read_bytes(), ULTRAFEEDBACK.name)

    assert result.record_count == 3
    assert [str(e) for e in result.errors] == [
        'line 3, field "rejected": the turns before the answer differ from "prompt"; a whole '
        'conversation in "rejected" must repeat the prompt\'s turns exactly'
    ]
    assert [(w.line, w.field) for w in result.warnings] == [(2, "rejected[1].content")]
    first = result.samples[0]
    assert isinstance(first, PreferenceRecord)
    assert (first.prompt, first.chosen, first.rejected) == (
        "How do I boil an egg?",
        "Put it in boiling water for 7 minutes.",
        "Eggs are laid by hens.",
    )
    assert first.metadata["score_chosen"] == 8.5
    assert first.metadata["prompt_id"] == "a1f3"
    assert result.samples[2].chosen == "Hi!"


def test_a_whole_conversation_must_repeat_chat_prompt_turns_too():
    prompt = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    record = {
        "prompt": prompt,
        "chosen": [*prompt, {"role": "assistant", "content": "hello"}],
        "rejected": [prompt[1], {"role": "assistant", "content": "yo"}],
    }
    result = scan_bytes(jsonl(record))
    assert [(e.field, e.message.split(";")[0]) for e in result.errors] == [
        ("rejected", 'the turns before the answer differ from "prompt"')
    ]
    record["rejected"] = [*prompt, {"role": "assistant", "content": "yo"}]
    ok = scan_bytes(jsonl(record))
    assert ok.ok
    assert ok.samples[0].prompt == (
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "hi"),
    )


def test_skipping_hands_over_each_invalid_record_with_its_reason_and_original_line():
    good = {"prompt": "p", "response_a": "a", "response_b": "b"}
    data = jsonl(good, {"prompt": "p", "response_a": 1, "response_b": "b"}) + b"{oops\n"
    records, skipped = skipping(data)

    assert len(records) == 1
    assert [(line, reason) for line, reason, _, _ in skipped] == [
        (2, "response_a: expected text, found a number"),
        (3, "record: not valid JSON: Expecting property name enclosed in double quotes at "
            "character N"),
    ]  # fmt: skip
    assert skipped[1][2] == b"{oops\n"
    assert skipped[0][3] == ['line 2, field "response_a": expected text, found a number']


def test_a_long_form_prompt_with_a_bad_row_skips_all_of_its_rows_each_with_a_reason():
    data = b"prompt_id,prompt,model,response\nq1,P,m1,a\nq1,P,m2,\nq1,Other,m3,c\nq2,Q,m1,x\n" + (
        b"q2,Q,m2,y\n"
    )
    records, skipped = skipping(data)

    assert [r.external_id for r in records] == ["q2"]
    assert [(line, reason) for line, reason, _, _ in skipped] == [
        (4, 'prompt: differs from the prompt on row N, which has the same prompt_id "q1"'),
        (2, 'prompt_id: not imported: row N of the same prompt_id "q1" is invalid'),
        (3, 'prompt_id: not imported: row N of the same prompt_id "q1" is invalid'),
    ]
    assert skipped[1][2] == b"q1,P,m1,a\n"


def test_a_file_wide_problem_is_not_skipped():
    data = gzip.compress(
        jsonl(*({"prompt": "p", "response_a": str(i), "response_b": "b"} for i in range(99)))
    )
    with pytest.raises(ImportFileInvalid) as refused:
        skipping(data[:-30])
    assert refused.value.issue.fatal
    assert refused.value.issue.line is None
    result = scan_bytes(data[:-30])
    assert result.skipped.refused
    assert not result.ok_when_skipping


# -- JSON arrays and Parquet ---------------------------------------------------------------------


def pairs(count: int, bad: int | None = None) -> list[dict]:
    rows = [{"prompt": f"p{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(count)]
    if bad is not None:
        rows[bad]["response_b"] = False
    return rows


def test_a_json_array_reads_record_by_record_located_by_the_line_each_starts_on():
    data = json.dumps(pairs(5, bad=3), indent=2).encode()
    result = scan_bytes(data, "x.json")

    assert (result.container, result.record_count) == ("json", 4)
    assert [str(e) for e in result.errors] == [
        'line 17, field "response_b": expected text, found true/false'  # "[" then 5 lines each
    ]
    records, skipped = skipping(data)
    assert len(records) == 4
    assert skipped[0][2] == b'{"prompt": "p3", "response_a": "a3", "response_b": false}\n'


def test_a_one_line_json_array_larger_than_a_block_reads_whole_records():
    rows = pairs(3)
    rows[1]["response_a"] = "x" * 200_000  # spans several 64 KiB reads
    result = scan_bytes(b"\xef\xbb\xbf  " + json.dumps(rows).encode(), "x.json")
    assert (result.ok, result.record_count) == (True, 3)
    assert len(result.samples[1].response_a) == 200_000


def test_a_json_array_keeps_the_limits():
    deep = (
        b'[{"prompt": "p", "response_a": "a", "response_b": "b", "m": '
        + b"[" * 50
        + b"]" * 50
        + b"}]"
    )
    assert [str(e) for e in scan_bytes(deep, "x.json").errors] == [
        "line 1: nested deeper than the limit of 20 levels"
    ]
    garbage = b'[{"prompt": "p", "response_a": "a", "response_b": "b"}, {oops}]'
    assert [e.fatal for e in scan_bytes(garbage, "x.json").errors] == [True]


def parquet_bytes(rows: list[dict], row_group_size: int) -> bytes:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), out, row_group_size=row_group_size)
    return out.getvalue()


def test_a_parquet_file_reads_row_group_by_row_group_through_the_same_checks():
    def turns(i: int, answer: str) -> list[dict]:
        return [{"role": "user", "content": f"p{i}"}, {"role": "assistant", "content": answer}]

    rows = [
        {
            "prompt": f"p{i}",
            "chosen": turns(i, f"c{i}"),
            "rejected": turns(i, "" if i == 4 else f"r{i}"),
            "score_chosen": 8.0,
        }
        for i in range(25)
    ]
    rows[17]["prompt"] = ""
    data = parquet_bytes(rows, row_group_size=10)  # three row groups

    result = scan_bytes(data, "x.parquet")

    assert (result.container, result.record_count, result.size_bytes) == ("parquet", 24, len(data))
    assert [str(e) for e in result.errors] == ['line 18, field "prompt": empty']
    assert [(w.line, w.field) for w in result.warnings] == [(5, "rejected[1].content")]
    assert result.samples[0].metadata == {"score_chosen": 8.0}
    records, skipped = skipping(data)
    assert (len(records), [s[0] for s in skipped]) == (24, [18])


def test_a_parquet_file_past_the_record_limit_is_refused_before_reading_rows():
    data = parquet_bytes(pairs(30), row_group_size=10)
    limits = ImportLimits(max_records=20)
    result = scan(io.BytesIO(data), filename="x.parquet", limits=limits)
    assert [str(e) for e in result.errors] == ["more than the limit of 20 records; split the file"]
