"""The 16×16 digits networks (``digits16_uncond_sd`` and ``digits16_uncond_sd_small``: VP ε on Stable Diffusion's
table; ``digits16_flow``: rectified flow), units of the defaults' selection at the resolution of the networks the
project is measured on.

The exact answer is the optimal denoiser of their training data (:func:`~diffsample.models.digits16_data`, the
digits at 9 placements on a 16×16 canvas, as point masses: :class:`~diffsample.testbeds.mixture.EmpiricalDenoiser`).
Measured on 300 noised images (seed 0), mean squared error at σ = 0.1 / 0.5 / 1 / 2 / 10: ε network 0.0017 / 0.015 /
0.018 / 0.0071 / 0.00051, the smaller ε network of another seed (``digits16_uncond_sd_small``, a third unit of Stable
Diffusion's table) 0.0026 / 0.025 / 0.029 / 0.013 / 0.00071, flow network 0.0021 / 0.014 / 0.018 / 0.0084 / 0.0022.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("sklearn")

from diffsample import models  # noqa: E402
from diffsample.model_family import model_family  # noqa: E402
from diffsample.models.digits_flow import load_digits_flow_model  # noqa: E402
from diffsample.schedules import DiscreteVP, RectifiedFlow  # noqa: E402
from diffsample.testbeds.mixture import EmpiricalDenoiser  # noqa: E402

BOUNDS = {
    "sd16": ((0.1, 0.003), (0.5, 0.023), (1.0, 0.027), (2.0, 0.011), (10.0, 0.001)),
    "sd16_small": ((0.1, 0.004), (0.5, 0.035), (1.0, 0.04), (2.0, 0.018), (10.0, 0.001)),
    "flow16": ((0.1, 0.0035), (0.5, 0.022), (1.0, 0.027), (2.0, 0.013), (10.0, 0.0035)),
}


def test_digits16_data_are_the_digits_upsampled_at_nine_placements():
    x16, labels = models.digits16_data()
    x8, labels8 = models.digits_data()
    assert x16.shape == (9 * 1797, 1, 16, 16) and torch.equal(labels, labels8.repeat(9))
    assert float(x16.min()) >= -1 and float(x16.max()) <= 1
    first = x16[:1797]  # placement (0, 0): the 12×12 digit in the top-left corner, background −1 elsewhere
    assert torch.all(first[:, :, 12:, :] == -1) and torch.all(first[:, :, :, 12:] == -1)
    down = torch.nn.functional.interpolate(first[:, :, :12, :12], size=(8, 8), mode="area")
    own = (down - x8).abs().flatten(1).mean(1)
    other = (down - x8.roll(1, 0)).abs().flatten(1).mean(1)
    assert float((own < other).float().mean()) > 0.95  # the same digits, resampled
    rank = torch.linalg.matrix_rank(x16.flatten(1)[::4].double())
    assert rank > 150  # the placements fill the image space (one placement alone: rank ≤ 64)


def test_the_16x16_models_have_their_families_spans_and_shapes():
    sd16 = models.load_digits_model(False, variant="sd16")
    small = models.load_digits_model(False, variant="sd16_small")
    for den in (sd16, small):
        assert model_family(den) == "vp_eps"
        assert den.noise_schedule.sigma_max == pytest.approx(float(DiscreteVP(beta_schedule="scaled_linear").sigma_max))
    assert models.model_config(False, variant="sd16_small")["architecture"]["width"] == 256
    flow = load_digits_flow_model(name="digits16_flow")
    assert (
        model_family(flow) == "flow" and model_family(load_digits_flow_model(3.0, name="digits16_flow")) == "flow_shift"
    )
    assert flow.noise_schedule.sigma_max == pytest.approx(float(RectifiedFlow().sigma_max))
    x = torch.zeros(2, 1, 16, 16)
    for den in (sd16, flow):
        assert den(x, torch.full((2,), 1.0)).shape == (2, 1, 16, 16)
    with pytest.raises(Exception, match="unknown digits flow model"):
        load_digits_flow_model(name="nonsense")


@torch.no_grad()
@pytest.mark.parametrize("which", ["sd16", "sd16_small", "flow16"])
def test_the_16x16_models_are_close_to_the_exact_denoiser_of_their_data(which):
    x, _ = models.digits16_data()
    den = (
        load_digits_flow_model(name="digits16_flow")
        if which == "flow16"
        else models.load_digits_model(False, variant=which)
    )
    bed = EmpiricalDenoiser(x.reshape(-1, 256))
    gen = torch.Generator().manual_seed(0)
    x0 = x[torch.randperm(x.shape[0], generator=gen)[:300]]
    for sigma, bound in BOUNDS[which]:
        noisy = x0 + sigma * torch.randn(x0.shape, generator=gen)
        level = torch.full((300,), sigma, dtype=torch.float64)
        exact = bed(noisy.reshape(-1, 256).double(), level).reshape(-1, 1, 16, 16).float()
        err = (den(noisy, torch.full((300,), sigma)) - exact).pow(2).mean().item()
        assert err < bound, (sigma, err)
