"""One sender per worker process and configuration, shared by the DoFns that use it.

Runners set a DoFn up once per instance, and some make many instances: Dask
one per partition, Flink and Dataflow one per thread. Each sender holds a
connection, so sharing one per process and configuration keeps a worker's
connections few and bounded whatever the number of bundles, partitions or
DoFn instances. Senders are reference-counted: the last DoFn to release one
closes it, and whatever is still open when the process exits is closed then.
"""

from __future__ import annotations

import atexit
import threading
from typing import Dict, Tuple

from raccoon_beam.delivery.sender import Sender
from raccoon_beam.retry import RetryPolicy
from raccoon_beam.transports import TransportConfig

__all__ = ["acquire_sender", "release_sender", "open_senders"]

_Key = Tuple[TransportConfig, RetryPolicy]

_lock = threading.Lock()
_senders: Dict[_Key, Sender] = {}
_users: Dict[_Key, int] = {}


def acquire_sender(config: TransportConfig, policy: RetryPolicy) -> Sender:
    """The process's sender for ``config`` and ``policy``, created on first use.

    Every call must be matched by one :func:`release_sender`.
    """
    key = (config, policy)
    with _lock:
        sender = _senders.get(key)
        if sender is None or sender.closed:
            sender = _senders[key] = Sender(config, policy)
            _users[key] = 0
        _users[key] += 1
        return sender


def release_sender(sender: Sender) -> None:
    """Gives back a sender from :func:`acquire_sender`; the last user closes it."""
    key = (sender.config, sender.policy)
    with _lock:
        if _senders.get(key) is not sender:
            return  # released already, or replaced after a close
        _users[key] -= 1
        if _users[key] > 0:
            return
        del _senders[key], _users[key]
    sender.close()


def open_senders() -> int:
    """How many shared senders this process holds (tests and diagnostics)."""
    with _lock:
        return len(_senders)


@atexit.register
def _close_all() -> None:
    with _lock:
        senders = list(_senders.values())
        _senders.clear()
        _users.clear()
    for sender in senders:
        sender.close()
