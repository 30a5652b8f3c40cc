"""The test schema tests/data/protos/shop/v1/shop.proto, compiled with grpcio-tools' protoc."""

from __future__ import annotations

import functools
import pathlib
import tempfile

from google.protobuf import descriptor_pb2

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
    from raccoon_beam.protobuf_data import load_message_class

    return load_message_class(ORDER, shop_descriptor_set())
