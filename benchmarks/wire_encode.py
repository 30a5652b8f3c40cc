"""Micro-benchmark: encoding a 500-event SendEventRequest in each wire type.

``python -m benchmarks.wire_encode`` prints microseconds per event of
``wire.encode_request`` for the protobuf and JSON wires (the best of several
repeats, events of the benchmark workload, json-serialized), and, for
comparison, what the same request costs built with protobuf's ``json_format``
(what a hand-written sink does).
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from typing import Dict, List, Optional

from benchmarks import workload

__all__ = ["measure"]

BATCH = 500


def measure(batch: int = BATCH, repeat: int = 7, min_seconds: float = 0.2) -> Dict[str, float]:
    """``{name: microseconds per event}`` of encoding one ``batch``-event request."""
    import base64

    from google.protobuf import json_format

    from raccoon_beam._proto import raccoon_pb2
    from raccoon_beam.wire import Wire, encode_request

    events = list(workload.events("json", batch))

    def json_format_request() -> bytes:
        document = {
            "req_guid": "r-1",
            "sent_time": "2024-01-01T00:00:00Z",
            "events": [{"event_bytes": base64.b64encode(p).decode("ascii"), "type": t} for t, p in events],
        }
        return json_format.ParseDict(document, raccoon_pb2.SendEventRequest()).SerializeToString()

    candidates = {
        "protobuf": lambda: encode_request(events, wire=Wire.PROTOBUF),
        "json": lambda: encode_request(events, wire=Wire.JSON),
        "json_format (hand-written)": json_format_request,
    }
    results: Dict[str, float] = {}
    for name, encode in candidates.items():
        timer = timeit.Timer(encode)
        number, _ = timer.autorange()
        number = max(number, int(number * min_seconds / 0.2))
        best = min(timer.repeat(repeat=repeat, number=number)) / number
        results[name] = best / batch * 1e6
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=BATCH)
    args = parser.parse_args(argv)
    results = measure(args.batch)
    for name, micros in results.items():
        print(f"{name:28s} {micros:6.3f} us/event")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
