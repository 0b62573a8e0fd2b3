"""bench/scaling.py and bench/simulate.py keep working: tiny runs print their tables and verdicts.

The figures are not checked here (benchmarks print numbers; see docs/benchmarks.md).
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"bench_{name}"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.integration  # runs the benchmark over every store
def test_scaling_prints_both_tables_for_each_store(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load("scaling")
    args = ["--sizes", "1000,3000", "--open", "10,200", "--stores", "memory,sqlite"]
    assert bench.main(args) in (0, 1)
    out = capsys.readouterr().out
    for text in ("memory: history", "memory: open prefixes", "sqlite: history", "sweep ms"):
        assert text in out
    assert out.count("PASS") + out.count("FAIL") == 4


def test_simulate_bench_compares_with_the_floor_and_cleans_up(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bench = load("simulate")
    assert bench.main(["--events", "500", "--rss-events", "1000", "--rounds", "1"]) in (0, 1)
    out = capsys.readouterr().out
    assert "floor: json.loads of each line" in out and "edp simulate" in out
    assert "summary line: edp simulate: 500 events accepted" in out
    assert "growth per event" in out
    assert list(tmp_path.iterdir()) == []  # the event files are gone


def test_parsing_bench_covers_every_fixture_shape(capsys: pytest.CaptureFixture[str]) -> None:
    bench = load("parsing")
    assert bench.main(["--number", "20", "--repeat", "1"]) in (0, 1)
    out = capsys.readouterr().out
    for shape in bench.SHAPES:
        assert shape in out
    assert out.count("PASS") + out.count("FAIL") == 1
