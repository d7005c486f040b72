"""benchmarks/run.py: every bench_*.py is run or excluded with a reason; --only subsets."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("_bench_run", BENCHMARKS / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_benchmark_module_is_expected_or_excluded_with_a_reason(run):
    found = {p.stem.removeprefix("bench_") for p in BENCHMARKS.glob("bench_*.py")}
    assert found <= set(run.EXPECTED_BENCHMARKS) | set(run.EXCLUDED_BY_DEFAULT)
    assert not set(run.EXPECTED_BENCHMARKS) & set(run.EXCLUDED_BY_DEFAULT)
    assert all(len(reason) > 40 for reason in run.EXCLUDED_BY_DEFAULT.values())
    # the cohort scaling the issue asks for is among the default ones
    assert "cohort" in run.EXPECTED_BENCHMARKS and "cohort" in found


def test_only_accepts_names_with_or_without_prefix_and_commas(run):
    assert run.parse_only(["bench_startup,bench_kinetics", "dose", "bench_cohort.py"]) == [
        "startup",
        "kinetics",
        "dose",
        "cohort",
    ]
    assert run.parse_only(["dose,dose"]) == ["dose"]
    with pytest.raises(ValueError, match="unknown benchmark 'bench_nope'; known: .*cohort"):
        run.parse_only(["bench_nope"])
    with pytest.raises(SystemExit):
        run.main(["--out", "unused", "--only", "bench_nope"])


def test_default_run_lists_excluded_and_only_runs_the_subset(run, tmp_path, monkeypatch):
    (tmp_path / "bench_fast.py").write_text(
        "def main(argv):\n    print('hello')\n    return {'x_s': 1.5, 'x_floor_s': 0.5}\n"
    )
    (tmp_path / "bench_broken.py").write_text("def main(argv):\n    raise RuntimeError('boom')\n")
    (tmp_path / "bench_slow_study.py").write_text("raise AssertionError('must not be imported')\n")
    monkeypatch.setattr(run, "EXPECTED_BENCHMARKS", ("fast", "gone"))
    monkeypatch.setattr(run, "EXCLUDED_BY_DEFAULT", {"slow_study": "its own page " * 5})
    out = run.run_module_benchmarks(tmp_path, quiet=True)
    assert out["fast"]["status"] == "ok" and out["fast"]["figures"] == {
        "x_s": 1.5,
        "x_floor_s": 0.5,
    }
    assert "load_average_before" in out["fast"] and "hello" in out["fast"]["stdout"]
    assert out["broken"]["status"] == "failed" and "boom" in out["broken"]["reason"]
    assert out["gone"]["status"] == "missing"
    assert out["slow_study"] == {"status": "excluded", "reason": "its own page " * 5}
    only = run.run_module_benchmarks(tmp_path, only=["fast"], quiet=True)
    assert list(only) == ["fast"]
    page = run._markdown(run.machine_description(), out, None, 1.0)
    assert "**excluded**: its own page" in page and "| x_floor_s | 0.5 |" in page
