"""The installed ``diffsample`` command keeps the user's verbs; ``tune`` takes a test bed or a model."""

from __future__ import annotations

import json

import pytest

from diffsample.cli import main
from diffsample.tuning import Plan


def test_help_lists_the_user_verbs_only(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(verb in out for verb in ("sample", "tune", "solvers"))
    assert not any(f"{gone} " in out or f"{gone}," in out for gone in ("bench", "robustness", "overhead"))


def test_tune_on_a_bed_scores_the_plan_on_held_out_noise(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert (
        main(
            [
                "tune",
                "--bed",
                "ring2d",
                "--nfe",
                "4",
                "--calibration",
                "16",
                "--heldout",
                "16",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "tuned plan for ring2d at NFE 4" in printed and "generate: " in printed
    assert Plan.load(out).provenance["nfe"] == 4


def test_tune_without_fitted_weights_keeps_the_searched_plan(tmp_path, capsys):
    out = tmp_path / "plan.json"
    args = ["tune", "--bed", "ring2d", "--nfe", "3", "--calibration", "16", "--heldout", "8", "--out", str(out)]
    assert main([*args, "--quiet", "--no-fit-weights"]) == 0
    plan = Plan.load(out)
    assert plan.solver == "plan" and plan.provenance["weights"] == {"fitted": False, "why": "off"}
    assert "fitted solver weights" not in capsys.readouterr().out


def test_tune_on_the_shipped_model(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert (
        main(
            [
                "tune",
                "--model",
                "digits",
                "--nfe",
                "4",
                "--calibration",
                "4",
                "--heldout-seed",
                "2",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    assert "tuned plan for digits at NFE 4" in capsys.readouterr().out
    plan = json.loads(out.read_text())
    assert plan["provenance"]["model"] == "digits"


def test_tune_needs_a_bed_or_a_model():
    with pytest.raises(SystemExit):
        main(["tune", "--nfe", "4"])
