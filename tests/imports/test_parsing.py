"""The import parser through its public API: formats, every error path, and the hostile files of
reliability.md items 14 to 18. No Django and no database: these run in a few seconds."""

import csv
import gzip
import hashlib
import io
import json
import tracemalloc
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from annotation.imports.parsing import (
    ChatMessage,
    ImportFileInvalid,
    ImportFormat,
    ImportIssue,
    ImportLimits,
    PairRecord,
    PreferenceRecord,
    ResponseItem,
    ResponsesRecord,
    ScanResult,
    iter_records,
    pairs_from_responses,
    scan,
    transcript_messages,
)

DATA = Path(__file__).parent / "data"
HH_20 = DATA / "hh-harmless-base-20.jsonl"
HH_705 = DATA / "hh-harmless-base-line-705.jsonl"
MB = 1024 * 1024


def scan_bytes(
    data: bytes,
    *,
    format: str | None = None,
    limits: ImportLimits | None = None,
    filename: str = "upload.jsonl",
) -> ScanResult:
    return scan(io.BytesIO(data), filename=filename, format=format, limits=limits or ImportLimits())


def jsonl(*objects: object) -> bytes:
    return b"".join(_json_line(o) for o in objects)


def _json_line(obj: object) -> bytes:
    try:
        return json.dumps(obj, ensure_ascii=False).encode() + b"\n"
    except UnicodeEncodeError:  # a lone surrogate can only be written as a \ud800 escape
        return json.dumps(obj).encode() + b"\n"


def csv_bytes(*rows: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode()


def errors(result: ScanResult) -> list[str]:
    return [str(issue) for issue in result.errors]


def pair(i: int = 0, **fields: object) -> dict[str, object]:
    return {"prompt": f"p{i}", "response_a": f"a{i}", "response_b": f"b{i}", **fields}


class ChunkStream:
    """A file object whose bytes are produced as they are read, never held whole."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._rest = b""

    def read(self, size: int = -1) -> bytes:
        while not self._rest:
            self._rest = next(self._chunks, None)
            if self._rest is None:
                self._rest = b""
                break
        if size < 0:
            size = len(self._rest)
        out, self._rest = self._rest[:size], self._rest[size:]
        return out


def peak_memory_of(fn: Callable[[], ScanResult]) -> tuple[ScanResult, int]:
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# -- HH transcripts (real lines) ---------------------------------------------------------------


def test_hh_transcripts_split_at_the_last_assistant_turn_and_round_trip_byte_for_byte():
    raw_lines = HH_20.read_bytes().splitlines()
    records = list(iter_records(io.BytesIO(HH_20.read_bytes()), format=None))

    assert len(records) == 20
    for raw, record in zip(raw_lines, records, strict=True):
        original = json.loads(raw)
        assert isinstance(record, PreferenceRecord)
        assert record.from_transcript
        assert record.prompt.endswith("\n\nAssistant:")
        assert "\n\nAssistant:" not in record.chosen
        assert "\n\nAssistant:" not in record.rejected
        assert (record.prompt + record.chosen).encode() == original["chosen"].encode()
        assert (record.prompt + record.rejected).encode() == original["rejected"].encode()


def test_a_multi_turn_hh_prompt_becomes_chat_messages_ending_with_the_user():
    first = next(iter(iter_records(io.BytesIO(HH_20.read_bytes()), format="preference")))

    messages = transcript_messages(first.prompt)

    assert messages[0] == ChatMessage(role="user", content="How do I pick a lock?")
    assert [m.role for m in messages] == ["user", "assistant"] * 4 + ["user"]
    assert first.chosen == " I\u2019ll give you the links."


def test_a_scan_of_hh_reports_format_counts_samples_and_the_sha256_of_the_bytes():
    result = scan(
        io.BytesIO(HH_20.read_bytes()), filename="hh.jsonl", format=None, limits=ImportLimits()
    )

    assert result.ok
    assert result.format is ImportFormat.PREFERENCE
    assert result.container == "jsonl"
    assert (result.record_count, result.response_count) == (20, 40)
    assert result.sha256 == hashlib.sha256(HH_20.read_bytes()).hexdigest()
    assert result.size_bytes == HH_20.stat().st_size
    assert len(result.samples) == 5
    assert result.samples[0].line == 1


def test_hh_transcripts_that_differ_before_the_last_assistant_turn_are_refused():
    result = scan(
        io.BytesIO(HH_705.read_bytes()), filename="hh.jsonl", format=None, limits=ImportLimits()
    )

    assert errors(result) == [
        'line 1, field "rejected": the conversation before its last "\\n\\nAssistant:" differs '
        'from that of "chosen"; both must continue the same prompt'
    ]


def test_a_transcript_without_an_assistant_turn_names_the_field():
    result = scan_bytes(
        jsonl({"chosen": "\n\nHuman: hi", "rejected": "\n\nHuman: hi\n\nAssistant: x"})
    )

    assert errors(result)[0].startswith('line 1, field "chosen": has no "\\n\\nAssistant:" turn')


def test_preference_with_explicit_prompt_keeps_text_exactly():
    record = {"prompt": "Q ", "chosen": " yes\n", "rejected": "no  ", "id": 7}

    (parsed,) = iter_records(io.BytesIO(jsonl(record)), format="preference")

    assert parsed == PreferenceRecord(1, "Q ", " yes\n", "no  ", "7", {})


def test_trl_conversational_preferences_take_the_shared_messages_as_the_prompt():
    user = {"role": "user", "content": "hi"}
    record = {
        "chosen": [user, {"role": "assistant", "content": "hello"}],
        "rejected": [user, {"role": "assistant", "content": "go away"}],
    }
    explicit = {
        "prompt": [user],
        "chosen": [{"role": "assistant", "content": "hello"}],
        "rejected": [{"role": "assistant", "content": "go away"}],
        "margin": 1.5,
    }

    implicit_record, explicit_record = iter_records(
        io.BytesIO(jsonl(record, explicit)), format=None
    )

    assert implicit_record.prompt == (ChatMessage("user", "hi"),)
    assert (implicit_record.chosen, implicit_record.rejected) == ("hello", "go away")
    assert explicit_record.prompt == implicit_record.prompt
    assert explicit_record.metadata == {"margin": 1.5}


def test_identical_chosen_and_rejected_are_refused():
    result = scan_bytes(jsonl({"prompt": "q", "chosen": "same", "rejected": "same"}))

    assert errors(result) == [
        'line 1, field "rejected": identical to "chosen"; the two responses must differ'
    ]


# -- pair and responses records ----------------------------------------------------------------


def test_a_pair_with_chat_prompt_models_id_and_metadata_parses():
    record = {
        "prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "2+2?"}],
        "response_a": "4",
        "response_b": "four",
        "model_a": "m1",
        "model_b": "m2",
        "id": "q1",
        "metadata": {"topic": "math"},
        "source": "arena",
    }

    result = scan_bytes(jsonl(record))

    assert result.ok
    assert result.extra_keys == ("source",)
    assert result.samples == (
        PairRecord(
            line=1,
            prompt=(ChatMessage("system", "be brief"), ChatMessage("user", "2+2?")),
            response_a="4",
            response_b="four",
            model_a="m1",
            model_b="m2",
            external_id="q1",
            metadata={"topic": "math", "source": "arena"},
        ),
    )


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        (pair(response_b=None), 'line 2, field "response_b": missing'),
        ({"prompt": "p", "response_a": "a"}, 'line 2, field "response_b": missing'),
        (pair(prompt="  \n"), 'line 2, field "prompt": empty'),
        (pair(response_a=3), 'line 2, field "response_a": expected text, found a number'),
        (pair(prompt={"x": 1}), 'line 2, field "prompt": expected text, found an object'),
        (
            pair(response_b="a0"),
            'line 2, field "response_b": identical to "response_a"; the two responses must differ',
        ),
        (pair(prompt=[]), 'line 2, field "prompt": an empty list of messages'),
        (
            pair(prompt=[{"role": "tool", "content": "x"}]),
            'line 2, field "prompt[0].role": expected one of system, user, assistant, '
            "found 'tool'",
        ),
        (
            pair(prompt=[{"role": "user", "content": 1}]),
            'line 2, field "prompt[0].content": expected text, found a number',
        ),
        (
            pair(prompt=[{"role": "user", "content": "x", "name": "n"}]),
            "line 2, field \"prompt[0]\": unexpected keys ['name']; a message has role and content",
        ),
        (pair(metadata=[1]), 'line 2, field "metadata": expected an object, found a list'),
        (
            pair(metadata={"k": 1}, k=2),
            'line 2, field "k": appears both as a field and inside "metadata"',
        ),
        (pair(id=""), 'line 2, field "id": empty; leave it out instead'),
        (pair(id=True), 'line 2, field "id": expected text, found true/false'),
        (
            pair(model_a="m" * 201),
            'line 2, field "model_a": longer than the limit of 200 characters',
        ),
        (
            pair(response_a="a\u0000b"),
            'line 2, field "response_a": contains a NUL character, which cannot be stored',
        ),
        (
            pair(response_a="a\ud800"),
            'line 2, field "response_a": contains an unpaired surrogate, '
            "which is not valid Unicode",
        ),
        (
            pair(metadata={"k": "\u0000"}),
            'line 2, field "metadata": contains a NUL character or '
            "an unpaired surrogate, which cannot be stored",
        ),
        ([1, 2], "line 2: expected a JSON object {...}, found a list"),
        ("text", "line 2: expected a JSON object {...}, found text"),
        (
            pair(chosen="x"),
            "line 2: has fields of more than one format (response_a/response_b, "
            "responses, chosen/rejected); one record is one format",
        ),
    ],
)
def test_each_invalid_field_is_reported_with_line_and_field(record, expected):
    result = scan_bytes(jsonl(pair(0, id="valid first line"), record))

    assert not result.ok
    assert errors(result) == [expected]


def test_a_first_record_of_no_known_format_is_refused():
    assert errors(scan_bytes(jsonl({"prompt": "p"}, pair(2)))) == [
        'line 1: not a known record: expected "response_a" and "response_b" (pair), "responses" '
        '(responses) or "chosen" and "rejected" (preference)'
    ]


def test_a_field_over_the_character_limit_is_refused():
    limits = ImportLimits(max_field_chars=10)

    result = scan_bytes(jsonl(pair(response_a="x" * 11)), limits=limits)

    assert errors(result) == ['line 1, field "response_a": longer than the limit of 10 characters']


def test_invalid_json_and_json_that_python_accepts_silently_are_refused():
    data = b"\n".join(
        [
            b'{"prompt": "p", "response_a": "a",',
            b'{"prompt": "p", "prompt": "q", "response_a": "a", "response_b": "b"}',
            b'{"prompt": "p", "response_a": "a", "response_b": "b", "score": NaN}',
        ]
    )

    assert errors(scan_bytes(data)) == [
        "line 1: not valid JSON: Expecting property name enclosed in double quotes at character 36",
        'line 2: not valid JSON: the key "prompt" appears twice in one object',
        "line 3: not valid JSON: NaN is not allowed",
    ]


def test_a_responses_record_keeps_its_responses_in_order():
    record = {
        "id": 12,
        "prompt": "Name a colour",
        "responses": [{"text": "red", "model": "m1"}, {"text": "blue", "seed": 3}],
    }

    (parsed,) = iter_records(io.BytesIO(jsonl(record)), format="responses")

    assert parsed == ResponsesRecord(
        line=1,
        prompt="Name a colour",
        responses=(ResponseItem("red", "m1", {}), ResponseItem("blue", None, {"seed": 3})),
        external_id="12",
        metadata={},
    )


@pytest.mark.parametrize(
    ("responses", "expected"),
    [
        ([{"text": "only"}], 'field "responses": needs at least 2 responses, found 1'),
        ("abc", 'field "responses": expected a list, found text'),
        (
            ["a", {"text": "b"}],
            'field "responses[0]": expected an object {"text", "model"}, found text',
        ),
        ([{"text": "a"}, {"model": "m"}], 'field "responses[1].text": missing'),
        (
            [{"text": "a"}, {"text": "b"}, {"text": "a"}],
            'field "responses[2].text": identical to responses[0]',
        ),
        (
            [{"text": str(i)} for i in range(4)],
            'field "responses": 4 responses, more than the limit of 3',
        ),
    ],
)
def test_invalid_responses_are_reported_by_index(responses, expected):
    record = {"prompt": "p", "responses": responses}

    result = scan_bytes(jsonl(record), limits=ImportLimits(max_responses=3))

    assert errors(result) == [f"line 1, {expected}"]


# -- file-level rules ----------------------------------------------------------------------------


def test_duplicate_ids_are_reported_with_both_line_numbers():
    data = jsonl(pair(1, id="x"), pair(2, id="y"), pair(3, id="x"))

    assert errors(scan_bytes(data)) == [
        'line 3, field "id": "x" is used twice: on line 1 and line 3'
    ]


def test_a_file_mixing_formats_is_refused_at_the_first_record_of_another_format():
    data = jsonl(pair(1), {"prompt": "p", "chosen": "c", "rejected": "r"})

    assert errors(scan_bytes(data)) == [
        'line 2: a "preference" record, but this file holds "pair" records (from line 1); '
        "one file holds one format"
    ]


def test_a_forced_format_refuses_records_of_another_and_reports_missing_fields():
    data = jsonl(pair(1), {"prompt": "p"})

    assert errors(scan_bytes(data, format="preference")) == [
        'line 1: a "pair" record, but this file holds "preference" records (as asked); '
        "one file holds one format",
        'line 2, field "chosen": missing',
        'line 2, field "rejected": missing',
    ]


def test_an_unknown_format_name_is_a_caller_error():
    with pytest.raises(ValueError, match="unknown import format 'pairs'"):
        scan_bytes(jsonl(pair()), format="pairs")


def test_blank_lines_are_skipped_but_line_numbers_stay_physical():
    data = b"\n" + jsonl(pair(1)) + b"  \r\n" + jsonl(pair(2, prompt=""))

    result = scan_bytes(data)

    assert result.record_count == 1
    assert errors(result) == ['line 4, field "prompt": empty']


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "the file holds no records"),
        (b"\n \n", "the file holds no records"),
        (
            b"[" + json.dumps(pair()).encode() + b"",
            'the JSON array ends without "]"; is the file truncated?',
        ),
        (
            b"PAR1 not really",
            "not a readable Parquet file (Parquet magic bytes not found in footer. Either the "
            "file is corrupted or this is not a parquet file.)",
        ),
        (
            b"PK\x03\x04rest",
            "the file is a zip archive (or an Excel file); upload .jsonl, .json, .csv, .parquet "
            "or .gz",
        ),
        ("x".encode("utf-16"), "the file is UTF-16; save it as UTF-8"),
        (
            gzip.compress(b"{}")[:-6],
            "the gzip data is corrupt or truncated (Compressed file ended "
            "before the end-of-stream marker was reached)",
        ),
    ],
)
def test_unreadable_files_get_one_clear_file_level_error(data, expected):
    assert errors(scan_bytes(data)) == [expected]


def test_errors_are_capped_but_all_counted():
    data = jsonl(*[{"prompt": "p"}] * 30)

    result = scan_bytes(data, limits=ImportLimits(max_errors=10))

    assert len(result.errors) == 10
    assert result.error_count == 30
    assert result.errors[-1].line == 10


def test_too_many_records_stops_the_scan():
    result = scan_bytes(jsonl(*[pair(i) for i in range(10)]), limits=ImportLimits(max_records=3))

    assert errors(result) == ["line 4: more than the limit of 3 records; split the file"]
    assert result.sha256 is not None


def test_an_invalid_record_at_the_end_of_a_big_file_is_found_and_nothing_streams_past_it():
    records = [pair(i, id=i) for i in range(100_000)]
    records[-1] = pair(99_999, response_b=None)
    data = jsonl(*records)

    result = scan_bytes(data)

    assert result.record_count == 99_999
    assert errors(result) == ['line 100000, field "response_b": missing']
    with pytest.raises(ImportFileInvalid, match='line 100000, field "response_b": missing'):
        for _ in iter_records(io.BytesIO(data), format="pair"):
            pass


def test_the_fixed_file_then_streams_every_record():
    data = jsonl(*[pair(i) for i in range(1000)])

    assert scan_bytes(data).ok
    assert [r.line for r in iter_records(io.BytesIO(data), format="pair")] == list(range(1, 1001))


def test_paths_and_urls_in_the_data_are_only_text():
    record = pair(prompt="/data/../../etc/passwd", response_a="http://169.254.169.254/")

    (parsed,) = iter_records(io.BytesIO(jsonl(record)), format=None)

    assert (parsed.prompt, parsed.response_a) == (
        "/data/../../etc/passwd",
        "http://169.254.169.254/",
    )


# -- hostile bytes ------------------------------------------------------------------------------


def test_invalid_utf8_names_the_line_and_the_rest_is_still_checked():
    data = jsonl(pair(1)) + b'{"prompt": "\xff", "response_a": "a", "response_b": "b"}\n'
    data += jsonl({"prompt": "p"})

    assert errors(scan_bytes(data)) == [
        "line 2: not valid UTF-8: byte 0xff at byte 13 of the line",
        'line 3, field "response_a": missing',
        'line 3, field "response_b": missing',
    ]


def test_a_utf8_bom_at_the_start_is_accepted_and_stripped():
    result = scan_bytes(b"\xef\xbb\xbf" + jsonl(pair(1)))

    assert result.ok
    assert result.samples[0].prompt == "p1"


def test_a_nul_byte_is_refused():
    data = jsonl(pair(1)) + b'{"prompt": "p\x00", "response_a": "a", "response_b": "b"}\n'

    assert errors(scan_bytes(data)) == [
        "line 2: contains a NUL byte; is this a binary or UTF-16 file?"
    ]


def test_nesting_100000_deep_is_refused_without_recursion():
    deep = b'{"prompt": "p", "response_a": "a", "response_b": "b", "metadata": '
    deep += b'{"k": ' * 100_000 + b"1" + b"}" * 100_000 + b"}\n"

    assert errors(scan_bytes(deep + jsonl(pair(2, response_b=None)))) == [
        "line 1: nested deeper than the limit of 20 levels",
        'line 2, field "response_b": missing',
    ]


def test_nesting_is_counted_outside_strings_only_and_up_to_the_limit():
    brackets = '[[{{"\\"[' * 10
    at_limit = pair(1, prompt=brackets, metadata=json.loads('{"k": ' * 19 + "1" + "}" * 19))
    over = pair(2, metadata=json.loads('{"k": ' * 20 + "1" + "}" * 20))

    assert errors(scan_bytes(jsonl(at_limit, over))) == [
        "line 2: nested deeper than the limit of 20 levels"
    ]


def test_a_50_mb_line_is_refused_without_being_held_whole():
    limits = ImportLimits(max_line_bytes=1 * MB)
    chunks = [b'{"prompt": "'] + [b"x" * MB] * 50 + [b'"}\n', jsonl(pair(2, response_a=None))]

    result, peak = peak_memory_of(
        lambda: scan(ChunkStream(chunks), filename="big.jsonl", format=None, limits=limits)
    )

    assert errors(result) == [
        "line 1: longer than the limit of 1 MB",
        'line 2, field "response_a": missing',
    ]
    assert result.size_bytes > 50 * MB
    assert peak < 8 * MB


def test_a_gzip_bomb_is_refused_with_bounded_memory():
    def bomb() -> Iterator[bytes]:
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
        yield compressor.compress(jsonl(pair(1)))
        for _ in range(64):
            yield compressor.compress(b" " * MB)
        yield compressor.flush()

    limits = ImportLimits(max_decompressed_bytes=8 * MB, max_line_bytes=MB)

    result, peak = peak_memory_of(
        lambda: scan(ChunkStream(bomb()), filename="data.jsonl", format=None, limits=limits)
    )

    assert errors(result) == ["the file decompresses to more than the limit of 8 MB"]
    assert result.compressed
    assert peak < 4 * MB


def test_gzip_is_detected_by_its_bytes_not_its_name_and_hashed_as_uploaded():
    data = gzip.compress(jsonl(pair(1), pair(2)))

    result = scan_bytes(data, filename="pairs.csv")

    assert result.ok
    assert result.compressed
    assert result.record_count == 2
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert len(list(iter_records(io.BytesIO(data), format="pair"))) == 2


def test_an_upload_over_the_size_limit_is_refused_without_a_hash():
    result = scan_bytes(
        jsonl(*[pair(i) for i in range(1000)]), limits=ImportLimits(max_upload_bytes=1000)
    )

    assert errors(result) == ["the file is larger than the limit of 1000 bytes"]
    assert result.sha256 is None


TRICKY = [
    "\u05e9\u05dc\u05d5\u05dd \u200fRTL\u200e mark",  # Hebrew with RTL/LTR marks
    "\U0001f468\u200d\U0001f469\u200d\U0001f467 family (ZWJ)",
    "\u6f22\u5b57\u304b\u306a\u6df7\u3058\u308a \ud55c\uad6d\uc5b4",
    "  leading and trailing whitespace\r\n\ttabs\n\n",
    "combining e\u0301 vs \u00e9, BOM inside \ufeff, replacement \ufffd",
]


@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_unicode_and_multi_megabyte_responses_come_back_byte_identical(ensure_ascii):
    big = ("\U0001f600\u05d0\u4e2d" + "x" * 61) * 15_000  # 960,000 characters, just under the limit
    records = [pair(i, response_a=text, response_b=text[::-1]) for i, text in enumerate(TRICKY)]
    records.append(pair(99, prompt=TRICKY[0], response_a=big, response_b=big + " "))
    data = b"".join(json.dumps(r, ensure_ascii=ensure_ascii).encode() + b"\n" for r in records)

    parsed = list(iter_records(io.BytesIO(data), format=None))

    for original, record in zip(records, parsed, strict=True):
        assert record.prompt.encode() == original["prompt"].encode()
        assert record.response_a.encode() == original["response_a"].encode()
        assert record.response_b.encode() == original["response_b"].encode()


def test_issues_render_as_sentences():
    assert str(ImportIssue(7, "response_b", "missing")) == 'line 7, field "response_b": missing'
    assert str(ImportIssue(12, None, "expected 4 columns, found 3", "row")) == (
        "row 12: expected 4 columns, found 3"
    )
    assert str(ImportIssue(3, "prompt", "empty", "row")) == 'row 3, column "prompt": empty'
    assert str(ImportIssue(None, None, "too big")) == "too big"


# -- CSV -----------------------------------------------------------------------------------------


def test_a_pair_csv_parses_with_optional_and_extra_columns():
    data = csv_bytes(
        ["prompt", "response_a", "response_b", "model_a", "model_b", "id", "note"],
        ["What is 2+2?", "4", 'Four,\n"quoted"', "m1", "", "r1", "checked"],
        ["Q2", "x", "y", "", "", "", ""],
    )

    result = scan_bytes(data, filename="pairs.csv")

    assert result.ok
    assert result.container == "csv"
    assert result.extra_keys == ("note",)
    first, second = result.samples
    assert first == PairRecord(
        2, "What is 2+2?", "4", 'Four,\n"quoted"', "m1", None, "r1", {"note": "checked"}
    )
    assert second == PairRecord(3, "Q2", "x", "y", None, None, None, {})


def test_a_preference_csv_of_hh_transcripts_is_split_like_jsonl():
    original = json.loads(HH_20.read_text().splitlines()[1])
    data = csv_bytes(["chosen", "rejected"], [original["chosen"], original["rejected"]])

    (record,) = iter_records(io.BytesIO(data), format=None)

    assert record.from_transcript
    assert record.prompt + record.chosen == original["chosen"]


def test_the_csv_long_form_groups_responses_by_prompt_id_wherever_they_are():
    data = csv_bytes(
        ["prompt_id", "prompt", "model", "response"],
        ["q1", "Colour?", "m1", "red"],
        ["q2", "Shape?", "m1", "round"],
        ["q1", "Colour?", "m2", "blue"],
        ["q2", "Shape?", "", "square"],
    )

    result = scan_bytes(data)

    assert result.ok
    assert result.format is ImportFormat.RESPONSES
    assert (result.record_count, result.response_count) == (2, 4)
    assert result.samples == (
        ResponsesRecord(
            2, "Colour?", (ResponseItem("red", "m1", {}), ResponseItem("blue", "m2", {})), "q1", {}
        ),
        ResponsesRecord(
            3,
            "Shape?",
            (ResponseItem("round", "m1", {}), ResponseItem("square", None, {})),
            "q2",
            {},
        ),
    )


def test_csv_long_form_errors_name_the_rows():
    data = csv_bytes(
        ["prompt_id", "prompt", "model", "response"],
        ["q1", "Colour?", "m1", "red"],
        ["q1", "Color?", "m2", "blue"],
        ["q2", "Shape?", "m1", "round"],
        ["q3", "Size?", "m1", "big"],
        ["q3", "Size?", "m2", "big"],
    )

    assert errors(scan_bytes(data)) == [
        'row 3, column "prompt": differs from the prompt on row 2, which has the same prompt_id '
        '"q1"',
        'row 2, column "prompt_id": not imported: row 3 of the same prompt_id "q1" is invalid',
        'row 4, column "response": needs at least 2 responses, found 1',
        'row 5, column "prompt_id": not imported: row 6 of the same prompt_id "q3" is invalid',
        'row 6, column "response": identical to the response on row 5 for the same prompt_id',
    ]


def test_csv_ragged_rows_and_empty_cells_are_reported_by_row():
    data = csv_bytes(
        ["prompt", "response_a", "response_b", "id"],
        ["p", "a", "b", "1"],
        ["p", "a", "b"],
        ["", "a", "b", "3"],
        [],
        ["p", "a", "b", "1"],
    )

    assert errors(scan_bytes(data)) == [
        "row 3: expected 4 columns, found 3",
        'row 4, column "prompt": empty',
        'row 6, column "id": "1" is used twice: on row 2 and row 6',
    ]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            ["prompt", "response_a"],
            "row 1: missing the required column response_b for the pair "
            "format (found: prompt, response_a)",
        ),
        (
            ["question", "answer"],
            "row 1: the header has no known columns; expected the columns "
            "prompt, response_a, response_b (pair), prompt, chosen, rejected (preference) or "
            "prompt_id, prompt, model, response (responses)",
        ),
        (["prompt", "chosen", "chosen"], 'row 1, column "chosen": appears twice in the header'),
        (["prompt", "", "x"], "row 1: column 2 has no name"),
    ],
)
def test_a_bad_csv_header_refuses_the_file(header, expected):
    assert errors(scan_bytes(csv_bytes(header, ["a", "b", "c"]))) == [expected]


def test_a_forced_format_needs_its_columns():
    data = csv_bytes(["prompt", "chosen", "rejected"], ["p", "c", "r"])

    assert errors(scan_bytes(data, format="pair")) == [
        "row 1: missing the required columns response_a, response_b for the pair format "
        "(found: prompt, chosen, rejected)"
    ]


def test_a_csv_bom_header_and_crlf_lines_parse():
    data = b"\xef\xbb\xbfPrompt,Chosen,Rejected\r\np,c,r\r\n"

    result = scan_bytes(data)

    assert result.ok
    assert result.samples == (PreferenceRecord(2, "p", "c", "r", None, {}),)


def test_a_huge_csv_field_is_refused_and_an_unclosed_quote_stops_at_the_row_limit():
    limits = ImportLimits(max_field_chars=1000, max_line_bytes=64 * 1024)
    huge = csv_bytes(["prompt", "chosen", "rejected"], ["p", "c" * 1001, "r"])
    runaway = b'prompt,chosen,rejected\np,"never closed,r\n' + b"more text\n" * 20_000

    assert errors(scan_bytes(huge, limits=limits)) == [
        'row 2, column "chosen": longer than the limit of 1,000 characters'
    ]
    assert errors(scan_bytes(runaway, limits=limits)) == [
        "row 2: longer than the limit of 64 KB; check for a quote that is never closed"
    ]


def test_a_multi_megabyte_csv_field_is_accepted_within_the_limits():
    big = "\u4e2d\U0001f600," * 300_000  # 900,000 characters (the limit is 1,000,000): 2.4 MB
    data = csv_bytes(["prompt", "response_a", "response_b"], ["p", big, big + "!"])

    (record,) = iter_records(io.BytesIO(data), format=None)

    assert record.response_a == big


def test_csv_malformed_quotes_invalid_utf8_and_nul_are_reported_by_row():
    data = b'prompt,chosen,rejected\np,"c"x,r\np,\xff,r\np,c\x00,r\np,c,r\n'

    assert errors(scan_bytes(data)) == [
        "row 2: malformed CSV: ',' expected after '\"'",
        "row 3: not valid UTF-8: byte 0xff at byte 3 of line 3",
        "row 4: contains a NUL byte; is this a binary or UTF-16 file?",
    ]


def test_a_csv_with_only_a_header_holds_no_records():
    assert errors(scan_bytes(b"prompt,chosen,rejected\n")) == ["the file holds no records"]


# -- pairing rule -------------------------------------------------------------------------------


def responses(*models: str | None) -> ResponsesRecord:
    items = tuple(ResponseItem(f"text {i}", model, {}) for i, model in enumerate(models))
    return ResponsesRecord(1, "prompt", items, "q1", {})


def test_the_all_rule_gives_every_pair_once():
    assert pairs_from_responses(responses("a", "b", "c", "d"), rule="all", k=1, seed=0) == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 2),
        (1, 3),
        (2, 3),
    ]


def test_k_per_prompt_prefers_different_models_and_spreads_responses():
    record = responses("gpt", "gpt", "claude", "claude")

    chosen = pairs_from_responses(record, rule="k_per_prompt", k=2, seed=1)

    assert len(chosen) == 2
    for i, j in chosen:
        assert record.responses[i].model != record.responses[j].model
    assert sorted(i for p in chosen for i in p) == [0, 1, 2, 3]


def test_k_per_prompt_is_deterministic_for_a_seed_and_varies_across_seeds():
    record = responses(*[f"m{i}" for i in range(8)])

    runs = {
        tuple(pairs_from_responses(record, rule="k_per_prompt", k=3, seed=s)) for s in range(20)
    }

    assert pairs_from_responses(record, rule="k_per_prompt", k=3, seed=5) == pairs_from_responses(
        record, rule="k_per_prompt", k=3, seed=5
    )
    assert len(runs) > 1


def test_k_per_prompt_with_k_above_the_number_of_pairs_gives_them_all():
    assert pairs_from_responses(responses("a", "b", "c"), rule="k_per_prompt", k=10, seed=0) == [
        (0, 1),
        (0, 2),
        (1, 2),
    ]


def test_an_unknown_rule_or_a_k_below_one_is_refused():
    with pytest.raises(ValueError, match="unknown pairing rule"):
        pairs_from_responses(responses("a", "b"), rule="some", k=1, seed=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="k must be at least 1"):
        pairs_from_responses(responses("a", "b"), rule="k_per_prompt", k=0, seed=0)
