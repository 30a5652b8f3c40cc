"""Credential providers in pipelines: a token that expires mid-run, and no value in the pickled pipeline."""

from __future__ import annotations

import base64
import bz2
import zlib
from typing import List

import apache_beam as beam
import pytest
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.transforms.display import DisplayData

from raccoon_beam import FromEnv, FromFile, WriteToRaccoon

from tests.sink.test_write_pipeline import FAST_RETRY, captured_json, endpoint_of, expected_json, make_events, run_write

START_TOKEN = "Bearer start-token"


class Token:
    """What the module-level provider function reads: the gateway's current token (as a token service would)."""

    gateway = None
    calls = 0


def current_token() -> str:
    """A provider function: module-level, so pickled by reference (one sender per worker process)."""
    Token.calls += 1
    assert Token.gateway is not None
    return Token.gateway.required_header_value


@pytest.mark.emulator(require_header=("Authorization", START_TOKEN), rotate_header_every=8)
@pytest.mark.parametrize("transport", ["grpc", "rest"])
def test_a_token_that_expires_mid_run_costs_no_dead_letter(emulator, transport):
    Token.gateway, Token.calls = emulator, 0
    events = make_events(1_200)
    run_write(
        events,
        endpoint=endpoint_of(emulator, transport),
        event_type=lambda e: e["event_name"],
        max_batch_size=25,  # 48 requests: the token expires every 8 of them
        # Two in flight: a resend with the fresh token cannot meet the next expiry (8 admissions
        # later) on the way, which would make its second 401 final, as it should be.
        max_in_flight=2,
        headers={"Authorization": current_token},
        retry=FAST_RETRY,
    )  # asserts that result.failed is empty
    assert captured_json(emulator) == expected_json(events)
    counters = emulator.counters()
    assert emulator._ingest.required_header.rotations >= 5
    assert counters.rejected() >= 5  # every expiry (but a last one with no request after it) met a 401...
    assert 2 <= Token.calls <= counters.rejected() + 1  # ...answered by reading the token again


def _pickled_dofns(pipeline: beam.Pipeline) -> List[bytes]:
    """The pickled DoFns of ``pipeline``'s proto, uncompressed (the pickler packs them in base64 and bz2 or zlib)."""
    proto = pipeline.to_runner_api()
    pickled = []
    for transform in proto.components.transforms.values():
        if transform.spec.urn == common_urns.primitives.PAR_DO.urn:
            packed = base64.b64decode(beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn.payload)
            try:
                pickled.append(bz2.decompress(packed))
            except OSError:
                pickled.append(zlib.decompress(packed))
    assert pickled
    return pickled


def _write_pipeline(emulator, headers) -> beam.Pipeline:
    pipeline = beam.Pipeline()
    _ = (
        pipeline
        | beam.Create(make_events(50), reshuffle=False)
        | WriteToRaccoon(emulator.rest_endpoint, event_type="click", headers=headers, retry=FAST_RETRY)
    )
    return pipeline


def test_a_string_header_is_in_the_pickled_pipeline():
    """What the providers avoid (and proof that the check below can see a value)."""
    pipeline = beam.Pipeline()
    _ = pipeline | beam.Create([1]) | WriteToRaccoon(
        "http://127.0.0.1:1", event_type="click", headers={"Authorization": "Bearer plain-secret-5150"}
    )
    assert any(b"plain-secret-5150" in pickled for pickled in _pickled_dofns(pipeline))


@pytest.mark.emulator(require_header=("Authorization", "Bearer env-secret-8086"))
def test_no_provided_value_is_in_the_pipeline_proto_or_the_pickled_dofns(emulator, tmp_path, monkeypatch):
    monkeypatch.setenv("RACCOON_PIPELINE_TOKEN", "env-secret-8086")
    key_file = tmp_path / "api-key"
    key_file.write_text("file-secret-6502\n")
    headers = {"Authorization": FromEnv("RACCOON_PIPELINE_TOKEN", prefix="Bearer "), "X-Api-Key": FromFile(key_file)}
    pipeline = _write_pipeline(emulator, headers)
    shown = repr(DisplayData.create_from(WriteToRaccoon(emulator.rest_endpoint, event_type="x", headers=headers)).items)
    assert "Authorization" in shown and "secret" not in shown
    proto = pipeline.to_runner_api().SerializeToString()
    pickled = _pickled_dofns(pipeline)
    for secret in (b"env-secret-8086", b"file-secret-6502"):
        assert secret not in proto
        assert not any(secret in dofn for dofn in pickled)
    assert any(b"RACCOON_PIPELINE_TOKEN" in dofn for dofn in pickled)  # the provider travels instead
    pipeline.run().wait_until_finish()  # resolved on the worker: the gateway lets every request through
    assert len(emulator.events()) == 50 and emulator.counters().rejected() == 0
    assert b"env-secret-8086" not in pipeline.to_runner_api().SerializeToString()


YAML_PIPELINE = """
type: composite
transforms:
  - type: Create
    config:
      elements: [{{n: 1}}, {{n: 2}}, {{n: 3}}]
  - type: WriteToRaccoon
    input: Create
    config:
      endpoint: {endpoint}
      event_type: counted
      headers:
        Authorization: {{env: RACCOON_YAML_TOKEN, prefix: "Bearer "}}
        X-Api-Key: {{file: {key_file}}}
        X-Plain: plain-value
"""


@pytest.mark.emulator(require_header=("Authorization", "Bearer yaml-secret-1234"))
def test_beam_yaml_writes_header_values_as_env_and_file(emulator, tmp_path, monkeypatch):
    pytest.importorskip("jinja2")  # Beam's yaml extra, in the test extra
    from apache_beam.yaml.yaml_provider import load_providers
    from apache_beam.yaml.yaml_transform import YamlTransform

    from raccoon_beam.yaml import PROVIDERS_FILE

    monkeypatch.setenv("RACCOON_YAML_TOKEN", "yaml-secret-1234")
    key_file = tmp_path / "key"
    key_file.write_text("file-key-42")
    spec = YAML_PIPELINE.format(endpoint=emulator.grpc_endpoint, key_file=key_file)
    pipeline = beam.Pipeline()
    _ = pipeline | YamlTransform(spec, providers=load_providers(str(PROVIDERS_FILE)))
    assert not any(b"yaml-secret-1234" in dofn or b"file-key-42" in dofn for dofn in _pickled_dofns(pipeline))
    pipeline.run().wait_until_finish()
    assert sorted(e.type for e in emulator.events()) == ["counted"] * 3
    assert emulator.counters().rejected() == 0
