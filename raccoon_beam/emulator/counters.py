"""Request, event, connection and fault counters, and their snapshot.

Every request that the emulator reads ends in exactly one of: accepted
(its batch captured, whatever the answer), rejected (not captured: bad
request, injected fault, publish failure, dropped before capture, shed by
the gateway) or deduplicated (WebSocket dedup hit). So, per transport and
once nothing is in flight, ``received == accepted + rejected + deduplicated``.

An accepted request whose ``req_guid`` was accepted before is also counted
as *duplicated* (the same batch published twice: a client's retry after a
timeout, as Raccoon would publish it). The guids are remembered for the
last ``DEFAULT_MAX_TRACKED_GUIDS`` requests.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from typing import Any, Deque, Dict, List, NamedTuple, Optional, Tuple

__all__ = [
    "Counters",
    "CountersSnapshot",
    "Rejection",
    "DEFAULT_MAX_CONNECTION_KEYS",
    "DEFAULT_RECENT_REJECTIONS",
    "DEFAULT_MAX_TRACKED_GUIDS",
]

# Per-connection request counts are kept for this many (transport, conn_id)
# pairs; later ones are counted under conn_id OTHER_CONNECTIONS, so that a
# client minting a connection id per request cannot grow the emulator's memory.
DEFAULT_MAX_CONNECTION_KEYS = 1000
OTHER_CONNECTIONS = "(other)"
# The last rejections kept with their reasons (what the console lists).
DEFAULT_RECENT_REJECTIONS = 50
# req_guids remembered to count duplicates: about 20 MB at most, and 100 M
# events in batches of 500. A retry comes seconds or minutes after its first
# attempt, so forgetting the oldest guids loses (almost) no duplicate.
DEFAULT_MAX_TRACKED_GUIDS = 200_000


class Rejection(NamedTuple):
    """One rejected request, as the console lists it."""

    at: float  # Unix seconds
    transport: str
    conn_id: str
    kind: str  # a fault kind, or "bad_request"
    reason: str


@dataclasses.dataclass(frozen=True)
class CountersSnapshot:
    """The counters at one moment.

    Attributes:
      requests_received: per transport, requests read in full.
      requests_accepted: per transport, requests whose batch was captured.
      requests_rejected: per transport, requests not captured.
      requests_deduplicated: per transport, WebSocket requests dropped by dedup.
      events_accepted: per transport, events captured.
      events_deduplicated: events of the deduplicated requests.
      requests_duplicated: per transport, accepted requests whose req_guid had
        been accepted before (published twice).
      events_duplicated: events of the duplicated requests.
      faults: per fault kind, per transport, how many requests it hit.
      connections_open: WebSocket connections open now.
      connections_refused: WebSocket connections refused (duplicate, limit).
      requests_by_connection: per transport, per connection id, requests received
        (the first ``DEFAULT_MAX_CONNECTION_KEYS`` pairs; the rest under ``"(other)"``).
    """

    requests_received: Dict[str, int]
    requests_accepted: Dict[str, int]
    requests_rejected: Dict[str, int]
    requests_deduplicated: Dict[str, int]
    events_accepted: Dict[str, int]
    events_deduplicated: int
    faults: Dict[str, Dict[str, int]]
    connections_open: int
    connections_refused: int
    requests_by_connection: Dict[str, Dict[str, int]] = dataclasses.field(default_factory=dict)
    requests_duplicated: Dict[str, int] = dataclasses.field(default_factory=dict)
    events_duplicated: int = 0

    @property
    def total_events_accepted(self) -> int:
        return sum(self.events_accepted.values())

    @property
    def duplicates_dropped(self) -> int:
        """Requests answered but not captured again because of dedup."""
        return sum(self.requests_deduplicated.values())

    def received(self, transport: Optional[str] = None) -> int:
        return _pick(self.requests_received, transport)

    def accepted(self, transport: Optional[str] = None) -> int:
        return _pick(self.requests_accepted, transport)

    def rejected(self, transport: Optional[str] = None) -> int:
        return _pick(self.requests_rejected, transport)

    def injected(self, kind: Optional[str] = None, transport: Optional[str] = None) -> int:
        """How many requests faults hit (of one kind and/or transport, or all)."""
        total = 0
        for fault_kind, per_transport in self.faults.items():
            if kind is None or fault_kind == kind:
                total += _pick(per_transport, transport)
        return total

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, value: Dict[str, Any]) -> "CountersSnapshot":
        return cls(**value)


def _pick(per_transport: Dict[str, int], transport: Optional[str]) -> int:
    if transport is None:
        return sum(per_transport.values())
    return per_transport.get(transport, 0)


class Counters:
    """Mutable counters; updated on the server loop, snapshotted from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._received: Dict[str, int] = {}
            self._accepted: Dict[str, int] = {}
            self._rejected: Dict[str, int] = {}
            self._deduplicated: Dict[str, int] = {}
            self._events: Dict[str, int] = {}
            self._events_deduplicated = 0
            self._faults: Dict[Tuple[str, str], int] = {}
            self._refused = 0
            self._by_connection: Dict[Tuple[str, str], int] = {}
            self._duplicated: Dict[str, int] = {}
            self._events_duplicated = 0
            # Ordered: the oldest is forgotten first (popitem(last=False) is O(1)).
            self._guids: "collections.OrderedDict[str, None]" = collections.OrderedDict()
            self._recent: Deque[Rejection] = collections.deque(maxlen=DEFAULT_RECENT_REJECTIONS)
        # Open connections are a state, not a count since reset: kept.
        if not hasattr(self, "connections_open"):
            self.connections_open = 0

    def received(self, transport: str, conn_id: str = "") -> None:
        key = (transport, conn_id)
        with self._lock:
            self._received[transport] = self._received.get(transport, 0) + 1
            by_connection = self._by_connection
            count = by_connection.get(key)
            if count is None and len(by_connection) >= DEFAULT_MAX_CONNECTION_KEYS:
                key = (transport, OTHER_CONNECTIONS)
                count = by_connection.get(key)
            by_connection[key] = (count or 0) + 1

    def accepted(self, transport: str, events: int, req_guid: str = "") -> None:
        """Counts a request whose batch was captured (published).

        Args:
          transport: "grpc", "rest" or "websocket".
          events: how many events it carried.
          req_guid: its guid; one accepted before makes it a duplicate ("": not tracked).
        """
        with self._lock:
            self._accepted[transport] = self._accepted.get(transport, 0) + 1
            self._events[transport] = self._events.get(transport, 0) + events
            if not req_guid:
                return
            guids = self._guids
            if req_guid in guids:
                self._duplicated[transport] = self._duplicated.get(transport, 0) + 1
                self._events_duplicated += events
                return
            if len(guids) >= DEFAULT_MAX_TRACKED_GUIDS:
                guids.popitem(last=False)
            guids[req_guid] = None

    def rejected(self, transport: str, fault: Optional[str] = None, reason: str = "", conn_id: str = "") -> None:
        """Counts a rejected request; ``fault`` is the fault kind that rejected it, if any."""
        rejection = Rejection(time.time(), transport, conn_id, fault or "bad_request", reason)
        with self._lock:
            self._rejected[transport] = self._rejected.get(transport, 0) + 1
            if fault is not None:
                self._faults[(fault, transport)] = self._faults.get((fault, transport), 0) + 1
            self._recent.append(rejection)

    def recent_rejections(self) -> List[Rejection]:
        """The last rejected requests with their reasons, oldest first."""
        with self._lock:
            return list(self._recent)

    def deduplicated(self, transport: str, events: int) -> None:
        with self._lock:
            self._deduplicated[transport] = self._deduplicated.get(transport, 0) + 1
            self._events_deduplicated += events

    def fault(self, kind: str, transport: str) -> None:
        with self._lock:
            self._faults[(kind, transport)] = self._faults.get((kind, transport), 0) + 1

    def refused(self) -> None:
        with self._lock:
            self._refused += 1

    def snapshot(self) -> CountersSnapshot:
        with self._lock:
            faults: Dict[str, Dict[str, int]] = {}
            for (kind, transport), value in self._faults.items():
                faults.setdefault(kind, {})[transport] = value
            by_connection: Dict[str, Dict[str, int]] = {}
            for (transport, conn_id), value in self._by_connection.items():
                by_connection.setdefault(transport, {})[conn_id] = value
            return CountersSnapshot(
                requests_received=dict(self._received),
                requests_accepted=dict(self._accepted),
                requests_rejected=dict(self._rejected),
                requests_deduplicated=dict(self._deduplicated),
                events_accepted=dict(self._events),
                events_deduplicated=self._events_deduplicated,
                faults=faults,
                connections_open=self.connections_open,
                connections_refused=self._refused,
                requests_by_connection=by_connection,
                requests_duplicated=dict(self._duplicated),
                events_duplicated=self._events_duplicated,
            )
