"""A character n-gram reference model with interpolated Kneser–Ney smoothing, to score generated text.

Interpolated Kneser–Ney (Kneser & Ney 1995; Chen & Goodman 1998, "An empirical study of smoothing techniques
for language modeling", §3.5). For the highest order ``n`` and a context ``h`` of ``n − 1`` tokens,

    P_n(w | h) = max(c(h w) − D_n, 0) / c(h ·) + D_n · N₁₊(h ·) / c(h ·) · P_{n−1}(w | h'),

``h'`` the context without its first token, ``c(h ·) = Σ_w c(h w)`` and ``N₁₊(h ·)`` the number of distinct
tokens seen after ``h``. The lower orders ``k < n`` use the same formula with *continuation counts*
``c_k(g) = N₁₊(· g)``, the number of distinct tokens seen before the ``k``-gram ``g``; the unigram level
interpolates with the uniform distribution ``1/V``. A context never seen (``c(h ·) = 0``) backs off entirely to
``P_{k−1}``. The discount of each order is Ney's estimate ``D_k = n₁ / (n₁ + 2 n₂)`` from the numbers ``n₁, n₂``
of ``k``-grams counted once and twice, unless given. Each level is a proper distribution over the ``V`` tokens.

The first positions of a sequence have a shorter history: position ``j`` is scored at order ``min(n, j + 1)``.
Counting and scoring are vectorised (``k``-grams as base-``V`` integer codes, looked up by binary search).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .categorical import entropy

__all__ = ["KneserNey", "fit_kneser_ney", "sequence_entropy"]


@dataclass(frozen=True)
class _Level:
    """One order ``k``: sorted ``k``-gram codes with their counts, sorted context codes with ``c(h ·)`` and
    ``N₁₊(h ·)``, and the discount."""

    codes: torch.Tensor
    counts: torch.Tensor
    contexts: torch.Tensor
    totals: torch.Tensor
    types: torch.Tensor
    discount: float


def _codes(x: torch.Tensor, k: int, vocab_size: int) -> torch.Tensor:
    """Base-``V`` codes of the ``k``-grams ending at positions ``k − 1 … L − 1`` along the last axis."""
    code = torch.zeros_like(x[..., k - 1 :])
    for i in range(k):
        code = code * vocab_size + x[..., i : x.shape[-1] - k + 1 + i]
    return code


def _lookup(keys: torch.Tensor, values: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """``values[keys == query]`` for each query (0 where the key is absent); ``keys`` sorted."""
    idx = torch.searchsorted(keys, query).clamp(max=max(keys.numel() - 1, 0))
    if keys.numel() == 0:
        return torch.zeros(query.shape, dtype=values.dtype)
    return torch.where(keys[idx] == query, values[idx], torch.zeros((), dtype=values.dtype))


def _ney_discount(counts: torch.Tensor) -> float:
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    return n1 / (n1 + 2 * n2) if n1 + n2 > 0 else 0.5


def _level(codes: torch.Tensor, counts: torch.Tensor, vocab_size: int, discount: float | None) -> _Level:
    contexts, inverse = torch.unique(codes // vocab_size, return_inverse=True)
    totals = torch.zeros(contexts.shape, dtype=torch.float64).index_add_(0, inverse, counts.to(torch.float64))
    types = torch.zeros(contexts.shape, dtype=torch.float64).index_add_(0, inverse, torch.ones_like(totals[inverse]))
    d = _ney_discount(counts) if discount is None else float(discount)
    return _Level(codes, counts.to(torch.float64), contexts, totals, types, d)


@dataclass(frozen=True)
class KneserNey:
    """A fitted interpolated Kneser–Ney model of order ``order`` over ``vocab_size`` tokens (module docstring)."""

    vocab_size: int
    order: int
    levels: tuple[_Level, ...]  # levels[k - 1] is order k

    def _prob(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """``P_k(x_j | x_{j−k+1 … j−1})`` for positions ``j ≥ k − 1`` (last axis of ``x``)."""
        level = self.levels[k - 1]
        codes = _codes(x, k, self.vocab_size)
        c = _lookup(level.codes, level.counts, codes)
        if k == 1:
            total = level.counts.sum()
            return ((c - level.discount).clamp(min=0) + level.discount * level.codes.numel() / self.vocab_size) / total
        lower = self._prob(x[..., 1:], k - 1)
        ctx = codes // self.vocab_size
        total = _lookup(level.contexts, level.totals, ctx)
        types = _lookup(level.contexts, level.types, ctx)
        seen = total > 0
        safe = torch.where(seen, total, torch.ones_like(total))
        mixed = ((c - level.discount).clamp(min=0) + level.discount * types * lower) / safe
        return torch.where(seen, mixed, lower)

    def log_probs(self, x: torch.Tensor) -> torch.Tensor:
        """``log P(x_j | history)`` (nats) for every position of ``x`` ``(…, L)``, position ``j`` at order
        ``min(n, j + 1)``."""
        x = x.to(torch.int64)
        if ((x < 0) | (x >= self.vocab_size)).any():
            raise ValueError(f"tokens must lie in [0, {self.vocab_size})")
        out = torch.empty(x.shape, dtype=torch.float64)
        length = x.shape[-1]
        for j in range(min(self.order - 1, length)):  # the short-history head, at order j + 1
            out[..., j] = self._prob(x[..., : j + 1], j + 1)[..., -1]
        if length >= self.order:
            out[..., self.order - 1 :] = self._prob(x, self.order)
        return out.log()

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per token (nats) of each sequence of ``x`` ``(…, L)``."""
        return -self.log_probs(x).mean(-1)


def fit_kneser_ney(
    stream: torch.Tensor, vocab_size: int, order: int = 5, discounts: tuple[float, ...] | None = None
) -> KneserNey:
    """Fit on a 1-D token stream (module docstring); ``discounts[k − 1]`` fixes order ``k``'s, else Ney's."""
    if order < 1:
        raise ValueError(f"order must be ≥ 1, got {order}")
    if vocab_size**order >= 2**62:
        raise ValueError(f"vocab_size ** order = {vocab_size}^{order} overflows int64 codes")
    stream = stream.to(torch.int64).reshape(-1)
    levels: list[_Level] = []
    top, top_counts = torch.unique(_codes(stream, order, vocab_size), return_counts=True)
    grams, counts = top, top_counts
    for k in range(order, 0, -1):
        d = None if discounts is None else discounts[k - 1]
        levels.append(_level(grams, counts, vocab_size, d))
        if k > 1:  # continuation counts of the (k−1)-grams: distinct left extensions among the k-gram types
            grams, counts = torch.unique(grams % vocab_size ** (k - 1), return_counts=True)
    return KneserNey(vocab_size, order, tuple(reversed(levels)))


def sequence_entropy(x: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Entropy (nats) of each sequence's own token frequencies, ``x`` ``(B, L)`` → ``(B,)``.

    The diversity figure of MDLM-style evaluations (Zheng et al. 2024 show that float32 Gumbel draws lower it):
    repetitive text has a low value; natural text of length 64 here about 2.9 nats.
    """
    freq = torch.nn.functional.one_hot(x.to(torch.int64), vocab_size).to(torch.float64).mean(-2)
    return entropy(freq)
