"""raccoon-beam: an Apache Beam sink that writes events to Raccoon.

``WriteToRaccoon`` batches the elements of each bundle, serializes them
(JSON, Protobuf, Avro, raw bytes or your own function) and sends them to a
Raccoon server over gRPC, REST or WebSocket, with retries and a dead-letter
output: every element ends acknowledged or in ``result.failed``.

The names below are imported on first use (PEP 562), so that what does not
need Apache Beam (the emulator, ``raccoon-emulator --help``, the wire
encoding) does not pay for importing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Dict

from raccoon_beam._lazy import lazy_attributes

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from raccoon_beam.acknowledgements import EventTypeCount, RaccoonAck
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
    from raccoon_beam.jsonlines import ParseJsonLines, WriteDeadLetters
    from raccoon_beam.retry import RetryPolicy
    from raccoon_beam.transports import TlsOptions
    from raccoon_beam.transports.credentials import CredentialProvider, FromCallable, FromEnv, FromFile


__all__ = [
    "WriteToRaccoon",
    "WriteToRaccoonResult",
    "RaccoonDeadLetter",
    "RaccoonAck",
    "EventTypeCount",
    "RetryPolicy",
    "TlsOptions",
    "CredentialProvider",
    "FromEnv",
    "FromFile",
    "FromCallable",
    "RaccoonError",
    "SerializationError",
    "WireFormatError",
    "SendFailure",
    "Failure",
    "FailureKind",
    "DeliveryError",
    "ParseJsonLines",
    "WriteDeadLetters",
]

__version__ = "0.1.0.dev0"  # nothing released yet: CHANGELOG.md, "Unreleased"

# Public name -> the module that defines it (the TYPE_CHECKING imports above, for run time).
_LAZY: Dict[str, str] = {
    "WriteToRaccoon": "raccoon_beam.io",
    "WriteToRaccoonResult": "raccoon_beam.io",
    "RaccoonDeadLetter": "raccoon_beam.errors",
    "RaccoonAck": "raccoon_beam.acknowledgements",
    "EventTypeCount": "raccoon_beam.acknowledgements",
    "RetryPolicy": "raccoon_beam.retry",
    "TlsOptions": "raccoon_beam.transports",
    "CredentialProvider": "raccoon_beam.transports.credentials",
    "FromEnv": "raccoon_beam.transports.credentials",
    "FromFile": "raccoon_beam.transports.credentials",
    "FromCallable": "raccoon_beam.transports.credentials",
    "RaccoonError": "raccoon_beam.errors",
    "SerializationError": "raccoon_beam.errors",
    "WireFormatError": "raccoon_beam.errors",
    "SendFailure": "raccoon_beam.errors",
    "Failure": "raccoon_beam.errors",
    "FailureKind": "raccoon_beam.errors",
    "DeliveryError": "raccoon_beam.errors",
    "ParseJsonLines": "raccoon_beam.jsonlines",
    "WriteDeadLetters": "raccoon_beam.jsonlines",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
