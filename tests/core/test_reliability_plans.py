"""Reliability: plans are checked when loaded and against the model they run on; saves are atomic (issue #11)."""

from __future__ import annotations

import json

import pytest
import torch

import diffsample as ds
from diffsample.errors import BudgetError, DiffsampleError, SigmaError
from diffsample.plan import MAX_BYTES, MAX_STEPS, Plan


def _doc(**changes):
    doc = Plan([80.0, 5.0, 0.5, 0.0], "dpmpp_2m").to_dict()
    doc.update(changes)
    return doc


def test_misspelt_option_names_it_and_lists_the_valid_ones():
    with pytest.raises(DiffsampleError, match=r"unknown option 'lower_order_fnal'.*valid options: .*lower_order_final"):
        Plan.from_dict(_doc(options={"lower_order_fnal": True}))


def test_option_of_the_wrong_type():
    with pytest.raises(DiffsampleError, match="'lower_order_final'.*bool"):
        Plan.from_dict(_doc(options={"lower_order_final": "yes"}))
    with pytest.raises(DiffsampleError, match="'eta'"):
        Plan.from_dict(_doc(solver="ddim", options={"eta": "0.5"}))


def test_string_sigmas_are_an_error():
    with pytest.raises(DiffsampleError, match=r"sigmas\[0\] = '80' is not a number"):
        Plan.from_dict(_doc(sigmas=["80", "0"]))
    with pytest.raises(DiffsampleError, match="not a number"):
        Plan.from_dict(_doc(sigmas=[80.0, True, 0.0]))


@pytest.mark.parametrize("sigmas", [[80.0, 90.0, 0.0], [80.0, float("nan"), 0.0], [80.0, 1.0, -1.0]])
def test_levels_must_be_finite_and_strictly_decreasing(sigmas):
    with pytest.raises(SigmaError):
        Plan.from_dict(_doc(sigmas=sigmas))


def test_wrong_keys_and_missing_keys():
    with pytest.raises(DiffsampleError, match="unknown key 'sigma'"):
        Plan.from_dict({**_doc(), "sigma": [1.0, 0.0]})
    doc = _doc()
    del doc["sigmas"]
    with pytest.raises(DiffsampleError, match="no 'sigmas'"):
        Plan.from_dict(doc)
    with pytest.raises(DiffsampleError, match="solver"):
        Plan.from_dict(_doc(solver=["euler"]))


def test_step_limit():
    with pytest.raises(DiffsampleError, match=f"at most {MAX_STEPS} steps"):
        Plan(torch.linspace(80.0, 0.0, MAX_STEPS + 2).tolist(), "euler")


def test_missing_file_bad_json_and_size_limit(tmp_path):
    with pytest.raises(DiffsampleError, match="cannot read the plan file"):
        Plan.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text('{"format": ')
    with pytest.raises(DiffsampleError, match="not valid JSON"):
        Plan.load(tmp_path / "bad.json")
    (tmp_path / "big.json").write_text(" " * (MAX_BYTES + 1))
    with pytest.raises(DiffsampleError, match="larger than"):
        Plan.load(tmp_path / "big.json")
    with pytest.raises(DiffsampleError, match="cannot read the plan file"):
        ds.sample(lambda x, s: x, torch.zeros(1, 2), plan=tmp_path / "nope.json")


def test_failed_save_keeps_the_good_file(tmp_path):
    path = tmp_path / "plan.json"
    good = Plan([80.0, 1.0, 0.0], "euler")
    good.save(path)
    before = path.read_bytes()
    bad = Plan([80.0, 1.0, 0.0], "euler", provenance={"oops": object()})
    with pytest.raises(TypeError):
        bad.save(path)
    assert path.read_bytes() == before
    assert Plan.load(path) == good


def test_save_refuses_a_symlink(tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text("keep")
    (tmp_path / "plan.json").symlink_to(outside)
    with pytest.raises(DiffsampleError, match="symbolic link"):
        Plan([80.0, 0.0], "euler").save(tmp_path / "plan.json")
    assert outside.read_text() == "keep"


def test_generate_refuses_a_plan_for_another_span():
    from diffsample.models import load_digits_model

    model = load_digits_model()
    ring_plan = Plan(ds.steps.karras(4, 0.002, 80.0).tolist(), "euler")
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(SigmaError, match="not at sigma_max = 157"):
        ds.generate(model, x, plan=ring_plan)
    fitting = Plan(
        ds.steps.karras(4, float(model.noise_schedule.sigma_min), float(model.noise_schedule.sigma_max)).tolist(),
        "euler",
    )
    assert ds.generate(model, x, plan=fitting).shape == x.shape


def test_adaptive_solver_cannot_keep_a_budget():
    from diffsample.generate import configure

    with pytest.raises(BudgetError, match="dpm_adaptive.*chooses its own steps"):
        configure(10, 0.002, 80.0, solver="dpm_adaptive")


def test_plan_json_round_trip_is_unchanged(tmp_path):
    plan = Plan([80.0, 2.5, 0.1, 0.0], "dpmpp_2m", {"lower_order_final": False}, {"model": "x"})
    plan.save(tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text()) == plan.to_dict()
    assert Plan.load(tmp_path / "p.json") == plan
