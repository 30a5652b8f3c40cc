"""Beam YAML entry point: ``type: WriteToRaccoon`` through Beam's inline Python provider.

A pipeline includes :data:`PROVIDERS_FILE` (or declares the same provider)::

    providers:
      - include: <raccoon_beam/yaml_providers.yaml>

and writes a schema'd PCollection, with the option names of Beam YAML's own
IOs (``format``, ``schema``, ``message_name``, ``file_descriptor_path``) and
every other option of :class:`raccoon_beam.WriteToRaccoon` under its own name
(:mod:`raccoon_beam.yaml_options`)::

    - type: WriteToRaccoon
      input: ReadClicks
      config:
        endpoint: grpcs://raccoon:8443
        event_type_field: event_name
        format: JSON
        tls: {ca_certs: /etc/raccoon/ca.pem}
        headers:
          Authorization: {env: RACCOON_TOKEN, prefix: "Bearer "}
        error_handling:
          output: dead_letters

Dead letters follow Beam YAML's ``error_handling`` convention: with
``error_handling: {output: NAME}`` they are the output ``NAME``, rows of
Beam's error shape ``(element, msg, stack)`` (``stack`` is empty: a dead
letter is a verdict, not an exception) with the rest of the
:class:`~raccoon_beam.errors.RaccoonDeadLetter` beside it (``event_type``,
``stage``, ``code``, ``attempts``, ``req_guid``, ...); without it, the first
element that cannot be delivered fails the pipeline, as Beam YAML's own
transforms do.
"""

from __future__ import annotations

import pathlib
import typing
from typing import Any, Dict, Mapping, Optional

import apache_beam as beam
from apache_beam.pvalue import PCollection
from apache_beam.typehints.row_type import RowTypeConstraint

from raccoon_beam import io as raccoon_io
from raccoon_beam.errors import STAGE_SERIALIZE, RaccoonDeadLetter
from raccoon_beam.events import EventRejected
from raccoon_beam.yaml_options import sink_arguments, yaml_docstring, yaml_signature

__all__ = ["WriteToRaccoon", "PROVIDERS_FILE", "PACKAGED_PROVIDERS_FILE", "EventTypeField", "dead_letter_row_type"]

PROVIDERS_FILE = pathlib.Path(__file__).resolve().parent / "yaml_providers.yaml"
"""A Beam YAML providers file declaring ``WriteToRaccoon``, for ``providers: [{include: ...}]``."""

PACKAGED_PROVIDERS_FILE = pathlib.Path(__file__).resolve().parent / "yaml_providers_packages.yaml"
"""The same transforms with ``packages: [raccoon-beam]``: Beam YAML installs the package itself."""


class EventTypeField:
    """The event type read from a field of each element (a Row, or a dict).

    An element without the field, or with a null there, is dead-lettered with
    a reason naming the field.

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
            value = element.get(self.name)
            missing = self.name not in element
        else:
            value = getattr(element, self.name, None)
            missing = not hasattr(element, self.name)
        if value is None:
            state = "missing from the element" if missing else "null"
            raise EventRejected(STAGE_SERIALIZE, f"event_type_field {self.name!r} is {state}")
        return value

    def __reduce__(self):
        return (EventTypeField, (self.name,))


_LETTER_TYPES = typing.get_type_hints(RaccoonDeadLetter)
# The dead letter's fields that go beside Beam's (element, msg, stack): all but those two.
_EXTRA_FIELDS = tuple(name for name in RaccoonDeadLetter._fields if name not in ("element", "error"))


def dead_letter_row_type(element_type: Any) -> RowTypeConstraint:
    """The schema of the dead-letter rows, for an input of ``element_type``.

    Args:
      element_type: the input PCollection's element type.

    Returns:
      Beam YAML's error row ``(element, msg, stack)``, then the other fields
      of :class:`~raccoon_beam.errors.RaccoonDeadLetter`.
    """
    return RowTypeConstraint.from_fields(
        [("element", element_type), ("msg", str), ("stack", str)]
        + [(name, _LETTER_TYPES[name]) for name in _EXTRA_FIELDS]
    )


def _as_row(letter: RaccoonDeadLetter) -> beam.Row:
    return beam.Row(
        element=letter.element,
        msg=letter.error,
        stack="",
        **{name: getattr(letter, name) for name in _EXTRA_FIELDS},
    )


class WriteToRaccoon(beam.PTransform):
    """Writes each row to Raccoon as one event (Beam YAML's ``WriteToRaccoon``).

    Every option of :class:`raccoon_beam.WriteToRaccoon` is accepted under
    its own name (``max_batch_size``, ``wire``, ``group``, ``proxy``, ...);
    the ones below are spelled as Beam YAML's IOs spell them, or hold what a
    YAML file can write.

    Args:
      endpoint: ``grpc(s)://host:port``, ``http(s)://host:port`` or ``ws(s)://host:port``.
      event_type: a constant event type.
      event_type_field: the field whose value is each row's event type
        (instead of ``event_type``).
      format: ``JSON`` (default), ``AVRO``, ``PROTO`` or ``RAW``, as in Beam
        YAML's IOs (any case).
      schema: with ``AVRO``, the Avro schema (a mapping or JSON string);
        by default derived from the rows' schema.
      message_name: with ``PROTO``, the full name of the message rows are
        converted to.
      file_descriptor_path: the FileDescriptorSet file defining
        ``message_name`` (``protoc --descriptor_set_out --include_imports``).
      max_attempts: attempts per request, the first included.
      initial_backoff: the first retry wait's upper bound, in seconds.
      max_backoff: the largest retry wait, in seconds.
      deadline: seconds after the first attempt after which no retry starts.
      tls: ``{ca_certs: PATH, client_cert: PATH, client_key: PATH, verify:
        BOOL, server_hostname: NAME}`` for ``grpcs``, ``https`` and ``wss``.
      headers: extra headers sent with every request; a value is a string,
        ``{env: NAME}`` or ``{file: PATH}`` (read on the worker, again on a
        401; optional ``prefix``, e.g. ``"Bearer "``).
      json_default: with ``JSON``, the dotted name of a function for values
        of your own types (``mypkg.to_json``).
      serializer: deprecated name of ``format``.
      avro_schema: deprecated name of ``schema``.
      message_type: deprecated name of ``message_name``.
      descriptor_set: deprecated name of ``file_descriptor_path``.
      error_handling: ``{output: NAME}``: dead letters become the output
        ``NAME`` instead of failing the pipeline.
    """

    def __init__(self, endpoint: str, **config: Any) -> None:
        super().__init__()
        error_handling = config.pop("error_handling", None)
        self._error_output = _error_output(error_handling)
        sink_endpoint, kwargs = sink_arguments(
            {"endpoint": endpoint, **config},
            _SIGNATURE,
            EventTypeField,
            # Beam YAML's rule: without error_handling, an error fails the pipeline.
            fail_on_error=self._error_output is None,
        )
        self._sink = raccoon_io.WriteToRaccoon(sink_endpoint, **kwargs)

    def expand(self, pcoll: PCollection) -> Dict[str, PCollection]:
        result = pcoll | "Write" >> self._sink
        outputs: Dict[str, PCollection] = {}
        acknowledged = getattr(result, "acknowledged", None)
        if acknowledged is not None:  # acknowledgements: true
            outputs["acknowledged"] = acknowledged
        if self._error_output is not None:
            outputs[self._error_output] = result.failed | "DeadLetterRows" >> beam.Map(_as_row).with_output_types(
                dead_letter_row_type(pcoll.element_type)
            )
        return outputs


# Beam YAML reads the options (and their docs) from __init__'s signature:
# the sink's own, with Beam YAML's names where they differ.
_SIGNATURE = yaml_signature(raccoon_io.WriteToRaccoon)
WriteToRaccoon.__init__.__signature__ = _SIGNATURE  # type: ignore[attr-defined]
WriteToRaccoon.__doc__ = yaml_docstring(WriteToRaccoon.__doc__ or "", raccoon_io.WriteToRaccoon)


def _error_output(error_handling: Optional[Mapping[str, Any]]) -> Optional[str]:
    if not error_handling:
        return None
    if not isinstance(error_handling, Mapping) or not isinstance(error_handling.get("output"), str):
        raise ValueError(f"error_handling must be {{output: NAME}}, got {error_handling!r}")
    unknown = set(error_handling) - {"output"}
    if unknown:
        raise ValueError(f"error_handling takes only 'output', not {', '.join(sorted(map(str, unknown)))}")
    return str(error_handling["output"])
