"""UniPC checked against answers known independently of the solver.

* convergence slopes against the closed-form flow of one Gaussian and against the DOP853 reference
  of a Gaussian mixture (``diffsample.testbeds``);
* UniC exact on polynomials in λ (reference integral by quadrature), and raising DDIM from order 1 to 2;
* diffusers' ``UniPCMultistepScheduler`` (a peer) on the same inputs;
* finite results from 1 to 1000 steps into σ = 0 under low-precision networks, NFE = steps.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch

import diffsample
from diffsample import steps
from diffsample.denoisers import CallCounter, Denoiser, FunctionDenoiser
from diffsample.errors import DiffsampleError, SigmaError
from diffsample.solvers import available, get, spec
from diffsample.solvers.euler_heun import euler
from diffsample.solvers.unipc import unic_correct, unipc
from diffsample.testbeds import GaussianMixture, reference_solution

F64 = torch.float64
SIGMA_MAX, SIGMA_MIN = 10.0, 0.05

# ---------------------------------------------------------------- one Gaussian: exact denoiser and flow
from exact_gaussian import gaussian, gaussian_flow  # noqa: E402


def span(n: int) -> torch.Tensor:
    return steps.logsnr(n + 1, SIGMA_MIN, SIGMA_MAX, append_zero=False)  # n steps, 10 → 0.05


def slope(ns: list[int], errors: list[float]) -> float:
    """Order of convergence: minus the fitted slope of log error against log steps."""
    return float(-np.polyfit(np.log(ns), np.log(errors), 1)[0])


def sig(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """σ as a float64 ``(B,)`` tensor, as the solvers pass it."""
    return torch.full((x.shape[0],), sigma, dtype=F64)


def rmse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).square().mean().sqrt())


@pytest.fixture(scope="module")
def start() -> torch.Tensor:
    return SIGMA_MAX * torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=F64)


# (predict, order, corrector, variant, expected slope). UniPC-3 without the corrector starts with an
# Euler step whose O(h²) local error caps the global order at 2 (module docstring, "Order planning").
GAUSSIAN_CASES = [
    ("data", 1, False, "bh2", 1.0),
    ("data", 1, True, "bh2", 2.0),
    ("data", 1, True, "bh1", 2.0),
    ("data", 2, False, "bh2", 2.0),
    ("data", 2, False, "bh1", 2.0),
    ("data", 2, True, "bh2", 3.0),
    ("data", 3, True, "bh2", 4.0),
    ("data", 3, False, "bh2", 2.0),
    ("noise", 1, False, "bh2", 1.0),
    ("noise", 1, True, "bh2", 2.0),
    ("noise", 2, False, "bh2", 2.0),
    ("noise", 2, True, "bh2", 3.0),
    ("noise", 2, True, "bh1", 3.0),
]


@pytest.mark.parametrize("predict, order, corrector, variant, expected", GAUSSIAN_CASES)
def test_convergence_order_on_a_gaussian(start, predict, order, corrector, variant, expected):
    ns = [64, 128, 256]
    errors = [
        rmse(
            unipc(
                gaussian(), start.clone(), span(n), order=order, corrector=corrector, variant=variant, predict=predict
            ),
            gaussian_flow(start, SIGMA_MAX, SIGMA_MIN),
        )
        for n in ns
    ]
    assert abs(slope(ns, errors) - expected) < 0.3, (errors, slope(ns, errors))


# ---------------------------------------------------------------- a smooth Gaussian mixture (test bed)
@pytest.fixture(scope="module")
def mixture():
    g = torch.Generator().manual_seed(1)
    means = torch.randn(4, 3, generator=g, dtype=F64)
    stds = 0.3 + 0.3 * torch.rand(4, 3, generator=g, dtype=F64)
    bed = GaussianMixture(means, stds, torch.tensor([1.0, 2.0, 1.5, 1.0]), name="smooth4")
    x = SIGMA_MAX * torch.randn(16, 3, generator=g, dtype=F64)
    return bed, x, reference_solution(bed, x, SIGMA_MAX, SIGMA_MIN, cache=False)


@pytest.mark.parametrize(
    "order, corrector, expected, ns",
    [
        (1, False, 1.0, [16, 23, 32, 45]),
        (1, True, 2.0, [16, 23, 32, 45]),
        (2, False, 2.0, [16, 23, 32, 45]),
        (2, True, 3.0, [16, 23, 32, 45]),
        (3, True, 4.0, [45, 64, 90, 128]),
    ],
)
def test_convergence_order_on_a_mixture(mixture, order, corrector, expected, ns):
    bed, x, ref = mixture
    errors = [rmse(unipc(bed, x.clone(), span(n), order=order, corrector=corrector), ref) for n in ns]
    assert abs(slope(ns, errors) - expected) < 0.3, (errors, slope(ns, errors))


def test_unic_raises_ddim_from_first_to_second_order(mixture):
    """UniC-1 after DDIM (= UniPC-1), UniC-2 after DDIM (``predictor="ddim"``), and :func:`unic_correct`
    after a hand-written Euler step: all second order; DDIM alone (the registry's ``euler``) first order."""
    bed, x, ref = mixture
    ns = [16, 23, 32, 45]

    def euler_plus_unic(n: int) -> torch.Tensor:
        s = span(n).tolist()
        y, d = x.clone(), bed(x, sig(x, s[0]))
        for i in range(n):
            y_pred = torch.lerp(d, y, s[i + 1] / s[i])  # Euler = DDIM: D + (σ'/σ)(x − D)
            if i == n - 1:
                return y_pred
            d_next = bed(y_pred, sig(x, s[i + 1]))
            y, d = unic_correct(y, [d], s[i : i + 1], d_next, s[i + 1]), d_next
        raise AssertionError("unreachable")

    runs = {
        "ddim": lambda n: euler(bed, x.clone(), span(n)),
        "ddim+unic1": lambda n: unipc(bed, x.clone(), span(n), order=1),
        "ddim+unic2": lambda n: unipc(bed, x.clone(), span(n), order=2, predictor="ddim"),
        "euler+unic_correct": euler_plus_unic,
    }
    slopes = {name: slope(ns, [rmse(run(n), ref) for n in ns]) for name, run in runs.items()}
    assert abs(slopes["ddim"] - 1) < 0.3, slopes
    for name in ("ddim+unic1", "ddim+unic2", "euler+unic_correct"):
        assert abs(slopes[name] - 2) < 0.3, slopes


# ---------------------------------------------------------------- UniC weights: exact on polynomials
@pytest.mark.parametrize("p", [2, 3])
@pytest.mark.parametrize("h", [1e-3, 0.4, 2.5])
def test_unic_correct_is_exact_for_polynomials_in_lambda(p, h):
    """D(λ) a polynomial of degree p, independent of x: UniC-p interpolates it on p + 1 points, so the
    corrected state equals ``e^{−h} x_s + ∫_0^h e^{−(h−τ)} D(λ_s + τ) dτ`` (by quadrature)."""
    quad = pytest.importorskip("scipy.integrate").quad
    rng = np.random.default_rng(p)
    coef = rng.normal(size=p + 1)
    lam_s = 0.3
    lams = [lam_s - 0.7 * h * m for m in range(p - 1, 0, -1)] + [lam_s]  # earlier points, uneven offsets
    lams[0] -= 0.2 * h * (p > 2)
    lam_t = lam_s + h
    poly = np.polynomial.Polynomial(coef)
    vec = torch.tensor([1.0, -2.0], dtype=F64)[None]
    d_at = [float(poly(v)) * vec for v in lams]
    x_s = torch.tensor([[0.7, 0.1]], dtype=F64)
    out = unic_correct(x_s, d_at, [math.exp(-v) for v in lams], float(poly(lam_t)) * vec, math.exp(-lam_t))
    integral = quad(lambda tau: math.exp(-(h - tau)) * poly(lam_s + tau), 0.0, h, epsabs=0.0, epsrel=1e-13)[0]
    exact = math.exp(-h) * x_s + integral * vec
    torch.testing.assert_close(out, exact, rtol=1e-10, atol=1e-12 * (1 + h))


# ---------------------------------------------------------------- a peer: diffusers' scheduler
def _diffusers_unipc(bed, x, n, order, variant, predict_x0, lower_order_final, final, disable):
    """diffusers' UniPC on the VP form of the same problem: x_t = α x_σ, α = 1/sqrt(1 + σ²), x0-model."""
    from diffusers import UniPCMultistepScheduler

    sch = UniPCMultistepScheduler(
        num_train_timesteps=1000,
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        prediction_type="sample",
        solver_order=order,
        solver_type=variant,
        predict_x0=predict_x0,
        lower_order_final=lower_order_final,
        final_sigmas_type=final,
        disable_corrector=list(disable),
    )
    sch.set_timesteps(n)
    sig = sch.sigmas.to(F64)
    xt = x / (1 + sig[0] ** 2).sqrt()
    for i, t in enumerate(sch.timesteps):
        xt = sch.step(bed.denoise(xt * (1 + sig[i] ** 2).sqrt(), sig[i].expand(x.shape[0])), t, xt).prev_sample
    return xt * (1 + sig[-1] ** 2).sqrt(), sig


@pytest.mark.parametrize("predict", ["data", "noise"])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("n, disable", [(7, ()), (12, (1, 4))])
def test_matches_diffusers_unipc(mixture, predict, variant, order, n, disable):
    """Same sigmas (diffusers' SD-style schedule, ending at its σ_min), same exact x0-model: agreement to
    diffusers' float32 coefficient arithmetic. Below 15 steps both lower the final orders (diffusers' UniPC
    does at any length when asked; ours follows the library's one ``lower_order_final`` rule)."""
    pytest.importorskip("diffusers")
    bed, _, _ = mixture
    x = 14.6 * torch.randn(6, 3, generator=torch.Generator().manual_seed(n + order), dtype=F64)
    ref, sig = _diffusers_unipc(bed, x, n, order, variant, predict == "data", n < 15, "sigma_min", disable)
    out = unipc(bed, x, sig, order=order, variant=variant, predict=predict, disable_corrector=disable)
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-6)


def test_matches_diffusers_into_zero_where_it_is_finite(mixture):
    """Into σ = 0 diffusers is finite for bh2 data prediction with lower_order_final (first order there)."""
    pytest.importorskip("diffusers")
    bed, _, _ = mixture
    x = 14.6 * torch.randn(6, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    ref, sig = _diffusers_unipc(bed, x, 8, 3, "bh2", True, True, "zero", ())
    assert sig[-1] == 0
    torch.testing.assert_close(unipc(bed, x, sig, order=3), ref, rtol=0, atol=2e-6)


@pytest.mark.parametrize("name, order, variant", [("unipc_3m", 3, "bh2"), ("unipc_bh1", 2, "bh1")])
def test_named_configurations_are_diffusers_unipc_with_that_order_and_variant(mixture, name, order, variant):
    """``unipc_3m`` is diffusers' ``solver_order=3``, ``unipc_bh1`` its ``solver_type="bh1"`` (order 2), run through
    the registry like any solver, and equal to ``unipc`` with those options; the registry counts one call a step."""
    pytest.importorskip("diffusers")
    bed, _, _ = mixture
    x = 14.6 * torch.randn(6, 3, generator=torch.Generator().manual_seed(11), dtype=F64)
    ref, sig = _diffusers_unipc(bed, x, 10, order, variant, True, True, "sigma_min", ())
    den = CallCounter(bed)
    out = diffsample.sample(den, x, sig, solver=name)
    torch.testing.assert_close(out, ref, rtol=0, atol=2e-6)
    torch.testing.assert_close(out, unipc(bed, x, sig, order=order, variant=variant), rtol=0, atol=0)
    assert den.nfe == spec(name).nfe(10, ends_at_zero=False) == 10


def test_a_named_configuration_refuses_its_fixed_option_again():
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    with pytest.raises(DiffsampleError, match="unipc_3m is unipc with .*order"):
        diffsample.sample(gaussian(), x * 10.0, steps.karras(6, 0.05, 10.0), solver="unipc_3m", order=2)
    # its signature is unipc's less the fixed option, so a plan's options are checked against it when loaded
    assert "order" not in inspect.signature(get("unipc_3m")).parameters
    assert {"variant", "corrector"} <= set(inspect.signature(get("unipc_3m")).parameters)
    # other options pass through: bh1 of order 3 is unipc_bh1 with order=3
    sig = steps.karras(6, 0.05, 10.0)
    torch.testing.assert_close(
        diffsample.sample(gaussian(), x * 10.0, sig, solver="unipc_bh1", order=3),
        unipc(gaussian(), x * 10.0, sig, order=3, variant="bh1"),
        rtol=0,
        atol=0,
    )


# ---------------------------------------------------------------- σ = 0, low precision, NFE
def two_bumps(dtype: torch.dtype) -> Denoiser:
    """Exact posterior mean of ½N(−1, 0.3²) + ½N(1, 0.3²) per coordinate, behind a ``dtype`` network."""

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        x64 = x.to(dtype).to(F64)
        v = 0.09 + sigma.to(dtype).to(F64)[:, None] ** 2
        logit = 2.0 * x64 / v  # log N(x; 1, v) − log N(x; −1, v)
        mean = torch.tanh(logit / 2) + 0.09 / v * (x64 - torch.tanh(logit / 2))
        return mean.to(dtype)

    return FunctionDenoiser(fn)


FINITE_CASES = [
    {},
    {"variant": "bh1"},
    {"variant": "bh1", "order": 3, "lower_order_final": False},
    {"predict": "noise", "order": 3},
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_finite_from_one_to_a_thousand_steps_into_zero(dtype):
    """No NaN/Inf and NFE = steps for 1–1000 steps into σ = 0 (Karras and log-SNR, 80 → 0.002 → 0)."""
    x = 80.0 * torch.randn(4, 2, generator=torch.Generator().manual_seed(2))
    for schedule in (steps.karras, steps.logsnr):
        for n in (1, 2, 3, 5, 10, 100, 1000):
            sigmas = schedule(n, 0.002, 80.0)
            for kw in FINITE_CASES:
                if n == 1000 and kw.get("order") == 3:
                    continue
                den = two_bumps(dtype)
                out = diffsample.sample(den, x, sigmas, solver="unipc", **kw)
                assert torch.isfinite(out).all(), (dtype, schedule.__name__, n, kw)
                assert den.nfe == spec("unipc").nfe(n) == n
                if not kw:  # the defaults also land near the data (in [−1, 1] ± a few stds of 0.3)
                    assert out.abs().max() < 3.0, (dtype, schedule.__name__, n)


def test_step_into_zero_returns_the_last_denoised_value():
    """Data prediction: the step into σ = 0 is D at the last evaluation point, exactly (the h → ∞ limit)."""
    den = gaussian()
    seen: list[dict] = []
    x = 20.0 * torch.randn(5, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
    out = unipc(den, x, steps.karras(6, 0.002, 20.0), order=3, lower_order_final=False, callback=seen.append)
    last = seen[-1]
    assert last["sigma_next"] == 0
    torch.testing.assert_close(out, den(last["x"], sig(x, last["sigma"])), rtol=0, atol=0)


def test_corrector_needs_no_extra_model_calls():
    x = 10.0 * torch.randn(5, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    sigmas = steps.logsnr(12, 0.01, 10.0)
    outs = {}
    for corrector in (True, False):
        den, seen = gaussian(), []
        outs[corrector] = unipc(den, x, sigmas, order=3, corrector=corrector, callback=seen.append)
        assert den.nfe == len(sigmas) - 1 == len(seen)
        for rec in seen:  # the callback's x is where D was evaluated
            torch.testing.assert_close(rec["denoised"], gaussian()(rec["x"], sig(x, rec["sigma"])), rtol=0, atol=0)
    assert rmse(outs[True], outs[False]) > 1e-6  # the corrector did something


def test_disable_corrector_by_step_index():
    x = 10.0 * torch.randn(5, 3, generator=torch.Generator().manual_seed(6), dtype=F64)
    sigmas = span(8)
    off = unipc(gaussian(), x, sigmas, corrector=False)
    torch.testing.assert_close(unipc(gaussian(), x, sigmas, disable_corrector=range(8)), off, rtol=0, atol=0)
    partly = unipc(gaussian(), x, sigmas, disable_corrector=[0, 1])
    assert rmse(partly, off) > 1e-8 and rmse(partly, unipc(gaussian(), x, sigmas)) > 1e-8


def test_unip2_bh2_is_dpm_solver_pp_2m():
    """UniP-2 with B(h) = e^h − 1 and weight 1/2 is DPM-Solver++(2M) (when that solver is registered)."""
    if "dpmpp_2m" not in available():
        pytest.skip("dpmpp_2m is not registered")
    x = 20.0 * torch.randn(5, 3, generator=torch.Generator().manual_seed(7), dtype=F64)
    sigmas = steps.karras(16, 0.002, 20.0)
    ref = get("dpmpp_2m")(gaussian(), x, sigmas)
    torch.testing.assert_close(unipc(gaussian(), x, sigmas, order=2, corrector=False), ref, rtol=1e-12, atol=1e-12)


def test_bad_options_are_rejected():
    x, sigmas = torch.zeros(1, 3, dtype=F64), span(4)
    for kw in ({"order": 0}, {"order": 4}, {"order": 1.5}, {"variant": "bh3"}, {"predict": "v"}, {"predictor": "heun"}):
        with pytest.raises(DiffsampleError):
            unipc(gaussian(), x, sigmas, **kw)
    d = torch.zeros(1, 3, dtype=F64)
    with pytest.raises(SigmaError):
        unic_correct(x, [d], [1.0], d, 0.0)
    with pytest.raises(DiffsampleError):
        unic_correct(x, [d, d], [1.0], d, 0.5)
