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
dropped. Only the few events the console displays are ever decoded, and
whatever a payload holds, :meth:`PayloadDecoders.decode` returns: a payload
over :data:`DEFAULT_MAX_DECODED_BYTES` is shown as the hex of its start, a
text longer than :data:`DEFAULT_MAX_TEXT_CHARS` is cut with a note, and JSON
nested too deep to pretty-print is shown as sent.
"""

from __future__ import annotations

import io
import json
from typing import Any, Callable, Dict, Mapping, NamedTuple, Optional

import orjson

__all__ = ["DecodedPayload", "PayloadDecoders", "DEFAULT_MAX_HEX_BYTES", "DEFAULT_MAX_DECODED_BYTES",
           "DEFAULT_MAX_TEXT_CHARS"]

# Enough to recognise a payload on screen; the rest is elided with its length.
DEFAULT_MAX_HEX_BYTES = 256
# Larger payloads are not decoded: a few MB of JSON, pretty-printed and sent
# to every open page four times a second, would make the console the load.
DEFAULT_MAX_DECODED_BYTES = 256 * 1024
# A screenful or two of pretty-printed text per event; the rest is cut, with a note.
DEFAULT_MAX_TEXT_CHARS = 8 * 1024


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
    value = orjson.loads(payload)
    try:
        return DecodedPayload("json", _pretty(value))
    except orjson.JSONEncodeError as exc:  # nested deeper than orjson writes (254 levels)
        return DecodedPayload("json", payload.decode("utf-8", "replace"), f"shown as sent: {exc}")


def _bounded(decoded: DecodedPayload) -> DecodedPayload:
    """``decoded`` with its text cut at DEFAULT_MAX_TEXT_CHARS, saying so."""
    text = decoded.text
    if len(text) <= DEFAULT_MAX_TEXT_CHARS:
        return decoded
    note = f"cut: the first {DEFAULT_MAX_TEXT_CHARS:,} of {len(text):,} characters"
    return decoded._replace(
        text=text[:DEFAULT_MAX_TEXT_CHARS] + f"\n... ({note})",
        error=f"{decoded.error}; {note}" if decoded.error else note,
    )


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
        """The readable form of ``payload``: by its type's spec, else its topic's, else JSON or hex.

        Never raises, whatever the payload (see the module docstring).
        """
        if len(payload) > DEFAULT_MAX_DECODED_BYTES:
            return DecodedPayload(
                "hex", _hex(payload), f"{len(payload):,} bytes: over the {DEFAULT_MAX_DECODED_BYTES:,} the console decodes"
            )
        decoder = self._by_key.get(event_type) or self._by_key.get(topic)
        try:
            if decoder is None:
                try:
                    return _bounded(_json(payload))
                except orjson.JSONDecodeError:
                    return DecodedPayload("hex", _hex(payload))
            return _bounded(decoder(payload))
        except Exception as exc:  # any decoder failure: show the bytes and why
            return DecodedPayload("hex", _hex(payload), f"{type(exc).__name__}: {exc}"[:DEFAULT_MAX_HEX_BYTES])


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
