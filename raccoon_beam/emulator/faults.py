"""Fault injection: which requests fail, and how.

Tests (any thread) configure a :class:`Faults`; the servers (on the
emulator's loop) ask it, once per decoded request, what to do with that
request. Every rule is scoped to one transport or to all of them.
"""

from __future__ import annotations

import math
import random
import threading
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, TypeVar

from raccoon_beam.emulator.config import TRANSPORTS
from raccoon_beam.emulator.outcomes import Outcome

__all__ = [
    "Faults",
    "Decision",
    "NO_FAULT",
    "TRANSPORTS",
    "DROP_BEFORE_CAPTURE",
    "DROP_AFTER_CAPTURE",
    "REJECT_EVENT_TYPE",
    "PUBLISH_FAILURE",
    "LATENCY",
    "MAX_LATENCY",
    "fault_command",
    "is_fault_command",
]

# Fault kinds counted besides the outcome kinds of outcomes.OUTCOME_KINDS.
DROP_BEFORE_CAPTURE = "drop_before_capture"
DROP_AFTER_CAPTURE = "drop_after_capture"
REJECT_EVENT_TYPE = "reject_event_type"
PUBLISH_FAILURE = "publish_failure"
LATENCY = "latency"
# The longest latency a rule may add: beyond an hour nothing is measured any
# more, and an endless one (JSON's Infinity) would hang every request.
MAX_LATENCY = 3600.0

_F = TypeVar("_F", bound=Callable[..., Any])


def fault_command(method: _F) -> _F:
    """Marks a :class:`Faults` method as one the control route may call (``POST /_emulator/faults``).

    The route's list of methods and their arguments is read from the marked
    methods' signatures, so that it cannot drift from them.
    """
    method._fault_command = True  # type: ignore[attr-defined]
    return method


def is_fault_command(method: Any) -> bool:
    """Whether ``method`` was marked with :func:`fault_command`."""
    return bool(getattr(method, "_fault_command", False))


def _check_count(name: str, n: Any) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{name} must be an integer >= 0, not {n!r}")


def _check_fraction(fraction: Any) -> None:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be a number within [0, 1], not {fraction!r}")


def _check_seconds(seconds: Any) -> None:
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, (int, float))
        or not math.isfinite(seconds)
        or not 0.0 <= seconds <= MAX_LATENCY
    ):
        raise ValueError(f"seconds must be a finite number within [0, {MAX_LATENCY:g}], not {seconds!r}")


class Decision(NamedTuple):
    """What to do with one request.

    Attributes:
      latency: seconds to wait before answering.
      outcome: the answer to give instead of processing the request.
      drop: ``DROP_BEFORE_CAPTURE`` or ``DROP_AFTER_CAPTURE`` to abort the
        connection instead of answering, else ``None``.
    """

    latency: float = 0.0
    outcome: Optional[Outcome] = None
    drop: Optional[str] = None


NO_FAULT = Decision()


def _check_transport(transport: Optional[str]) -> None:
    if transport is not None and transport not in TRANSPORTS:
        raise ValueError(f"transport must be None or one of {TRANSPORTS}, not {transport!r}")


def _applies(rule_transport: Optional[str], transport: str) -> bool:
    return rule_transport is None or rule_transport == transport


class _Countdown:
    __slots__ = ("remaining", "transport", "value")

    def __init__(self, remaining: int, transport: Optional[str], value: object) -> None:
        self.remaining = remaining
        self.transport = transport
        self.value = value


class _Fraction:
    __slots__ = ("fraction", "rng", "transport", "outcome")

    def __init__(self, fraction: float, seed: int, transport: Optional[str], outcome: Outcome) -> None:
        self.fraction = fraction
        self.rng = random.Random(seed)
        self.transport = transport
        self.outcome = outcome


class Faults:
    """The faults to inject; thread-safe.

    Rules stack: drops are checked first, then ``fail_next`` rules (oldest
    first), then ``fail_fraction`` rules; latency applies to every request
    of its transport, failing or not.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._drops: List[_Countdown] = []
        self._next: List[_Countdown] = []
        self._fractions: List[_Fraction] = []
        self._latency: Dict[Optional[str], float] = {}
        self._rejected_types: frozenset = frozenset()
        self._publish_next = 0
        self._publish_always = False
        self._publish_rng: Optional[random.Random] = None
        self._publish_fraction = 0.0
        # Read without the lock on the hot path: a request that races with a
        # test's configuration call may or may not see the new rule.
        self.active = False

    # ------------------------------------------------------------ configuring

    @fault_command
    def fail_next(self, n: int, outcome: Outcome, transport: Optional[str] = None) -> None:
        """Answers the next ``n`` requests (of ``transport``, or any) with ``outcome``."""
        _check_transport(transport)
        _check_count("n", n)
        if n > 0:
            with self._lock:
                self._next.append(_Countdown(n, transport, outcome))
                self._refresh()

    @fault_command
    def fail_fraction(
        self, fraction: float, outcome: Outcome, seed: int = 0, transport: Optional[str] = None
    ) -> None:
        """Answers a seeded random ``fraction`` (0..1) of requests with ``outcome``."""
        _check_transport(transport)
        _check_fraction(fraction)
        with self._lock:
            self._fractions.append(_Fraction(fraction, seed, transport, outcome))
            self._refresh()

    @fault_command
    def add_latency(self, seconds: float, transport: Optional[str] = None) -> None:
        """Delays every answer by ``seconds`` (replaces the previous latency of that scope; 0 removes it)."""
        _check_transport(transport)
        _check_seconds(seconds)
        with self._lock:
            if seconds > 0:
                self._latency[transport] = float(seconds)
            else:
                self._latency.pop(transport, None)
            self._refresh()

    @fault_command
    def drop_connection(self, n: int, after_capture: bool = False, transport: Optional[str] = None) -> None:
        """Aborts the connection of the next ``n`` requests instead of answering.

        Args:
          n: how many requests.
          after_capture: capture the batch first (the client cannot tell
            whether it arrived), else drop it uncaptured.
          transport: the transport, or ``None`` for any.
        """
        _check_transport(transport)
        _check_count("n", n)
        if n > 0:
            kind = DROP_AFTER_CAPTURE if after_capture else DROP_BEFORE_CAPTURE
            with self._lock:
                self._drops.append(_Countdown(n, transport, kind))
                self._refresh()

    @fault_command
    def reject_event_type(self, event_type: str) -> None:
        """Answers ``CODE_BAD_REQUEST`` to every batch containing ``event_type``.

        What a gateway in front of Raccoon that judges content could do (a
        stock Raccoon never judges single events): the sink bisects such a
        batch until the bad events stand alone.
        """
        if not isinstance(event_type, str) or not event_type:
            raise ValueError(f"event_type must be a non-empty string, not {event_type!r}")
        with self._lock:
            self._rejected_types = self._rejected_types | {event_type}
            self._refresh()

    @fault_command
    def fail_publish(self, n: Optional[int] = None, fraction: Optional[float] = None, seed: int = 0) -> None:
        """Makes publishing fail: the next ``n`` batches, a seeded ``fraction``, or (neither) all.

        With sync acks the client gets ``CODE_INTERNAL_ERROR``; with async
        acks it already got its success, and the batch is lost (not captured).
        """
        if n is not None:
            _check_count("n", n)
        elif fraction is not None:
            _check_fraction(fraction)
        with self._lock:
            if n is not None:
                self._publish_next += n
            elif fraction is not None:
                self._publish_fraction = fraction
                self._publish_rng = random.Random(seed)
            else:
                self._publish_always = True
            self._refresh()

    @fault_command
    def clear_fraction(self, outcome: Outcome, transport: Optional[str] = None) -> None:
        """Removes the ``fail_fraction`` rules of exactly this ``outcome`` and scope."""
        _check_transport(transport)
        with self._lock:
            self._fractions = [
                rule for rule in self._fractions if not (rule.outcome == outcome and rule.transport == transport)
            ]
            self._refresh()

    @fault_command
    def clear_next(self, transport: Optional[str] = None) -> None:
        """Removes the ``fail_next`` countdowns of exactly this scope (``None``: those for every transport)."""
        _check_transport(transport)
        with self._lock:
            self._next = [rule for rule in self._next if rule.transport != transport]
            self._refresh()

    @fault_command
    def clear_drops(self, transport: Optional[str] = None) -> None:
        """Removes the ``drop_connection`` countdowns of exactly this scope (``None``: those for every transport)."""
        _check_transport(transport)
        with self._lock:
            self._drops = [rule for rule in self._drops if rule.transport != transport]
            self._refresh()

    @fault_command
    def allow_event_type(self, event_type: str) -> None:
        """Stops rejecting ``event_type`` (undoes ``reject_event_type``)."""
        with self._lock:
            self._rejected_types = self._rejected_types - {event_type}
            self._refresh()

    @fault_command
    def stop_publish_failures(self) -> None:
        """Removes what ``fail_publish`` set (countdown, fraction or always)."""
        with self._lock:
            self._publish_next = 0
            self._publish_always = False
            self._publish_rng = None
            self._publish_fraction = 0.0
            self._refresh()

    def describe(self) -> Dict[str, Any]:
        """The rules in force, JSON-friendly (what the console shows); ``None`` scope is ``"all"``."""

        def scope(transport: Optional[str]) -> str:
            return transport or "all"

        with self._lock:
            return {
                "fractions": [
                    {
                        "transport": scope(rule.transport),
                        "fraction": rule.fraction,
                        "outcome": rule.outcome.to_dict(),
                        "describe": rule.outcome.describe(),
                    }
                    for rule in self._fractions
                ],
                "next": [
                    {
                        "transport": scope(rule.transport),
                        "remaining": rule.remaining,
                        "outcome": rule.value.to_dict(),  # type: ignore[attr-defined]
                        "describe": rule.value.describe(),  # type: ignore[attr-defined]
                    }
                    for rule in self._next
                ],
                "drops": [
                    {"transport": scope(rule.transport), "remaining": rule.remaining, "kind": rule.value}
                    for rule in self._drops
                ],
                "latency": {scope(transport): seconds for transport, seconds in self._latency.items()},
                "rejected_types": sorted(self._rejected_types),
                "publish": {
                    "next": self._publish_next,
                    "always": self._publish_always,
                    "fraction": self._publish_fraction if self._publish_rng is not None else 0.0,
                },
            }

    @fault_command
    def clear(self) -> None:
        """Removes every fault."""
        with self._lock:
            self._drops.clear()
            self._next.clear()
            self._fractions.clear()
            self._latency.clear()
            self._rejected_types = frozenset()
            self._publish_next = 0
            self._publish_always = False
            self._publish_rng = None
            self._publish_fraction = 0.0
            self._refresh()

    def _refresh(self) -> None:
        self.active = bool(
            self._drops
            or self._next
            or self._fractions
            or self._latency
            or self._rejected_types
            or self._publish_next
            or self._publish_always
            or self._publish_rng
        )

    # ------------------------------------------------------------ consulting

    def decide(self, transport: str) -> Decision:
        """Consumes and returns the fault for one request of ``transport``."""
        if not self.active:
            return NO_FAULT
        with self._lock:
            latency = self._latency.get(None, 0.0)
            if transport in self._latency:
                latency += self._latency[transport]
            drop = self._take(self._drops, transport)
            outcome = None
            if drop is None:
                outcome = self._take(self._next, transport)
            if drop is None and outcome is None:
                for rule in self._fractions:
                    if _applies(rule.transport, transport) and rule.rng.random() < rule.fraction:
                        outcome = rule.outcome
                        break
            self._refresh()
        return Decision(latency, outcome, drop)  # type: ignore[arg-type]

    @staticmethod
    def _take(rules: List[_Countdown], transport: str) -> Optional[object]:
        for index, rule in enumerate(rules):
            if _applies(rule.transport, transport):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    del rules[index]
                return rule.value
        return None

    def rejected_type(self, event_types: Iterable[str]) -> Optional[str]:
        """The first of ``event_types`` that must be rejected, if any."""
        rejected = self._rejected_types
        if not rejected:
            return None
        for event_type in event_types:
            if event_type in rejected:
                return event_type
        return None

    def publish_fails(self) -> bool:
        """Whether publishing the current batch fails (consumes a countdown)."""
        if not self.active:
            return False
        with self._lock:
            if self._publish_next > 0:
                self._publish_next -= 1
                self._refresh()
                return True
            if self._publish_always:
                return True
            if self._publish_rng is not None:
                return self._publish_rng.random() < self._publish_fraction
        return False
