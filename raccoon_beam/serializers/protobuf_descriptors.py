"""Protobuf schemas given at run time: message classes from a FileDescriptorSet, and back.

``serializer="protobuf"`` with ``message_type`` given by name loads the
message from a descriptor set (``protoc --descriptor_set_out
--include_imports``); a class made that way is shipped to the workers as its
descriptor set, since they cannot import it.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Any, Optional, Tuple, Type, Union

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.descriptor import Descriptor  # type: ignore[import-untyped, unused-ignore]
from google.protobuf.message import Message  # type: ignore[import-untyped, unused-ignore]

__all__ = [
    "MessageTypeSpec",
    "DescriptorSetSpec",
    "message_class_of",
    "load_message_class",
    "descriptor_set_of",
    "picklable_message_type",
]

MessageTypeSpec = Union[str, Type[Message]]
"""A generated message class, or a message's full name (with a descriptor set)."""
DescriptorSetSpec = Union[str, "os.PathLike[str]", bytes]
"""A FileDescriptorSet: the path of its file, or its bytes."""

_CACHE_SIZE = 1024  # message types per process; a pipeline has a handful


def message_class_of(message_type: MessageTypeSpec, descriptor_set: Optional[DescriptorSetSpec]) -> Type[Message]:
    """The message class a ``message_type`` (and ``descriptor_set``) names.

    Raises:
      ValueError: the class cannot be loaded, or ``descriptor_set`` is given with a class.
    """
    if isinstance(message_type, type) and issubclass(message_type, Message):
        if descriptor_set is not None:
            raise ValueError("descriptor_set is only used with message_type given as a full name")
        return message_type
    if not isinstance(message_type, str) or not message_type:
        raise ValueError(
            "message_type must be a generated protobuf message class or a full message name, "
            f"got {message_type!r}"
        )
    if descriptor_set is None:
        raise ValueError(
            f"message_type={message_type!r} needs descriptor_set= (a FileDescriptorSet file, as "
            "protoc --descriptor_set_out --include_imports writes it)"
        )
    if isinstance(descriptor_set, (bytes, bytearray, memoryview)):
        data = bytes(descriptor_set)
    else:
        try:
            with open(descriptor_set, "rb") as file:
                data = file.read()
        except OSError as exc:
            raise ValueError(f"descriptor_set {os.fspath(descriptor_set)!r} cannot be read: {exc}") from exc
    return load_message_class(message_type, data)


def picklable_message_type(
    message_type: Optional[MessageTypeSpec], descriptor_set: Optional[DescriptorSetSpec]
) -> Tuple[Optional[MessageTypeSpec], Optional[DescriptorSetSpec]]:
    """``(message_type, descriptor_set)`` in a form that pickles: a class no module exports becomes its name and schema.

    A generated class pickles by reference (the worker imports its module);
    a class made from a descriptor set at run time (``message_factory``)
    does not, so it is replaced by its full name and the serialized
    descriptor set of its file, which :func:`message_class_of` turns back into
    the same message type.
    """
    if not (isinstance(message_type, type) and issubclass(message_type, Message)):
        return message_type, descriptor_set
    module = sys.modules.get(message_type.__module__)
    if getattr(module, message_type.__qualname__, None) is message_type:
        return message_type, descriptor_set
    return message_type.DESCRIPTOR.full_name, descriptor_set_of(message_type.DESCRIPTOR)


def load_message_class(full_name: str, descriptor_set: bytes) -> Type[Message]:
    """The message class named ``full_name`` in a serialized FileDescriptorSet.

    The files go into a descriptor pool of their own, so a schema loaded here
    never collides with generated code of the same file names.

    Args:
      full_name: the message's full name, e.g. ``"shop.v1.ClickEvent"``.
      descriptor_set: the bytes of a ``FileDescriptorSet``, as ``protoc
        --descriptor_set_out --include_imports`` writes it. Well-known types
        it does not include are taken from the default pool.

    Returns:
      The message class.

    Raises:
      ValueError: the bytes are not a descriptor set, a file does not build,
        or no message has that name.
    """
    return _load_message_class(full_name, bytes(descriptor_set))


def descriptor_set_of(descriptor: Descriptor) -> bytes:
    """The serialized FileDescriptorSet of a message's file and everything it imports.

    Args:
      descriptor: the message's descriptor.

    Returns:
      Bytes that :func:`load_message_class` takes back, dependencies first.
    """
    files = descriptor_pb2.FileDescriptorSet()
    seen: set = set()

    def add(file: Any) -> None:
        if file.name in seen:
            return
        seen.add(file.name)
        for dependency in file.dependencies:
            add(dependency)
        file.CopyToProto(files.file.add())

    add(descriptor.file)
    return files.SerializeToString()


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _load_message_class(full_name: str, descriptor_set: bytes) -> Type[Message]:
    files = descriptor_pb2.FileDescriptorSet()
    try:
        files.ParseFromString(descriptor_set)
    except Exception as exc:
        raise ValueError(f"descriptor_set is not a serialized FileDescriptorSet: {exc}") from exc
    pool = descriptor_pool.DescriptorPool()
    given = {proto.name: proto for proto in files.file}
    added: set = set()

    def add(proto: descriptor_pb2.FileDescriptorProto) -> None:
        if proto.name in added:
            return
        added.add(proto.name)
        for dependency in proto.dependency:
            if dependency in given:
                add(given[dependency])
            else:  # a well-known type left out of the set: copy it from the default pool
                try:
                    found = descriptor_pool.Default().FindFileByName(dependency)
                except KeyError:
                    raise ValueError(
                        f"descriptor_set: {proto.name} imports {dependency}, which the set does not "
                        "contain (write it with protoc --include_imports)"
                    ) from None
                copy = descriptor_pb2.FileDescriptorProto()
                found.CopyToProto(copy)
                add(copy)
        try:
            pool.Add(proto)
        except Exception as exc:
            raise ValueError(f"descriptor_set: {proto.name} does not build: {exc}") from exc

    for proto in files.file:
        add(proto)
    try:
        descriptor = pool.FindMessageTypeByName(full_name)
    except KeyError:
        names = sorted(
            f"{proto.package}.{message.name}" if proto.package else message.name
            for proto in files.file
            if proto.package != "google.protobuf"  # the imported well-known types
            for message in proto.message_type
        )
        raise ValueError(
            f"message_type {full_name!r} is not in the descriptor set; it has {', '.join(names) or 'no messages'}"
        ) from None
    return message_factory.GetMessageClass(descriptor)
