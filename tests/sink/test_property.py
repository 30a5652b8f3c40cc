"""A property of the whole pipeline: every element is delivered intact or dead-lettered, exactly one of the two.

Hypothesis generates lists of elements (JSON-like values of every kind,
nested in dicts, lists, tuples and Beam ``Row`` s: NaN and infinities, deep
nesting, huge strings, bytes, sets, non-string keys, lone surrogates, big
integers, ``None``) each with its event type (including the empty string
and lone surrogates). Each example is one pipeline on the DirectRunner,
writing with the json serializer to a ``RaccoonEmulator`` started once for
the module (events captured, reset between examples), over a transport and
wire drawn by the example. After the pipeline, each element carries a unique
tag, so that:

- every tag is either captured once by the emulator or dead-lettered once,
  never both, never neither, never twice;
- an element that the JSON type mapping of docs/serializers.md can write is
  captured intact: its event bytes are those of its JSON data (Rows as
  objects of their fields, tuples as arrays, bytes as base64 strings, int,
  float, bool and None keys as JSON writes them, integers with every digit)
  written by orjson or by compact ``json.dumps``, under its event type;
- an element the mapping cannot write (NaN, a set, a lone surrogate, two keys
  that become one JSON key, nesting deeper than 254 levels, ...) is
  dead-lettered at ``serialize`` with a reason; one with a bad event type at
  ``serialize`` or ``validate``; one too large for a request at ``validate``.

The reference below (:func:`plain_json`) is written from the documented
mapping, not from the serializer's code.
"""


from __future__ import annotations

import base64
import enum
import json
import math
from typing import Any, Dict, Iterator, List, Optional, Tuple

import apache_beam as beam
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from raccoon_beam import WriteToRaccoon
from raccoon_beam.emulator import RaccoonEmulator

# Each example runs a pipeline (about a second); this many keeps the test well
# under a minute while every kind of value still comes up.
MAX_EXAMPLES = 20
GOOD_TYPES = ("click", "page_view", "add_to_cart", "v2.page_view-x", "a" * 200)
# Not Kafka topics (empty, a lone surrogate, non-ASCII, a space): dead letters at stage validate.
BAD_TYPES = ("", "\ud800", "bad-\udfff-type", "ünïcode-type", "has space")
# The deepest nesting of arrays and objects the json serializer writes
# (docs/serializers.md: orjson's own limit); deeper is a dead letter.
MAX_DEPTH = 254
# The integers orjson writes itself; wider ones are written with every digit all the same.
ORJSON_INTS = (-(2**63), 2**64)
# Bigger than any request the sink may send (gRPC's 4 MiB and the defaults
# under it), so such an element can only be a dead letter at validate.
TOO_LARGE = 5 * 1024 * 1024
TRANSPORT_WIRES = (("grpc", "protobuf"), ("rest", "protobuf"), ("rest", "json"),
                   ("websocket", "protobuf"), ("websocket", "json"))


# ----------------------------------------------------------------- the reference


class Fate(enum.Enum):
    """What must become of an element."""

    DELIVERED = "delivered"
    SERIALIZE = "dead letter at serialize"
    VALIDATE = "dead letter at validate"
    BAD_TYPE = "dead letter at serialize or validate (event type)"


class _Unserializable(Exception):
    """The value has no JSON form."""


_KEY_LITERALS = {True: "true", False: "false", None: "null"}


def _json_key(key: Any) -> str:
    """A dict key as the JSON object key it becomes: str as it is; int, float, bool and None as JSON writes them."""
    if isinstance(key, str):
        return plain_json(key)
    if key is None or isinstance(key, bool):
        return _KEY_LITERALS[key]
    if isinstance(key, int):
        return repr(key)
    if isinstance(key, float):
        if not math.isfinite(key):
            raise _Unserializable("NaN or infinite key")
        return repr(key)
    raise _Unserializable(f"{type(key).__name__} key")


def plain_json(value: Any, depth: int = 0) -> Any:
    """``value`` as the JSON data it stands for (docs/serializers.md's mapping), written here from scratch.

    ``depth`` is the number of arrays and objects around ``value``. Raises
    _Unserializable for what the mapping cannot write.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        repr(value)  # more digits than Python writes: ValueError, below
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _Unserializable("NaN or infinity")
        return value
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Unserializable("lone surrogate") from None
        return value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if not isinstance(value, (beam.Row, dict, list, tuple)):
        raise _Unserializable(type(value).__name__)  # sets, anything else
    if depth + 1 > MAX_DEPTH:
        raise _Unserializable(f"deeper than {MAX_DEPTH} levels")
    if isinstance(value, beam.Row):
        return {name: plain_json(field, depth + 1) for name, field in vars(value).items()}
    if isinstance(value, dict):
        plain = {}
        for key, field in value.items():
            name = _json_key(key)
            if name in plain:
                raise _Unserializable(f"two keys become the JSON key {name!r}")
            plain[name] = plain_json(field, depth + 1)
        return plain
    return [plain_json(item, depth + 1) for item in value]


def fate_of(element: Any, event_type: str) -> Tuple[Fate, Optional[Any]]:
    """The fate ``element`` must meet, and its JSON data when it is delivered."""
    if event_type in BAD_TYPES:
        return Fate.BAD_TYPE, None
    if element is None:
        return Fate.SERIALIZE, None
    try:
        plain = plain_json(element)
    except (_Unserializable, ValueError):
        return Fate.SERIALIZE, None
    if len(orjson.dumps(_wide_ints_as_digits(plain))) > TOO_LARGE:
        return Fate.VALIDATE, None
    return Fate.DELIVERED, plain


def _wide_ints_as_digits(plain: Any) -> Any:
    """``plain`` with the integers orjson does not write itself as fragments of their digits."""
    if isinstance(plain, int) and not isinstance(plain, bool) and not ORJSON_INTS[0] <= plain < ORJSON_INTS[1]:
        return orjson.Fragment(repr(plain))
    if isinstance(plain, dict):
        return {key: _wide_ints_as_digits(field) for key, field in plain.items()}
    if isinstance(plain, list):
        return [_wide_ints_as_digits(item) for item in plain]
    return plain


def serializations(plain: Any) -> List[bytes]:
    """The event bytes an intact delivery may carry: orjson's, or compact ``json.dumps``'s."""
    return [
        orjson.dumps(_wide_ints_as_digits(plain)),
        json.dumps(plain, separators=(",", ":"), ensure_ascii=False).encode("utf-8"),
    ]


# ----------------------------------------------------------------- the elements


def _row(fields: Dict[str, Any]) -> beam.Row:
    return beam.Row(**fields)


bad_leaves = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.binary(max_size=8),
    st.sets(st.integers(-5, 5), max_size=3),
    st.frozensets(st.text(max_size=3), max_size=2),
    st.sampled_from(["\ud800", "x\udfffy"]),
    st.just(object()),
)
good_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
ambiguous_leaves = st.one_of(st.integers(min_value=2**64), st.integers(max_value=-(2**63) - 1))
field_names = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
keys = st.one_of(st.text(max_size=8), st.text(max_size=8), st.integers(), st.booleans(), st.none(), st.floats())


def _containers(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=3).map(tuple),
        st.dictionaries(st.text(max_size=8), children, max_size=4),
        st.dictionaries(keys, children, max_size=3),  # non-string keys now and then
        st.dictionaries(field_names, children, min_size=1, max_size=3).map(_row),
    )


values = st.recursive(
    st.one_of(good_leaves, good_leaves, good_leaves, bad_leaves, ambiguous_leaves),
    _containers,
    max_leaves=12,
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """A value nested hundreds of levels deep, sometimes past the serializer's limit."""
    value: Any = draw(good_leaves)
    for level in range(draw(st.integers(50, MAX_DEPTH + 50))):
        value = [value] if level % 2 else {"d": value}
    return value


@st.composite
def tagged(draw: st.DrawFn, tag: int) -> Any:
    """An element holding ``tag`` where the sink must keep it (a field, or the first items of a list)."""
    shape = draw(st.sampled_from(["dict", "dict", "row", "list", "huge", "none"]))
    if shape == "huge":  # in a dict: hypothesis prints it as 'x' * n, a Row would print it whole
        return {"tag": tag, "v": "x" * draw(st.sampled_from([100_000, 300_000, 300_000, TOO_LARGE + 1]))}
    if shape == "none":
        return None  # the element itself is None: no tag to carry
    value = draw(st.one_of(values, values, values, deep()))
    if shape == "dict":
        extra = draw(st.dictionaries(keys, values, max_size=2))
        extra.pop("tag", None)
        return {"tag": tag, "v": value, **extra}
    if shape == "row":
        return beam.Row(tag=tag, v=value)
    return ["tag", tag, value]


@st.composite
def examples(draw: st.DrawFn) -> Tuple[str, str, List[Any], List[str]]:
    count = draw(st.integers(1, 20))
    elements = [draw(tagged(tag)) for tag in range(count)]
    event_types = [draw(st.sampled_from(GOOD_TYPES + GOOD_TYPES + BAD_TYPES)) for _ in range(count)]
    transport, wire = draw(st.sampled_from(TRANSPORT_WIRES))
    return transport, wire, elements, event_types


def tag_of(element: Any) -> Optional[int]:
    """The tag an element or its JSON data carries; None for the None element."""
    if isinstance(element, dict):
        return element["tag"]
    if isinstance(element, beam.Row):
        return element.tag
    if isinstance(element, list):
        return element[1]
    return None


# ----------------------------------------------------------------- the pipeline

# The DirectRunner runs the pipeline in this process, and Beam pickles
# module-level functions by reference: these globals are the ones the
# pipeline sees.
_ELEMENTS: List[Any] = []
_TYPES: List[str] = []
_DEAD_LETTERS: List[Any] = []
_NONE_TYPE = "none-element"


class _AnyElement:
    """The type of the generated elements, for their coder.

    Beam samples elements through their PCollection's coder to estimate
    sizes, and the default coder cannot encode a string with a lone
    surrogate; pickle can encode every element generated here.
    """


beam.coders.registry.register_coder(_AnyElement, beam.coders.PickleCoder)


def _element(index: int) -> Any:
    return _ELEMENTS[index]


def _event_type(element: Any) -> str:
    tag = tag_of(element)
    return _NONE_TYPE if tag is None else _TYPES[tag]


def _collect(letter: Any) -> None:
    _DEAD_LETTERS.append(letter)


def run_pipeline(endpoint: str, wire: str, elements: List[Any], event_types: List[str]) -> List[Any]:
    """Writes ``elements`` with WriteToRaccoon; returns the dead letters."""
    _ELEMENTS[:] = elements
    _TYPES[:] = event_types
    _DEAD_LETTERS.clear()
    with beam.Pipeline() as pipeline:
        result = (
            pipeline
            | beam.Create(range(len(elements)), reshuffle=False)
            | beam.Map(_element).with_output_types(_AnyElement)
            | WriteToRaccoon(endpoint, event_type=_event_type, serializer="json", wire=wire)
        )
        result.failed | beam.Map(_collect)
    return list(_DEAD_LETTERS)


@pytest.fixture(scope="module")
def emulator() -> Iterator[RaccoonEmulator]:
    """One emulator for every example of the module (events captured), reset by each example."""
    with RaccoonEmulator() as emu:
        yield emu


# ----------------------------------------------------------------- the property


class Described:
    """An element's description for a failed assertion, built only when one fails (an element can be 5 MB)."""

    def __init__(self, tag: int, element: Any, fate: Fate, how: str) -> None:
        self._text = (tag, element, fate, how)

    def __str__(self) -> str:
        tag, element, fate, how = self._text
        return f"element {tag} ({fate.value}, {how}): {element!r:.200}"


# About 20 s (a pipeline per example): over the fast suite's budget per test.
@pytest.mark.slow
@pytest.mark.timeout(240)
# No shrinking: each step would run a pipeline, and the example that failed
# is printed as it is.
@settings(max_examples=MAX_EXAMPLES, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(example=examples())
def test_every_element_is_delivered_intact_or_dead_lettered_never_both_never_neither(emulator, example):
    transport, wire, elements, event_types = example
    emulator.reset()
    endpoint = {"grpc": emulator.grpc_endpoint, "rest": emulator.rest_endpoint, "websocket": emulator.ws_endpoint}
    dead_letters = run_pipeline(endpoint[transport], wire, elements, event_types)
    captured = emulator.events()

    delivered: Dict[int, Any] = {}
    for event in captured:
        tag = tag_of(json.loads(event.event_bytes))
        assert tag not in delivered, f"element {tag} captured twice"
        delivered[tag] = event
    dead: Dict[Optional[int], List[Any]] = {}
    for letter in dead_letters:
        tag = tag_of(letter.element)
        assert tag is None or tag not in dead, f"element {tag} dead-lettered twice"
        dead.setdefault(tag, []).append(letter)
        assert isinstance(letter.error, str) and letter.error.strip(), f"no reason for element {tag}: {letter!r:.300}"

    nones = sum(1 for element in elements if element is None)
    assert len(dead.get(None, [])) == nones, "every None element is dead-lettered, once"
    for tag, element in enumerate(elements):
        if element is None:
            continue
        fate, plain = fate_of(element, event_types[tag])
        where = Described(tag, element, fate, f"{transport} / {wire} wire")
        assert (tag in delivered) != (tag in dead), f"{where}: delivered={tag in delivered}, dead={tag in dead}"
        if fate is Fate.DELIVERED:
            assert tag in delivered, f"{where}: dead-lettered: {dead[tag][0].error}"
            event = delivered[tag]
            assert event.type == event_types[tag], where
            assert event.event_bytes in serializations(plain), f"{where}: captured {event.event_bytes[:200]!r}"
        else:
            assert tag in dead, f"{where}: delivered as {delivered[tag].event_bytes[:200]!r}"
            letter = dead[tag][0]
            expected = {Fate.SERIALIZE: {"serialize"}, Fate.VALIDATE: {"validate"},
                        Fate.BAD_TYPE: {"serialize", "validate"}}[fate]
            assert letter.stage in expected, f"{where}: stage {letter.stage}: {letter.error}"
            assert letter.element is element, f"{where}: the dead letter holds another element"
    for letter in dead.get(None, []):
        assert letter.element is None and letter.stage == "serialize", letter


NON_STRING_KEYS = [
    {"tag": 0, "v": {1: "a"}},
    {"tag": 1, "v": {True: "a"}},
    {"tag": 2, "v": {None: "a"}},
    {"tag": 3, "v": {1.5: "a"}},
    {"tag": 4, "v": {(1, 2): "a"}},  # no JSON key for a tuple
    {"tag": 5, "v": {"1": "a", 1: "b"}},  # two keys that JSON writes as one
    {"tag": 6, "v": "a string-keyed neighbour, delivered"},
]


def test_non_string_keys_are_written_as_json_writes_them_unless_two_collide(emulator):
    """Scalar keys become JSON's keys (as json.dumps writes them); a key with no JSON form, or two keys
    that would become one, is a dead letter at serialize, never an object with a key twice."""
    emulator.reset()
    dead_letters = run_pipeline(emulator.grpc_endpoint, "protobuf", NON_STRING_KEYS, ["click"] * len(NON_STRING_KEYS))
    delivered = {json.loads(event.event_bytes)["tag"]: event.event_bytes for event in emulator.events()}
    assert sorted(delivered) == [0, 1, 2, 3, 6]
    for tag in (0, 1, 2, 3):
        assert json.loads(delivered[tag]) == json.loads(json.dumps(NON_STRING_KEYS[tag]))
    assert sorted(tag_of(letter.element) for letter in dead_letters) == [4, 5]
    for letter in dead_letters:
        assert letter.stage == "serialize" and letter.error.strip(), letter
    (collision,) = [letter for letter in dead_letters if tag_of(letter.element) == 5]
    assert "both become the JSON key '1'" in collision.error
