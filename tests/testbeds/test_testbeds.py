"""Test beds: every check compares with an answer known independently of the code under test."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from diffsample.errors import DiffsampleError, ShapeError, UnknownNameError
from diffsample.testbeds import (
    BEDS,
    EmpiricalDenoiser,
    GaussianMixture,
    default_cache_dir,
    digits,
    get_bed,
    mean_log_likelihood,
    mixture64,
    mode_mismatch,
    reference_solution,
    ring2d,
    rmse,
    rmse_per_sample,
)
from diffsample.testbeds import reference as reference_module

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sig(value: float, batch: int) -> torch.Tensor:
    return torch.full((batch,), value, dtype=F64)


def _mixture_1d() -> GaussianMixture:
    """A 1-D mixture with a point mass, a narrow and a wide Gaussian, unequal weights."""
    return GaussianMixture([[-1.0], [0.3], [1.5]], [0.0, 0.1, 0.6], [0.3, 0.2, 0.5], name="1d")


def _mixture_small() -> GaussianMixture:
    """3-D diagonal mixture, including a component degenerate in one coordinate."""
    means = [[0.0, 1.0, -0.5], [1.0, -1.0, 0.5], [-1.0, 0.0, 1.0]]
    stds = [[0.3, 0.2, 0.5], [0.0, 0.4, 0.1], [0.7, 0.7, 0.7]]
    return GaussianMixture(means, stds, [0.5, 0.3, 0.2])


# --------------------------------------------------------------------------- exact denoiser


def test_denoiser_matches_monte_carlo_posterior_mean_1d():
    """E[x0 | x] = Σ_j x0_j N(x; x0_j, σ²) / Σ_j N(x; x0_j, σ²) over exact prior draws x0_j."""
    bed = _mixture_1d()
    x0 = bed.sample(400_000, generator=_gen(0))[:, 0]
    sigma = torch.tensor([0.05, 0.2, 0.5, 1.0, 3.0], dtype=F64)
    x = torch.tensor([-0.97, 0.25, 0.8, 1.2, -2.0], dtype=F64)
    exact = bed.denoise(x[:, None], sigma)[:, 0]
    for i in range(len(x)):
        logw = -0.5 * ((x[i] - x0) / sigma[i]) ** 2
        w = torch.exp(logw - logw.max())
        est = (w * x0).sum() / w.sum()
        stderr = torch.sqrt((w.square() * (x0 - est).square()).sum()) / w.sum()
        assert abs(float(est - exact[i])) < 5 * float(stderr) + 1e-12, (i, float(est), float(exact[i]), float(stderr))


@pytest.mark.parametrize("make", [_mixture_1d, _mixture_small, ring2d, mixture64])
def test_tweedie_score_equals_autograd_of_log_prob(make):
    bed = make()
    x = torch.randn(6, bed.dim, generator=_gen(1), dtype=F64)
    for s in (0.03, 0.4, 2.5):
        xg = x.clone().requires_grad_(True)
        grad = torch.autograd.grad(bed.log_prob(xg, s).sum(), xg)[0]
        tweedie = (bed.denoise(x, _sig(s, 6)) - x) / s**2
        torch.testing.assert_close(tweedie, grad, rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(bed.score(x, s), grad, rtol=1e-8, atol=1e-8)


def test_log_prob_matches_scipy_density():
    from scipy.stats import multivariate_normal

    bed = _mixture_small()
    x = torch.randn(5, 3, generator=_gen(2), dtype=F64)
    s = 0.3
    dens = sum(
        float(bed.weights[k])
        * multivariate_normal(bed.means[k].numpy(), np.diag(bed.stds[k].numpy() ** 2 + s**2)).pdf(x.numpy())
        for k in range(3)
    )
    np.testing.assert_allclose(bed.log_prob(x, s).numpy(), np.log(dens), rtol=1e-12)
    with pytest.raises(DiffsampleError):
        bed.log_prob(x, 0.0)  # component 1 is degenerate in coordinate 0


def test_sigma_zero_limits():
    # all stds > 0: D(x, 0) = x exactly
    ring = ring2d()
    x = torch.randn(7, 2, generator=_gen(3), dtype=F64)
    assert torch.equal(ring.denoise(x, _sig(0.0, 7)), x)
    # a data set: the nearest point, and the average of the nearest ones on an exact tie
    emp = EmpiricalDenoiser(torch.tensor([[-1.0], [1.0], [3.0]]))
    out = emp.denoise(torch.tensor([[-0.2], [0.0], [2.5], [9.0]], dtype=F64), _sig(0.0, 4))
    assert out[:, 0].tolist() == [-1.0, 0.0, 3.0, 3.0]
    # the σ = 0 branch is the limit of the σ > 0 formula, also with point masses and degenerate directions
    for bed in (_mixture_1d(), _mixture_small(), emp):
        xs = 2 * torch.randn(50, bed.dim, generator=_gen(4), dtype=F64)
        torch.testing.assert_close(bed.denoise(xs, _sig(0.0, 50)), bed.denoise(xs, _sig(1e-7, 50)), rtol=0, atol=1e-5)
    # point mass plus Gaussian: the limit is x itself, also on the atom
    mixed = _mixture_1d()
    pts = torch.tensor([[-1.0], [-0.999], [0.7]], dtype=F64)
    assert torch.equal(mixed.denoise(pts, _sig(0.0, 3)), pts)


def test_denoise_keeps_shape_dtype_and_mixed_sigmas():
    means = torch.randn(4, 1, 2, 3, generator=_gen(5), dtype=F64)
    bed = GaussianMixture(means, torch.tensor([0.1, 0.2, 0.0, 0.5]))
    assert bed.shape == (1, 2, 3) and bed.dim == 6
    x = torch.randn(3, 1, 2, 3, generator=_gen(6))
    sig = torch.tensor([0.0, 0.5, 2.0])
    out = bed(x, sig)
    assert out.shape == x.shape and out.dtype == torch.float32 and bed.nfe == 1
    # each row agrees with a batch of one at its own σ
    for i in range(3):
        torch.testing.assert_close(out[i : i + 1], bed.denoise(x[i : i + 1], sig[i : i + 1]))
    with pytest.raises(ShapeError):
        bed.denoise(torch.zeros(2, 5), _sig(1.0, 2))
    with pytest.raises(ShapeError):
        GaussianMixture(torch.zeros(3, 2), torch.ones(2))


def test_empirical_denoiser_equals_brute_force_softmax():
    data = torch.randn(40, 5, generator=_gen(7), dtype=F64)
    emp = EmpiricalDenoiser(data)
    x = 1.5 * torch.randn(9, 5, generator=_gen(8), dtype=F64)
    for s in (0.05, 0.7, 10.0):
        d2 = ((x[:, None, :] - data[None]) ** 2).sum(-1)
        w = torch.softmax(-d2 / (2 * s**2), dim=1)
        torch.testing.assert_close(emp.denoise(x, _sig(s, 9)), w @ data, rtol=1e-12, atol=1e-12)
    nearest = ((x[:, None, :] - data[None]) ** 2).sum(-1).argmin(1)
    assert torch.equal(emp.component(x, 0.0), nearest)
    assert torch.equal(emp.denoise(x, _sig(0.0, 9)), data[nearest])


def test_digits_bed():
    bed = digits()
    assert bed.data.shape == (1797, 64) and bed.shape == (64,)
    assert bed.data.min() == -1.0 and bed.data.max() == 1.0
    assert bed.cache_key() == digits().cache_key()


def test_digits_missing_sklearn_names_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"diffsample\[beds\]"):
        digits()


# --------------------------------------------------------------------------- sampling


def test_exact_samples_match_mixture_moments():
    for bed, n in ((mixture64(), 100_000), (_mixture_small(), 200_000)):
        xs = bed.sample(n, generator=_gen(9))
        w, mu, s2 = bed.weights, bed.means, bed.stds.square()
        mean = w @ mu
        cov = (w[:, None, None] * (torch.diag_embed(s2) + mu[:, :, None] * mu[:, None, :])).sum(0) - torch.outer(
            mean, mean
        )
        se_mean = (cov.diagonal() / n).sqrt()
        assert ((xs.mean(0) - mean).abs() < 5 * se_mean).all()
        emp_cov = torch.cov(xs.T)
        # var of a sample covariance entry ≈ (Σ_ii Σ_jj + Σ_ij²)/n (Gaussian value; loose factor for mixtures)
        se_cov = ((cov.diagonal()[:, None] * cov.diagonal()[None] + cov.square()) / n).sqrt()
        assert ((emp_cov - cov).abs() < 6 * se_cov).all()


# --------------------------------------------------------------------------- reference PF-ODE


@pytest.mark.parametrize("make", [ring2d, mixture64])
@pytest.mark.parametrize("sigma_end", [0.0, 0.002])
def test_reference_two_tolerances_agree(make, sigma_end):
    bed = make()
    x = 80 * torch.randn(12, bed.dim, generator=_gen(10), dtype=F64)
    loose = reference_solution(bed, x, 80.0, sigma_end, rtol=1e-10, atol=1e-10, cache=False)
    tight = reference_solution(bed, x, 80.0, sigma_end, rtol=1e-12, atol=1e-12, cache=False)
    assert (loose - tight).abs().max() < 1e-7
    assert bed.nfe == 0  # the reference never goes through the counting __call__


@pytest.mark.slow
def test_reference_two_tolerances_agree_digits():
    bed = digits()
    x = 80 * torch.randn(4, 64, generator=_gen(11), dtype=F64)
    loose = reference_solution(bed, x, 80.0, 0.002, rtol=1e-10, atol=1e-10, cache=False)
    tight = reference_solution(bed, x, 80.0, 0.002, rtol=1e-12, atol=1e-12, cache=False)
    assert (loose - tight).abs().max() < 1e-7
    # into σ = 0 every trajectory lands exactly on a training image
    end = reference_solution(bed, x, 80.0, 0.0, rtol=1e-10, atol=1e-10, cache=False)
    assert torch.equal(end, bed.data[bed.component(end, 0.0)])


@pytest.mark.parametrize("isotropic", [True, False])
def test_reference_matches_single_gaussian_closed_form(isotropic):
    mu = torch.tensor([[0.5, -0.3, 0.1, 0.9]], dtype=F64)
    std = torch.tensor([0.4], dtype=F64) if isotropic else torch.tensor([[0.05, 0.3, 1.0, 2.0]], dtype=F64)
    bed = GaussianMixture(mu, std)
    x = 3 * torch.randn(5, 4, generator=_gen(12), dtype=F64)
    s2 = std.square() if not isotropic else std.square()[:, None]
    for s0, s1 in ((80.0, 0.0), (80.0, 0.002), (5.0, 0.3), (0.5, 20.0)):
        x_start = mu + (s2 + s0**2).sqrt() / torch.sqrt(s2 + 1.0) * x  # any state works; scale for realism
        want = mu + (s2 + s1**2).sqrt() / (s2 + s0**2).sqrt() * (x_start - mu)
        got = reference_solution(bed, x_start, s0, s1, cache=False)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-9)


def test_reference_single_point_mass_closed_form():
    mu = torch.tensor([[0.2, -0.7]], dtype=F64)
    bed = EmpiricalDenoiser(mu)
    x = 80 * torch.randn(3, 2, generator=_gen(13), dtype=F64)
    for s1 in (0.0, 1e-8, 0.002, 1.0):
        want = mu + (s1 / 80.0) * (x - mu)
        torch.testing.assert_close(reference_solution(bed, x, 80.0, s1, cache=False), want, rtol=0, atol=1e-9)


def test_reference_flow_is_invertible():
    bed = mixture64()
    x = 80 * torch.randn(4, 64, generator=_gen(14), dtype=F64)
    mid = reference_solution(bed, x, 80.0, 0.5, cache=False)
    back = reference_solution(bed, mid, 0.5, 80.0, cache=False)
    torch.testing.assert_close(back, x, rtol=0, atol=1e-8)


def test_reference_cache_roundtrip(tmp_path, monkeypatch):
    bed = ring2d()
    x = 80 * torch.randn(5, 1, 2, generator=_gen(15))
    first = reference_solution(bed, x, 80.0, 0.0, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1 and first.shape == x.shape and first.dtype == F64

    def fail(*args, **kwargs):
        raise AssertionError("should have loaded from the cache")

    monkeypatch.setattr(reference_module, "_integrate", fail)
    second = reference_solution(bed, x, 80.0, 0.0, cache_dir=tmp_path)
    assert torch.equal(first, second)
    with pytest.raises(AssertionError):  # a different span is a different key
        reference_solution(bed, x, 80.0, 0.002, cache_dir=tmp_path)
    monkeypatch.setenv("DIFFSAMPLE_CACHE", str(tmp_path / "root"))
    assert default_cache_dir() == tmp_path / "root" / "reference"


def test_reference_input_checks(monkeypatch):
    bed = ring2d()
    x = torch.zeros(2, 2, dtype=F64)
    with pytest.raises(DiffsampleError):
        reference_solution(bed, x, 0.0, 1.0, cache=False)
    monkeypatch.setitem(sys.modules, "scipy.integrate", None)
    with pytest.raises(ImportError, match=r"diffsample\[beds\]"):
        reference_solution(bed, x, 1.0, 0.0, cache=False)


# --------------------------------------------------------------------------- registry and metrics


def test_registry():
    assert set(BEDS) == {"ring2d", "mixture64", "digits"}
    ring = get_bed("ring2d")
    torch.testing.assert_close(ring.means.norm(dim=1), torch.ones(8, dtype=F64))
    assert get_bed("mixture64").shape == (64,)
    assert mixture64().cache_key() == mixture64().cache_key() != ring.cache_key()
    with pytest.raises(UnknownNameError, match="mixture64"):
        get_bed("nope")


def test_metrics_known_values():
    ref = torch.randn(4, 3, generator=_gen(16), dtype=F64)
    x = ref + torch.tensor([[0.1], [0.2], [0.0], [0.0]], dtype=F64)
    assert rmse(x, ref) == pytest.approx(math.sqrt((0.01 + 0.04) / 4))
    torch.testing.assert_close(rmse_per_sample(x, ref), torch.tensor([0.1, 0.2, 0.0, 0.0], dtype=F64))
    ring = ring2d()
    centres = ring.means[[0, 1, 2, 3]]
    assert mode_mismatch(ring, centres, centres) == 0.0
    assert mode_mismatch(ring, ring.means[[1, 1, 2, 4]], centres) == 0.5
    gauss = GaussianMixture(torch.zeros(1, 2), torch.ones(1))
    assert mean_log_likelihood(gauss, torch.zeros(3, 2)) == pytest.approx(-math.log(2 * math.pi))
    emp = EmpiricalDenoiser(torch.tensor([[0.0, 0.0], [5.0, 5.0]]))
    # default σ for point masses: log(1/2) + log N(0; 0, σ² I) (the far atom contributes e^{-1e4})
    s = 0.05
    assert mean_log_likelihood(emp, torch.zeros(1, 2)) == pytest.approx(math.log(0.5) - math.log(2 * math.pi * s * s))
