"""Wire encodings against the golden vectors from Raccoon's own Go code."""

from __future__ import annotations

import base64
import json
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raccoon_beam import wire
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.errors import WireFormatError
from raccoon_beam.wire import Wire, encode_request
from tests.vectors import decode_vectors, encode_vectors, request_fields, response_fields

REQUEST_VECTORS = encode_vectors("SendEventRequest")
RESPONSE_VECTORS = encode_vectors("SendEventResponse")
DECODE_VECTORS = decode_vectors()


def _ids(vectors):
    return [v["name"] for v in vectors]


def _events(fields):
    return [(e["type"], base64.b64decode(e["event_bytes_base64"])) for e in fields["events"]]


def _sent_time(fields):
    return fields["sent_time"]["seconds"] * 1_000_000_000 + fields["sent_time"]["nanos"]


def _encode_vector(vector, wire_type):
    fields = vector["fields"]
    return wire.encode_request(
        _events(fields), wire=wire_type, req_guid=fields["req_guid"], sent_time_ns=_sent_time(fields)
    )


# ------------------------------------------------------------- requests


@pytest.mark.parametrize("vector", REQUEST_VECTORS, ids=_ids(REQUEST_VECTORS))
@pytest.mark.parametrize("wire_type", list(Wire))
def test_our_request_encoding_decodes_to_the_vector_fields(vector, wire_type):
    encoded = _encode_vector(vector, wire_type)
    assert encoded.req_guid == vector["fields"]["req_guid"]
    assert encoded.event_count == len(vector["fields"]["events"])
    assert request_fields(wire.decode_request(encoded.body, wire_type)) == vector["fields"]


@pytest.mark.parametrize("vector", REQUEST_VECTORS, ids=_ids(REQUEST_VECTORS))
def test_our_protobuf_request_is_byte_identical_to_go(vector):
    # Not required (decode-equivalence is), but proto.Marshal and upb agree on
    # field order, so a difference would point at a wrong field number.
    encoded = _encode_vector(vector, Wire.PROTOBUF)
    assert encoded.body == base64.b64decode(vector["proto_wire_base64"])


@pytest.mark.parametrize("vector", REQUEST_VECTORS, ids=_ids(REQUEST_VECTORS))
def test_golden_request_bytes_decode_to_the_vector_fields(vector):
    from_json = wire.decode_request(vector["json_wire"].encode("utf-8"), Wire.JSON)
    from_proto = wire.decode_request(base64.b64decode(vector["proto_wire_base64"]), Wire.PROTOBUF)
    assert request_fields(from_json) == vector["fields"]
    assert request_fields(from_proto) == vector["fields"]


@pytest.mark.parametrize("vector", REQUEST_VECTORS, ids=_ids(REQUEST_VECTORS))
def test_json_request_uses_go_field_names_never_protobuf_json(vector):
    body = _encode_vector(vector, Wire.JSON).body.decode("ascii")
    document = json.loads(body)
    assert set(document) == {"req_guid", "sent_time", "events"}
    assert set(document["sent_time"]) == {"seconds", "nanos"}
    assert all(set(e) == {"event_bytes", "type"} for e in document["events"])
    for camel in ("reqGuid", "sentTime", "eventBytes"):
        assert camel not in body
    assert not isinstance(document["sent_time"], str)  # never RFC 3339


# ------------------------------------------------------------- responses


@pytest.mark.parametrize("vector", RESPONSE_VECTORS, ids=_ids(RESPONSE_VECTORS))
def test_golden_response_bytes_decode_to_the_vector_fields(vector):
    from_json = wire.decode_response(vector["json_wire"], Wire.JSON)
    from_proto = wire.decode_response(base64.b64decode(vector["proto_wire_base64"]), Wire.PROTOBUF)
    assert response_fields(from_json) == vector["fields"]
    assert response_fields(from_proto) == vector["fields"]


def _response(fields):
    response = raccoon_pb2.SendEventResponse(
        status=fields["status"], code=fields["code"], sent_time=fields["sent_time"], reason=fields["reason"]
    )
    response.data.update(fields["data"] or {})
    return response


@pytest.mark.parametrize("vector", RESPONSE_VECTORS, ids=_ids(RESPONSE_VECTORS))
def test_our_response_encoding_matches_go(vector):
    response = _response(vector["fields"])
    json_body = wire.encode_response(response, Wire.JSON)
    proto_body = wire.encode_response(response, Wire.PROTOBUF)
    # Go's layout is matched exactly (key order, omitted empty reason/data).
    assert json_body.decode("ascii") == vector["json_wire"]
    assert proto_body == base64.b64decode(vector["proto_wire_base64"])
    assert response_fields(wire.decode_response(json_body, Wire.JSON)) == vector["fields"]


def test_response_decoder_is_lenient_about_layout():
    body = ' {"CODE": 1, "Status": "STATUS_SUCCESS", "data": {"req_guid": "r\\u003c"}, "extra": [1]} '
    response = wire.decode_response(body, Wire.JSON)
    assert response.status == raccoon_pb2.STATUS_SUCCESS
    assert response.code == raccoon_pb2.CODE_OK
    assert response.data["req_guid"] == "r<"


@pytest.mark.parametrize(
    "body",
    [b"", b"<html>502 Bad Gateway</html>", b"[1,2]", b'{"status":1} x', b'{"data":{"a":1}}', b'{"code":"NOPE"}'],
)
def test_response_decoder_rejects_what_is_not_a_response(body):
    with pytest.raises(WireFormatError):
        wire.decode_response(body, Wire.JSON)


def test_truncated_protobuf_response_is_rejected():
    good = wire.encode_response(
        raccoon_pb2.SendEventResponse(status=1, code=1, reason="a reason long enough"), Wire.PROTOBUF
    )
    with pytest.raises(WireFormatError):
        wire.decode_response(good[:-3], Wire.PROTOBUF)


# ---------------------------------------------- Go's decoder, body by body


@pytest.mark.parametrize("vector", DECODE_VECTORS, ids=_ids(DECODE_VECTORS))
def test_json_request_decoder_accepts_and_rejects_as_go(vector):
    body = vector["json_body"].encode("utf-8")
    if vector["accepted"]:
        assert request_fields(wire.decode_request(body, Wire.JSON)) == vector["parsed"]
    else:
        with pytest.raises(WireFormatError):
            wire.decode_request(body, Wire.JSON)


@pytest.mark.parametrize(
    "body, accepted",
    [
        ("null", True),  # Go: unmarshalling null into a struct is a no-op
        ("[]", False),
        ('"x"', False),
        ('{"sent_time":{"seconds":5.0}}', False),
        ('{"sent_time":{"seconds":1e2}}', False),
        ('{"sent_time":{"seconds":9223372036854775808}}', False),
        ('{"sent_time":{"nanos":-2147483648}}', True),
        ('{"sent_time":NaN}', False),
        ('{"events":[{"event_bytes":[256]}]}', False),
        ('{"events":[{"event_bytes":"AQ\\nID"}]}', True),  # Go skips CR/LF in base64
        ('{"events":[{"event_bytes":"A==="}]}', False),
        ('{"events":[null]}', True),
        ('{"req_guid":true}', False),
        ('{"\u017fent_time":{"seconds":1}}', True),  # long s folds to s, as in Go
        ('\ufeff{}', False),  # a BOM is not whitespace to Go
    ],
)
def test_json_request_decoder_edge_cases(body, accepted):
    if accepted:
        wire.decode_request(body.encode("utf-8"), Wire.JSON)
    else:
        with pytest.raises(WireFormatError):
            wire.decode_request(body.encode("utf-8"), Wire.JSON)


def test_null_after_a_value_clears_sent_time_like_go():
    request = wire.decode_request(b'{"sent_time":{"seconds":1},"sent_time":null}', Wire.JSON)
    assert not request.HasField("sent_time")


def test_lone_surrogate_escape_becomes_replacement_character():
    request = wire.decode_request(b'{"req_guid":"a\\ud800b"}', Wire.JSON)
    assert request.req_guid == "a\ufffdb"


def test_garbage_protobuf_request_is_rejected():
    with pytest.raises(WireFormatError):
        wire.decode_request(b"\xff\xff\xff\xff", Wire.PROTOBUF)


# ------------------------------------------------------- encoder details


def test_encode_request_defaults_to_a_fresh_guid_and_now():
    first = wire.encode_request([("t", b"x")], wire=Wire.PROTOBUF)
    second = wire.encode_request([("t", b"x")], wire=Wire.PROTOBUF)
    assert first.req_guid != second.req_guid
    decoded = wire.decode_request(first.body, Wire.PROTOBUF)
    assert decoded.HasField("sent_time") and decoded.sent_time.seconds > 1_700_000_000


def test_content_types_are_exact():
    assert wire.wire_for_content_type("application/json") is Wire.JSON
    assert wire.wire_for_content_type("application/proto") is Wire.PROTOBUF
    for other in ("application/json; charset=utf-8", "application/x-protobuf", "", None):
        assert wire.wire_for_content_type(other) is None


event_lists = st.lists(
    st.tuples(st.text(max_size=20), st.binary(max_size=300)), max_size=30
)


@settings(max_examples=150, deadline=None)
@given(events=event_lists, guid=st.text(max_size=40))
def test_round_trip_and_exact_size_accounting(events, guid):
    for wire_type in Wire:
        encoded = wire.encode_request(events, wire=wire_type, req_guid=guid, sent_time_ns=1_700_000_000_500_000_000)
        decoded = wire.decode_request(encoded.body, wire_type)
        assert [(e.type, e.event_bytes) for e in decoded.events] == events
        assert decoded.req_guid == guid
        sized = sum(wire.encoded_event_size(t, len(b), wire_type) for t, b in events)
        empty = len(wire.encode_request([], wire=wire_type, req_guid=guid, sent_time_ns=1_700_000_000_500_000_000).body)
        if wire_type is Wire.PROTOBUF:
            assert len(encoded.body) == empty + sized
        else:
            assert len(encoded.body) <= empty + sized
        assert empty - len(guid.encode("utf-8")) * 6 <= wire.REQUEST_OVERHEAD_BYTES


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16_371, 16_372, 16_383, 16_384, 70_000])
@pytest.mark.parametrize("types", [["click"], ["click", "page_view"]])
def test_hand_written_protobuf_encoder_matches_protobuf_at_every_length_boundary(size, types):
    """Lengths under 16 KiB come from tables, longer ones are computed: both must be protobuf's bytes."""
    events = [(types[i % len(types)], bytes([i % 251]) * size) for i in range(3)]
    ours = encode_request(events, wire=Wire.PROTOBUF, req_guid="g", sent_time_ns=1_700_000_000_123_456_789)
    reference = raccoon_pb2.SendEventRequest(req_guid="g")
    reference.sent_time.seconds, reference.sent_time.nanos = 1_700_000_000, 123_456_789
    for event_type, payload in events:
        reference.events.add(event_bytes=payload, type=event_type)
    assert ours.body == reference.SerializeToString()


# ------------------------------------------------------------------ the decoder's fast path

def _slow_decode(body):
    """Go's rules alone, without the orjson fast path."""
    from raccoon_beam.wire import go_json

    original = go_json._decode_plain_request
    go_json._decode_plain_request = lambda body: None
    try:
        return go_json.decode_request(body, Wire.JSON)
    except WireFormatError as exc:
        return ("rejected", str(exc))
    finally:
        go_json._decode_plain_request = original


_KEYS = st.sampled_from(["req_guid", "sent_time", "events", "REQ_GUID", "Events", "extra", "sent_time"])
_EVENT_KEYS = st.sampled_from(["event_bytes", "type", "Type", "event_bytes"])
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=12)
)
_BASE64 = st.one_of(
    st.binary(max_size=30).map(lambda b: base64.b64encode(b).decode()),
    st.sampled_from(["QR==", "QQ", "Q Q==", "QQ==\n", "@@@@", "", "QUJD"]),
)
_EVENT = st.lists(
    st.tuples(_EVENT_KEYS, st.one_of(_BASE64, _SCALARS, st.lists(st.integers(0, 300), max_size=3))), max_size=3
)
_TIMESTAMP = st.one_of(
    st.lists(st.tuples(st.sampled_from(["seconds", "nanos", "Nanos"]), _SCALARS), max_size=3), _SCALARS
)


def _object(pairs):
    """A JSON object from pairs, duplicates kept (json.dumps of a dict cannot write them)."""
    return "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in pairs) + "}"


@st.composite
def _request_bodies(draw):
    pairs = []
    for key in draw(st.lists(_KEYS, max_size=5)):
        if key.lower() == "events":
            events = draw(st.lists(_EVENT, max_size=3))
            value = "[" + ",".join(_object([(k, json.dumps(v)) for k, v in event]) for event in events) + "]"
        elif key.lower() == "sent_time":
            stamp = draw(_TIMESTAMP)
            value = _object([(k, json.dumps(v)) for k, v in stamp]) if isinstance(stamp, list) else json.dumps(stamp)
        else:
            value = json.dumps(draw(_SCALARS), ensure_ascii=draw(st.booleans()))
        pairs.append((key, value))
    return _object(pairs).encode("utf-8", "surrogatepass")


def test_a_plain_request_takes_the_fast_path_and_equals_go_rules():
    from raccoon_beam.wire import go_json

    events = [("click", b'{"a":1}'), ("view", b""), ("click", bytes(range(40)))]
    body = wire.encode_request(events, wire=Wire.JSON, req_guid="g-1", sent_time_ns=1_700_000_000_123_456_789).body
    fast = go_json._decode_plain_request(body)
    assert fast is not None and fast == _slow_decode(body)
    assert [(e.type, e.event_bytes) for e in fast.events] == events
    # What Go merges or folds is left to Go's rules.
    for variant in (
        b'{"sent_time":{"seconds":1},"sent_time":{"nanos":2}}',
        b'{"Req_Guid":"x"}',
        b'{"req_guid":"\\u0041"}',
        b'{"events":[{"event_bytes":"QR=="}]}',
        b'{"events":[null]}',
    ):
        assert go_json._decode_plain_request(variant) is None, variant


@st.composite
def _plain_bodies(draw):
    """Requests as clients write them, with at most one thing a little off."""
    text = st.one_of(st.text(alphabet=string.ascii_letters + string.digits + "_-. ", max_size=8), st.text(max_size=4))
    events = draw(st.lists(st.tuples(text, st.binary(max_size=20)), max_size=4))
    body = wire.encode_request(events, wire=Wire.JSON, req_guid=draw(text)).body
    if draw(st.booleans()):
        old, new = draw(
            st.sampled_from(
                [
                    (b'"type":', b'"Type":'),
                    (b'"events":[', b'"events":[null,'),
                    (b'"nanos":', b'"nanos":1.5,"nanos":'),
                    (b'"req_guid":', b'"req_guid":7,"req_guid":'),
                    (b'"seconds":', b'"seconds":99999999999999999999,"seconds":'),
                    (b'{"event_bytes":"', b'{"event_bytes":"QQ","event_bytes":"'),
                    (b'"sent_time":', b'"sent_time":{"nanos":3},"sent_time":'),
                    (b'==', b'=='),
                    (b'"}', b'\\u0041"}'),
                ]
            )
        )
        body = body.replace(old, new, 1)
    return body


@settings(max_examples=800, deadline=None)
@given(body=st.one_of(_request_bodies(), _plain_bodies()))
def test_the_fast_path_answers_as_go_or_leaves_the_body_to_go_rules(body):
    """Random bodies (case variants, duplicates, nulls, big ints, bad base64), and bodies as
    clients write them with at most one thing off (about a third of these take the fast path)."""
    from raccoon_beam.wire import go_json

    fast = go_json._decode_plain_request(body)
    if fast is not None:
        assert fast == _slow_decode(body), body
