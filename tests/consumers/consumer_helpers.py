"""Helpers of the consumers tests: fixture events from tests/events/consumers."""

from __future__ import annotations

import json
import pathlib
from typing import Any

EVENTS = pathlib.Path(__file__).resolve().parent.parent / "events" / "consumers"


def load_event(name: str) -> Any:
    """The JSON of ``tests/events/consumers/<name>.json``."""
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
