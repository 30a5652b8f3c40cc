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

import logging
from typing import Any, Dict, Mapping, Optional, Set, Tuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import PCollection, TaggedOutput
from apache_beam.typehints.row_type import RowTypeConstraint

from raccoon_beam.jsonlines import parse_json_object
from raccoon_beam.serializers import resolve_serializer

__all__ = ["ParseJsonLines", "WriteJsonLines", "FIELD_TYPES", "OTHER_FIELDS", "DROPPED_COUNTER"]

FIELD_TYPES: Dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool, "any": Any}
"""The field types ``ParseJsonLines`` declares: JSON's scalars, and ``any`` for nested values."""

DROPPED_COUNTER = ("raccoon_beam.ParseJsonLines", "fields_dropped")
"""The Beam counter (namespace, name) of the undeclared fields dropped."""

OTHER_FIELDS = "other_fields"
"""The field that holds the undeclared keys with ``keep_other_fields: true``."""

_ERROR_TAG = "errors"
_MAX_REPORTED = 1000  # undeclared names logged per DoFn instance; the counter counts them all
_LOGGER = logging.getLogger("raccoon_beam")


class _ParseFn(beam.DoFn):
    def __init__(self, fields: Tuple[Tuple[str, str], ...], keep_other_fields: bool) -> None:
        self._fields = fields
        self._declared = frozenset(name for name, _ in fields)
        self._keep_other_fields = keep_other_fields
        self._dropped = Metrics.counter(DROPPED_COUNTER[0], DROPPED_COUNTER[1])

    def setup(self) -> None:
        self._reported: Set[str] = set()  # undeclared names already logged by this instance

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
        if len(value) > len(row) or not self._declared.issuperset(value):
            others = {key: item for key, item in value.items() if key not in self._declared}
            if self._keep_other_fields:
                row[OTHER_FIELDS] = others or None
            else:
                self._report_dropped(others)
        elif self._keep_other_fields:
            row[OTHER_FIELDS] = None
        yield beam.Row(**row)

    def _report_dropped(self, others: Dict[str, Any]) -> None:
        """Counts the fields dropped, and names each the first time this instance drops it."""
        self._dropped.inc(len(others))
        new = sorted(set(others) - self._reported)
        if new and len(self._reported) < _MAX_REPORTED:
            self._reported.update(new)
            _LOGGER.warning(
                "ParseJsonLines drops the fields %s, which its fields: do not declare "
                "(declare them, or set keep_other_fields: true to keep them in %r)",
                ", ".join(map(repr, new)),
                OTHER_FIELDS,
            )


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
        field is null.
      keep_other_fields: keep the keys ``fields`` does not declare, as one
        more field ``other_fields`` (an object of them, null when there are
        none). Without it they are dropped: counted in the Beam counter
        ``raccoon_beam.ParseJsonLines/fields_dropped`` and each name logged (WARNING) the
        first time a worker drops it.
      error_handling: ``{output: NAME}``: lines that are not JSON objects, or
        whose fields have other types, become rows ``(element, msg)`` of the
        output ``NAME``; without it they fail the pipeline.
    """

    def __init__(
        self,
        fields: Mapping[str, str],
        keep_other_fields: bool = False,
        error_handling: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        if not fields:
            raise ValueError("ParseJsonLines needs fields: {name: type}")
        if keep_other_fields and OTHER_FIELDS in fields:
            raise ValueError(f"ParseJsonLines: with keep_other_fields, {OTHER_FIELDS!r} is the field of the others")
        self._keep_other_fields = bool(keep_other_fields)
        for name, kind in fields.items():
            if kind not in FIELD_TYPES:
                raise ValueError(f"field {name!r}: type {kind!r} is not one of {', '.join(FIELD_TYPES)}")
        self._fields = tuple((str(name), str(kind)) for name, kind in fields.items())
        self._error_output = (error_handling or {}).get("output")

    def expand(self, lines: PCollection) -> Dict[str, PCollection]:
        row_type = RowTypeConstraint.from_fields(
            [(name, Optional[FIELD_TYPES[kind]]) for name, kind in self._fields]
            + ([(OTHER_FIELDS, Optional[Any])] if self._keep_other_fields else [])
        )
        parsed = lines | "Parse" >> beam.ParDo(_ParseFn(self._fields, self._keep_other_fields)).with_outputs(
            _ERROR_TAG, main="rows"
        )
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
