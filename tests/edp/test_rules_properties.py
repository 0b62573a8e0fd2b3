"""Property test: a rules file whose every rule says what the global settings say changes nothing."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edp.emitter import Emitter
from edp.rules_file import parse_rules
from edp.settings import Settings
from edp.simulate import simulate
from edp.store.memory import MemoryStore
from tests.helpers import eb_event, jsonl

GLOBAL: dict[str, Any] = {
    "prefix_depth": 2,
    "threshold_count": 3,
    "threshold_duration": 120,
    "max_age": 200,
    "marker_files": ("_SUCCESS",),
    "database_url": "memory://",
}
# Each field a rule may set, with the global value (a rule sets any subset of them).
SAME = {
    "depth": 2,
    "threshold_count": 3,
    "threshold_duration": "2m",
    "max_age": 200,
    "marker_files": ["_SUCCESS"],
}
MATCHES = ["lab/", "lab/p1/", "l*/", "*/p?/", "other/", "lab/p[02]/", "*/", "x/"]

step = st.tuples(
    st.sampled_from(["lab", "other"]),
    st.integers(0, 1),  # folder
    st.sampled_from([*(f"f{i}.csv" for i in range(6)), "_SUCCESS"]),
    st.sampled_from(["created", "created", "created", "deleted"]),
    # Seconds since the previous event: bursts, and gaps around the thresholds.
    st.sampled_from([-20, -1, 0, 1, 2, 5, 30, 30, 60, 100, 119, 120, 121, 250, 399, 400, 401]),
    st.booleans(),  # one level deeper
)
rule = st.tuples(st.sampled_from(MATCHES), st.sets(st.sampled_from(sorted(SAME))))


def play(events: list[dict[str, Any]], config: Settings, ruleset: Any = None) -> list[Any]:
    out, err = io.StringIO(), io.StringIO()
    emitter = Emitter(config, MemoryStore(), ruleset=ruleset)
    assert simulate(jsonl(*events), emitter, out, err) == 0
    emitted = [json.loads(line) for line in out.getvalue().splitlines()]
    for event in emitted:
        # The one intended difference: which rule applied (a name, or "default").
        assert event["detail"].pop("rule", None) is not None or ruleset is None
    return emitted


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, min_size=1, max_size=50), st.lists(rule, max_size=5))
def test_rules_equal_to_the_global_settings_give_the_same_output(
    steps: list[tuple[str, int, str, str, int, bool]], rules: list[tuple[str, set[str]]]
) -> None:
    events = []
    now = 0
    for number, (top, folder, name, kind, delta, deeper) in enumerate(steps):
        now = max(0, now + delta)
        key = f"{top}/p{folder}/{'run/' if deeper else ''}{name}"
        events.append(eb_event(key, now, kind=kind, event_id=f"e{number}"))
    config = Settings(**GLOBAL)
    document = [
        {"name": f"r{i}", "match": match, **{f: SAME[f] for f in fields}}
        for i, (match, fields) in enumerate(rules)
    ]
    ruleset = parse_rules(document, config)
    assert play(events, config, ruleset) == play(events, config)
