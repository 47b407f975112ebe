"""Imperfect beds and distribution metrics, against closed forms.

* A misfit ring is the exact denoiser of a ring of radius 1 + δ with stds scaled, built here from its
  angles; the truth stays the unit ring.
* The exposure-biased denoiser inflates ``(x − D)/σ`` by exactly ``1 + γ_0 σ_c/(σ_c + σ)``.
* Wasserstein distances of small empirical measures worked out by hand; a translated cloud has sliced
  W2 ``|c|/sqrt(d)`` (``E_θ (θ·c)² = |c|²/d`` for θ uniform on the sphere) and 1-D W1 ``|c|``.
* The ring's exact moments: mean 0, covariance ``(1/2 + s²) I``.
"""

from __future__ import annotations

import math

import pytest
import torch

import diffsample
from benchmarks.stochastic_bench import format_stochastic_table, run_stochastic_bench
from diffsample import steps
from diffsample.errors import DiffsampleError, ShapeError
from diffsample.testbeds import GaussianMixture, ring2d
from diffsample.testbeds.distribution import (
    component_weights,
    distribution_report,
    exact_moments,
    moment_errors,
    sliced_wasserstein,
    sliced_wasserstein_to_truth,
    true_distribution,
    true_log_likelihood,
    wasserstein_1d,
    wasserstein_1d_to_truth,
    weight_tv,
)
from diffsample.testbeds.imperfect import ExposureBiasDenoiser, MisfitMixture

F64 = torch.float64


def _ring(radius: float, std: float) -> GaussianMixture:
    angles = torch.arange(8, dtype=F64) * (2 * math.pi / 8)
    return GaussianMixture(radius * torch.stack([angles.cos(), angles.sin()], 1), torch.full((8,), std, dtype=F64))


# ------------------------------------------------------------------------------------------ imperfect beds


def test_misfit_ring_is_the_exact_denoiser_of_a_wider_ring():
    ring = ring2d()
    bed = MisfitMixture(ring, mean_shift=0.1, std_scale=1.4)
    wider = _ring(1.1, 0.07)
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0), dtype=F64)
    for sigma in (0.01, 0.3, 2.0):
        torch.testing.assert_close(bed(x, sigma), wider(x, sigma), rtol=1e-12, atol=1e-12)
    assert bed.nfe == 3 and wider.nfe == 3 and ring.nfe == 0
    # what it describes is the truth, not the model
    assert true_distribution(bed) is ring and bed.shape == (2,) and bed.dim == 2 and bed.num_components == 8
    torch.testing.assert_close(bed.log_prob(x, 0.2), ring.log_prob(x, 0.2))
    assert torch.equal(bed.component(x), ring.component(x))
    draws = [b.sample(100, generator=torch.Generator().manual_seed(1)) for b in (bed, ring)]
    torch.testing.assert_close(draws[0], draws[1])


def test_misfit_with_explicit_offsets_and_weights():
    ring = ring2d()
    offsets = torch.zeros(8, 2, dtype=F64)
    offsets[0] = torch.tensor([0.0, 0.2], dtype=F64)
    weights = torch.arange(1, 9, dtype=F64)
    bed = MisfitMixture(ring, mean_shift=offsets, weights=weights)
    means = ring.means.clone()
    means[0, 1] += 0.2
    ref = GaussianMixture(means, ring.stds, weights)
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    torch.testing.assert_close(bed(x, 0.1), ref(x, 0.1), rtol=1e-12, atol=1e-12)
    unchanged = MisfitMixture(ring)
    torch.testing.assert_close(unchanged(x, 0.1), ring(x, 0.1), rtol=1e-12, atol=1e-12)
    with pytest.raises(ShapeError):
        MisfitMixture(ring, mean_shift=torch.zeros(3, 2))
    with pytest.raises(DiffsampleError):
        MisfitMixture(ring, std_scale=0.0)


def test_exposure_bias_inflates_the_noise_prediction_by_the_documented_factor():
    ring = ring2d()
    bed = ExposureBiasDenoiser(ring, gamma=0.2, sigma_c=0.5)
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(3), dtype=F64) * 1.5
    factors = []
    for sigma in (0.0, 0.05, 0.5, 5.0, 80.0):
        d_true, d_bias = ring.denoise(x, torch.full((32,), sigma, dtype=F64)), bed(x, sigma)
        if sigma == 0:
            torch.testing.assert_close(d_bias, x)  # D(x, 0) = x: nothing to inflate
            continue
        ratio = (x - d_bias) / (x - d_true)
        factor = 1 + 0.2 * 0.5 / (0.5 + sigma)
        torch.testing.assert_close(ratio, torch.full_like(ratio, factor), rtol=1e-10, atol=1e-10)
        factors.append(factor)
    assert factors == sorted(factors, reverse=True)  # grows as σ → 0
    assert float(bed.gamma(0.5)) == pytest.approx(0.1) and float(bed.gamma(0.0)) == pytest.approx(0.2)
    with pytest.raises(DiffsampleError):
        ExposureBiasDenoiser(ring, sigma_c=0.0)


def test_a_convergent_sampler_on_a_misfit_bed_lands_on_the_misfit_not_the_truth():
    ring = ring2d()
    bed = MisfitMixture(ring, mean_shift=0.15, std_scale=1.5)
    z = torch.randn(3000, 2, generator=torch.Generator().manual_seed(4), dtype=F64)
    out = diffsample.sample(bed, 80.0 * z, steps.karras(60, 0.002, 80.0), "dpmpp_2m")
    to_model = sliced_wasserstein_to_truth(bed.model, out, p=1.0)
    to_truth = sliced_wasserstein_to_truth(bed, out, p=1.0)
    assert to_model < 0.04 and to_truth > 2 * to_model


# ------------------------------------------------------------------------------------------ metrics


def test_wasserstein_1d_by_hand():
    """x = {0, 1}, y = {0, 1, 2}: the quantile functions differ by 1 on (1/3, 1/2] and (2/3, 1]."""
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0, 1.0])
    assert float(wasserstein_1d(a, b, p=1)) == pytest.approx(0.5)
    assert float(wasserstein_1d(a, b, p=2)) == pytest.approx(math.sqrt(0.5))
    assert float(wasserstein_1d(b, a, p=1)) == pytest.approx(0.5)
    assert sliced_wasserstein(a[:, None], b[:, None], p=1) == pytest.approx(0.5)  # 1-D: exact
    assert float(wasserstein_1d(torch.tensor([0.0, 3.0]), torch.tensor([1.0, 1.0]), p=1)) == pytest.approx(1.5)


def test_sliced_wasserstein_of_a_translation():
    """SW2(Y, Y + c)² = E_θ (θ·c)² = |c|²/d exactly for the same cloud moved by c."""
    y = torch.randn(500, 5, generator=torch.Generator().manual_seed(5), dtype=F64)
    c = torch.tensor([0.3, -0.4, 1.2, 0.0, 0.5], dtype=F64)
    sw = sliced_wasserstein(y, y + c, n_projections=4000, seed=1)
    assert sw == pytest.approx(float(c.norm()) / math.sqrt(5), rel=0.03)
    assert sliced_wasserstein(y, y, seed=1) == 0.0
    with pytest.raises(ShapeError):
        sliced_wasserstein(y, y[:, :3])


def test_wasserstein_to_the_exact_1d_law():
    bed = GaussianMixture(
        torch.tensor([[-1.0], [0.8]], dtype=F64),
        torch.tensor([0.25, 0.4], dtype=F64),
        torch.tensor([0.3, 0.7], dtype=F64),
    )
    x = bed.sample(40000, generator=torch.Generator().manual_seed(6))
    assert wasserstein_1d_to_truth(bed, x) < 0.015
    assert wasserstein_1d_to_truth(bed, x + 0.3) == pytest.approx(0.3, abs=0.015)  # W1 of a shift is |c|
    with pytest.raises(DiffsampleError):
        wasserstein_1d_to_truth(ring2d(), torch.zeros(4, 2))


def test_weights_moments_and_likelihood_of_the_ring():
    ring = ring2d()
    on_first = ring.means[:1].expand(40, 2).clone()
    assert weight_tv(ring, on_first) == pytest.approx(1 - 1 / 8)
    torch.testing.assert_close(component_weights(ring, on_first), torch.eye(8, dtype=F64)[0])
    mean, cov = exact_moments(ring)
    torch.testing.assert_close(mean, torch.zeros(2, dtype=F64), atol=1e-15, rtol=0)
    torch.testing.assert_close(cov, (0.5 + 0.05**2) * torch.eye(2, dtype=F64), atol=1e-15, rtol=1e-14)
    x = ring.sample(20000, generator=torch.Generator().manual_seed(7))
    errors = moment_errors(ring, x)
    assert errors["mean"] < 0.02 and errors["cov_rel"] < 0.03
    assert true_log_likelihood(ring, x) == pytest.approx(float(ring.log_prob(x, 0.0).mean()))
    bed = ExposureBiasDenoiser(ring)
    report = distribution_report(bed, x)
    assert set(report) == {"sw", "loglik", "weight_tv", "mean_err", "cov_rel"} and report["weight_tv"] < 0.02


def test_stochastic_bench_rows():
    rows = run_stochastic_bench(["ring2d-misfit"], nfes=(10,), n_samples=200)
    methods = [r.method for r in rows]
    assert methods[:3] == ["ode-best", "restart-default", "restart-best"] and methods[-1] == "exact draws"
    assert {"ddpm", "euler_ancestral", "dpmpp_2m_sde", "dpmpp_3m_sde", "edm", "pc"} <= set(methods)
    assert all(r.nfe <= 10 and math.isfinite(r.sw1) for r in rows)
    assert "| ring2d-misfit | 10 | ode-best |" in format_stochastic_table(rows)
