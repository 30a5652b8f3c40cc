"""Beam YAML's ``WriteToRaccoon`` config -> the keyword arguments of :class:`raccoon_beam.WriteToRaccoon`.

The options are not a second list kept by hand: every keyword option of
:class:`raccoon_beam.WriteToRaccoon` is accepted under its own name, except
the few that a YAML file spells the way Beam YAML's own IOs do
(``apache_beam/yaml/standard_io.yaml``) or cannot hold as they are:

==========================  ================================================
YAML                        ``raccoon_beam.WriteToRaccoon``
==========================  ================================================
``format``                  ``serializer``: ``JSON``, ``AVRO``, ``PROTO``,
                            ``RAW`` / ``STRING`` (Beam's formats, any case:
                            RAW is a row's only field), or this package's
                            ``json``, ``avro``, ``protobuf``, ``bytes``
``schema``                  ``avro_schema`` (with ``format: AVRO``)
``message_name``            ``message_type`` (a full name)
``file_descriptor_path``    ``descriptor_set``
``event_type_field``        ``event_type`` read from a field of each row
``max_attempts``, ...       ``retry``: one option per field of ``RetryPolicy``
``tls: {ca_certs: ...}``    ``tls``: the fields of ``TlsOptions``
``headers``                 values as strings, ``{env: NAME}`` or ``{file: PATH}``
``json_default``            the dotted name of a function (``mypkg.to_json``)
``error_handling``          ``fail_on_error`` when absent, Beam YAML's rule
==========================  ================================================

The names this package used before (``serializer``, ``avro_schema``,
``message_type``, ``descriptor_set``) are still accepted, with a
DeprecationWarning.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import typing
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from apache_beam.typehints.schemas import typing_to_runner_api

from raccoon_beam.errors import SerializationError
from raccoon_beam.retry import RetryPolicy
from raccoon_beam.serializers.plain import fields_of, type_name
from raccoon_beam.serializers.raw import BytesSerializer
from raccoon_beam.transports import TlsOptions
from raccoon_beam.transports.credentials import header_value_from_config

__all__ = ["RawPayload", "FORMATS", "DEPRECATED_NAMES", "yaml_signature", "yaml_docstring", "sink_arguments"]

FORMATS: Dict[str, str] = {
    "JSON": "json",
    "AVRO": "avro",
    "PROTO": "protobuf",
    "PROTOBUF": "protobuf",
    "RAW": "raw",
    "STRING": "raw",
    "BYTES": "bytes",
}
"""``format`` (any case) -> serializer: Beam YAML's format names, and this package's.

``raw`` is Beam YAML's RAW (:class:`RawPayload`): a row of exactly one field, whose value is the payload.
"""

DEPRECATED_NAMES: Dict[str, str] = {
    "serializer": "format",
    "avro_schema": "schema",
    "message_type": "message_name",
    "descriptor_set": "file_descriptor_path",
}
"""Names this package's YAML used before -> Beam YAML's name for the same option."""

# Options of raccoon_beam.WriteToRaccoon that YAML spells its own way (above),
# or that only Python can give (a clock is a test's hook).
_SPELLED_IN_YAML = frozenset(
    {"endpoint", "event_type", "serializer", "avro_schema", "message_type", "descriptor_set", "retry", "tls",
     "headers", "json_default", "fail_on_error", "buffering_clock"}
)
_RETRY_FIELDS = tuple(field.name for field in dataclasses.fields(RetryPolicy) if field.init)
_TLS_FIELDS = tuple(field.name for field in dataclasses.fields(TlsOptions) if field.init)
_P = inspect.Parameter


def _sink_parameters(sink: type) -> List[inspect.Parameter]:
    """The keyword options of raccoon_beam.WriteToRaccoon that YAML passes on as they are."""
    parameters = inspect.signature(sink).parameters.values()  # the class: its __init__ without self
    return [p for p in parameters if p.kind is _P.KEYWORD_ONLY and p.name not in _SPELLED_IN_YAML]


def _annotation(parameter: inspect.Parameter, namespace: Dict[str, Any]) -> Any:
    """The parameter's type if Beam can make a schema field of it (for its YAML docs), else Any."""
    annotation = parameter.annotation
    try:
        if isinstance(annotation, str):
            annotation = eval(annotation, namespace)  # noqa: S307 - the package's own annotations
        typing_to_runner_api(annotation)
    except Exception:  # a forward reference or a type with no Beam schema equivalent
        return Any
    return annotation


def yaml_signature(sink: type) -> inspect.Signature:
    """The signature Beam YAML shows and documents for ``WriteToRaccoon`` (``self`` first).

    Beam YAML's inline provider reads a transform's options from its
    ``__init__`` signature; this one is built from the sink's.

    Args:
      sink: ``raccoon_beam.WriteToRaccoon`` (passed in: this module sits below the sink).
    """
    module = importlib.import_module(sink.__module__)
    namespace = dict(vars(module), typing=typing, **{name: getattr(typing, name) for name in typing.__all__})

    def keyword(name: str, annotation: Any, default: Any = None) -> inspect.Parameter:
        return _P(name, _P.KEYWORD_ONLY, default=default, annotation=annotation)

    retry_hints = typing.get_type_hints(RetryPolicy)
    tls = typing.Mapping[str, Any]
    own = [
        _P("self", _P.POSITIONAL_OR_KEYWORD),
        _P("endpoint", _P.POSITIONAL_OR_KEYWORD, annotation=str),
        keyword("event_type", Optional[str]),
        keyword("event_type_field", Optional[str]),
        keyword("format", str, "JSON"),
        keyword("schema", Optional[Any]),
        keyword("message_name", Optional[str]),
        keyword("file_descriptor_path", Optional[str]),
        *(keyword(name, Optional[retry_hints[name]]) for name in _RETRY_FIELDS),
        keyword("tls", Optional[tls]),
        keyword("headers", Optional[Mapping[str, Any]]),
        keyword("json_default", Optional[str]),
    ]
    passed_on = [
        keyword(p.name, _annotation(p, namespace), p.default) for p in _sink_parameters(sink)
    ]
    deprecated = [keyword(name, Optional[Any]) for name in DEPRECATED_NAMES]
    return inspect.Signature(own + passed_on + deprecated + [keyword("error_handling", Optional[Mapping[str, Any]])])


def yaml_docstring(own_doc: str, sink: type) -> str:
    """``own_doc`` with the sink's docs of the options passed on as they are added to its ``Args:``.

    Beam YAML documents each option from the transform's docstring; the
    options passed on are documented where they are defined, in the sink's.
    """
    sink_lines = (sink.__doc__ or "").splitlines()
    wanted = {p.name for p in _sink_parameters(sink)}
    blocks: List[str] = []
    keep = False
    for line in sink_lines:
        stripped = line.strip()
        if line.startswith("      ") and not line.startswith("        ") and ":" in stripped:
            keep = stripped.split(":", 1)[0] in wanted
        elif not line.startswith("        "):
            keep = False
        if keep:
            blocks.append(line)
    lines = own_doc.splitlines()
    at = next((i for i, line in enumerate(lines) if line.strip() == "Args:"), None)
    if at is None or not blocks:
        return own_doc
    return "\n".join(lines[: at + 1] + blocks + lines[at + 1 :])


def sink_arguments(
    config: Mapping[str, Any],
    signature: inspect.Signature,
    event_type_from_field: Callable[[str], Any],
    fail_on_error: bool,
) -> Tuple[str, Dict[str, Any]]:
    """The endpoint and keyword arguments of raccoon_beam.WriteToRaccoon for a YAML config.

    Args:
      config: the transform's ``config`` from the YAML file, ``endpoint``
        included, ``error_handling`` excluded.
      signature: :func:`yaml_signature` of the sink.
      event_type_from_field: field name -> the ``event_type`` callable that reads it.
      fail_on_error: raise instead of dead-lettering (no ``error_handling``).

    Returns:
      ``(endpoint, kwargs)``.

    Raises:
      ValueError: an unknown option (the message names the closest known
        one), an old name given with its new one, an unknown ``format``, or
        an invalid value.
    """
    options = dict(config)
    for old, new in DEPRECATED_NAMES.items():
        if old in options:
            if new in options:
                raise ValueError(f"WriteToRaccoon: give {new!r} only ({old!r} is its old name)")
            warnings.warn(
                f"WriteToRaccoon: {old!r} is deprecated in Beam YAML, use {new!r} (Beam YAML's name)",
                DeprecationWarning,
                stacklevel=4,
            )
            options[new] = options.pop(old)
    known = set(signature.parameters) - {"self", "error_handling"} - set(DEPRECATED_NAMES)
    unknown = sorted(set(options) - known)
    if unknown:
        hints = [
            f"{name!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(name, known, 1)) else "")
            for name in unknown
        ]
        raise ValueError(f"WriteToRaccoon: unknown option {', '.join(hints)}; the options: {', '.join(sorted(known))}")
    if "endpoint" not in options:
        raise ValueError("WriteToRaccoon needs endpoint")
    endpoint = options.pop("endpoint")
    event_type, field = options.pop("event_type", None), options.pop("event_type_field", None)
    if (event_type is None) == (field is None):
        raise ValueError("WriteToRaccoon needs exactly one of event_type and event_type_field")
    kwargs: Dict[str, Any] = {
        "event_type": event_type if event_type is not None else event_type_from_field(field),
        "serializer": _serializer(options.pop("format", "JSON")),
        "fail_on_error": fail_on_error,
    }
    renamed = {"schema": "avro_schema", "message_name": "message_type", "file_descriptor_path": "descriptor_set"}
    for name, sink_name in renamed.items():
        if options.get(name) is not None:
            kwargs[sink_name] = options.pop(name)
        options.pop(name, None)
    retry = {name: options.pop(name) for name in _RETRY_FIELDS if options.get(name) is not None}
    for name in _RETRY_FIELDS:
        options.pop(name, None)
    if retry:
        kwargs["retry"] = RetryPolicy(**retry)
    tls = options.pop("tls", None)
    if tls is not None:
        kwargs["tls"] = _tls(tls)
    headers = options.pop("headers", None)
    if headers:
        kwargs["headers"] = {name: header_value_from_config(name, value) for name, value in headers.items()}
    json_default = options.pop("json_default", None)
    if json_default is not None:
        kwargs["json_default"] = _function(json_default)
    kwargs.update(options)  # every other option under raccoon_beam.WriteToRaccoon's own name
    return str(endpoint), kwargs


def _serializer(format_name: Any) -> Any:
    if not isinstance(format_name, str) or format_name.upper() not in FORMATS:
        raise ValueError(
            f"WriteToRaccoon: format must be one of {', '.join(sorted(FORMATS))} (any case), got {format_name!r}"
        )
    name = FORMATS[format_name.upper()]
    return RawPayload() if name == "raw" else name


class RawPayload:
    """Beam YAML's RAW format: the payload is the only field of the row, bytes (or a str, as UTF-8).

    As Beam YAML's own IOs take RAW (``WriteToPubSub``, ``WriteToKafka``): a
    row of any other shape, or a field of another type, is a dead letter.
    Bare bytes and strings are taken as they are.
    """

    def __call__(self, element: Any) -> bytes:
        if isinstance(element, (bytes, str)):
            return _AS_BYTES(element)
        fields = fields_of(element)
        items = None if fields is None else list(fields)
        if items is None or len(items) != 1:
            names = "" if items is None else f" ({', '.join(name for name, _ in items)})"
            raise SerializationError(f"format RAW takes rows of exactly one field, got {type_name(element)}{names}")
        name, value = items[0]
        try:
            return _AS_BYTES(value)
        except SerializationError as exc:
            raise SerializationError(f"format RAW: field {name!r}: {exc}") from exc


_AS_BYTES = BytesSerializer()


def _tls(config: Any) -> TlsOptions:
    if not isinstance(config, Mapping):
        raise ValueError(f"WriteToRaccoon: tls must be a mapping of {', '.join(_TLS_FIELDS)}, got {config!r:.80}")
    unknown = sorted(set(map(str, config)) - set(_TLS_FIELDS))
    if unknown:
        raise ValueError(f"WriteToRaccoon: tls has no option {', '.join(unknown)}; it has {', '.join(_TLS_FIELDS)}")
    return TlsOptions(**config)


def _function(dotted_name: Any) -> Callable[[Any], Any]:
    """The function a dotted name (``package.module.function``) names."""
    if not isinstance(dotted_name, str) or "." not in dotted_name:
        raise ValueError(f"WriteToRaccoon: json_default must be a function's dotted name, got {dotted_name!r}")
    module_name, _, attribute = dotted_name.rpartition(".")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"WriteToRaccoon: json_default {dotted_name!r} cannot be imported: {exc}") from exc
    if not callable(function):
        raise ValueError(f"WriteToRaccoon: json_default {dotted_name!r} is not callable")
    return function
