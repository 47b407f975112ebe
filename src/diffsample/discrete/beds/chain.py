"""Enumerable Markov chains with their exact masked denoiser (forward–backward), and the ready beds.

A chain of length ``L`` over ``V`` tokens: ``p(x) = π(x_1) Π_i T(x_i, x_{i+1})``. The exact denoiser of
absorbing diffusion is the posterior marginal of each masked position given the visible ones,
``p(x0_i = v | z) ∝ Σ_{x ⊇ z, x_i = v} p(x)``, whatever ``t`` (so it is time-free). Forward–backward computes
it exactly in ``O(L V²)`` per sequence (Rabiner 1989): with evidence ``e_j(v) = 1`` at a masked position and
``[v = z_j]`` at a visible one, ``a_1 = π ⊙ e_1``, ``a_{j+1} = (a_j T) ⊙ e_{j+1}``, ``b_L = 1``,
``b_j = T (e_{j+1} ⊙ b_{j+1})`` and ``p(x0_j | z) ∝ a_j ⊙ b_j`` (each vector rescaled as it goes; the ratio
is unchanged). :func:`enumerated_posterior` is the same quantity by brute force over all ``V^L`` sequences.

Sequences are indexed by :func:`encode` (base ``V``, position 0 most significant), so a law over sequences is a
``(V^L,)`` float64 vector.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ...errors import UnknownNameError
from ..categorical import inverse_cdf
from ..denoiser import CountingMaskedDenoiser
from ..random import seeded_uniforms

__all__ = [
    "BEDS",
    "ChainDenoiser",
    "MarkovChain",
    "chain3x6",
    "chain4x8",
    "encode",
    "enumerated_posterior",
    "get_chain",
]


@dataclass(frozen=True)
class MarkovChain:
    """``p(x) = π(x_1) Π T(x_i, x_{i+1})`` over ``V`` tokens and ``length`` positions (float64)."""

    initial: torch.Tensor
    transition: torch.Tensor
    length: int
    name: str = "chain"

    @property
    def vocab_size(self) -> int:
        return int(self.initial.shape[0])

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x)`` of ``(N, L)`` sequences."""
        logp = torch.log(self.initial)[x[:, 0]]
        return logp + torch.log(self.transition)[x[:, :-1], x[:, 1:]].sum(-1)

    def sequences(self) -> torch.Tensor:
        """All ``V^L`` sequences ``(V^L, L)`` in :func:`encode` order."""
        v, n = self.vocab_size, self.length
        return torch.tensor(list(itertools.product(range(v), repeat=n)), dtype=torch.int64).reshape(-1, n)

    def law(self) -> torch.Tensor:
        """The target law over all sequences, ``(V^L,)``."""
        return torch.exp(self.log_prob(self.sequences()))

    def denoiser(self) -> ChainDenoiser:
        """A fresh exact denoiser (its own NFE counter)."""
        return ChainDenoiser(self)

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` exact draws ``(n, L)`` by ancestral sampling of the chain, one uniform stream per sample."""
        u = seeded_uniforms(seed)(n, self.length)
        x = torch.empty(n, self.length, dtype=torch.int64)
        x[:, 0] = inverse_cdf(self.initial.expand(n, -1), u[:, 0])
        for i in range(1, self.length):
            x[:, i] = inverse_cdf(self.transition[x[:, i - 1]], u[:, i])
        return x


def encode(x: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """The index of each ``(N, L)`` sequence in :meth:`MarkovChain.sequences` order."""
    weights = vocab_size ** torch.arange(x.shape[-1] - 1, -1, -1, dtype=torch.int64)
    return (x.to(torch.int64) * weights).sum(-1)


class ChainDenoiser(CountingMaskedDenoiser):
    """The exact ``p(x0_i | z)`` of a :class:`MarkovChain` by forward–backward (module docstring)."""

    output = "probs"

    def __init__(self, chain: MarkovChain) -> None:
        super().__init__(chain.vocab_size, time_free=True)
        self.chain = chain

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v, n = self.vocab_size, z.shape[1]
        evidence = torch.where(
            (z == v)[..., None],
            torch.ones(*z.shape, v, dtype=torch.float64),
            torch.nn.functional.one_hot(z.clamp(max=v - 1), v).to(torch.float64),
        )
        trans = self.chain.transition
        fwd = torch.empty_like(evidence)
        bwd = torch.ones_like(evidence)
        a = self.chain.initial * evidence[:, 0]
        fwd[:, 0] = a / a.sum(-1, keepdim=True)
        for j in range(1, n):
            a = (fwd[:, j - 1] @ trans) * evidence[:, j]
            fwd[:, j] = a / a.sum(-1, keepdim=True)
        for j in range(n - 2, -1, -1):
            b = (evidence[:, j + 1] * bwd[:, j + 1]) @ trans.T
            bwd[:, j] = b / b.sum(-1, keepdim=True)
        post = fwd * bwd
        return post / post.sum(-1, keepdim=True)


def enumerated_posterior(chain: MarkovChain, z: torch.Tensor) -> torch.Tensor:
    """``p(x0_i | z)`` ``(B, L, V)`` by brute force over all ``V^L`` sequences (for checking forward–backward)."""
    v = chain.vocab_size
    seqs, law = chain.sequences(), chain.law()
    out = torch.empty(*z.shape, v, dtype=torch.float64)
    for b in range(z.shape[0]):
        visible = z[b] != v
        fits = (seqs[:, visible] == z[b, visible]).all(-1)
        w = law * fits
        for i in range(z.shape[1]):
            out[b, i] = torch.zeros(v, dtype=torch.float64).index_add_(0, seqs[:, i], w) / w.sum()
    return out


def _chain(initial: list[float], transition: list[list[float]], length: int, name: str) -> MarkovChain:
    return MarkovChain(
        torch.tensor(initial, dtype=torch.float64), torch.tensor(transition, dtype=torch.float64), length, name
    )


def chain3x6() -> MarkovChain:
    """``V = 3``, ``L = 6``: a sticky chain (729 sequences; small enough to enumerate every sampler)."""
    return _chain([0.5, 0.3, 0.2], [[0.8, 0.15, 0.05], [0.1, 0.7, 0.2], [0.25, 0.05, 0.7]], 6, "chain3x6")


def chain4x8() -> MarkovChain:
    """``V = 4``, ``L = 8``: strong, asymmetric dependencies (65 536 sequences)."""
    return _chain(
        [0.4, 0.3, 0.2, 0.1],
        [[0.7, 0.1, 0.1, 0.1], [0.05, 0.05, 0.8, 0.1], [0.3, 0.3, 0.2, 0.2], [0.1, 0.6, 0.05, 0.25]],
        8,
        "chain4x8",
    )


def _text128() -> MarkovChain:
    from .fitted import text128  # fitted.py builds on this module

    return text128()


BEDS: dict[str, Callable[[], MarkovChain]] = {"chain3x6": chain3x6, "chain4x8": chain4x8, "text128": _text128}
"""The chains by name: ``chain3x6`` and ``chain4x8`` are enumerable; ``text128`` (:mod:`.fitted`, ``V = 58``,
``L = 128``) is not, and is measured by :func:`~.fitted.sample_metrics`."""


def get_chain(name: str) -> MarkovChain:
    """The chain registered under ``name``."""
    try:
        return BEDS[name]()
    except KeyError:
        raise UnknownNameError("discrete bed", name, list(BEDS)) from None
