"""The console in a real browser: Debian's chromium, driven by Selenium through chromedriver.

A pipeline (WriteToRaccoon) writes to the emulator while the page is open;
the page must show what the emulator counted and captured, and a fault
switched on from the page must reach the pipeline's requests. The browser
is not optional: without /usr/bin/chromium and /usr/bin/chromedriver (`make
browser-deps` installs them) these tests fail.
"""

from __future__ import annotations

import json
import pathlib
from typing import Callable, Iterator, List

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from raccoon_beam import RetryPolicy, WriteToRaccoon
from raccoon_beam.emulator import Outcome, RaccoonEmulator
from raccoon_beam.emulator.process import EmulatorProcess
from tests.emulator.chromium import chromium

# Where the screenshots go (gitignored); CI keeps them as artifacts.
ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / "test-artifacts"
# Many requests, so that a share of them meets the fault; retried fast.
FAST_RETRY = RetryPolicy(max_attempts=10, initial_backoff=0.001, max_backoff=0.01)
WAIT = 30.0


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    with chromium() as driver:
        yield driver


def _wait(driver: webdriver.Chrome, condition: Callable[[], object], what: str) -> object:
    def check(_: object) -> object:
        try:
            return condition()
        except Exception:  # an element not rendered yet
            return False

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(check, message=f"the page never showed {what}")


def _text(driver: webdriver.Chrome, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def _events(start: int, n: int) -> List[dict]:
    # Two types, 2:1, so that the per-topic counts differ.
    return [{"id": i, "event_name": "click" if i % 3 else "page_view", "page": f"/p/{i}"} for i in range(start, start + n)]


def _write(endpoint: str, events: List[dict], **kwargs: object) -> None:
    with beam.Pipeline() as pipeline:
        result = (
            pipeline
            | beam.Create(events, reshuffle=False)
            | WriteToRaccoon(endpoint, event_type=lambda e: e["event_name"], **kwargs)
        )
        assert_that(result.failed, equal_to([]), label="NoDeadLetters")


def _screenshot(driver: webdriver.Chrome, name: str) -> pathlib.Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    # The whole page: as tall as its content.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(900, int(height) + 40))
    assert driver.save_screenshot(str(path)), "no screenshot"
    return path


def test_console_shows_a_pipeline_and_switches_a_fault(browser: webdriver.Chrome) -> None:
    with RaccoonEmulator() as emulator:
        browser.get(emulator.console_url)
        _wait(browser, lambda: _text(browser, "status") == "live", "the stream connected")

        sent = _events(0, 300)
        _write(emulator.rest_endpoint, sent, max_batch_size=50)
        _wait(browser, lambda: _text(browser, "count-click") == "200", "200 click events")
        assert _text(browser, "count-page_view") == "100"
        assert _text(browser, "accepted-rest") == str(emulator.counters().accepted("rest"))

        # The latest click event, decoded: pretty-printed JSON of one event that was sent. Read in one
        # script: the page re-renders the table a few times a second.
        # (The latest events refresh once a second, the counts four times.)
        cells, payload = _wait(browser, lambda: browser.execute_script(
            'const row = document.querySelector(\'table.latest[data-type="click"] tbody tr\');'
            "return row && [Array.from(row.cells, (c) => c.textContent), row.querySelector('pre.payload').textContent];"
        ), "the latest click events")
        assert "\n" in payload and json.loads(payload) in sent
        # The row's request (a batch mixes types: its other events may be page views) held a click.
        batch = [e for e in emulator.events() if e.req_guid == cells[2]]
        assert any(e.type == "click" for e in batch), (cells, batch)
        assert cells[3] == batch[0].conn_id and cells[1] == "rest"
        assert cells[5] == "json"

        # A 503 share on REST, switched on by a click.
        assert emulator.counters().injected("http", "rest") == 0
        browser.find_element(By.ID, "fault-rest-503").click()
        _wait(browser, lambda: "on" in browser.find_element(By.ID, "switch-rest-503").get_attribute("class"),
              "the 503 switch on")
        rules = emulator.faults.describe()["fractions"]
        assert [(r["transport"], r["fraction"], r["outcome"]["status"]) for r in rules] == [("rest", 0.5, 503)]

        more = _events(300, 150)
        _write(emulator.rest_endpoint, more, max_batch_size=10, retry=FAST_RETRY)
        injected = emulator.counters().injected("http", "rest")
        assert injected > 0, "the pipeline's requests never met the fault"
        assert emulator.wait_for_events(450, timeout=10)  # every event got through, retried
        _wait(browser, lambda: _text(browser, "faultcount-http-rest") == str(injected), f"{injected} 503s")
        _wait(browser, lambda: _text(browser, "rejectedcount-http-rest") == str(injected), "the rejections")
        assert "http 503" in browser.find_element(By.ID, "rejections").text
        _wait(browser, lambda: _text(browser, "count-click") == "300", "300 click events")
        path = _screenshot(browser, "console.png")
        assert path.stat().st_size > 10_000

        # Switched off again from the page.
        browser.find_element(By.ID, "fault-rest-503").click()
        _wait(browser, lambda: not emulator.faults.describe()["fractions"], "the switch off taking effect")


def test_console_in_digest_mode_shows_counts_only(browser: webdriver.Chrome) -> None:
    with RaccoonEmulator(capture="digest") as emulator:
        browser.get(emulator.console_url)
        _wait(browser, lambda: _text(browser, "status") == "live", "the stream connected")
        _write(emulator.grpc_endpoint, _events(0, 90))
        _wait(browser, lambda: _text(browser, "count-click") == "60", "60 click events")
        assert _text(browser, "count-page_view") == "30"
        assert "events are not kept" in _text(browser, "events-note")
        assert not browser.find_elements(By.CSS_SELECTOR, "table.latest")
        _screenshot(browser, "console-digest.png")


def test_console_opened_with_its_token_keeps_working(browser: webdriver.Chrome) -> None:
    with RaccoonEmulator(host="0.0.0.0") as emulator:
        token = emulator.console_token
        assert token
        url = emulator.console_url.replace("0.0.0.0", "127.0.0.1")
        assert url.endswith(f"#token={token}")  # a fragment: the browser never sends it
        browser.get(url.split("#")[0])  # without the token: the page loads, its stream is refused
        _wait(browser, lambda: "disconnected" in _text(browser, "status"), "the stream refused")
        browser.get(url)
        _wait(browser, lambda: _text(browser, "status") == "live", "the stream connected with the token")
        assert token not in browser.current_url  # traded for a cookie, then dropped from the address bar
        browser.find_element(By.ID, "fault-grpc-slow").click()
        _wait(browser, lambda: emulator.faults.describe()["latency"] == {"grpc": 0.2}, "the latency switch applied")
        _wait(browser, lambda: "on" in browser.find_element(By.ID, "switch-grpc-slow").get_attribute("class"),
              "the latency switch on")
        assert _text(browser, "fault-error") == ""


def test_console_sets_the_capacity_and_shows_the_buffer(browser: webdriver.Chrome) -> None:
    with RaccoonEmulator() as emulator:
        browser.get(emulator.console_url)
        _wait(browser, lambda: _text(browser, "status") == "live", "the stream connected")
        assert "unlimited" in _text(browser, "overload-state")
        field = browser.find_element(By.ID, "overload-capacity")
        field.clear()
        field.send_keys("2500")
        browser.find_element(By.ID, "overload-apply").click()
        _wait(browser, lambda: emulator.overload.settings.capacity_events_per_second == 2500, "the capacity applied")
        _wait(browser, lambda: "waiting for the publisher: 0 requests" in _text(browser, "overload-state"),
              "the buffer's state")
        field = browser.find_element(By.ID, "overload-depth")
        field.clear()
        field.send_keys("0")  # refused by the emulator: the page says why
        browser.find_element(By.ID, "overload-apply").click()
        _wait(browser, lambda: "gateway_queue_depth must be a positive integer" in _text(browser, "overload-error"),
              "the refusal")
        assert emulator.overload.settings.gateway_queue_depth is None


def _number(value: float) -> str:
    """A number as JavaScript's String() writes it (1.0 -> "1", 0.25 -> "0.25")."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _rule_keys(faults: dict) -> List[str]:
    """The keys the console gives the rules in force (console.js, ruleLines), from GET /_emulator/faults."""
    keys = [f"fraction|{r['transport']}|{_number(r['fraction'])}|{r['describe']}" for r in faults["fractions"]]
    keys += [f"next|{r['transport']}|{r['remaining']}|{r['describe']}" for r in faults["next"]]
    keys += [f"drop|{r['transport']}|{r['remaining']}|{r['kind']}" for r in faults["drops"]]
    keys += [f"latency|{scope}|{_number(seconds)}" for scope, seconds in faults["latency"].items()]
    keys += [f"reject|{event_type}" for event_type in faults["rejected_types"]]
    publish = faults["publish"]
    keys += ["publish|always"] if publish["always"] else []
    keys += [f"publish|next|{publish['next']}"] if publish["next"] else []
    keys += [f"publish|fraction|{_number(publish['fraction'])}"] if publish["fraction"] else []
    return sorted(keys)


def _shown_rules(driver: webdriver.Chrome) -> List[str]:
    return sorted(driver.execute_script(
        "return Array.from(document.querySelectorAll('#faults-in-force li'), (li) => li.dataset.rule);"
    ))


def _switch_on(driver: webdriver.Chrome, switch_id: str) -> bool:
    return "on" in driver.find_element(By.ID, switch_id).get_attribute("class")


def test_console_fault_panel_matches_the_faults_set_by_the_cli_and_the_api(browser: webdriver.Chrome) -> None:
    cli_faults = [
        "--fail-fraction", "0.25",  # a 503 share for every transport
        "--fail-next", "3",
        "--latency", "0.05",
        "--reject-event-type", "bad",
        "--fail-publish-fraction", "0.1",
    ]
    with EmulatorProcess(args=cli_faults) as process:
        # And more through the control route, as a script or another test would.
        process.fault("fail_fraction", fraction=0.4, outcome=Outcome.http(429, retry_after=2), transport="websocket")
        process.fault("drop_connection", n=2, transport="grpc")
        process.fault("add_latency", seconds=0.3, transport="rest")
        faults = process._call("GET", "/faults")
        expected = _rule_keys(faults)
        assert len(expected) == 8, expected

        browser.get(process.console_url)
        _wait(browser, lambda: _shown_rules(browser) == expected, f"the rules {expected}")
        # Each switch of a kind in force is on, with the rule's value in its input.
        for switch in ("all-503", "all-next", "all-slow", "websocket-429", "rest-slow", "grpc-drop"):
            assert _switch_on(browser, f"switch-{switch}"), switch
        for switch in ("rest-503", "grpc-429", "grpc-slow", "rest-drop"):
            assert not _switch_on(browser, f"switch-{switch}"), switch
        assert _switch_on(browser, "switch-publish") and _switch_on(browser, "switch-reject")
        values = browser.execute_script(
            "return ['fault-all-503-share', 'fault-websocket-429-share', 'fault-websocket-429-retry', "
            "'fault-all-slow-seconds', 'fault-rest-slow-seconds', 'fault-publish-share']"
            ".map((id) => Number(document.getElementById(id).value));"
        )
        assert values == [0.25, 0.4, 2, 0.05, 0.3, 0.1]
        assert _text(browser, "fault-grpc-drop-pending") == "2 pending"
        assert _text(browser, "fault-all-next-pending") == "3 pending"
        _screenshot(browser, "console-faults.png")

        # Removed from the page: the route shows it gone, and the page shows what the route shows.
        browser.find_element(By.CSS_SELECTOR, '#faults-in-force li[data-rule="reject|bad"] button').click()
        _wait(browser, lambda: not process._call("GET", "/faults")["rejected_types"], "the rejection removed")
        browser.find_element(By.ID, "fault-all-next").click()
        _wait(browser, lambda: not process._call("GET", "/faults")["next"], "the countdown cleared")
        expected = _rule_keys(process._call("GET", "/faults"))
        _wait(browser, lambda: _shown_rules(browser) == expected, f"the rules {expected}")
        assert len(expected) == 6

        # A reset clears every rule, and the page says so.
        process.reset()
        _wait(browser, lambda: _shown_rules(browser) == [] and _text(browser, "faults-none") != "", "no rule")
        assert not _switch_on(browser, "switch-all-503") and not _switch_on(browser, "switch-publish")
        assert _text(browser, "fault-error") == ""
