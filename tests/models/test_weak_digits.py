"""The weak conditional digits model (autoguidance's guiding network): it loads like the others, and it is
measurably worse than the shipped conditional model against the exact answer.

The exact answer: the optimal denoiser of the digits of class ``k`` (the empirical data of that class as point
masses, :class:`~diffsample.testbeds.mixture.EmpiricalDenoiser`), which a class-conditional model trained on
the digits approximates. Measured on 300 noised digits (seed 0): the shipped model's mean squared error to it
is 0.032 / 0.025 / 0.0075 at σ = 0.5 / 1 / 2, the weak model's 0.060 / 0.058 / 0.027 (1.9–3.5× larger).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("sklearn")

import diffsample  # noqa: E402
from diffsample import models  # noqa: E402
from diffsample.errors import DiffsampleError  # noqa: E402
from diffsample.models.digits import MODEL_VARIANTS, model_name  # noqa: E402
from diffsample.testbeds.mixture import EmpiricalDenoiser  # noqa: E402


def test_weak_model_loads_with_its_config_and_is_smaller_and_shorter_trained():
    weak_cfg = models.model_config(True, variant="weak")
    good_cfg = models.model_config(True)
    assert weak_cfg["name"] == "digits_cond_weak" == model_name(True, "weak")
    assert weak_cfg["conditional"] and weak_cfg["null_label"] == models.NULL_LABEL
    # same recipe: data, schedule, parameterisation, label dropout, noise-level sampling
    for key in ("schedule", "parameterization", "data"):
        assert weak_cfg[key] == good_cfg[key]
    for key in ("objective", "sigma_sampling", "label_dropout", "batch_size", "lr", "optimizer"):
        assert weak_cfg["training"][key] == good_cfg["training"][key]
    # deliberately weaker: fewer parameters and fewer training steps
    assert weak_cfg["parameters"] * 10 < good_cfg["parameters"]
    assert weak_cfg["training"]["steps"] * 3 < good_cfg["training"]["steps"]
    den = models.load_digits_model(conditional=True, variant="weak")
    assert isinstance(den, diffsample.ModelDenoiser)
    assert sum(p.numel() for p in den.network.parameters()) == weak_cfg["parameters"]
    x = torch.zeros(2, 1, 8, 8)
    assert den(x, torch.tensor([1.0, 1.0]), class_labels=torch.tensor([3, models.NULL_LABEL])).shape == x.shape


def test_variant_errors_name_the_choices():
    with pytest.raises(DiffsampleError, match="valid variants: default, weak"):
        models.load_digits_model(True, variant="tiny")
    with pytest.raises(DiffsampleError, match="no unconditional model; it has: conditional"):
        models.load_digits_model(False, variant="weak")
    assert set(MODEL_VARIANTS) == {"default", "weak", "sd", "sd16", "sd16_small", "holdout", "sd_holdout"}


@torch.no_grad()
def test_weak_model_is_measurably_worse_against_the_exact_class_denoiser():
    x, y = models.digits_data()
    good = models.load_digits_model(conditional=True)
    weak = models.load_digits_model(conditional=True, variant="weak")
    gen = torch.Generator().manual_seed(0)
    idx = torch.randperm(x.shape[0], generator=gen)[:300]
    x0, labels = x[idx], y[idx]
    beds = {k: EmpiricalDenoiser(x[y == k].reshape(-1, 64)) for k in range(10)}
    for sigma in (0.5, 1.0, 2.0):
        noisy = x0 + sigma * torch.randn(x0.shape, generator=gen)
        exact = torch.empty_like(noisy)
        for k, bed in beds.items():
            rows = labels == k
            flat = noisy[rows].reshape(-1, 64).double()
            level = torch.full((flat.shape[0],), sigma, dtype=torch.float64)
            exact[rows] = bed(flat, level).reshape(-1, 1, 8, 8).float()
        s = torch.full((x0.shape[0],), sigma)
        err_good = (good(noisy, s, class_labels=labels) - exact).pow(2).mean().item()
        err_weak = (weak(noisy, s, class_labels=labels) - exact).pow(2).mean().item()
        assert err_good < 0.04
        assert err_weak > 1.5 * err_good, (sigma, err_good, err_weak)
