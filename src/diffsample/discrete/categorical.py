"""Categorical primitives on float64 probabilities ``(…, V)``: truncations, temperature, and exact draws.

Every transform takes probabilities and returns renormalised probabilities of the same shape, so they compose
(``top_p(temperature(p, 0.8), 0.9)``); each keeps at least the most likely token. Ties are broken towards the
lower token id (a stable sort), so a truncation keeps exactly the tokens its rule names.

* :func:`temperature` ``p^{1/T}`` (``T = 0``: the argmax);
* :func:`top_k`; :func:`top_p` nucleus (Holtzman et al. 2020): the smallest most-likely set of mass ``≥ p``;
* :func:`min_p` (Nguyen et al. 2024): keep ``p_i ≥ p_base · max p``;
* :func:`typical` (Meister et al. 2023): the smallest set of mass ``≥ τ``, taken in order of
  ``|−log p_i − H(p)|``;
* :func:`epsilon_cutoff` ``p_i ≥ ε`` and :func:`eta_cutoff` ``p_i ≥ min(η, √η · e^{−H(p)})`` (Hewitt et al. 2022,
  "Truncation sampling as language model desmoothing");
* :func:`top_h` (Potraz et al. 2025, "Top-H decoding"): the greedy most-likely prefix whose renormalised entropy
  stays ``≤ α · H(p)``.

Draws from per-sample uniforms (:mod:`~diffsample.discrete.random`): :func:`inverse_cdf` (one uniform per
draw) and :func:`gumbel_max` (one uniform per category, ``argmax log p_i − log(−log u_i)``). Both are exact in
float64 and never return a zero-probability category. ``gumbel_max(..., precision="float32")`` reproduces the
float32 draw of published masked-diffusion code (``torch.rand`` on a 2⁻²⁴ grid, ``p / −log u`` in float32),
whose truncated tail lowers the effective temperature (Zheng et al. 2024, "Masked diffusion models are secretly
time-agnostic masked models and exploit inaccurate categorical sampling").
"""

from __future__ import annotations

import torch

__all__ = [
    "entropy",
    "epsilon_cutoff",
    "eta_cutoff",
    "gumbel_max",
    "inverse_cdf",
    "min_p",
    "temperature",
    "top_h",
    "top_k",
    "top_p",
    "typical",
]


def _normalise(p: torch.Tensor) -> torch.Tensor:
    return p / p.sum(-1, keepdim=True)


def _xlogx(p: torch.Tensor) -> torch.Tensor:
    return torch.where(p > 0, p * torch.log(torch.where(p > 0, p, 1.0)), torch.zeros_like(p))


def entropy(p: torch.Tensor) -> torch.Tensor:
    """``H(p) = −Σ p_i log p_i`` in nats over the last dimension."""
    return -_xlogx(p.to(torch.float64)).sum(-1)


def _keep_ranked(p: torch.Tensor, key: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Keep the ``count`` categories of smallest ``key`` (stable: lower id first on ties), renormalise."""
    order = torch.sort(key, dim=-1, stable=True).indices
    ranks = torch.empty_like(order).scatter_(-1, order, torch.arange(p.shape[-1]).expand_as(order))
    keep = ranks < count.clamp(min=1)[..., None]
    return _normalise(torch.where(keep, p, torch.zeros_like(p)))


def _keep_where(p: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Keep ``keep`` and the argmax, renormalise."""
    top = torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).bool()
    return _normalise(torch.where(keep | top, p, torch.zeros_like(p)))


def _prefix_count(sorted_p: torch.Tensor, mass: float) -> torch.Tensor:
    """Length of the shortest prefix of ``sorted_p`` whose mass reaches ``mass``."""
    before = sorted_p.cumsum(-1) - sorted_p
    return (before < mass).sum(-1)


def temperature(p: torch.Tensor, t: float) -> torch.Tensor:
    """``p^{1/T} / Σ p^{1/T}``; ``T = 0`` gives the argmax (one-hot)."""
    p = p.to(torch.float64)
    if t < 0:
        raise ValueError(f"temperature must be >= 0, got {t}")
    if t == 0:
        return torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).to(torch.float64)
    return torch.softmax(torch.log(p) / t, dim=-1)


def top_k(p: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` most likely categories."""
    p = p.to(torch.float64)
    return _keep_ranked(p, -p, torch.full(p.shape[:-1], int(k)))


def top_p(p: torch.Tensor, mass: float) -> torch.Tensor:
    """Nucleus: the smallest most-likely set with probability ``≥ mass``."""
    p = p.to(torch.float64)
    return _keep_ranked(p, -p, _prefix_count(torch.sort(p, dim=-1, descending=True, stable=True).values, mass))


def min_p(p: torch.Tensor, p_base: float) -> torch.Tensor:
    """Keep ``p_i ≥ p_base · max_j p_j``."""
    p = p.to(torch.float64)
    return _keep_where(p, p >= p_base * p.max(-1, keepdim=True).values)


def typical(p: torch.Tensor, mass: float) -> torch.Tensor:
    """Locally typical set: order by ``|−log p_i − H(p)|``, keep the shortest prefix of mass ``≥ mass``."""
    p = p.to(torch.float64)
    surprise = torch.where(p > 0, -torch.log(torch.where(p > 0, p, 1.0)), torch.full_like(p, torch.inf))
    key = (surprise - entropy(p)[..., None]).abs()
    order = torch.sort(key, dim=-1, stable=True).indices
    return _keep_ranked(p, key, _prefix_count(p.gather(-1, order), mass))


def epsilon_cutoff(p: torch.Tensor, eps: float) -> torch.Tensor:
    """Keep ``p_i ≥ ε``."""
    p = p.to(torch.float64)
    return _keep_where(p, p >= eps)


def eta_cutoff(p: torch.Tensor, eta: float) -> torch.Tensor:
    """Keep ``p_i ≥ min(η, √η · e^{−H(p)})``."""
    p = p.to(torch.float64)
    cut = torch.clamp(eta**0.5 * torch.exp(-entropy(p)), max=eta)
    return _keep_where(p, p >= cut[..., None])


def top_h(p: torch.Tensor, alpha: float = 0.4) -> torch.Tensor:
    """Greedy Top-H: add categories by decreasing probability while the renormalised prefix's entropy
    ``H_n = log S_n − (Σ_{j≤n} p_j log p_j) / S_n`` (``S_n`` the prefix mass) stays ``≤ α · H(p)``."""
    p = p.to(torch.float64)
    sorted_p = torch.sort(p, dim=-1, descending=True, stable=True).values
    mass = sorted_p.cumsum(-1)
    h_prefix = torch.log(mass) - _xlogx(sorted_p).cumsum(-1) / mass
    over = h_prefix > alpha * entropy(p)[..., None] * (1 + 1e-12) + 1e-15  # rounding: α = 1 keeps all
    first_over = torch.where(over.any(-1), over.int().argmax(-1), torch.full(p.shape[:-1], p.shape[-1]))
    return _keep_ranked(p, -p, first_over)


def inverse_cdf(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The category ``i`` with ``F_{i-1} ≤ u · F_V < F_i`` (``F`` the float64 cumulative sum): one uniform per
    draw, ``u`` shaped like ``p`` without its last dimension. Never a zero-probability category."""
    p = p.to(torch.float64)
    cdf = p.cumsum(-1)
    target = (u.to(torch.float64) * cdf[..., -1])[..., None]
    idx = torch.searchsorted(cdf.contiguous(), target.contiguous(), right=True)[..., 0]
    last = p.shape[-1] - 1 - (p.flip(-1) > 0).int().argmax(-1)  # rounding at the top end
    return torch.minimum(idx, last)


def gumbel_max(p: torch.Tensor, u: torch.Tensor, precision: str = "float64") -> torch.Tensor:
    """``argmax_i log p_i + G_i`` with ``G_i = −log(−log u_i)``, ``u`` shaped like ``p`` (module docstring).

    ``precision="float32"`` is the published float32 form ``argmax p_i / (−log(u_i + 10⁻¹⁰))`` with ``u`` on
    ``torch.rand``'s 2⁻²⁴ grid, kept to reproduce its bias; ``"float64"`` is exact.
    """
    if precision == "float64":
        p = p.to(torch.float64)
        logp = torch.where(p > 0, torch.log(torch.where(p > 0, p, 1.0)), torch.full_like(p, -torch.inf))
        return (logp - torch.log(-torch.log(u.to(torch.float64)))).argmax(-1)
    if precision == "float32":
        u32 = (torch.floor(u.to(torch.float64) * 2.0**24) * 2.0**-24).to(torch.float32)
        return (p.to(torch.float32) / -torch.log(u32 + 1e-10)).argmax(-1)
    raise ValueError(f"precision must be 'float64' or 'float32', got {precision!r}")
