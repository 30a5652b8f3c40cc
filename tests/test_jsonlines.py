"""ParseJsonLines and WriteDeadLetters (raccoon_beam.jsonlines) in real pipelines."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from raccoon_beam import ParseJsonLines, RaccoonDeadLetter, WriteDeadLetters
from raccoon_beam.dead_letters import to_row
from raccoon_beam.jsonlines import dead_letter_record, parse_json_object


@pytest.mark.parametrize(
    "line, reason",
    [
        ("", "blank line"),
        ("  ", "blank line"),
        ("{", "not JSON: "),
        ("[1]", "not a JSON object but list"),
        ('"text"', "not a JSON object but str"),
    ],
)
def test_a_line_that_is_not_an_object_has_a_reason(line, reason):
    value, why = parse_json_object(line)
    assert value is None and why is not None and why.startswith(reason)


def test_parsed_and_failed_lines_str_and_bytes():
    with beam.Pipeline() as pipeline:
        events = pipeline | beam.Create(['{"a": 1}', b'{"b": 2}', "nope"]) | ParseJsonLines()
        assert_that(events.parsed, equal_to([{"a": 1}, {"b": 2}]), label="parsed")
        failed = events.failed | beam.Map(lambda row: (row.element, row.stage, row.error.split(":")[0]))
        assert_that(failed, equal_to([("nope", "parse", "not JSON")]), label="failed")


def test_dead_letter_records_of_every_kind():
    letter = RaccoonDeadLetter(
        {"id": 1}, "click", "send", "HTTP 503", code="http:503", attempts=3, req_guid="r-1", payload=b'{"id":1}'
    )
    # A sink's letter: the fields of its result.failed_rows row, the payload in base64.
    assert dead_letter_record(letter) == {
        **to_row(letter)._asdict(),
        "element": '{"id":1}',
        "payload": "eyJpZCI6MX0=",
    }
    assert dead_letter_record(to_row(letter)) == dead_letter_record(letter)
    row = beam.Row(element="x", stage="parse", error="not JSON")
    assert dead_letter_record(row) == {"element": "x", "stage": "parse", "error": "not JSON"}
    # An element with no JSON form keeps a bounded repr.
    record = dead_letter_record(RaccoonDeadLetter({1, 2}, None, "serialize", "set"))
    assert record["element"] == "{1, 2}" and record["element_is_json"] is False
    assert dead_letter_record({"element": b"\xff", "stage": "parse", "error": "x"})["element"] == "\\xff"


def test_write_dead_letters_one_file_and_none_without_letters(tmp_path):
    path = tmp_path / "dead.jsonl"
    empty = tmp_path / "empty.jsonl"
    letters = [RaccoonDeadLetter({"id": i}, "click", "send", "HTTP 503", code="http:503") for i in range(3)]
    with beam.Pipeline() as pipeline:
        first = pipeline | "Letters" >> beam.Create(letters)
        second = pipeline | "Rows" >> beam.Create([beam.Row(element="bad", stage="parse", error="not JSON")])
        _ = (first, second) | WriteDeadLetters(str(path))
        _ = pipeline | "None" >> beam.Create([]) | "NoLetters" >> WriteDeadLetters(str(empty))
    records = sorted((json.loads(line) for line in path.read_text().splitlines()), key=lambda r: r["element"])
    assert [r["element"] for r in records] == ["bad", '{"id":0}', '{"id":1}', '{"id":2}']
    assert {r["stage"] for r in records} == {"send", "parse"}
    assert not empty.exists()


def test_write_dead_letters_needs_a_path():
    with pytest.raises(ValueError, match="needs a path"):
        WriteDeadLetters("")
