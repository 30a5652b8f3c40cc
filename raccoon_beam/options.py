"""The options of ``WriteToRaccoon``: validated once, frozen, picklable.

Every check runs when the transform is built, before the pipeline runs, and
every message names the parameter as the user wrote it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Union

from raccoon_beam import serializers
from raccoon_beam._checks import is_positive_number
from raccoon_beam.serializers.protobuf_descriptors import picklable_message_type
from raccoon_beam.batching import DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_SIZE, check_batch_limits, check_positive_int
from raccoon_beam.delivery.flow import FlowOptions
from raccoon_beam.events import EventBuilder, EventTypeSpec, check_topic_pattern, describe_event_type
from raccoon_beam.protocol import DEFAULT_TOPIC_PATTERN
from raccoon_beam.retry import RetryPolicy
from raccoon_beam.transports import (
    DEFAULT_CONN_ID_HEADER,
    DEFAULT_CONN_ID_PREFIX,
    DEFAULT_GROUP_HEADER,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_SECRET_HEADERS,
    DEFAULT_TIMEOUT,
    TlsOptions,
    TransportConfig,
)
from raccoon_beam.transports.credentials import HeaderValue
from raccoon_beam.wire import Wire

__all__ = ["WriteOptions"]


@dataclasses.dataclass(frozen=True)
class WriteOptions:
    """Everything ``WriteToRaccoon`` was given, checked; see its docstring for each field.

    Derived, also checked at construction: ``transport`` (the
    :class:`~raccoon_beam.transports.TransportConfig`), ``flow`` (the
    :class:`~raccoon_beam.delivery.flow.FlowOptions`), ``builder`` (the
    :class:`~raccoon_beam.events.EventBuilder`) and ``wire_type``.

    Raises:
      ValueError, TypeError: an option is invalid; the message names it.
    """

    endpoint: str
    event_type: EventTypeSpec
    serializer: Union[str, Callable[[Any], bytes]] = "json"
    wire: str = "protobuf"
    avro_schema: Optional[Union[Dict[str, Any], str]] = None
    message_type: Optional[serializers.MessageTypeSpec] = None
    descriptor_set: Optional[serializers.DescriptorSetSpec] = None
    ignore_unknown_fields: bool = False
    json_bytes: str = serializers.DEFAULT_JSON_BYTES
    json_default: Optional[serializers.JsonDefault] = None
    avro_schema_registry_id: Optional[int] = None
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    max_event_bytes: Optional[int] = None
    topic_pattern: str = DEFAULT_TOPIC_PATTERN
    max_buffering_duration: Optional[float] = None
    retry: RetryPolicy = dataclasses.field(default_factory=RetryPolicy)
    timeout: float = DEFAULT_TIMEOUT
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    adaptive_throttling: bool = True
    max_events_per_second: Optional[float] = None
    ramp_up_duration: Optional[float] = None
    headers: Mapping[str, HeaderValue] = dataclasses.field(default_factory=dict)
    conn_id_header: str = DEFAULT_CONN_ID_HEADER
    conn_id_prefix: str = DEFAULT_CONN_ID_PREFIX
    group: Optional[str] = None
    group_header: str = DEFAULT_GROUP_HEADER
    tls: TlsOptions = dataclasses.field(default_factory=TlsOptions)
    secret_headers: Sequence[str] = ()
    proxy: Optional[str] = None
    fail_on_error: bool = False
    acknowledgements: bool = False
    # The processing-time clock of the buffering timer, as in GroupIntoBatches: not a
    # parameter of WriteToRaccoon; tests with TestStream replace it with a fake one.
    buffering_clock: Callable[[], float] = time.time
    # The input PCollection's element type, set by ``for_element_type`` in
    # expand(): serializer="avro" without avro_schema derives the schema from it.
    element_type: Any = dataclasses.field(default=None, repr=False, compare=False)

    transport: TransportConfig = dataclasses.field(init=False, repr=False, compare=False)
    flow: FlowOptions = dataclasses.field(init=False, repr=False, compare=False)
    builder: Optional[EventBuilder] = dataclasses.field(init=False, repr=False, compare=False)
    wire_type: Wire = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # A message class made at run time does not pickle by reference: keep its name and schema.
        message_type, descriptor_set = picklable_message_type(self.message_type, self.descriptor_set)
        object.__setattr__(self, "message_type", message_type)
        object.__setattr__(self, "descriptor_set", descriptor_set)
        check_batch_limits(self.max_batch_size, self.max_batch_bytes)
        if self.max_event_bytes is not None:
            check_positive_int("max_event_bytes", self.max_event_bytes)
        check_topic_pattern(self.topic_pattern)
        duration = self.max_buffering_duration
        if duration is not None and not is_positive_number(duration):
            raise ValueError(f"max_buffering_duration must be a positive number of seconds, got {duration!r}")
        if not isinstance(self.retry, RetryPolicy):
            raise TypeError(f"retry must be a RetryPolicy, got {type(self.retry).__name__}")
        if not isinstance(self.tls, TlsOptions):
            raise TypeError(f"tls must be a TlsOptions, got {type(self.tls).__name__}")
        for flag in ("fail_on_error", "acknowledgements"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be True or False, got {getattr(self, flag)!r}")
        transport = TransportConfig(
            endpoint=self.endpoint,
            wire=self.wire,
            timeout=self.timeout,
            headers=dict(self.headers or {}),
            conn_id_header=self.conn_id_header,
            conn_id_prefix=self.conn_id_prefix,
            group=self.group,
            group_header=self.group_header,
            tls=self.tls,
            max_in_flight=self.max_in_flight,
            secret_headers=tuple(DEFAULT_SECRET_HEADERS) + tuple(self.secret_headers),
            proxy=self.proxy,
        )
        flow = FlowOptions(
            adaptive_throttling=self.adaptive_throttling,
            max_events_per_second=self.max_events_per_second,
            ramp_up_duration=self.ramp_up_duration,
        )
        wire_type = Wire(transport.wire)
        builder: Optional[EventBuilder] = None
        if not self._waits_for_element_type():
            builder = EventBuilder(
                self.event_type,
                serializers.resolve_serializer(
                    self.serializer,
                    avro_schema=self.avro_schema,
                    message_type=self.message_type,
                    descriptor_set=self.descriptor_set,
                    ignore_unknown_fields=self.ignore_unknown_fields,
                    json_bytes=self.json_bytes,
                    json_default=self.json_default,
                    avro_schema_registry_id=self.avro_schema_registry_id,
                    element_type=self.element_type,
                ),
                wire_type,
                self.max_event_bytes,
                self.max_batch_bytes,
                self.topic_pattern,
            )
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "flow", flow)
        object.__setattr__(self, "wire_type", wire_type)
        object.__setattr__(self, "builder", builder)

    def __repr__(self) -> str:
        # The endpoint's password and the headers' values may be credentials:
        # shown as the transport configuration shows them, redacted.
        return f"WriteOptions(event_type={self.event_type_name!r}, serializer={self.serializer_name!r}, transport={self.transport!r})"

    def _waits_for_element_type(self) -> bool:
        """An Avro schema to derive from an input not seen yet (before expand())."""
        return self.serializer == "avro" and self.avro_schema is None and self.element_type is None

    def for_element_type(self, element_type: Any) -> "WriteOptions":
        """These options for an input of ``element_type`` (called in ``expand()``).

        Args:
          element_type: the input PCollection's element type.

        Returns:
          ``self`` when nothing depends on it, or a copy whose builder was
          made for it.

        Raises:
          ValueError: serializer="avro" without avro_schema on an input with
            no Beam schema.
        """
        if self.builder is not None:
            return self
        # Any, not None: None would mean "not seen yet" and leave no builder.
        return dataclasses.replace(self, element_type=Any if element_type is None else element_type)

    @property
    def serializer_name(self) -> str:
        """The serializer, for display data."""
        return serializers.describe_serializer(self.serializer)

    @property
    def serializer_display(self) -> Dict[str, Any]:
        """What the resolved serializer adds to display data (the Avro schema's name, fingerprint, ...)."""
        serializer = None if self.builder is None else self.builder.serializer
        return serializers.serializer_display(serializer)

    @property
    def event_type_name(self) -> str:
        """The event type, for display data."""
        return describe_event_type(self.event_type)
