"""Distances between a law over the sequences of a :class:`~.chain.MarkovChain` and the chain itself.

A law is a ``(V^L,)`` float64 vector in :func:`~.chain.encode` order: exact (:func:`~.laws.exact_law`) or
empirical (:func:`empirical_law`). All values in nats; rates are per token; the KL values are clamped at 0 (a
law equal to the target gives ±1e-17 from rounding).

* ``tv`` ``½ Σ |q − p|``; ``kl`` ``KL(q ‖ p) = Σ q log(q/p)``;
* ``entropy_rate`` ``H(q) / L``; ``nll`` ``−E_q log p(x) / L`` (the target's own value is its entropy rate);
* ``transition_kl_rate`` ``Σ_a n_q(a) KL(T_q(a, ·) ‖ T(a, ·)) / (L − 1)``, with ``n_q(a, b)`` the expected
  count of the bigram ``ab`` under ``q`` and ``T_q = n_q(a, ·)/n_q(a)`` (0 for any law with the chain's
  transitions);
* ``monte_carlo_tv``: the TV that ``n`` exact draws from a law show against it (the error bar of an estimate);
* ``unigram_error`` ``½ Σ_v |q̄(v) − p̄(v)|``, ``q̄`` the token frequencies averaged over positions.
"""

from __future__ import annotations

import math

import torch

from .chain import MarkovChain, encode

__all__ = ["chain_metrics", "empirical_law", "kl", "monte_carlo_tv", "tv"]


def empirical_law(chain: MarkovChain, x: torch.Tensor) -> torch.Tensor:
    """The empirical law of ``(N, L)`` sequences."""
    counts = torch.bincount(encode(x, chain.vocab_size), minlength=chain.vocab_size**chain.length)
    return counts.to(torch.float64) / x.shape[0]


def _xlogy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.where(x > 0, x * torch.log(torch.where(x > 0, y, 1.0)), torch.zeros_like(x))


def tv(q: torch.Tensor, p: torch.Tensor) -> float:
    """``½ Σ |q − p|``."""
    return float(0.5 * (q - p).abs().sum())


def kl(q: torch.Tensor, p: torch.Tensor) -> float:
    """``KL(q ‖ p)`` (``inf`` when ``q`` puts mass where ``p`` has none)."""
    if ((q > 0) & (p <= 0)).any():
        return float("inf")
    return max(0.0, float((_xlogy(q, q) - _xlogy(q, p)).sum()))


def monte_carlo_tv(q: torch.Tensor, n: int) -> float:
    """The expected TV between ``q`` and the empirical law of ``n`` draws from it: the Monte-Carlo floor.

    Each count ``K_k`` is binomial, and de Moivre's mean absolute deviation is exact:
    ``E|K − n q| = 2 m C(n, m) q^m (1 − q)^{n−m+1}`` with ``m = ⌊n q⌋ + 1``; the floor is
    ``½ Σ_k E|K_k − n q_k| / n``. An estimated TV is resolved only above it.
    """
    q = q[q > 0].to(torch.float64)
    m = torch.floor(n * q) + 1
    log_choose = math.lgamma(n + 1.0) - torch.lgamma(m + 1) - torch.lgamma(n - m + 1)
    log_mad = math.log(2.0) + torch.log(m) + log_choose + m * torch.log(q) + (n - m + 1) * torch.log1p(-q)
    mad = torch.where(m <= n, torch.exp(log_mad), torch.zeros_like(q))  # q = 1: K = n always
    return float(0.5 * mad.sum() / n)


def chain_metrics(chain: MarkovChain, q: torch.Tensor) -> dict[str, float]:
    """All metrics of the law ``q`` against ``chain`` (module docstring)."""
    seqs, p = chain.sequences(), chain.law()
    v, n = chain.vocab_size, chain.length
    bigrams = torch.zeros(v * v, dtype=torch.float64)
    for i in range(n - 1):
        bigrams.index_add_(0, seqs[:, i] * v + seqs[:, i + 1], q)
    bigrams = bigrams.reshape(v, v)
    from_a = bigrams.sum(-1, keepdim=True)
    fitted = bigrams / from_a.clamp(min=1e-300)
    row_kl = (_xlogy(fitted, fitted) - _xlogy(fitted, chain.transition)).sum(-1)
    unigram_q = torch.zeros(v, dtype=torch.float64)
    unigram_p = torch.zeros(v, dtype=torch.float64)
    for i in range(n):
        unigram_q.index_add_(0, seqs[:, i], q)
        unigram_p.index_add_(0, seqs[:, i], p)
    return {
        "tv": tv(q, p),
        "kl": kl(q, p),
        "entropy_rate": float(-_xlogy(q, q).sum()) / n,
        "nll": float(-(q * chain.log_prob(seqs)).sum()) / n,
        "transition_kl_rate": max(0.0, float((from_a[:, 0] * row_kl).sum()) / (n - 1)),
        "unigram_error": tv(unigram_q / n, unigram_p / n),
    }
