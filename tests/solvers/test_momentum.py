"""Heavy-ball (plms_hb, dpmpp_2m_hb) and GHVB solvers against answers known independently of the code.

* GHVB weights: the paper's closed-form mixer coefficients (Wizadwongsa et al. 2023) and the defining
  moment conditions evaluated by direct summation of the geometric-weighted past; β = 1 gives the
  classical uniform Adams–Bashforth weights.
* β = 1 reduces every method to its base solver (ipndm, dpmpp_2m).
* Convergence slopes against the closed-form PF-ODE solution of a Gaussian ``N(μ, s²)``,
  ``x(σ) = μ + sqrt(s² + σ²)/sqrt(s² + σ0²) (x0 − μ)`` (cross-checked with DOP853): GHVB keeps order r for
  β < 1 on σ-uniform steps, heavy ball is first order (the paper's theorem).
* Linear stability on the test equation ``dx/dσ = λx`` (``D = x(1 − λσ)``): heavy ball scales the real
  stability interval by ``(2 − β)/β``; GHVB-2's interval is ``[−(2 − β), 0]``.
* Divergence artifacts: classifier-free guidance of one ring2d component at scale 5 and 8 steps,
  against the DOP853 solution of the guided PF-ODE.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffsample import sample, solvers, steps
from diffsample.errors import DiffsampleError
from diffsample.solvers.momentum import ghvb_coefficients, ghvb_order
from diffsample.solvers.multistep import AB_UNIFORM
from diffsample.testbeds import GaussianMixture, reference_solution, ring2d
from diffsample.transforms import cfg

F64 = torch.float64
NAMES = ("plms_hb", "ghvb", "dpmpp_2m_hb")


def _paper_mixer(order: int, b: float) -> list[float]:
    """The paper's published GHVB coefficients (``β·c`` is affine in β), newest first."""
    table = {
        1: ([b], 1),
        2: ([2 + b, -(2 - b)], 2),
        3: ([18 + 5 * b, -(24 - 8 * b), 6 - b], 12),
        4: ([46 + 9 * b, -(78 - 19 * b), 42 - 5 * b, -(10 - b)], 24),
    }
    coeffs, denominator = table[order]
    return [c / (denominator * b) for c in coeffs]


@pytest.mark.parametrize("beta", [1.0, 0.8, 0.5, 0.2, 0.05])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ghvb_weights_are_the_papers_and_meet_the_moment_conditions(order, beta):
    c = np.asarray(ghvb_coefficients(order, beta))
    assert np.allclose(c, _paper_mixer(order, beta), rtol=1e-13, atol=1e-13)
    # Σ_j c_j Σ_k β(1−β)^k (−(j + k))^m = 1/(m + 1) for m < r, the past summed directly (truncated at 1e-17)
    k = np.arange(2000)
    w = beta * (1 - beta) ** k
    for m in range(order):
        lhs = sum(cj * np.sum(w * (-(j + k.astype(float))) ** m) for j, cj in enumerate(c))
        assert lhs == pytest.approx(1 / (m + 1), rel=1e-9, abs=1e-9)
    if beta == 1.0:
        assert c.tolist() == pytest.approx(AB_UNIFORM[order - 1], abs=1e-15)


def test_paper_names_and_bad_options():
    assert ghvb_order(3.8) == (4, pytest.approx(0.8)) and ghvb_order(2) == (2, 1.0) and ghvb_order(0.5) == (1, 0.5)
    bed = ring2d()
    x, sig = torch.zeros(2, 2, dtype=F64), steps.karras(4, 0.1, 10.0)
    for name in NAMES:
        for beta in (0.0, 1.5, -0.2, float("nan"), True):
            with pytest.raises(DiffsampleError, match="beta"):
                sample(bed, x, sig, name, beta=beta)
    for name in ("plms_hb", "ghvb"):
        with pytest.raises(DiffsampleError, match="order"):
            sample(bed, x, sig, name, order=5)
    with pytest.raises(DiffsampleError):
        ghvb_order(4.5)


# ------------------------------------------------------------------------------------- β = 1


@pytest.mark.parametrize("lower_order_final", [True, False])
@pytest.mark.parametrize("schedule", ["karras", "logsnr"])
def test_beta_one_is_the_base_solver(schedule, lower_order_final):
    bed = ring2d()
    x = 80.0 * torch.randn(16, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for n in (3, 12):
        sig = steps.get(schedule)(n, 0.002, 80.0)
        for order in (1, 2, 3, 4):
            base = sample(bed, x, sig, "ipndm", order=order, lower_order_final=lower_order_final)
            for name in ("plms_hb", "ghvb"):
                out = sample(bed, x, sig, name, order=order, beta=1.0, lower_order_final=lower_order_final)
                assert torch.allclose(out, base, rtol=1e-12, atol=1e-12), (name, order, n)
        for thresholding in (False, True):
            options = {"lower_order_final": lower_order_final, "thresholding": thresholding}
            assert torch.equal(
                sample(bed, x, sig, "dpmpp_2m_hb", beta=1.0, **options), sample(bed, x, sig, "dpmpp_2m", **options)
            )


def test_momentum_changes_the_walk_and_counts_one_call_per_step():
    bed = ring2d()
    x = 80.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    sig = steps.karras(12, 0.002, 80.0)
    for name, base in (("plms_hb", "ipndm"), ("ghvb", "ipndm"), ("dpmpp_2m_hb", "dpmpp_2m")):
        nfe = bed.nfe
        out = sample(bed, x, sig, name, beta=0.5)
        assert bed.nfe - nfe == 12 == solvers.spec(name).nfe(12)
        assert (out - sample(bed, x, sig, base)).abs().max() > 1e-3


# ----------------------------------------------------------------------------- convergence slopes

S_MAX, S_END = 20.0, 2.0
NS = (128, 512)


@pytest.fixture(scope="module")
def gaussian_problem() -> tuple[GaussianMixture, torch.Tensor, torch.Tensor]:
    mu, s = torch.tensor([0.3, -0.2], dtype=F64), torch.tensor([1.0, 0.7], dtype=F64)
    bed = GaussianMixture(mu[None], s[None])
    x = S_MAX * torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    exact = mu + (x - mu) * torch.sqrt(s**2 + S_END**2) / torch.sqrt(s**2 + S_MAX**2)
    dop853 = reference_solution(bed, x, S_MAX, S_END, rtol=1e-10, atol=1e-10, cache=False)
    assert torch.allclose(dop853, exact, atol=1e-8)
    return bed, x, exact


def _slope(bed, x, exact, name: str, **options) -> float:
    errors = []
    for n in NS:  # σ-uniform steps (Karras with ρ = 1), where the fixed PLMS weights are exact
        out = sample(bed, x, steps.karras(n + 1, S_END, S_MAX, rho=1.0, append_zero=False), name, **options)
        errors.append(float((out - exact).square().mean().sqrt()))
    return -float(np.polyfit(np.log(NS), np.log(errors), 1)[0])


@pytest.mark.parametrize("order,beta", [(1, 0.5), (2, 0.5), (3, 0.5), (4, 0.5), (4, 0.8)])
def test_ghvb_keeps_order_r_for_beta_below_one(gaussian_problem, order, beta):
    """GHVB r−1+β converges at order r (measured 0.94, 1.87, 2.78, 3.63, 3.69; ipndm-4 3.71): no order lost."""
    slope = _slope(*gaussian_problem, "ghvb", order=order, beta=beta)
    assert order - 0.4 < slope < order + 0.3, slope


@pytest.mark.parametrize(
    "name,options",
    [("plms_hb", {"order": 4, "beta": 0.5}), ("plms_hb", {"order": 2, "beta": 0.8}), ("dpmpp_2m_hb", {"beta": 0.5})],
)
def test_heavy_ball_is_first_order(gaussian_problem, name, options):
    """Heavy ball lags the direction by (1 − β)/β steps: order 1 whatever the base order (measured 0.93–1.06)."""
    slope = _slope(*gaussian_problem, name, **options)
    assert 0.85 < slope < 1.15, slope


# ---------------------------------------------------------------------------------- stability

AB_INTERVAL = (2.0, 1.0, 6.0 / 11.0, 0.3)  # |z| at the real stability boundary of AB1–AB4


def _linear_walk(name: str, z: float, **options) -> float:
    """|x| after 200 σ-uniform unit steps of ``dx/dσ = λx`` (``z = −λ``), from x = 1; exact: ``e^{−200λ}``."""
    lam = -z

    def denoiser(x, sigma):
        return x * (1.0 - lam * sigma[:, None])

    sig = torch.arange(201.0, 0.0, -1.0, dtype=F64)
    return float(sample(denoiser, torch.ones(1, 1, dtype=F64), sig, name, **options).abs().max())


@pytest.mark.parametrize("beta", [0.8, 0.5, 0.2])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_heavy_ball_stretches_the_stability_interval_by_2_minus_beta_over_beta(order, beta):
    boundary = AB_INTERVAL[order - 1] * (2 - beta) / beta
    assert _linear_walk("plms_hb", -0.9 * boundary, order=order, beta=beta) < 1e-3
    assert _linear_walk("plms_hb", -1.1 * boundary, order=order, beta=beta) > 1e3
    assert _linear_walk("ipndm", -0.9 * boundary, order=order) > 1e3  # the base method diverges there


@pytest.mark.parametrize("beta", [0.8, 0.5, 0.2])
def test_ghvb2_stability_interval_is_2_minus_beta(beta):
    boundary = 2 - beta
    assert _linear_walk("ghvb", -0.9 * boundary, order=2, beta=beta) < 1e-3
    assert _linear_walk("ghvb", -1.1 * boundary, order=2, beta=beta) > 1e3
    assert _linear_walk("ipndm", -0.9 * boundary, order=2) > 1e3


def test_momentum_removes_divergence_under_strong_guidance():
    """CFG scale 5 toward one ring2d component, 8 Karras steps 80 → 0.002: the base multistep solvers throw
    25–84 % of the samples far off (|x| > 2; the exact guided samples have |x| ≤ 1.3), momentum with β = 0.5
    keeps all of them and is 6–15× closer to the exact DOP853 solution (measured)."""
    bed = ring2d()
    guided = cfg(GaussianMixture(bed.means[:1], bed.stds[:1]), 5.0, uncond=bed)
    x = 80.0 * torch.randn(32, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    exact = reference_solution(guided, x, 80.0, 0.002, rtol=1e-8, atol=1e-8, cache=False)
    assert float(exact.norm(dim=1).max()) < 1.3
    sig = steps.karras(9, 0.002, 80.0, append_zero=False)  # 8 steps

    def run(name: str, **options) -> tuple[float, float]:
        out = sample(guided, x, sig, name, **options)
        far = float((out.norm(dim=1) > 2).double().mean())
        return far, float((out - exact).square().sum(1).mean().sqrt())

    for (base, base_opts), (momentum, opts) in [
        (("ipndm", {"order": 4}), ("plms_hb", {"order": 4, "beta": 0.5})),
        (("ipndm", {"order": 2}), ("ghvb", {"order": 2, "beta": 0.5})),
        (("dpmpp_2m", {}), ("dpmpp_2m_hb", {"beta": 0.5})),
    ]:
        base_far, base_rmse = run(base, **base_opts)
        far, rmse = run(momentum, **opts)
        assert base_far >= 0.2 and far == 0.0, (base, base_far, far)
        assert rmse < base_rmse / 3, (base, base_rmse, rmse)


def test_steps_into_zero_end_on_the_denoised_value():
    """With a trailing 0 the last call's D is returned (the first-order limit); no call at σ = 0."""
    bed = ring2d()
    x = 80.0 * torch.randn(4, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    sig = steps.karras(8, 0.002, 80.0)
    for name in NAMES:
        seen: list[dict] = []
        out = sample(bed, x, sig, name, beta=0.5, callback=seen.append)
        assert len(seen) == 8 and seen[-1]["sigma"] > 0 and torch.equal(out, seen[-1]["denoised"])
