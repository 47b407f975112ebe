"""The core contracts: step schedules, seeded noise, ``sample`` and the Euler/Heun solvers.

Reference values come from outside the code under test: EDM's eq. 5 evaluated in numpy, the
geometric spacing of log-SNR steps, and the exact probability-flow ODE solution for a Gaussian
``N(μ, s²)``, ``x(σ) = μ + sqrt(s² + σ²)/sqrt(s² + σ0²) (x0 − μ)``.
"""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

import diffsample
from diffsample import contracts, noise, solvers, steps
from diffsample.denoisers import CountingDenoiser, Denoiser, FunctionDenoiser
from diffsample.errors import BudgetError, DiffsampleError, NonFiniteError, ShapeError, SigmaError, UnknownNameError

# ---------------------------------------------------------------------------------------------- steps


@pytest.mark.parametrize(
    ("n", "smin", "smax", "rho"), [(10, 0.002, 80.0, 7.0), (25, 0.03, 14.6, 3.0), (2, 0.1, 1.0, 1.0)]
)
def test_karras_matches_edm_eq5(n, smin, smax, rho):
    i = np.arange(n)
    expected = (smax ** (1 / rho) + i / (n - 1) * (smin ** (1 / rho) - smax ** (1 / rho))) ** rho
    s = steps.karras(n, smin, smax, rho)
    assert s.dtype == torch.float64 and s.dim() == 1 and len(s) == n + 1
    assert s[-1] == 0
    np.testing.assert_allclose(s[:-1].numpy(), expected, rtol=1e-12)
    assert s[0] == smax and s[-2] == smin
    s2 = steps.karras(n, smin, smax, rho, append_zero=False)
    assert len(s2) == n and s2[-1] == smin and s2.dtype == torch.float64
    torch.testing.assert_close(s2, s[:-1], rtol=0, atol=0)


def test_karras_rho_one_is_uniform_in_sigma():
    np.testing.assert_allclose(steps.karras(5, 1.0, 5.0, rho=1.0)[:-1].numpy(), [5, 4, 3, 2, 1], rtol=1e-12)


@pytest.mark.parametrize(("n", "smin", "smax"), [(12, 0.002, 80.0), (3, 0.5, 2.0)])
def test_logsnr_is_geometric(n, smin, smax):
    s = steps.logsnr(n, smin, smax)
    assert s.dtype == torch.float64 and len(s) == n + 1 and s[-1] == 0
    levels = s[:-1].numpy()
    ratios = levels[1:] / levels[:-1]
    np.testing.assert_allclose(ratios, (smin / smax) ** (1 / (n - 1)), rtol=1e-12)
    assert levels[0] == smax and levels[-1] == smin
    s2 = steps.logsnr(n, smin, smax, append_zero=False)
    assert len(s2) == n and s2[-1] == smin


def test_validate_accepts_user_arrays_as_float64():
    out = steps.validate([3, 2.5, 1, 0])
    assert out.dtype == torch.float64 and out.tolist() == [3.0, 2.5, 1.0, 0.0]
    assert steps.validate(np.array([1.0, 0.5], dtype=np.float32)).dtype == torch.float64


@pytest.mark.parametrize(
    ("sigmas", "pattern"),
    [
        ([3.0, 2.0, 2.0, 0.0], r"sigmas\[1\].*sigmas\[2\]"),
        ([3.0, 2.0, 1.0, 1.5, 0.0], r"strictly decreasing.*sigmas\[2\]"),
        ([3.0, 2.0, -1.0], r"sigmas\[2\] = -1.*negative"),
        ([3.0, float("nan"), 0.0], r"sigmas\[1\] = nan.*not finite"),
        ([3.0, 2.0, float("inf")], r"sigmas\[2\] = inf.*not finite"),
        ([1.0], r"at least 2"),
        ([], r"at least 2"),
        ([[2.0, 1.0], [1.0, 0.0]], r"1-D"),
    ],
)
def test_validate_errors_name_the_problem(sigmas, pattern):
    with pytest.raises(SigmaError, match=pattern):
        steps.validate(sigmas)


def test_schedule_constructors_refuse_bad_spans():
    with pytest.raises(SigmaError):
        steps.karras(10, 1.0, 0.5)
    with pytest.raises(SigmaError):
        steps.logsnr(0, 0.1, 1.0)
    with pytest.raises(SigmaError):
        steps.karras(10, 0.1, 1.0, rho=0)


# ---------------------------------------------------------------------------------------------- noise


@pytest.mark.parametrize("index", [0, 5, 63])
def test_seeded_sample_is_independent_of_batch_size(index):
    shape = (3, 4)
    big = noise.seeded(1234).standard_normal((64, *shape))
    small = noise.seeded(1234).standard_normal((index + 1, *shape))
    assert torch.equal(big[index], small[index])
    seeds = list(range(100, 164))
    big_list = noise.seeded(seeds).standard_normal((64, *shape))
    one = noise.seeded([seeds[index]]).standard_normal((1, *shape))
    assert torch.equal(big_list[index], one[0])


def test_seeded_streams_continue_and_differ_between_calls():
    big, small = noise.seeded(7), noise.seeded(7)
    first_big, first_small = big(torch.zeros(64, 8)), small(torch.zeros(1, 8))
    second_big, second_small = big(torch.zeros(64, 8)), small(torch.zeros(1, 8))
    assert not torch.equal(first_small, second_small)
    assert torch.equal(first_big[0], first_small[0]) and torch.equal(second_big[0], second_small[0])
    assert not torch.equal(first_big[0], first_big[1])  # rows are different streams
    assert not torch.equal(noise.seeded(7)(torch.zeros(1, 8)), noise.seeded(8)(torch.zeros(1, 8)))


def test_seeded_noise_leaves_the_global_rng_alone_and_is_standard_normal():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    z = noise.seeded(3).standard_normal((4000, 25))
    assert torch.equal(torch.get_rng_state(), state)
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01


def test_initial_is_sigma_times_z_and_follows_dtype():
    z = noise.seeded(11).standard_normal((4, 3))
    x = noise.seeded(11).initial((4, 3), 80.0)
    assert torch.equal(x, 80.0 * z)
    x16 = noise.seeded(11).initial((4, 3), 2.0, dtype=torch.float16)
    assert x16.dtype == torch.float16
    assert noise.seeded(11)(torch.zeros(2, 3, dtype=torch.float64)).dtype == torch.float64


def test_seed_list_shorter_than_batch_is_refused():
    with pytest.raises(ShapeError, match="seeds"):
        noise.seeded([1, 2]).standard_normal((3, 2))


# ---------------------------------------------------------------------------------------------- sample


def gaussian_denoiser(mu: float, s: float):
    """Exact posterior mean of N(mu, s²) per coordinate."""

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        sig = sigma.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return mu + s**2 / (s**2 + sig**2) * (x - mu)

    return fn


def exact_pf_ode(x0: torch.Tensor, sigma0: float, sigma1: float, mu: float, s: float) -> torch.Tensor:
    return mu + math.sqrt((s**2 + sigma1**2) / (s**2 + sigma0**2)) * (x0 - mu)


def test_unknown_solver_lists_the_valid_names():
    with pytest.raises(UnknownNameError) as err:
        diffsample.sample(lambda x, s: x, torch.zeros(1, 2), steps.karras(3, 0.1, 1.0), solver="eulr")
    msg = str(err.value)
    assert "'eulr'" in msg
    for name in solvers.available():
        assert name in msg
    assert {"euler", "heun"} <= set(solvers.available())
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("schedule", ["karras", "logsnr"])
def test_nan_at_a_later_step_names_that_step_and_sigma(dtype, schedule):
    sigmas = getattr(steps, schedule)(12, 0.02, 80.0)
    for bad_step in range(1, 12):
        threshold = float(sigmas[bad_step])

        def model(x, sigma, threshold=threshold):
            out = 0.5 * x
            return out * float("nan") if float(sigma[0]) <= threshold * (1 + 1e-6) else out

        with pytest.raises(NonFiniteError) as err:
            diffsample.sample(model, torch.ones(2, 3, dtype=dtype), sigmas, solver="euler")
        msg = str(err.value)
        assert f"step {bad_step} " in msg, msg
        assert f"sigma={threshold:.6g}" in msg or f"sigma={float(torch.tensor(threshold, dtype=dtype)):.6g}" in msg


def test_nan_error_is_raised_before_the_state_is_corrupted_silently():
    with pytest.raises(NonFiniteError, match=r"step 0 .*batch indices \[1\]"):
        diffsample.sample(
            lambda x, s: x / torch.tensor([1.0, 0.0])[:, None] * 0, torch.ones(2, 2), steps.karras(3, 0.1, 1.0)
        )
    # with the check off the NaN passes through
    out = diffsample.sample(
        lambda x, s: x * float("nan"), torch.ones(1, 2), steps.karras(3, 0.1, 1.0), check_finite=False
    )
    assert torch.isnan(out).all()


def test_shape_mismatches_raise_shape_error():
    sigmas = steps.karras(4, 0.1, 1.0)
    with pytest.raises(ShapeError, match=r"\(2, 1\).*\(2, 3\)"):
        diffsample.sample(lambda x, s: x[:, :1], torch.ones(2, 3), sigmas)
    d = FunctionDenoiser(lambda x, s: x)
    with pytest.raises(ShapeError, match="sigma"):
        d(torch.ones(4, 3), torch.ones(3))
    with pytest.raises(ShapeError):
        d(torch.ones(4, 3), torch.ones(4, 1))
    with pytest.raises(ShapeError):
        diffsample.sample(lambda x, s: x, np.ones((2, 3)), sigmas)
    with pytest.raises(ShapeError):
        diffsample.sample(lambda x, s: x, torch.ones(2, 3, dtype=torch.int64), sigmas)
    with pytest.raises(SigmaError):
        diffsample.sample(lambda x, s: x, torch.ones(2, 3), None)


def test_denoiser_broadcasts_scalar_sigma_to_batch():
    seen = []
    d = FunctionDenoiser(lambda x, s: seen.append(s) or x)
    d(torch.ones(3, 2), 0.5)
    d(torch.ones(3, 2), torch.tensor(0.5))
    d(torch.ones(3, 2), torch.tensor([0.5]))
    assert all(s.shape == (3,) and bool((s == 0.5).all()) for s in seen)


@pytest.mark.parametrize("model_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_low_precision_models_give_float32_finite_output(model_dtype, solver):
    exact = gaussian_denoiser(0.3, 0.5)

    def model(x, sigma):
        return exact(x.to(model_dtype), sigma.to(model_dtype)).to(model_dtype)

    sigmas = steps.karras(10, 0.01, 80.0)
    x0 = noise.seeded(0).initial((4, 8), 80.0, dtype=model_dtype)
    out = diffsample.sample(model, x0, sigmas, solver=solver)
    assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    ref = diffsample.sample(exact, x0.float(), sigmas, solver=solver)
    torch.testing.assert_close(out, ref, rtol=0, atol=0.05)


@pytest.mark.parametrize("model_dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize(("name", "options"), [("dpm_solver_2m", {}), ("heun", {}), ("euler_ancestral", {"eta": 1.0})])
def test_a_solver_function_runs_exactly_like_its_registered_name(model_dtype, name, options):
    """``sample(solver=fn)`` applies the same validation, float32 work dtype and NaN guard as the name."""
    exact = gaussian_denoiser(0.3, 0.5)

    def model(x, sigma):
        return exact(x.to(model_dtype), sigma.to(model_dtype)).to(model_dtype)

    sigmas = steps.karras(8, 0.01, 80.0)
    x0 = noise.seeded(3).initial((4, 8), 80.0, dtype=model_dtype)
    by_name = diffsample.sample(model, x0, sigmas, solver=name, noise=noise.seeded(9), **options)
    by_function = diffsample.sample(model, x0, sigmas, solver=solvers.get(name), noise=noise.seeded(9), **options)
    assert by_function.dtype == torch.float32 and torch.equal(by_function, by_name)


def test_a_solver_function_gets_the_nan_guard_and_validation():
    seen = []

    def my_euler(denoiser, x, sigmas, *, noise=None, callback=None):
        for s, s_next in zip(sigmas[:-1].tolist(), sigmas[1:].tolist(), strict=True):
            d = denoiser(x, torch.full((x.shape[0],), s, dtype=x.dtype))
            seen.append(d.dtype)
            x = d + s_next / s * (x - d)
        return x

    sigmas = steps.karras(3, 0.1, 1.0)
    out = diffsample.sample(
        lambda x, s: (0.5 * x).half(), torch.ones(2, 2, dtype=torch.float16), sigmas, solver=my_euler
    )
    assert out.dtype == torch.float32 and set(seen) == {torch.float32}
    with pytest.raises(NonFiniteError, match="step 0"):
        diffsample.sample(lambda x, s: x * float("nan"), torch.ones(1, 2), sigmas, solver=my_euler)

    def overflowing(denoiser, x, sigmas, *, noise=None, callback=None):
        return my_euler(denoiser, x, sigmas) * float("inf")

    with pytest.raises(NonFiniteError, match="'overflowing'"):
        diffsample.sample(lambda x, s: x, torch.ones(1, 2), sigmas, solver=overflowing)
    with pytest.raises(SigmaError):
        diffsample.sample(lambda x, s: x, torch.ones(1, 2), torch.tensor([1.0, 2.0]), solver=my_euler)
    with pytest.raises(DiffsampleError, match="solver function"):
        diffsample.sample(lambda x, s: x, torch.ones(1, 2), sigmas, solver=3)


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_final_step_to_zero_returns_the_denoised_value_exactly(solver):
    seen = []
    exact = gaussian_denoiser(1.0, 0.4)
    sigmas = steps.karras(6, 0.05, 10.0)
    x0 = noise.seeded(2).initial((3, 5), 10.0)
    out = diffsample.sample(exact, x0, sigmas, solver=solver, callback=seen.append)
    assert len(seen) == 6 and seen[-1]["sigma_next"] == 0 and seen[-1]["i"] == 5
    assert torch.equal(out, seen[-1]["denoised"])


@pytest.mark.parametrize("n", [1, 2, 7, 20])
def test_nfe_counts(n):
    sigmas = steps.karras(n, 0.05, 10.0)
    sigmas_no_zero = steps.karras(n + 1, 0.05, 10.0, append_zero=False)  # also n steps
    batch_calls = []

    def model(x, sigma):
        batch_calls.append(x.shape[0])
        return 0.9 * x

    for solver, expected_zero, expected_no_zero in [("euler", n, n), ("heun", 2 * n - 1, 2 * n)]:
        for sig, expected in [(sigmas, expected_zero), (sigmas_no_zero, expected_no_zero)]:
            d = FunctionDenoiser(model)
            batch_calls.clear()
            diffsample.sample(d, torch.ones(3, 2), sig, solver=solver)
            assert d.nfe == expected == len(batch_calls) and d.calls == expected
            assert solvers.spec(solver).nfe(n, ends_at_zero=bool(sig[-1] == 0)) == expected


@pytest.mark.parametrize("solver", ["euler", "heun"])
@pytest.mark.parametrize("ends_at_zero", [True, False])
def test_steps_for_nfe_never_exceeds_the_budget(solver, ends_at_zero):
    spec = solvers.spec(solver)
    for budget in range(1, 41):
        try:
            n = spec.steps_for_nfe(budget, ends_at_zero)
        except BudgetError:
            assert solver == "heun" and not ends_at_zero and budget == 1
            continue
        for steps_run, within in [(n, True), (n + 1, False)]:
            sigmas = steps.karras(steps_run if ends_at_zero else steps_run + 1, 0.05, 10.0, append_zero=ends_at_zero)
            d = FunctionDenoiser(lambda x, s: 0.5 * x)
            diffsample.sample(d, torch.ones(1, 2), sigmas, solver=solver)
            assert (d.nfe <= budget) is within, (solver, budget, steps_run, d.nfe)


@pytest.mark.parametrize("budget", [0, -3, 2.5])
def test_steps_for_nfe_refuses_impossible_budgets(budget):
    with pytest.raises(BudgetError):
        solvers.spec("heun").steps_for_nfe(budget)


def test_heun_budget_of_one_without_final_zero_is_impossible():
    with pytest.raises(BudgetError, match="at least 2"):
        solvers.spec("heun").steps_for_nfe(1, ends_at_zero=False)
    assert solvers.spec("heun").steps_for_nfe(1) == 1


def test_denoiser_counter_and_as_denoiser():
    d = diffsample.as_denoiser(lambda x, s: x)
    assert isinstance(d, Denoiser) and diffsample.as_denoiser(d) is d
    d(torch.ones(2, 1), 1.0)
    d(torch.ones(2, 1), 1.0)
    assert d.nfe == 2
    d.reset_counter()
    assert d.nfe == 0 and d.calls == 0
    with pytest.raises(TypeError):
        diffsample.as_denoiser(3)


def test_the_contracts_are_protocols_that_plain_functions_satisfy():
    def plain(x, sigma):
        return x

    assert isinstance(plain, contracts.Denoiser) and not isinstance(3, contracts.Denoiser)
    assert isinstance(noise.seeded(0), contracts.NoiseSource) and noise.NoiseSource is contracts.NoiseSource
    counted = diffsample.as_denoiser(plain)
    assert isinstance(counted, contracts.Denoiser) and isinstance(counted, CountingDenoiser)
    # the names users subclass stay the counting base class
    assert diffsample.Denoiser is Denoiser is CountingDenoiser


def test_import_diffsample_imports_no_optional_dependency_and_submodules_are_lazy_attributes():
    code = (
        "import sys, diffsample\n"
        "early = [m for m in ('scipy', 'sklearn', 'diffusers', 'k_diffusion', 'matplotlib', 'diffsample.tuning',"
        " 'diffsample.testbeds', 'diffsample.cli') if m in sys.modules]\n"
        "assert not early, early\n"
        "assert {'testbeds', 'tuning', 'models', 'integrations', 'transforms'} <= set(dir(diffsample))\n"
        "bed = diffsample.testbeds.get_bed('ring2d')\n"
        "assert callable(bed) and diffsample.tuning.Plan is diffsample.Plan and callable(diffsample.tune)\n"
        "assert diffsample.transforms.cfg is diffsample.cfg\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


# ------------------------------------------------------------------- accuracy against the exact ODE


@pytest.mark.parametrize("target", [0.1, 0.0])
def test_euler_is_exact_for_a_point_mass(target):
    """With all data at μ, D ≡ μ and the PF-ODE solution μ + σ/σ0 (x0 − μ) is linear in σ: DDIM is exact."""
    mu = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    sigmas = steps.karras(4, 0.1, 10.0, append_zero=target == 0)
    x0 = torch.tensor([[3.0, 7.0, -4.0]], dtype=torch.float64)
    out = diffsample.sample(lambda x, s: mu.expand_as(x), x0, sigmas, solver="euler")
    torch.testing.assert_close(out, mu + target / 10.0 * (x0 - mu), rtol=0, atol=1e-12)


def _global_errors(solver: str, ns: list[int], mu: float = 0.5, s: float = 1.0) -> list[float]:
    x0 = torch.linspace(-25.0, 25.0, 11, dtype=torch.float64).reshape(11, 1)
    exact = exact_pf_ode(x0, 10.0, 0.1, mu, s)
    errs = []
    for n in ns:
        sigmas = steps.karras(n + 1, 0.1, 10.0, append_zero=False)  # n steps from σ = 10 to σ = 0.1
        out = diffsample.sample(gaussian_denoiser(mu, s), x0, sigmas, solver=solver)
        errs.append(float((out - exact).abs().max()))
    return errs


@pytest.mark.parametrize(("solver", "order"), [("euler", 1), ("heun", 2)])
def test_convergence_order_against_the_exact_gaussian_solution(solver, order):
    ns = [8, 16, 32, 64, 128]
    errs = _global_errors(solver, ns)
    assert all(e2 < e1 for e1, e2 in zip(errs, errs[1:], strict=False))
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert abs(slope - order) < 0.3, (slope, errs)
    assert errs[-1] < (5e-2 if order == 1 else 1e-3)


def test_heun_over_the_edm_range_reaches_the_exact_solution_and_float32_maths_is_not_the_limit():
    x0 = noise.seeded(5).initial((16, 4), 80.0)
    sigmas = steps.karras(128, 0.002, 80.0, append_zero=False)
    out32 = diffsample.sample(gaussian_denoiser(-0.3, 0.6), x0, sigmas, solver="heun")
    out64 = diffsample.sample(gaussian_denoiser(-0.3, 0.6), x0.double(), sigmas, solver="heun")
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    torch.testing.assert_close(out64, exact_pf_ode(x0.double(), 80.0, 0.002, -0.3, 0.6), rtol=0, atol=3e-3)
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=1e-4)
