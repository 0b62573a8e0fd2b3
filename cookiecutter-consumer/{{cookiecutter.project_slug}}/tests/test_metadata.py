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

    assert metadata["Author"] == "EDP"
    assert metadata["ComputerName"] == "instrument"
    assert metadata["Date"] == "2024-05-14"
    assert metadata["edp"] == {
        "source": "s3://edp-registry/instrument/experiment-1/",
        "batch_id": ready.batch_id,
        "trigger": "duration",
        "count": 2,
    }


def test_an_event_without_times_gives_no_date() -> None:
    quilt_style = package_objects_ready(
        "edp-registry",
        "lab/run-7/",
        count=None,
        trigger=None,
        batch_id=None,
        first_event_time=None,
        last_event_time=None,
    )

    metadata = package_metadata(parse_ready_event(quilt_style))

    assert "Date" not in metadata
    assert metadata["ComputerName"] == "lab"


def test_the_instrument_is_the_first_folder_of_the_prefix() -> None:
    assert instrument_of("seq-01/2024/run-7/") == "seq-01"
    assert instrument_of("/odd//prefix/") == "odd"
