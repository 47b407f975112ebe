"""Automatic mode's fitted solver weights, checked against exact ODE solutions on noise the fit never saw.

Known answers: the exact end points of the 64-D Gaussian mixture bed (DOP853 on its closed-form denoiser); on a
Gaussian data law the PF-ODE solution is ``α·x_0 + β·D_0``, so weights fitted on a two-call walk are exact and
cross-validation must find an error near zero on the folds it held out.
"""

from __future__ import annotations

import math

import pytest
import torch
from exact_gaussian import isotropic_gaussian

from diffsample import generate, noise, sample
from diffsample.auto import AUTO_LEVEL_FITS, AUTO_WEIGHT_FOLDS, auto_choice, candidates_for, reference_steps
from diffsample.denoisers import FunctionDenoiser
from diffsample.errors import DiffsampleError
from diffsample.generate import configure
from diffsample.solvers.nonstationary import solver_weights
from diffsample.testbeds import mixture64, reference_solution, ring2d, rmse
from diffsample.tuning import teacher_trajectory
from diffsample.tuning.weights import AMPLIFICATION_LIMIT, WEIGHT_RIDGES, amplification, cross_validate_weights

F64 = torch.float64
SMAX, SMIN, NFE = 80.0, 0.002, 8


@pytest.fixture(scope="module")
def fresh_case():
    bed = mixture64()
    x = noise.seeded(100).initial((64, *bed.shape), SMAX, dtype=F64)
    return bed, x, reference_solution(bed, x, SMAX, 0.0)


def counted(bed) -> tuple[FunctionDenoiser, list[int]]:
    rows = [0]

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        rows[0] += x.shape[0]
        return bed(x, sigma)

    return FunctionDenoiser(fn), rows


def test_auto_fits_weights_that_beat_its_chosen_solver_on_noise_it_never_saw(fresh_case, tmp_path, monkeypatch):
    """On the mixture bed at NFE 8 the fitted weights, with the levels moved along, cut the chosen walk's error on 64
    fresh noises five-fold (measured 0.027 → 0.0049; the weights on the schedule's own levels reached 0.011);
    ``generate(auto=True)`` runs exactly them; every model evaluation is counted, the cross-validation's fold walks by
    their share of the 16 calibration noises, and the level search stays within its trial budget."""
    bed, x, exact = fresh_case
    den, rows = counted(bed)
    choice = auto_choice(den, NFE, bed.shape, sigma_min=SMIN, sigma_max=SMAX, cache_folder=tmp_path)
    assert choice.weights and choice.label.endswith("+levels+weights") and choice.weights_ridge in WEIGHT_RIDGES
    assert choice.weights_error < 0.95 * choice.errors[f"{choice.solver}/{choice.step_schedule}"]
    walk = configure(NFE, SMIN, SMAX, solver=choice.solver, step_schedule=choice.step_schedule, model=bed)
    assert len(choice.sigmas) == len(walk.sigmas) and choice.sigmas[0] == SMAX and choice.sigmas[-1] == 0.0
    assert choice.sigmas != walk.sigmas.tolist() and min(choice.sigmas[1:-1]) >= SMIN
    assert choice.levels_error < choice.weights_error  # fitted where it is measured: the calibration noises
    own = rmse(sample(bed, x, walk.sigmas, solver=choice.solver), exact)
    moved = torch.tensor(choice.sigmas, dtype=F64)
    fitted = sample(bed, x, moved, solver="nonstationary", weights=choice.weights)
    assert rmse(fitted, exact) < 0.25 * own
    k, n = len(candidates_for("edm")), NFE
    stage = (AUTO_WEIGHT_FOLDS * len(WEIGHT_RIDGES) + 1) * n
    assert choice.cost_nfe == (rows[0] - 2) / 16 + 2
    before = 2 + reference_steps(n) + k * n + stage  # steps 1-4, the weights' fit on the whole batch included
    assert before < choice.cost_nfe <= before + AUTO_LEVEL_FITS * n * n
    monkeypatch.setenv("DIFFSAMPLE_CACHE", str(tmp_path.parent / "cache"))
    out = generate(bed, x, nfe=NFE, sigma_min=SMIN, sigma_max=SMAX, auto=True)
    assert torch.equal(out, fitted)


def test_a_cached_choice_carries_its_weights_and_fitting_can_be_turned_off(fresh_case, tmp_path):
    bed, _, _ = fresh_case
    first = auto_choice(bed, NFE, bed.shape, sigma_min=SMIN, sigma_max=SMAX, cache_folder=tmp_path)
    again = auto_choice(bed, NFE, bed.shape, sigma_min=SMIN, sigma_max=SMAX, cache_folder=tmp_path)
    assert again.cached and again.cost_nfe == 2 and again.weights == first.weights and again.label == first.label
    assert (again.weights_error, again.weights_ridge) == (first.weights_error, first.weights_ridge)
    assert first.sigmas and (again.sigmas, again.levels_error) == (first.sigmas, first.levels_error)
    levels = torch.tensor(first.sigmas, dtype=F64)
    assert bool((levels[1:] < levels[:-1]).all()) and float(levels[-2]) >= SMIN  # a walk on the span, down to 0
    assert amplification(first.weights) <= AMPLIFICATION_LIMIT
    off = auto_choice(bed, NFE, bed.shape, sigma_min=SMIN, sigma_max=SMAX, cache_folder=tmp_path, fit_weights=False)
    assert not off.cached and off.weights == [] and off.weights_error is None
    assert off.cost_nfe == 2 + reference_steps(NFE) + len(candidates_for("edm")) * NFE and off.sigmas == []
    walk = configure(NFE, SMIN, SMAX, solver=off.solver, step_schedule=off.step_schedule, model=bed)
    assert off.walk_on(walk.sigmas, walk.solver, walk.options) == (walk.sigmas, walk.solver, walk.options)
    assert (off.solver, off.step_schedule, off.errors) == (first.solver, first.step_schedule, first.errors)
    assert len(list(tmp_path.glob("*.json"))) == 2  # fitting is part of the cache key


def test_weights_that_do_not_lead_by_the_margin_are_kept_only_on_moved_levels(fresh_case, tmp_path, monkeypatch):
    """On the schedule's own levels the cross-validation margin decides; a walk whose levels moved runs them with
    their fitted weights whatever the margin (module docstring, step 5)."""
    import diffsample.auto as auto

    bed, _, _ = fresh_case
    monkeypatch.setattr(auto, "AUTO_MARGIN", 0.99)
    moved = auto_choice(bed, NFE, bed.shape, sigma_min=SMIN, sigma_max=SMAX, cache_folder=tmp_path)
    assert moved.weights and moved.sigmas and moved.label.endswith("+levels+weights") and moved.weights_why == ""
    monkeypatch.setattr(auto, "AUTO_LEVEL_FITS", 0)  # no trial: the levels stay
    choice = auto_choice(bed, NFE, bed.shape, sigma_min=SMIN, sigma_max=SMAX, cache_folder=tmp_path)
    assert choice.weights == [] and choice.sigmas == [] and math.isfinite(choice.weights_error)
    assert not choice.label.endswith("+weights") and "does not lead" in choice.weights_why
    assert choice.cost_nfe < moved.cost_nfe


def test_cross_validation_finds_the_exact_two_call_solver_of_a_isotropic_gaussian():
    """Each fold is walked with weights fitted on the other only, and still lands on the exact end point, where
    the walk's own solver (DPM-Solver++(2M)) is far off; the cost is 2 walks per sample and ridge."""
    den, mean, std = isotropic_gaussian()
    x = noise.seeded(5).initial((16, 6), SMAX, dtype=F64)
    teacher = teacher_trajectory(den, x, sigma_min=SMIN, sigma_max=SMAX, levels=60)
    levels = [SMAX, 1.0, 0.0]
    base = solver_weights("dpmpp_2m", levels)
    cv = cross_validate_weights(den, teacher, levels, base, folds=2)
    exact = mean + math.sqrt(std**2 / (std**2 + SMAX**2)) * (x - mean)
    own = rmse(sample(den, x, torch.tensor(levels, dtype=F64), solver="dpmpp_2m"), exact)
    assert set(cv.errors) == set(WEIGHT_RIDGES) and cv.error == min(cv.errors.values())
    assert cv.error < 2e-5 < 1e-2 < own
    assert cv.nfe == pytest.approx(2 * 2 * len(WEIGHT_RIDGES))


def test_a_candidate_whose_budget_buys_no_walk_scores_inf_and_leaves_no_levels(tmp_path, monkeypatch):
    """Restart needs two steps; on a budget of one call it cannot run, and the next candidate is fitted on its own
    levels, not on levels left over from it."""
    import diffsample.auto as auto

    monkeypatch.setattr(auto, "candidates_for", lambda *a, **k: (("restart", "karras"), ("euler", "karras")))
    bed = mixture64()
    choice = auto_choice(bed, 1, bed.shape, sigma_min=SMIN, sigma_max=SMAX, cache_folder=tmp_path)
    assert choice.errors["restart/karras"] == math.inf and math.isfinite(choice.errors["euler/karras"])
    assert (choice.solver, choice.step_schedule) == ("euler", "karras")


def test_calibration_size_holds_ten_fitted_numbers_per_weight_in_each_fold():
    """16 noises for an 8×8 image up to 50 calls (8 per fold fit: 512 numbers for rows of 51 weights), more beyond;
    a 2-D point needs 10 (n + 1); a guided model's budget buys half the calls."""
    from diffsample.auto import calibration_size

    assert [calibration_size((1, 8, 8), n) for n in (1, 4, 20, 50, 51)] == [16, 16, 16, 16, 18]
    assert [calibration_size((2,), n) for n in (4, 8, 20)] == [50, 90, 210]
    assert calibration_size((2,), 8, nfe_per_call=2) == calibration_size((2,), 4) == 50
    for shape, nfe in (((0, 4), 4), ((2,), 0)):
        with pytest.raises(DiffsampleError):
            calibration_size(shape, nfe)


def test_on_a_2d_bed_auto_draws_enough_noises_for_weights_that_hold_on_fresh_noise(tmp_path):
    """The 2-D ring at NFE 4: by default auto draws 50 noises (ten fitted numbers per weight in each fold); its
    weights, on levels moved with them, then cut the chosen walk's error on 256 fresh noises with no sample sent far
    off (measured: RMSE 0.028 against 0.066, largest error 0.15 against 0.18; 0.035 on the schedule's levels).
    Given 16 noises it fits no weights and says why (with them, before the rule, on the figures' 512 noises: 0.20
    against 0.065, one sample 1.37 away)."""
    bed = ring2d()
    x = noise.seeded(100).initial((256, *bed.shape), SMAX, dtype=F64)
    exact = reference_solution(bed, x, SMAX, 0.0)
    choice = auto_choice(bed, 4, bed.shape, sigma_min=SMIN, sigma_max=SMAX, cache_folder=tmp_path)
    assert choice.calibration_size == 50 and choice.weights and choice.weights_why == ""
    walk = configure(4, SMIN, SMAX, solver=choice.solver, step_schedule=choice.step_schedule, model=bed)
    own = sample(bed, x, walk.sigmas, solver=choice.solver)
    sigmas, name, options = choice.walk_on(walk.sigmas, walk.solver, walk.options)
    fitted = sample(bed, x, sigmas, solver=name, **options)
    per_sample = (fitted - exact).square().sum(dim=1).div(2).sqrt()
    assert rmse(fitted, exact) < 0.7 * rmse(own, exact) and float(per_sample.max()) < 0.5
    few = auto_choice(bed, 4, bed.shape, sigma_min=SMIN, sigma_max=SMAX, calibration=16, cache_folder=tmp_path)
    assert few.weights == [] and few.weights_error is None
    assert few.weights_why.startswith("16 fitted numbers per fold for rows of 5 weights, fewer than 10 per weight")
