"""Reward-tilted Markov chains: exact targets, denoisers and optimal values for reward-guided masked sampling.

Additive rewards (:class:`TiltedChain`)
---------------------------------------
For a chain ``p(x) = π(x_1) Π_i T(x_i, x_{i+1})`` and a reward additive over positions and bigrams,

    r(x) = Σ_i f_i(x_i) + Σ_i g_i(x_i, x_{i+1}),

the tilted law ``p_α(x) = p(x) exp(r(x)/α) / Z`` is a product of the same local factors,
``ψ_1(a) = π(a) e^{f_1(a)/α}`` and ``Ψ_i(a, b) = T(a, b) e^{(g_i(a, b) + f_{i+1}(b))/α}``, so it is again a
(non-homogeneous) Markov chain. Its normaliser is a transfer-matrix product, ``Z = ψ_1ᵀ Ψ_1 ⋯ Ψ_{L−1} 1``, and
with the backward messages ``β_L = 1``, ``β_i = Ψ_i β_{i+1}`` its exact kernels are
``q(x_1) = ψ_1 β_1 / Z`` and ``q(b | a) = Ψ_i(a, b) β_{i+1}(b) / β_i(a)`` (the forward–backward algorithm of
Rabiner 1989 on the tilted factors; computed in log space).

A partially masked ``z`` (the state of absorbing diffusion at any time) only restricts the sum: with evidence
``e_j(v) = 1`` at a masked position and ``[v = z_j]`` at a visible one,

* the exact tilted denoiser is ``p_α(x0_j = v | z) ∝ a_j(v) b_j(v)``, forward–backward on the factors times
  the evidence (masking is independent of the tokens, so this holds at every ``t``; the denoiser is time-free);
* the exact optimal twist (value) is the ratio of two restricted partition functions,

      V(z) = E_p[exp(r(x0)/α) | z] = Σ_{x ⊇ z} p(x) e^{r(x)/α} / Σ_{x ⊇ z} p(x),

  with ``V(all masks) = Z`` and ``V(x) = e^{r(x)/α}`` for a complete sequence. This is the twist of twisted SMC
  (Wu et al. 2023, "Practical and Asymptotically Exact Conditional Sampling in Diffusion Models", eq. 5) and the
  soft value of SVDD (Li et al. 2024, "Derivative-Free Guidance in Continuous and Discrete Diffusion Models with
  Soft Value-Based Decoding", eq. 3: ``v = α log V``) for masked diffusion.

Any reward (:class:`EnumeratedTilt`)
------------------------------------
For a reward that is not additive (a count threshold, a pattern anywhere, …) the same quantities come from
enumerating all ``V^L`` sequences of a small chain (``V`` 3–4, ``L`` 6–8). :class:`TiltedChain` and
:class:`EnumeratedTilt` share one interface: ``reward``, ``log_prob``, ``law``, ``log_normalizer``,
``log_value``, ``denoiser``, ``reward_mean``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ...errors import DiffsampleError, ShapeError
from ..categorical import inverse_cdf
from ..denoiser import CountingMaskedDenoiser
from ..random import seeded_uniforms
from .chain import MarkovChain

__all__ = [
    "EnumeratedTilt",
    "Reward",
    "TiltedChain",
    "count_reward",
    "enumerated_tilt",
    "tilt_chain",
]

Reward = Callable[[torch.Tensor], torch.Tensor]
"""A reward on complete sequences: ``(N, L)`` int64 tokens -> ``(N,)`` float values."""


def _evidence(z: torch.Tensor, vocab: int) -> torch.Tensor:
    """``(B, L, V)`` log-evidence: 0 where a token is allowed, ``-inf`` where a visible position rules it out."""
    if z.dim() != 2 or z.is_floating_point():
        raise ShapeError(f"z must be a (B, L) integer tensor of tokens and masks, got {tuple(z.shape)} {z.dtype}")
    if bool(((z < 0) | (z > vocab)).any()):
        raise ShapeError(f"z holds ids outside [0, {vocab}] (mask = {vocab})")
    own = torch.nn.functional.one_hot(z.clamp(max=vocab - 1).to(torch.int64), vocab).to(torch.bool)
    allowed = own | (z == vocab)[..., None]
    return torch.where(allowed, 0.0, float("-inf")).to(torch.float64)


def _check_alpha(alpha: float) -> float:
    if not (alpha > 0 and math.isfinite(alpha)):
        raise DiffsampleError(f"the tilt temperature alpha must be a positive finite number, got {alpha}")
    return float(alpha)


def _log_matvec(log_m: torch.Tensor, log_v: torch.Tensor) -> torch.Tensor:
    """``log (M v)`` row-wise: ``log_m`` ``(V, V)``, ``log_v`` ``(B, V)`` -> ``(B, V)``."""
    return torch.logsumexp(log_m.unsqueeze(0) + log_v.unsqueeze(1), dim=-1)


def _log_vecmat(log_v: torch.Tensor, log_m: torch.Tensor) -> torch.Tensor:
    """``log (vᵀ M)``: ``log_v`` ``(B, V)``, ``log_m`` ``(V, V)`` -> ``(B, V)``."""
    return torch.logsumexp(log_v.unsqueeze(-1) + log_m.unsqueeze(0), dim=1)


@dataclass(frozen=True)
class TiltedChain:
    """``p(x) e^{r(x)/α} / Z`` for a chain and an additive reward (module docstring).

    ``unary`` is ``(L, V)`` (``f_i(v)``), ``pairwise`` is ``(L − 1, V, V)`` (``g_i(a, b)``), both float64;
    build it with :func:`tilt_chain`.
    """

    chain: MarkovChain
    unary: torch.Tensor
    pairwise: torch.Tensor
    alpha: float
    name: str = "tilted"
    _cache: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)

    @property
    def vocab_size(self) -> int:
        return self.chain.vocab_size

    @property
    def length(self) -> int:
        return self.chain.length

    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """``r(x)`` of ``(N, L)`` complete sequences, float64 ``(N,)``."""
        x = x.to(torch.int64)
        pos = torch.arange(self.length)
        r = self.unary[pos, x].sum(-1)
        if self.length > 1:
            r = r + self.pairwise[pos[:-1], x[:, :-1], x[:, 1:]].sum(-1)
        return r

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``log ψ_1`` ``(V,)`` and ``log Ψ_i`` ``(L − 1, V, V)`` (module docstring)."""
        if "initial" not in self._cache:
            self._cache["initial"] = torch.log(self.chain.initial) + self.unary[0] / self.alpha
            self._cache["steps"] = (
                torch.log(self.chain.transition).unsqueeze(0) + (self.pairwise + self.unary[1:, None, :]) / self.alpha
            )
        return self._cache["initial"], self._cache["steps"]

    def _base_factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        log_t = torch.log(self.chain.transition)
        return torch.log(self.chain.initial), log_t.expand(self.length - 1, -1, -1)

    def _log_partition(self, log_evidence: torch.Tensor, tilted: bool) -> torch.Tensor:
        """``log Σ_{x ⊇ z} Π factors`` per row ``(B,)`` by the forward recursion in log space."""
        initial, steps = self._factors() if tilted else self._base_factors()
        a = initial.unsqueeze(0) + log_evidence[:, 0]
        for j in range(1, self.length):
            a = _log_vecmat(a, steps[j - 1]) + log_evidence[:, j]
        return torch.logsumexp(a, dim=-1)

    def log_normalizer(self) -> float:
        """``log Z = log E_p[exp(r(x)/α)]`` (transfer-matrix product)."""
        everything = torch.zeros(1, self.length, self.vocab_size, dtype=torch.float64)
        return float(self._log_partition(everything, tilted=True)[0])

    def log_value(self, z: torch.Tensor) -> torch.Tensor:
        """``log V(z) = log E_p[exp(r(x0)/α) | z]`` ``(B,)`` for partially masked ``z`` (mask id ``V``)."""
        ev = _evidence(z, self.vocab_size)
        return self._log_partition(ev, tilted=True) - self._log_partition(ev, tilted=False)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p_α(x)`` of ``(N, L)`` complete sequences."""
        return self.chain.log_prob(x.to(torch.int64)) + self.reward(x) / self.alpha - self.log_normalizer()

    def law(self) -> torch.Tensor:
        """The tilted law over all ``V^L`` sequences in :func:`~.chain.encode` order (small chains only)."""
        return torch.exp(self.log_prob(self.chain.sequences()))

    def kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The tilted law as a non-homogeneous chain: ``q(x_1)`` ``(V,)`` and ``q_i(b | a)`` ``(L − 1, V, V)``."""
        initial, steps = self._factors()
        log_b = torch.zeros(self.length, self.vocab_size, dtype=torch.float64)
        for j in range(self.length - 2, -1, -1):
            log_b[j] = _log_matvec(steps[j], log_b[j + 1].unsqueeze(0))[0]
        first = torch.softmax(initial + log_b[0], dim=-1)
        trans = torch.softmax(steps + log_b[1:].unsqueeze(1), dim=-1)
        return first, trans

    def sample(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` exact draws ``(n, L)`` from the tilted law, one uniform stream per sample."""
        first, trans = self.kernels()
        u = seeded_uniforms(seed)(n, self.length)
        x = torch.empty(n, self.length, dtype=torch.int64)
        x[:, 0] = inverse_cdf(first.expand(n, -1), u[:, 0])
        for i in range(1, self.length):
            x[:, i] = inverse_cdf(trans[i - 1][x[:, i - 1]], u[:, i])
        return x

    def reward_mean(self) -> float:
        """``E_{p_α}[r(x)]`` from the exact one- and two-position marginals."""
        first, trans = self.kernels()
        marginal = first
        total = float((marginal * self.unary[0]).sum())
        for i in range(self.length - 1):
            pair = marginal[:, None] * trans[i]
            total += float((pair * self.pairwise[i]).sum())
            marginal = pair.sum(0)
            total += float((marginal * self.unary[i + 1]).sum())
        return total

    def denoiser(self) -> TiltedChainDenoiser:
        """A fresh exact tilted denoiser ``p_α(x0_j | z)`` (its own NFE counter)."""
        return TiltedChainDenoiser(self)


class TiltedChainDenoiser(CountingMaskedDenoiser):
    """``p_α(x0_j | z)`` of a :class:`TiltedChain` by forward–backward on its factors (module docstring)."""

    output = "probs"

    def __init__(self, tilted: TiltedChain) -> None:
        super().__init__(tilted.vocab_size, time_free=True)
        self.tilted = tilted

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ev = _evidence(z, self.vocab_size)
        initial, steps = self.tilted._factors()
        n = z.shape[1]
        fwd = torch.empty_like(ev)
        bwd = torch.zeros_like(ev)
        fwd[:, 0] = initial.unsqueeze(0) + ev[:, 0]
        for j in range(1, n):
            fwd[:, j] = _log_vecmat(fwd[:, j - 1], steps[j - 1]) + ev[:, j]
        for j in range(n - 2, -1, -1):
            bwd[:, j] = _log_matvec(steps[j], ev[:, j + 1] + bwd[:, j + 1])
        return torch.softmax(fwd + bwd, dim=-1)


def _per_position(values: torch.Tensor | None, shape: tuple[int, ...], what: str) -> torch.Tensor:
    """``values`` broadcast to ``shape`` (one table for every position, or one per position), float64."""
    if values is None:
        return torch.zeros(shape, dtype=torch.float64)
    v = torch.as_tensor(values, dtype=torch.float64)
    if tuple(v.shape) == shape[1:]:
        return v.expand(shape).clone()
    if tuple(v.shape) == shape:
        return v.clone()
    raise ShapeError(f"{what} must have shape {shape[1:]} or {shape}, got {tuple(v.shape)}")


def tilt_chain(
    chain: MarkovChain,
    *,
    unary: torch.Tensor | None = None,
    pairwise: torch.Tensor | None = None,
    alpha: float = 1.0,
    name: str | None = None,
) -> TiltedChain:
    """The chain tilted by ``r(x) = Σ_i unary[i, x_i] + Σ_i pairwise[i, x_i, x_{i+1}]`` at temperature ``alpha``.

    ``unary`` is ``(V,)`` (the same ``f`` at every position) or ``(L, V)``; ``pairwise`` is ``(V, V)`` or
    ``(L − 1, V, V)``; either may be omitted (zero).
    """
    v, n = chain.vocab_size, chain.length
    if n < 1:
        raise ShapeError(f"the chain must have at least one position, got length {n}")
    f = _per_position(unary, (n, v), "unary")
    g = _per_position(pairwise, (max(n - 1, 0), v, v), "pairwise")
    if not (torch.isfinite(f).all() and torch.isfinite(g).all()):
        raise DiffsampleError("unary and pairwise rewards must be finite")
    return TiltedChain(chain, f, g, _check_alpha(alpha), name or f"{chain.name}-tilted")


def count_reward(tokens: list[int] | tuple[int, ...], vocab_size: int, weight: float = 1.0) -> torch.Tensor:
    """The unary table ``f(v) = weight · [v ∈ tokens]``: ``r(x)`` counts the positions holding one of ``tokens``."""
    if any(not 0 <= int(tok) < vocab_size for tok in tokens):
        raise ShapeError(f"tokens must lie in [0, {vocab_size}), got {list(tokens)}")
    f = torch.zeros(vocab_size, dtype=torch.float64)
    f[list(tokens)] = float(weight)
    return f


@dataclass(frozen=True)
class EnumeratedTilt:
    """``p(x) e^{r(x)/α} / Z`` for any reward, by enumerating the chain's ``V^L`` sequences (module docstring)."""

    chain: MarkovChain
    reward_fn: Reward
    alpha: float
    rewards: torch.Tensor
    name: str = "tilted"

    @property
    def vocab_size(self) -> int:
        return self.chain.vocab_size

    @property
    def length(self) -> int:
        return self.chain.length

    def reward(self, x: torch.Tensor) -> torch.Tensor:
        """``r(x)`` of ``(N, L)`` complete sequences, float64 ``(N,)``."""
        return torch.as_tensor(self.reward_fn(x.to(torch.int64)), dtype=torch.float64)

    def _log_base(self) -> torch.Tensor:
        return self.chain.log_prob(self.chain.sequences())

    def log_normalizer(self) -> float:
        """``log Z = log Σ_x p(x) e^{r(x)/α}``."""
        return float(torch.logsumexp(self._log_base() + self.rewards / self.alpha, dim=0))

    def law(self) -> torch.Tensor:
        """The tilted law over all ``V^L`` sequences in :func:`~.chain.encode` order."""
        return torch.softmax(self._log_base() + self.rewards / self.alpha, dim=0)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """``log p_α(x)`` of ``(N, L)`` complete sequences."""
        return self.chain.log_prob(x.to(torch.int64)) + self.reward(x) / self.alpha - self.log_normalizer()

    def _fits(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, V^L)``: which sequences agree with each row's visible tokens."""
        v = self.vocab_size
        _evidence(z, v)  # validates
        seqs, z = self.chain.sequences(), z.to(torch.int64)
        chunk = max(1, 2**22 // seqs.numel())  # rows compared at once (bounded memory)
        parts = [((seqs.unsqueeze(0) == zc.unsqueeze(1)) | (zc == v).unsqueeze(1)).all(-1) for zc in z.split(chunk)]
        return torch.cat(parts) if parts else torch.zeros(0, seqs.shape[0], dtype=torch.bool)

    def log_value(self, z: torch.Tensor) -> torch.Tensor:
        """``log V(z) = log E_p[exp(r(x0)/α) | z]`` ``(B,)``."""
        base = self._log_base().unsqueeze(0)
        fits = self._fits(z)
        restricted = torch.where(fits, base, float("-inf"))
        return torch.logsumexp(restricted + self.rewards / self.alpha, dim=-1) - torch.logsumexp(restricted, dim=-1)

    def reward_mean(self) -> float:
        """``E_{p_α}[r(x)]``."""
        return float((self.law() * self.rewards).sum())

    def denoiser(self) -> EnumeratedDenoiser:
        """A fresh exact tilted denoiser by enumeration (its own NFE counter)."""
        return EnumeratedDenoiser(self)


class EnumeratedDenoiser(CountingMaskedDenoiser):
    """``p_α(x0_j | z)`` of an :class:`EnumeratedTilt`: the law restricted to the sequences that fit ``z``."""

    output = "probs"

    def __init__(self, tilted: EnumeratedTilt) -> None:
        super().__init__(tilted.vocab_size, time_free=True)
        self.tilted = tilted
        self._law = tilted.law()
        self._seqs = tilted.chain.sequences()

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v = self.vocab_size
        w = self._law.unsqueeze(0) * self.tilted._fits(z)
        out = torch.zeros(*z.shape, v, dtype=torch.float64)
        for j in range(z.shape[1]):
            out[:, j] = torch.zeros(z.shape[0], v, dtype=torch.float64).index_add_(1, self._seqs[:, j], w)
        return out / out.sum(-1, keepdim=True)


def enumerated_tilt(
    chain: MarkovChain, reward: Reward, *, alpha: float = 1.0, name: str | None = None
) -> EnumeratedTilt:
    """The chain tilted by any ``reward`` (``(N, L) -> (N,)``) at temperature ``alpha``, by enumeration."""
    if chain.vocab_size**chain.length > 2**20:
        raise DiffsampleError(
            f"enumerated_tilt needs V^L ≤ 2^20 sequences; {chain.name} has {chain.vocab_size}^{chain.length}"
        )
    rewards = torch.as_tensor(reward(chain.sequences()), dtype=torch.float64)
    if rewards.shape != (chain.vocab_size**chain.length,) or not bool(torch.isfinite(rewards).all()):
        raise DiffsampleError("the reward must return one finite value per sequence, shape (N,)")
    return EnumeratedTilt(chain, reward, _check_alpha(alpha), rewards, name or f"{chain.name}-tilted")
