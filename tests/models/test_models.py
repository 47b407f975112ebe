"""The shipped digits models: loading, denoising quality, guidance, classifier and Fréchet distance.

Reference answers come from outside the model code: the data itself (a denoiser's error must fall far
below the noise it removes), the closed-form Fréchet distance of diagonal Gaussians and scipy's
``sqrtm``, the held-out split of the classifier, and the shipped JSON records.
"""

from __future__ import annotations

import sys

import pytest
import torch

pytest.importorskip("sklearn")

import diffsample  # noqa: E402
from diffsample import models  # noqa: E402
from diffsample.errors import DiffsampleError  # noqa: E402
from diffsample.models._io import load_safetensors, save_safetensors  # noqa: E402


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    return models.digits_data()


@pytest.fixture(scope="module")
def uncond() -> diffsample.ModelDenoiser:
    return models.load_digits_model()


@pytest.fixture(scope="module")
def cond() -> diffsample.ModelDenoiser:
    return models.load_digits_model(conditional=True)


def test_digits_data_scaling(digits):
    x, y = digits
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,)
    assert float(x.min()) == -1.0 and float(x.max()) == 1.0
    assert sorted(y.unique().tolist()) == list(range(10))


def test_digits_data_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DiffsampleError, match=r"diffsample\[beds\]"):
        models.digits_data()


def test_safetensors_roundtrip_matches_reference_library(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64), "c": torch.randn(2).half()}
    save_safetensors(tensors, tmp_path / "t.safetensors", {"k": "v"})
    ours = load_safetensors(tmp_path / "t.safetensors")
    for k, v in tensors.items():
        assert torch.equal(ours[k], v)
    st = pytest.importorskip("safetensors.torch")
    theirs = st.load_file(str(tmp_path / "t.safetensors"))
    for k, v in tensors.items():
        assert torch.equal(theirs[k], v)


@pytest.mark.parametrize("conditional", [False, True])
def test_model_loads_with_its_config(conditional):
    cfg = models.model_config(conditional)
    info = models.MODEL_INFO["conditional" if conditional else "unconditional"]
    assert cfg == info
    assert cfg["parameterization"]["prediction"] == "eps"
    assert cfg["schedule"]["beta_schedule"] == "linear" and cfg["schedule"]["num_train_timesteps"] == 1000
    den = models.load_digits_model(conditional)
    assert den.noise_schedule == diffsample.schedules.DiscreteVP(beta_schedule="linear")
    assert sum(p.numel() for p in den.network.parameters()) == cfg["parameters"]


def test_denoiser_output_shape_finite_and_counted(uncond):
    uncond.reset_counter()
    x = 3.0 * torch.randn(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = uncond(x, torch.tensor([80.0, 3.0, 0.5, 0.05, 0.0]))
    assert out.shape == x.shape and bool(torch.isfinite(out).all())
    assert torch.equal(out[4], x[4])  # σ = 0 returns the clean input
    assert uncond.nfe == 1


@pytest.mark.parametrize(("sigma", "vs_sigma"), [(0.1, 0.75), (0.5, 0.5), (1.0, 0.4)])
def test_denoiser_removes_noise_better_than_the_best_linear_denoiser(uncond, digits, sigma, vs_sigma):
    """RMSE of D(x0 + σn) against x0: far below σ (the error of returning the noisy input), and below the
    optimal *linear* denoiser (Wiener filter ``μ + Σ(Σ + σ²I)⁻¹(x − μ)`` fitted on the same data)."""
    x = digits[0].reshape(-1, 64).double()
    mu, cov = x.mean(0), torch.cov(x.T)
    x0 = digits[0][::7]
    noisy = x0 + sigma * torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        rmse = float((uncond(noisy, sigma) - x0).pow(2).mean().sqrt())
    gain = cov @ torch.linalg.inv(cov + sigma**2 * torch.eye(64, dtype=torch.float64))
    wiener = mu + (noisy.reshape(-1, 64).double() - mu) @ gain.T
    rmse_linear = float((wiener - x0.reshape(-1, 64).double()).pow(2).mean().sqrt())
    assert rmse < vs_sigma * sigma
    assert rmse < 0.9 * rmse_linear


def test_eps_interface_is_the_edm_denoiser(cond, digits):
    """ModelDenoiser's x − σ ε̂ path and the network's internal EDM form give the same x̂0."""
    x0 = digits[0][:8]
    sigma = torch.tensor([0.02, 0.1, 0.4, 1.0, 3.0, 10.0, 50.0, 150.0], dtype=torch.float64)
    x = x0 + sigma.float()[:, None, None, None] * torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(8)
    with torch.no_grad():
        via_eps = cond(x, sigma, class_labels=labels)
        direct = cond.network.denoise(x, sigma, class_labels=labels)
    assert torch.allclose(via_eps, direct, atol=2e-4 * float(sigma.max()) / 150 + 1e-4)


def test_unconditional_network_rejects_labels(uncond):
    with pytest.raises(ValueError, match="unconditional"):
        uncond(torch.zeros(2, 1, 8, 8), 1.0, class_labels=torch.tensor([3, 4]))


def test_guided_samples_have_the_asked_class(cond):
    sched = cond.noise_schedule
    sigmas = diffsample.steps.karras(20, sched.sigma_min, sched.sigma_max)
    labels = torch.arange(32) % 10
    guided = diffsample.cfg(
        cond, 2.0, cond_kwargs={"class_labels": labels}, uncond_kwargs={"class_labels": models.NULL_LABEL}, batched=True
    )
    x = sigmas[0].item() * torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = diffsample.sample(guided, x, sigmas, solver="heun")
    assert guided.nfe == 2 * (2 * 20 - 1)
    assert models.class_accuracy(out, labels) >= 0.9


def test_classifier_held_out_accuracy_matches_card(digits):
    x, y = digits
    _, test = models.classifier_split()
    acc = models.class_accuracy(x[test], y[test])
    assert acc == pytest.approx(models.CLASSIFIER_INFO["test_accuracy"], abs=1e-12)
    assert acc >= 0.97


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    a, b = torch.tensor([1.0, 4.0, 0.25]), torch.tensor([9.0, 1.0, 0.25])
    mu = torch.tensor([0.5, -1.0, 2.0])
    got = models.gaussian_frechet_distance(mu, torch.diag(a), torch.zeros(3), torch.diag(b))
    assert got == pytest.approx(float(mu.pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum()), rel=1e-12)


def test_frechet_distance_matches_scipy_sqrtm():
    linalg = pytest.importorskip("scipy.linalg")
    g = torch.Generator().manual_seed(4)
    f1 = torch.randn(200, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    f2 = torch.randn(300, 6, generator=g, dtype=torch.float64) + 0.3
    (m1, c1), (m2, c2) = models.gaussian_fit(f1), models.gaussian_fit(f2)
    root = linalg.sqrtm(c1.numpy() @ c2.numpy()).real
    ref = float((m1 - m2).pow(2).sum() + torch.trace(c1) + torch.trace(c2)) - 2 * float(root.trace())
    assert models.gaussian_frechet_distance(m1, c1, m2, c2) == pytest.approx(ref, rel=1e-8)


def test_frechet_distance_real_split_small_noise_large():
    a, b = models.real_halves()
    floor = models.frechet_distance(a, b)
    noise = models.frechet_distance(torch.randn(500, 1, 8, 8, generator=torch.Generator().manual_seed(5)))
    assert floor < 2.0
    assert noise > 20 * floor
    card = models.MODEL_INFO["unconditional"]["evaluation"]["fd_real_half_vs_half"]
    assert floor == pytest.approx(card, rel=1e-6)
