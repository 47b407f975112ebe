"""Backward passes and auxiliary calls are counted apart from NFE, through transforms of both kinds."""

from __future__ import annotations

import torch

from diffsample.denoisers import Cost, as_denoiser
from diffsample.transforms import Transform, cfg


class _GradientStep(Transform):
    """A toy gradient transform: one classifier call and one backward pass per call."""

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: object) -> torch.Tensor:
        self.count_auxiliary()
        self.count_backward()
        return self.inner(x, sigma)


def test_cost_of_a_plain_denoiser_counts_forward_calls_only() -> None:
    d = as_denoiser(lambda x, s: 0.5 * x)
    d(torch.ones(3, 2), 1.0)
    assert d.cost() == Cost(nfe=1, calls=1, backward_passes=0, auxiliary_calls=0)


def test_gradient_costs_read_through_and_add_up_under_guidance() -> None:
    base = as_denoiser(lambda x, s, **kw: 0.5 * x)
    grad = _GradientStep(base)
    guided = cfg(grad, 3.0, uncond=as_denoiser(lambda x, s: 0.25 * x))
    guided(torch.ones(4, 2), 1.0)
    assert grad.cost() == Cost(nfe=1, calls=1, backward_passes=1, auxiliary_calls=1)
    assert guided.cost() == Cost(nfe=2, calls=2, backward_passes=1, auxiliary_calls=1)
    guided.reset_counter()
    assert guided.cost() == Cost()
    assert (Cost(1, 1, 1, 1) + Cost(2, 2, 0, 3)) == Cost(3, 3, 1, 4)
