"""The real-shaped events in tests/events/, and the prefix and files they announce."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).parent / "events"
EXPERIMENT_PREFIX = "instrument/experiment-1/"
EXPERIMENT_FILES = {
    "reads.csv": "sample,reads\nA1,1024\nA2,2048\n",
    "notes/run.txt": "operator: EDP\n",
}


def load_event(name: str) -> dict[str, Any]:
    """The JSON event ``tests/events/<name>``."""
    return json.loads((EVENTS_DIR / name).read_text(encoding="utf-8"))


def event_files() -> list[str]:
    """Every fixture event file, so a new one is tested without editing a test."""
    return sorted(path.name for path in EVENTS_DIR.glob("*.json"))
