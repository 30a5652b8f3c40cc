"""How dead letters travel: a coder that never fails, and a schema'd row for sinks.

``result.failed`` holds :class:`~raccoon_beam.errors.RaccoonDeadLetter`
values, whose ``element`` is whatever the user's pipeline carried, and a
dead letter is often made *because* that element is strange. Beam's fallback
coder pickles the whole letter; an element it cannot pickle (a lock, a
generator, an object nested a thousand levels deep) made the runner fail the
bundle, whose good events were already acknowledged, and a retrying runner
resent them forever. :class:`RaccoonDeadLetterCoder` is the explicit coder of
``result.failed``: it encodes the letter's own fields with Beam's coders and
the element by pickling it, and when that fails the element is replaced by
an :class:`UnencodableElement` (its type, a bounded repr, and why).

:class:`RaccoonDeadLetterRow` is the same letter as a Beam schema
(``result.failed_rows``), for ``WriteToJson``, ``WriteToBigQuery`` and Beam
SQL: the element as JSON text when it has one, otherwise its bounded repr.
"""

from __future__ import annotations

import pickle
import reprlib
from typing import Any, NamedTuple, Optional, Tuple

from apache_beam import coders

from raccoon_beam.errors import RaccoonDeadLetter
from raccoon_beam.serializers.plain import type_name

__all__ = [
    "UnencodableElement",
    "RaccoonDeadLetterCoder",
    "RaccoonDeadLetterRow",
    "to_row",
    "safe_repr",
    "type_name",
    "DEFAULT_REPR_CHARS",
]

# Long enough to recognise an element in a log or a table cell, short enough
# that a 10 MB element does not make a 10 MB repr.
DEFAULT_REPR_CHARS = 1_000
# Levels shown of nested containers: a repr that recursed as deep as the
# element would hit the interpreter's recursion limit on the elements that
# need a stand-in most.
_REPR_LEVELS = 8

_ELEMENT_PICKLED = b"p"
_ELEMENT_STAND_IN = b"s"


class UnencodableElement(NamedTuple):
    """Stands in for a dead letter's element that the runner could not encode.

    Attributes:
      type_name: the element's type, ``module.QualifiedName``.
      repr: a bounded repr of the element (nested levels and length cut).
      reason: why it could not be encoded, e.g. ``RecursionError: ...``.
    """

    type_name: str
    repr: str
    reason: str


def _make_repr(limit: int) -> reprlib.Repr:
    shaper = reprlib.Repr()
    shaper.maxlevel = _REPR_LEVELS
    shaper.maxstring = shaper.maxother = shaper.maxlong = limit
    shaper.maxdict = shaper.maxlist = shaper.maxtuple = shaper.maxset = shaper.maxfrozenset = shaper.maxdeque = 50
    return shaper


_REPR = _make_repr(DEFAULT_REPR_CHARS)


def safe_repr(value: Any, limit: int = DEFAULT_REPR_CHARS) -> str:
    """A repr of ``value`` no longer than ``limit`` characters that never raises.

    Nested containers are shown to a few levels (so a deep or cyclic
    element cannot exhaust the stack), and an object whose ``__repr__``
    fails is shown by its type.
    """
    shaper = _REPR if limit == DEFAULT_REPR_CHARS else _make_repr(limit)
    try:
        text = shaper.repr(value)
    except Exception as exc:  # noqa: BLE001 - a user's __repr__ may raise anything
        text = f"<{type_name(value)}: repr failed: {type(exc).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _stand_in(element: Any, exc: BaseException) -> UnencodableElement:
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return UnencodableElement(type_name(element), safe_repr(element), safe_repr(reason, 300))


# The letter's own fields: strings, ints, booleans, bytes and None, which
# Beam's FastPrimitivesCoder encodes natively (and deterministically).
_FIELDS_CODER = coders.FastPrimitivesCoder()


class RaccoonDeadLetterCoder(coders.Coder):
    """The coder of ``result.failed``: encodes any :class:`RaccoonDeadLetter`, never raises.

    The element is pickled (as Beam's fallback coder does); if that fails,
    for whatever reason, the element is replaced by an
    :class:`UnencodableElement` and the letter still goes through. So a
    decoded letter's element is either equal to the original or that
    stand-in. Pickling is not a deterministic encoding for every value, so
    the coder does not claim to be one (dead letters are not grouping keys).
    """

    def encode(self, value: RaccoonDeadLetter) -> bytes:
        fields = _FIELDS_CODER.encode(tuple(value[1:]))
        try:
            element = _ELEMENT_PICKLED + pickle.dumps(value.element, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - anything a user's object does while pickled
            element = _ELEMENT_STAND_IN + _FIELDS_CODER.encode(tuple(_stand_in(value.element, exc)))
        return len(fields).to_bytes(4, "big") + fields + element

    def decode(self, encoded: bytes) -> RaccoonDeadLetter:
        size = int.from_bytes(encoded[:4], "big")
        fields: Tuple[Any, ...] = _FIELDS_CODER.decode(encoded[4 : 4 + size])
        tag, body = encoded[4 + size : 5 + size], encoded[5 + size :]
        element = pickle.loads(body) if tag == _ELEMENT_PICKLED else UnencodableElement(*_FIELDS_CODER.decode(body))
        return RaccoonDeadLetter(element, *fields)

    def is_deterministic(self) -> bool:
        return False

    def to_type_hint(self) -> Any:
        return RaccoonDeadLetter

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


coders.registry.register_coder(RaccoonDeadLetter, RaccoonDeadLetterCoder)


class RaccoonDeadLetterRow(NamedTuple):
    """A dead letter as a row with a Beam schema (``result.failed_rows``).

    Every field of :class:`RaccoonDeadLetter`, in types every schema-aware
    sink takes (a BigQuery table: STRING, BOOL, INT64, BYTES).

    Attributes:
      element: the element as JSON text (see ``element_is_json``), or its
        bounded repr when it has no JSON form.
      element_is_json: whether ``element`` is JSON text.
      element_type: the element's Python type, ``module.QualifiedName``
        (the stand-in's original type for an element that could not be encoded).
      event_type, stage, error, code, attempts, req_guid, delivered, payload:
        as in :class:`RaccoonDeadLetter`.
    """

    element: str
    element_is_json: bool
    element_type: str
    event_type: Optional[str]
    stage: str
    error: str
    code: Optional[str]
    attempts: int
    req_guid: Optional[str]
    delivered: Optional[bool]
    payload: Optional[bytes]


coders.registry.register_coder(RaccoonDeadLetterRow, coders.RowCoder)


def to_row(letter: RaccoonDeadLetter) -> RaccoonDeadLetterRow:
    """The schema'd row of a dead letter (never raises)."""
    element = letter.element
    if isinstance(element, UnencodableElement):
        text, kind = None, element.type_name
    else:
        text, kind = _element_text(element), type_name(element)
    is_json = text is not None
    if text is None:
        text = element.repr if isinstance(element, UnencodableElement) else safe_repr(element)
    return RaccoonDeadLetterRow(
        element=text,
        element_is_json=is_json,
        element_type=kind,
        event_type=letter.event_type,
        stage=letter.stage,
        error=letter.error,
        code=letter.code,
        attempts=letter.attempts,
        req_guid=letter.req_guid,
        delivered=letter.delivered,
        payload=letter.payload,
    )


def _element_text(element: Any) -> Optional[str]:
    """``element`` as JSON text by the sink's own JSON serializer, or None if it has none."""
    try:
        return _json_serializer()(element).decode("utf-8")
    except Exception:  # noqa: BLE001 - no JSON form: the caller falls back to a repr
        return None


_JSON: Any = None


def _json_serializer() -> Any:
    global _JSON
    if _JSON is None:
        from raccoon_beam.serializers import resolve_serializer  # heavy imports, only when a letter needs them

        _JSON = resolve_serializer("json")
    return _JSON
