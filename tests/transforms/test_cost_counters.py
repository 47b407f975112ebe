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


def test_a_plain_callable_that_declares_two_evaluations_a_call_is_counted_and_budgeted_so():
    """A hand-written guidance wrapper (a plain function object with ``nfe_per_call = 2``): ``generate`` at a budget
    of 8 evaluations calls it 4 times, and the counters count 2 per call; a nonsensical declaration is refused."""
    import pytest

    from diffsample import generate
    from diffsample.errors import BudgetError

    calls = []

    class Guided:
        nfe_per_call = 2

        def __call__(self, x, sigma):
            calls.append(1)
            return 0.5 * x

    wrapped = as_denoiser(Guided())
    assert wrapped.nfe_per_call == 2
    out = generate(Guided(), torch.ones(3, 4), nfe=8, sigma_min=0.01, sigma_max=10.0)
    assert bool(torch.isfinite(out).all()) and len(calls) == 4
    with pytest.raises(BudgetError):
        generate(Guided(), torch.ones(3, 4), nfe=1, sigma_min=0.01, sigma_max=10.0)
    for bad in (0, 1.5, -2):
        fn = Guided()
        fn.nfe_per_call = bad
        with pytest.raises(TypeError, match="nfe_per_call"):
            as_denoiser(fn)
