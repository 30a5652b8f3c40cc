"""Renders the rows the reliability harness recorded as the tables of docs/reliability.md.

Usage::

    RACCOON_RELIABILITY_REPORT=/tmp/rows.jsonl .venv/bin/python -m pytest tests/reliability
    .venv/bin/python -m tests.reliability.report /tmp/rows.jsonl            # print the tables
    .venv/bin/python -m tests.reliability.report /tmp/rows.jsonl --write docs/reliability.md

With ``--write``, the text between ``<!-- matrix:begin -->`` and
``<!-- matrix:end -->`` (and ``<!-- soak:begin -->`` / ``<!-- soak:end -->``)
in the given file is replaced; the rest of the file is left alone. When a
cell ran more than once, its last row wins.

A cell is a fault, a transport and a runner. The matrix runs on the
DirectRunner; the runner tests (``tests/runners/``, with the same variable
set) add the cells a runner changes: bad elements last in the input and a
closed port, on every runner (``harness.check_straight``). Rows without a
``runner`` are the DirectRunner's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from typing import Any, Dict, List, Tuple

FAULT_ORDER = (
    "down_at_start",
    "restart_mid_run",
    "random_503",
    "burst_429",
    "slow_server",
    "slow_server_dedup",
    "drop_before_capture",
    "drop_after_capture",
    "duplicate_conn_id",
    "publish_failures",
    "down_for_good",
    "bad_elements_last",
    "closed_port",
)
TRANSPORT_ORDER = ("grpc", "rest", "websocket")
RUNNER_ORDER = ("DirectRunner", "BundleBasedDirectRunner", "FnApiRunner", "PortableRunner", "DaskRunner")
DEFAULT_RUNNER = "DirectRunner"
REPORT_ENV = "RACCOON_RELIABILITY_REPORT"


def record_row(row: Dict[str, Any]) -> None:
    """Appends ``row`` to the file named by ``RACCOON_RELIABILITY_REPORT``, if it is set."""
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row, sort_keys=True) + "\n")


def _rank(value: str, order: Tuple[str, ...]) -> int:
    return order.index(value) if value in order else len(order)


def load(path: str) -> Tuple[List[Dict[str, Any]], Dict[str, Any]]:
    """The matrix rows (last one per cell) and the last soak row."""
    cells: Dict[Tuple[str, str, str], Dict[str, Any]] = {}
    soak: Dict[str, Any] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            row = json.loads(line)
            if "soak" in row:
                soak = row["soak"]
            else:
                row.setdefault("runner", DEFAULT_RUNNER)
                cells[(row["fault"], row["transport"], row["runner"])] = row

    def order(key: Tuple[str, str, str]) -> Tuple[int, int, int]:
        fault, transport, runner = key
        return (_rank(fault, FAULT_ORDER), _rank(transport, TRANSPORT_ORDER), _rank(runner, RUNNER_ORDER))

    return [cells[key] for key in sorted(cells, key=order)], soak


def matrix_table(rows: List[Dict[str, Any]]) -> str:
    lines = [
        "| fault | transport | runner | events in | captured | dead-lettered | duplicates | lost | faults injected | seconds |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        duplicates = f"{row['duplicates']:,}"
        if row.get("ambiguous"):
            duplicates += " (ambiguous)"
        lines.append(
            f"| {row['fault']} | {row['transport']} | {row.get('runner', DEFAULT_RUNNER)} "
            f"| {row['events_in']:,} | {row['captured']:,} "
            f"| {row['dead_lettered']:,} | {duplicates} | {row['lost']:,} | {row['injected']:,} "
            f"| {row['seconds']:.1f} |"
        )
    return "\n".join(lines)


def soak_table(soak: Dict[str, Any]) -> str:
    if not soak:
        return "_(no soak row recorded)_"
    labels = [
        ("events_in", "events in"),
        ("captured", "captured (digest)"),
        ("dead_lettered", "dead-lettered"),
        ("lost", "lost"),
        ("requests_received", "requests the server read"),
        ("faults_injected", "requests hit by a fault"),
        ("seconds", "seconds"),
        ("events_per_second", "events/s"),
        ("rss_first_third_mib", "RSS, average of the first third (MiB)"),
        ("rss_last_third_mib", "RSS, average of the last third (MiB)"),
        ("rss_max_mib", "RSS, max (MiB)"),
        ("rss_samples", "RSS samples"),
    ]
    lines = ["| measure | value |", "| --- | ---: |"]
    for key, label in labels:
        value = soak.get(key)
        shown = f"{value:,}" if isinstance(value, int) else str(value)
        lines.append(f"| {label} | {shown} |")
    return "\n".join(lines)


def replace_section(text: str, name: str, body: str) -> str:
    pattern = re.compile(rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"markers <!-- {name}:begin --> / <!-- {name}:end --> not found")
    return pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)


def main(argv: List[str] = sys.argv[1:]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", help="the JSONL file the harness wrote (RACCOON_RELIABILITY_REPORT)")
    parser.add_argument("--write", metavar="MARKDOWN", help="replace the marked sections of this file")
    args = parser.parse_args(argv)
    rows, soak = load(args.rows)
    matrix, soak_md = matrix_table(rows), soak_table(soak)
    if args.write:
        with open(args.write, encoding="utf-8") as handle:
            text = handle.read()
        text = replace_section(replace_section(text, "matrix", matrix), "soak", soak_md)
        with open(args.write, "w", encoding="utf-8") as handle:
            handle.write(text)
    else:
        print(matrix)
        print()
        print(soak_md)
    lost = sum(row["lost"] for row in rows) + int(soak.get("lost", 0) or 0)
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
