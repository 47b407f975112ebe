"""Reliability of the command lines: arguments, plans and outputs are checked before any model runs (issue #11)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

import diffsample as ds
from diffsample.cli import main
from diffsample.plan import Plan

FAST = ["--nfe", "2", "--batch", "2", "--quiet"]


@pytest.fixture
def no_sampling(monkeypatch):
    """Fail the test if the walk starts: the checks must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("sampling started before the inputs were checked")

    monkeypatch.setattr("diffsample.sampling.sample", refuse)


def _error(capsys) -> str:
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, named",
    [
        (["sample", "--nfe", "0"], "--nfe"),
        (["sample", "--batch", "0"], "--batch"),
        (["sample", "--shape", "1x0x8"], "--shape"),
        (["tune", "--bed", "ring2d", "--nfe", "4", "--heldout", "0"], "--heldout"),
        (["tune", "--bed", "ring2d", "--nfe", "4", "--calibration", "0"], "--calibration"),
        (["tune", "--bed", "ring2d", "--nfe", "0"], "--nfe"),
    ],
)
def test_zero_counts_are_errors_naming_the_argument(capsys, argv, named):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert f"argument {named}" in _error(capsys)


@pytest.mark.parametrize(
    "suite, argv, named",
    [
        ("beds", ["--nfe", "0"], "--nfe"),
        ("tune", ["--nfe", "4,0"], "--nfe"),
        ("tune", ["--heldout", "0"], "--heldout"),
        ("beds", ["--batch", "0"], "--batch"),
    ],
)
def test_benchmark_zero_counts_are_errors(capsys, suite, argv, named):
    from benchmarks.__main__ import main as bench_main

    with pytest.raises(SystemExit) as exit_info:
        bench_main([suite, *argv])
    assert exit_info.value.code == 2
    assert f"argument {named}" in _error(capsys)


def test_guidance_needs_a_class(tmp_path, capsys, no_sampling):
    assert main(["sample", *FAST, "--guidance", "3", "--out", str(tmp_path)]) == 2
    assert "--guidance needs --class" in _error(capsys)


def test_bad_class_names_the_argument(tmp_path, capsys, no_sampling):
    assert main(["sample", *FAST, "--class", "12", "--out", str(tmp_path)]) == 2
    assert "--class" in _error(capsys)


def test_adaptive_solver_with_a_budget_is_refused(tmp_path, capsys, no_sampling):
    assert (
        main(["sample", "--solver", "dpm_adaptive", "--nfe", "10", "--batch", "2", "--quiet", "--out", str(tmp_path)])
        == 2
    )
    assert "dpm_adaptive" in _error(capsys)
    assert not (tmp_path / "samples.npz").exists()


def test_output_folder_checked_before_sampling(tmp_path, capsys, no_sampling):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["sample", *FAST, "--out", str(blocker / "sub")]) == 2
    assert "cannot create the folder" in _error(capsys)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_checked_before_sampling(tmp_path, capsys, no_sampling):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert main(["sample", *FAST, "--out", str(folder)]) == 2
    finally:
        folder.chmod(stat.S_IRWXU)
    assert "not writable" in _error(capsys)


def test_existing_outputs_need_overwrite(tmp_path, capsys):
    assert main(["sample", *FAST, "--out", str(tmp_path)]) == 0
    first = (tmp_path / "samples.npz").read_bytes()
    assert main(["sample", *FAST, "--seed", "3", "--out", str(tmp_path)]) == 2
    assert "--overwrite" in _error(capsys)
    assert (tmp_path / "samples.npz").read_bytes() == first
    assert main(["sample", *FAST, "--seed", "3", "--overwrite", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "samples.npz").read_bytes() != first


def test_symlinked_output_is_not_followed(tmp_path, capsys, no_sampling):
    outside = tmp_path / "elsewhere.npz"
    outside.write_bytes(b"keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "samples.npz").symlink_to(outside)
    assert main(["sample", *FAST, "--overwrite", "--out", str(out)]) == 2
    assert "symbolic link" in _error(capsys)
    assert outside.read_bytes() == b"keep"


def test_npz_written_atomically(tmp_path, monkeypatch):
    assert main(["sample", *FAST, "--out", str(tmp_path)]) == 0
    first = (tmp_path / "samples.npz").read_bytes()

    def full_disk(handle, **arrays):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full_disk)
    assert main(["sample", *FAST, "--overwrite", "--out", str(tmp_path)]) == 2
    assert (tmp_path / "samples.npz").read_bytes() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["samples.npz", "samples.png"]


def test_plan_for_another_span_is_refused(tmp_path, capsys, no_sampling):
    plan = tmp_path / "ring.json"
    Plan(ds.steps.karras(4, 0.002, 80.0).tolist(), "euler").save(plan)
    assert main(["sample", "--plan", str(plan), "--batch", "2", "--quiet", "--out", str(tmp_path / "o")]) == 2
    assert "sigma_max = 157" in _error(capsys)


def test_plan_over_the_nfe_budget_is_refused(tmp_path, capsys, no_sampling):
    from diffsample.models import load_digits_model

    span = load_digits_model().noise_schedule
    plan = tmp_path / "digits.json"
    Plan(ds.steps.karras(4, float(span.sigma_min), float(span.sigma_max)).tolist(), "euler").save(plan)
    assert (
        main(["sample", "--plan", str(plan), "--nfe", "2", "--batch", "2", "--quiet", "--out", str(tmp_path / "o")])
        == 2
    )
    assert "over the budget of 2" in _error(capsys)


def test_missing_plan_file(tmp_path, capsys, no_sampling):
    assert (
        main(["sample", "--plan", str(tmp_path / "nope.json"), "--batch", "2", "--quiet", "--out", str(tmp_path / "o")])
        == 2
    )
    assert "cannot read the plan file" in _error(capsys)


def test_tune_out_unwritable_fails_before_tuning(tmp_path, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tuning started before --out was checked")

    monkeypatch.setattr("diffsample.tuning.tune", refuse)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["tune", "--bed", "ring2d", "--nfe", "4", "--quiet", "--out", str(blocker / "plan.json")]) == 2
    assert "cannot create the folder" in _error(capsys)


@pytest.mark.parametrize("extra", [["--solver", "euler"], ["--step-schedule", "karras"], ["--plan", "p.json"]])
def test_auto_with_a_walk_of_ones_own_is_refused(tmp_path, capsys, no_sampling, extra):
    assert main(["sample", *FAST, "--auto", *extra, "--out", str(tmp_path)]) == 2
    assert "--auto chooses the solver and steps itself" in _error(capsys)
