"""raccoon_beam in one process with other code that registered raccoon.proto in the default pool.

Each case runs in a fresh interpreter, since the default descriptor pool is
per process and cannot be emptied: a stand-in ``raystack/raccoon/v1beta1/
raccoon.proto`` with a different schema is registered in protobuf's default
pool before (or after) raccoon_beam is imported, and pipelines over every
transport must still deliver exactly their input, while the stand-in keeps
working.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    '''
    import json
    import sys

    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    ORDER = sys.argv[1]


    def register_stand_in():
        """A different schema under the same file name and package, as other generated code might have."""
        proto = descriptor_pb2.FileDescriptorProto(
            name="raystack/raccoon/v1beta1/raccoon.proto",
            package="raystack.raccoon.v1beta1",
            syntax="proto3",
        )
        event = proto.message_type.add(name="Event")
        event.field.add(name="payload", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
                        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
        event.field.add(name="kind", number=7, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
                        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
        descriptor = descriptor_pool.Default().Add(proto)
        found = descriptor_pool.Default().FindMessageTypeByName("raystack.raccoon.v1beta1.Event")
        assert [f.name for f in found.fields] == ["payload", "kind"], found.fields
        return message_factory.GetMessageClass(found)


    def check_stand_in(cls):
        message = cls(payload="p", kind=3)
        assert cls.FromString(message.SerializeToString()) == message
        assert set(descriptor_pool.Default().FindMessageTypeByName(
            "raystack.raccoon.v1beta1.Event").fields_by_name) == {"payload", "kind"}


    def run_pipelines():
        import apache_beam as beam
        from raccoon_beam import WriteToRaccoon
        from raccoon_beam.emulator import RaccoonEmulator

        delivered = {}
        with RaccoonEmulator() as emulator:
            for name, endpoint, wire in [
                ("grpc", emulator.grpc_endpoint, "protobuf"),
                ("rest", emulator.rest_endpoint, "protobuf"),
                ("rest-json", emulator.rest_endpoint, "json"),
                ("websocket", emulator.ws_endpoint, "protobuf"),
            ]:
                emulator.reset()
                events = [{"id": i, "via": name} for i in range(200)]
                with beam.Pipeline() as pipeline:
                    result = (pipeline | beam.Create(events, reshuffle=False)
                              | WriteToRaccoon(endpoint, event_type="click", wire=wire))
                    result.failed | beam.Map(lambda letter: sys.exit(f"dead letter: {letter}"))
                got = sorted((json.loads(e.event_bytes) for e in emulator.events()), key=lambda e: e["id"])
                assert got == events, (name, len(got))
                assert {e.type for e in emulator.events()} == {"click"}
                delivered[name] = len(got)
        return delivered


    if ORDER == "stand-in-first":
        cls = register_stand_in()
        import raccoon_beam  # noqa: F401
        delivered = run_pipelines()
        check_stand_in(cls)
    else:
        import raccoon_beam  # noqa: F401
        from raccoon_beam._proto import raccoon_pb2
        delivered = run_pipelines()
        cls = register_stand_in()
        check_stand_in(cls)
        delivered.update({k + "-after": v for k, v in run_pipelines().items()})
        assert set(raccoon_pb2.Event.DESCRIPTOR.fields_by_name) == {"event_bytes", "type"}
    print(json.dumps(delivered))
    '''
)


@pytest.mark.parametrize("order", ["stand-in-first", "raccoon-beam-first"])
def test_a_different_raccoon_proto_in_the_default_pool_does_not_interfere(order):
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, order], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    delivered = completed.stdout.strip().splitlines()[-1]
    counts = __import__("json").loads(delivered)
    expected = {"grpc", "rest", "rest-json", "websocket"}
    if order == "raccoon-beam-first":
        expected |= {name + "-after" for name in expected}
    assert counts == dict.fromkeys(expected, 200)


def test_the_package_pool_is_not_the_default_pool():
    from google.protobuf import descriptor_pool

    from raccoon_beam._proto import _pool, raccoon_pb2

    assert raccoon_pb2.DESCRIPTOR.pool is _pool.POOL
    assert _pool.POOL is not descriptor_pool.Default()
