"""Readable forms of captured payloads, for the console.

A decoder spec names how one event type's (or topic's) bytes are shown:

- ``"json"``: pretty-printed JSON (hex when the bytes are not JSON);
- ``"proto:<full message name>"``: the message from a FileDescriptorSet
  (``protoc --include_imports --descriptor_set_out=...``), shown as JSON;
- ``"avro:<schema>"``: fastavro schemaless, with the schema as a file path or
  inline JSON (what ``WriteToRaccoon(serializer="avro")`` writes);
- ``"hex"``: the bytes in hex.

Types without a spec are shown as JSON when they parse as JSON, else as hex.
A payload that its decoder cannot read is shown as hex with the error, never
dropped. Only the few events the console displays are ever decoded.
"""

from __future__ import annotations

import io
import json
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional

import orjson

__all__ = ["DecodedPayload", "PayloadDecoders", "DEFAULT_MAX_HEX_BYTES"]

# Enough to recognise a payload on screen; the rest is elided with its length.
DEFAULT_MAX_HEX_BYTES = 256


class DecodedPayload(NamedTuple):
    """One payload as the console shows it."""

    format: str  # "json", "protobuf", "avro" or "hex"
    text: str
    error: str = ""  # why the configured decoder failed (then format is "hex")


def _hex(payload: bytes) -> str:
    shown = payload[:DEFAULT_MAX_HEX_BYTES].hex(" ")
    if len(payload) > DEFAULT_MAX_HEX_BYTES:
        shown += f" ... ({len(payload)} bytes)"
    return shown


def _pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode("utf-8")


def _json(payload: bytes) -> DecodedPayload:
    return DecodedPayload("json", _pretty(orjson.loads(payload)))


class PayloadDecoders:
    """Decodes payloads by event type or topic.

    Args:
      decoders: spec per event type or topic (see the module docstring).
      descriptor_set: path of a FileDescriptorSet, needed by ``proto:`` specs.

    Raises:
      ValueError: a spec is malformed, names an unknown message, or its schema does not load.
    """

    def __init__(self, decoders: Mapping[str, str], descriptor_set: Optional[str] = None) -> None:
        self._by_key: Dict[str, Callable[[bytes], DecodedPayload]] = {}
        self._pool: Optional[Any] = None  # the descriptor pool, loaded by the first proto: spec
        for key, spec in decoders.items():
            self._by_key[key] = self._build(spec, descriptor_set)

    def _build(self, spec: str, descriptor_set: Optional[str]) -> Callable[[bytes], DecodedPayload]:
        kind, _, argument = spec.partition(":")
        if kind == "json" and not argument:
            return _json
        if kind == "hex" and not argument:
            return lambda payload: DecodedPayload("hex", _hex(payload))
        if kind == "proto" and argument:
            return self._proto(argument, descriptor_set)
        if kind == "avro" and argument:
            return _avro(argument)
        raise ValueError(f"decoder {spec!r}: expected json, hex, proto:<message name> or avro:<schema>")

    def _proto(self, message_name: str, descriptor_set: Optional[str]) -> Callable[[bytes], DecodedPayload]:
        from google.protobuf import (  # type: ignore[import-untyped, unused-ignore]
            descriptor_pb2,
            descriptor_pool,
            json_format,
            message_factory,
        )

        if descriptor_set is None:
            raise ValueError(f"decoder proto:{message_name} needs a descriptor set (--descriptor-set)")
        if self._pool is None:
            try:
                with open(descriptor_set, "rb") as file:
                    files = descriptor_pb2.FileDescriptorSet.FromString(file.read())
                pool = descriptor_pool.DescriptorPool()
                for file_proto in files.file:
                    pool.Add(file_proto)
            except Exception as exc:  # OSError, protobuf's DecodeError, a conflicting file: all a bad input
                raise ValueError(f"descriptor set {descriptor_set}: cannot load it: {exc}") from exc
            self._pool = pool
        try:
            descriptor = self._pool.FindMessageTypeByName(message_name)
        except KeyError:
            raise ValueError(f"decoder proto:{message_name}: no such message in {descriptor_set}") from None
        message_class = message_factory.GetMessageClass(descriptor)

        def decode(payload: bytes) -> DecodedPayload:
            message = message_class.FromString(payload)
            return DecodedPayload("protobuf", _pretty(json_format.MessageToDict(message)))

        return decode

    def decode(self, event_type: str, topic: str, payload: bytes) -> DecodedPayload:
        """The readable form of ``payload``: by its type's spec, else its topic's, else JSON or hex."""
        decoder = self._by_key.get(event_type) or self._by_key.get(topic)
        if decoder is None:
            try:
                return _json(payload)
            except orjson.JSONDecodeError:
                return DecodedPayload("hex", _hex(payload))
        try:
            return decoder(payload)
        except Exception as exc:  # any decoder failure: show the bytes and why
            return DecodedPayload("hex", _hex(payload), f"{type(exc).__name__}: {exc}")


def _avro(schema: str) -> Callable[[bytes], DecodedPayload]:
    import fastavro

    try:
        if schema.lstrip().startswith(("{", "[", '"')):
            parsed_json = json.loads(schema)
        else:
            with open(schema, encoding="utf-8") as file:
                parsed_json = json.load(file)
        parsed = fastavro.parse_schema(parsed_json)
    # fastavro reports some malformed schemas ({"a": 1}) as KeyError or TypeError.
    except (OSError, ValueError, KeyError, TypeError, fastavro.schema.SchemaParseException) as exc:
        raise ValueError(f"decoder avro: cannot load the schema: {exc}") from exc

    def decode(payload: bytes) -> DecodedPayload:
        buffer = io.BytesIO(payload)
        record = fastavro.schemaless_reader(buffer, parsed)
        if buffer.tell() != len(payload):
            raise ValueError(f"{len(payload) - buffer.tell()} bytes left after the record")
        return DecodedPayload("avro", _pretty(record))

    return decode
