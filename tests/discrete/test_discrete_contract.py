"""The masked-denoiser contract, masking schedules and seeded uniforms, against closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from diffsample import discrete
from diffsample.discrete import schedules
from diffsample.discrete.random import SeededUniforms
from diffsample.errors import DiffsampleError, ShapeError

V = 3


def _logits(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    base = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float32)
    return base.expand(*z.shape, V) * (1.0 + t[:, None, None].float())


def test_logits_become_float64_softmax_and_visible_positions_carry_their_token() -> None:
    d = discrete.as_masked_denoiser(_logits, V)
    z = torch.tensor([[3, 1, 3], [0, 3, 2]])
    p = d(z, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert p.dtype == torch.float64 and p.shape == (2, 3, V)
    e = torch.exp(torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64))
    assert torch.allclose(p[0, 0], e / e.sum(), atol=1e-7)  # float32 logits, softmax in float64
    assert torch.equal(p[0, 1], torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64))
    assert torch.equal(p[1, 2], torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert d.nfe == 1 and d.rows == 2 and discrete.mask_id(V) == 3


def test_denoiser_checks_shapes_and_ids() -> None:
    d = discrete.FunctionMaskedDenoiser(lambda z, t: torch.zeros(*z.shape, V + 1), V)
    with pytest.raises(ShapeError, match="without the mask"):
        d(torch.full((1, 2), V), 0.5)
    with pytest.raises(ShapeError, match="tokens must lie"):
        discrete.as_masked_denoiser(_logits, V)(torch.tensor([[4, 0]]), 0.5)
    with pytest.raises(ShapeError, match="vocab_size"):
        discrete.as_masked_denoiser(_logits)
    assert isinstance(d, discrete.MaskedDenoiser)


@pytest.mark.parametrize("make", [schedules.linear, schedules.cosine, lambda: schedules.log_linear(1e-3)])
def test_schedules_run_from_visible_to_masked_and_invert(make) -> None:
    s = make()
    t = torch.linspace(0.0, 1.0, 11, dtype=torch.float64)
    a = s.alpha(t)
    assert float(a[0]) == 1.0 and float(a[-1]) <= 1e-3 + 1e-15 and (a[1:] < a[:-1]).all()
    assert torch.allclose(s.inverse(a), t, atol=1e-12)
    # bisection (no closed-form inverse) agrees with the closed form
    assert torch.allclose(schedules.custom(s.alpha_fn).inverse(a), t, atol=1e-12)


def test_reveal_probability_closed_form() -> None:
    s = schedules.cosine()
    t, u = 0.7, 0.4
    a_t, a_s = 1 - math.cos(math.pi / 2 * 0.3), 1 - math.cos(math.pi / 2 * 0.6)
    assert float(s.reveal_probability(t, u)) == pytest.approx((a_s - a_t) / (1 - a_t), rel=1e-14)
    assert float(schedules.linear().reveal_probability(0.25, 0.0)) == 1.0


def test_custom_schedule_is_validated() -> None:
    with pytest.raises(DiffsampleError, match="non-increasing"):
        schedules.custom(lambda t: t)
    with pytest.raises(DiffsampleError, match="log_linear"):
        schedules.log_linear(1.5)


def test_uniforms_are_open_interval_and_per_sample() -> None:
    big, solo = SeededUniforms(7), SeededUniforms(7)
    first = big(5, 1000)
    assert first.dtype == torch.float64 and (first > 0).all() and (first < 1).all()
    assert abs(float(first.mean()) - 0.5) < 4 * (1 / 12 / 5000) ** 0.5
    assert torch.equal(solo(1, 1000)[0], first[0])
    # the k-th draw of sample i depends on (seed_i, k) only: a listed seed reproduces it in another batch
    a = SeededUniforms([11, 12, 13])
    b = SeededUniforms([13])
    a(3, 4)
    b(1, 4)
    assert torch.equal(a(3, 6)[2], b(1, 6)[0])


def test_uniform_seeds_follow_the_one_seed_rule() -> None:
    for bad in [-1, 2**64, "3", 1.5, True]:
        with pytest.raises(DiffsampleError, match="seed"):
            SeededUniforms(bad)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="seeds were given"):
        SeededUniforms([1, 2])(3, 1)


def test_discrete_is_a_lazy_attribute_of_diffsample() -> None:
    import diffsample

    assert diffsample.discrete is discrete and "discrete" in dir(diffsample)
