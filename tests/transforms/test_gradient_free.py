"""Gradient-free classifier guidance (Shenoy et al. 2024) on a labelled mixture with a perfect classifier."""

from __future__ import annotations

import pytest
import torch

from diffsample import sample, steps
from diffsample.errors import DiffsampleError
from diffsample.noise import seeded
from diffsample.testbeds import GaussianMixture, LabelledMixture
from diffsample.transforms import gfcg_reference, gradient_free_guidance

F64 = torch.float64


def _bed() -> LabelledMixture:
    means = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 3.0]], dtype=F64)
    return LabelledMixture(GaussianMixture(means, torch.tensor([0.6, 0.6, 0.5], dtype=F64), [0.4, 0.4, 0.2]))


def _perfect(bed: LabelledMixture):  # the Bayes classifier of clean samples: log r_k(x0, σ = 0)
    return lambda x0: bed.mixture.responsibilities(x0, 0.0).clamp_min(1e-300).log()


def test_reference_class_and_adaptive_ratio() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6]], dtype=F64))
    ref, ratio = gfcg_reference(logits, torch.tensor([0, 0, 2]))
    assert ref.tolist() == [1, 1, 0]  # the most probable class other than the target (first on a tie)
    torch.testing.assert_close(ratio, torch.tensor([0.6, 1.0, 1 / 3], dtype=F64))  # min(1, p_r / p_c)
    with pytest.raises(DiffsampleError, match="labels"):
        gfcg_reference(logits, torch.tensor([0, 3, 1]))


def test_gfcg_with_a_perfect_classifier_follows_the_rule() -> None:
    bed = _bed()
    guided = gradient_free_guidance(bed, _perfect(bed), 1.5, cfg_scale=2.0, uncond_kwargs={"class_labels": 3})
    x = torch.randn(32, 2, dtype=F64, generator=torch.Generator().manual_seed(0)) * 2
    y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(1))
    sigma = torch.full((32,), 0.9, dtype=F64)
    out = guided(x, sigma, class_labels=y)
    d_c = bed(x, sigma, class_labels=y)
    p = bed.mixture.responsibilities(d_c, 0.0)
    others = p.scatter(1, y[:, None], -1.0)
    ref = others.argmax(1)
    omega = 1.5 * (others.max(1).values / p.gather(1, y[:, None])[:, 0]).clamp(max=1.0)
    want = d_c + omega[:, None] * (d_c - bed(x, sigma, class_labels=ref)) + (d_c - bed(x, sigma))
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)
    cost = guided.cost()
    assert (cost.nfe, cost.auxiliary_calls, cost.backward_passes) == (3, 1, 0)


def test_outside_the_interval_only_the_conditional_branch_runs() -> None:
    bed = _bed()
    guided = gradient_free_guidance(bed, _perfect(bed), 2.0, labels=1, interval=(1.0, 10.0))
    x = torch.randn(8, 2, dtype=F64, generator=torch.Generator().manual_seed(2))
    sigma = torch.full((8,), 0.5, dtype=F64)
    torch.testing.assert_close(guided(x, sigma), bed(x, sigma, class_labels=1))
    assert guided.cost().nfe == 1 and guided.cost().auxiliary_calls == 0
    with pytest.raises(DiffsampleError, match="uncond_kwargs"):
        gradient_free_guidance(bed, _perfect(bed), 2.0, cfg_scale=3.0)


@pytest.mark.parametrize("solver", ["dpmpp_2m", "dpmpp_2m_sde"])
def test_gfcg_runs_unchanged_with_ode_and_sde_solvers_and_sharpens_classes(solver: str) -> None:
    bed = _bed()
    sigmas = steps.karras(12, 0.02, 20.0)
    x = sigmas[0] * seeded(4).standard_normal((300, 2), dtype=F64)
    labels = torch.arange(300) % 2  # classes 0 and 1 overlap: the classifier confuses them
    acc = {}
    for scale in (0.0, 2.0):
        guided = gradient_free_guidance(bed, _perfect(bed), scale, labels=labels)
        out = sample(guided, x.clone(), sigmas, solver=solver, noise=seeded(5))
        assert torch.isfinite(out).all()
        acc[scale] = float((bed.mixture.component(out) == labels).double().mean())
        assert guided.cost().nfe == (1 if scale == 0 else 2) * 12
        assert guided.cost().auxiliary_calls == (0 if scale == 0 else 12)
    assert acc[0.0] < 0.97 and acc[2.0] > 0.99  # the conditional law overlaps the rival class; GFCG separates
