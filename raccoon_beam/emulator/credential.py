"""The credential an authenticating gateway in front of Raccoon would require (``require_header``).

Raccoon itself checks no credential; deployments put a gateway in front of
it that answers 401 to a request without a valid token. With
``require_header=(NAME, VALUE)`` the emulator plays that gateway on every
transport: REST answers 401, gRPC ``UNAUTHENTICATED``, and a WebSocket
upgrade 401 (a WebSocket's headers are only seen at its handshake, so an
open connection keeps working after the value changes).

With ``rotate_header_every=N`` the value expires: after N requests were let
through with it, a new value is drawn and the old one gets 401, as an
expiring token would. Tests read the current value from
:attr:`RequiredHeader.value` (``RaccoonEmulator.required_header_value``,
``GET /_emulator/credential``) and may rotate it at any time.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from typing import Any, Dict, Optional

__all__ = ["RequiredHeader", "UNAUTHENTICATED_REASON"]

# What the rejected requests are counted with (console, counters).
UNAUTHENTICATED_REASON = "unauthenticated: missing or stale credential"
# Random suffix of a rotated value: unguessable, so a test cannot pass by predicting it.
_ROTATED_SUFFIX_BYTES = 6


class RequiredHeader:
    """The header value requests must carry, and its rotation.

    Args:
      name: the header's name (gRPC: its lower-cased metadata key).
      value: the value accepted first.
      rotate_every: draw a new value after this many requests were let
        through with the current one; 0: never.
    """

    def __init__(self, name: str, value: str, rotate_every: int = 0) -> None:
        self.name = name
        self.key = name.lower()
        self._base = value
        self._value = value
        self._rotate_every = rotate_every
        self._admitted = 0
        self.rotations = 0
        # Transports admit on the emulator's loop; tests rotate from their thread.
        self._lock = threading.Lock()

    @property
    def value(self) -> str:
        """The value accepted now."""
        return self._value

    def admit(self, given: Optional[str]) -> bool:
        """Whether a request carrying ``given`` passes; counts it towards the rotation."""
        with self._lock:
            current = self._value
            if given is None or not hmac.compare_digest(given.encode("utf-8"), current.encode("utf-8")):
                return False
            self._admitted += 1
            if self._rotate_every and self._admitted >= self._rotate_every:
                self._rotate()
            return True

    def rotate(self) -> str:
        """Draws a new value now (the old one gets 401 from now on); returns it."""
        with self._lock:
            return self._rotate()

    def _rotate(self) -> str:
        self._value = f"{self._base}-{secrets.token_hex(_ROTATED_SUFFIX_BYTES)}"
        self._admitted = 0
        self.rotations += 1
        return self._value

    def describe(self) -> Dict[str, Any]:
        """``{"header", "value", "rotate_every", "rotations"}`` for the control route."""
        with self._lock:
            return {
                "header": self.name,
                "value": self._value,
                "rotate_every": self._rotate_every,
                "rotations": self.rotations,
            }
