"""Delivery: from a batch of events to acknowledged events and dead letters.

* :mod:`~raccoon_beam.delivery.sender`: :class:`Sender`, the one owner of the
  event loop, the transport, the retry loop and the bound on requests in flight;
* :mod:`~raccoon_beam.delivery.bundle`: one DoFn's batches and their deliveries;
* :mod:`~raccoon_beam.delivery.bisection`: splitting a batch the server rejects whole;
* :mod:`~raccoon_beam.delivery.report`: what became of a batch, and the dead letter's reason;
* :mod:`~raccoon_beam.delivery.shared`: one sender per worker process and configuration;
* :mod:`~raccoon_beam.delivery.flow`: flow control, what holds a sender's attempts back,
  and its options; its parts: :mod:`~raccoon_beam.delivery.rate` (the events-per-second
  limit and ramp-up), :mod:`~raccoon_beam.delivery.throttle` (client-side throttling by
  accept ratio), :mod:`~raccoon_beam.delivery.concurrency` (the adaptive limit on
  requests in flight), :mod:`~raccoon_beam.delivery.outage` (one shared backoff while
  the endpoint is down) and :mod:`~raccoon_beam.delivery.held` (the seconds held back);
* :mod:`~raccoon_beam.delivery.log`: rate-limited log lines about retries and dead letters.
"""

from raccoon_beam.delivery.bisection import deliver
from raccoon_beam.delivery.bundle import BundleWriter
from raccoon_beam.delivery.report import AckedRequest, DeliveryReport, FailedEvents, SendOutcome, dead_letter_reason
from raccoon_beam.delivery.sender import Sender, send_with_retry
from raccoon_beam.delivery.shared import acquire_sender, release_sender

__all__ = [
    "Sender",
    "BundleWriter",
    "send_with_retry",
    "deliver",
    "DeliveryReport",
    "FailedEvents",
    "AckedRequest",
    "SendOutcome",
    "dead_letter_reason",
    "acquire_sender",
    "release_sender",
]
