"""The CFG family against explicit updates and reference implementations, on exact mixture denoisers.

* CFG's two conventions: ``D_u + w (D_c − D_u)`` and Ho & Salimans' ``(1 + w) D_c − w D_u``;
* CFG++ (Chung et al. 2024): the paper's DDIM update (Algorithm 1 / ComfyUI ``sample_euler_cfg_pp``), the
  ancestral one (``sample_euler_ancestral_cfg_pp``), the DPM-Solver++(2M) one of this library's definition
  (ComfyUI's ``sample_dpmpp_2m_cfg_pp`` structure on the per-step denoiser) and the SDE solvers' first-order step;
* APG (Sadat et al. 2024) against diffusers' ``normalized_guidance`` and ``MomentumBuffer`` (the paper's
  Algorithm 1), with momentum, across a whole walk of a multistep and an SDE solver;
* PCG's NFE; the walk context's per-walk state.

The denoisers are exact posterior means of two Gaussian mixtures (nonlinear in x), float64 throughout.
"""

from __future__ import annotations

import math

import pytest
import torch

import diffsample
from diffsample import solvers, steps
from diffsample.denoisers import FunctionDenoiser
from diffsample.errors import DiffsampleError
from diffsample.noise import seeded
from diffsample.solvers.ancestral import ancestral_split
from diffsample.testbeds import GaussianMixture
from diffsample.transforms import apg, cfg, cfgpp, current_walk, pcg, pcg_cost, walk_context

F64 = torch.float64
SIGMAS = steps.karras(20, 0.002, 80.0).to(F64)


def mixtures() -> tuple[GaussianMixture, GaussianMixture]:
    """A conditional 3-component mixture and a broader unconditional one in 3-d."""
    cond = GaussianMixture([[1.0, 0.5, -0.3], [0.6, 1.2, 0.1], [1.4, -0.2, 0.4]], [0.3, 0.2, 0.4], [0.5, 0.3, 0.2])
    uncond = GaussianMixture([[0.0, 0.0, 0.0], [-1.0, 0.8, 0.5], [1.0, 0.5, -0.3]], [0.8, 0.5, 0.3])
    return cond, uncond


def start(n: int = 6) -> torch.Tensor:
    return 80.0 * torch.randn(n, 3, generator=torch.Generator().manual_seed(3), dtype=F64)


def levels(s: torch.Tensor) -> list[float]:
    return [float(v) for v in s.tolist()]


# ---- CFG conventions ----------------------------------------------------------------------------------


def test_ho_salimans_convention_is_one_plus_w_cond_minus_w_uncond() -> None:
    d_c, d_u = mixtures()
    x, sigma = start(), torch.full((6,), 1.7, dtype=F64)
    w = 2.5
    expected = (1 + w) * d_c(x, sigma) - w * d_u(x, sigma)
    ho = cfg(d_c, w, uncond=d_u, convention="ho_salimans")
    torch.testing.assert_close(ho(x, sigma), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(cfg(d_c, w + 1, uncond=d_u)(x, sigma), expected, rtol=0, atol=1e-12)
    assert ho.nfe_per_call == 2
    only_cond = cfg(d_c, 0.0, uncond=d_u, convention="ho_salimans")  # w = 0: the conditional model, one call
    torch.testing.assert_close(only_cond(x, sigma), d_c(x, sigma), rtol=0, atol=0)
    assert only_cond.nfe == 1
    with pytest.raises(DiffsampleError, match="diffusers"):
        cfg(d_c, 1.0, uncond=d_u, convention="karras")


# ---- CFG++ ----------------------------------------------------------------------------------------------


def explicit_cfgpp_ancestral(d_c, d_u, x, s: list[float], lam: float, eta: float, noise) -> torch.Tensor:
    """Chung et al. 2024 Algorithm 1 (η = 0) / ComfyUI sample_euler_ancestral_cfg_pp (η > 0), in σ-space."""
    for sigma, nxt in zip(s, s[1:], strict=False):
        sb = torch.full((x.shape[0],), sigma, dtype=F64)
        dc, du = d_c(x, sb), d_u(x, sb)
        guided = du + lam * (dc - du)
        down, up = ancestral_split(sigma, nxt, eta) if nxt > 0 else (0.0, 0.0)
        x = guided + down * (x - du) / sigma
        if up > 0:
            x = x + up * noise(x, sigma, nxt)
    return x


@pytest.mark.parametrize("solver,eta", [("euler", 0.0), ("ddim", 0.0), ("euler_ancestral", 1.0), ("ddim", 0.6)])
def test_cfgpp_is_the_papers_update_for_first_order_solvers(solver: str, eta: float) -> None:
    d_c, d_u = mixtures()
    x, lam = start(), 0.7
    options = {} if solver == "euler" else {"eta": eta}
    got = diffsample.sample(cfgpp(d_c, lam, uncond=d_u), x, SIGMAS, solver=solver, noise=seeded(5), **options)
    expected = explicit_cfgpp_ancestral(d_c, d_u, x, levels(SIGMAS), lam, eta, seeded(5))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def comfy_dpmpp_2m_cfgpp(d_c, d_u, x, s: list[float], lam: float, history_of_effective: bool) -> torch.Tensor:
    """ComfyUI's sample_dpmpp_2m_cfg_pp written out; ``history_of_effective`` extrapolates D' (this library's
    definition, module doc of transforms.cfgpp) instead of ComfyUI's D_λ."""
    old = None
    for i, (sigma, nxt) in enumerate(zip(s, s[1:], strict=False)):
        sb = torch.full((x.shape[0],), sigma, dtype=F64)
        dc, du = d_c(x, sb), d_u(x, sb)
        guided = du + lam * (dc - du)
        r = nxt / sigma
        effective = du + lam / (1 - r) * (dc - du)
        new = effective if history_of_effective else guided
        if old is None or nxt == 0:
            x = guided + r * (x - du)
        else:
            h, h_last = math.log(sigma / nxt), math.log(s[i - 1] / sigma)
            x = guided + r * (x - du) + (1 - r) / (2 * h_last / h) * (new - old)
        old = new
    return x


def test_cfgpp_in_dpmpp_2m_is_the_multistep_update_on_the_per_step_denoiser() -> None:
    d_c, d_u = mixtures()
    x, lam = start(), 0.6
    got = diffsample.sample(cfgpp(d_c, lam, uncond=d_u), x, SIGMAS, solver="dpmpp_2m")
    ours = comfy_dpmpp_2m_cfgpp(d_c, d_u, x, levels(SIGMAS), lam, history_of_effective=True)
    torch.testing.assert_close(got, ours, rtol=0, atol=1e-12)
    # the first step is first order: there ComfyUI's sampler and this definition coincide exactly
    two = SIGMAS[:2]
    one_step = diffsample.sample(cfgpp(d_c, lam, uncond=d_u), x, two, solver="dpmpp_2m")
    comfy = comfy_dpmpp_2m_cfgpp(d_c, d_u, x, levels(two), lam, history_of_effective=False)
    torch.testing.assert_close(one_step, comfy, rtol=0, atol=1e-12)


@pytest.mark.parametrize("solver", ["dpmpp_2m_sde", "unipc", "heun", "euler_ancestral"])
def test_cfgpp_is_any_solver_run_on_the_per_step_weighted_denoiser(solver: str) -> None:
    """The mechanism: sample(cfgpp) equals the solver itself, run without a walk, on D_u + λ/(1 − r)(D_c − D_u)
    with r written by hand (σ'/σ, σ_down/σ, or e^{−(1+η)h} = (σ'/σ)^{1+η} for SDE-DPM-Solver++)."""
    d_c, d_u = mixtures()
    x, lam, eta = start(), 0.5, 1.0
    s = levels(SIGMAS)

    def r_of(sigma: float) -> float:
        below = [v for v in s if v < sigma * (1 - 1e-6)]
        if not below:
            return 0.0
        nxt = below[0]
        if nxt == 0:
            return 0.0
        if solver == "dpmpp_2m_sde":
            return (nxt / sigma) ** (1 + eta)
        if solver == "euler_ancestral":
            return ancestral_split(sigma, nxt, eta)[0] / sigma
        return nxt / sigma

    def weighted(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        r = r_of(float(sigma[0]))
        dc, du = d_c(x, sigma), d_u(x, sigma)
        return du + lam / (1 - r) * (dc - du)

    options = {"eta": eta} if solver in ("dpmpp_2m_sde", "euler_ancestral") else {}
    got = diffsample.sample(cfgpp(d_c, lam, uncond=d_u), x, SIGMAS, solver=solver, noise=seeded(9), **options)
    reference = solvers.get(solver)(FunctionDenoiser(weighted), x.clone(), SIGMAS, noise=seeded(9), **options)
    torch.testing.assert_close(got, reference, rtol=0, atol=1e-12)
    assert torch.isfinite(got).all()


def test_cfgpp_counts_two_evaluations_per_call_and_needs_a_walk() -> None:
    d_c, d_u = mixtures()
    guided = cfgpp(d_c, 1.0, uncond=d_u)
    diffsample.sample(guided, start(), SIGMAS, solver="euler")
    assert guided.nfe == 2 * (len(SIGMAS) - 1)
    with pytest.raises(DiffsampleError, match="walk"):
        guided(start(), 1.0)
    with pytest.raises(DiffsampleError, match=r"\[0, 1\]"):
        cfgpp(d_c, 1.5, uncond=d_u)


# ---- APG ------------------------------------------------------------------------------------------------


def diffusers_apg_denoiser(d_c, d_u, w_ho: float, eta: float, threshold: float, momentum: float):
    """The guided denoiser of diffusers' APG guider (use_original_formulation=True, i.e. the paper's
    ``D_c + (w − 1)(…)`` with ``guidance_scale = w − 1``), with one MomentumBuffer for the walk."""
    apg_ref = pytest.importorskip("diffusers.guiders.adaptive_projected_guidance")
    buffer = apg_ref.MomentumBuffer(momentum) if momentum else None

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return apg_ref.normalized_guidance(
            d_c(x, sigma), d_u(x, sigma), w_ho, buffer, eta, threshold, use_original_formulation=True
        )

    return FunctionDenoiser(fn)


@pytest.mark.parametrize(
    "solver,eta,threshold,momentum",
    [("dpmpp_2m", 0.0, 2.0, -0.5), ("euler_ancestral", 0.0, 0.5, -0.75), ("euler", 0.3, 0.0, 0.0)],
)
def test_apg_matches_diffusers_reference_over_a_walk(
    solver: str, eta: float, threshold: float, momentum: float
) -> None:
    d_c, d_u = mixtures()
    x, w = start(), 4.0  # diffusers numbering: guidance_scale of the original formulation is w − 1
    guided = apg(d_c, w, uncond=d_u, eta=eta, norm_threshold=threshold, momentum=momentum)
    got = diffsample.sample(guided, x, SIGMAS, solver=solver, noise=seeded(2))
    reference = diffusers_apg_denoiser(d_c, d_u, w - 1, eta, threshold, momentum)
    expected = solvers.get(solver)(reference, x.clone(), SIGMAS, noise=seeded(2))
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)
    # the momentum is per walk: a second sample() call starts fresh and repeats the first exactly
    again = diffsample.sample(guided, x, SIGMAS, solver=solver, noise=seeded(2))
    torch.testing.assert_close(again, got, rtol=0, atol=0)
    assert guided.nfe == 2 * 2 * (len(SIGMAS) - 1)


def test_apg_with_eta_one_is_cfg_and_conventions_agree() -> None:
    d_c, d_u = mixtures()
    x, sigma = start(), torch.full((6,), 0.9, dtype=F64)
    torch.testing.assert_close(
        apg(d_c, 3.0, uncond=d_u, eta=1.0)(x, sigma), cfg(d_c, 3.0, uncond=d_u)(x, sigma), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        apg(d_c, 2.0, uncond=d_u, convention="ho_salimans")(x, sigma), apg(d_c, 3.0, uncond=d_u)(x, sigma)
    )
    # η = 0: the update is orthogonal to D_c, per sample
    out = apg(d_c, 3.0, uncond=d_u)(x, sigma)
    update = out - d_c(x, sigma)
    assert (update * d_c(x, sigma)).sum(1).abs().max() < 1e-12
    with pytest.raises(DiffsampleError, match="walk"):
        apg(d_c, 3.0, uncond=d_u, momentum=-0.5)(x, sigma)


# ---- PCG and the walk context ---------------------------------------------------------------------------


def test_pcg_counts_predictor_and_corrector_evaluations() -> None:
    d_c, d_u = mixtures()
    corrector = cfg(d_c, 3.0, uncond=d_u)
    predictor = FunctionDenoiser(d_c)
    diffsample.sample(predictor, start(), SIGMAS, solver=pcg, corrector=corrector, corrector_steps=3, noise=seeded(1))
    assert predictor.nfe == len(SIGMAS) - 1
    assert predictor.nfe + corrector.nfe == pcg_cost(len(SIGMAS), 3)
    with pytest.raises(DiffsampleError, match="corrector"):
        diffsample.sample(predictor, start(), SIGMAS, solver=pcg, noise=seeded(1))
    with pytest.raises(DiffsampleError, match="noise"):
        diffsample.sample(predictor, start(), SIGMAS, solver=pcg, corrector=corrector)


def test_walk_context_is_per_call_and_finds_each_solvers_step_coefficient() -> None:
    assert current_walk() is None
    with walk_context(SIGMAS, solvers.get("euler_ancestral"), eta=0.5) as walk:
        assert current_walk() is walk
        sigma, nxt = float(SIGMAS[3]), float(SIGMAS[4])
        assert walk.step_coefficient(sigma) == pytest.approx(ancestral_split(sigma, nxt, 0.5)[0] / sigma, rel=1e-14)
        assert walk.step_coefficient(float(SIGMAS[-2])) == 0.0  # the step into σ = 0 keeps nothing of x
        walk.state_of("apg")["running"] = 1
    assert current_walk() is None
    with walk_context(SIGMAS, solvers.get("dpmpp_2m_sde"), eta=1.0) as walk:
        h = math.log(float(SIGMAS[0] / SIGMAS[1]))
        assert walk.step_coefficient(float(SIGMAS[0])) == pytest.approx(math.exp(-2 * h), rel=1e-12)
        assert walk.state_of("apg") == {}
