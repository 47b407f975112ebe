"""The exact Gaussian guidance bed: its denoisers, targets, moment ODEs and step-by-step laws against closed forms,
and the library's CFG / CFG++ / PCG walks against the bed's laws (exactly, and by samples for the stochastic ones).
"""

from __future__ import annotations

import math

import pytest
import torch

import diffsample
from diffsample import steps
from diffsample.noise import seeded
from diffsample.testbeds import GaussianMixture
from diffsample.testbeds.gaussian_guidance import (
    GaussianGuidanceBed,
    GaussianLaw,
    affine_walk_law,
    default_bed,
    kl,
    moment_z_scores,
    w2,
)
from diffsample.transforms import cfg, cfgpp, pcg

F64 = torch.float64
SIGMAS = steps.karras(12, 0.002, 80.0).to(F64)


def assert_same_law(p: GaussianLaw, q: GaussianLaw, atol: float) -> None:
    torch.testing.assert_close(p.mean, q.mean, rtol=0, atol=atol)
    torch.testing.assert_close(p.cov, q.cov, rtol=0, atol=atol)


def test_gaussian_metrics_have_their_closed_forms() -> None:
    p, q = GaussianLaw.of([0.0], [1.0]), GaussianLaw.of([1.0], [4.0])
    assert w2(p, q) == pytest.approx(math.sqrt(2.0), rel=1e-12)  # (0 − 1)² + (1 − 2)²
    assert kl(p, q) == pytest.approx(math.log(2.0) + (1.0 + 1.0) / 8.0 - 0.5, rel=1e-12)
    assert w2(p, p) == 0.0 and kl(q, q) == pytest.approx(0.0, abs=1e-15)


def test_denoiser_is_the_posterior_mean_for_full_covariances() -> None:
    """A rotated diagonal Gaussian: D(x) = Q D_diag(Qᵀ x), D_diag from the mixture bed's exact posterior mean."""
    angle = 0.7
    q = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]], dtype=F64)
    stds, mean_rot = torch.tensor([0.4, 1.3], dtype=F64), torch.tensor([0.5, -1.0], dtype=F64)
    law = GaussianLaw.of(q @ mean_rot, q @ torch.diag(stds**2) @ q.T)
    bed = GaussianGuidanceBed(law, GaussianLaw.of([0.0, 0.0], [1.0, 1.0]))
    diagonal = GaussianMixture(mean_rot[None], stds[None])
    x = torch.randn(7, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    sigma = torch.tensor([0.0, 0.1, 0.5, 1.0, 3.0, 10.0, 80.0], dtype=F64)
    torch.testing.assert_close(bed.conditional()(x, sigma), diagonal(x @ q, sigma) @ q.T, rtol=0, atol=1e-12)


def test_gamma_target_is_the_normalised_power_of_the_densities() -> None:
    bed = default_bed()
    assert_same_law(bed.gamma_target(1.0), bed.cond, 1e-12)
    assert_same_law(bed.gamma_target(0.0), bed.uncond, 1e-12)
    gamma, sigma = 3.0, 0.4
    target = bed.gamma_target(gamma, sigma)
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=F64)

    def logpdf(law: GaussianLaw, x: torch.Tensor) -> torch.Tensor:
        return torch.distributions.MultivariateNormal(law.mean, law.cov).log_prob(x)

    powered = (1 - gamma) * logpdf(bed.uncond.noised(sigma), x) + gamma * logpdf(bed.cond.noised(sigma), x)
    gap = powered - logpdf(target, x)  # a constant: the log normaliser
    torch.testing.assert_close(gap, gap[0].expand(5), rtol=0, atol=1e-12)


@pytest.mark.parametrize("w,law", [(1.0, "cond"), (0.0, "uncond")])
def test_moment_odes_carry_the_exact_marginal_to_the_data(w: float, law: str) -> None:
    """Unguided, the PF-ODE and the reverse SDE both map p_{σ_max} exactly to p (Song et al. 2021)."""
    bed = default_bed()
    data = getattr(bed, law)
    start = data.noised(80.0)
    assert_same_law(bed.ode_law(w, 80.0, start), data, 1e-8)
    assert_same_law(bed.sde_law(w, 80.0, start), data, 1e-8)


def test_discrete_walks_converge_to_the_continuous_laws_at_first_order() -> None:
    bed = default_bed()
    gamma = 3.0
    ode, sde = bed.ode_law(gamma, 80.0), bed.sde_law(gamma, 80.0)
    e = {n: w2(bed.ddim_law(gamma, steps.karras(n, 1e-4, 80.0)), ode) for n in (100, 400)}
    f = {n: w2(bed.ddpm_law(gamma, steps.karras(n, 1e-4, 80.0)), sde) for n in (100, 400)}
    assert e[400] < 6e-3 and f[400] < 1.2e-2
    assert 3.5 < e[100] / e[400] < 4.5 and 3.5 < f[100] / f[400] < 4.5  # first order: 4× the steps, 1/4 the error


def test_counterexample_cfg_ddim_cfg_ddpm_and_the_gamma_target_differ() -> None:
    """Chidambaram et al. 2024 / Bradley & Nakkiran 2024: for γ ∉ {0, 1} the three laws are different."""
    bed = default_bed()
    distances = bed.counterexample(3.0)
    assert min(distances.values()) > 0.2, distances
    exact = bed.cond.noised(80.0)
    assert w2(bed.ode_law(1.0, 80.0, exact), bed.sde_law(1.0, 80.0, exact)) < 1e-7


def walk(denoiser, solver, sigmas: torch.Tensor = SIGMAS, **options):
    return lambda x, noise: diffsample.sample(denoiser, x, sigmas, solver=solver, noise=noise, **options)


def test_library_walks_have_the_step_by_step_laws() -> None:
    """sample() with cfg / cfgpp / pcg on the bed's denoisers, read off exactly by affine_walk_law."""
    bed = default_bed()
    d_c, d_u = bed.conditional(), bed.unconditional()
    start = bed.start(80.0)
    cases = [
        (walk(cfg(d_c, 3.0, uncond=d_u), "euler"), bed.ddim_law(3.0, SIGMAS)),
        (walk(cfg(d_c, 3.0, uncond=d_u), "ddpm"), bed.ddpm_law(3.0, SIGMAS)),
        (walk(cfg(d_c, 2.0, uncond=d_u, convention="ho_salimans"), "euler_ancestral"), bed.ddpm_law(3.0, SIGMAS)),
        (walk(cfgpp(d_c, 0.6, uncond=d_u), "ddim"), bed.cfgpp_law(0.6, SIGMAS)),
        (walk(cfgpp(d_c, 0.6, uncond=d_u), "euler_ancestral", eta=0.5), bed.cfgpp_law(0.6, SIGMAS, eta=0.5)),
        (
            walk(d_c, pcg, corrector=cfg(d_c, 3.0, uncond=d_u), corrector_steps=2, step_size=0.3),
            bed.pcg_law(1.0, 3.0, SIGMAS, 2, 0.3),
        ),
        (
            walk(cfg(d_c, 3.0, uncond=d_u), pcg, corrector=cfg(d_c, 3.0, uncond=d_u), corrector_steps=1, eta=1.0),
            bed.pcg_law(3.0, 3.0, SIGMAS, 1, 0.1, eta=1.0),
        ),
    ]
    for run, law in cases:
        assert_same_law(affine_walk_law(run, start), law, 1e-10)


def test_pcg_corrector_reaches_the_gamma_powered_marginal() -> None:
    """Many small Langevin steps at one level: the law tends to p_{u,σ}^{1−γ} p_{c,σ}^γ as the step → 0."""
    bed = default_bed()
    levels = torch.tensor([5.0, 0.5], dtype=F64)
    target = bed.gamma_target(3.0, 0.5)
    coarse = w2(bed.pcg_law(1.0, 3.0, levels, 2000, 0.02), target)  # 40 time units of Langevin: mixed
    fine = w2(bed.pcg_law(1.0, 3.0, levels, 8000, 0.005), target)
    assert fine < 1e-3 and 3.5 < coarse / fine < 4.5  # unadjusted Langevin: bias O(step)


@pytest.mark.parametrize("kind", ["cfg_ddpm", "cfgpp_ancestral", "pcg"])
def test_stochastic_walk_samples_follow_the_exact_law(kind: str) -> None:
    bed = default_bed()
    d_c, d_u = bed.conditional(), bed.unconditional()
    n = 20000
    noise = seeded(list(range(1000, 1000 + n)))
    x = noise.initial((n, 2), 80.0, dtype=F64)
    if kind == "cfg_ddpm":
        out = diffsample.sample(cfg(d_c, 3.0, uncond=d_u), x, SIGMAS, solver="ddpm", noise=noise)
        law = bed.ddpm_law(3.0, SIGMAS)
    elif kind == "cfgpp_ancestral":
        out = diffsample.sample(cfgpp(d_c, 0.8, uncond=d_u), x, SIGMAS, solver="euler_ancestral", noise=noise)
        law = bed.cfgpp_law(0.8, SIGMAS, eta=1.0)
    else:
        out = diffsample.sample(
            d_c, x, SIGMAS, solver=pcg, corrector=cfg(d_c, 3.0, uncond=d_u), corrector_steps=3, noise=noise
        )
        law = bed.pcg_law(1.0, 3.0, SIGMAS, 3, 0.1)
    z = moment_z_scores(out, law)
    assert z.abs().max() < 4.5, z


def test_cfg_in_multistep_ode_and_sde_solvers_converges_to_the_continuous_laws_at_second_order() -> None:
    """CFG unchanged in DPM-Solver++(2M) and SDE-DPM-Solver++(2M) (η = 1): their exact laws tend to the CFG-ODE
    and CFG-SDE laws of the bed, the error falling ~4× per doubling of the steps."""
    bed = default_bed()
    d_c, d_u = bed.conditional(), bed.unconditional()
    limits = {"dpmpp_2m": bed.ode_law(3.0, 80.0), "dpmpp_2m_sde": bed.sde_law(3.0, 80.0)}
    for solver, limit in limits.items():
        options = {"eta": 1.0} if solver == "dpmpp_2m_sde" else {}
        errors = []
        for n in (40, 80):
            run = walk(cfg(d_c, 3.0, uncond=d_u), solver, steps.karras(n, 1e-3, 80.0).to(F64), **options)
            errors.append(w2(affine_walk_law(run, bed.start(80.0)), limit))
        assert errors[1] < 1e-2 and errors[0] / errors[1] > 3.0, (solver, errors)
