"""Rules per instrument: validation, per-rule prefixes/thresholds/triggers, detail.rule, rule changes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from edp import cli
from edp.core import Emission
from edp.emitter import Emitter
from edp.events import parse_message
from edp.rules_file import DEFAULT_RULE, RulesError, load_rules, parse_rules
from edp.settings import Settings
from edp.simulate import simulate
from edp.store import open_store
from edp.store.memory import MemoryStore
from tests.helpers import at, eb_event, jsonl

LAB_RULES = """\
# One bucket, three instruments.
rules:
  - name: sequencer
    match: "sequencer-*/"
    threshold_count: 2000
    threshold_duration: 2h
  - name: plate-reader
    match: plate-reader/
    threshold_count: 10
    threshold_duration: 60
  - name: imaging
    match: imaging/
    depth: 3
    marker_files: [_SUCCESS]
  - name: scratch
    match: scratch/
    ignore: true
"""


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def play(settings: Settings, *events: dict[str, Any]) -> list[dict[str, Any]]:
    out, err = io.StringIO(), io.StringIO()
    assert simulate(jsonl(*events), Emitter(settings, MemoryStore()), out, err) == 0, err.getvalue()
    return [json.loads(line)["detail"] for line in out.getvalue().splitlines()]


# --- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- {name: a, match: x/, depht: 2}", "rule 'a' (#1): field 'depht': unknown field"),
        ("- {name: a, match: x/, depth: 0}", "rule 'a' (#1): field 'depth': 0 is not a whole"),
        ("- {name: a, match: x/, threshold_count: '5'}", "field 'threshold_count'"),
        ("- {name: a, match: x/, threshold_duration: soon}", "field 'threshold_duration'"),
        ("- {name: a, match: x/, ignore: maybe}", "rule 'a' (#1): field 'ignore': true or false"),
        ("- {name: a, match: x/}\n- {name: a, match: y/}", "rule 'a' (#2): field 'name': used"),
        ("- {name: default, match: x/}", "field 'name': 'default' is reserved"),
        ("- {match: x/}", "rule #1: field 'name'"),
        ("- {name: a}", "rule 'a' (#1): field 'match'"),
        ("- {name: a, match: 'x/**/'}", "'**' is not supported"),
        ("- {name: a, match: a/b/c/, depth: 2}", "rule 'a' (#1): field 'depth': the prefix depth"),
        ("- {name: a, match: a/b/c/}", "rule 'a' (#1): field 'match': the prefix depth (2)"),
        ("- {name: a, match: x/, marker_files: 3}", "field 'marker_files'"),
        ("{rule: []}", "unknown top-level field 'rule'"),
        ("just text", "expected a list of rules"),
        ("[a: b", "not valid YAML"),
    ],
)
def test_a_bad_rule_is_one_error_naming_the_rule_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(RulesError, match=None) as caught:
        load_rules(write(tmp_path, text), Settings(database_url="memory://"))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_cli_stops_at_start_up_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "- {name: plates, match: plate/, threshold_count: -1}")
    assert cli.main(["simulate", "--rules", path, "-"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"edp: rules file {path}: rule 'plates' (#1): field 'threshold_count'")
    assert len(err.splitlines()) == 1
    assert cli.main(["simulate", "--rules", str(tmp_path / "missing.yaml"), "-"]) == 2
    assert "cannot read it: No such file or directory" in capsys.readouterr().err


def test_json_and_a_bare_list_are_accepted(tmp_path: Path) -> None:
    path = write(
        tmp_path, json.dumps([{"name": "a", "match": "x/", "max_age": None}]), "rules.json"
    )
    ruleset = load_rules(path, Settings(database_url="memory://", max_age=60))
    assert ruleset.rules[0].max_age_off and ruleset.name_for("x/y/") == "a"
    assert ruleset.name_for("z/y/") == DEFAULT_RULE


def test_rules_load_from_s3() -> None:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="lab-config")
        s3.put_object(Bucket="lab-config", Key="edp/rules.yaml", Body=LAB_RULES.encode())
        ruleset = load_rules(
            "s3://lab-config/edp/rules.yaml", Settings(database_url="memory://"), lambda: s3
        )
        assert [r.name for r in ruleset.rules] == [
            "sequencer",
            "plate-reader",
            "imaging",
            "scratch",
        ]
        with pytest.raises(RulesError, match="cannot read it from S3"):
            load_rules("s3://lab-config/nope.yaml", Settings(database_url="memory://"), lambda: s3)


# --- each key follows its rule ------------------------------------------------------------------
def test_prefix_thresholds_and_trigger_follow_the_rule(tmp_path: Path) -> None:
    settings = Settings(database_url="memory://", rules=write(tmp_path, LAB_RULES))
    events = [
        # plate-reader: 10 files close the batch at once (global count is 20).
        *(eb_event(f"plate-reader/P1/w{i:02d}.csv", i) for i in range(10)),
        # imaging: depth 3, and a marker file closes it.
        eb_event("imaging/mouse/s1/a.tif", 20),
        eb_event("imaging/mouse/s1/_SUCCESS", 21),
        # sequencer: 25 files do not reach its count of 2000; quiet for 2 hours.
        *(eb_event(f"sequencer-7/RUN1/r{i}.fastq", 30 + i) for i in range(25)),
        # scratch is ignored; anything else uses the global settings (depth 2, count 20, 300 s).
        eb_event("scratch/tmp/x.csv", 40),
        eb_event("other/exp/a.csv", 41),
    ]
    emitted = play(settings, *events)
    summary = [(d["prefix"], d["count"], d["trigger"], d["rule"]) for d in emitted]
    assert summary == [
        ("plate-reader/P1/", 10, "count", "plate-reader"),
        ("imaging/mouse/s1/", 2, "marker", "imaging"),
        ("other/exp/", 1, "duration", DEFAULT_RULE),
        ("sequencer-7/RUN1/", 25, "duration", "sequencer"),
    ]
    times = {d["prefix"]: d["last_event_time"] for d in emitted}
    assert times["sequencer-7/RUN1/"] == "2022-12-08T20:00:54.000Z"


def test_without_a_rules_file_events_carry_no_rule_field() -> None:
    [detail] = play(Settings(database_url="memory://"), eb_event("i/e/a.csv", 0))
    assert "rule" not in detail


def test_the_lambda_uses_the_rules_from_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from edp import handlers
    from edp.clock import FixedClock

    monkeypatch.setenv("EDP_RULES", write(tmp_path, LAB_RULES))
    monkeypatch.setenv("EDP_DATABASE_URL", f"sqlite:///{tmp_path}/edp.sqlite")
    monkeypatch.setenv("EDP_EVENT_BUS_NAME", "bus")
    with mock_aws():
        events = boto3.client("events")
        sqs = boto3.client("sqs")
        events.create_event_bus(Name="bus")
        queue_url = sqs.create_queue(QueueName="ready")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name="r", EventBusName="bus", EventPattern=json.dumps({"source": ["com.quiltdata.edp"]})
        )
        events.put_targets(Rule="r", EventBusName="bus", Targets=[{"Id": "q", "Arn": arn}])
        handlers.reset()
        handlers.runtime(lambda: handlers.build_runtime(FixedClock(at(100))))
        try:
            for i in range(10):
                handlers.store_in_db(eb_event(f"plate-reader/P9/w{i}.csv", i), LambdaContext())
        finally:
            handlers.reset()
        body = sqs.receive_message(QueueUrl=queue_url)["Messages"][0]["Body"]
    detail = json.loads(body)["detail"]
    assert (detail["prefix"], detail["count"], detail["trigger"], detail["rule"]) == (
        "plate-reader/P9/",
        10,
        "count",
        "plate-reader",
    )


class LambdaContext:
    function_name = "edp-store"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:edp-store"
    aws_request_id = "52fdfc07-2182-154f-163f-5f0f9a621d72"


# --- changing the rules while batches are open --------------------------------------------------
@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/s.db"


def test_open_batches_keep_their_prefix_and_take_new_thresholds_at_their_next_event(
    tmp_path: Path, store_url: str
) -> None:
    before = write(
        tmp_path, "- {name: plates, match: plate/, threshold_count: 10, threshold_duration: 600}"
    )
    after = write(
        tmp_path,
        "- {name: plates, match: plate/, depth: 3, threshold_count: 2, threshold_duration: 60}",
        "after.yaml",
    )
    store = open_store(store_url)
    try:
        old = Emitter(Settings(database_url=store_url, rules=before), store)
        feed(old, eb_event("plate/P1/a.csv", 0), eb_event("plate/P2/x/a.csv", 1))
        assert {b.prefix for b in store.open_batches()} == {"plate/P1/", "plate/P2/"}
        # A restart with new rules: depth 3, count 2, 60 s.
        new = Emitter(Settings(database_url=store_url, rules=after), store)
        # plate/P1/ takes count 2 at its next event (b.csv is too shallow for depth 3, so a key
        # one level down): the new key goes to plate/P1/run/; plate/P1/ keeps its prefix.
        emitted = feed(new, eb_event("plate/P1/run/b.csv", 10), eb_event("plate/P1/run/c.csv", 11))
        assert [(e.prefix, e.count, e.trigger) for e in emitted] == [("plate/P1/run/", 2, "count")]
        # The old batches were never changed again: they close at their old due time, stamped
        # with the due time the new thresholds give (last event + 60 s).
        assert new.close_due(at(599)) == []
        closed = new.close_due(at(601))
        assert [(e.prefix, e.trigger, e.emitted_at) for e in closed] == [
            ("plate/P1/", "duration", at(60)),
            ("plate/P2/", "duration", at(61)),
        ]
        assert new.rule_name("plate/P1/") == "plates"
    finally:
        store.close()


def test_a_lowered_count_closes_an_open_batch_at_its_next_event(
    tmp_path: Path, store_url: str
) -> None:
    before = write(tmp_path, "- {name: plates, match: plate/, threshold_count: 10}")
    after = write(tmp_path, "- {name: plates, match: plate/, threshold_count: 3}", "after.yaml")
    store = open_store(store_url)
    try:
        old = Emitter(Settings(database_url=store_url, rules=before), store)
        feed(old, *(eb_event(f"plate/P1/{i}.csv", i) for i in range(5)))
        new = Emitter(Settings(database_url=store_url, rules=after), store)
        [emission] = feed(new, eb_event("plate/P1/5.csv", 5))
        assert (emission.prefix, emission.count, emission.trigger) == ("plate/P1/", 6, "count")
    finally:
        store.close()


def feed(emitter: Emitter, *events: dict[str, Any]) -> list[Emission]:
    out: list[Emission] = []
    for event in events:
        parsed = parse_message(event)
        out += emitter.close_due(parsed.events[0].event_time)
        out += emitter.ingest([parsed], arrived=None).emissions
    return out


def test_parse_rules_takes_an_already_parsed_document() -> None:
    ruleset = parse_rules({"rules": [{"name": "a", "match": "x/*/", "depth": 3}]}, Settings())
    assert ruleset.rule_for("x/y/z/k.csv") is ruleset.rules[0]
    assert ruleset.rule_for("x/k.csv") is None
