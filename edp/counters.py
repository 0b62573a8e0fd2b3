"""The counters' names and their grouping: the one place that spells them.

The store keeps them (``edp status`` shows them); the Lambda metrics, `edp simulate`'s summary
and `edp run`'s statistics read them through the helpers here.
"""

from __future__ import annotations

from collections.abc import Mapping

ACCEPTED = "accepted"  # events added to a batch
DUPLICATE = "duplicate"  # deliveries of an event already seen within the dedupe window
STALE = "stale"  # events older than one already seen for the same key (by sequencer)
DROPPED_PREFIX = "dropped:"  # events dropped before batching, by reason: dropped:<reason>
EMITTED_PREFIX = "emitted:"  # batches closed, by trigger: emitted:<trigger>

EVENTS = (ACCEPTED, DUPLICATE, STALE)  # the "events" group, in the order they are shown
GROUPS = ("events", "dropped", "emitted")


def dropped(reason: str) -> str:
    """The counter of events dropped for ``reason``."""
    return DROPPED_PREFIX + reason


def emitted(trigger: str) -> str:
    """The counter of batches closed by ``trigger``."""
    return EMITTED_PREFIX + trigger


def group_of(name: str) -> str:
    """ "events", "dropped" or "emitted": where a counter is shown."""
    for group in ("dropped", "emitted"):
        if name.startswith(group + ":"):
            return group
    return "events"


def by_reason(counters: Mapping[str, int]) -> dict[str, int]:
    """Dropped events per reason (non-zero only, sorted by reason)."""
    return _suffixed(counters, DROPPED_PREFIX)


def by_trigger(counters: Mapping[str, int]) -> dict[str, int]:
    """Closed batches per trigger (non-zero only, sorted by trigger)."""
    return _suffixed(counters, EMITTED_PREFIX)


def total_dropped(counters: Mapping[str, int]) -> int:
    return sum(by_reason(counters).values())


def _suffixed(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {
        name[len(prefix) :]: n
        for name, n in sorted(counters.items())
        if name.startswith(prefix) and n
    }
