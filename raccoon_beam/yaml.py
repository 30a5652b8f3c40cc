"""Beam YAML entry point: ``type: WriteToRaccoon`` through Beam's inline Python provider.

A pipeline declares the provider (or includes :data:`PROVIDERS_FILE`, which
holds the same list)::

    providers:
      - type: python
        config: {}
        transforms:
          WriteToRaccoon: raccoon_beam.yaml.WriteToRaccoon

and writes a schema'd PCollection::

    - type: WriteToRaccoon
      input: ReadClicks
      config:
        endpoint: grpc://raccoon:8081
        event_type_field: event_name
        serializer: json
        error_handling:
          output: dead_letters

Dead letters follow Beam YAML's ``error_handling`` convention: with
``error_handling: {output: NAME}`` they are the transform's output ``NAME``,
as rows of the :class:`~raccoon_beam.errors.RaccoonDeadLetter` fields
(``element``, ``event_type``, ``stage``, ``error``, ``code``, ``attempts``,
``req_guid``); without it, the first element that cannot be delivered fails
the pipeline, as Beam YAML's own transforms do.
"""

from __future__ import annotations

import pathlib
from typing import Any, Dict, Mapping, Optional

import apache_beam as beam
from apache_beam.pvalue import PCollection
from apache_beam.typehints.row_type import RowTypeConstraint

from raccoon_beam import io as raccoon_io
from raccoon_beam.batching import DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_SIZE
from raccoon_beam.errors import RaccoonDeadLetter
from raccoon_beam.retry import RetryPolicy
from raccoon_beam.transports import DEFAULT_MAX_IN_FLIGHT, DEFAULT_TIMEOUT
from raccoon_beam.transports.credentials import header_value_from_config

__all__ = ["WriteToRaccoon", "PROVIDERS_FILE", "EventTypeField", "dead_letter_row_type"]

PROVIDERS_FILE = pathlib.Path(__file__).resolve().parent / "yaml_providers.yaml"
"""A Beam YAML providers file declaring ``WriteToRaccoon``, for ``providers: [{include: ...}]``."""


class EventTypeField:
    """The event type read from a field of each element (a Row, or a dict).

    Args:
      name: the field's name.
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"event_type_field must be a field name, got {name!r}")
        self.name = name
        self.__qualname__ = f"field {name}"  # what describe_event_type shows

    def __call__(self, element: Any) -> Any:
        if isinstance(element, Mapping):
            return element[self.name]
        return getattr(element, self.name)

    def __reduce__(self):
        return (EventTypeField, (self.name,))


def dead_letter_row_type(element_type: Any) -> RowTypeConstraint:
    """The schema of the dead-letter rows, for an input of ``element_type``.

    Args:
      element_type: the input PCollection's element type.

    Returns:
      A row type with the fields of :class:`~raccoon_beam.errors.RaccoonDeadLetter`.
    """
    return RowTypeConstraint.from_fields([
        ("element", element_type),
        ("event_type", Optional[str]),
        ("stage", str),
        ("error", str),
        ("code", Optional[str]),
        ("attempts", int),
        ("req_guid", Optional[str]),
    ])


def _as_row(letter: RaccoonDeadLetter) -> beam.Row:
    return beam.Row(
        element=letter.element,
        event_type=letter.event_type,
        stage=letter.stage,
        error=letter.error,
        code=None if letter.code is None else str(letter.code),
        attempts=letter.attempts,
        req_guid=letter.req_guid,
    )


class WriteToRaccoon(beam.PTransform):
    """Writes each row to Raccoon as one event (Beam YAML's ``WriteToRaccoon``).

    Args:
      endpoint: ``grpc://host:port``, ``http(s)://host:port`` or ``ws(s)://host:port``.
      event_type: a constant event type.
      event_type_field: the field whose value is each row's event type
        (instead of ``event_type``).
      serializer: ``json``, ``protobuf`` (with ``message_type``), ``avro``
        (schema derived from the rows' schema unless ``avro_schema``) or ``bytes``.
      wire: ``protobuf`` or ``json`` (REST and WebSocket only).
      message_type: the full name of the protobuf message rows are converted to.
      descriptor_set: the FileDescriptorSet file defining ``message_type``
        (``protoc --descriptor_set_out --include_imports``).
      ignore_unknown_fields: with ``message_type``, skip row fields the
        message does not have instead of dead-lettering the row.
      avro_schema: an Avro schema (a mapping or JSON string) instead of the derived one.
      max_batch_size: the most events in one request.
      max_batch_bytes: the most bytes in one encoded request.
      max_event_bytes: the largest serialized event.
      max_buffering_duration: seconds; batch across bundles (streaming).
      max_attempts: attempts per request, the first included.
      initial_backoff: the first retry wait's upper bound, in seconds.
      max_backoff: the largest retry wait, in seconds.
      deadline: seconds after the first attempt after which no retry starts.
      timeout: seconds to wait for a request's answer.
      max_in_flight: the most requests in flight per worker thread.
      headers: extra headers sent with every request; a value is a string,
        ``{env: NAME}`` or ``{file: PATH}`` (read on the worker, again on a
        401; optional ``prefix``, e.g. ``"Bearer "``).
      group: the connection group.
      error_handling: ``{output: NAME}``: dead letters become the output
        ``NAME`` instead of failing the pipeline.
    """

    def __init__(
        self,
        endpoint: str,
        event_type: Optional[str] = None,
        event_type_field: Optional[str] = None,
        serializer: str = "json",
        wire: str = "protobuf",
        message_type: Optional[str] = None,
        descriptor_set: Optional[str] = None,
        ignore_unknown_fields: bool = False,
        avro_schema: Optional[Any] = None,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
        max_event_bytes: Optional[int] = None,
        max_buffering_duration: Optional[float] = None,
        max_attempts: Optional[int] = None,
        initial_backoff: Optional[float] = None,
        max_backoff: Optional[float] = None,
        deadline: Optional[float] = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        headers: Optional[Mapping[str, Any]] = None,
        group: Optional[str] = None,
        error_handling: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        if (event_type is None) == (event_type_field is None):
            raise ValueError("WriteToRaccoon needs exactly one of event_type and event_type_field")
        self._error_output = _error_output(error_handling)
        retry_options: Dict[str, Any] = {
            name: value
            for name, value in (
                ("max_attempts", max_attempts),
                ("initial_backoff", initial_backoff),
                ("max_backoff", max_backoff),
                ("deadline", deadline),
            )
            if value is not None
        }
        self._sink = raccoon_io.WriteToRaccoon(
            endpoint,
            event_type=event_type if event_type is not None else EventTypeField(str(event_type_field)),
            serializer=serializer,
            wire=wire,
            avro_schema=avro_schema,
            message_type=message_type,
            descriptor_set=descriptor_set,
            ignore_unknown_fields=ignore_unknown_fields,
            max_batch_size=max_batch_size,
            max_batch_bytes=max_batch_bytes,
            max_event_bytes=max_event_bytes,
            max_buffering_duration=max_buffering_duration,
            retry=RetryPolicy(**retry_options) if retry_options else None,
            timeout=timeout,
            max_in_flight=max_in_flight,
            headers={name: header_value_from_config(name, value) for name, value in (headers or {}).items()},
            group=group,
            # Beam YAML's rule: without error_handling, an error fails the pipeline.
            fail_on_error=self._error_output is None,
        )

    def expand(self, pcoll: PCollection) -> Dict[str, PCollection]:
        result = pcoll | "Write" >> self._sink
        if self._error_output is None:
            return {}
        rows = result.failed | "DeadLetterRows" >> beam.Map(_as_row).with_output_types(
            dead_letter_row_type(pcoll.element_type)
        )
        return {self._error_output: rows}


def _error_output(error_handling: Optional[Mapping[str, Any]]) -> Optional[str]:
    if not error_handling:
        return None
    if not isinstance(error_handling, Mapping) or not isinstance(error_handling.get("output"), str):
        raise ValueError(f"error_handling must be {{output: NAME}}, got {error_handling!r}")
    unknown = set(error_handling) - {"output"}
    if unknown:
        raise ValueError(f"error_handling takes only 'output', not {', '.join(sorted(map(str, unknown)))}")
    return str(error_handling["output"])
