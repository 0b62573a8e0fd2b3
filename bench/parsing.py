"""Parsing benchmark: every accepted event shape, parsed and validated, against `json.loads`.

    python bench/parsing.py [--number 20000] [--repeat 5]

For each fixture in tests/events/ (one line of compact JSON each) it times ``json.loads`` of the
line (the floor) and ``parse_message(json.loads(line))`` (what `edp simulate` does per line;
``edp run`` and the Lambdas do the same), best of ``--repeat``, in CPU time, the floor's and
the parser's runs taking turns (so a change of load while one runs does not skew the ratio;
wall time also counts the time other processes hold the core). Envelopes (SQS, SNS) carry their
event as an escaped JSON string that any reader has to decode again: for them the floor also
includes those inner ``json.loads`` calls, shown separately. Target (issue 16): within 2x of the
floor for every shape. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edp.events import parse_message

EVENTS = Path(__file__).resolve().parent.parent / "tests" / "events"
SHAPES = (
    "eventbridge_object_created",
    "eventbridge_object_deleted",
    "s3_notification_put",
    "s3_notification_delete",
    "sns_notification_s3",
    "lambda_sqs_batch",
    "lambda_sns_event",
    "lambda_sqs_of_sns",
)
TARGET = 2.0


def inner_texts(obj: Any) -> list[str]:
    """The JSON strings an envelope carries (SQS bodies, SNS messages), at any depth."""
    found: list[str] = []
    if isinstance(obj, dict):
        for name in ("body", "Body", "Message"):
            value = obj.get(name)
            if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
                found.append(value)
                found.extend(inner_texts(json.loads(value)))
        for value in obj.values():
            if isinstance(value, dict | list):
                found.extend(inner_texts(value))
    elif isinstance(obj, list):
        for item in obj:
            found.extend(inner_texts(item))
    return found


def best(actions: list[Callable[[], Any]], number: int, repeat: int) -> list[float]:
    """Each action's best time of ``repeat`` runs of ``number`` calls, in CPU µs per call; the
    actions take turns, so each sees the same load."""
    timers = [timeit.Timer(action, timer=time.process_time) for action in actions]
    runs: list[list[float]] = [[] for _ in actions]
    for _ in range(repeat):
        for timer, times in zip(timers, runs, strict=True):
            times.append(timer.timeit(number))
    return [min(times) / number * 1e6 for times in runs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{'shape':<30}{'events':>7}{'floor µs':>10}{'parsed µs':>11}{'ratio':>8}")
    ok = True
    for name in SHAPES:
        line = json.dumps(json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8")))
        inner = inner_texts(json.loads(line))
        events = len(parse_message(json.loads(line)).events)

        def floor(line: str = line, inner: list[str] = inner) -> None:
            json.loads(line)
            for text in inner:
                json.loads(text)

        def parsed(line: str = line) -> None:
            parse_message(json.loads(line))

        floor_us, parsed_us = best([floor, parsed], args.number, args.repeat)
        ratio = parsed_us / floor_us
        ok = ok and ratio <= TARGET
        note = f"  (floor: the line and {len(inner)} inner JSON strings)" if inner else ""
        print(f"{name:<30}{events:>7}{floor_us:>10.2f}{parsed_us:>11.2f}{ratio:>7.2f}x{note}")
    print()
    print(f"{'PASS' if ok else 'FAIL'}  every shape within {TARGET}x of its json.loads floor")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
