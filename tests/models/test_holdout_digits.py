"""The held-out digits networks (``variant="holdout"``, DDPM table; ``variant="sd_holdout"``, Stable Diffusion's
table, conditional): smaller networks of another seed that the defaults' selection never sees, for its figures
(``benchmarks.defaults_bench.HELD_OUT_NETWORKS``).

Checked against the exact answer, the optimal denoiser of the digits (the empirical data as point masses,
:class:`~diffsample.testbeds.mixture.EmpiricalDenoiser`), which an unconditional model — and the conditional one
under its null label — approximates.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("sklearn")

from diffsample import models  # noqa: E402
from diffsample.generate import FAMILY_TABLES, SHORT_SPAN_TABLES, default_choice  # noqa: E402
from diffsample.model_family import model_family, short_span  # noqa: E402
from diffsample.testbeds.mixture import EmpiricalDenoiser  # noqa: E402

CASES = [(False, "holdout", "linear"), (True, "sd_holdout", "scaled_linear")]
BOUNDS = {  # mean squared error to the exact denoiser at σ = 0.1, 0.5, 1, 2, 10
    "holdout": (0.006, 0.045, 0.04, 0.008, 0.001),
    "sd_holdout": (0.007, 0.055, 0.055, 0.015, 0.0015),
}


@pytest.mark.parametrize(("conditional", "variant", "table"), CASES)
def test_held_out_networks_differ_from_the_selections_and_take_their_spans_table(conditional, variant, table):
    cfg = models.model_config(conditional, variant=variant)
    shipped = models.model_config(False, variant="sd" if table == "scaled_linear" else "default")
    assert cfg["schedule"]["beta_schedule"] == table and cfg["conditional"] == conditional
    assert cfg["architecture"]["width"] < shipped["architecture"]["width"]  # another network, not a retrain
    assert cfg["training"]["seed"] != shipped["training"]["seed"]
    den = models.load_digits_model(conditional, variant=variant)
    hi = float(den.noise_schedule.sigma_max)
    assert model_family(den) == "vp_eps" and short_span("vp_eps", hi) == (table == "scaled_linear")
    tables = SHORT_SPAN_TABLES if table == "scaled_linear" else FAMILY_TABLES
    assert default_choice(8, "vp_eps", sigma_max=hi) == next(c for limit, c in tables["vp_eps"] if limit >= 8)


@pytest.mark.parametrize(("conditional", "variant", "table"), CASES)
@torch.no_grad()
def test_held_out_networks_are_close_to_the_exact_digits_denoiser(conditional, variant, table):
    """Measured on 300 noised digits (seed 0), mean squared error at σ = 0.1 / 0.5 / 1 / 2 / 10: the DDPM-table
    network 0.0039 / 0.034 / 0.028 / 0.0047 / 0.00036 (the shipped ``digits_uncond``: 0.0043 / 0.037 / 0.030 /
    0.0055 / 0.00038); the SD-table one under its null label 0.0046 / 0.042 / 0.041 / 0.010 / 0.00095, a weaker
    unconditional model than the shipped ``digits_uncond_sd`` (0.0029 / 0.030 / 0.024 / 0.0037 / 0.00027)."""
    x, _ = models.digits_data()
    den = models.load_digits_model(conditional, variant=variant)
    bed = EmpiricalDenoiser(x.reshape(-1, 64))
    gen = torch.Generator().manual_seed(0)
    x0 = x[torch.randperm(x.shape[0], generator=gen)[:300]]
    kwargs = {"class_labels": torch.full((300,), models.NULL_LABEL)} if conditional else {}
    for sigma, bound in zip((0.1, 0.5, 1.0, 2.0, 10.0), BOUNDS[variant], strict=True):
        noisy = x0 + sigma * torch.randn(x0.shape, generator=gen)
        level = torch.full((300,), sigma, dtype=torch.float64)
        exact = bed(noisy.reshape(-1, 64).double(), level).reshape(-1, 1, 8, 8).float()
        err = (den(noisy, torch.full((300,), sigma), **kwargs) - exact).pow(2).mean().item()
        assert err < bound, (sigma, err)
