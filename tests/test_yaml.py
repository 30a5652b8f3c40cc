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

from raccoon_beam.errors import SerializationError  # noqa: E402
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
        assert letter["stage"] == "serialize" and "event_type_field 'event_name' is" in letter["msg"], letter
        assert list(letter)[:3] == ["element", "msg", "stack"]  # Beam YAML's error row, then the letter's fields
        assert {"event_type", "stage", "code", "attempts", "req_guid"} <= set(letter)
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
      format: PROTO
      message_name: {message_type}
      file_descriptor_path: {descriptor_set}
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
            dead | beam.Map(lambda row: (row.element.order_id, row.stage, "device: 'DEVICE_FRIDGE' is not a value of" in row.msg)),
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
    with pytest.raises(Exception, match="event_type_field 'missing_field' is missing from the element"):
        with beam.Pipeline() as pipeline:
            pipeline | YamlTransform(spec, providers=load_providers(str(PROVIDERS_FILE)))
    assert emulator.events() == []


def test_exactly_one_event_type_option():
    from raccoon_beam.yaml import WriteToRaccoon

    with pytest.raises(ValueError, match="exactly one of event_type and event_type_field"):
        WriteToRaccoon("grpc://127.0.0.1:1")
    with pytest.raises(ValueError, match="exactly one of"):
        WriteToRaccoon("grpc://127.0.0.1:1", event_type="a", event_type_field="b")


# --------------------------------------------------------------------------- #
# Beam YAML's names, every option, the docs' pipeline
# --------------------------------------------------------------------------- #


def _docs_pipeline() -> str:
    """The pipeline of docs/yaml.md, as the page shows it."""
    text = (REPO / "docs" / "yaml.md").read_text()
    return text.split('```yaml title="clicks_to_raccoon.yaml"\n', 1)[1].split("```", 1)[0]


def test_the_docs_pipeline_runs_with_tls_a_private_ca_a_token_from_the_environment_and_error_handling(
    tmp_path, monkeypatch
):
    import jinja2

    from apache_beam.yaml.yaml_transform import expand_pipeline
    from tests.transports.helpers import make_ca_and_server_cert

    from raccoon_beam.emulator import RaccoonEmulator

    ca, cert, key = make_ca_and_server_cert(str(tmp_path))
    lines = [
        json.dumps({"event_name": "page_view", "user_id": "u1", "ts": 1, "properties": {"a": [1, None]}}),
        json.dumps({"event_name": "click", "user_id": "u2", "ts": 2, "extra": True}),
        "not json",
        json.dumps({"user_id": "u3", "ts": 3}),  # no event_name: a dead letter naming the field
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(lines) + "\n")
    monkeypatch.setenv("RACCOON_TOKEN", "s3cret")
    with RaccoonEmulator(tls=(cert, key), require_header=("Authorization", "Bearer s3cret")) as emulator:
        spec = jinja2.Template(_docs_pipeline()).render(
            raccoon_providers=str(PROVIDERS_FILE),
            input=str(tmp_path / "in.jsonl"),
            endpoint=emulator.grpc_endpoint,
            ca_certs=ca,
            output=str(tmp_path / "out"),
        )
        assert emulator.grpc_endpoint.startswith("grpcs://")
        with beam.Pipeline() as pipeline:
            expand_pipeline(pipeline, spec)
        received = sorted((event.type, json.loads(event.event_bytes)["user_id"]) for event in emulator.events())
    assert received == [("click", "u2"), ("page_view", "u1")]
    dead = [json.loads(line) for line in (tmp_path / "out" / "dead_letters.jsonl").read_text().splitlines()]
    assert [(row["element"]["user_id"], row["msg"], row["stack"], row["stage"]) for row in dead] == [
        ("u3", "event_type_field 'event_name' is null", "", "serialize")
    ]
    malformed = [json.loads(line) for line in (tmp_path / "out" / "malformed.jsonl").read_text().splitlines()]
    assert [row["element"] for row in malformed] == ["not json"]


def test_every_option_of_the_python_sink_is_an_option_in_yaml():
    import inspect

    from apache_beam.yaml.yaml_provider import InlineProvider

    import raccoon_beam
    from raccoon_beam.yaml import WriteToRaccoon
    from raccoon_beam.yaml_options import DEPRECATED_NAMES

    yaml_options = {field.name for field in InlineProvider.config_schema_from_callable(WriteToRaccoon).fields}
    python_options = set(inspect.signature(raccoon_beam.WriteToRaccoon).parameters)
    spelled = {"serializer": "format", "avro_schema": "schema", "message_type": "message_name",
               "descriptor_set": "file_descriptor_path", "retry": "max_attempts", "event_type": "event_type_field"}
    for name in python_options - {"fail_on_error", "buffering_clock"}:  # error_handling decides; a test hook
        assert spelled.get(name, name) in yaml_options, name
    assert set(DEPRECATED_NAMES) <= yaml_options
    undocumented = [f.name for f in InlineProvider.config_schema_from_callable(WriteToRaccoon).fields if not f.description]
    assert undocumented == []


def test_beam_names_old_names_with_a_warning_and_unknown_names_refused():
    from raccoon_beam.yaml import WriteToRaccoon

    avro = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}
    new = WriteToRaccoon("grpc://127.0.0.1:1", event_type="e", format="avro", schema=avro, max_attempts=2,
                         group="g", tls={"ca_certs": None}, json_bytes="base64")
    assert new._sink.options.serializer == "avro" and new._sink.options.avro_schema == avro
    assert new._sink.options.retry.max_attempts == 2 and new._sink.options.group == "g"
    with pytest.warns(DeprecationWarning) as warned:
        old = WriteToRaccoon("grpc://127.0.0.1:1", event_type="e", serializer="avro", avro_schema=avro)
    assert sorted(str(w.message) for w in warned) == [
        "WriteToRaccoon: 'avro_schema' is deprecated in Beam YAML, use 'schema' (Beam YAML's name)",
        "WriteToRaccoon: 'serializer' is deprecated in Beam YAML, use 'format' (Beam YAML's name)",
    ]
    assert old._sink.options.avro_schema == avro
    with pytest.raises(ValueError, match="give 'format' only"):
        WriteToRaccoon("grpc://127.0.0.1:1", event_type="e", format="JSON", serializer="json")
    with pytest.raises(ValueError, match=r"unknown option 'max_batch_sizes' \(did you mean 'max_batch_size'\?\)"):
        WriteToRaccoon("grpc://127.0.0.1:1", event_type="e", max_batch_sizes=5)
    with pytest.raises(ValueError, match="format must be one of AVRO, BYTES, JSON, PROTO"):
        WriteToRaccoon("grpc://127.0.0.1:1", event_type="e", format="xml")
    with pytest.raises(ValueError, match="tls has no option ca_cert;"):
        WriteToRaccoon("grpc://127.0.0.1:1", event_type="e", tls={"ca_cert": "x"})
    raw = WriteToRaccoon("grpc://127.0.0.1:1", event_type="e", format="RAW")._sink.options.builder.serializer
    assert raw(beam.Row(payload=b"\x00x")) == b"\x00x" and raw(beam.Row(text="é")) == "é".encode()
    with pytest.raises(SerializationError, match=r"format RAW takes rows of exactly one field, got .*Row \(a, b\)"):
        raw(beam.Row(a=b"", b=b""))
    with pytest.raises(SerializationError, match="format RAW: field 'n': expected bytes, bytearray, memoryview or str, got int"):
        raw(beam.Row(n=1))
    hooked = WriteToRaccoon("grpc://127.0.0.1:1", event_type="e", json_default="json.dumps")
    assert hooked._sink.options.json_default is json.dumps


def test_parse_json_lines_names_the_fields_it_drops_or_keeps_them(caplog):
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.testing.test_pipeline import TestPipeline

    from raccoon_beam.yaml_json import DROPPED_COUNTER, ParseJsonLines

    lines = ['{"a": 1, "b": 2, "c": {"d": 3}}', '{"a": 2}', '{"a": 3, "b": 4}']
    with caplog.at_level("WARNING", logger="raccoon_beam"):
        pipeline = TestPipeline()
        rows = pipeline | beam.Create(lines) | ParseJsonLines(fields={"a": "int"})
        assert_that(rows["output"] | beam.Map(lambda row: row.a), equal_to([1, 2, 3]))
        result = pipeline.run()
        result.wait_until_finish()
    counters = result.metrics().query(MetricsFilter().with_namespace(DROPPED_COUNTER[0]).with_name(DROPPED_COUNTER[1]))
    assert sum(counter.committed for counter in counters["counters"]) == 3
    warnings_text = " ".join(record.getMessage() for record in caplog.records)
    assert "ParseJsonLines drops the fields 'b', 'c'" in warnings_text
    with beam.Pipeline() as pipeline:
        kept = pipeline | beam.Create(lines) | ParseJsonLines(fields={"a": "int"}, keep_other_fields=True)
        assert_that(
            kept["output"] | beam.Map(lambda row: (row.a, row.other_fields)),
            equal_to([(1, {"b": 2, "c": {"d": 3}}), (2, None), (3, {"b": 4})]),
        )


def test_the_packaged_providers_file_names_the_package_for_beam_to_install():
    from raccoon_beam.yaml import PACKAGED_PROVIDERS_FILE

    import yaml as pyyaml

    (inline,) = pyyaml.safe_load(PROVIDERS_FILE.read_text())
    (packaged,) = pyyaml.safe_load(PACKAGED_PROVIDERS_FILE.read_text())
    assert packaged["config"]["packages"] == ["raccoon-beam"]
    assert packaged["transforms"] == inline["transforms"]
    (provider,) = load_providers(str(PACKAGED_PROVIDERS_FILE))  # parsed by Beam, nothing installed yet
    assert type(provider).__name__ == "ExternalPythonProvider"
    assert set(provider.provided_transforms()) == set(inline["transforms"])


def test_acknowledgements_true_gives_the_acknowledged_output(emulator):
    spec = f"""
type: composite
transforms:
  - type: Create
    config:
      elements: [{{kind: a, n: 1}}, {{kind: b, n: 2}}, {{kind: a, n: 3}}]
  - type: WriteToRaccoon
    name: Send
    input: Create
    config:
      endpoint: {emulator.rest_endpoint}
      event_type_field: kind
      acknowledgements: true
      max_batch_size: 2
output: Send.acknowledged
"""
    with beam.Pipeline() as pipeline:
        acks = pipeline | YamlTransform(spec, providers=load_providers(str(PROVIDERS_FILE)))
        assert_that(acks | beam.Map(lambda ack: ack.events) | beam.CombineGlobally(sum), equal_to([3]))
    assert len(emulator.events()) == 3
