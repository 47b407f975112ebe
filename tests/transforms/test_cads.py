"""CADS (Sadat et al. 2024): the annealing schedule, the rescale identities, and the transform on an exact bed."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from diffsample import sample, steps
from diffsample.denoisers import Denoiser
from diffsample.errors import DiffsampleError
from diffsample.noise import seeded
from diffsample.schedules import DiscreteVP
from diffsample.transforms import KeyedNormals, anneal_condition, cads, cads_gamma, cfg

F64 = torch.float64


class EmbeddingGaussian(Denoiser):
    """Exact denoiser of ``x0 | e ~ N(A e, s² I)`` (a continuous condition); ``e = None`` is ``N(0, (s² + 1) I)``."""

    def __init__(self, matrix: torch.Tensor, s: float) -> None:
        super().__init__()
        self.matrix, self.s = matrix, s

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, embedding: Any = None, **kw: Any) -> torch.Tensor:
        if embedding is None:
            mean, var = torch.zeros_like(x), self.s**2 + 1.0
        else:
            mean, var = embedding.to(x.dtype) @ self.matrix.T.to(x.dtype), self.s**2
        shrink = (var / (var + sigma.to(x.dtype).square()))[:, None]
        return mean + shrink * (x - mean)


def _time(sigma: torch.Tensor) -> torch.Tensor:  # σ in [0.01, 100] ↦ t in [0, 1] log-linearly
    return ((sigma.to(F64).log() - torch.log(torch.tensor(0.01, dtype=F64))) / torch.log(torch.tensor(1e4))).clamp(0, 1)


def test_gamma_is_the_papers_piecewise_linear_schedule() -> None:
    t = torch.tensor([0.0, 0.3, 0.6, 0.7, 0.75, 0.9, 0.95, 1.0], dtype=F64)
    want = torch.tensor([1.0, 1.0, 1.0, 2 / 3, 0.5, 0.0, 0.0, 0.0], dtype=F64)
    torch.testing.assert_close(cads_gamma(t, 0.6, 0.9), want)
    with pytest.raises(DiffsampleError, match="tau1 < tau2"):
        cads_gamma(t, 0.9, 0.6)


def test_anneal_condition_identities() -> None:
    g = torch.Generator().manual_seed(0)
    y, n = torch.randn(6, 16, dtype=F64, generator=g) * 2 + 1, torch.randn(6, 16, dtype=F64, generator=g)
    gamma = torch.tensor([1.0, 0.0, 0.25, 0.5, 0.75, 0.0], dtype=F64)
    raw = anneal_condition(y, gamma, n, 0.3, psi=0.0)
    torch.testing.assert_close(raw[0], y[0])  # γ = 1: the condition itself
    torch.testing.assert_close(raw[1], 0.3 * n[1])  # γ = 0: pure scaled noise
    torch.testing.assert_close(raw[2], 0.5 * y[2] + 0.3 * 0.75**0.5 * n[2])
    full = anneal_condition(y, gamma, n, 0.3, psi=1.0)
    torch.testing.assert_close(full[1:].mean(1), y[1:].mean(1))  # ψ = 1: y's per-sample mean and std
    torch.testing.assert_close(full[1:].std(1, correction=0), y[1:].std(1, correction=0))
    half = anneal_condition(y, gamma, n, 0.3, psi=0.5)
    torch.testing.assert_close(half, 0.5 * full + 0.5 * raw)  # ψ mixes linearly
    with pytest.raises(DiffsampleError, match="psi"):
        anneal_condition(y, gamma, n, 0.3, psi=1.5)


def test_cads_transform_anneals_the_embedding_exactly() -> None:
    bed = EmbeddingGaussian(torch.tensor([[1.0, 0.5], [-0.5, 1.0]], dtype=F64), 0.3)
    emb = torch.tensor([[1.0, -1.0], [0.5, 2.0], [2.0, 0.0]], dtype=F64)
    den = cads(bed, key="embedding", time=_time, tau1=0.6, tau2=0.9, noise_scale=0.5, psi=0.0, seeds=4)
    x = torch.randn(3, 2, dtype=F64, generator=torch.Generator().manual_seed(1))
    low = torch.full((3,), 0.1, dtype=F64)  # t = 0.25 < τ1: the condition untouched
    torch.testing.assert_close(den(x, low, embedding=emb), bed(x, low, embedding=emb))
    high = torch.full((3,), 50.0, dtype=F64)  # t > τ2: γ = 0, the embedding is s·n(σ)
    n = KeyedNormals(4)(high, emb.shape, F64, emb.device)
    torch.testing.assert_close(den(x, high, embedding=emb), bed(x, high, embedding=0.5 * n))
    mid = torch.full((3,), 10 ** (-2 + 4 * 0.75), dtype=F64)  # t = 0.75: γ = 1/2
    n = KeyedNormals(4)(mid, emb.shape, F64, emb.device)
    annealed = 0.5**0.5 * emb + 0.5 * 0.5**0.5 * n
    torch.testing.assert_close(den(x, mid, embedding=emb), bed(x, mid, embedding=annealed))
    # sample i does not depend on the batch; the call costs what the bed costs
    torch.testing.assert_close(den(x[:1], mid[:1], embedding=emb[:1]), den(x, mid, embedding=emb)[:1])
    assert den.nfe_per_call == 1
    with pytest.raises(DiffsampleError, match="embedding"):
        den(x, mid)
    with pytest.raises(DiffsampleError, match="time"):
        cads(bed, key="embedding")


def test_cads_takes_the_time_from_a_noise_schedule() -> None:
    sched = DiscreteVP(beta_schedule="linear")
    bed = EmbeddingGaussian(torch.eye(2, dtype=F64), 0.3)
    den = cads(bed, key="embedding", time=sched, tau1=0.6, tau2=0.9)
    sigma = sched.sigma_space(torch.tensor([0.0, 0.75 * 999, 999.0], dtype=F64))
    torch.testing.assert_close(den.gamma(sigma), torch.tensor([1.0, 0.5, 0.0], dtype=F64))


@pytest.mark.parametrize("solver", ["dpmpp_2m", "euler_ancestral"])
def test_cads_with_cfg_runs_unchanged_with_ode_and_sde_solvers(solver: str) -> None:
    bed = EmbeddingGaussian(torch.tensor([[1.0, 0.5], [-0.5, 1.0]], dtype=F64), 0.3)
    emb = torch.tensor([1.0, -1.0], dtype=F64).expand(64, 2)
    sigmas = steps.karras(10, 0.01, 100.0)
    x = sigmas[0] * seeded(2).standard_normal((64, 2), dtype=F64)
    annealed = cads(bed, key="embedding", time=_time, noise_scale=0.5, seeds=1)
    guided = cfg(annealed, 2.0, uncond=bed, cond_kwargs={"embedding": emb})
    out = sample(guided, x, sigmas, solver=solver, noise=seeded(3))
    assert torch.isfinite(out).all()
    assert guided.cost().nfe == 2 * 10
    # the condition is reached: samples sit at A e = (0.5, -1.5) within a few s
    assert (out.mean(0) - torch.tensor([0.5, -1.5], dtype=F64)).abs().max() < 0.3
