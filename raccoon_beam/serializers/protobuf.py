"""``serializer="protobuf"``: a message's bytes, or plain data converted to a ``message_type``."""

from __future__ import annotations

from typing import Any, Hashable, List, Optional, Sequence, Type, cast

from google.protobuf.message import EncodeError, Message  # type: ignore[import-untyped, unused-ignore]

from raccoon_beam.errors import SerializationError
from raccoon_beam.serializers.base import ELEMENT_IS_NONE, BaseSerializer
from raccoon_beam.serializers.plain import type_name
from raccoon_beam.serializers.protobuf_data import converter_for
from raccoon_beam.serializers.protobuf_descriptors import message_class_of, picklable_message_type

__all__ = ["ProtobufSerializer", "ProtobufDataSerializer"]


class ProtobufSerializer(BaseSerializer):
    """``Message.SerializeToString()`` of a protobuf message."""

    __slots__ = ()
    description = "protobuf"

    def __call__(self, element: Any) -> bytes:
        if isinstance(element, Message):
            try:
                return element.SerializeToString()
            except EncodeError as exc:  # e.g. a proto2 required field is unset
                raise SerializationError(f"{type(element).DESCRIPTOR.full_name}: {exc}") from exc
        if element is None:
            raise SerializationError(ELEMENT_IS_NONE)
        raise SerializationError(
            f"expected a protobuf Message, got {type_name(element)}; to convert plain data, "
            "pass message_type= (a generated message class, or a full name with descriptor_set=)"
        )

    def serialize_many(self, elements: Sequence[Any]) -> Optional[List[bytes]]:
        """What calling this serializer on each element would return, or None if one would raise."""
        if not all(issubclass(kind, Message) for kind in set(map(type, elements))):
            return None
        try:
            return [element.SerializeToString() for element in elements]
        except EncodeError:
            return None


class ProtobufDataSerializer(BaseSerializer):
    """Plain data (or messages) of one message type -> its serialized bytes.

    The converter is built once per message type and process
    (:func:`raccoon_beam.serializers.protobuf_data.converter_for`).
    """

    __slots__ = ("_convert", "_ignore_unknown", "description")

    def __init__(self, message_class: Type[Message], ignore_unknown_fields: bool) -> None:
        self._convert = converter_for(cast(Hashable, message_class), ignore_unknown_fields)
        self._ignore_unknown = ignore_unknown_fields
        self.description = f"protobuf {message_class.DESCRIPTOR.full_name}"

    def __reduce__(self):
        # Generated code pickles by reference; a class made from a descriptor set as its name and schema.
        source = picklable_message_type(self._convert.message_class, None)
        return (_make_protobuf_data_serializer, (source, self._ignore_unknown))

    def __call__(self, element: Any) -> bytes:
        return self._convert(element)


def _make_protobuf_data_serializer(source: Any, ignore_unknown_fields: bool) -> ProtobufDataSerializer:
    return ProtobufDataSerializer(message_class_of(*source), ignore_unknown_fields)
