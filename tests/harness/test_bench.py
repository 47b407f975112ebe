"""The benchmark runner and the command line, on small exact beds."""

from __future__ import annotations

import csv

import pytest

from benchmarks import BenchConfig, convergence_slopes, run_benchmark
from benchmarks.__main__ import main

pytest.importorskip("scipy")


def test_rows_count_real_model_calls_within_budget():
    config = BenchConfig(beds=["ring2d"], solvers=["euler", "heun"], nfes=[3, 4, 10], batch=8)
    rows = run_benchmark(config)
    assert {(r.solver, r.nfe_budget) for r in rows} == {(s, n) for s in ("euler", "heun") for n in (3, 4, 10)}
    for r in rows:
        assert r.nfe <= r.nfe_budget
        assert r.nfe == (r.steps if r.solver == "euler" else 2 * r.steps - 1)  # heun's last step to 0 is Euler
    heun = {r.nfe_budget: r for r in rows if r.solver == "heun"}
    assert heun[4].nfe == 3  # 2 steps; a third would cost 5 > 4


def test_error_falls_with_nfe_and_heun_beats_euler_at_equal_budget():
    config = BenchConfig(beds=["mixture64"], solvers=["euler", "heun"], nfes=[10, 50], batch=16)
    rows = {(r.solver, r.nfe_budget): r for r in run_benchmark(config)}
    for solver in ("euler", "heun"):
        assert rows[(solver, 50)].rmse < rows[(solver, 10)].rmse
    assert rows[("heun", 50)].rmse < rows[("euler", 50)].rmse


def test_convergence_slopes_measure_the_order():
    config = BenchConfig(
        beds=["mixture64"],
        solvers=["euler", "heun"],
        schedules=["logsnr"],
        nfes=[32, 64, 128],
        batch=8,
        end_at_zero=False,
    )
    slopes = convergence_slopes(run_benchmark(config), min_nfe=32)
    assert abs(slopes[("mixture64", "euler", "logsnr")] - 1) < 0.3
    assert abs(slopes[("mixture64", "heun", "logsnr")] - 2) < 0.3


def test_cli_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("beds", "model", "tune", "stochastic", "robustness", "overhead"):
        assert command in out


def test_cli_bench_writes_table_csv_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code = main(
        [
            "beds",
            "--beds",
            "ring2d",
            "--solvers",
            "euler,heun",
            "--nfe",
            "4,8",
            "--batch",
            "4",
            "--out",
            str(tmp_path),
            "--quiet",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "rmse" in out and "heun" in out
    with open(tmp_path / "bench.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert (tmp_path / "bench.png").stat().st_size > 1000


def test_cli_reports_bad_input_without_traceback(capsys):
    assert main(["beds", "--beds", "nope", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown bed 'nope'" in err and "ring2d" in err
