"""Regenerates docs/console.png: the console after a few minutes of varied load.

    .venv/bin/python docs/console_screenshot.py [--minutes 3]

An emulator (events capture, an Avro decoder for ``purchase``) gets batches
of three event types over gRPC and REST from two connections each, at a rate
that rises and falls; a minute in, the page's own switches turn on a 503 share
on REST and slow answers on gRPC. Then headless chromium (as in the browser
test) saves the page. Needs /usr/bin/chromium and /usr/bin/chromedriver.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import pathlib
import sys
import time

import fastavro
import grpc
import requests

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from raccoon_beam.emulator import RaccoonEmulator  # noqa: E402
from raccoon_beam.wire import CONTENT_TYPES, Wire, encode_request  # noqa: E402
from tests.emulator.chromium import chromium  # noqa: E402

GRPC_METHOD = "/raystack.raccoon.v1beta1.EventService/SendEvent"
AVRO_SCHEMA = {
    "type": "record", "name": "Purchase",
    "fields": [{"name": "order", "type": "long"}, {"name": "sku", "type": "string"}, {"name": "cents", "type": "int"}],
}
OUT = pathlib.Path(__file__).resolve().parent / "console.png"


def _avro(record: dict) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(AVRO_SCHEMA), record)
    return buffer.getvalue()


def _batch(i: int, size: int) -> list:
    events = []
    for j in range(i * size, (i + 1) * size):
        if j % 7 == 0:
            events.append(("purchase", _avro({"order": j, "sku": f"sku-{j % 13}", "cents": 100 + j % 900})))
        else:
            name = "click" if j % 3 else "page_view"
            events.append((name, json.dumps({"id": j, "event_name": name, "user": f"u-{j % 31}", "page": f"/p/{j % 50}"}).encode()))
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    args = parser.parse_args()
    emulator = RaccoonEmulator(decoders={"purchase": "avro:" + json.dumps(AVRO_SCHEMA)})
    with emulator, chromium() as browser, requests.Session() as session:
        from selenium.webdriver.common.by import By

        browser.get(emulator.console_url)
        channel = grpc.insecure_channel(emulator.grpc_endpoint.split("://", 1)[1])
        call = channel.unary_unary(GRPC_METHOD)
        start = time.monotonic()
        duration = args.minutes * 60
        i = 0
        switched = False
        while (elapsed := time.monotonic() - start) < duration:
            # Between ~200 and ~2,000 events/s: the chart has a shape.
            rate = 1100 + 900 * math.sin(elapsed / 25)
            for k in range(2):
                body = encode_request(_batch(i, 50), wire=Wire.PROTOBUF).body
                i += 1
                try:
                    call(body, metadata=(("x-user-id", f"web-{k}"),), timeout=10)
                except grpc.RpcError:
                    pass
                session.post(emulator.rest_endpoint, data=body, timeout=10,
                             headers={"Content-Type": CONTENT_TYPES[Wire.PROTOBUF], "X-User-ID": f"app-{k}"})
            if not switched and elapsed > duration / 3:
                browser.find_element(By.ID, "fault-rest-503-share").clear()
                browser.find_element(By.ID, "fault-rest-503-share").send_keys("0.2")
                browser.find_element(By.ID, "fault-rest-503").click()
                browser.find_element(By.ID, "fault-grpc-slow-seconds").clear()
                browser.find_element(By.ID, "fault-grpc-slow-seconds").send_keys("0.01")
                browser.find_element(By.ID, "fault-grpc-slow").click()
                switched = True
            time.sleep(max(0.0, 200 / rate - 0.002))
        channel.close()
        time.sleep(1)
        height = browser.execute_script("return document.documentElement.scrollHeight")
        browser.set_window_size(1400, int(height) + 40)
        time.sleep(0.5)
        browser.save_screenshot(str(OUT))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
