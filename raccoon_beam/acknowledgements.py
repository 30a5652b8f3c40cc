"""The acknowledgement output: one schema'd record per acknowledged request (``result.acknowledged``).

``WriteToRaccoon(..., acknowledgements=True)`` makes ``result.acknowledged``,
a PCollection of :class:`RaccoonAck` with a Beam schema (``RowCoder``):
the request's ``req_guid``, its event count and counts per event type, its
size, its attempts, the transport, the connection id and the ack time.

Windowing: an ack record is in the window of the events it counts, with
the latest timestamp among them (a timestamp inside that window, never
before the events it stands for, so it is not late where they were not).
A request whose events are all in one window (always on the buffering path,
where ``GroupIntoBatches`` batches per window; and whenever a bundle's
elements share their window, e.g. the global window of a batch pipeline)
has one record. A request carrying events of several windows has one record
per window, each counting that window's events: summing ``events`` per
window gives the events acknowledged in that window, which is what
completeness checks need (input count = acknowledged + dead letters, per
window). An event in several windows (sliding windows) counts in each, as
it does in the input's per-window counts.

Nothing of this is built unless asked for: without ``acknowledgements`` the
delivery keeps no per-request record.
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Dict, List, NamedTuple, Sequence, Tuple

import apache_beam as beam
from apache_beam.utils import windowed_value
from apache_beam.utils.timestamp import Timestamp
from apache_beam.utils.windowed_value import WindowedValue

from raccoon_beam.delivery import AckedRequest

__all__ = ["RaccoonAck", "EventTypeCount", "ack_records"]


class EventTypeCount(NamedTuple):
    """How many events of one type a request carried."""

    event_type: str
    events: int


class RaccoonAck(NamedTuple):
    """One request the server acknowledged (or its events of one window; see the module docstring).

    Attributes:
      req_guid: the request's guid (the server's ``data.req_guid``).
      events: how many events it carried (in this record's window).
      event_types: the count per event type, sorted by type.
      bytes: the size of the encoded request, in bytes (the whole request).
      attempts: how many times it was sent before the ack.
      transport: ``"grpc"``, ``"rest"`` or ``"websocket"``.
      conn_id: the id of the connection that acknowledged it.
      ack_time: when the ack arrived.
    """

    req_guid: str
    events: int
    event_types: Sequence[EventTypeCount]
    bytes: int
    attempts: int
    transport: str
    conn_id: str
    ack_time: Timestamp


# A Beam schema for both: ready for WriteToJson, WriteToBigQuery and Beam SQL.
beam.coders.registry.register_coder(EventTypeCount, beam.coders.RowCoder)
beam.coders.registry.register_coder(RaccoonAck, beam.coders.RowCoder)


def ack_records(
    acked: AckedRequest[Any], transport: str, windowed: Callable[[Any], WindowedValue]
) -> List[WindowedValue]:
    """The ack records of one acknowledged request: one per window of its events.

    Args:
      acked: the request, as the delivery report lists it.
      transport: the transport's kind.
      windowed: an event's source -> its element's WindowedValue (a bare
        source is in the bundle's shared window, timestamp and pane).
    """
    sources = acked.sources
    # (windows) -> (latest timestamp in micros, event types); one entry in the usual case.
    groups: Dict[Tuple[Any, ...], Tuple[int, List[str]]] = {}
    if WindowedValue not in map(type, sources):
        # Bare sources share the bundle's windowing: no per-event work.
        shared = windowed(sources[0])
        groups[tuple(shared.windows)] = (shared.timestamp_micros, acked.event_types)
    else:
        for source, event_type in zip(sources, acked.event_types):
            element = windowed(source)
            key = tuple(element.windows)
            latest, types = groups.get(key, (element.timestamp_micros, []))
            types.append(event_type)
            groups[key] = (max(latest, element.timestamp_micros), types)
    ack_time = Timestamp.of(acked.ack_time)
    records = []
    for windows, (latest, types) in groups.items():
        record = RaccoonAck(
            req_guid=acked.req_guid,
            events=len(types),
            event_types=_counts(types),
            bytes=acked.bytes,
            attempts=acked.attempts,
            transport=transport,
            conn_id=acked.conn_id,
            ack_time=ack_time,
        )
        records.append(windowed_value.create(record, latest, windows))
    return records


def _counts(types: List[str]) -> List[EventTypeCount]:
    """The count per event type, sorted by type."""
    first = types[0]
    if types.count(first) == len(types):  # one type (a constant event_type): no counting per event
        return [EventTypeCount(first, len(types))]
    return [EventTypeCount(t, n) for t, n in sorted(collections.Counter(types).items())]
