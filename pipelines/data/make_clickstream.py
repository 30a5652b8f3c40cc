"""Writes clickstream.jsonl, the sample input of pipelines/clickstream.py.

Deterministic (seeded, standard library only): running it again rewrites the
same bytes. Run it from anywhere::

    python pipelines/data/make_clickstream.py

What is in the file: 3,000 lines, UTF-8, one JSON document per line.

- 2,990 well-formed events of an imaginary web shop, compact JSON objects of
  about 180 bytes (167 to 214), in time order, with these keys:

  ``event_id``    16 hex digits, unique in the file (malformed lines included);
  ``event_name``  ``page_view`` 1,936, ``click`` 562, ``search`` 256,
                  ``add_to_cart`` 169, ``checkout`` 67;
  ``user_id``     ``u-00001`` .. ``u-00400``, a few users far more active;
  ``session_id``  ``s-`` and 8 hex digits: one user's burst of events;
  ``ts``          epoch milliseconds (an int), over two hours from
                  2024-06-01T09:00:00Z;
  ``page``        the path the event happened on (``/``, ``/products/p-0042``,
                  ``/category/shoes``, ``/search``, ``/checkout``);
  ``properties``  a small object whose keys depend on ``event_name``:
                  referrer; element; query (some non-ASCII) and results;
                  product_id, price and quantity; order_id, total and items.

- Exactly 10 malformed lines, scattered (lines 15, 525, 657, 961, 1434, 1746,
  2021, 2226, 2560, 2930; the generator prints which is which), 2 of each kind:

  ``truncated``       JSON cut off in the middle of an object;
  ``not_object``      valid JSON that is not an object (an array, a string);
  ``blank``           a line of spaces only;
  ``no_event_name``   an object without ``event_name``;
  ``bad_event_name``  an object whose ``event_name`` is not a string (42, null).

  The first three kinds fail ``json.loads`` or an "is it an object" check;
  the last two parse but cannot be routed by their event name.
"""

from __future__ import annotations

import collections
import json
import pathlib
import random
from datetime import datetime, timedelta, timezone

SEED = 20240601
TOTAL_LINES = 3000
MALFORMED_PER_KIND = 2
MALFORMED_KINDS = ("truncated", "not_object", "blank", "no_event_name", "bad_event_name")
USERS = 400
START = datetime(2024, 6, 1, 9, 0, 0, tzinfo=timezone.utc)
WINDOW = timedelta(hours=2)
OUTPUT = pathlib.Path(__file__).with_name("clickstream.jsonl")

# What a session does next, given what it did last: browsing dominates, few
# sessions reach the checkout. None ends the session.
NEXT_EVENT = {
    None: (("page_view", 0.85), ("search", 0.15)),
    "page_view": (("page_view", 0.40), ("click", 0.25), ("search", 0.07),
                  ("add_to_cart", 0.06), (None, 0.22)),
    "click": (("page_view", 0.55), ("add_to_cart", 0.10), ("click", 0.10), (None, 0.25)),
    "search": (("page_view", 0.60), ("search", 0.15), ("click", 0.10), (None, 0.15)),
    "add_to_cart": (("checkout", 0.35), ("page_view", 0.40), ("add_to_cart", 0.05), (None, 0.20)),
    "checkout": (("page_view", 0.20), (None, 0.80)),
}
REFERRERS = ("direct", "google", "newsletter", "instagram", "partner-blog")
ELEMENTS = ("buy_button", "product_tile", "nav_menu", "banner", "size_picker", "reviews_tab")
CATEGORIES = ("shoes", "jackets", "bags", "socks", "hats")
QUERIES = ("running shoes", "rain jacket", "wool socks", "tote bag", "café latte mug",
           "日本茶 セット", "Größe 42", "sun hat", "trail runners", "leather belt")


def _event(rng: random.Random, name: str, user: int, session: str, when: datetime,
           cart: list) -> dict:
    product = f"p-{rng.randint(1, 250):04d}"
    if name == "page_view":
        page = rng.choice(("/", f"/products/{product}", f"/category/{rng.choice(CATEGORIES)}"))
        properties = {"referrer": rng.choice(REFERRERS)}
    elif name == "click":
        page = f"/products/{product}"
        properties = {"element": rng.choice(ELEMENTS)}
    elif name == "search":
        page = "/search"
        properties = {"query": rng.choice(QUERIES), "results": rng.randint(0, 60)}
    elif name == "add_to_cart":
        price = round(rng.uniform(4, 180), 2)
        quantity = rng.choice((1, 1, 1, 2, 3))
        cart.append(price * quantity)
        page = f"/products/{product}"
        properties = {"product_id": product, "price": price, "quantity": quantity}
    else:  # checkout
        page = "/checkout"
        properties = {"order_id": f"o-{rng.getrandbits(32):08x}",
                      "total": round(sum(cart), 2), "items": len(cart)}
        cart.clear()
    return {
        "event_id": f"{rng.getrandbits(64):016x}",
        "event_name": name,
        "user_id": f"u-{user:05d}",
        "session_id": session,
        "ts": int(when.timestamp() * 1000),
        "page": page,
        "properties": properties,
    }


def _events(rng: random.Random, count: int) -> list:
    """``count`` events from random sessions, in time order."""
    # A few heavy users: weight 1/rank (Zipf-like).
    user_weights = [1 / rank for rank in range(1, USERS + 1)]
    events = []
    while len(events) < count:
        user = rng.choices(range(1, USERS + 1), weights=user_weights)[0]
        session = f"s-{rng.getrandbits(32):08x}"
        when = START + timedelta(seconds=rng.uniform(0, WINDOW.total_seconds() - 900))
        cart: list = []
        name = None
        while True:
            choices, weights = zip(*NEXT_EVENT[name])
            name = rng.choices(choices, weights=weights)[0]
            if name is None or len(events) == count:
                break
            if name == "checkout" and not cart:
                name = "page_view"
            events.append(_event(rng, name, user, session, when, cart))
            when += timedelta(milliseconds=rng.randint(400, 45_000))
    events.sort(key=lambda event: event["ts"])
    return events


def _malformed(kind: str, index: int, sample: dict) -> str:
    good = json.dumps(sample, separators=(",", ":"), ensure_ascii=False)
    if kind == "truncated":
        return good[: len(good) // (2 + index)]
    if kind == "not_object":
        return json.dumps([sample["event_id"], sample["event_name"]]) if index == 0 else '"page_view"'
    if kind == "blank":
        return " " * (1 + 3 * index)
    if kind == "no_event_name":
        broken = dict(sample)
        del broken["event_name"]
        return json.dumps(broken, separators=(",", ":"), ensure_ascii=False)
    broken = dict(sample, event_name=42 if index == 0 else None)
    return json.dumps(broken, separators=(",", ":"), ensure_ascii=False)


def main() -> None:
    rng = random.Random(SEED)
    malformed_count = MALFORMED_PER_KIND * len(MALFORMED_KINDS)
    events = _events(rng, TOTAL_LINES - malformed_count)
    event_ids = {event["event_id"] for event in events}

    lines = [json.dumps(event, separators=(",", ":"), ensure_ascii=False) for event in events]
    # Measured before the malformed lines go in.
    event_sizes = [len(line.encode("utf-8")) for line in lines]
    # Scatter the malformed lines: one in each of as many equal parts of the file.
    slots = [
        rng.randrange(1 + part * TOTAL_LINES // malformed_count,
                      (part + 1) * TOTAL_LINES // malformed_count - 1)
        for part in range(malformed_count)
    ]
    kinds = [kind for kind in MALFORMED_KINDS for _ in range(MALFORMED_PER_KIND)]
    rng.shuffle(kinds)
    seen: collections.Counter = collections.Counter()
    positions = []
    for slot, kind in zip(slots, kinds):
        # Modelled on its neighbour, with an event_id of its own.
        sample = dict(events[min(slot, len(events) - 1)], event_id=f"{rng.getrandbits(64):016x}")
        event_ids.add(sample["event_id"])
        lines.insert(slot, _malformed(kind, seen[kind], sample))
        positions.append((slot + 1, kind))
        seen[kind] += 1

    assert len(event_ids) == len(events) + malformed_count, "event_id is not unique"
    OUTPUT.write_text("".join(line + "\n" for line in lines), encoding="utf-8")

    names = collections.Counter(event["event_name"] for event in events)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size:,} bytes)")
    print(f"lines: {len(lines)}  events: {len(events)}  malformed: {malformed_count}")
    print(f"bytes per event: mean {sum(event_sizes) / len(event_sizes):.0f}, "
          f"min {min(event_sizes)}, max {max(event_sizes)}")
    for name, count in names.most_common():
        print(f"  {name:<12} {count:>5}")
    for kind in MALFORMED_KINDS:
        where = ", ".join(str(line) for line, k in positions if k == kind)
        print(f"  malformed {kind:<15} {seen[kind]}  (lines {where})")


if __name__ == "__main__":
    main()
