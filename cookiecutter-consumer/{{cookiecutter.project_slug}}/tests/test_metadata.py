"""Tests of the package metadata: pure, no AWS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from consumers.events import parse_ready_event
from consumers.testing import package_objects_ready

from {{ cookiecutter.package_name }}.metadata import instrument_of, package_metadata


def test_metadata_describes_the_run_announced_by_the_fixture_event(
    load_event: Callable[[str], dict[str, Any]],
) -> None:
    ready = parse_ready_event(load_event("package_objects_ready.json"))

    metadata = package_metadata(ready)

    assert metadata == {
        "Author": "EDP",
        "ComputerName": "instrument",
        "edp": {"source": "s3://edp-registry/instrument/experiment-1/"},
    }


def test_two_batches_of_one_prefix_get_the_same_metadata() -> None:
    """Nothing per delivery: the consumer's own writes coming back must compare unchanged."""
    first = package_objects_ready("edp-registry", "lab/run-7/", count=20, trigger="count")
    loop_back = package_objects_ready(
        "edp-registry",
        "lab/run-7/",
        count=2,
        trigger="duration",
        batch_id="another-batch",
        first_event_time="2024-05-15T00:04:00Z",
        last_event_time="2024-05-15T00:04:01Z",
    )

    assert package_metadata(parse_ready_event(first)) == package_metadata(
        parse_ready_event(loop_back)
    )


def test_the_instrument_is_the_first_folder_of_the_prefix() -> None:
    assert instrument_of("seq-01/2024/run-7/") == "seq-01"
    assert instrument_of("/odd//prefix/") == "odd"
