"""In a real browser (Debian's chromium): a page of another origin can neither change a fault nor read events.

The attacking page is served by a second local HTTP server, on another port
(another origin of the same site, the closest a page on the web gets). It
tries what the security review found working: a ``text/plain`` POST without
a preflight, a JSON POST, a reset, reading the captured events and the
console's stream. A page whose name resolves to 127.0.0.1 (DNS rebinding,
here by the browser's host resolver rules) is refused by its ``Host``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator

import pytest
from aiohttp import web
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from raccoon_beam.emulator import Outcome, RaccoonEmulator
from tests.emulator.chromium import chromium
from tests.reliability.conftest import TinyServer

REBOUND_NAME = "rebound.example"
WAIT = 30.0

ATTACK = """<!doctype html><title>attacking</title><script>
"use strict";
const E = %(emulator)s;
const FAULT = JSON.stringify(%(fault)s);
const results = {};
async function attempt(name, run) {
  try { results[name] = await run(); } catch (err) { results[name] = "error: " + err; }
}
(async () => {
  await attempt("text_plain_post", () => fetch(E + "/_emulator/faults", {method: "POST", mode: "no-cors",
    headers: {"Content-Type": "text/plain"}, body: FAULT}).then((r) => "sent (" + r.type + ")"));
  await attempt("json_post", () => fetch(E + "/_emulator/faults", {method: "POST",
    headers: {"Content-Type": "application/json"}, body: FAULT}).then((r) => "status " + r.status));
  await attempt("reset", () => fetch(E + "/_emulator/reset", {method: "POST", mode: "no-cors",
    headers: {"Content-Type": "text/plain"}, body: "{}"}).then((r) => "sent (" + r.type + ")"));
  await attempt("events", () => fetch(E + "/_emulator/events").then((r) => r.text()));
  await attempt("stream", () => new Promise((resolve) => {
    const source = new EventSource(E + "/_emulator/ui/stream");
    source.onmessage = (m) => { source.close(); resolve("read " + m.data.length + " bytes"); };
    source.onerror = () => { source.close(); resolve("error"); };
  }));
  window.results = results;
  document.title = "done";
})();
</script>"""


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium([f"--host-resolver-rules=MAP {REBOUND_NAME} 127.0.0.1"]) as driver:
        yield driver


def _attacker(emulator_url: str) -> TinyServer:
    fault = {"method": "fail_publish", "args": {"fraction": 1.0}}
    page = ATTACK % {"emulator": json.dumps(emulator_url), "fault": json.dumps(fault)}

    async def attack(_: web.Request) -> web.Response:
        return web.Response(text=page, content_type="text/html")

    return TinyServer(routes={("GET", "/attack.html"): attack})


def _run_attack(browser: webdriver.Chrome, url: str) -> Dict[str, Any]:
    browser.get(url)
    WebDriverWait(browser, WAIT, poll_frequency=0.1).until(lambda d: d.title == "done", "the attack never finished")
    return browser.execute_script("return window.results")


def test_a_page_of_another_origin_can_neither_change_a_fault_nor_read_events(browser: webdriver.Chrome) -> None:
    with RaccoonEmulator() as emulator:
        emulator.faults.add_latency(0.01, transport="grpc")  # a rule the reset must not clear
        before = emulator.faults.describe()
        from tests.emulator.conftest import Kit

        kit = Kit(emulator)
        kit.grpc(kit.request([("secret_type", b'{"card": "4111"}')]).body)
        assert emulator.wait_for_events(1, timeout=10)
        with _attacker(emulator.http_base_url) as attacker:
            results = _run_attack(browser, f"http://127.0.0.1:{attacker.port}/attack.html")
            # Served: the attacking page was really another origin that the browser let run.
            assert attacker.requests and attacker.requests[0]["path"] == "/attack.html"
        assert emulator.faults.describe() == before  # no fault switched, nothing reset
        assert results["json_post"].startswith("error")  # the preflight was refused
        assert results["events"].startswith("error") and "4111" not in json.dumps(results)
        assert results["stream"] == "error"
        assert len(emulator.events()) == 1

        # The emulator's own page still works in the same browser.
        browser.get(emulator.console_url)
        WebDriverWait(browser, WAIT, poll_frequency=0.1).until(
            lambda d: d.find_element(By.ID, "status").text == "live", "the console never connected")


def test_a_rebound_name_is_refused_by_its_host(browser: webdriver.Chrome) -> None:
    with RaccoonEmulator() as emulator:
        emulator.faults.fail_next(1, Outcome.http(503))
        for path in ("/_emulator/events", "/_emulator/ui", "/_emulator/faults"):
            browser.get(f"http://{REBOUND_NAME}:{emulator.http_port}{path}")
            body = browser.find_element(By.TAG_NAME, "body").text
            assert "loopback" in body and "Host" in body, (path, body)
