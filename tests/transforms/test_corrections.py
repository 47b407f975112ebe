"""Exposure-bias corrections (issue 6): Epsilon Scaling and time-shift sampling as denoiser transforms.

Known answers: neutral parameters reproduce the uncorrected walk bit for bit; Epsilon Scaling with
λ = 1 + γ undoes an ε-inflation of the exact mixture denoiser exactly; the fit recovers the closed-form
γ(σ) of ExposureBiasDenoiser and a known linear λ(t); time shift picks the level whose noise variance
matches inputs built with a known noise level, and its DDIM re-expression reproduces the TS-DDIM
update in closed form.
"""

from __future__ import annotations

import pytest
import torch

import diffsample as ds
from diffsample.denoisers import FunctionDenoiser
from diffsample.errors import DiffsampleError, ShapeError
from diffsample.schedules import ContinuousVPLinear, DiscreteVP
from diffsample.testbeds import mixture64, ring2d
from diffsample.testbeds.imperfect import ExposureBiasDenoiser
from diffsample.transforms import data_stats, epsilon_scaling, fit_epsilon_scaling, time_shift, training_levels

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _start(n: int, dim: int, sigma: float, seed: int = 0) -> torch.Tensor:
    return sigma * torch.randn(n, dim, generator=_gen(seed), dtype=F64)


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m", "heun", "ddpm"])
def test_neutral_parameters_reproduce_the_uncorrected_walk_exactly(solver: str) -> None:
    bed = ring2d()
    sig = ds.steps.karras(8, 0.002, 80.0)
    x = _start(64, 2, 80.0)
    data = bed.sample(256, generator=_gen(1))
    plain = ds.sample(bed, x, sig, solver, noise=ds.noise.seeded(range(64)))
    for wrapped in (
        epsilon_scaling(bed, 0.0, 1.0),
        time_shift(bed, sig, data=data, window=0),
        time_shift(bed, sig, data=data, window=3, cutoff=100.0),
    ):
        out = ds.sample(wrapped, x, sig, solver, noise=ds.noise.seeded(range(64)))
        assert torch.equal(out, plain)


def test_epsilon_scaling_by_one_plus_gamma_undoes_a_constant_inflation_exactly() -> None:
    truth = mixture64()
    biased = ExposureBiasDenoiser(truth, gamma=0.2, sigma_c=1e12)  # γ(σ) = 0.2 to 1e-11 for σ ≤ 80
    fixed = epsilon_scaling(biased, 0.0, 1.2)
    x = _start(32, 64, 1.0) + truth.sample(32, generator=_gen(2))
    for s in (0.01, 0.3, 5.0):
        exact = truth.denoise(x, torch.full((32,), s, dtype=F64))
        assert (biased(x, s) - exact).abs().max() > 1e-3
        torch.testing.assert_close(fixed(x, s), exact, rtol=0, atol=1e-9)


def test_lambda_uses_the_schedule_time() -> None:
    vp = ContinuousVPLinear()
    scaled = epsilon_scaling(ring2d(), -0.1, 1.1, noise_schedule=vp)
    sigma = torch.tensor([0.01, 1.0, 50.0], dtype=F64)
    torch.testing.assert_close(scaled.lam(sigma), 1.1 - 0.1 * vp.t_of_sigma_space(sigma))
    torch.testing.assert_close(epsilon_scaling(ring2d(), 0.01, 1.0).lam(sigma), 1.0 + 0.01 * sigma)


def test_fit_recovers_the_exposure_bias_of_the_bed() -> None:
    bed = ExposureBiasDenoiser(ring2d(), gamma=0.3, sigma_c=0.5)
    data = bed.sample(4000, generator=_gen(3))
    levels = ds.steps.karras(8, 0.002, 80.0)
    bed.reset_counter()
    fit = fit_epsilon_scaling(bed, data, levels, generator=_gen(4))
    assert bed.nfe == 2 * 8  # one antithetic pair per positive level; σ = 0 skipped
    truth = (1 + bed.gamma(torch.tensor(fit.sigmas))).tolist()
    for s, got, want in zip(fit.sigmas, fit.ratios, truth, strict=True):
        # the excess γ itself within 15 % (sampling error ≈ 2/sqrt(N·d) of the ratio at σ ≪ 0.05, less above)
        assert abs((got - 1) / (want - 1) - 1) < 0.15, (s, got, want)
    exact = fit_epsilon_scaling(bed.truth, data, levels, generator=_gen(4))  # an exact denoiser: λ = 1
    assert max(abs(r - 1) for r in exact.ratios) < 0.03
    assert abs(exact.b - 1) < 0.01 and abs(exact.k) < 1e-3
    norm = fit_epsilon_scaling(bed, data, levels, method="norm", generator=_gen(4))
    assert norm.ratios[-1] < 0.5 * truth[-1]  # the plain norm ratio is biased low where ε is unpredictable


def test_fit_recovers_a_linear_lambda() -> None:
    truth = mixture64()

    def inflated(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:  # ε̂' = (1.1 + 0.02 σ) ε̂
        d = truth.denoise(x, sigma)
        return d - (0.1 + 0.02 * sigma)[:, None] * (x - d)

    fit = fit_epsilon_scaling(
        FunctionDenoiser(inflated), truth.sample(1000, generator=_gen(5)), [0.5, 1.0, 2.0, 4.0, 8.0], generator=_gen(6)
    )
    assert fit.k == pytest.approx(0.02, abs=2e-3) and fit.b == pytest.approx(1.1, abs=5e-3)
    torch.testing.assert_close(
        fit.lam(torch.tensor([3.0], dtype=F64)), torch.tensor([1.16], dtype=F64), rtol=0, atol=5e-3
    )


@pytest.mark.parametrize(("true_sigma", "nominal"), [(1.0, 1.2), (0.5, 0.6), (2.0, 2.0), (0.8, 0.5)])
def test_time_shift_picks_the_level_matching_a_known_noise_level(true_sigma: float, nominal: float) -> None:
    bed = mixture64()
    levels = torch.logspace(-3, 2, 101, dtype=F64)  # 20 levels a decade
    data = bed.sample(4000, generator=_gen(7))
    x = bed.sample(4000, generator=_gen(8)) + true_sigma * torch.randn(4000, 64, generator=_gen(9), dtype=F64)
    nearest = levels[(levels.log() - torch.log(torch.tensor(true_sigma))).abs().argmin()]
    pooled = time_shift(bed, ds.steps.karras(10, 0.002, 80.0), data=data, window=6, levels=levels, pool="batch")
    got = pooled.shifted_sigma(x, nominal)
    want = nominal if abs(float(nearest) / nominal - 1) < 0.06 else float(nearest)  # nominal kept if it matches
    torch.testing.assert_close(got, torch.full((4000,), want, dtype=F64), rtol=1e-12, atol=0)
    per_sample = time_shift(bed, ds.steps.karras(10, 0.002, 80.0), data=data, window=6, levels=levels)
    assert float(per_sample.shifted_sigma(x, nominal).median()) == pytest.approx(want, rel=0.13)


def test_time_shift_window_limits_the_shift_and_cutoff_stops_it() -> None:
    bed = mixture64()
    levels = torch.logspace(-3, 2, 101, dtype=F64)
    data = bed.sample(2000, generator=_gen(10))
    x = bed.sample(2000, generator=_gen(11)) + 0.3 * torch.randn(2000, 64, generator=_gen(12), dtype=F64)
    sig = ds.steps.karras(10, 0.002, 80.0)
    capped = time_shift(bed, sig, data=data, window=2, levels=levels, pool="batch").shifted_sigma(x, 1.0)
    torch.testing.assert_close(capped, torch.full((2000,), float(levels[58]), dtype=F64))  # levels[60] = 1
    stopped = time_shift(bed, sig, data=data, window=30, levels=levels, pool="batch", cutoff=1.0)
    assert torch.equal(stopped.shifted_sigma(x, 1.0), torch.full((2000,), 1.0, dtype=F64))


def test_time_shift_ddim_reexpression_is_the_ts_ddim_update() -> None:
    bed = ExposureBiasDenoiser(mixture64(), gamma=0.3, sigma_c=0.5)
    sig = ds.steps.karras(6, 0.002, 80.0)
    i = 3
    s, s_next = float(sig[i]), float(sig[i + 1])
    data = bed.sample(2000, generator=_gen(13))
    x = bed.sample(64, generator=_gen(14)) + 0.7 * s * torch.randn(64, 64, generator=_gen(15), dtype=F64)
    ts = time_shift(bed, sig, data=data, window=40)
    s_s = ts.shifted_sigma(x, s)
    assert bool((s_s < s).all())
    d_s = bed(x, s_s)
    want = d_s + s_next * (x - d_s) / s_s[:, None]  # TS-DDIM: x' = D_s + σ' ε_s
    got = ds.sample(ts, x, torch.tensor([s, s_next], dtype=F64), "euler")
    # the one-step grid [σ, σ'] has the same next level as the full grid
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    x0_mode = time_shift(bed, sig, data=data, window=40, update="x0")
    torch.testing.assert_close(x0_mode(x, s), d_s)


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m", "heun", "euler_ancestral"])
def test_corrections_cost_no_extra_model_calls(solver: str) -> None:
    bed = ExposureBiasDenoiser(ring2d(), gamma=0.3, sigma_c=0.5)
    sig = ds.steps.karras(6, 0.002, 80.0)
    x = _start(128, 2, 80.0)
    ds.sample(bed, x, sig, solver, noise=ds.noise.seeded(range(128)))
    plain = bed.nfe
    data = bed.sample(512, generator=_gen(16))
    for wrapped in (epsilon_scaling(bed, -0.001, 1.1), time_shift(bed, sig, data=data, window=50)):
        wrapped.reset_counter()
        ds.sample(wrapped, x, sig, solver, noise=ds.noise.seeded(range(128)))
        assert wrapped.nfe == plain == bed.nfe


def test_training_levels_of_a_discrete_schedule_are_its_timesteps() -> None:
    vp = DiscreteVP(beta_schedule="linear", num_train_timesteps=1000)
    torch.testing.assert_close(training_levels(vp, 1000), vp.sigma_space(torch.arange(1000, dtype=F64)))


def test_bad_parameters_raise() -> None:
    bed, sig = ring2d(), ds.steps.karras(5, 0.002, 80.0)
    data = bed.sample(64, generator=_gen(17))
    for k, b in ((0.0, 0.0), (0.0, -1.0), (float("nan"), 1.0), (0.0, float("inf"))):
        with pytest.raises(DiffsampleError):
            epsilon_scaling(bed, k, b)
    with pytest.raises(DiffsampleError, match="> 0"):  # λ(σ = 80) = 1 − 0.1·80 < 0
        epsilon_scaling(bed, -0.1, 1.0)(_start(4, 2, 80.0), 80.0)
    with pytest.raises(DiffsampleError, match="noise_schedule must be a diffsample NoiseSchedule"):
        epsilon_scaling(bed, 0.0, 1.1, noise_schedule="vp")  # type: ignore[arg-type]
    for bad in (
        {"window": -1},
        {"window": 1.5},
        {"pool": "image"},
        {"update": "heun"},
        {"cutoff": -1.0},
        {"levels": torch.tensor([0.0, 1.0])},
        {"levels": torch.tensor([1.0, 1.0])},
    ):
        with pytest.raises(DiffsampleError):
            time_shift(bed, sig, data=data, **bad)
    with pytest.raises(DiffsampleError, match="data statistics"):
        time_shift(bed, sig)
    with pytest.raises(DiffsampleError, match="not both"):
        time_shift(bed, sig, data=data, data_mean=0.0, data_var=1.0)
    with pytest.raises(ds.errors.SigmaError):
        time_shift(bed, [1.0, 2.0, 0.0], data=data)
    with pytest.raises(ShapeError):
        time_shift(bed, sig, data=data, window=2).shifted_sigma(torch.zeros(4, 3, dtype=F64), 1.0)
    with pytest.raises(ShapeError):
        data_stats(torch.zeros(1, 2))
    with pytest.raises(DiffsampleError):
        fit_epsilon_scaling(bed, data, sig, method="median")
    with pytest.raises(DiffsampleError):
        fit_epsilon_scaling(bed, data, [0.0])
    with pytest.raises(ShapeError):
        fit_epsilon_scaling(bed, data[:1], sig)
