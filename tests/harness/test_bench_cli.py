"""``python -m benchmarks``: every suite is registered with its two functions, every ``stochastic`` part
resolves to a benchmark taking ``beds``, ``nfes`` and its samples keyword, and a small part runs end to end
and writes its CSV."""

from __future__ import annotations

import csv
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import SUITES, main
from benchmarks.suites.stochastic import DEFAULT_PARTS, PARTS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_every_suite_has_arguments_and_a_run(suite: str):
    module = importlib.import_module(SUITES[suite])
    assert callable(module.add_arguments) and callable(module.run) and module.__doc__


@pytest.mark.parametrize("part", sorted(PARTS))
def test_every_part_maps_cli_options_onto_its_benchmark(part: str):
    module_name, run_name, format_name, samples_keyword = PARTS[part]
    module = importlib.import_module(f"benchmarks.{module_name}")
    params = inspect.signature(getattr(module, run_name)).parameters
    assert callable(getattr(module, format_name))
    assert {"beds", "nfes", samples_keyword} <= set(params)
    assert set(DEFAULT_PARTS) <= set(PARTS)


def test_stochastic_suite_runs_a_part_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "dc.csv"
    assert (
        main(["stochastic", "--part", "dc", "--beds", "ring2d", "--nfe", "5", "--samples", "16", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "## dc" in printed
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["part"] == "dc" and rows[0]["bed"] == "ring2d"


def test_python_m_benchmarks_lists_the_suites():
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--help"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert all(suite in done.stdout for suite in SUITES)


def test_the_package_never_imports_the_benchmarks():
    pattern = re.compile(r"^\s*(from|import)\s+benchmarks\b", re.MULTILINE)
    offenders = [str(p) for p in (ROOT / "src" / "diffsample").rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders
