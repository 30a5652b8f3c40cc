"""One sender per worker process and configuration, shared by the DoFns that use it.

Runners set a DoFn up once per instance, and some make many instances: Dask
one per partition (one after the other), Flink and Dataflow one per thread.
Each sender holds a connection, so sharing one per process and configuration
keeps a worker's connections few whatever the number of bundles, partitions
or DoFn instances. Senders are reference-counted; when the last user lets go
the sender lingers a few seconds (the next partition's DoFn picks it up
rather than opening a new connection), then closes. What is still open when
the process exits is closed then.
"""

from __future__ import annotations

import atexit
import threading
from typing import Dict, Optional, Tuple

from raccoon_beam.delivery.flow import FlowOptions
from raccoon_beam.delivery.sender import Sender
from raccoon_beam.retry import RetryPolicy
from raccoon_beam.transports import TransportConfig

__all__ = ["acquire_sender", "release_sender", "close_idle_senders", "open_senders", "DEFAULT_LINGER"]

# Long enough to bridge one partition or bundle to the next (milliseconds
# apart on Dask), short enough that an idle pipeline's connection goes soon.
DEFAULT_LINGER = 5.0

_Key = Tuple[TransportConfig, RetryPolicy, FlowOptions]

_lock = threading.Lock()
_senders: Dict[_Key, Sender] = {}
_users: Dict[_Key, int] = {}
_lingering: Dict[_Key, threading.Timer] = {}


def acquire_sender(config: TransportConfig, policy: RetryPolicy, flow: Optional[FlowOptions] = None) -> Sender:
    """The process's sender for ``config``, ``policy`` and ``flow``, created on first use.

    The DoFns that share it share its limits too: ``max_in_flight``, the
    rate limit, the throttling and the outage's one backoff are per worker
    process and configuration. Every call must be matched by one
    :func:`release_sender`.
    """
    flow = flow if flow is not None else FlowOptions()
    key = (config, policy, flow)
    with _lock:
        timer = _lingering.pop(key, None)
        if timer is not None:
            timer.cancel()
        sender = _senders.get(key)
        if sender is None or sender.closed:
            sender = _senders[key] = Sender(config, policy, flow)
            _users[key] = 0
        _users[key] += 1
        return sender


def release_sender(sender: Sender, linger: float = DEFAULT_LINGER) -> None:
    """Gives back a sender from :func:`acquire_sender`.

    Args:
      sender: the sender.
      linger: seconds the sender stays open for the next user once it has
        none; 0 closes it at once.
    """
    key = (sender.config, sender.policy, sender.flow_options)
    with _lock:
        if _senders.get(key) is not sender:
            return  # released already, or replaced after a close
        _users[key] -= 1
        if _users[key] > 0:
            return
        if linger > 0:
            timer = threading.Timer(linger, _close_if_idle, args=(key, sender))
            timer.name = "raccoon-beam-linger"
            timer.daemon = True
            _lingering[key] = timer
            timer.start()
            return
        del _senders[key], _users[key]
    sender.close()


def close_idle_senders() -> int:
    """Closes now every sender that has no user (lingering ones); returns how many."""
    with _lock:
        idle = [key for key, users in _users.items() if users == 0]
        senders = [_forget(key) for key in idle]
    for sender in senders:
        sender.close()
    return len(senders)


def open_senders() -> int:
    """How many shared senders this process holds, lingering ones included."""
    with _lock:
        return len(_senders)


def _close_if_idle(key: _Key, sender: Sender) -> None:
    with _lock:
        if _senders.get(key) is not sender or _users.get(key):
            return  # picked up again, or closed already
        _forget(key)
    sender.close()


def _forget(key: _Key) -> Sender:
    """Drops ``key``'s sender from the registry (call with the lock held)."""
    timer = _lingering.pop(key, None)
    if timer is not None:
        timer.cancel()
    del _users[key]
    return _senders.pop(key)


@atexit.register
def _close_all() -> None:
    with _lock:
        senders = [_forget(key) for key in list(_senders)]
    for sender in senders:
        sender.close()
