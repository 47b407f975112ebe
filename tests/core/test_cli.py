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


def test_sample_auto_runs_the_fitted_choice_within_the_budget_and_reports_its_cost(tmp_path, capsys, monkeypatch):
    """``--auto`` prints the choice and its one-off cost, the walk itself spends exactly the budget, and the samples
    are those of ``generate(auto=True)`` on the same noise; a second run reads the choice from the cache."""
    import numpy as np
    import torch

    from diffsample import generate, noise
    from diffsample.models import load_digits_model

    monkeypatch.setenv("DIFFSAMPLE_CACHE", str(tmp_path / "cache"))
    argv = ["sample", "--auto", "--nfe", "6", "--batch", "8", "--quiet", "--out", str(tmp_path), "--overwrite"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert (
        first.startswith("auto: ") and "evaluations per calibration sample" in first and ", NFE 6 (6 network" in first
    )
    model = load_digits_model(False)
    x = noise.seeded(0).initial((8, 1, 8, 8), float(model.noise_schedule.sigma_max))
    expected = generate(model, x, nfe=6, auto=True)
    got = torch.from_numpy(np.load(tmp_path / "samples.npz")["samples"])
    assert torch.allclose(got, expected, rtol=0, atol=1e-6)
    assert main(argv) == 0
    assert "read from the cache" in capsys.readouterr().out


def test_sample_with_a_class_draws_what_guidance_with_fixed_labels_draws(tmp_path):
    """The labels made per call (so that ``--auto`` can calibrate on batches of its own size) are the labels the
    sampled batch always had: the same samples as ``cfg`` with the batch's labels fixed."""
    import numpy as np
    import torch

    import diffsample as ds
    from diffsample import noise, sample
    from diffsample.generate import configure
    from diffsample.models import NULL_LABEL, load_digits_model

    for digit in ("all", "3"):
        out = tmp_path / digit
        argv = [
            "sample",
            "--class",
            digit,
            "--guidance",
            "3",
            "--nfe",
            "8",
            "--batch",
            "12",
            "--quiet",
            "--out",
            str(out),
        ]
        assert main(argv) == 0
        model = load_digits_model(True)
        labels = torch.arange(12) % 10 if digit == "all" else torch.full((12,), 3)
        guided = ds.cfg(
            model, 3.0, cond_kwargs={"class_labels": labels}, uncond_kwargs={"class_labels": NULL_LABEL}, batched=True
        )
        lo, hi = float(model.noise_schedule.sigma_min), float(model.noise_schedule.sigma_max)
        walk = configure(8, lo, hi, calls_per_eval=2, model=model)
        x = noise.seeded(0).initial((12, 1, 8, 8), hi)
        expected = sample(guided, x, walk.sigmas, solver=walk.solver, noise=noise.seeded(0), **walk.options)
        saved = np.load(out / "samples.npz")
        assert torch.allclose(torch.from_numpy(saved["samples"]), expected, rtol=0, atol=1e-6)
        assert torch.equal(torch.from_numpy(saved["labels"]), labels)
