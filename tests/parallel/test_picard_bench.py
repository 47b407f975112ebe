"""The picard benchmark suite runs and reports every column."""

from __future__ import annotations

import csv

from benchmarks.__main__ import main


def test_picard_suite_prints_rounds_calls_and_error(tmp_path, capsys) -> None:
    out = tmp_path / "picard.csv"
    argv = ["picard", "--beds", "ring2d", "--solvers", "euler", "--steps", "8", "--samples", "4", "--tols", "0,1e-3"]
    assert main([*argv, "--csv", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "rounds" in printed and "max RMS error" in printed
    rows = list(csv.DictReader(out.open()))
    assert [float(r["tol"]) for r in rows] == [0.0, 1e-3]
    assert float(rows[0]["max_rms_error"]) == 0.0 and int(rows[0]["rounds"]) <= 8
