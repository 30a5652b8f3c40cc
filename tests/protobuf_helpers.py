"""The test schema tests/data/protos/shop/v1/shop.proto, compiled with grpcio-tools' protoc."""

from __future__ import annotations

import base64
import functools
import pathlib
import tempfile
from typing import Any, Dict

from google.protobuf import descriptor_pb2, duration_pb2, timestamp_pb2

PROTO_ROOT = pathlib.Path(__file__).resolve().parent / "data" / "protos"
SHOP_PROTO = "shop/v1/shop.proto"
ORDER = "shop.v1.Order"


@functools.lru_cache(maxsize=None)
def shop_descriptor_set() -> bytes:
    """The FileDescriptorSet of shop.proto and its imports, as protoc writes it."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        out = pathlib.Path(scratch) / "shop.desc"
        status = protoc.main([
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            str(PROTO_ROOT / SHOP_PROTO),
        ])
        if status != 0:
            raise RuntimeError(f"protoc failed with exit status {status}")
        data = out.read_bytes()
    descriptor_pb2.FileDescriptorSet.FromString(data)  # fail here, not in a test, if it is not one
    return data


def write_shop_descriptor_set(directory: pathlib.Path) -> pathlib.Path:
    """Writes the descriptor set to ``directory/shop.desc`` and returns its path."""
    path = directory / "shop.desc"
    path.write_bytes(shop_descriptor_set())
    return path


def order_class():
    """The ``shop.v1.Order`` message class."""
    from raccoon_beam.serializers.protobuf_descriptors import load_message_class

    return load_message_class(ORDER, shop_descriptor_set())


def parse_dict_form(order: Dict[str, Any]) -> Dict[str, Any]:
    """An Order's plain data as ``json_format.ParseDict`` takes it: JSON strings for times, base64 bytes, str map keys."""
    out = dict(order)
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(order["created_at"])
    out["created_at"] = stamp.ToJsonString()
    duration = duration_pb2.Duration()
    duration.FromTimedelta(order["time_on_page"])
    out["time_on_page"] = duration.ToJsonString()
    if order.get("token") is not None:
        out["token"] = base64.b64encode(order["token"]).decode()
    out["slots"] = {str(key): value for key, value in order["slots"].items()}
    return {key: value for key, value in out.items() if value is not None}
