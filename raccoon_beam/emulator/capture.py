"""What the emulator accepted: captured events and per-type digests.

Two modes: ``"events"`` keeps every event (for tests); ``"digest"`` keeps,
per event type, only a count, a byte total and an order-independent digest
(for benchmarks with millions of events). Both modes maintain the digests,
and :func:`expected_digest` computes the same from what a client sent.

The digest of a type is the sum, modulo 2**128, of the 128-bit BLAKE2b hash
of each event's bytes: a multiset hash, so neither batching nor order nor
the transport changes it, while a lost, duplicated or altered event does.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from typing import IO, Dict, Iterable, List, NamedTuple, Optional, Tuple

from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.emulator.config import CAPTURE_MODES, DEFAULT_TOPIC_PATTERN
from raccoon_beam.protocol import KAFKA_TOPIC_MAX_CHARS

__all__ = [
    "CapturedEvent",
    "TypeDigest",
    "Capture",
    "CAPTURE_MODES",
    "DEFAULT_TOPIC_PATTERN",
    "expected_digest",
    "format_topic",
]

_DIGEST_MOD = 1 << 128
# Topics remembered per event type: far more than a real deployment has types.
_TOPIC_CACHE_SIZE = 10_000


class CapturedEvent(NamedTuple):
    """One accepted event and where it came from."""

    type: str
    event_bytes: bytes
    req_guid: str
    conn_id: str
    group: str
    transport: str  # "grpc" | "rest" | "websocket"
    topic: str
    captured_at: float = 0.0  # Unix seconds, one reading per batch (latency benchmarks)


class TypeDigest(NamedTuple):
    """Count, total payload bytes and order-independent digest of one event type."""

    count: int  # type: ignore[assignment]  # shadows tuple.count; the name is public (JSON "count")
    total_bytes: int
    digest: str  # 32 hex digits


def format_topic(pattern: str, event_type: str) -> str:
    """The topic Raccoon publishes ``event_type`` to (Go's ``fmt.Sprintf(pattern, type)``)."""
    try:
        return pattern % event_type
    except (TypeError, ValueError):
        # Go never fails here; a pattern without %s keeps its text.
        return pattern


def _event_hash(event_bytes: bytes, _blake2b=hashlib.blake2b, _from_bytes=int.from_bytes) -> int:
    return _from_bytes(_blake2b(event_bytes, digest_size=16).digest(), "little")


def _to_digest(count: int, total: int, hash_sum: int) -> TypeDigest:
    return TypeDigest(count, total, format(hash_sum % _DIGEST_MOD, "032x"))


def expected_digest(events: Iterable[Tuple[str, bytes]]) -> Dict[str, TypeDigest]:
    """The digests an emulator reports after accepting exactly ``events``.

    Args:
      events: ``(event_type, event_bytes)`` pairs, in any order.
    """
    sums: Dict[str, List[int]] = {}
    for event_type, event_bytes in events:
        acc = sums.setdefault(event_type, [0, 0, 0])
        acc[0] += 1
        acc[1] += len(event_bytes)
        acc[2] += _event_hash(event_bytes)
    return {t: _to_digest(*acc) for t, acc in sums.items()}


class Capture:
    """Records accepted batches; written on the server loop, read from any thread.

    Args:
      mode: ``"events"`` or ``"digest"``.
      topic_pattern: Raccoon's ``EVENT_DISTRIBUTION_PUBLISHER_PATTERN``.
      output: path of a JSONL file that receives every captured event.
    """

    def __init__(
        self,
        mode: str = "events",
        topic_pattern: str = DEFAULT_TOPIC_PATTERN,
        output: Optional[str] = None,
    ) -> None:
        if mode not in CAPTURE_MODES:
            raise ValueError(f"capture mode must be one of {CAPTURE_MODES}, not {mode!r}")
        self.mode = mode
        self.topic_pattern = topic_pattern
        self._output_path = output
        self._output: Optional[IO[str]] = None
        self._output_opened = False
        self._keep = mode == "events"
        self._cond = threading.Condition(threading.Lock())
        self._events: List[CapturedEvent] = []
        self._sums: Dict[str, List[int]] = {}  # type -> [count, total bytes, hash sum]
        self._count = 0
        self._batches = 0
        self._resets = 0
        self._topics: Dict[str, str] = {}

    # ------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Opens the output file: truncated the first time, appended to after a restart."""
        if self._output_path and self._output is None:
            mode = "a" if self._output_opened else "w"
            self._output = open(self._output_path, mode, encoding="utf-8")
            self._output_opened = True

    def close(self) -> None:
        if self._output is not None:
            self._output.close()
            self._output = None

    def reset(self) -> None:
        """Forgets everything captured (the output file is left alone)."""
        with self._cond:
            self._events = []
            self._sums = {}
            self._count = 0
            self._batches = 0
            self._resets += 1

    # ------------------------------------------------------------ writing

    def topic(self, event_type: str) -> str:
        topic = self._topics.get(event_type)
        if topic is None:
            topic = format_topic(self.topic_pattern, event_type)
            # Bounded in entries and bytes: a type longer than any topic is not kept.
            if len(self._topics) < _TOPIC_CACHE_SIZE and len(event_type) <= KAFKA_TOPIC_MAX_CHARS:
                self._topics[event_type] = topic
        return topic

    def add(
        self,
        request: raccoon_pb2.SendEventRequest,
        conn_id: str,
        group: str,
        transport: str,
    ) -> int:
        """Captures every event of ``request``; returns how many."""
        events = request.events
        if not events:
            with self._cond:
                self._batches += 1
            return 0
        # Hashing happens outside the lock; it is the per-event cost of capture.
        payloads = [e.event_bytes for e in events]
        types = [e.type for e in events]
        first = types[0]
        partial: Dict[str, List[int]]
        if types.count(first) == len(types):  # the common case: one type per batch
            partial = {first: [len(payloads), sum(map(len, payloads)), sum(map(_event_hash, payloads))]}
        else:
            partial = {}
            for event_type, payload in zip(types, payloads):
                acc = partial.get(event_type)
                if acc is None:
                    partial[event_type] = [1, len(payload), _event_hash(payload)]
                else:
                    acc[0] += 1
                    acc[1] += len(payload)
                    acc[2] += _event_hash(payload)
        captured: Optional[List[CapturedEvent]] = None
        if self._keep or self._output is not None:
            guid = request.req_guid
            topic = self.topic
            now = time.time()
            captured = [
                CapturedEvent(t, p, guid, conn_id, group, transport, topic(t), now)
                for t, p in zip(types, payloads)
            ]
        with self._cond:
            sums = self._sums
            for event_type, acc in partial.items():
                total = sums.get(event_type)
                if total is None:
                    sums[event_type] = acc
                else:
                    total[0] += acc[0]
                    total[1] += acc[1]
                    total[2] = (total[2] + acc[2]) % _DIGEST_MOD
            if self._keep and captured is not None:
                self._events.extend(captured)
            self._count += len(payloads)
            self._batches += 1
            self._cond.notify_all()
        if self._output is not None and captured is not None:
            self._write(captured)
        return len(payloads)

    def _write(self, captured: List[CapturedEvent]) -> None:
        assert self._output is not None
        lines = []
        for event in captured:
            record = event._asdict()
            record["event_bytes"] = base64.b64encode(event.event_bytes).decode("ascii")
            lines.append(json.dumps(record, separators=(",", ":")))
        self._output.write("\n".join(lines) + "\n")
        self._output.flush()

    # ------------------------------------------------------------ reading

    @property
    def count(self) -> int:
        """Events captured since the last reset."""
        return self._count

    @property
    def resets(self) -> int:
        """How many times :meth:`reset` ran (readers of :meth:`tail` start over when it changes)."""
        return self._resets

    @property
    def batches(self) -> int:
        """Batches captured since the last reset."""
        return self._batches

    def events(self) -> List[CapturedEvent]:
        """A copy of the captured events, in capture order (empty in digest mode)."""
        with self._cond:
            return list(self._events)

    def tail(self, start: int, limit: int) -> Tuple[List[CapturedEvent], int]:
        """The kept events from index ``start`` on, at most the last ``limit`` of them, and the count kept.

        What the console reads at its update rate: O(``limit``), whatever the
        number of events kept. A ``start`` past the end (after a reset) reads
        from the beginning.
        """
        with self._cond:
            kept = len(self._events)
            if start > kept:  # a reset since: everything kept is new
                start = 0
            return self._events[max(start, kept - limit):], kept

    def digest(self) -> Dict[str, TypeDigest]:
        """Per event type: count, total bytes and digest of what was captured."""
        with self._cond:
            return {t: _to_digest(*acc) for t, acc in self._sums.items()}

    def wait_for_events(self, n: int, timeout: Optional[float] = None) -> bool:
        """Blocks until at least ``n`` events are captured; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._count >= n, timeout)
