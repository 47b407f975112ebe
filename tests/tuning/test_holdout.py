"""The tuner's held-out selection, checked against exact ODE solutions on the exact beds.

* the plan is never worse on its held-out samples than the hand-made configuration it chose, which is the best of
  the published solvers over the whole calibration batch (none of it was fitted to them; each run through
  :func:`diffsample.sample` and scored against the teacher end points), nor worse by more than ``LIBRARY_MARGIN``
  than the library pool's best over the whole batch (on the held-out samples against a searched walk, over the batch
  against a hand-made one), and the held-out error it reports is the one a plain run of the plan measures;
* where the search overfits (8 calibration samples of the 64-D mixture at NFE 6: the calibration-selected
  plan's calibration error is an order of magnitude below its error on other noise), selecting on held-out
  samples gives a plan with a lower error on fresh noise against the DOP853 reference.
"""

from __future__ import annotations

import math

import pytest
import torch

from diffsample import noise, sample, solvers, steps, tune
from diffsample.errors import DiffsampleError
from diffsample.generate import schedule_levels
from diffsample.testbeds import mixture64, reference_solution, ring2d, rmse
from diffsample.tuning import teacher_trajectory
from diffsample.tuning.library import LIBRARY_MARGIN, LIBRARY_SCHEDULES, LIBRARY_SOLVERS
from diffsample.tuning.tuner import hand_made_candidates, held_out_count, split_teacher

F64 = torch.float64
SMAX, SMIN = 80.0, 0.002
FAST = {"teacher_levels": 60, "refine": 2, "max_evals": 240, "kicks": 6, "kick_evals": 120}

# published solvers that are hand-made candidates of the tuner (strategy on log-SNR or Karras steps)
PUBLISHED = (("dpmpp_2m", "logsnr"), ("dpmpp_2m", "karras"), ("ddim", "logsnr"), ("dpm_solver_2m", "karras"))


def batch(bed, size: int, seed: int) -> torch.Tensor:
    return noise.seeded(seed).initial((size, *bed.shape), SMAX, dtype=F64)


def tuned(bed, cal: torch.Tensor, nfe: int, holdout: float):
    teacher = teacher_trajectory(bed, cal, sigma_min=SMIN, sigma_max=SMAX, levels=FAST["teacher_levels"])
    plan = tune(bed, nfe=nfe, sigma_min=SMIN, sigma_max=SMAX, calibration=cal, teacher=teacher, holdout=holdout, **FAST)
    return teacher, plan


@pytest.fixture(scope="module")
def overfit_case():
    """mixture64, 8 calibration samples, NFE 6: held-out selection (4 + 4) vs calibration selection on the same 4."""
    bed = mixture64()
    cal = batch(bed, 8, 1)
    teacher, held_plan = tuned(bed, cal, 6, 0.5)
    fit = 8 - held_plan.provenance["heldout_size"]
    _, cal_plan = tuned(bed, cal[:fit], 6, 0.0)
    return bed, cal, teacher, held_plan, cal_plan


@pytest.mark.parametrize("holdout, batch_size, expected", [(0.25, 64, 16), (0.5, 8, 4), (0.0, 8, 0), (0.9, 3, 2)])
def test_held_out_count(holdout: float, batch_size: int, expected: int):
    assert held_out_count(batch_size, holdout) == expected


def test_held_out_fraction_must_be_a_fraction():
    with pytest.raises(DiffsampleError, match="holdout"):
        held_out_count(8, 1.0)


def _errors(bed, teacher, plan) -> tuple[float, list[float], list[float], list[float]]:
    """The plan's RMSE on the held-out samples; the published solvers' RMSE over the whole batch; the library
    pool's RMSE over the whole batch and on the held-out samples: every walk run as a user runs it."""
    fit = teacher.start.shape[0] - plan.provenance["heldout_size"]
    _, held = split_teacher(teacher, fit)
    n = plan.provenance["model_calls"]
    plan_err = rmse(sample(bed, held.start, plan=plan), held.final)

    def run(levels, solver: str) -> tuple[float, float]:
        out = sample(bed, teacher.start, levels, solver=solver)
        return rmse(out, teacher.final), rmse(out[fit:], held.final)

    hand = [run(steps.get(sched)(n, SMIN, SMAX), solver)[0] for solver, sched in PUBLISHED]
    library = [
        run(schedule_levels(sched, solvers.spec(solver).steps_for_nfe(n), SMIN, SMAX), solver)
        for solver in LIBRARY_SOLVERS
        for sched in LIBRARY_SCHEDULES
    ]
    return plan_err, hand, [w for w, _ in library], [h for _, h in library]


@pytest.mark.parametrize("case", ["ring2d", "mixture64"])
def test_plan_is_never_worse_on_held_out_noise_than_the_hand_made_candidates(case: str, overfit_case):
    """ring2d (16 samples, NFE 6) keeps a tuned plan; mixture64 (8 samples) falls back to a hand-made one."""
    if case == "ring2d":
        bed = ring2d()
        teacher, plan = tuned(bed, batch(bed, 16, 1), 6, 0.5)
    else:
        bed, _, teacher, plan, _ = overfit_case
    prov = plan.provenance
    hand_best, lib_best = prov["hand_made_best"], prov["library_best"]
    plan_err, hand, lib_whole, lib_held = _errors(bed, teacher, plan)
    assert plan_err == pytest.approx(prov["heldout_error"], rel=1e-9)
    # the hand-made walk chosen is the best over the whole batch, and the plan is no worse on the held-out samples
    assert hand_best["calibration_error"] <= min(hand) * (1 + 1e-9)
    assert prov["heldout_error"] <= hand_best["heldout_error"]
    # the library's best over the whole batch is the one reported, and it did not lead by the margin
    best = min(range(len(lib_whole)), key=lib_whole.__getitem__)
    assert lib_best["calibration_error"] == pytest.approx(lib_whole[best], rel=1e-6)
    assert lib_best["heldout_error"] == pytest.approx(lib_held[best], rel=1e-6)
    if prov["fallback"]:
        assert hand_best["calibration_error"] * (1 - LIBRARY_MARGIN) <= lib_whole[best] * (1 + 1e-9)
    else:
        assert plan_err * (1 - LIBRARY_MARGIN) <= lib_held[best] * (1 + 1e-9)
    assert prov["fallback"] == (case == "mixture64")
    # the pooled error is the RMSE over the whole batch, fit and held-out parts together
    out = sample(bed, teacher.start, plan=plan)
    assert rmse(out, teacher.final) == pytest.approx(prov["error"], rel=1e-9)


def test_held_out_selection_beats_calibration_selection_when_the_search_overfits(overfit_case):
    bed, _, _, held_plan, cal_plan = overfit_case
    fresh = batch(bed, 128, 0)
    exact = reference_solution(bed, fresh, SMAX, 0.0)
    held_sel = rmse(sample(bed, fresh, plan=held_plan), exact)
    cal_sel = rmse(sample(bed, fresh, plan=cal_plan), exact)
    assert cal_plan.provenance["error"] < 0.1 * cal_sel  # the calibration-selected plan fits its 4 samples
    assert held_sel < 0.9 * cal_sel  # measured 0.16 vs 0.18 on these 128 samples


def test_tuning_cost_counts_the_held_out_runs(overfit_case):
    """Per calibration sample: teacher + (fit runs · fit + held-out runs · held) / batch, the fitted-weights stage's
    fits and held-out runs included, + the library pool's walks; calls counted too."""
    _, cal, teacher, plan, _ = overfit_case
    prov = plan.provenance
    fit, held = prov["fit_size"], prov["heldout_size"]
    stages = prov["stages"]
    fit_nfe = stages["dp_nfe"] + stages["search_nfe"] + stages["weights_nfe"]
    expected = teacher.nfe + (fit_nfe * fit + stages["heldout_nfe"] * held) / 8 + stages["library_nfe"]
    assert stages["library_nfe"] == prov["library_best"]["considered"] * 6  # a walk each, of the whole batch
    assert prov["tuning_nfe"] == pytest.approx(expected, abs=1e-3)
    assert stages["heldout_runs"] >= len(hand_made_candidates(6, SMIN, SMAX)) // 2
    assert prov["tuning_model_calls"] > 0 and prov["selected_by"] == "held-out error"
    assert math.isfinite(prov["fit_error"]) and cal.shape[0] == fit + held


def test_a_library_configuration_that_leads_is_the_plan_and_a_weights_base(monkeypatch):
    """mixture64, 8 calibration samples (4 + 4), NFE 5: the walk the tuner selects is a hand-made one (DDIM + UniC-1 on
    KL-optimal steps ending the trailing way, 0.0837 over the batch), and UniPC-bh1 on the same steps (0.0836) is
    within ``LIBRARY_MARGIN`` (5 %) of it over the batch, where both are compared (neither was fitted to any sample),
    so the selected walk stays; with no margin the library configuration *is* the plan (run by name, its reported
    held-out error what a plain run measures); with fitted weights, the weights fitted from it win on the held-out
    samples."""
    import diffsample.tuning.tuner as tuner_module

    bed = mixture64()
    cal = batch(bed, 8, 1)
    teacher = teacher_trajectory(bed, cal, sigma_min=SMIN, sigma_max=SMAX, levels=FAST["teacher_levels"])
    options = {"nfe": 5, "sigma_min": SMIN, "sigma_max": SMAX, "calibration": cal, "teacher": teacher, "holdout": 0.5}
    kept = tune(bed, fit_solver_weights=False, **options, **FAST).provenance
    assert kept["fallback"] and kept["hand_made_best"]["heldout_error"] == kept["heldout_error"]
    lead = kept["library_best"]["calibration_error"] / kept["hand_made_best"]["calibration_error"]
    assert 1 - tuner_module.LIBRARY_MARGIN < lead < 1 and kept["library_best"]["config"].startswith("unipc_bh1")
    monkeypatch.setattr(tuner_module, "LIBRARY_MARGIN", 0.0)
    plain = tune(bed, fit_solver_weights=False, **options, **FAST)
    prov = plain.provenance
    assert prov["fallback"] and plain.solver == "unipc_bh1"
    assert prov["heldout_error"] == prov["library_best"]["heldout_error"] < prov["hand_made_best"]["heldout_error"]
    _, held = split_teacher(teacher, 4)
    assert rmse(sample(bed, held.start, plan=plain), held.final) == pytest.approx(prov["heldout_error"], rel=1e-6)
    fitted = tune(bed, **options, **FAST).provenance
    assert fitted["weights"]["fitted"] and fitted["weights"]["base"].startswith("library unipc_bh1")
    assert fitted["heldout_error"] < 0.2 * prov["heldout_error"]


class _Table:
    """An objective of fixed errors per candidate on a part of ``size`` samples (what :class:`Objective` returns)."""

    def __init__(self, size: int, errors: dict) -> None:
        self.teacher = type("T", (), {"final": torch.zeros(size, 2)})()
        self.errors = errors

    def __call__(self, c) -> float:
        return self.errors[c]


def test_hand_made_walks_are_chosen_over_the_whole_batch_and_compared_with_the_search_on_held_out_samples():
    """Hand-made walk A ends well on the 16 held-out samples (0.01) but badly on the 48 fit ones (0.3): a mode lottery;
    B is 0.05 on both. Over the batch B is far better (0.05 vs 0.26), so B is the hand-made walk chosen; the searched
    walk beats B on the held-out samples (0.03), so it is the plan, not a fallback. Were the search worse there than
    B (0.06), the plan would fall back to B, not to A."""
    from diffsample.tuning.search import pooled_rmse
    from diffsample.tuning.tuner import _select

    a, b = hand_made_candidates(4, SMIN, SMAX)[:2]
    searched = type(a)(tuple(0.9 * s for s in a.sigmas), a.choices)
    for held_search, fallback in ((0.03, False), (0.06, True)):
        fit = _Table(48, {a: 0.3, b: 0.05, searched: 0.001})
        held = _Table(16, {a: 0.01, b: 0.05, searched: held_search})
        sel = _select([searched], [a, b], fit, held)
        assert sel.hand is b and sel.hand_error == pytest.approx(0.05)
        assert sel.hand_error < pooled_rmse((0.3, 0.01), (48, 16))
        assert sel.fallback == fallback and sel.chosen == (b if fallback else searched)
        assert sel.held_error == (0.05 if fallback else held_search)
        assert sel.hand_summary()["calibration_error"] == pytest.approx(0.05)


def test_pooled_rmse_is_the_rmse_of_the_union():
    from diffsample.tuning.search import pooled_rmse

    x = torch.randn(64, 3, dtype=F64)
    parts = (x[:48], x[48:])
    whole = float(x.square().mean().sqrt())
    rms = [float(p.square().mean().sqrt()) for p in parts]
    assert pooled_rmse(rms, (48, 16)) == pytest.approx(whole, rel=1e-12)
    assert pooled_rmse((0.5, math.inf), (4, 0)) == 0.5  # an empty part counts for nothing
    with pytest.raises(ValueError, match="at least one sample"):
        pooled_rmse((0.1,), (0,))
