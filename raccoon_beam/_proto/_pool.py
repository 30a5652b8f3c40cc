"""The package's own descriptor pool, holding the Raccoon schema and its imports.

The generated ``raccoon_pb2`` adds ``raystack/raccoon/v1beta1/raccoon.proto``
here instead of to protobuf's default pool (``proto/generate.py`` makes that
edit), so the package imports and works next to ``raccoon_client`` or any
other code that registers a file of the same name, whatever its content and
whichever is imported first. The messages and their wire bytes are those of
the same schema in any pool.
"""

from __future__ import annotations

from google.protobuf import descriptor_pool, timestamp_pb2  # type: ignore[import-untyped]

__all__ = ["POOL"]

POOL = descriptor_pool.DescriptorPool()
# raccoon.proto imports google/protobuf/timestamp.proto: a pool needs every
# file a file imports. Its bytes are the runtime's own, so the Timestamp here is
# the same schema as the default pool's.
POOL.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
