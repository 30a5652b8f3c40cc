"""Decoding requests and responses, and encoding responses, as Raccoon's Go code does.

* The request decoder (used by the emulator) reproduces Go ``encoding/json``'s
  acceptance rules on Raccoon's generated structs exactly: case-insensitive
  keys (with Go's case folding), the last duplicate wins, ``null`` leaves a
  field alone, byte arrays, trailing data rejected, integer ranges, lone
  surrogates replaced by U+FFFD. The usual request (exact keys, plain
  values, nothing repeated or escaped) is decoded by orjson first, about 4 x
  faster; anything else goes by the rules.
* The response encoder writes Go's layout byte for byte.
* The response decoder (used by the client) accepts any reasonable JSON a
  server may send.
"""

from __future__ import annotations

import binascii
import collections
import json
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, TypeVar, Union

import orjson
from google.protobuf.message import DecodeError

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import WireFormatError
from raccoon_beam.wire.types import Wire

__all__ = ["decode_request", "encode_response", "decode_response"]

Body = Union[bytes, bytearray, memoryview, str]
_Message = TypeVar("_Message", raccoon_pb2.SendEventRequest, raccoon_pb2.SendEventResponse)

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def decode_request(body: Body, wire: Wire) -> raccoon_pb2.SendEventRequest:
    """Decodes a SendEventRequest the way Raccoon's server does.

    For the JSON wire this reproduces Go's ``encoding/json`` on the generated
    struct: keys match case-insensitively, unknown keys are ignored, the last
    of duplicate keys wins, ``null`` leaves a field unset, ``event_bytes`` is
    padded standard base64 or an array of byte values, and anything Go
    rejects (wrong types, out-of-range integers, trailing data, ...) raises.

    Raises:
      WireFormatError: the body is not a request Raccoon would accept.
    """
    if wire is Wire.PROTOBUF:
        return _parse_protobuf(raccoon_pb2.SendEventRequest(), body)
    plain = _decode_plain_request(body)
    if plain is not None:
        return plain
    document = _parse_go_json(body)
    request = raccoon_pb2.SendEventRequest()
    if document is None:  # Go: unmarshalling null into a struct is a no-op.
        return request
    if not isinstance(document, _Object):
        raise WireFormatError(
            f"json: cannot unmarshal {_json_kind(document)} into Go value of type SendEventRequest"
        )
    for name, value in _struct_fields(document, ("req_guid", "sent_time", "events")):
        if name == "req_guid":
            _set_string(request, "req_guid", value, "SendEventRequest.req_guid")
        elif name == "sent_time":
            _decode_timestamp(request, value)
        else:
            _decode_events(request, value)
    return request


_REQUEST_KEYS = frozenset(("req_guid", "sent_time", "events"))
_TIMESTAMP_KEYS = frozenset(("seconds", "nanos"))
_EVENT_KEYS = frozenset(("event_bytes", "type"))


def _decode_plain_request(body: Body) -> Optional[raccoon_pb2.SendEventRequest]:
    """The usual request, decoded with orjson; None for anything where Go's rules need the slow path.

    Usual means: no backslash anywhere (so no escaped key), every key exactly
    a field's name and never repeated (Go reads every copy: it may reject an
    earlier one, and it merges a repeated ``sent_time``, where orjson keeps
    the last), values of the field's own JSON type and range, ``event_bytes``
    as the canonical padded standard base64 of its bytes. On such a body Go
    and orjson agree; anything else, valid or not, goes through
    :func:`_parse_go_json` and gets Go's answer or error.
    """
    if isinstance(body, str):
        body = body.encode("utf-8", "surrogatepass")
    raw = bytes(body)
    if b"\\" in raw:
        return None
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(document) is not dict or not _REQUEST_KEYS.issuperset(document):
        return None
    guid = document.get("req_guid", "")
    events = document.get("events", [])
    if type(guid) is not str or type(events) is not list:
        return None
    request = raccoon_pb2.SendEventRequest(req_guid=guid)
    if "sent_time" in document:
        sent_time = document["sent_time"]
        if type(sent_time) is not dict or not _TIMESTAMP_KEYS.issuperset(sent_time):
            return None
        seconds, nanos = sent_time.get("seconds", 0), sent_time.get("nanos", 0)
        if type(seconds) is not int or type(nanos) is not int:
            return None
        if not (_INT64[0] <= seconds <= _INT64[1] and _INT32[0] <= nanos <= _INT32[1]):
            return None
        request.sent_time.SetInParent()  # Go allocates the struct even for {}
        request.sent_time.seconds, request.sent_time.nanos = seconds, nanos
    if not _keys_appear_once(raw, document, events):
        return None
    add = request.events.add
    for event in events:
        if type(event) is not dict or not _EVENT_KEYS.issuperset(event):
            return None
        event_type, text = event.get("type", ""), event.get("event_bytes", "")
        if type(event_type) is not str or type(text) is not str:
            return None
        try:
            payload = binascii.a2b_base64(text)  # lenient: checked by encoding it again
            canonical = binascii.b2a_base64(payload, newline=False) == text.encode("ascii")
        except (binascii.Error, UnicodeEncodeError):
            return None
        if not canonical:
            return None
        add(event_bytes=payload, type=event_type)
    return request


def _keys_appear_once(raw: bytes, document: Dict[str, Any], events: List[Any]) -> bool:
    """Whether no key of the request is repeated: Go reads each copy (and may reject an earlier one).

    Without backslashes in the body a key is written as itself, so each
    field's name appears exactly as often as objects hold it, unless repeated
    (or a string value spells a field's name: then the slow path decides too).
    """
    expected = collections.Counter(document.keys())
    sent_time = document.get("sent_time")
    if isinstance(sent_time, dict):
        expected.update(sent_time.keys())
    for event in events:
        if isinstance(event, dict):
            expected.update(event.keys())
    names = _REQUEST_KEYS | _TIMESTAMP_KEYS | _EVENT_KEYS
    return all(raw.count(b'"%s"' % name.encode()) == expected[name] for name in names)


def _decode_timestamp(request: raccoon_pb2.SendEventRequest, value: Any) -> None:
    if value is None:  # Go sets the pointer field to nil.
        request.ClearField("sent_time")
        return
    if not isinstance(value, _Object):
        raise WireFormatError(
            f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
            "SendEventRequest.sent_time of type timestamppb.Timestamp"
        )
    timestamp = request.sent_time  # Go allocates the struct even for {}.
    timestamp.SetInParent()
    for name, field_value in _struct_fields(value, ("seconds", "nanos")):
        if field_value is None:
            continue
        bounds = _INT64 if name == "seconds" else _INT32
        setattr(timestamp, name, _go_int(field_value, bounds, f"Timestamp.sent_time.{name}"))


def _decode_events(request: raccoon_pb2.SendEventRequest, value: Any) -> None:
    if value is None:
        del request.events[:]
        return
    if not isinstance(value, list):
        raise WireFormatError(
            f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
            "SendEventRequest.events of type []*raccoonv1.Event"
        )
    del request.events[:]  # Go replaces a slice that appears twice.
    for item in value:
        event = request.events.add()
        if item is None:
            continue
        if not isinstance(item, _Object):
            raise WireFormatError(
                f"json: cannot unmarshal {_json_kind(item)} into Go struct field "
                "SendEventRequest.events of type raccoonv1.Event"
            )
        for name, field_value in _struct_fields(item, ("event_bytes", "type")):
            if name == "type":
                _set_string(event, "type", field_value, "Event.events.type")
            else:
                event.event_bytes = _go_bytes(field_value)


# ---------------------------------------------------------------- responses


def encode_response(response: raccoon_pb2.SendEventResponse, wire: Wire) -> bytes:
    """Encodes a SendEventResponse as Raccoon does (``reason``/``data`` omitted when empty)."""
    if wire is Wire.PROTOBUF:
        return response.SerializeToString(deterministic=True)
    document: Dict[str, Any] = {
        "status": response.status,
        "code": response.code,
        "sent_time": response.sent_time,
    }
    if response.reason:
        document["reason"] = response.reason
    if response.data:
        document["data"] = dict(sorted(response.data.items()))
    return json.dumps(document, separators=(",", ":")).encode("ascii")


def decode_response(body: Body, wire: Wire) -> raccoon_pb2.SendEventResponse:
    """Decodes a SendEventResponse.

    The JSON decoder accepts any layout of Raccoon's keys (case-insensitive),
    enums as integers or names, and ``sent_time`` as an integer.

    Raises:
      WireFormatError: the body is not a SendEventResponse.
    """
    if wire is Wire.PROTOBUF:
        return _parse_protobuf(raccoon_pb2.SendEventResponse(), body)
    document = _parse_go_json(body)
    if not isinstance(document, _Object):
        raise WireFormatError(f"not a JSON SendEventResponse: found {_json_kind(document)}")
    response = raccoon_pb2.SendEventResponse()
    fields = ("status", "code", "sent_time", "reason", "data")
    try:
        for name, value in _struct_fields(document, fields):
            if value is None:
                continue
            if name == "status":
                response.status = _enum_value(raccoon_pb2.Status, value)  # type: ignore[assignment]
            elif name == "code":
                response.code = _enum_value(raccoon_pb2.Code, value)  # type: ignore[assignment]
            elif name == "sent_time":
                response.sent_time = _go_int(value, _INT64, "SendEventResponse.sent_time")
            elif name == "reason":
                _set_string(response, "reason", value, "SendEventResponse.reason")
            else:
                if not isinstance(value, _Object):
                    raise WireFormatError("SendEventResponse.data is not an object")
                for key, item in value.pairs:
                    if not isinstance(item, str):
                        raise WireFormatError(f"SendEventResponse.data[{key!r}] is not a string")
                    response.data[key] = item
    except (TypeError, ValueError) as exc:
        if isinstance(exc, WireFormatError):
            raise
        raise WireFormatError(f"not a JSON SendEventResponse: {exc}") from exc
    return response


def _enum_value(enum_type: Any, value: Any) -> int:
    if isinstance(value, str):
        try:
            return int(enum_type.Value(value))
        except ValueError as exc:
            raise WireFormatError(f"unknown enum name {value!r}") from exc
    return _go_int(value, _INT32, "enum")


def _parse_protobuf(message: _Message, body: Body) -> _Message:
    try:
        message.ParseFromString(bytes(_as_bytes(body)))
    except (DecodeError, ValueError) as exc:
        raise WireFormatError(f"not a protobuf {type(message).__name__}: {exc}") from exc
    return message


# ------------------------------------------------- Go encoding/json helpers


class _Object:
    """A JSON object as its ordered (key, value) pairs, duplicates kept."""

    __slots__ = ("pairs",)

    def __init__(self, pairs: List[Tuple[str, Any]]) -> None:
        self.pairs = pairs


def _reject_constant(name: str) -> Any:
    raise WireFormatError(f"invalid character {name[0]!r} looking for beginning of value")


_GO_DECODER = json.JSONDecoder(object_pairs_hook=_Object, parse_constant=_reject_constant)


def _as_bytes(body: Body) -> Union[bytes, bytearray, memoryview]:
    return body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body


def _parse_go_json(body: Body) -> Any:
    """Parses one JSON value as Go's decoder would, keys kept in order."""
    if isinstance(body, str):
        text = body
    else:
        # Go replaces invalid UTF-8 inside strings with U+FFFD; outside
        # strings the replacement character is a syntax error either way.
        text = bytes(body).decode("utf-8", "replace")
    # Go's whitespace is exactly space, tab, CR and LF (as Python's json).
    try:
        value, end = _GO_DECODER.raw_decode(text, _skip_whitespace(text, 0))
    except json.JSONDecodeError as exc:
        if not text.strip(" \t\r\n"):
            raise WireFormatError("unexpected end of JSON input") from exc
        raise WireFormatError(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise WireFormatError("exceeded max depth") from exc
    end = _skip_whitespace(text, end)
    if end != len(text):
        raise WireFormatError(f"invalid character {text[end]!r} after top-level value")
    return value


def _skip_whitespace(text: str, index: int) -> int:
    length = len(text)
    while index < length and text[index] in " \t\r\n":
        index += 1
    return index


def _fold(key: str) -> str:
    # Go matches keys with simple Unicode case folding: ASCII case plus the
    # Kelvin sign (folds to k by lower()) and the long s (folds to s).
    return key.lower().replace("\u017f", "s")


def _struct_fields(document: _Object, names: Sequence[str]) -> List[Tuple[str, Any]]:
    """The (field name, value) pairs of ``document`` in order; unknown keys dropped."""
    known = set(names)
    fields = []
    for key, value in document.pairs:
        folded = _fold(key)
        if folded in known:
            fields.append((folded, value))
    return fields


def _json_kind(value: Any) -> str:
    if isinstance(value, _Object):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if value is None:
        return "null"
    return "number"


def _clean_string(value: str) -> str:
    # JSON \u escapes may encode lone surrogates; Go decodes them as U+FFFD.
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _set_string(message: Any, name: str, value: Any, field_path: str) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise WireFormatError(
            f"json: cannot unmarshal {_json_kind(value)} into Go struct field {field_path} of type string"
        )
    setattr(message, name, _clean_string(value))


def _go_int(value: Any, bounds: Tuple[int, int], field_path: str) -> int:
    # Python parses 5.0 and 5e0 as floats; Go rejects both for integer fields.
    if isinstance(value, bool) or not isinstance(value, int):
        raise WireFormatError(
            f"json: cannot unmarshal {_json_kind(value)} {value!r} into Go struct field {field_path}"
        )
    low, high = bounds
    if not low <= value <= high:
        raise WireFormatError(
            f"json: cannot unmarshal number {value} into Go struct field {field_path}"
        )
    return value


# Padded standard base64, as Go's base64.StdEncoding reads it.
_STD_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def _go_bytes(value: Any) -> bytes:
    """Go's []byte from JSON: padded standard base64, an array of bytes, or null."""
    if value is None:
        return b""
    if isinstance(value, str):
        # Go's StdEncoding skips CR and LF; everything else must be base64.
        text = value.replace("\r", "").replace("\n", "")
        if not _STD_BASE64.fullmatch(text):
            raise WireFormatError("illegal base64 data at input byte 0")
        return binascii.a2b_base64(text)
    if isinstance(value, list):
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 255:
                raise WireFormatError(
                    f"json: cannot unmarshal {_json_kind(item)} into Go struct field "
                    "Event.events.event_bytes of type uint8"
                )
        return bytes(value)
    raise WireFormatError(
        f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
        "Event.events.event_bytes of type []uint8"
    )
