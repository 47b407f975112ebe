"""Reliability: every bad input to sample() is a DiffsampleError naming it, never a bare traceback (issue #11)."""

from __future__ import annotations

import pytest
import torch

import diffsample as ds
from diffsample.errors import DiffsampleError, NonFiniteError, SigmaError
from diffsample.parameterization import ModelDenoiser

SIGMAS = torch.tensor([10.0, 1.0, 0.1, 0.0], dtype=torch.float64)


def shrink(x, sigma):
    return x / (1 + sigma.reshape(-1, *[1] * (x.dim() - 1)) ** 2)


def test_sigma_beyond_float32_range():
    x = torch.zeros(2, 3)
    with pytest.raises(SigmaError, match="beyond the range.*float32"):
        ds.sample(shrink, x, torch.tensor([1e39, 1.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("value, word", [(float("nan"), "NaN"), (float("inf"), "Inf")])
def test_non_finite_x_is_named_as_such(value, word):
    x = torch.ones(2, 3)
    x[1, 0] = value
    with pytest.raises(DiffsampleError, match=f"x contains {word}"):
        ds.sample(shrink, x, SIGMAS)


def test_noise_source_nan_is_named_as_such():
    seeded = ds.noise.seeded(0)

    def bad_noise(x, sigma=None, sigma_next=None):
        z = seeded(x, sigma, sigma_next)
        return z * float("nan") if sigma is not None and sigma < 5 else z

    x = ds.noise.seeded(1).initial((2, 3), 10.0)
    with pytest.raises(NonFiniteError, match=r"noise source returned NaN/Inf at step 1 \(sigma=1\)"):
        ds.sample(shrink, x, SIGMAS, solver="euler_ancestral", noise=bad_noise)


def test_guarded_noise_keeps_draws_and_attributes():
    x = ds.noise.seeded(1).initial((4, 3), 10.0)
    a = ds.sample(shrink, x, SIGMAS, solver="euler_ancestral", noise=ds.noise.seeded(5))
    b = ds.sample(shrink, x, SIGMAS, solver="euler_ancestral", noise=ds.noise.seeded(5), check_finite=False)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "result",
    [
        lambda x: x.numpy(),
        lambda x: None,
        lambda x: (x.numpy(),),
        lambda x: x.to(torch.complex64),
        lambda x: x.to(torch.int64),
    ],
)
def test_model_returning_non_tensors(result):
    def network(x_t, t):
        return result(x_t)

    den = ModelDenoiser(network, "vp_linear", "eps")
    with pytest.raises(DiffsampleError, match="network returned"):
        ds.sample(den, torch.zeros(2, 3), torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("result", [lambda x: x.numpy(), lambda x: None, lambda x: (x,), lambda x: x * 1j])
def test_plain_denoiser_returning_non_tensors(result):
    with pytest.raises(DiffsampleError, match="returned"):
        ds.sample(lambda x, s: result(x), torch.zeros(2, 3), SIGMAS)


def test_model_cannot_modify_the_callers_x():
    def destructive(x, sigma):
        out = x.clone() * 0.5
        x.mul_(0)
        return out

    x = torch.ones(2, 3)
    keep = x.clone()
    ds.sample(destructive, x, SIGMAS)
    assert torch.equal(x, keep)


def test_float64_x_is_not_modified_either():
    x = torch.ones(2, 3, dtype=torch.float64)
    ds.sample(lambda x, s: x.mul_(0.5), x, SIGMAS)
    assert torch.equal(x, torch.ones(2, 3, dtype=torch.float64))
