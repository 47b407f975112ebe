"""The ``bench-stochastic`` command: every part resolves to a benchmark whose keywords exist, and a small
part runs end to end through the CLI and writes its CSV."""

from __future__ import annotations

import csv
import importlib
import inspect

import pytest

from diffsample.cli import DEFAULT_STOCHASTIC_PARTS, STOCHASTIC_PARTS, main


@pytest.mark.parametrize("part", sorted(STOCHASTIC_PARTS))
def test_every_part_maps_cli_options_onto_its_benchmark(part: str):
    module_name, run_name, format_name, keywords = STOCHASTIC_PARTS[part]
    module = importlib.import_module(f"diffsample.bench.{module_name}")
    params = inspect.signature(getattr(module, run_name)).parameters
    assert callable(getattr(module, format_name))
    assert set(keywords) == {"beds", "nfe", "samples"}
    assert all(name in params for name in keywords.values())
    assert set(DEFAULT_STOCHASTIC_PARTS) <= set(STOCHASTIC_PARTS)


def test_bench_stochastic_runs_a_part_and_writes_csv(tmp_path, capsys):
    out = tmp_path / "dc.csv"
    assert main(["bench-stochastic", "--part", "dc", "--beds", "ring2d", "--nfe", "5", "--samples", "16",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "## dc" in printed
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["part"] == "dc" and rows[0]["bed"] == "ring2d"
