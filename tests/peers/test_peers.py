"""Peer adapters (diffusers schedulers, k-diffusion samplers) on an exact Gaussian test bed.

Reference answers come from outside the adapters: the closed-form probability-flow ODE solution
of a Gaussian data distribution, and the other library (or diffsample's own solvers) run on the
same σ grid from the same noise.
"""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys

import pytest
import torch

import diffsample
from diffsample.denoisers import FunctionDenoiser
from diffsample.errors import BudgetError, UnknownNameError

pytest.importorskip("benchmarks.peers")
from benchmarks import peers  # noqa: E402

# data ~ N(MU, diag(S²)) in 4-D: D(x, σ) = μ + s²/(s² + σ²)(x − μ), and the PF-ODE
# dx/dσ = (x − D)/σ has the exact solution x(σ) − μ = sqrt(s² + σ²)/sqrt(s² + σ0²) · (x(σ0) − μ).
MU = torch.tensor([1.0, -0.5, 0.3, 2.0], dtype=torch.float64)
S = torch.tensor([0.5, 0.7, 1.0, 0.6], dtype=torch.float64)


def gaussian_denoiser() -> FunctionDenoiser:
    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s2 = sigma.to(torch.float64).reshape(-1, 1) ** 2
        return (MU + S**2 / (S**2 + s2) * (x.to(torch.float64) - MU)).to(x.dtype)

    return FunctionDenoiser(fn)


def exact(z: torch.Tensor, sigma_start: float, sigma_end: float) -> torch.Tensor:
    """Exact PF-ODE solution at σ_end from the state σ_start·z."""
    x0 = z.to(torch.float64) * sigma_start
    return MU + torch.sqrt(S**2 + sigma_end**2) / torch.sqrt(S**2 + sigma_start**2) * (x0 - MU)


def noise(batch: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 4, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def diffusers_mod():
    return pytest.importorskip("diffusers")


def _first_order(cfg: peers.PeerConfig) -> bool:
    return cfg.sampler in ("DDIMScheduler", "EulerDiscreteScheduler", "EDMEulerScheduler")


# --------------------------------------------------------------------------------- isolation


def test_import_diffsample_does_not_import_peers():
    code = (
        "import sys, diffsample, benchmarks.peers as p; "
        "assert 'diffusers' not in sys.modules and 'k_diffusion' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_k_sampling_loads_without_package_init(k_sampling):
    assert hasattr(k_sampling, "sample_euler") and hasattr(k_sampling, "get_sigmas_karras")
    if "k_diffusion" not in sys.modules:  # our loader never registers the real package name
        assert "k_diffusion.sampling" not in sys.modules
    assert peers.load_k_sampling() is k_sampling  # cached


def test_missing_k_diffusion_gives_install_hint(monkeypatch):
    monkeypatch.delitem(sys.modules, "k_diffusion.sampling", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match="requirements-peers.txt"):
        peers.load_k_sampling.__wrapped__()


def test_peers_available_reports_versions(diffusers_mod, k_sampling):
    avail = peers.peers_available()
    assert avail["diffusers"] == diffusers_mod.__version__
    assert avail["k-diffusion"]


# ------------------------------------------------------------- diffusers: convergence to exact

_DIFFUSERS_OK = [c for c in peers.DIFFUSERS_CONFIGS if not c.issue]
# diffusers' own accuracy limits, measured (not conversion faults: the same conversions converge
# for the neighbouring configurations): their error stops falling with NFE, so only a bound is checked
_STALLS = {
    "diffusers:deis-o3": "3rd-order coefficients from float32 σ tables",
    "diffusers:unipc-bh1-o3-sigma-min": "stalls near 5e-4 even with float64 tables",
}


# the five slowest configurations (1–3 s each: LMS's quadrature, KDPM2's two stages, DEIS-3) run with -m slow;
# their conversions are also checked by the cross-library and NFE tests below
_DIFFUSERS_SLOW = {
    "diffusers:lms",
    "diffusers:lms-karras",
    "diffusers:kdpm2",
    "diffusers:kdpm2-karras",
    "diffusers:deis-o3",
}


@pytest.mark.parametrize(
    "cfg",
    [pytest.param(c, id=c.name, marks=[pytest.mark.slow] if c.name in _DIFFUSERS_SLOW else []) for c in _DIFFUSERS_OK],
)
def test_diffusers_config_converges_to_exact_solution(diffusers_mod, cfg):
    """Many steps land on the exact ODE solution over the reported span, and more steps get closer.

    A wrong conversion (sample scaling, start level, end level, network output) leaves an O(0.1–1)
    error that does not shrink with NFE. The remaining error is the method's own discretisation,
    dominated by its final first-order jump to σ = 0.
    """
    z = noise()
    errs = []
    for nfe in (40, 160):
        den = gaussian_denoiser()
        run = cfg.run(den, z, nfe)
        assert run.nfe == den.nfe <= nfe
        assert torch.isfinite(run.x).all()
        errs.append(float((run.x.to(torch.float64) - exact(z, run.sigma_start, run.sigma_end)).abs().max()))
    if cfg.name in _STALLS:
        assert max(errs) < 0.03, (errs, _STALLS[cfg.name])
        return
    tol = 0.05 if _first_order(cfg) else 0.01
    assert errs[1] < tol, errs
    assert errs[1] < 0.6 * errs[0], errs


# ------------------------------------------------------- cross-library agreement on one σ grid


@pytest.mark.parametrize(
    ("scheduler", "options", "k_name"),
    [
        ("EulerDiscreteScheduler", {"use_karras_sigmas": True}, "euler"),
        ("HeunDiscreteScheduler", {"use_karras_sigmas": True}, "heun"),
        ("LMSDiscreteScheduler", {"use_karras_sigmas": True}, "lms"),
        ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}, "dpmpp_2m"),
        ("EDMEulerScheduler", {}, "euler"),
        ("EDMDPMSolverMultistepScheduler", {"solver_order": 2}, "dpmpp_2m"),
    ],
)
@pytest.mark.parametrize("nfe", [10, 25])
def test_diffusers_matches_k_diffusion_on_its_grid(diffusers_mod, k_sampling, scheduler, options, k_name, nfe):
    """Same method, same σ levels, same start: VP-sample, σ-space and EDM conversions are exact."""
    z = noise()
    x, used, s0, s1 = peers.diffusers_sample(scheduler, gaussian_denoiser(), z, nfe, **options)
    sigmas = peers.diffusers_sigmas(scheduler, nfe, **options)
    assert (float(sigmas[0]), float(sigmas[-1])) == pytest.approx((s0, s1), rel=1e-6)
    xk, used_k = peers.kdiffusion_sample(k_name, gaussian_denoiser(), (z.double() * sigmas[0]).float(), sigmas)
    assert used == used_k
    assert float((x - xk).abs().max()) < 5e-5


def _ddim_vs_euler(spacing: str, nfe: int) -> float:
    z = noise()
    x, used, s0, s1 = peers.diffusers_sample("DDIM", gaussian_denoiser(), z, nfe, timestep_spacing=spacing)
    sigmas = peers.diffusers_sigmas("DDIM", nfe, timestep_spacing=spacing)
    ours = diffsample.sample(gaussian_denoiser(), (z.double() * sigmas[0]).float(), sigmas, solver="euler")
    assert used == nfe and s1 == 0.0
    return float((x - ours).abs().max())


@pytest.mark.parametrize(("spacing", "nfe"), [("trailing", 20), ("leading", 20), ("leading", 30)])
def test_ddim_is_euler_on_its_grid(diffusers_mod, spacing, nfe):
    """DDIM (η = 0) is Euler in σ-space: it equals diffsample's euler on DDIM's own levels.

    ('trailing' needs 1000/n integral; 'linspace' is never consistent below 1000 steps: next test.)
    """
    assert _ddim_vs_euler(spacing, nfe) < 5e-5


@pytest.mark.parametrize(("spacing", "nfe"), [("trailing", 30), ("linspace", 20), ("linspace", 11)])
def test_ddim_steps_to_the_wrong_level_for_uneven_spacing(diffusers_mod, spacing, nfe):
    """diffusers' DDIM steps t → t − 1000//n whatever the listed next timestep is (the ddim-trailing issue)."""
    if diffusers_mod.__version__ != "0.42.1":
        pytest.skip("issue measured on diffusers 0.42.1")
    assert _ddim_vs_euler(spacing, nfe) > 1e-2


# ----------------------------------------------------------------------- spans and NFE budgets


def test_reported_spans(diffusers_mod):
    table = peers.vp1000_sigma_table()
    z = noise(4)
    # 'leading' DDIM starts below t = 999 and ends in x0
    _, _, s0, s1 = peers.diffusers_sample("DDIMScheduler", gaussian_denoiser(), z, 10)
    assert s0 == pytest.approx(float(table[900]), rel=1e-5) and s1 == 0.0
    # DEIS and non-++ DPM-Solver end at the table's σ(t=0) ≈ 0.01, PLMS (set_alpha_to_one=False) too
    for name, kw in [
        ("DEISMultistep", {}),
        ("DPMSolverMultistep", {"algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}),
        ("PNDM", {"skip_prk_steps": True}),
    ]:
        _, _, s0, s1 = peers.diffusers_sample(name, gaussian_denoiser(), z, 10, **kw)
        assert s1 == pytest.approx(float(table[0]), rel=1e-4), name
    _, _, s0, s1 = peers.diffusers_sample("EDMEuler", gaussian_denoiser(), z, 10)
    assert (s0, s1) == (pytest.approx(80.0), 0.0)


@pytest.mark.parametrize(
    ("scheduler", "options", "budget", "expected"),
    [
        ("DPMSolverMultistep", {}, 7, 7),
        ("EulerDiscrete", {}, 12, 12),
        ("HeunDiscrete", {}, 11, 11),  # 2·6 − 1
        ("HeunDiscrete", {}, 12, 11),
        ("KDPM2Discrete", {}, 9, 9),
        ("PNDM", {"skip_prk_steps": True}, 10, 10),  # PLMS repeats one timestep: 9 steps, 10 calls
        ("EDMEuler", {}, 5, 5),
    ],
)
def test_diffusers_nfe_matches_model_calls(diffusers_mod, scheduler, options, budget, expected):
    den = gaussian_denoiser()
    _, used, _, _ = peers.diffusers_sample(scheduler, den, noise(2), budget, **options)
    assert used == den.nfe == expected


@pytest.mark.parametrize(
    ("name", "steps", "calls"),
    [("euler", 8, 8), ("heun", 8, 15), ("dpm_2", 5, 9), ("dpmpp_2m", 6, 6), ("dpmpp_sde", 4, 7), ("lms", 5, 5)],
)
def test_kdiffusion_nfe_matches_model_calls(k_sampling, name, steps, calls):
    sigmas = peers.kdiffusion_sigmas("karras", steps, "edm")
    den = gaussian_denoiser()
    _, used = peers.kdiffusion_sample(name, den, noise(2) * 80.0, sigmas)
    assert used == den.nfe == calls
    assert peers.kdiffusion_steps_for_nfe(name, calls) == steps


def test_budget_errors(diffusers_mod, k_sampling):
    with pytest.raises(BudgetError):
        peers.diffusers_sample("DPMSolverMultistep", gaussian_denoiser(), noise(2), 0)
    with pytest.raises(BudgetError):
        peers.kdiffusion_steps_for_nfe("heun", 0)
    with pytest.raises(UnknownNameError):
        peers.diffusers_sample("NoSuchScheduler", gaussian_denoiser(), noise(2), 5)
    with pytest.raises(UnknownNameError):
        peers.kdiffusion_sample("no_such_sampler", gaussian_denoiser(), noise(2), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="span"):
        peers.diffusers_sample("EDMEuler", gaussian_denoiser(), noise(2), 5, span="vp1000")


# ---------------------------------------------------------------------------------- k-diffusion


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_kdiffusion_matches_diffsample(k_sampling, solver):
    sigmas = peers.kdiffusion_sigmas("karras", 12, "edm")
    x = (noise() * 80.0).float()
    xk, used = peers.kdiffusion_sample(solver, gaussian_denoiser(), x, sigmas)
    den = gaussian_denoiser()
    ours = diffsample.sample(den, x, sigmas, solver=solver)
    assert used == den.nfe
    assert float((xk - ours).abs().max()) < 1e-5


_KD_FIXED = [c for c in peers.KDIFFUSION_CONFIGS if c.fixed_nfe and c.span == "edm"]


@pytest.mark.parametrize("cfg", _KD_FIXED, ids=[c.name for c in _KD_FIXED])
def test_kdiffusion_config_converges_to_exact_solution(k_sampling, cfg):
    if not hasattr(k_sampling, f"sample_{cfg.sampler}"):
        pytest.skip(f"installed k-diffusion has no sample_{cfg.sampler}")
    z = noise()
    errs = []
    for nfe in (40, 160):
        den = gaussian_denoiser()
        run = cfg.run(den, z, nfe)
        assert run.nfe == den.nfe <= nfe
        errs.append(float((run.x.to(torch.float64) - exact(z, run.sigma_start, run.sigma_end)).abs().max()))
    assert errs[1] < (0.05 if cfg.sampler == "euler" else 0.01), errs
    assert errs[1] < 0.6 * errs[0], errs


def test_kdiffusion_dpm_adaptive_ends_at_sigma_min(k_sampling):
    cfg = next(c for c in peers.KDIFFUSION_CONFIGS if c.name == "k-diffusion:dpm_adaptive@edm")
    z = noise()
    run = cfg.run(gaussian_denoiser(), z, 0)
    assert run.sigma_end == 0.002 and run.nfe > 0
    assert float((run.x.double() - exact(z, run.sigma_start, run.sigma_end)).abs().max()) < 0.2


# ------------------------------------------------------------------------ known diffusers issues

_NAN_ISSUES = [c for c in peers.DIFFUSERS_CONFIGS if c.issue.startswith("NaN")]


@pytest.mark.parametrize("cfg", _NAN_ISSUES, ids=[c.name for c in _NAN_ISSUES])
def test_known_diffusers_nan_reproduces(diffusers_mod, cfg):
    """The configurations flagged with an issue return NaN on this exact, plain problem (diffusers 0.42.1)."""
    if diffusers_mod.__version__ != "0.42.1":
        pytest.skip("issue measured on diffusers 0.42.1")
    run = cfg.run(gaussian_denoiser(), noise(4), 20)
    assert torch.isnan(run.x).any()
    assert math.isfinite(run.sigma_start)


def test_same_span_peer_rows_walk_our_span_and_agree_with_our_solvers(k_sampling):
    """The tuning benchmark's peer candidates: only runs of exactly σ_max → 0, and k-diffusion's euler and
    dpmpp_2m on Karras steps score what ours score on the same grid (an independent implementation)."""
    from benchmarks.runner import BenchConfig, run_benchmark
    from benchmarks.tuning_bench import same_span_peer_rows
    from diffsample.testbeds import get_bed

    bed = get_bed("ring2d")
    config = BenchConfig(
        beds=["ring2d"],
        solvers=["euler", "dpmpp_2m"],
        schedules=["karras"],
        nfes=[6],
        sigma_min=0.002,
        sigma_max=80.0,
        batch=16,
        seed=0,
    )
    held = diffsample.noise.seeded(0).initial((16, *bed.shape), 80.0, dtype=torch.float64)
    rows = same_span_peer_rows("ring2d", bed, held, config)
    names = {r.solver for r in rows}
    assert rows and all(r.source in ("diffusers", "k-diffusion") for r in rows)
    assert not any("dpm_fast" in n for n in names)  # stops at σ_min: another span
    assert not any("@vp1000" in n for n in names)
    ours = {r.solver: r.rmse for r in run_benchmark(config)}
    theirs = {r.solver: r.rmse for r in rows}
    assert theirs["k-diffusion:euler-karras@edm"] == pytest.approx(ours["euler"], rel=1e-6)
    assert theirs["k-diffusion:dpmpp_2m-karras@edm"] == pytest.approx(ours["dpmpp_2m"], rel=1e-6)


def test_catalogue_entry_runs_on_stable_diffusions_table(diffusers_mod):
    """A catalogue entry put on another training table (``table=``, the defaults' ``vp_sd`` units) walks that
    table's span, equals our DDIM on its own levels, and converges to the exact solution there."""
    from diffsample.schedules import DiscreteVP

    sd_table = {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}
    cfg = next(c for c in peers.peer_configs("diffusers", "vp1000") if c.name == "diffusers:ddim-trailing")
    z = noise()
    run = cfg.run(gaussian_denoiser(), z, 20, table=sd_table)
    assert run.sigma_start == pytest.approx(float(DiscreteVP(beta_schedule="scaled_linear").sigma_max), rel=1e-6)
    assert run.sigma_start < 15 and run.sigma_end == 0.0 and run.nfe == 20
    sigmas = peers.diffusers_sigmas("DDIM", 20, config={**cfg.options, **sd_table})
    ours = diffsample.sample(gaussian_denoiser(), (z.double() * sigmas[0]).float(), sigmas, solver="euler")
    assert float((run.x - ours).abs().max()) < 5e-5
    end = exact(z, run.sigma_start, 0.0)
    outs = [cfg.run(gaussian_denoiser(), z, n, table=sd_table).x.double() for n in (10, 20, 40)]
    errors = [float((x - end).abs().max()) for x in outs]
    assert errors[2] < 0.6 * errors[1] < 0.36 * errors[0] and errors[2] < 0.15  # first order: halves with the steps
    kd = next(c for c in peers.peer_configs("k-diffusion", "vp1000"))
    with pytest.raises(ValueError, match="k-diffusion"):
        kd.run(gaussian_denoiser(), z, 10, table=sd_table)
