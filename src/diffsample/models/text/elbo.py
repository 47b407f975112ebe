"""The MDLM training objective and held-out bound for a time-free masked diffusion model.

Sahoo et al. 2024 ("Simple and effective masked diffusion language models", MDLM), eq. 10–11, in continuous
time: with the masking schedule ``α_t`` (a token is visible at time ``t`` with probability ``α_t``) the negative
log-likelihood of a sequence ``x`` of length ``L`` is bounded by

    −log p(x) ≤ E_{t ~ U(0,1)} E_{z_t ~ q(·|x)} [ −α'_t/(1 − α_t) · Σ_{i : z_t^i = mask} −log p_θ(x^i | z_t) ].

On the linear schedule ``α_t = 1 − t`` the weight is ``1/t`` and each position is masked with probability
``t``. The bound per character (divide by ``L``) is the training loss and, averaged over many ``t`` on
held-out text, the reported NLL (nats/char; bits = nats / ln 2). ``t`` is drawn low-discrepancy
(``t_j = (u + j/B) mod 1`` over the batch, as MDLM does) to lower the variance.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["heldout_nll", "low_discrepancy_times", "mdlm_loss"]


def low_discrepancy_times(batch: int, generator: torch.Generator, t_min: float = 1e-4) -> torch.Tensor:
    """``t_j = (u + j/B) mod 1`` clamped to ``[t_min, 1]``, one ``u ~ U(0,1)`` per batch."""
    u = torch.rand((), generator=generator, dtype=torch.float64)
    t = (u + torch.arange(batch, dtype=torch.float64) / batch) % 1.0
    return t.clamp(min=t_min)


def mdlm_loss(
    net: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    t: torch.Tensor,
    generator: torch.Generator,
    vocab_size: int,
) -> torch.Tensor:
    """Per-sequence MDLM bound per character (module docstring) at times ``t`` ``(B,)``, linear schedule.

    ``net(z) -> (B, L, V)`` logits; ``x`` ``(B, L)`` clean ids; masks drawn from ``generator``.
    """
    masked = torch.rand(x.shape, generator=generator, dtype=torch.float64) < t[:, None]
    z = torch.where(masked, torch.full_like(x, vocab_size), x)
    logp = torch.log_softmax(net(z).float(), dim=-1).gather(-1, x[..., None]).squeeze(-1)
    nll = -(logp * masked).sum(-1)
    return nll / t.to(nll.dtype) / x.shape[1]


@torch.no_grad()
def heldout_nll(
    net: Callable[[torch.Tensor], torch.Tensor],
    windows: torch.Tensor,
    vocab_size: int,
    *,
    draws: int = 8,
    seed: int = 0,
    batch: int = 256,
) -> tuple[float, float]:
    """Mean MDLM bound (nats/char) on ``windows`` ``(N, L)`` and its standard error, ``draws`` times per window."""
    g = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(draws):
        for start in range(0, windows.shape[0], batch):
            x = windows[start : start + batch]
            values.append(mdlm_loss(net, x, low_discrepancy_times(x.shape[0], g), g, vocab_size).double())
    v = torch.cat(values)
    return float(v.mean()), float(v.std() / v.numel() ** 0.5)
