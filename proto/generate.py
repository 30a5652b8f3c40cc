"""Regenerates ``raccoon_beam/_proto`` from ``proto/`` with grpcio-tools.

Usage (from the repository root, with the ``test`` extra installed)::

    python proto/generate.py

protoc writes its output under the proto package path and makes the gRPC
stub import the messages as ``raystack.raccoon.v1beta1``; the files are laid
flat in ``raccoon_beam/_proto`` and that import is made package-relative.
The descriptor keeps its upstream file name (``raystack/raccoon/v1beta1/
raccoon.proto``) but is added to the package's private descriptor pool
(``raccoon_beam/_proto/_pool.py``) instead of protobuf's default pool, so it
coexists with other copies of the same file (raccoon_client, stubs generated
elsewhere) in one process, whichever is imported first.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile

PROTO_ROOT = pathlib.Path(__file__).resolve().parent
PROTO_FILE = "raystack/raccoon/v1beta1/raccoon.proto"
OUTPUT_DIR = PROTO_ROOT.parent / "raccoon_beam" / "_proto"
GENERATED_FILES = ("raccoon_pb2.py", "raccoon_pb2.pyi", "raccoon_pb2_grpc.py")
_UPSTREAM_IMPORT = "from raystack.raccoon.v1beta1 import raccoon_pb2"
_PACKAGE_IMPORT = "from raccoon_beam._proto import raccoon_pb2"
_DEFAULT_POOL = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
_PRIVATE_POOL = "DESCRIPTOR = _private_pool.POOL.AddSerializedFile("
_POOL_IMPORT_AFTER = "from google.protobuf.internal import builder as _builder\n"
_POOL_IMPORT = "from raccoon_beam._proto import _pool as _private_pool\n"


def _use_private_pool(text: str) -> str:
    """Makes generated message code add its file to the package's own pool."""
    if _DEFAULT_POOL not in text:
        return text  # the gRPC stub and the .pyi have no descriptor
    if _POOL_IMPORT_AFTER not in text:
        raise RuntimeError("protoc output changed: cannot find where to import the private pool")
    text = text.replace(_DEFAULT_POOL, _PRIVATE_POOL)
    return text.replace(_POOL_IMPORT_AFTER, _POOL_IMPORT_AFTER + _POOL_IMPORT, 1)


def generate(output_dir: pathlib.Path) -> list[pathlib.Path]:
    """Writes the generated modules into ``output_dir`` and returns their paths."""
    import grpc_tools
    from grpc_tools import protoc

    well_known = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        status = protoc.main([
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={scratch}",
            f"--pyi_out={scratch}",
            f"--grpc_python_out={scratch}",
            str(PROTO_ROOT / PROTO_FILE),
        ])
        if status != 0:
            raise RuntimeError(f"protoc failed with exit status {status}")
        generated_dir = pathlib.Path(scratch) / pathlib.Path(PROTO_FILE).parent
        output_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for name in GENERATED_FILES:
            text = (generated_dir / name).read_text()
            target = output_dir / name
            target.write_text(_use_private_pool(text.replace(_UPSTREAM_IMPORT, _PACKAGE_IMPORT)))
            written.append(target)
    return written


if __name__ == "__main__":
    for path in generate(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT_DIR):
        print(path)
