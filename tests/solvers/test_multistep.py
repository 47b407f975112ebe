"""Linear multistep solvers (lms, ipndm, ipndm_v) against answers known independently of the code.

* The weights integrate polynomials exactly (moments ``∫_a^b τ^m dτ``) and reduce on uniform steps to
  the classical Adams–Bashforth coefficients (Hairer, Nørsett & Wanner, *Solving ODEs I*, §III.1).
* Convergence orders: the slope of log RMSE against log NFE on an exact Gaussian-mixture bed, against
  the exact probability-flow ODE solution from DOP853 (``reference_solution``), on log-SNR steps with
  a graded start (:func:`graded_logsnr`, which keeps the Euler warm-up step from masking the order).
* LMS of order 1 is Euler; ipndm_v is LMS; iPNDM is LMS on σ-uniform steps (and only there); LMS with
  ``lower_order_final=False`` is k-diffusion's ``sample_lms`` (a peer run on the same inputs).
* Steps into σ = 0 under float32 / float16 / bfloat16 networks: finite results, the registry's NFE, no
  evaluation at σ = 0, and the closed-form PF-ODE solution of a Gaussian ``N(μ, s²)``,
  ``x(σ) = μ + sqrt(s² + σ²)/sqrt(s² + σ0²) (x0 − μ)``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from benchmarks import peers
from diffsample import sample, solvers, steps
from diffsample.denoisers import Denoiser
from diffsample.errors import DiffsampleError
from diffsample.solvers._kernel.orders import planned_orders
from diffsample.solvers.multistep import lagrange_integrals, step_orders
from diffsample.testbeds import GaussianMixture, reference_solution, ring2d

F64 = torch.float64
SIGMA_MAX, SIGMA_MIN = 80.0, 0.05


def graded_logsnr(n: int, sigma_max: float = SIGMA_MAX) -> torch.Tensor:
    """``n`` steps σ_max → σ_min, log-SNR spacing reparametrised by the smoothstep ``u = 3w² − 2w³``.

    A multistep run starts with an Euler step whose local error is ``O(h_0²)``; on a plain grid that
    term alone makes the global error ``O(h²)`` asymptotically, whatever the order of the multistep
    formula (``test_deis.test_warm_up_limits_plain_grids_to_second_order`` measures it). Here
    ``du/dw = 0`` at the start, so the first steps are ``O(1/n²)`` and the warm-up error is ``O(1/n⁴)``:
    the measured slope is the order of the multistep formula itself (the textbook notion: a k-step
    method of order p with starting values accurate to ``O(h^p)``, Hairer, Nørsett & Wanner, §III.4).
    The grid is smooth in ``w``, so variable-step methods keep their order on it.
    """
    w = torch.linspace(0.0, 1.0, n + 1, dtype=F64)
    u = w * w * (3.0 - 2.0 * w)
    sigmas = torch.exp(math.log(sigma_max) + u * (math.log(SIGMA_MIN) - math.log(sigma_max)))
    sigmas[0], sigmas[-1] = sigma_max, SIGMA_MIN
    return sigmas


# Step counts in the asymptotic regime (local slopes settled) of each order on the bed below.
NS_BY_ORDER = {1: (32, 64, 128), 2: (64, 128, 256), 3: (128, 256, 512), 4: (128, 256, 512)}


@pytest.fixture(scope="module")
def bed() -> GaussianMixture:
    """A smooth 2-D mixture (all stds >= 0.3, diagonal): the asymptotic regime starts at modest NFE."""
    means = torch.tensor([[-1.0, 0.5], [1.2, -0.3], [0.2, 1.5]], dtype=F64)
    stds = torch.tensor([[0.3, 0.5], [0.45, 0.35], [0.6, 0.4]], dtype=F64)
    return GaussianMixture(means, stds, torch.tensor([0.3, 0.5, 0.2], dtype=F64))


def make_problem(bed: GaussianMixture, sigma_max: float) -> tuple[torch.Tensor, torch.Tensor]:
    x = sigma_max * torch.randn(8, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    return x, reference_solution(bed, x, sigma_max, SIGMA_MIN, rtol=1e-13, atol=1e-13, cache=False)


@pytest.fixture(scope="module")
def problem(bed) -> tuple[torch.Tensor, torch.Tensor]:
    """States at σ = 80 and their exact PF-ODE solutions at σ = 0.05."""
    return make_problem(bed, SIGMA_MAX)


@pytest.fixture(scope="module")
def problem10(bed) -> tuple[torch.Tensor, torch.Tensor]:
    """States at σ = 10 and their exact PF-ODE solutions at σ = 0.05."""
    return make_problem(bed, 10.0)


def errors(bed, problem, name: str, schedules, **options) -> tuple[list[int], list[float]]:
    """NFE and RMSE against the reference of ``name`` on each sigma array in ``schedules``."""
    x, ref = problem
    nfes, errs = [], []
    for sigmas in schedules:
        bed.reset_counter()
        out = solvers.get(name)(bed, x.clone(), sigmas, **options)
        nfes.append(bed.nfe)
        errs.append(float((out - ref).square().mean().sqrt()))
    return nfes, errs


def measured_order(nfes, errs) -> float:
    """Minus the least-squares slope of log error against log NFE."""
    return -float(np.polyfit(np.log(nfes), np.log(errs), 1)[0])


# ------------------------------------------------------------------------------------------ weights
@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("end", [0.7, 0.0, 2.5])
def test_lagrange_integrals_integrate_polynomials_exactly(k, end):
    nodes = [3.0, 4.1, 9.0, 30.0][:k]  # newest first, as an AB step into σ = end sees them
    weights = lagrange_integrals(nodes, nodes[0], end).tolist()
    for m in range(k):
        exact = (end ** (m + 1) - nodes[0] ** (m + 1)) / (m + 1)
        assert sum(w * t**m for w, t in zip(weights, nodes, strict=True)) == pytest.approx(exact, rel=1e-13, abs=1e-13)


def test_uniform_nodes_give_the_classical_adams_bashforth_coefficients():
    classical = [
        [Fraction(1)],
        [Fraction(3, 2), Fraction(-1, 2)],
        [Fraction(23, 12), Fraction(-16, 12), Fraction(5, 12)],
        [Fraction(55, 24), Fraction(-59, 24), Fraction(37, 24), Fraction(-9, 24)],
    ]
    for k, coefficients in enumerate(classical, start=1):
        h = -0.37  # a step down in σ of any size: the weights scale with it
        weights = lagrange_integrals([5.0 - j * h for j in range(k)], 5.0, 5.0 + h).tolist()
        assert weights == pytest.approx([h * float(c) for c in coefficients], rel=1e-13)


def test_weights_survive_a_tiny_last_step_after_large_ones():
    """The step σ_min → 0 after steps 10⁵ times larger: weights stay finite and exact on polynomials."""
    nodes = [1e-4, 2.0, 9.0, 30.0]
    weights = lagrange_integrals(nodes, nodes[0], 0.0).tolist()
    assert all(math.isfinite(w) for w in weights)
    assert weights[0] == pytest.approx(-1e-4, rel=1e-3)
    for m in range(4):
        assert sum(w * t**m for w, t in zip(weights, nodes, strict=True)) == pytest.approx(
            -((1e-4) ** (m + 1)) / (m + 1), rel=1e-10
        )


def test_step_orders_warm_up_and_cap_by_steps_left():
    assert step_orders(6, 4, False) == [1, 2, 3, 4, 4, 4]
    assert step_orders(6, 4, True) == [1, 2, 3, 3, 2, 1]
    assert step_orders(2, 3, False) == [1, 2]
    assert step_orders(1, 4, True) == [1]


def test_one_lower_order_final_rule_in_sigma_and_in_lambda():
    """σ-space methods lower only a last step into σ = 0 (and only with the option); λ-space methods also end
    runs under 15 steps at decreasing orders, and take the step into σ = 0 at first order whatever the option."""
    s = steps.karras(8, 0.002, 80.0).tolist()
    assert planned_orders(s, 4, True, in_lambda=False) == [1, 2, 3, 4, 4, 4, 4, 1]
    assert planned_orders(s, 4, False, in_lambda=False) == [1, 2, 3, 4, 4, 4, 4, 4]
    assert planned_orders(s, 3, True) == [1, 2, 3, 3, 3, 3, 2, 1]
    assert planned_orders(s, 3, False) == [1, 2, 3, 3, 3, 3, 3, 1]
    at_min = steps.karras(8, 0.002, 80.0, append_zero=False).tolist()
    assert planned_orders(at_min, 4, True, in_lambda=False) == [1, 2, 3, 4, 4, 4, 4]


# ------------------------------------------------------------------------------------- identities
@pytest.mark.parametrize("append_zero", [True, False])
def test_lms_of_order_one_is_euler(bed, append_zero):
    x = 80.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    sigmas = steps.karras(12, 0.002, 80.0, append_zero=append_zero)
    out = solvers.get("lms")(bed, x, sigmas, order=1)
    assert float((out - solvers.get("euler")(bed, x, sigmas)).abs().max()) <= 1e-12  # measured ≤ 4e-15


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_ipndm_v_is_lms(bed, order):
    x = 80.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    sigmas = steps.karras(9, 0.002, 80.0)
    assert torch.equal(
        solvers.get("ipndm_v")(bed, x, sigmas, order=order), solvers.get("lms")(bed, x, sigmas, order=order)
    )


def test_ipndm_is_lms_on_sigma_uniform_steps_only(bed):
    x = 10.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(5), dtype=F64)
    uniform = torch.linspace(10.0, 0.0, 13, dtype=F64)
    assert torch.allclose(
        solvers.get("ipndm")(bed, x, uniform), solvers.get("lms")(bed, x, uniform), rtol=0, atol=1e-12
    )
    karras = steps.karras(12, 0.05, 10.0)
    assert not torch.allclose(
        solvers.get("ipndm")(bed, x, karras), solvers.get("lms")(bed, x, karras), rtol=0, atol=1e-6
    )


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize(
    "sigmas",
    [steps.karras(10, 0.002, 80.0), steps.logsnr(25, 0.002, 80.0), steps.karras(12, 0.05, 80.0, append_zero=False)],
    ids=["karras-to-0", "logsnr-to-0", "karras-to-0.05"],
)
def test_lms_matches_k_diffusion(order, sigmas):
    """Peer check: k-diffusion's ``sample_lms`` (adaptive quadrature of the same Lagrange integrals,
    full order on the last step into 0, i.e. ``lower_order_final=False``) on the same inputs."""
    try:
        k_sampling = peers.load_k_sampling()
    except ImportError as exc:
        pytest.skip(f"k-diffusion unavailable: {exc}")
    bed = ring2d()
    x = 80.0 * torch.randn(8, 2, generator=torch.Generator().manual_seed(6), dtype=F64)
    theirs = k_sampling.sample_lms(bed, x.clone(), sigmas, disable=True, order=order)
    ours = solvers.get("lms")(bed, x.clone(), sigmas, order=order, lower_order_final=False)
    assert torch.allclose(ours, theirs, rtol=0, atol=1e-12)


# -------------------------------------------------------------------------------- convergence order
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_lms_convergence_order(bed, problem, order):
    ns = NS_BY_ORDER[order]
    nfes, errs = errors(bed, problem, "lms", [graded_logsnr(n) for n in ns], order=order)
    assert nfes == list(ns)
    assert measured_order(nfes, errs) == pytest.approx(order, abs=0.3), errs


def test_ipndm_is_fourth_order_on_sigma_uniform_steps(bed, problem10):
    """Uniform in σ (the variable its fixed weights assume); from σ = 10 so that uniform steps resolve σ ≈ 0.3.

    On a uniform grid the Euler warm-up step is ``10/n`` long at σ = 10, where the trajectory is
    nearly straight: its ``O(1/n²)`` contribution stays below the order-4 term at these n.
    """
    ns = (256, 512, 1024)
    nfes, errs = errors(bed, problem10, "ipndm", [torch.linspace(10.0, SIGMA_MIN, n + 1, dtype=F64) for n in ns])
    assert measured_order(nfes, errs) == pytest.approx(4, abs=0.3), errs


def test_ipndm_is_second_order_on_non_uniform_steps(bed, problem):
    """Fixed uniform-step weights on a smoothly varying grid: local error O(h²·Δh), so global order 2."""
    ns = NS_BY_ORDER[4]
    nfes, errs = errors(bed, problem, "ipndm", [graded_logsnr(n) for n in ns])
    assert measured_order(nfes, errs) == pytest.approx(2, abs=0.3), errs


# ------------------------------------------------------------------ steps into σ = 0, low precision
class CastGaussian(Denoiser):
    """The exact denoiser of N(μ, s² I), ``μ + s²/(s² + σ²)(x − μ)``, computed as a network of ``dtype``."""

    def __init__(self, mu: torch.Tensor, s: float, dtype: torch.dtype) -> None:
        super().__init__()
        self.mu, self.s, self.dtype = mu.to(dtype), s, dtype
        self.sigmas_seen: list[float] = []

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        self.sigmas_seen.append(float(sigma[0]))
        gain = (self.s**2 / (self.s**2 + sigma.to(F64) ** 2)).to(self.dtype)[:, None]
        return torch.lerp(self.mu, x.to(self.dtype), gain)


def gaussian_case(dtype: torch.dtype) -> tuple[CastGaussian, torch.Tensor, torch.Tensor]:
    """A Gaussian network of ``dtype``, a start at σ = 80 and the exact PF-ODE end point at σ = 0."""
    mu = torch.linspace(-0.8, 0.8, 16, dtype=F64)
    s = 0.5
    x = SIGMA_MAX * torch.randn(4, 16, generator=torch.Generator().manual_seed(7), dtype=F64)
    exact = mu + s / math.sqrt(s**2 + SIGMA_MAX**2) * (x - mu)
    return CastGaussian(mu, s, dtype), x, exact


STEP_COUNTS = (1, 2, 3, 5, 10, 100, 1000)
# Deviation allowed from the exact end point at 1000 steps: the network's own rounding dominates.
TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3, torch.bfloat16: 4e-2}
# ipndm_v is lms (test_ipndm_v_is_lms), so it needs no run of its own here.
CONFIGS = [("lms", {}), ("lms", {"order": 3, "lower_order_final": False}), ("ipndm", {})]


def check_steps_into_zero(name: str, options: dict, dtype: torch.dtype, schedule) -> None:
    """Finite float32 output, NFE = ``spec(name).nfe(n)``, no call at σ = 0, and (with the default
    first-order last step) the exact end point at 1000 steps. Without it a high-order extrapolation
    over the long last step amplifies the network's rounding (module docstring): finite, not exact."""
    net, x, exact = gaussian_case(dtype)
    for n in STEP_COUNTS:
        net.reset_counter()
        net.sigmas_seen.clear()
        out = sample(net, x.to(torch.float32), schedule(n, 0.002, SIGMA_MAX), solver=name, **options)
        assert out.dtype == torch.float32 and bool(torch.isfinite(out).all()), (name, n)
        assert net.nfe == solvers.spec(name).nfe(n), (name, n)
        assert min(net.sigmas_seen) > 0
        if n == 1000 and options.get("lower_order_final", True):
            assert float((out.to(F64) - exact).abs().max()) < TOLERANCE[dtype], (name, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("schedule", [steps.karras, steps.logsnr], ids=["karras", "logsnr"])
@pytest.mark.parametrize("name, options", CONFIGS, ids=[f"{n}-{o}" for n, o in CONFIGS])
def test_steps_into_zero_finite_nfe_and_exact(name, options, dtype, schedule):
    check_steps_into_zero(name, options, dtype, schedule)


@pytest.mark.parametrize("name", ["lms", "ipndm", "ipndm_v"])
def test_step_into_zero_returns_the_denoised_value_unless_asked_otherwise(name):
    """By default (``lower_order_final``) the step into σ = 0 is Euler, which lands exactly on D(x, σ_min)."""
    net, x, _ = gaussian_case(F64)
    seen = []
    sigmas = steps.karras(8, 0.002, 80.0)
    out = solvers.get(name)(net, x, sigmas, callback=lambda info: seen.append(info["denoised"]))
    assert len(seen) == 8 and torch.equal(out, seen[-1])
    full = solvers.get(name)(net, x, sigmas, lower_order_final=False)
    assert not torch.equal(full, seen[-1]) and torch.allclose(full, seen[-1], rtol=0, atol=1e-3)


def test_callback_sees_every_step_and_the_input_is_left_alone():
    net, x, _ = gaussian_case(F64)
    before = x.clone()
    seen = []
    sigmas = steps.logsnr(6, 0.002, 80.0)
    solvers.get("lms")(
        net, x, sigmas, callback=lambda info: seen.append((info["i"], info["sigma"], info["sigma_next"]))
    )
    assert torch.equal(x, before)
    assert seen == [(i, float(sigmas[i]), float(sigmas[i + 1])) for i in range(6)]


@pytest.mark.parametrize("name", ["lms", "ipndm", "ipndm_v"])
@pytest.mark.parametrize("order", [0, 5, 2.5, "4", None])
def test_bad_order_is_refused(name, order):
    net, x, _ = gaussian_case(F64)
    with pytest.raises(DiffsampleError, match="order must be an integer from 1 to 4"):
        solvers.get(name)(net, x, steps.karras(4, 0.002, 80.0), order=order)


def test_registry_entries():
    for name, order in (("lms", 4), ("ipndm", 2), ("ipndm_v", 4)):
        spec = solvers.spec(name)
        assert (spec.order, spec.evals_per_step, spec.saves_last_eval, spec.stochastic) == (order, 1, False, False)
        assert spec.nfe(10) == 10
