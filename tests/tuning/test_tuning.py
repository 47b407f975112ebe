"""The tuner, checked against answers known independently of it.

* the teacher trajectory against the DOP853 reference solution of the exact beds;
* the additive dynamic programme against brute-force enumeration of every schedule on a small grid, the
  GITS costs against single Euler steps run by the solver, the propagated programme against exhaustive
  search where it is exact (two steps) and against the run of the schedule it returns;
* a tuned NFE-4 plan on ring2d against hand-made configurations on held-out noise, scored against the
  exact ODE solution; budget, exact reproduction of the scored run, normal forms of candidates.
"""

from __future__ import annotations

import itertools
import math
import random

import pytest
import torch

from diffsample import Plan, noise, sample, steps, tune
from diffsample.denoisers import FunctionDenoiser
from diffsample.errors import DiffsampleError
from diffsample.testbeds import get_bed, mixture64, reference_solution, ring2d, rmse
from diffsample.tuning import (
    Candidate,
    Choice,
    Evaluator,
    Objective,
    canonical,
    gits_costs,
    min_cost_path,
    propagated_dp,
    teacher_trajectory,
)
from diffsample.tuning.search import perturb

F64 = torch.float64
SMAX, SMIN = 80.0, 0.002
FAST = {"teacher_levels": 60, "refine": 2, "max_evals": 240, "kicks": 4, "kick_evals": 120}


def batch(bed, size: int, seed: int) -> torch.Tensor:
    return noise.seeded(seed).initial((size, *bed.shape), SMAX, dtype=F64)


@pytest.fixture(scope="module")
def ring_teacher():
    bed = ring2d()
    return bed, teacher_trajectory(bed, batch(bed, 64, 1), sigma_min=SMIN, sigma_max=SMAX, levels=60)


@pytest.fixture(scope="module")
def ring_tuning(ring_teacher):
    """The tuner run on ring2d through a wrapper that counts the sample rows the model is evaluated on."""
    bed, teacher = ring_teacher
    rows = [0]

    def counted(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        rows[0] += x.shape[0]
        return bed.denoise(x, sigma)

    plan = tune(
        FunctionDenoiser(counted),
        nfe=4,
        sigma_min=SMIN,
        sigma_max=SMAX,
        calibration=teacher.start,
        teacher=teacher,
        model_id="ring2d",
        **FAST,
    )
    return bed, teacher, plan, rows[0]


@pytest.fixture(scope="module")
def ring_plan(ring_tuning):
    bed, teacher, plan, _ = ring_tuning
    return bed, teacher, plan


# ------------------------------------------------------------------------------------------- teacher
@pytest.mark.parametrize("name", ["ring2d", "mixture64"])
def test_teacher_matches_the_exact_reference(name: str):
    bed = get_bed(name)
    x = batch(bed, 16, 7)
    teacher = teacher_trajectory(bed, x, sigma_min=SMIN, sigma_max=SMAX, levels=60, substeps=4)
    assert teacher.nfe == 59 * 4 + 1
    assert teacher.states.shape == (60, 16, *bed.shape) and torch.equal(teacher.states[0], x)
    assert rmse(teacher.final, reference_solution(bed, x, SMAX, 0.0)) < 1e-4
    j = 30
    assert rmse(teacher.states[j], reference_solution(bed, x, SMAX, float(teacher.grid[j]))) < 1e-4


# ------------------------------------------------------------------------------ dynamic programming
@pytest.mark.parametrize("n_steps", [1, 2, 3, 4, 5])
def test_min_cost_path_is_the_brute_force_optimum(n_steps: int):
    """All ``n``-step paths through a 12-node grid enumerated (``C(10, n − 1)`` of them)."""
    g = torch.Generator().manual_seed(n_steps)
    size = 12
    for _ in range(20):
        cost = torch.rand(size, size, generator=g, dtype=F64) * torch.rand(size, size, generator=g, dtype=F64)
        cost[torch.rand(size, size, generator=g) < 0.1] = math.inf  # some forbidden edges
        best, best_path = math.inf, None
        for inner in itertools.combinations(range(1, size - 1), n_steps - 1):
            path = [0, *inner, size - 1]
            total = sum(float(cost[a, b]) for a, b in itertools.pairwise(path))
            if total < best:
                best, best_path = total, path
        if best_path is None:
            with pytest.raises(DiffsampleError):
                min_cost_path(cost, n_steps)
            continue
        path, total = min_cost_path(cost, n_steps)
        assert path == best_path
        assert total == pytest.approx(best, rel=1e-12)


def test_gits_costs_are_single_euler_steps_from_the_teacher(ring_teacher):
    bed, teacher = ring_teacher
    cost = gits_costs(teacher, Evaluator(bed, teacher.start.shape[0]))
    grid, m = teacher.grid.tolist(), len(teacher.grid)
    for i, j in [(0, 5), (10, 11), (20, 45), (59, 60), (30, 60)]:
        end = 0.0 if j == m else grid[j]
        stepped = sample(bed, teacher.states[i], torch.tensor([grid[i], end], dtype=F64), solver="euler")
        target = teacher.final if j == m else teacher.states[j]
        assert float(cost[i, j]) == pytest.approx(rmse(stepped, target), rel=1e-9)


def test_propagated_dp_is_exhaustive_for_two_steps(ring_teacher):
    """With two steps every level has one predecessor (σ_max), so the programme is an exhaustive search."""
    bed, teacher = ring_teacher
    res = propagated_dp(teacher, Evaluator(bed, 64), 2, prediction="data", order=2)
    obj = Objective(bed, teacher)
    errors = {s: obj(Candidate((SMAX, s), (Choice("data", 2), Choice("data", 2)))) for s in teacher.grid[1:].tolist()}
    best = min(errors, key=errors.__getitem__)
    assert res.sigmas == [SMAX, best]
    assert res.error == pytest.approx(errors[best], rel=1e-9)


@pytest.mark.parametrize(("prediction", "order"), [("data", 1), ("data", 3), ("noise", 2)])
def test_propagated_dp_error_is_the_error_of_its_schedule(ring_teacher, prediction: str, order: int):
    bed, teacher = ring_teacher
    res = propagated_dp(teacher, Evaluator(bed, 64), 4, prediction=prediction, order=order)
    assert len(res.sigmas) == 4 and res.sigmas[0] == SMAX
    ch = Choice(prediction, order)
    run = Objective(bed, teacher)(Candidate(tuple(res.sigmas), (ch,) * 4))
    assert res.error == pytest.approx(run, rel=1e-9)


# ------------------------------------------------------------------------------------------- search
def test_canonical_candidates_run_identically(ring_teacher):
    bed, teacher = ring_teacher
    obj = Objective(bed, teacher)
    rng = random.Random(3)
    base = Candidate(tuple(steps.logsnr(5, 0.01, SMAX, append_zero=False).tolist()), (Choice(),) * 5)
    for _ in range(40):
        c = perturb(base, rng, sigma_min=SMIN, p_choice=1.0)
        assert torch.equal(obj.run(c), obj.run(canonical(c)))


def test_runs_resumed_from_kept_prefixes_equal_full_runs(ring_teacher):
    """The objective re-runs a candidate from the first step it changes; the errors are those of full runs."""
    bed, teacher = ring_teacher
    cached, full = Objective(bed, teacher), Objective(bed, teacher, prefix_bytes=0)
    rng = random.Random(5)
    c = Candidate(tuple(steps.logsnr(6, 0.01, SMAX, append_zero=False).tolist()), (Choice(),) * 6)
    for _ in range(30):  # a walk through neighbours that share prefixes, as the search makes
        i = rng.randrange(6)
        sig = list(c.sigmas)
        if i > 0:
            sig[i] = math.sqrt(sig[i - 1] * (sig[i + 1] if i + 1 < 6 else SMIN))
        c = Candidate(
            tuple(sig), c.choices[:i] + (perturb(c, rng, sigma_min=SMIN, p_choice=1.0).choices[i],) + c.choices[i + 1 :]
        )
        assert cached(c) == full(c)
    assert cached.evals == full.evals and cached.nfe < full.nfe


def test_tuned_plan_beats_hand_made_configurations_on_held_out_noise(ring_plan):
    bed, _, plan = ring_plan
    held = batch(bed, 64, 0)  # the benchmark's seed; the calibration batch used seed 1
    exact = reference_solution(bed, held, SMAX, 0.0)
    tuned = rmse(sample(bed, held, plan=plan), exact)
    euler = rmse(sample(bed, held, steps.karras(4, SMIN, SMAX), solver="euler"), exact)
    dpm2m = rmse(sample(bed, held, steps.logsnr(4, SMIN, SMAX), solver="dpm_solver_2m"), exact)
    assert tuned < 0.5 * min(euler, dpm2m)


def test_the_plans_reported_error_is_its_error_against_the_exact_solution(ring_plan, tmp_path):
    """The plan, run from the calibration noise (in memory and reloaded from JSON, bit for bit the same walk),
    lands where DOP853 on the exact PF-ODE says: its RMSE to that end point is the reported error up to the
    teacher's own distance from it (triangle inequality), and far below Euler's on the same budget."""
    bed, teacher, plan = ring_plan
    path = tmp_path / "plan.json"
    plan.save(path)
    out = sample(bed, teacher.start, plan=plan)
    assert torch.equal(sample(bed, teacher.start, plan=Plan.load(path)), out)
    exact = reference_solution(bed, teacher.start, SMAX, 0.0)
    teacher_gap = rmse(teacher.final, exact)
    assert teacher_gap < 1e-4
    assert abs(rmse(out, exact) - plan.provenance["error"]) <= teacher_gap + 1e-12
    euler = rmse(sample(bed, teacher.start, steps.karras(4, SMIN, SMAX), solver="euler"), exact)
    assert rmse(out, exact) < 0.5 * euler


def test_plan_provenance(ring_tuning):
    """The reported cost is counted outside the tuner: the teacher's calls plus every sample row the model
    was evaluated on during tuning, per calibration sample."""
    bed, teacher, plan, rows = ring_tuning
    prov = plan.provenance
    assert prov["model"] == "ring2d" and prov["nfe"] == 4 and prov["calibration_size"] == 64
    assert prov["teacher_nfe"] == teacher.nfe == 59 * 4 + 1
    assert prov["tuning_nfe"] == pytest.approx(teacher.nfe + rows / 64, abs=1e-3) and prov["tuning_seconds"] > 0
    bed.reset_counter()
    sample(bed, teacher.start, plan=plan)
    assert prov["model_calls"] == bed.nfe
    assert prov["library"].startswith("diffsample ")
    assert plan.solver in ("plan", "nonstationary") and plan.sigmas[0] == SMAX and plan.sigmas[-1] == 0.0
    assert min(plan.sigmas[:-1]) >= SMIN


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_tuned_plans_never_exceed_the_budget(ring_teacher, budget: int):
    bed, teacher = ring_teacher
    plan = tune(
        bed,
        nfe=budget,
        sigma_min=SMIN,
        sigma_max=SMAX,
        calibration=teacher.start,
        teacher=teacher,
        teacher_levels=60,
        refine=1,
        max_evals=40,
        kicks=1,
        kick_evals=20,
    )
    bed.reset_counter()
    sample(bed, teacher.start, plan=plan)
    assert plan.nfe <= budget and bed.nfe <= budget


def test_guided_denoisers_get_half_the_calls():
    """A denoiser costing 2 evaluations per call (classifier-free guidance) gets ``nfe // 2`` calls."""
    bed = mixture64()
    guided = FunctionDenoiser(lambda x, s: bed.denoise(x, s), nfe_per_call=2)
    cal = batch(bed, 8, 1)
    plan = tune(
        guided,
        nfe=5,
        sigma_min=SMIN,
        sigma_max=SMAX,
        calibration=cal,
        teacher_levels=20,
        teacher_substeps=2,
        refine=1,
        max_evals=30,
        kicks=0,
        model_id="guided-mixture",
    )
    guided.reset_counter()
    sample(guided, cal, plan=plan)
    assert plan.n_steps == 2 and guided.nfe == 4 and plan.provenance["model"] == "guided-mixture"


def test_tuning_bench_saves_plans_and_resumes_from_them(tmp_path):
    """An interrupted benchmark resumes: the second run loads the saved plans (same settings) instead of
    tuning, and reports the same rows; other settings are tuned afresh."""
    from benchmarks.tuning_bench import format_tuning_table, run_tuning_bench

    kwargs = dict(
        heldout_size=16,
        calibration_size=32,
        solver_names=["euler", "dpmpp_2m"],
        schedules=["karras"],
        tune_options=FAST,
        peers=False,
        plan_dir=tmp_path,
    )
    first = run_tuning_bench(["ring2d"], [4], **kwargs)
    assert (tmp_path / "ring2d-nfe4.json").exists()
    messages: list[str] = []
    second = run_tuning_bench(["ring2d"], [4], progress=messages.append, **kwargs)
    assert any("plan loaded" in m for m in messages)
    assert second[0].tuned_rmse == first[0].tuned_rmse and second[0].tuning_seconds == first[0].tuning_seconds
    assert first[0].tuned_nfe <= 4 and first[0].ratio < 1.0
    assert 0.0 <= first[0].tuned_flips <= 1.0 and 0.0 <= first[0].hand_flips <= 1.0
    table = format_tuning_table(first)
    assert "flips" in table.splitlines()[0] and "ring2d" in table.splitlines()[2]
    messages.clear()
    run_tuning_bench(["ring2d"], [4], progress=messages.append, **{**kwargs, "calibration_size": 24})
    assert not any("plan loaded" in m for m in messages)
