"""Micro-benchmark: plain data -> protobuf bytes, and the JSON serializer's hot path.

``python -m benchmarks.protobuf_convert`` prints microseconds per event (the
best of several repeats) of:

- ``serializer="protobuf"`` with ``message_type`` on a dict, a Beam Row and a
  dataclass, against ``json_format.ParseDict`` + ``SerializeToString`` of the
  same dict (what a hand-written sink does), for the flat benchmark event
  (``bench.ClickEvent``, the workload's) and the nested ``shop.v1.Order`` of
  the tests (repeated, map, enum, Timestamp, Duration, wrapper and oneof
  fields);
- ``serializer="json"``: orjson's path against the standard library's encoder
  it replaced (still the verifier of output with ``null`` in it).

Pass ``--json`` for one JSON object of the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import timeit
from typing import Any, Callable, Dict, List, Optional

__all__ = ["measure", "ORDER_EVENT"]

ORDER_EVENT: Dict[str, Any] = {
    "order_id": "o-000042",
    "user_id": 1_700_042,
    "attempt": 1,
    "gift": False,
    "discount": 0.25,
    "device": "DEVICE_IOS",
    "items": [
        {"sku": "kettle-1", "quantity": 1, "price": 24.5, "tags": ["kitchen"]},
        {"sku": "teapot-3", "quantity": 2, "price": 12.0, "tags": ["kitchen", "gift"]},
    ],
    "attributes": {"campaign": "spring", "ab": "b"},
    "slots": {1: {"sku": "slot-a"}},
    "created_at": datetime.datetime(2024, 6, 1, 9, 30, 15, 250000, tzinfo=datetime.timezone.utc),
    "time_on_page": datetime.timedelta(seconds=42, milliseconds=5),
    "coupon_id": 99,
    "note": "leave at the door",
    "ship_to": {"city": "Pune", "country": "IN"},
}
"""The nested benchmark event (``shop.v1.Order``), about 200 bytes of protobuf."""


def _best_us(fn: Callable[[], Any], repeat: int, min_seconds: float) -> float:
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(number, int(number * min_seconds / 0.2))
    return min(timer.repeat(repeat=repeat, number=number)) / number * 1e6


def _as_dataclass(name: str, data: Dict[str, Any]) -> Any:
    cls = dataclasses.make_dataclass(name, list(data))
    return cls(**data)


def _case(message_class: Any, data: Dict[str, Any], parse_form: Dict[str, Any], repeat: int, min_seconds: float) -> Dict[str, float]:
    import apache_beam as beam
    from google.protobuf import json_format

    from raccoon_beam.serializers import resolve_serializer

    serializer = resolve_serializer("protobuf", message_type=message_class)
    row = beam.Row(**data)
    record = _as_dataclass("Event", data)
    expected = json_format.ParseDict(parse_form, message_class()).SerializeToString()
    for element in (data, row, record):
        assert serializer(element) == expected, "the converter and ParseDict disagree"
    results = {
        "parse_dict": _best_us(
            lambda: json_format.ParseDict(parse_form, message_class()).SerializeToString(), repeat, min_seconds
        ),
        "dict": _best_us(lambda: serializer(data), repeat, min_seconds),
        "row": _best_us(lambda: serializer(row), repeat, min_seconds),
        "dataclass": _best_us(lambda: serializer(record), repeat, min_seconds),
    }
    results["speedup_dict"] = results["parse_dict"] / results["dict"]
    return results


def measure(repeat: int = 7, min_seconds: float = 0.2) -> Dict[str, Dict[str, float]]:
    """``{case: {name: microseconds per event, speedup_dict: ParseDict / converter}}``."""
    from benchmarks import workload
    from raccoon_beam.serializers import resolve_serializer
    from tests.protobuf_helpers import order_class, parse_dict_form

    flat = workload.make_event(7)
    results = {
        "flat ClickEvent": _case(workload.ClickEvent, flat, flat, repeat, min_seconds),
        "nested Order": _case(order_class(), ORDER_EVENT, parse_dict_form(ORDER_EVENT), repeat, min_seconds),
    }
    to_json = resolve_serializer("json")
    with_null = dict(flat, note=None)
    nested_null = dict(flat, context={"referrer": None, "tags": ["a", None]})
    results["json"] = {
        "orjson": _best_us(lambda: to_json(flat), repeat, min_seconds),
        "orjson, a None field": _best_us(lambda: to_json(with_null), repeat, min_seconds),
        # A nested None: orjson, then the walk that looks for a NaN written as null.
        "orjson, a nested None": _best_us(lambda: to_json(nested_null), repeat, min_seconds),
    }
    return results


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    results = measure(repeat=args.repeat)
    if args.json:
        print(json.dumps(results))
        return 0
    for case, numbers in results.items():
        print(case)
        for name, value in numbers.items():
            unit = "x" if name.startswith("speedup") else " us/event"
            print(f"  {name:32s} {value:8.2f}{unit}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
