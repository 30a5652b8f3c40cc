"""The committed code in raccoon_beam/_proto must be what proto/generate.py makes."""

import importlib.util
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]


def _load_generator():
    spec = importlib.util.spec_from_file_location("proto_generate", REPO / "proto" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_code_is_fresh(tmp_path):
    pytest.importorskip("grpc_tools")
    generator = _load_generator()
    for fresh in generator.generate(tmp_path):
        committed = generator.OUTPUT_DIR / fresh.name
        assert committed.read_text() == fresh.read_text(), (
            f"{committed.relative_to(REPO)} is stale: run `python proto/generate.py`"
        )


def test_editing_the_proto_is_detected(tmp_path, monkeypatch):
    """A changed .proto regenerates to different code, so the test above would fail."""
    pytest.importorskip("grpc_tools")
    generator = _load_generator()
    proto_root = tmp_path / "proto"
    target = proto_root / generator.PROTO_FILE
    target.parent.mkdir(parents=True)
    original = (generator.PROTO_ROOT / generator.PROTO_FILE).read_text()
    target.write_text(original.replace("string type = 2;", "string type = 2;\n  string extra = 3;"))
    monkeypatch.setattr(generator, "PROTO_ROOT", proto_root)
    out = tmp_path / "out"
    generator.generate(out)
    assert (out / "raccoon_pb2.py").read_text() != (generator.OUTPUT_DIR / "raccoon_pb2.py").read_text()


def test_generated_service_matches_the_contract():
    from raccoon_beam._proto import raccoon_pb2

    service = raccoon_pb2.DESCRIPTOR.services_by_name["EventService"]
    assert service.full_name == "raystack.raccoon.v1beta1.EventService"
    assert service.methods_by_name["SendEvent"].input_type.name == "SendEventRequest"
    fields = {f.name: f.number for f in raccoon_pb2.SendEventResponse.DESCRIPTOR.fields}
    assert fields == {"status": 1, "code": 2, "sent_time": 3, "reason": 4, "data": 5}
    assert raccoon_pb2.DESCRIPTOR.name == "raystack/raccoon/v1beta1/raccoon.proto"
