"""Step schedules as values.

Reference values are computed here, independently of :mod:`diffsample.steps`: diffusers' timestep
spacings re-evaluated with numpy from their documented formulas, DDPM σ tables from the β formulas,
k-diffusion's and Mochi's schedule formulas, scipy's Beta and Laplace distributions, the published
AYS and GITS numbers (the GITS ones located on the 301-point time-uniform grid their search used)
and brute-force assignments.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pytest
import torch

from diffsample import steps
from diffsample.errors import DiffsampleError, SigmaError, UnknownNameError
from diffsample.schedules import EDM, VE, ContinuousVPLinear, DiscreteVP, RectifiedFlow
from diffsample.steps._assignment import assign_unique

SD = DiscreteVP(beta_schedule="scaled_linear")


def sd_table_np(dtype: type = np.float64) -> np.ndarray:
    """SD's ``scaled_linear`` σ table, ``sqrt((1 − ᾱ)/ᾱ)`` with ``ᾱ = Π(1 − β)``, in numpy."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=dtype) ** 2
    abar = np.cumprod(1 - betas, axis=0)
    return ((1 - abar) / abar) ** 0.5


def assert_schedule(s: torch.Tensor, n_levels: int, *, ends_in_zero: bool = True) -> None:
    assert s.dtype == torch.float64 and s.dim() == 1
    assert len(s) == n_levels + (1 if ends_in_zero else 0)
    assert bool((s[1:] < s[:-1]).all())
    assert (float(s[-1]) == 0.0) == ends_in_zero


# ------------------------------------------------------------------------------ every schedule

SPAN_FUNCS = {
    "karras": steps.karras,
    "logsnr": steps.logsnr,
    "exponential": steps.exponential,
    "polyexponential": lambda n, lo, hi, **kw: steps.polyexponential(n, lo, hi, 2.0, **kw),
    "kl_optimal": steps.kl_optimal,
    "laplace": steps.laplace,
    "beta": steps.beta_schedule,
}


@pytest.mark.parametrize("name", sorted(SPAN_FUNCS))
@pytest.mark.parametrize("n", [1, 2, 7, 1000])
def test_span_schedules_run_from_sigma_max_to_sigma_min(name, n):
    fn = SPAN_FUNCS[name]
    s = fn(n, 0.002, 80.0)
    assert_schedule(s, n)
    assert s[0] == 80.0
    if n > 1:
        assert s[-2] == 0.002
        s2 = fn(n, 0.002, 80.0, append_zero=False)
        assert_schedule(s2, n, ends_in_zero=False)
        assert s2[0] == 80.0 and s2[-1] == 0.002


@pytest.mark.parametrize("noise_schedule", [SD, RectifiedFlow(shift=3.0), ContinuousVPLinear(), EDM(), VE()])
@pytest.mark.parametrize("n", [1, 3, 1000])
def test_every_registry_entry_is_a_valid_schedule(noise_schedule, n):
    for name, entry in steps.SCHEDULES.items():
        s = entry(n, noise_schedule=noise_schedule)
        assert_schedule(s, n)
        assert entry is steps.get(name)


# ------------------------------------------------------------------------------ time_uniform on tables


def diffusers_ddim_timesteps(spacing: str, n: int, big_n: int = 1000, steps_offset: int = 0) -> np.ndarray:
    """``DDIMScheduler.set_timesteps`` as documented (diffusers' formulas, in numpy)."""
    if spacing == "linspace":
        return np.linspace(0, big_n - 1, n).round()[::-1].astype(np.int64)
    if spacing == "leading":
        return (np.arange(0, n) * (big_n // n)).round()[::-1].astype(np.int64) + steps_offset
    return np.round(np.arange(big_n, 0, -big_n / n)).astype(np.int64) - 1


def test_leading_spacing_with_ten_steps():
    _, ts = steps.time_uniform(10, SD, spacing="leading", return_timesteps=True)
    assert ts.tolist() == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    _, ts1 = steps.time_uniform(10, SD, spacing="leading", steps_offset=1, return_timesteps=True)
    assert ts1.tolist() == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]


@pytest.mark.parametrize("spacing", ["linspace", "leading", "trailing"])
@pytest.mark.parametrize("n", [2, 3, 7, 10, 25, 50, 100, 333, 999, 1000])
def test_time_uniform_reproduces_diffusers_spacings(spacing, n):
    s, ts = steps.time_uniform(n, SD, spacing=spacing, return_timesteps=True)
    expected = diffusers_ddim_timesteps(spacing, n)
    assert ts.dtype == torch.int64
    np.testing.assert_array_equal(ts.numpy(), expected)
    np.testing.assert_allclose(s[:-1].numpy(), sd_table_np()[expected], rtol=1e-12)
    assert s[-1] == 0


def test_trailing_keeps_n_steps_where_numpy_arange_makes_one_too_many():
    expected = diffusers_ddim_timesteps("trailing", 61)
    assert len(expected) == 62 and expected[-1] == -1  # diffusers' float-arange overshoot
    _, ts = steps.time_uniform(61, SD, spacing="trailing", return_timesteps=True)
    np.testing.assert_array_equal(ts.numpy(), expected[:61])


def test_linspace_span_and_zero_terminal_snr():
    _, ts = steps.time_uniform(5, SD, t_min=100, t_max=900, return_timesteps=True)
    assert ts.tolist() == [900, 700, 500, 300, 100]
    zt = DiscreteVP(beta_schedule="scaled_linear", zero_terminal_snr=True)
    s, ts = steps.time_uniform(10, zt, spacing="trailing", return_timesteps=True)
    assert int(ts[0]) == 999 and float(s[0]) == pytest.approx(4096.0, rel=1e-6)  # diffusers' ᾱ = 2^-24
    assert bool(torch.isfinite(s).all())


# ------------------------------------------------------------------------------ time_uniform, continuous


def test_time_uniform_on_a_shifted_flow_is_uniform_in_unshifted_time():
    eps, sh, n = 1e-3, 3.0, 9
    s, t = steps.time_uniform(n, RectifiedFlow(shift=sh, eps=eps), return_timesteps=True)
    u = np.linspace(1 - eps, eps, n)
    np.testing.assert_allclose(s[:-1].numpy(), sh * u / (1 - u), rtol=1e-12)  # σ = shift·u/(1 − u)
    np.testing.assert_allclose(t.numpy(), sh * u / (1 + (sh - 1) * u), rtol=1e-12)  # SD3's shifted t


def test_time_uniform_on_vp_linear_matches_the_closed_form():
    n = 6
    s, t = steps.time_uniform(n, ContinuousVPLinear(), return_timesteps=True)
    tt = np.linspace(1.0, 1e-3, n)
    expected = np.sqrt(np.expm1(0.5 * (20.0 - 0.1) * tt**2 + 0.1 * tt))
    np.testing.assert_allclose(s[:-1].numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(t.numpy(), tt, rtol=1e-12)


# ------------------------------------------------------------------------------ time_quadratic


@pytest.mark.parametrize("n", [5, 10, 20])
def test_time_quadratic_reproduces_ddim_quad_sequence(n):
    big_n = 1000
    seq = [int(v) for v in np.linspace(0, np.sqrt(big_n * 0.8), n) ** 2]  # DDIM's skip_type == "quad"
    s, ts = steps.time_quadratic(n, SD, t_max=0.8 * big_n, quantize=True, return_timesteps=True)
    assert ts.tolist() == seq[::-1]
    np.testing.assert_allclose(s[:-1].numpy(), sd_table_np()[seq[::-1]], rtol=1e-12)


def test_time_quadratic_quantized_keeps_every_step():
    n = 100  # DDIM's int((i·√800/99)²) repeats 0, 1, 2, … near the data
    seq = np.array([int(v) for v in np.linspace(0, np.sqrt(800.0), n) ** 2])[::-1]
    assert len(np.unique(seq)) < n
    _, ts = steps.time_quadratic(n, SD, t_max=800, quantize=True, return_timesteps=True)
    assert len(ts) == n and bool((ts[1:] < ts[:-1]).all())
    assert np.abs(ts.numpy() - seq).max() <= 12


def test_time_quadratic_continuous_is_uniform_in_sqrt_time():
    s, t = steps.time_quadratic(7, ContinuousVPLinear(), return_timesteps=True)
    np.testing.assert_allclose(np.diff(np.sqrt(t.numpy())), np.diff(np.sqrt(t.numpy()))[0], rtol=1e-10)
    assert t[0] == pytest.approx(1.0) and t[-1] == pytest.approx(1e-3)


# ------------------------------------------------------------------------------ σ-span formulas


def test_polyexponential_rho_one_is_exponential_and_matches_k_diffusion():
    poly = steps.polyexponential(12, 0.03, 14.6, rho=1.0)
    np.testing.assert_allclose(poly, steps.exponential(12, 0.03, 14.6), rtol=1e-14)
    ramp = np.linspace(1, 0, 12) ** 2.5
    expected = np.exp(ramp * (math.log(14.6) - math.log(0.03)) + math.log(0.03))
    np.testing.assert_allclose(steps.polyexponential(12, 0.03, 14.6, rho=2.5)[:-1].numpy(), expected, rtol=1e-12)


def test_exponential_is_logsnr():
    assert steps.exponential(9, 0.002, 80.0).tolist() == steps.logsnr(9, 0.002, 80.0).tolist()


def test_karras_rho_one_is_linear_in_sigma():
    levels = steps.karras(11, 1.0, 6.0, rho=1.0)[:-1].numpy()
    np.testing.assert_allclose(np.diff(levels), -0.5, rtol=1e-12)


def test_kl_optimal_is_uniform_in_arctan_sigma():
    levels = steps.kl_optimal(15, 0.002, 80.0)[:-1].numpy()
    gaps = np.diff(np.arctan(levels))
    np.testing.assert_allclose(gaps, (math.atan(0.002) - math.atan(80.0)) / 14, rtol=1e-10)


def test_laplace_levels_are_truncated_laplace_quantiles_symmetric_about_e_mu():
    mu, b, a, n = 0.3, 0.5, 2.0, 9
    levels = steps.laplace(n, math.exp(mu - a), math.exp(mu + a), mu=mu, beta=b)[:-1].numpy()
    z = np.log(levels) - mu
    np.testing.assert_allclose(z, -z[::-1], atol=1e-12)  # symmetric in log σ about mu
    cdf = np.where(z < 0, 0.5 * np.exp(z / b), 1 - 0.5 * np.exp(-z / b))  # Laplace(mu, b) CDF of log σ
    np.testing.assert_allclose(np.diff(cdf), np.diff(cdf)[0], rtol=1e-9)  # equal probability between steps
    crowded = steps.laplace(20, 0.002, 80.0)[:-1].numpy()
    assert np.argmin(np.abs(np.diff(np.log(crowded)))) in range(7, 13)  # densest near σ = e^0


def test_beta_schedule_in_sigma_and_in_table_time():
    special = pytest.importorskip("scipy.special")
    n, a, b = 10, 0.6, 0.6
    q = 1 - np.linspace(0, 1, n)
    s = steps.beta_schedule(n, 0.03, 14.0, a, b)[:-1].numpy()
    x = (s - 0.03) / (14.0 - 0.03)  # diffusers' variant: σ linear in the Beta quantile
    np.testing.assert_allclose(special.betainc(a, b, x), q, atol=1e-12)  # Beta(a, b) CDF at each step
    st = steps.beta_schedule(n, SD.sigma_min, SD.sigma_max, a, b, noise_schedule=SD)[:-1].numpy()
    t = np.interp(np.log(st), np.log(sd_table_np()), np.arange(1000))  # the paper's: quantiles of table time
    np.testing.assert_allclose(special.betainc(a, b, t / 999), q, atol=1e-9)


def test_vp_continuous_matches_edm_vp_formula_and_the_fitted_registry_entry_hits_the_span():
    t = np.linspace(1, 1e-3, 8)
    expected = np.sqrt(np.exp(19.9 * t**2 / 2 + 0.1 * t) - 1)
    np.testing.assert_allclose(steps.vp_continuous(8)[:-1].numpy(), expected, rtol=1e-12)
    s = steps.get("vp_continuous")(8, 0.002, 80.0)
    assert s[0] == 80.0 and s[-2] == 0.002
    assert_schedule(s, 8)


def mochi_flow_times(n: int, tau: float = 0.025, linear_steps: int | None = None) -> np.ndarray:
    """Mochi 1's ``linear_quadratic_schedule`` (genmo, 2024): n + 1 flow times from 1 to 0."""
    ls = n // 2 if linear_steps is None else linear_steps
    lin = [i * tau / ls for i in range(ls)]
    diff = ls - tau * n
    qs = n - ls
    qc = diff / (ls * qs**2)
    lc = tau / ls - 2 * diff / (qs**2)
    const = qc * ls**2
    quad = [qc * i**2 + lc * i + const for i in range(ls, n)]
    return 1.0 - np.array(lin + quad + [1.0])


@pytest.mark.parametrize(("n", "linear_steps"), [(2, None), (10, None), (30, 5), (50, None)])
def test_linear_quadratic_matches_mochi_flow_times(n, linear_steps):
    sigma_max = 999.0
    s = steps.linear_quadratic(n, sigma_max, linear_steps=linear_steps)
    assert_schedule(s, n)
    t = mochi_flow_times(n, linear_steps=linear_steps) * (sigma_max / (1 + sigma_max))
    np.testing.assert_allclose(s.numpy(), t / (1 - t), rtol=1e-10)
    assert s[0] == sigma_max


# ------------------------------------------------------------------------------ published tables

AYS_SD15 = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
AYS_SDXL = [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029]
AYS_SVD = [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002]


@pytest.mark.parametrize(("model", "published"), [("sd15", AYS_SD15), ("sdxl", AYS_SDXL), ("svd", AYS_SVD)])
def test_align_your_steps_returns_the_published_values(model, published):
    assert steps.align_your_steps(10, model).tolist() == published[:-1] + [0.0]  # diffusers' AysSchedules
    assert steps.align_your_steps(11, model, append_zero=False).tolist() == published
    s20 = steps.align_your_steps(21, model, append_zero=False)
    assert_schedule(s20, 21, ends_in_zero=False)
    assert s20[0] == published[0] and s20[-1] == published[-1]
    expected = np.exp(np.interp(np.linspace(0, 1, 21), np.linspace(0, 1, 11), np.log(published[::-1])))[::-1]
    np.testing.assert_allclose(s20.numpy(), expected, rtol=1e-12)  # AYS's log-linear recipe
    assert_schedule(steps.align_your_steps(20, model), 20)


@pytest.mark.parametrize("model", ["sd15", "sdxl"])
def test_ays_howto_values_are_the_table_at_the_published_timesteps(model):
    howto = steps.align_your_steps(11, model, source="howto", append_zero=False).numpy()
    timesteps = list(steps.AYS_TIMESTEPS[model]) + [0]
    np.testing.assert_allclose(howto, sd_table_np()[timesteps], rtol=0, atol=6e-11)  # 10 decimals
    ts, _ = steps.to_timesteps(torch.from_numpy(howto), SD)
    assert ts.tolist() == timesteps


def gits_grid_np(points: int = 301) -> np.ndarray:
    """GITS' search grid for SD: uniform in DPM-Solver's discrete time ``t ∈ [1e-3, 1]`` (``t_k = (k+1)/1000``,
    log α interpolated linearly), σ = sqrt(1 − α²)/α."""
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000) ** 2
    log_alpha = 0.5 * np.log(np.cumprod(1 - betas))
    la = np.interp(np.linspace(1.0, 1e-3, points), np.linspace(0, 1, 1001)[1:], log_alpha)
    return np.sqrt(1 - np.exp(2 * la)) / np.exp(la)


def test_gits_tables_lie_on_the_search_grid():
    grid = gits_grid_np()
    for steps_count in range(2, 21):
        row = steps.gits(steps_count + 1, append_zero=False).numpy()
        assert len(row) == steps_count + 1
        assert row[0] == 14.61464119 and row[-1] == 0.02916753
        for v in row[:-1]:
            assert np.min(np.abs(grid - v)) / v < 5e-6  # grid neighbours are ≥ 0.5% apart
        np.testing.assert_array_equal(steps.gits(steps_count).numpy(), np.append(row[:-1], 0.0))


def test_gits_beyond_twenty_steps_interpolates_the_twenty_step_list():
    row = steps.gits(21, append_zero=False).numpy()
    s = steps.gits(30)
    assert_schedule(s, 30)
    expected = np.exp(np.interp(np.linspace(0, 1, 31), np.linspace(0, 1, 21), np.log(row[::-1])))[::-1]
    np.testing.assert_allclose(s[:-1].numpy(), expected[:-1], rtol=1e-12)


# ------------------------------------------------------------------------------ to_timesteps


def diffusers_karras_timesteps(n: int) -> np.ndarray:
    """DPMSolverMultistep(use_karras_sigmas=True) on SD's table: Karras σ (ρ = 7) over the float32 table's
    span, ``_sigma_to_t`` (linear in log σ between neighbours), rounded."""
    table = sd_table_np(np.float32).astype(np.float64)
    smin, smax = table[0], table[-1]
    ramp = np.linspace(0, 1, n)
    sig = (smax ** (1 / 7) + ramp * (smin ** (1 / 7) - smax ** (1 / 7))) ** 7
    log_table = np.log(table)
    t = np.interp(np.log(sig), log_table, np.arange(1000))
    return t.round().astype(np.int64)


def test_to_timesteps_keeps_all_100_karras_steps_that_rounding_loses():
    naive = diffusers_karras_timesteps(100)
    assert 100 - len(np.unique(naive)) == 5  # diffusers loses 5 of 100 steps to repeats
    sig = steps.karras(100, SD.sigma_min, SD.sigma_max)
    ts, on_table = steps.to_timesteps(sig, SD)
    assert len(ts) == 100 and len(torch.unique(ts)) == 100 and bool((ts[1:] < ts[:-1]).all())
    assert_schedule(on_table, 100)
    log_table = np.log(sd_table_np())
    nearest = np.abs(log_table[None, :] - np.log(sig[:-1].numpy())[:, None]).argmin(1)
    assert 100 - len(np.unique(nearest)) == 5
    # the last k levels need k distinct timesteps >= 0, so level j can sit no lower than 99 − j:
    forced = max(0, int(np.max(np.arange(99, -1, -1) - nearest)))
    assert np.abs(ts.numpy() - nearest).max() == forced == 5  # as close as monotonicity allows
    np.testing.assert_allclose(on_table[:-1].numpy(), sd_table_np()[ts.numpy()], rtol=1e-12)
    ts_lossy, lossy = steps.to_timesteps(sig, SD, unique=False)
    assert len(ts_lossy) == 95 and len(lossy) == 96


def test_to_timesteps_is_plain_nearest_when_nothing_collides():
    sig = steps.karras(10, SD.sigma_min, SD.sigma_max)
    ts, _ = steps.to_timesteps(sig, SD)
    log_table = np.log(sd_table_np())
    np.testing.assert_array_equal(ts.numpy(), np.abs(log_table[None, :] - np.log(sig[:-1].numpy())[:, None]).argmin(1))


def test_unique_assignment_is_optimal_by_brute_force():
    gen = torch.Generator().manual_seed(0)
    grid = torch.arange(9, dtype=torch.float64)
    for _ in range(20):
        targets = torch.sort(torch.rand(6, generator=gen, dtype=torch.float64) * 4 + 1).values
        got = assign_unique(targets, grid)
        best = min(
            sum((grid[k] - targets[i]).item() ** 2 for i, k in enumerate(c))
            for c in itertools.combinations(range(9), 6)
        )
        assert sum((grid[k] - targets[i]).item() ** 2 for i, k in enumerate(got.tolist())) == pytest.approx(best)
        assert bool((got[1:] > got[:-1]).all())


# ------------------------------------------------------------------------------ composition


def test_from_array_truncate_shift_insert_sigma_min():
    s = steps.from_array([10.0, 5.0, 2.0, 1.0], append_zero=True)
    assert s.tolist() == [10.0, 5.0, 2.0, 1.0, 0.0] and s.dtype == torch.float64
    assert steps.from_array(np.array([3.0, 0.0], dtype=np.float32), append_zero=True).tolist() == [3.0, 0.0]
    assert steps.truncate(s, sigma_max=6.0).tolist() == [6.0, 5.0, 2.0, 1.0, 0.0]
    assert steps.truncate(s, sigma_max=5.0).tolist() == [5.0, 2.0, 1.0, 0.0]
    assert steps.truncate(s, sigma_min=1.5).tolist() == [10.0, 5.0, 2.0, 1.5]
    assert steps.truncate(s, sigma_max=20.0, sigma_min=0.0).tolist() == s.tolist()
    assert steps.shift(s, 3.0).tolist() == [30.0, 15.0, 6.0, 3.0, 0.0]
    assert steps.insert_sigma_min(s, 0.5).tolist() == [10.0, 5.0, 2.0, 1.0, 0.5, 0.0]
    assert steps.insert_sigma_min(s, 1.0).tolist() == s.tolist()
    flow = RectifiedFlow()
    shifted = steps.shift(steps.time_uniform(8, flow), 3.0)  # SD3's shift in σ-space
    np.testing.assert_allclose(shifted, steps.time_uniform(8, RectifiedFlow(shift=3.0)), rtol=1e-12)


# ------------------------------------------------------------------------------ errors


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match=r"step schedule 'karas'.*karras.*time_uniform"):
        steps.get("karas")
    with pytest.raises(UnknownNameError, match=r"leading.*linspace.*trailing"):
        steps.time_uniform(10, SD, spacing="uniform")
    with pytest.raises(UnknownNameError, match=r"sd15.*sdxl.*svd"):
        steps.align_your_steps(10, "flux")
    with pytest.raises(UnknownNameError, match=r"coeff=1.20"):
        steps.gits(10, coeff=0.9)


@pytest.mark.parametrize("n", [0, -3, 2.5])
def test_bad_step_counts(n):
    for fn in (steps.karras, steps.kl_optimal, steps.laplace, steps.polyexponential):
        with pytest.raises(SigmaError, match="positive integer"):
            fn(n, 0.1, 10.0)
    with pytest.raises(SigmaError, match="positive integer"):
        steps.time_uniform(n, SD)


def test_bad_spans_and_values():
    with pytest.raises(SigmaError, match="sigma_min < sigma_max"):
        steps.kl_optimal(5, 2.0, 1.0)
    with pytest.raises(SigmaError, match="sigma_min < sigma_max"):
        steps.laplace(5, 1.0, 1.0)
    with pytest.raises(SigmaError, match="negative"):
        steps.from_array([1.0, -0.5])
    with pytest.raises(SigmaError, match="strictly decreasing"):
        steps.from_array([1.0, 2.0, 0.0])
    with pytest.raises(SigmaError, match="exceed the table"):
        steps.time_uniform(1001, SD)
    with pytest.raises(SigmaError, match="leave the table"):
        steps.time_uniform(1000, SD, spacing="leading", steps_offset=1)
    with pytest.raises(SigmaError, match="needs noise_schedule"):
        steps.get("time_uniform")(10, 0.1, 10.0)
    with pytest.raises(SigmaError, match="DiscreteVP"):
        steps.time_uniform(10, EDM(), spacing="trailing")
    with pytest.raises(DiffsampleError, match="DiscreteVP"):
        steps.to_timesteps(steps.karras(5, 0.1, 10.0), EDM())
    with pytest.raises(SigmaError, match="ends in 0"):
        steps.insert_sigma_min([3.0, 1.0], 0.5)
    with pytest.raises(SigmaError, match="shift factor"):
        steps.shift([3.0, 0.0], -1.0)
    with pytest.raises(SigmaError, match="linear_steps"):
        steps.linear_quadratic(10, 100.0, linear_steps=10)


# ------------------------------------------------------------------------------ registry and keywords


@pytest.mark.parametrize(
    ("name", "direct"),
    [
        ("karras", lambda: steps.karras(10, SD.sigma_min, SD.sigma_max)),
        ("beta", lambda: steps.beta_schedule(10, SD.sigma_min, SD.sigma_max, noise_schedule=SD)),
        ("linear_quadratic", lambda: steps.linear_quadratic(10, SD.sigma_max)),
        ("time_uniform", lambda: steps.time_uniform(10, SD)),
        ("gits", lambda: steps.gits(10)),
    ],
)
def test_a_registry_entry_takes_its_span_from_the_noise_schedule_as_its_kind_says(name, direct):
    spec = steps.get(name)
    assert isinstance(spec, steps.StepScheduleSpec) and spec.summary
    assert spec.needs_noise_schedule == (spec.span == "time")
    assert torch.equal(spec(10, noise_schedule=SD), direct())


def test_a_new_step_schedule_is_one_function_and_one_spec():
    def uniform_in_sigma(n: int, sigma_min: float, sigma_max: float, *, append_zero: bool = True) -> torch.Tensor:
        """Uniform in σ (Karras with ρ = 1)."""
        return steps.karras(n, sigma_min, sigma_max, rho=1.0, append_zero=append_zero)

    spec = steps.StepScheduleSpec("uniform_in_sigma", uniform_in_sigma)
    np.testing.assert_allclose(spec(4, 1.0, 7.0).numpy(), [7.0, 5.0, 3.0, 1.0, 0.0], rtol=1e-15)
    assert spec(4, noise_schedule=VE(1.0, 7.0), append_zero=False).tolist() == spec(4, 1.0, 7.0)[:-1].tolist()
    assert spec.summary == "Uniform in σ (Karras with ρ = 1)."
    with pytest.raises(ValueError, match="span must be one of"):
        steps.StepScheduleSpec("typo", uniform_in_sigma, span="sigmas")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decides the noise schedule's use"):
        steps.StepScheduleSpec("twice", steps.time_uniform, span="time", passes_noise_schedule=True)


OLD_AND_NEW_KEYWORD_CALLS = {
    "beta_schedule": lambda **kw: steps.beta_schedule(7, SD.sigma_min, SD.sigma_max, **kw),
    "time_uniform": lambda **kw: steps.time_uniform(7, spacing="trailing", **kw),
    "time_quadratic": lambda **kw: steps.time_quadratic(7, quantize=True, return_timesteps=True, **kw),
    "to_timesteps": lambda **kw: steps.to_timesteps(steps.karras(7, 0.1, 10.0), **kw),
    **{f"SCHEDULES[{name!r}]": functools.partial(entry, 7) for name, entry in steps.SCHEDULES.items()},
}


@pytest.mark.parametrize("call", OLD_AND_NEW_KEYWORD_CALLS.values(), ids=list(OLD_AND_NEW_KEYWORD_CALLS))
def test_the_old_schedule_keyword_gives_identical_arrays_and_warns(call):
    new = call(noise_schedule=SD)
    with pytest.warns(DeprecationWarning, match="schedule= is deprecated; use noise_schedule="):
        old = call(schedule=SD)
    new_parts, old_parts = (new, old) if isinstance(new, tuple) else ((new,), (old,))
    assert len(new_parts) == len(old_parts)
    for a, b in zip(new_parts, old_parts, strict=True):
        assert a.dtype == b.dtype and torch.equal(a, b)
    with pytest.raises(TypeError, match="both noise_schedule= and its deprecated spelling schedule="):
        call(noise_schedule=SD, schedule=SD)


def test_the_deprecation_warning_points_at_the_caller():
    with pytest.warns(DeprecationWarning) as record:
        steps.time_uniform(5, schedule=SD)
        steps.get("karras")(5, schedule=SD)
    assert [w.filename for w in record] == [__file__, __file__]
