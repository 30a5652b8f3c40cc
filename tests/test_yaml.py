"""Beam YAML: raccoon_beam.yaml.WriteToRaccoon through the inline Python provider."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

pytest.importorskip("jinja2")  # Beam's yaml extra, in the test extra

from apache_beam.yaml.yaml_provider import load_providers  # noqa: E402  (what `include` uses)
from apache_beam.yaml.yaml_transform import YamlTransform  # noqa: E402

from raccoon_beam.yaml import PROVIDERS_FILE  # noqa: E402
from raccoon_beam.yaml_sample import with_jinja_variable  # noqa: E402
from tests.protobuf_helpers import ORDER, order_class, write_shop_descriptor_set  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = REPO / "pipelines" / "data" / "clickstream.jsonl"


def good_sample_lines():
    good = []
    for line in SAMPLE.read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("event_name"), str):
            good.append(event)
    return good


def test_the_readme_command_delivers_every_good_line_and_dead_letters_the_rest(tmp_path):
    command = [
        sys.executable, "-m", "raccoon_beam.yaml_sample", "--",
        sys.executable, "-m", "apache_beam.yaml.main", "--yaml_pipeline_file=pipelines/clickstream.yaml",
        "--runner=FnApiRunner",
        "--jinja_variables=" + json.dumps({"output": str(tmp_path)}),
    ]
    completed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    good = good_sample_lines()
    expected_types: dict = {}
    for event in good:
        expected_types[event["event_name"]] = expected_types.get(event["event_name"], 0) + 1
    assert report == {"events": len(good), "by_type": dict(sorted(expected_types.items()))}
    dead = [json.loads(line) for line in (tmp_path / "dead_letters.jsonl").read_text().splitlines()]
    malformed = [json.loads(line) for line in (tmp_path / "malformed.jsonl").read_text().splitlines()]
    assert len(dead) + len(malformed) == len(SAMPLE.read_text().splitlines()) - len(good) == 10
    for letter in dead:
        assert letter["stage"] == "serialize" and "event_type" in letter["error"], letter
        assert set(letter) == {"element", "event_type", "stage", "error", "code", "attempts", "req_guid"}
    assert all(row["msg"] for row in malformed)


def test_jinja_variables_are_merged_not_replaced():
    assert with_jinja_variable(["x"], "endpoint", "e") == ["x", '--jinja_variables={"endpoint": "e"}']
    merged = with_jinja_variable(["x", '--jinja_variables={"output": "o"}'], "endpoint", "e")
    assert json.loads(merged[1].split("=", 1)[1]) == {"output": "o", "endpoint": "e"}
    kept = with_jinja_variable(["x", "--jinja_variables", '{"endpoint": "mine"}'], "endpoint", "e")
    assert json.loads(kept[2]) == {"endpoint": "mine"}


PROTOBUF_PIPELINE = """
type: composite
transforms:
  - type: Create
    name: Orders
    config:
      elements:
        - {{order_id: "o-1", user_id: 7, device: DEVICE_IOS, kind: order}}
        - {{order_id: "o-2", user_id: 8, device: 2, kind: order}}
        - {{order_id: "o-3", user_id: 9, device: DEVICE_FRIDGE, kind: order}}
  - type: MapToFields
    name: Trim
    input: Orders
    config:
      language: python
      fields:
        order_id: order_id
        user_id: user_id
        device: device
  - type: WriteToRaccoon
    name: Send
    input: Trim
    config:
      endpoint: {endpoint}
      event_type: order
      serializer: protobuf
      message_type: {message_type}
      descriptor_set: {descriptor_set}
      max_attempts: 2
      error_handling:
        output: dead
output: Send.dead
"""


def test_protobuf_from_rows_with_a_descriptor_set_and_error_handling(emulator, tmp_path):
    descriptor_set = write_shop_descriptor_set(tmp_path)
    spec = PROTOBUF_PIPELINE.format(
        endpoint=emulator.rest_endpoint, message_type=ORDER, descriptor_set=descriptor_set
    )
    Order = order_class()
    with beam.Pipeline() as pipeline:
        dead = pipeline | YamlTransform(spec, providers=load_providers(str(PROVIDERS_FILE)))
        assert_that(
            dead | beam.Map(lambda row: (row.element.order_id, row.stage, "device: 'DEVICE_FRIDGE' is not a value of" in row.error)),
            equal_to([("o-3", "serialize", True)]),
        )
    received = sorted(Order.FromString(event.event_bytes).order_id for event in emulator.events())
    assert received == ["o-1", "o-2"]
    assert {Order.FromString(e.event_bytes).device for e in emulator.events()} == {2}


def test_without_error_handling_a_dead_letter_fails_the_pipeline(emulator):
    spec = f"""
type: composite
transforms:
  - type: Create
    config:
      elements: [{{n: 1}}, {{n: 2}}]
  - type: WriteToRaccoon
    input: Create
    config:
      endpoint: {emulator.grpc_endpoint}
      event_type_field: missing_field
"""
    with pytest.raises(Exception, match="missing_field"):
        with beam.Pipeline() as pipeline:
            pipeline | YamlTransform(spec, providers=load_providers(str(PROVIDERS_FILE)))
    assert emulator.events() == []


def test_exactly_one_event_type_option():
    from raccoon_beam.yaml import WriteToRaccoon

    with pytest.raises(ValueError, match="exactly one of event_type and event_type_field"):
        WriteToRaccoon("grpc://127.0.0.1:1")
    with pytest.raises(ValueError, match="exactly one of"):
        WriteToRaccoon("grpc://127.0.0.1:1", event_type="a", event_type_field="b")
