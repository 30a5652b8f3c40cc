"""Micro-benchmark: CPU per event of the sink's DoFn alone, without a runner.

``python -m benchmarks.sink_micro`` calls ``WriteToRaccoon``'s DoFn
directly (``process`` for each of 200,000 prebuilt elements, then
``finish_bundle``) with :class:`NullTransport`, which acknowledges every
request without sending it: serializing, checking, batching, encoding and
dispatching, with no Beam runner, generator or socket around them. The best
of 5 passes, in microseconds per event, per serializer. It is the number to
watch when changing the hot path: far steadier than a pipeline's events/s.
It is a breakdown of the sink's own cost (it reaches into the package's
internals), not a reference: the references are in
:mod:`benchmarks.references`.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from typing import Any, Dict, Optional, Sequence

from benchmarks import workload
from raccoon_beam._proto import raccoon_pb2
from raccoon_beam.transports import Transport, check_response

__all__ = ["NullTransport", "measure"]


class NullTransport(Transport):
    """Acknowledges every request at once, as a server would, without any I/O."""

    async def send(self, request: Any) -> Any:
        response = raccoon_pb2.SendEventResponse(
            status=raccoon_pb2.STATUS_SUCCESS,
            code=raccoon_pb2.CODE_OK,
            sent_time=int(time.time()),
            data={"req_guid": request.req_guid},
        )
        return check_response(response, request)

    async def close(self) -> None:
        pass

SERIALIZERS = ("json", "protobuf", "avro")


def measure(
    serializer: str,
    events: int = 200_000,
    passes: int = 5,
    acknowledgements: bool = False,
    adaptive_throttling: bool = True,
) -> float:
    """Microseconds of CPU per event of the sink's DoFn, the best of ``passes``.

    With ``acknowledgements`` the sink also makes its ack records (the only
    outputs allowed then); ``adaptive_throttling=False`` measures the sink
    without its throttle and adaptive limit (their cost per request).
    """
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import MIN_TIMESTAMP
    from apache_beam.utils.windowed_value import WindowedValue

    from raccoon_beam import WriteToRaccoon
    from raccoon_beam import io as sink_io
    from raccoon_beam.delivery import Sender, shared

    # Every WriteToRaccoon of this process sends to a NullTransport.
    shared.Sender = functools.partial(Sender, transport_factory=NullTransport)  # type: ignore[misc]
    extra = {"avro_schema": workload.AVRO_SCHEMA} if serializer == "avro" else {}
    transform = WriteToRaccoon(
        "http://127.0.0.1:1/api/v1/events",
        event_type=workload.event_type_of(serializer),
        serializer=serializer,
        acknowledgements=acknowledgements,
        adaptive_throttling=adaptive_throttling,
        **extra,
    )
    fn = sink_io._WriteEventsFn(transform.options)
    windows = (GlobalWindow(),)
    elements = [WindowedValue(e, MIN_TIMESTAMP, windows) for e in workload.generate(serializer, events)(0)]
    fn.setup()
    try:
        best = float("inf")
        for _ in range(passes):
            started = time.process_time()
            for windowed in elements:
                outputs = fn.process(windowed.value, windowed)
                if outputs and not _only_acks(outputs):  # dead letters (none expected) or None
                    raise AssertionError(f"unexpected output: {list(outputs)!r:.200}")
            dead_letters = [output for output in fn.finish_bundle() if not _only_acks((output,))]
            best = min(best, time.process_time() - started)
            if dead_letters:
                raise AssertionError(f"{len(dead_letters)} dead letters")
    finally:
        fn.teardown()
    return best / events * 1e6


def _only_acks(outputs: Any) -> bool:
    from raccoon_beam import RaccoonAck

    return all(isinstance(getattr(output, "value", None), RaccoonAck) for output in outputs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--serializers", default=",".join(SERIALIZERS))
    parser.add_argument("--acknowledgements", action="store_true", help="with result.acknowledged's records")
    parser.add_argument(
        "--no-adaptive-throttling", action="store_true", help="without the throttle and the adaptive limit"
    )
    args = parser.parse_args(argv)
    results: Dict[str, float] = {}
    for serializer in args.serializers.split(","):
        results[serializer] = measure(
            serializer,
            args.events,
            acknowledgements=args.acknowledgements,
            adaptive_throttling=not args.no_adaptive_throttling,
        )
        print(f"{serializer:10s} {results[serializer]:6.3f} us/event", flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
