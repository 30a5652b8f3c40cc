"""JSON Lines in and out of a pipeline: a tolerant parse, and dead letters written to a file.

``ParseJsonLines`` turns lines of JSON objects into dicts and never fails the
pipeline on a bad line: a line that is blank, not JSON or not a JSON object
goes to its ``failed`` output with the line's text and the reason.
``WriteDeadLetters`` writes dead letters (the sink's ``result.failed``, these
parse failures, or both) to one JSON Lines file, one object per letter.

The same parse serves Beam YAML's ``ParseJsonLines`` (:mod:`raccoon_beam.yaml_json`).
"""

from __future__ import annotations

import base64
import json
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence, Tuple, Union

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import PCollection, TaggedOutput

from raccoon_beam.dead_letters import safe_repr, to_row
from raccoon_beam.errors import RaccoonDeadLetter

__all__ = ["ParseJsonLines", "WriteDeadLetters", "WriteToOneFile", "parse_json_object", "dead_letter_record", "PARSE_STAGE"]

PARSE_STAGE = "parse"
"""The ``stage`` of a line that ``ParseJsonLines`` could not parse (the sink's are serialize, validate, send)."""

_FAILED_TAG = "failed"


def parse_json_object(line: str) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """One line of JSON Lines: ``(object, None)``, or ``(None, reason)`` when it is not a JSON object.

    Args:
      line: the line, without its line end.
    """
    if not line.strip():
        return None, "blank line"
    try:
        value = json.loads(line)
    except ValueError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(value, dict):
        return None, f"not a JSON object but {type(value).__name__}"
    return value, None


class _ParseFn(beam.DoFn):
    def process(self, line: Any) -> Iterator[Any]:
        text = line if isinstance(line, str) else line.decode("utf-8")
        value, reason = parse_json_object(text)
        if value is None:
            yield TaggedOutput(_FAILED_TAG, beam.Row(element=text, stage=PARSE_STAGE, error=reason))
        else:
            yield value


class ParseJsonLines(beam.PTransform):
    """Parses lines of JSON objects into dicts; the lines that do not parse go to ``failed``.

    The input is the lines of JSON Lines files (``str`` or ``bytes``, as
    ``beam.io.ReadFromText`` gives them). The result has two outputs:
    ``parsed``, a dict per JSON object, and ``failed``, a ``beam.Row(element,
    stage, error)`` per line that is blank, not JSON or not an object: the
    line's text, ``"parse"``, and the reason. Nothing fails the pipeline.

    Example:
      ```python
      lines = pipeline | beam.io.ReadFromText("clicks.jsonl")
      events = lines | ParseJsonLines()
      events.parsed | WriteToRaccoon(...)
      events.failed | WriteDeadLetters("malformed.jsonl")
      ```
    """

    def expand(self, lines: PCollection) -> Any:
        return lines | "Parse" >> beam.ParDo(_ParseFn()).with_outputs(_FAILED_TAG, main="parsed")


def _text(element: Any) -> str:
    if isinstance(element, str):
        return element
    if isinstance(element, (bytes, bytearray)):
        return bytes(element).decode("utf-8", errors="backslashreplace")
    try:
        return json.dumps(element, sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        return safe_repr(element)


def dead_letter_record(letter: Any) -> Dict[str, Any]:
    """A dead letter as one JSON-ready dict, whatever its kind.

    A :class:`~raccoon_beam.RaccoonDeadLetter` becomes the fields of its
    ``result.failed_rows`` row (:func:`raccoon_beam.dead_letters.to_row`: the
    element as JSON text, or a bounded repr); a ``beam.Row`` (``failed_rows``,
    ``ParseJsonLines``' failures), a NamedTuple or a dict keeps its fields,
    its ``element`` as text. Bytes (the ``payload``) are base64, so that a
    letter can be replayed byte for byte.

    Args:
      letter: the dead letter.
    """
    if isinstance(letter, RaccoonDeadLetter):
        record = dict(to_row(letter)._asdict())
    elif isinstance(letter, dict):
        record = dict(letter)
    else:
        record = dict(letter._asdict())
    if "element" in record:
        record["element"] = _text(record["element"])
    for name, value in record.items():
        if isinstance(value, (bytes, bytearray)):
            record[name] = base64.b64encode(bytes(value)).decode("ascii")
    return record


class _WriteLines(beam.DoFn):
    def __init__(self, path: str) -> None:
        self._path = path

    def process(self, keyed: Tuple[None, Iterable[str]]) -> Iterator[str]:
        # Written whole by one call, so a retried call writes the same file again.
        with FileSystems.create(self._path, mime_type="application/jsonl") as handle:
            for line in keyed[1]:
                handle.write(line.encode("utf-8") + b"\n")
        yield self._path


class WriteToOneFile(beam.PTransform):
    """Writes a PCollection of lines to one file; yields the file's path.

    For a small output (dead letters, counts): every line goes through one
    worker. ``WriteToText(num_shards=1)`` does this on most runners, but
    Beam's Dask runner (2.77) computes its side inputs again, with every
    transform before them (a sink included), and leaves its temporary
    directories behind. An empty PCollection writes no file. Bounded input
    only (in the global window the grouping fires when the input ends).

    Args:
      path: the file, on any of Beam's file systems (``gs://...`` too).
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def expand(self, lines: PCollection) -> PCollection:
        return (
            lines
            | "OneKey" >> beam.Map(lambda line: (None, line))
            | "Together" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteLines(self._path))
        )


class WriteDeadLetters(beam.PTransform):
    """Writes dead letters to one JSON Lines file, one object per letter (:func:`dead_letter_record`).

    Apply it to one PCollection of dead letters, or to a tuple of them (as
    ``beam.Flatten``): ``(events.failed, result.failed) | WriteDeadLetters(path)``.
    Each line has the letter's fields (``element``, ``stage``, ``error``, and
    for the sink's letters ``event_type``, ``code``, ``attempts``,
    ``req_guid``, ...), keys sorted. The output is the path written (none
    when there was no dead letter: then no file is written).

    Args:
      path: the file, on any of Beam's file systems (``gs://...`` too). For
        an unbounded pipeline write ``result.failed_rows`` to a windowed sink
        (BigQuery, files per window) instead.
    """

    def __init__(self, path: str) -> None:
        super().__init__()
        if not path:
            raise ValueError("WriteDeadLetters needs a path")
        self._path = path

    def expand(self, letters: Union[PCollection, Sequence[PCollection]]) -> PCollection:
        if isinstance(letters, (tuple, list)):
            letters = tuple(letters) | "Together" >> beam.Flatten()
        return (
            letters
            | "ToJson" >> beam.Map(lambda letter: json.dumps(dead_letter_record(letter), sort_keys=True, default=repr))
            | "Write" >> WriteToOneFile(self._path)
        )
