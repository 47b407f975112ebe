"""The digits model on Stable Diffusion's β table (``variant="sd"``): a second VP-ε network for the defaults'
selection (``benchmarks.defaults_bench``), on the span a Stable Diffusion-style model walks.

The exact answer is the optimal denoiser of the digits (the empirical data as point masses,
:class:`~diffsample.testbeds.mixture.EmpiricalDenoiser`), which an unconditional model trained on them
approximates. Measured on 300 noised digits (seed 0): mean squared error 0.0029 / 0.030 / 0.024 / 0.0037 / 0.00027
at σ = 0.1 / 0.5 / 1 / 2 / 10 (the DDPM-table model: 0.0043 / 0.037 / 0.030 / 0.0055 / 0.00038).
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("sklearn")

from diffsample import models  # noqa: E402
from diffsample.model_family import model_family  # noqa: E402
from diffsample.schedules import DiscreteVP  # noqa: E402
from diffsample.testbeds.mixture import EmpiricalDenoiser  # noqa: E402


def test_sd_model_is_the_default_recipe_on_stable_diffusions_table():
    cfg = models.model_config(False, variant="sd")
    default = models.model_config(False)
    assert cfg["name"] == "digits_uncond_sd" and not cfg["conditional"]
    assert cfg["schedule"]["beta_schedule"] == "scaled_linear"
    assert (cfg["schedule"]["beta_start"], cfg["schedule"]["beta_end"]) == (0.00085, 0.012)
    for key in ("parameterization", "data", "architecture"):
        assert cfg[key] == default[key]
    for key in ("objective", "batch_size", "lr", "optimizer", "ema_decay"):
        assert cfg["training"][key] == default["training"][key]
    den = models.load_digits_model(False, variant="sd")
    sd_table = DiscreteVP(beta_schedule="scaled_linear")
    assert model_family(den) == "vp_eps"
    assert den.noise_schedule.sigma_min == pytest.approx(float(sd_table.sigma_min))  # 0.0292
    assert den.noise_schedule.sigma_max == pytest.approx(float(sd_table.sigma_max))  # 14.61
    assert den.noise_schedule.sigma_max < 15 < models.load_digits_model(False).noise_schedule.sigma_max


@torch.no_grad()
def test_sd_model_is_close_to_the_exact_digits_denoiser_over_its_span():
    x, _ = models.digits_data()
    den = models.load_digits_model(False, variant="sd")
    bed = EmpiricalDenoiser(x.reshape(-1, 64))
    gen = torch.Generator().manual_seed(0)
    x0 = x[torch.randperm(x.shape[0], generator=gen)[:300]]
    for sigma, bound in ((0.1, 0.006), (0.5, 0.045), (1.0, 0.04), (2.0, 0.008), (10.0, 0.001)):
        noisy = x0 + sigma * torch.randn(x0.shape, generator=gen)
        level = torch.full((300,), sigma, dtype=torch.float64)
        exact = bed(noisy.reshape(-1, 64).double(), level).reshape(-1, 1, 8, 8).float()
        err = (den(noisy, torch.full((300,), sigma)) - exact).pow(2).mean().item()
        assert err < bound, (sigma, err)
