"""DC-Solver (dynamic compensation for UniPC) and its ratio search, checked against known answers.

* neutral ratios reduce to this library's ``unipc`` exactly, for every order / variant / prediction;
* the compensation weights are the Lagrange interpolation in λ: exact on quadratics, the node at ρ = 1;
* the default reference (a fine DPM-Solver++(3M) walk) agrees with DOP853 at the plan's levels;
* the search lowers the calibration error against UniPC, the plan round-trips through JSON bit for bit,
  and on held-out noise the searched ratios beat UniPC against the exact PF-ODE solution (DOP853);
* cascade polynomial regression recovers a known cascade exactly (the paper's 4·3·3 form);
* NFE = steps; clear errors for wrong ratio lists and options.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from diffsample import sample, solvers, steps
from diffsample.errors import DiffsampleError, ShapeError
from diffsample.solvers.dc_solver import DCWalk, dc_weights
from diffsample.testbeds import get_bed, reference_solution
from diffsample.tuning import Plan
from diffsample.tuning.dc import CPR, dc_reference_states, fit_cpr, search_dc_ratios

F64 = torch.float64
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


@pytest.fixture(scope="module")
def ring():
    return get_bed("ring2d")


@pytest.fixture(scope="module")
def mix():
    return get_bed("mixture64")


def _noise(seed: int, *shape: int) -> torch.Tensor:
    """States ``σ_max · z`` from a fixed torch generator (independent of the library's noise module)."""
    return SIGMA_MAX * torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.to(F64) - b.to(F64)).square().mean().sqrt())


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 12])
def test_neutral_ratios_are_unipc(mix, n):
    x = _noise(0, 4, 64)
    s = steps.logsnr(n, SIGMA_MIN, SIGMA_MAX)
    for order, variant, predict in itertools.product((1, 2, 3), ("bh1", "bh2"), ("data", "noise")):
        opts = {"order": order, "variant": variant, "predict": predict}
        ref = sample(mix, x, s, "unipc", **opts)
        for ratios in (None, [1.0] * n):
            out = sample(mix, x, s, "dc_solver", ratios=ratios, **opts)
            assert _rmse(out, ref) <= 1e-12, (order, variant, predict)
    # and with UniPC's other switches
    for opts in (
        {"predictor": "ddim"},
        {"corrector": False},
        {"lower_order_final": False},
        {"disable_corrector": [0, 1]},
    ):
        assert _rmse(sample(mix, x, s, "dc_solver", **opts), sample(mix, x, s, "unipc", **opts)) <= 1e-12


def test_weights_are_lagrange_interpolation():
    lams = [1.7, 0.9, -0.4, -2.0]  # λ_i, λ_{i−1}, … (non-uniform)
    for k in (1, 2, 3):
        nodes = lams[: k + 1]
        # ρ = 1 is the node λ_i, ρ = 0 the node λ_{i−1}
        assert dc_weights(nodes, 1.0) == pytest.approx([1.0] + [0.0] * k, abs=1e-12)
        assert dc_weights(nodes, 0.0) == pytest.approx([0.0, 1.0] + [0.0] * (k - 1), abs=1e-12)
        # exact on polynomials of degree k in λ, at λ* = λ_{i−1} + ρ (λ_i − λ_{i−1})
        for rho in (0.3, 0.85, 1.2, 1.6):
            target = nodes[1] + rho * (nodes[0] - nodes[1])
            for deg in range(k + 1):
                got = sum(w * lam**deg for w, lam in zip(dc_weights(nodes, rho), nodes, strict=True))
                assert got == pytest.approx(target**deg, abs=1e-12)
    # differentiable in ρ: d/dρ of the interpolated λ² is 2 λ* (λ_i − λ_{i−1})
    rho = torch.tensor(1.1, dtype=F64, requires_grad=True)
    val = sum(w * lam**2 for w, lam in zip(dc_weights(lams[:3], rho), lams[:3], strict=True))
    val.backward()
    target = lams[1] + 1.1 * (lams[0] - lams[1])
    assert float(rho.grad) == pytest.approx(2 * target * (lams[0] - lams[1]), rel=1e-12)


def test_compensation_changes_only_later_steps_and_costs_no_call(mix):
    x = _noise(1, 3, 64)
    s = steps.logsnr(6, SIGMA_MIN, SIGMA_MAX)
    mix.reset_counter()
    out = sample(mix, x, s, "dc_solver", ratios=[1.0, 1.0, 1.0, 1.0, 1.0, 0.7])
    assert mix.nfe == 6 == solvers.spec("dc_solver").nfe(6)
    # the last step into 0 returns the compensated D: the interpolation through the last three D values
    walk = DCWalk(s)
    state = walk.start(mix, x)
    for _ in range(5):
        state = walk.step(mix, state, 1.0)
    lams = [-math.log(float(v)) for v in s[3:6]][::-1]
    w = dc_weights(lams, 0.7)
    expected = w[0] * state.f + w[1] * state.past[0][1] + w[2] * state.past[1][1]
    assert _rmse(out, expected) <= 1e-12


def test_default_reference_matches_dop853(ring):
    x = _noise(2, 4, 2)
    s = steps.logsnr(6, SIGMA_MIN, SIGMA_MAX).tolist()
    states, spent = dc_reference_states(ring, x, s)
    assert states.shape == (6, 4, 2)
    assert spent == sum(max(1, math.ceil(math.log(a / b) / 0.02)) for a, b in zip(s[:-2], s[1:-1], strict=True)) + 1
    for j in (2, 6):  # DOP853 to ~1e-8 is plenty against a 1e-4 tolerance
        exact = reference_solution(ring, x, SIGMA_MAX, s[j], rtol=1e-10, atol=1e-10)
        assert _rmse(states[j - 1], exact) < 1e-4, j


@pytest.mark.parametrize("method", ["adamw", "golden"])
def test_search_lowers_calibration_error_and_plan_round_trips(mix, method, tmp_path):
    cal = _noise(3, 10, 64)
    plan = search_dc_ratios(mix, calibration=cal, nfe=6, method=method, model_id="mixture64")
    prov = plan.provenance
    assert plan.solver == "dc_solver" and len(plan.options["ratios"]) == 6 == plan.nfe
    assert plan.options["ratios"][:2] == [1.0, 1.0]
    assert prov["calibration_size"] == 10 and prov["search_nfe"] > 0 and prov["search_seconds"] >= 0
    assert prov["error"] < prov["error_unipc"]
    # the reported errors are what the plan does on the calibration batch against DOP853's end point
    exact = reference_solution(mix, cal, SIGMA_MAX, 0.0)
    assert abs(_rmse(sample(mix, cal, plan=plan), exact) - prov["error"]) < 1e-4
    assert abs(_rmse(sample(mix, cal, plan.sigma_tensor(), "unipc"), exact) - prov["error_unipc"]) < 1e-4
    # JSON round trip: the same walk, bit for bit
    path = tmp_path / "dc.json"
    plan.save(path)
    loaded = Plan.load(path)
    assert loaded.options == plan.options and loaded.sigmas == plan.sigmas
    x = _noise(1, 3, 64)
    assert torch.equal(sample(mix, x, plan=loaded), sample(mix, x, plan=plan))


def test_heldout_improvement_against_dop853(ring):
    """Ratios searched on 10 samples of one seed beat UniPC on 48 samples of another (ring2d, NFE 6)."""
    cal = _noise(4, 10, 2)
    held = _noise(5, 48, 2)
    plan = search_dc_ratios(ring, calibration=cal, nfe=6)
    exact = reference_solution(ring, held, SIGMA_MAX, 0.0)
    dc = _rmse(sample(ring, held, plan=plan), exact)
    base = _rmse(sample(ring, held, plan.sigma_tensor(), "unipc"), exact)
    assert dc < 0.6 * base, (dc, base)
    # joint sweeps on the end-point error only accept improvements: never worse on the calibration batch,
    # measured against DOP853 (up to the default reference's own distance from it, < 1e-4)
    refined = search_dc_ratios(ring, calibration=cal, nfe=6, refine=1)
    exact_cal = reference_solution(ring, cal, SIGMA_MAX, 0.0)
    assert _rmse(sample(ring, cal, plan=refined), exact_cal) <= _rmse(sample(ring, cal, plan=plan), exact_cal) + 2e-4
    assert refined.provenance["total_nfe"] > plan.provenance["total_nfe"]


def test_search_with_exact_reference_and_noise_prediction(ring):
    cal = _noise(6, 6, 2)
    s = steps.karras(5, SIGMA_MIN, SIGMA_MAX)

    def exact(x, a, b):
        return reference_solution(ring, x, a, b, rtol=1e-9, atol=1e-9)

    plan = search_dc_ratios(ring, calibration=cal, sigmas=s, reference=exact, method="golden", predict="noise", order=3)
    assert plan.options["predict"] == "noise" and plan.options["order"] == 3
    assert plan.provenance["reference_nfe"] == 0 and plan.provenance["reference"] == "exact"
    end = reference_solution(ring, cal, SIGMA_MAX, 0.0)
    dc = _rmse(sample(ring, cal, plan=plan), end)
    base = _rmse(sample(ring, cal, s, "unipc", predict="noise", order=3), end)
    assert dc < base and dc == pytest.approx(plan.provenance["error"], abs=1e-8)
    assert base == pytest.approx(plan.provenance["error_unipc"], abs=1e-8)


def test_errors(ring):
    x = torch.zeros(2, 2, dtype=F64)
    s = steps.logsnr(5, SIGMA_MIN, SIGMA_MAX)
    with pytest.raises(DiffsampleError, match="4 entries for 5 steps"):
        sample(ring, x, s, "dc_solver", ratios=[1.0] * 4)
    with pytest.raises(DiffsampleError, match="ratios\\[1\\] must be 1.0"):
        sample(ring, x, s, "dc_solver", ratios=[1.0, 0.9, 1.0, 1.0, 1.0])
    with pytest.raises(DiffsampleError, match="finite"):
        sample(ring, x, s, "dc_solver", ratios=[1.0, 1.0, math.nan, 1.0, 1.0])
    with pytest.raises(DiffsampleError, match="list of 5 numbers"):
        sample(ring, x, s, "dc_solver", ratios=1.0)
    with pytest.raises(DiffsampleError, match="dc_order"):
        sample(ring, x, s, "dc_solver", dc_order=4)
    with pytest.raises(DiffsampleError, match="order"):
        sample(ring, x, s, "dc_solver", order=0)
    with pytest.raises(DiffsampleError, match="method"):
        search_dc_ratios(ring, calibration=x, nfe=5, method="adam")
    with pytest.raises(DiffsampleError, match="sigmas=|nfe="):
        search_dc_ratios(ring, calibration=x)
    with pytest.raises(ShapeError, match="reference states"):
        search_dc_ratios(ring, calibration=x, sigmas=s, reference=torch.zeros(4, 2, 2))


def test_cascade_polynomial_regression_recovers_a_known_cascade():
    """Ratios made by a known cubic-in-x / quadratic-in-w / quadratic-in-NFE cascade are refitted exactly."""
    theta = torch.randn(4, 3, 3, generator=torch.Generator().manual_seed(0), dtype=F64).tolist()
    true = CPR(tuple(tuple(tuple(r) for r in by_g) for by_g in theta))
    # the cascade written as the paper's nested quadratics, at one point
    nfe, w, i = 7, 5.0, 4
    x, g, m = (i + 1) / nfe, w / 12.0, nfe / 50.0
    nested = sum(x**k * sum(g**a * sum(theta[k][a][b] * m**b for b in range(3)) for a in range(3)) for k in range(4))
    assert true.ratios(nfe, w)[i] == pytest.approx(nested, rel=1e-12)
    data = [(n, g, true.ratios(n, g)) for n in (5, 6, 8, 10, 12) for g in (1.5, 4.0, 7.5)]
    fit = fit_cpr(data)
    for n, g in ((7, 3.0), (9, 6.0)):  # unseen budgets and guidance scales
        got, want = fit.ratios(n, g), true.ratios(n, g)
        assert got[:2] == [1.0, 1.0]
        assert max(abs(a - b) for a, b in zip(got, want, strict=True)) < 1e-9
    assert CPR.from_dict(fit.to_dict()) == fit
    with pytest.raises(DiffsampleError, match="3 ratios for a budget of 4"):
        fit_cpr([(4, 0.0, [1.0, 1.0, 1.0])])
