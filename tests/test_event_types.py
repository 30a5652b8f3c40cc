"""Event types validated as Raccoon and Kafka use them, and caches bounded in entries and bytes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from raccoon_beam import WriteToRaccoon
from raccoon_beam.errors import STAGE_VALIDATE
from raccoon_beam.events import EventBuilder, EventRejected
from raccoon_beam.protocol import topic_problem
from raccoon_beam.wire import Wire


def _builder(**kwargs) -> EventBuilder:
    return EventBuilder(lambda e: e, lambda e: b"{}", Wire.PROTOBUF, None, 1_000_000, **kwargs)


@pytest.mark.parametrize(
    "event_type, fragment",
    [
        ("has space", "holds ' '"),
        ("new\nline", "holds '\\n'"),
        ("ü", "holds 'ü'"),
        ("x" * 240, "over Kafka's 249"),  # the type fits, its topic does not
        ("x" * 3_000_000, "3000000 characters long"),
    ],
)
def test_a_type_kafka_refuses_as_a_topic_is_a_validate_dead_letter(event_type, fragment):
    with pytest.raises(EventRejected) as info:
        _builder()(event_type)
    assert info.value.stage == STAGE_VALIDATE
    assert fragment in info.value.reason and len(info.value.reason) < 400


def test_legal_types_pass_and_the_pattern_is_an_option():
    assert _builder()("page.view_v2-x")[0] == "page.view_v2-x"
    assert _builder(topic_pattern="events.%s")("x" * 240)[0] == "x" * 240  # 247 characters: a legal topic


@pytest.mark.parametrize("pattern", ["no-placeholder", "%s-%s", "100%-%s", "bad topic %s"])
def test_a_pattern_that_cannot_make_topics_fails_at_construction(pattern):
    with pytest.raises(ValueError, match="topic_pattern"):
        WriteToRaccoon("grpc://127.0.0.1:1", event_type="click", topic_pattern=pattern)


def test_a_constant_type_kafka_refuses_fails_at_construction():
    with pytest.raises(ValueError, match="makes the Kafka topic 'clickstream-a b-log'"):
        WriteToRaccoon("grpc://127.0.0.1:1", event_type="a b")


def test_kafka_topic_rules():
    assert topic_problem("clickstream-a.b_c-1-log") is None
    assert topic_problem("x" * 249) is None
    assert "over Kafka's 249" in topic_problem("x" * 250)
    assert topic_problem("..") is not None


_RSS_PROGRAM = textwrap.dedent(
    """
    import gc, psutil
    from raccoon_beam.events import EventBuilder, EventRejected
    from raccoon_beam.wire import Wire, encode_request

    process = psutil.Process()
    builders = [EventBuilder(lambda e: e, lambda e: b"{}", wire, None, 3_000_000) for wire in Wire]
    for builder in builders:  # warm up: imports, first allocations
        builder("warm")
    gc.collect()
    start = process.memory_info().rss
    for i in range(10_000):
        long_type = f"{i:06d}" + "x" * 100_000  # 100 KB: never a topic
        short_type = f"type-{i:06d}-" + "y" * 200  # a legal topic of 218 characters
        for builder in builders:
            try:
                builder(long_type)
            except EventRejected:
                pass
            builder(short_type)
        for wire in Wire:
            encode_request([(short_type, b"{}")], wire=wire)
    gc.collect()
    print((process.memory_info().rss - start) // 1024)
    """
)


@pytest.mark.slow
def test_ten_thousand_distinct_types_leave_rss_within_50_mb():
    done = subprocess.run([sys.executable, "-c", _RSS_PROGRAM], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    grown_kib = int(done.stdout.split()[-1])
    print(f"RSS grew by {grown_kib / 1024:.1f} MiB for 10,000 distinct long and short types")
    assert grown_kib < 50 * 1024
