"""No element can fail its bundle: result.failed's coder, poison elements, and failed_rows."""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Dict, List

import apache_beam as beam
import pytest
from apache_beam import coders
from apache_beam.testing.util import assert_that
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raccoon_beam import RaccoonDeadLetter, WriteToRaccoon
from raccoon_beam.dead_letters import (
    DEFAULT_REPR_CHARS,
    RaccoonDeadLetterCoder,
    RaccoonDeadLetterRow,
    UnencodableElement,
    safe_repr,
    to_row,
)


def nested(depth: int) -> Dict[str, Any]:
    element: Dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        element = {"a": element}
    return element


def cyclic() -> Dict[str, Any]:
    element: Dict[str, Any] = {"id": "cyclic"}
    element["self"] = element
    return element


def _generator():
    yield 1


POISON: Dict[str, Callable[[], Any]] = {
    "lock": threading.Lock,
    "generator": _generator,
    "cyclic": cyclic,
    "deep_500": lambda: nested(500),
    "deep_2000": lambda: nested(2000),
    "ten_mb": lambda: {"id": "big", "blob": "x" * 10_000_000},
}


def letter_of(element: Any, **fields: Any) -> RaccoonDeadLetter:
    return RaccoonDeadLetter(element=element, event_type="t", stage="serialize", error="e", **fields)


def test_the_coder_is_the_registered_one_for_dead_letters():
    assert isinstance(coders.registry.get_coder(RaccoonDeadLetter), RaccoonDeadLetterCoder)
    assert coders.registry.get_coder(RaccoonDeadLetterRow).__class__ is coders.RowCoder


def test_a_plain_letter_round_trips_with_every_field():
    coder = RaccoonDeadLetterCoder()
    letter = RaccoonDeadLetter(
        element={"id": 1, "tags": ["a"]},
        event_type="click",
        stage="send",
        error="gave up",
        code="http:503",
        attempts=3,
        req_guid="g",
        delivered=None,
        payload=b"{}",
    )
    assert coder.decode(coder.encode(letter)) == letter


@pytest.mark.parametrize("kind", ["lock", "generator", "deep_2000"])
def test_an_unpicklable_element_becomes_a_stand_in(kind):
    coder = RaccoonDeadLetterCoder()
    element = POISON[kind]()
    decoded = coder.decode(coder.encode(letter_of(element, payload=b"p")))
    assert isinstance(decoded.element, UnencodableElement)
    assert decoded.element.type_name in ("_thread.lock", "generator", "dict")
    assert decoded.element.reason  # e.g. "TypeError: cannot pickle '_thread.lock' object"
    assert len(decoded.element.repr) <= DEFAULT_REPR_CHARS
    assert decoded[1:] == letter_of(None, payload=b"p")[1:]  # every other field kept


def test_a_cyclic_element_survives_as_itself():
    coder = RaccoonDeadLetterCoder()
    decoded = coder.decode(coder.encode(letter_of(cyclic())))
    assert decoded.element["self"] is decoded.element


def test_safe_repr_is_bounded_and_never_raises():
    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no")

    assert len(safe_repr(nested(2000))) <= DEFAULT_REPR_CHARS
    assert len(safe_repr("x" * 10_000_000)) <= DEFAULT_REPR_CHARS
    assert "Broken" in safe_repr(Broken())  # a failing __repr__ is shown by its type
    assert safe_repr(cyclic()).startswith("{'id': 'cyclic'")


def test_rows_hold_json_text_or_a_bounded_repr():
    row = to_row(letter_of({"id": 1}, code="raccoon:2", payload=b"{}"))
    assert (row.element, row.element_is_json, row.element_type) == ('{"id":1}', True, "dict")
    assert (row.code, row.payload, row.delivered) == ("raccoon:2", b"{}", False)
    lock_row = to_row(letter_of(threading.Lock()))
    assert not lock_row.element_is_json and lock_row.element.startswith("<unlocked _thread.lock")
    stand_in = to_row(letter_of(UnencodableElement("mod.Thing", "<Thing>", "TypeError: no")))
    assert (stand_in.element, stand_in.element_type, stand_in.element_is_json) == ("<Thing>", "mod.Thing", False)


# ---------------------------------------------------------------- pipelines


def _good(n: int) -> List[Dict[str, Any]]:
    return [{"id": i, "event_name": "click"} for i in range(n)]


class _Opaque:
    """The declared type of the poison input, so that the runner samples it with :class:`_SizeOnlyCoder`."""


class _SizeOnlyCoder(coders.Coder):
    """Encodes anything as one byte: the input stage is fused with the sink, so
    this coder only ever gives the runner a size sample. Without it, Beam's
    fallback coder would fail on the poison before the sink sees it, as it
    would in a user's pipeline that declared no coder (the sink's own output
    is what is under test)."""

    def encode(self, value: Any) -> bytes:
        return b"?"

    def decode(self, encoded: bytes) -> Any:
        raise AssertionError("the input stage must be fused with the sink")

    def is_deterministic(self) -> bool:
        return True


coders.registry.register_coder(_Opaque, _SizeOnlyCoder)


def _poisoned_input(_: Any, kinds: List[str], n_good: int, at: int) -> List[Any]:
    good = _good(n_good)
    return good[:at] + [POISON[kind]() for kind in kinds] + good[at:]


def _describe(letter: RaccoonDeadLetter) -> tuple:
    return (type(letter.element).__name__, letter.stage, letter.error)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kinds=st.lists(st.sampled_from(sorted(POISON)), min_size=1, max_size=3, unique=True),
    n_good=st.integers(min_value=0, max_value=120),
    position=st.floats(min_value=0, max_value=1),
)
def test_poison_elements_are_dead_letters_and_the_bundle_succeeds(emulator, kinds, n_good, position):
    emulator.reset()

    def check(described: List[tuple]) -> None:
        assert len(described) == len(kinds), described
        for type_name, stage, error in described:
            assert type_name in ("dict", "lock", "generator", "UnencodableElement"), type_name
            assert stage in ("serialize", "validate"), error
            assert error and "None" not in error

    with beam.Pipeline() as pipeline:
        result = (
            pipeline
            | beam.Create([0])
            | beam.FlatMap(_poisoned_input, kinds, n_good, int(position * n_good)).with_output_types(_Opaque)
            | WriteToRaccoon(emulator.grpc_endpoint, event_type="click", max_batch_bytes=1 << 20)
        )
        # The runner samples result.failed with its coder (the sink's): the
        # first dead letters of a bundle always are.
        assert_that(result.failed | beam.Map(_describe), check)
    captured = sorted(json.loads(event.event_bytes)["id"] for event in emulator.events())
    assert captured == list(range(n_good))  # each good event delivered once


def test_failed_rows_go_to_write_to_json_without_a_coder_warning(emulator, tmp_path, caplog):
    elements = _good(3) + [{"id": 3, "event_name": "click", "tags": {1, 2}}, {"id": 4, "event_name": 5}]
    prefix = str(tmp_path / "dead")
    with caplog.at_level(logging.WARNING):
        with beam.Pipeline() as pipeline:
            result = (
                pipeline
                | beam.Create(elements)
                | WriteToRaccoon(emulator.rest_endpoint, event_type=lambda e: e["event_name"])
            )
            _ = result.failed_rows | beam.io.WriteToJson(prefix)
    warnings = [r.getMessage() for r in caplog.records if "coder" in r.getMessage().lower()]
    assert not warnings, warnings
    rows = [json.loads(line) for path in tmp_path.glob("dead*") for line in path.read_text().splitlines()]
    by_stage = {row["stage"]: row for row in rows}
    assert set(by_stage) == {"serialize"} and len(rows) == 2
    assert sorted(row["element_is_json"] for row in rows) == [False, True]
    json_row = next(row for row in rows if row["element_is_json"])
    assert json.loads(json_row["element"]) == {"id": 4, "event_name": 5}
    assert {"event_type", "error", "code", "attempts", "req_guid", "delivered", "payload"} <= set(json_row)
