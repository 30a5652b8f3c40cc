"""JSON Lines in and out of Beam YAML pipelines, without pandas.

Beam YAML's ``ReadFromJson`` and ``WriteToJson`` run on pandas, which this
package does not depend on, and a single malformed line makes pandas fail the
whole read. These two transforms (in the providers file next to
``WriteToRaccoon``) parse line by line instead, with the parse of
:mod:`raccoon_beam.jsonlines` (the Python pipelines' ``ParseJsonLines``): a line that is not a JSON
object, or whose field has the wrong type, goes to the ``error_handling``
output with a readable reason, and every other line becomes a Row of the
declared fields.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

import apache_beam as beam
from apache_beam.pvalue import PCollection, TaggedOutput
from apache_beam.typehints.row_type import RowTypeConstraint

from raccoon_beam.jsonlines import parse_json_object
from raccoon_beam.serializers import resolve_serializer

__all__ = ["ParseJsonLines", "WriteJsonLines", "FIELD_TYPES"]

FIELD_TYPES: Dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "any": Any}
"""The field types ``ParseJsonLines`` declares: JSON's scalars, and ``any`` for nested values."""

_ERROR_TAG = "errors"


class _ParseFn(beam.DoFn):
    def __init__(self, fields: Tuple[Tuple[str, str], ...]) -> None:
        self._fields = fields

    def process(self, element: Any):
        # Beam YAML's ReadFromText gives Rows with a ``line`` field.
        line = element if isinstance(element, str) else element.line
        value, reason = parse_json_object(line)
        if value is None:
            yield TaggedOutput(_ERROR_TAG, beam.Row(element=line, msg=reason))
            return
        row = {}
        for name, kind in self._fields:
            item = value.get(name)
            if item is not None and not _fits(item, kind):
                yield TaggedOutput(
                    _ERROR_TAG,
                    beam.Row(element=line, msg=f"field {name!r}: expected {kind}, got {type(item).__name__}"),
                )
                return
            row[name] = float(item) if kind == "float" and isinstance(item, int) else item
        yield beam.Row(**row)


def _fits(value: Any, kind: str) -> bool:
    if kind == "any":
        return True
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, FIELD_TYPES[kind])


class ParseJsonLines(beam.PTransform):
    """Parses lines of JSON objects into Rows of the declared fields.

    The input is strings, or Rows with a ``line`` field (what Beam YAML's
    ``ReadFromText`` gives).

    Args:
      fields: field name -> ``str``, ``int``, ``float``, ``bool`` or ``any``
        (nested objects and arrays); every field is nullable, and a missing
        field is null. Other keys of the objects are dropped.
      error_handling: ``{output: NAME}``: lines that are not JSON objects, or
        whose fields have other types, become rows ``(element, msg)`` of the
        output ``NAME``; without it they fail the pipeline.
    """

    def __init__(self, fields: Mapping[str, str], error_handling: Optional[Mapping[str, Any]] = None) -> None:
        super().__init__()
        if not fields:
            raise ValueError("ParseJsonLines needs fields: {name: type}")
        for name, kind in fields.items():
            if kind not in FIELD_TYPES:
                raise ValueError(f"field {name!r}: type {kind!r} is not one of {', '.join(FIELD_TYPES)}")
        self._fields = tuple((str(name), str(kind)) for name, kind in fields.items())
        self._error_output = (error_handling or {}).get("output")

    def expand(self, lines: PCollection) -> Dict[str, PCollection]:
        row_type = RowTypeConstraint.from_fields(
            [(name, Optional[FIELD_TYPES[kind]]) for name, kind in self._fields]
        )
        parsed = lines | "Parse" >> beam.ParDo(_ParseFn(self._fields)).with_outputs(_ERROR_TAG, main="rows")
        rows = parsed["rows"] | "Typed" >> beam.Map(lambda row: row).with_output_types(row_type)
        errors = parsed[_ERROR_TAG] | "TypedErrors" >> beam.Map(lambda row: row).with_output_types(
            RowTypeConstraint.from_fields([("element", str), ("msg", str)])
        )
        if self._error_output is None:
            errors | "FailOnError" >> beam.Map(_fail)
            return {"output": rows}
        return {"output": rows, str(self._error_output): errors}


def _fail(error: Any) -> None:
    raise ValueError(f"ParseJsonLines: {error.msg}: {error.element[:200]!r}")


class WriteJsonLines(beam.PTransform):
    """Writes each row as one line of compact JSON to the file ``path``.

    Args:
      path: the file to write (one file, no shard suffix).
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def expand(self, rows: PCollection) -> Dict[str, PCollection]:
        to_json = resolve_serializer("json")
        written = (
            rows
            | "ToJson" >> beam.Map(lambda row: to_json(row).decode("utf-8"))
            | "Write" >> beam.io.WriteToText(self._path, shard_name_template="")
        )
        return {"written": written}
