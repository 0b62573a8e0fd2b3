"""`edp simulate` benchmark: the whole command against the json.loads floor, and its peak memory.

    python bench/simulate.py                               # 100k events; RSS at 100k and 1M
    python bench/simulate.py --events 20000 --rss-events 0 # quick

Writes EventBridge S3 events as JSON lines into a temporary folder (7 instruments writing ~50
files per experiment prefix, one event every 0.05 s; deleted at the end), then runs, each as its
own process, so start-up counts on both sides:

* the floor: ``json.loads`` of every line of the file, nothing else;
* ``edp simulate FILE`` (its default store: its own ``memory://``), output to /dev/null.

Before timing, the bytecode of edp's packages is compiled (``compileall``), as ``pip install``
compiles it and as any run leaves it behind; on a machine that sets ``PYTHONDONTWRITEBYTECODE``
(this one does) every run would otherwise compile edp's modules from source first, which says
nothing about simulate (the floor's ``json`` is compiled already).

It runs them in rounds, the floor then simulate, and prints the best wall and CPU time of each,
the ratio of the bests, and the median over the rounds of each simulate run's ratio to the floor
run just before it: the verdict's figure (target, issue 16: simulate within 2.5x of the floor),
since the machine's speed drifts and a round's own floor drifts with it. Then the peak RSS of
``edp simulate`` on ``--events`` and ``--rss-events`` events: the
input is streamed, so the difference is the state the store keeps in memory (for the memory
store: the open batches, the dedupe identity and sequencer of each event within the 24-hour
window, and one record per published batch). Exit status 1 when the time target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from consumers.testing import s3_sequencer

T0 = datetime(2024, 1, 1, tzinfo=UTC)
TARGET_RATIO = 2.5
FLOOR = "import json, sys\nfor line in open(sys.argv[1], 'rb'):\n    json.loads(line)\n"


def event(n: int) -> dict[str, Any]:
    """The n-th EventBridge 'Object Created' event of the stream."""
    moment = T0 + timedelta(milliseconds=50 * n)
    key = f"instrument-{n % 7}/exp-{n // 350:06d}/file-{n:08d}.dat"
    return {
        "version": "0",
        "id": f"{n:08x}-0000-4000-8000-000000000000",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "111122223333",
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": "us-east-1",
        "resources": ["arn:aws:s3:::instrument-bucket"],
        "detail": {
            "version": "0",
            "bucket": {"name": "instrument-bucket"},
            "object": {
                "key": key,
                "size": 1024,
                "etag": "b1946ac92492d2347c6235b4d2611184",
                "sequencer": s3_sequencer(moment, n),
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "123456789012",
            "source-ip-address": "1.2.3.4",
            "reason": "PutObject",
        },
    }


def write_events(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            out.write(json.dumps(event(n)) + "\n")


def measure(command: list[str]) -> tuple[float, float, int, str]:
    """(wall s, CPU s, peak RSS KiB, stderr) of one child process, read from its own rusage."""
    import time

    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if child.returncode != 0:
        raise SystemExit(f"{command[:4]} failed ({child.returncode}): {stderr[-500:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, stderr


def compile_bytecode() -> int:
    """Compile edp's packages to bytecode where they are (what ``pip install`` does); the number
    of modules that were not compiled yet."""
    import compileall
    import importlib.util

    fresh = 0
    for name in ("edp", "edp_common"):
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            before = len(list(Path(folder).rglob("*.pyc")))
            compileall.compile_dir(folder, quiet=2)
            fresh += len(list(Path(folder).rglob("*.pyc"))) - before
    return fresh


def instructions(command: list[str]) -> int:
    """Instructions one child process executes (valgrind --tool=callgrind), start-up included."""
    import re
    import shutil

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        raise SystemExit("--instructions needs valgrind (apt install valgrind)")
    # The interpreter itself, not a launcher script (pyenv's shims are shell scripts).
    command = [os.path.realpath(sys.executable), *command[1:]]
    done = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no instruction count from callgrind: {done.stderr[-300:]}")
    return int(found.group(1))


def simulate_command(path: Path, db: str | None) -> list[str]:
    command = [sys.executable, "-m", "edp.cli", "simulate", str(path)]
    return command + (["--db", db] if db else [])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rss-events", type=int, default=1_000_000, help="0: skip")
    parser.add_argument("--db", help="store URL for simulate (default: its own memory://)")
    parser.add_argument(
        "--rounds", type=int, default=7, help="rounds of (floor, simulate) for the timings"
    )
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        metavar="N",
        help="also count the instructions of both on the first N events under valgrind's "
        "callgrind (the same every run, whatever the machine's load; about a minute per 20k)",
    )
    args = parser.parse_args(argv)

    compiled = compile_bytecode()
    with tempfile.TemporaryDirectory(prefix="edp-bench-") as tmp:
        small = Path(tmp) / f"events-{args.events}.jsonl"
        write_events(small, args.events)
        store = args.db or "its own (memory://)"
        print(f"edp simulate benchmark: {args.events:,} EventBridge events, store: {store}")
        print(f"(bytecode compiled first: {compiled} modules were not yet)")
        # Rounds of (floor, simulate) back to back: the machine's speed drifts over seconds, so
        # a round's own floor is the fairest yardstick for its simulate run.
        floors, runs = [], []
        for _ in range(args.rounds):
            floors.append(measure([sys.executable, "-c", FLOOR, str(small)]))
            runs.append(measure(simulate_command(small, args.db)))
        floor_wall, floor_cpu = min(f[0] for f in floors), min(f[1] for f in floors)
        sim_wall, sim_cpu = min(r[0] for r in runs), min(r[1] for r in runs)
        wall_ratio = statistics.median(r[0] / f[0] for f, r in zip(floors, runs, strict=True))
        cpu_ratio = statistics.median(r[1] / f[1] for f, r in zip(floors, runs, strict=True))
        print()
        print(f"{'':<34}{'wall s':>9}{'CPU s':>9}")
        print(f"{'floor: json.loads of each line':<34}{floor_wall:>9.2f}{floor_cpu:>9.2f}")
        print(f"{'edp simulate':<34}{sim_wall:>9.2f}{sim_cpu:>9.2f}")
        best = f"ratio of the bests of {args.rounds}"
        print(f"{best:<34}{sim_wall / floor_wall:>8.2f}x{sim_cpu / floor_cpu:>8.2f}x")
        paired = f"median ratio of {args.rounds} rounds"
        print(f"{paired:<34}{wall_ratio:>8.2f}x{cpu_ratio:>8.2f}x   (each to its own floor)")
        print(f"summary line: {runs[0][3].strip().splitlines()[-1]}")
        if args.instructions:
            head = Path(tmp) / f"events-{args.instructions}.jsonl"
            with small.open("rb") as source, head.open("wb") as out:
                for _, line in zip(range(args.instructions), source, strict=False):
                    out.write(line)
            floor_n = instructions([sys.executable, "-c", FLOOR, str(head)])
            sim_n = instructions(simulate_command(head, args.db))
            print(
                f"instructions on {args.instructions:,} events (callgrind): floor {floor_n:,}, "
                f"edp simulate {sim_n:,}: {sim_n / floor_n:.2f}x"
            )

        print()
        print(f"{'peak RSS of edp simulate':<34}{'MiB':>9}")
        rss = {args.events: min(r[2] for r in runs)}
        if args.rss_events:
            large = Path(tmp) / f"events-{args.rss_events}.jsonl"
            write_events(large, args.rss_events)
            size = large.stat().st_size / 2**20
            small.unlink()
            rss[args.rss_events] = measure(simulate_command(large, args.db))[2]
            large.unlink()
            print(f"(the {args.rss_events:,}-event file is {size:,.0f} MiB)")
        for count, kib in sorted(rss.items()):
            print(f"{count:>12,} events{'':<15}{kib / 1024:>9.1f}")
        if len(rss) == 2:
            (low, low_kib), (high, high_kib) = sorted(rss.items())
            per_event = (high_kib - low_kib) * 1024 / (high - low)
            print(f"growth per event: {per_event:,.0f} bytes (the state the store keeps in memory)")

    ok = wall_ratio <= TARGET_RATIO and cpu_ratio <= TARGET_RATIO
    print()
    print(
        f"{'PASS' if ok else 'FAIL'}  simulate within {TARGET_RATIO}x of the floor "
        f"(wall {wall_ratio:.2f}x, CPU {cpu_ratio:.2f}x)"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
