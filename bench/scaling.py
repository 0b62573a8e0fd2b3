"""Scaling benchmark: the store's per-event cost against history and against open prefixes.

    python bench/scaling.py                       # memory and SQLite; PostgreSQL if reachable
    python bench/scaling.py --sizes 10000,100000 --open 10,1000,10000 --stores memory,sqlite
    EDP_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres python bench/scaling.py

Two tables, every store (memory, SQLite, PostgreSQL when ``--postgres``/``EDP_BENCH_POSTGRES_URL``
or the default local server answers), each store driven as ``edp simulate`` drives it (chunks of
1,000 events: ``ingest``, ``close_due`` at the chunk's last time, ``mark_published``), events
pre-built so only the store is timed:

* **history**: 7 instruments writing ~50 files per experiment prefix, one event per 0.05 s
  (default thresholds: 20 files or 300 s), for 10k, 100k and 1M events in one run. The cost per
  event is the average up to that point (the issue's measure) and, beside it, the average over
  the last tenth (what an event costs *then*);
* **open prefixes**: 10 to 100,000 batches held open (no threshold reached), then 20,000 events,
  each chunk writing to 10 of them (the next 10 for the next chunk), so every size does the same
  work per chunk; the cost per event (sweeps included), and the mean time of the sweep after each
  chunk (``close_due`` with nothing due plus ``next_due``, what ``edp run`` does after a receive).

Costs are CPU time for the in-process stores (the machine is shared) and wall time for
PostgreSQL (its work is in the server). Target (issue 16): flat within 1.3x from the smallest to
the largest size, on every store. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from consumers.testing import s3_sequencer
from edp.core import RoutedEvent, Rules
from edp.events import ObjectEvent
from edp.store import BatchStore, open_store

T0 = datetime(2024, 1, 1, tzinfo=UTC)
CHUNK = 1000  # events per store transaction, as `edp simulate` and `edp run` batch them
TARGET_FLAT = 1.3
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
HISTORY_RULES = Rules()  # 20 files or 300 s
OPEN_RULES = Rules(threshold_count=10**9, threshold_duration=timedelta(days=3650))
OPEN_EVENTS = 20_000
ACTIVE = 10  # prefixes written by each chunk of the open-prefix run


def history_events(start: int, count: int) -> list[RoutedEvent]:
    """7 instruments, ~50 files per experiment prefix, one event every 0.05 s."""
    events = []
    for n in range(start, start + count):
        instrument = n % 7
        prefix = f"instrument-{instrument}/exp-{n // 350:06d}/"
        moment = T0 + timedelta(milliseconds=50 * n)
        obj = ObjectEvent(
            bucket="bench-bucket",
            key=f"{prefix}file-{n:08d}.dat",
            kind="created",
            event_time=moment,
            size=1024,
            sequencer=s3_sequencer(moment, n),
            event_id=f"ev-{n}",
        )
        events.append(RoutedEvent(obj, prefix, moment))
    return events


def open_prefix_events(prefixes: int, start: int, count: int, active: int) -> list[RoutedEvent]:
    """``count`` new files, 1 ms apart; each chunk writes to ``active`` of the ``prefixes``
    prefixes, the next ones for the next chunk (the same work per chunk whatever the total)."""
    events = []
    for n in range(start, start + count):
        group = (n - start) // CHUNK
        slot = (group * active + n % active) % prefixes
        prefix = f"prefix-{slot:06d}/run/"
        moment = T0 + timedelta(milliseconds=n)
        obj = ObjectEvent(
            bucket="bench-bucket",
            key=f"{prefix}file-{n:08d}.dat",
            kind="created",
            event_time=moment,
            sequencer=s3_sequencer(moment, n),
            event_id=f"ev-{n}",
        )
        events.append(RoutedEvent(obj, prefix, moment))
    return events


def play(
    store: BatchStore,
    events: Sequence[RoutedEvent],
    rules: Rules,
    sweeps: list[float] | None = None,
) -> None:
    """What `edp simulate` asks of the store for these events (parsing aside); with ``sweeps``,
    also what `edp run` does after each receive (``close_due`` now, ``next_due``), timed."""
    for start in range(0, len(events), CHUNK):
        part = events[start : start + CHUNK]
        with store.transaction():
            closed = store.ingest(part, rules).emissions
            closed += store.close_due(part[-1].arrived, rules)
            for emission in closed:
                store.mark_published([emission.batch_id], emission.emitted_at)
        if sweeps is not None:
            started = time.perf_counter()
            store.close_due(part[-1].arrived, rules)
            store.next_due()
            sweeps.append(time.perf_counter() - started)


class Stores:
    """Fresh, empty stores of one kind; cleaned up at the end."""

    def __init__(self, kind: str, workdir: Path, postgres_url: str | None) -> None:
        self.kind, self.workdir, self.postgres_url = kind, workdir, postgres_url
        self.count = 0
        self.schemas: list[str] = []

    def fresh(self) -> BatchStore:
        self.count += 1
        if self.kind == "memory":
            return open_store("memory://")
        if self.kind == "sqlite":
            return open_store(f"sqlite:///{self.workdir}/scaling-{self.count}.sqlite")
        import psycopg

        assert self.postgres_url is not None
        schema = f"edp_scaling_{os.getpid()}_{self.count}"
        with psycopg.connect(self.postgres_url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        self.schemas.append(schema)
        sep = "&" if "?" in self.postgres_url else "?"
        return open_store(f"{self.postgres_url}{sep}options=-csearch_path%3D{schema}")

    def settled(self, store: BatchStore) -> BatchStore:
        """The store as a restart leaves it. SQLite's last connection copies the WAL back into
        the database on close, so the timed part does not pay for the set-up's writes (100,000
        open prefixes leave a WAL that would otherwise be checkpointed during the timed run)."""
        if self.kind != "sqlite":
            return store
        url = store.url  # type: ignore[attr-defined]
        store.close()
        return open_store(url)

    def cleanup(self) -> None:
        if self.schemas:
            import psycopg

            assert self.postgres_url is not None
            with psycopg.connect(self.postgres_url, autocommit=True) as conn:
                for schema in self.schemas:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")


def clock_for(kind: str) -> Callable[[], float]:
    return time.perf_counter if kind == "postgres" else time.process_time


def history(stores: Stores, sizes: Sequence[int]) -> list[tuple[int, float, float]]:
    """(events, µs/event averaged up to there, µs/event over the last tenth) per size."""
    clock = clock_for(stores.kind)
    rows = []
    store = stores.fresh()
    try:
        done, spent = 0, 0.0
        for size in sorted(sizes):
            tail_from = size - size // 10
            tail_spent = 0.0
            while done < size:
                step = min(10 * CHUNK, size - done)
                if done < tail_from < done + step:
                    step = tail_from - done
                events = history_events(done, step)
                started = clock()
                play(store, events, HISTORY_RULES)
                elapsed = clock() - started
                spent += elapsed
                if done >= tail_from:
                    tail_spent += elapsed
                done += step
            rows.append((size, spent / size * 1e6, tail_spent / (size - tail_from) * 1e6))
        return rows
    finally:
        store.close()


def open_prefixes(stores: Stores, counts: Sequence[int]) -> list[tuple[int, float, float]]:
    """(open prefixes, µs/event, ms per sweep) per count."""
    clock = clock_for(stores.kind)
    rows = []
    for count in counts:
        store = stores.fresh()
        try:
            play(store, open_prefix_events(count, 0, count, count), OPEN_RULES)  # one file each
            store = stores.settled(store)
            events = open_prefix_events(count, count, OPEN_EVENTS, ACTIVE)
            sweeps: list[float] = []
            gc.collect()  # every size starts its timed part with the set-up's garbage gone
            started = clock()
            play(store, events, OPEN_RULES, sweeps)
            per_event = (clock() - started) / len(events) * 1e6
            assert len(store.open_batches()) == count
            rows.append((count, per_event, sum(sweeps) / len(sweeps) * 1000))
        finally:
            store.close()
    return rows


def postgres_reachable(url: str) -> bool:
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=3):
            return True
    except Exception:
        return False


@contextlib.contextmanager
def stores_of(kind: str, workdir: Path, postgres_url: str | None) -> Iterator[Stores]:
    stores = Stores(kind, workdir, postgres_url)
    try:
        yield stores
    finally:
        stores.cleanup()


def ints(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="history checkpoints")
    parser.add_argument("--open", default="10,100,1000,10000,100000", help="open prefix counts")
    parser.add_argument("--stores", default="memory,sqlite,postgres")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("EDP_BENCH_POSTGRES_URL", DEFAULT_POSTGRES),
        help="server URL; the bench makes and drops its own schemas (skipped if unreachable)",
    )
    args = parser.parse_args(argv)
    sizes, counts = ints(args.sizes), ints(args.open)
    kinds = [k.strip() for k in args.stores.split(",") if k.strip()]
    if "postgres" in kinds and not postgres_reachable(args.postgres):
        print(f"PostgreSQL at {args.postgres} not reachable: skipped")
        kinds.remove("postgres")
    # The bench's own imports (psycopg, by the reachability check) are kept out of the cyclic
    # collector's passes: a full pass would walk them in whichever timed part it fell into
    # (seen: one open-prefix size at 1.7x the others). The stores' objects are collected as in
    # `edp simulate` or `edp run`.
    gc.collect()
    gc.freeze()

    verdicts: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="edp-bench-") as tmp:
        for kind in kinds:
            unit = "wall" if kind == "postgres" else "CPU"
            with stores_of(kind, Path(tmp), args.postgres) as stores:
                print(f"\n{kind}: history ({unit} µs per event)")
                print(f"{'events':>12}{'average':>12}{'last tenth':>12}")
                rows = history(stores, sizes)
                for size, average, tail in rows:
                    print(f"{size:>12,}{average:>12.1f}{tail:>12.1f}")
                averages = [average for _, average, _ in rows]
                verdicts.append((f"{kind} history", max(averages) / min(averages)))
                print(f"\n{kind}: open prefixes ({unit} µs per event; one sweep in ms)")
                print(f"{'open':>12}{'per event':>12}{'sweep ms':>12}")
                opened = open_prefixes(stores, counts)
                for count, per_event, sweep in opened:
                    print(f"{count:>12,}{per_event:>12.1f}{sweep:>12.2f}")
                costs = [per_event for _, per_event, _ in opened]
                verdicts.append((f"{kind} open prefixes", max(costs) / min(costs)))
        sys.stdout.flush()
    print()
    for label, spread in verdicts:
        verdict = "PASS" if spread <= TARGET_FLAT else "FAIL"
        print(f"{verdict}  {label:<28} max/min {spread:.2f}x (target <= {TARGET_FLAT}x)")
    return 0 if all(spread <= TARGET_FLAT for _, spread in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
