"""raccoon-beam: an Apache Beam sink that writes events to Raccoon.

``WriteToRaccoon`` batches the elements of each bundle, serializes them
(JSON, Protobuf, Avro, raw bytes or your own function) and sends them to a
Raccoon server over gRPC, REST or WebSocket, with retries and a dead-letter
output: every element ends acknowledged or in ``result.failed``.
"""

from raccoon_beam.errors import (
    DeliveryError,
    Failure,
    FailureKind,
    RaccoonDeadLetter,
    RaccoonError,
    SendFailure,
    SerializationError,
    WireFormatError,
)
from raccoon_beam.io import WriteToRaccoon, WriteToRaccoonResult
from raccoon_beam.retry import RetryPolicy
from raccoon_beam.transports import TlsOptions

__all__ = [
    "WriteToRaccoon",
    "WriteToRaccoonResult",
    "RaccoonDeadLetter",
    "RetryPolicy",
    "TlsOptions",
    "RaccoonError",
    "SerializationError",
    "WireFormatError",
    "SendFailure",
    "Failure",
    "FailureKind",
    "DeliveryError",
]

__version__ = "0.1.0"
