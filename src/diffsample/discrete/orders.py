"""Which masked positions to reveal next: order scores, position selection, tokens per step.

A k-tokens-per-step sampler (MaskGIT, Chang et al. 2022; LLaDA, Nie et al. 2025; Dream, Ye et al. 2025) draws a
token at every masked position from ``p(x0_i | z)``, then reveals the ``k`` positions of highest score:

* ``random``: every masked position equally likely (scores 0 plus Gumbel noise: a uniform ``k``-subset);
* ``confidence``: ``max_v p_i(v)`` (Dream's ``maskgit_plus`` with greedy draws, where it equals the next one);
* ``margin``: ``p_i(top1) − p_i(top2)`` (Dream's ``topk_margin``);
* ``entropy``: ``−H(p_i)`` (Dream's ``entropy``);
* ``sampled_confidence``: ``p_i(x̂_i)`` of the token just drawn (LLaDA's ``remasking="low_confidence"``, Dream's
  ``maskgit_plus`` with temperature > 0).

Scores are computed on the distribution the tokens are drawn from (after the sampler's ``transform``); LLaDA
scores its drawn token under the untempered softmax instead.

The first four depend only on the visible tokens, so with an exact denoiser and one token per step the sampler
is the exact chain rule ``p(x) = Π p(x_{σ(j)} | x_{σ(<j)})`` whatever the order; ``sampled_confidence`` picks
positions *after* seeing the drawn values, which biases the joint law (measured on the exact beds).
``order_temperature τ > 0`` samples the order instead (Gumbel-top-k on ``score / τ``, i.e. Plackett–Luce;
Dream's ``alg_temp``).
"""

from __future__ import annotations

import torch

from .categorical import entropy

__all__ = ["ORDERS", "order_scores", "reveal_counts", "select_positions"]

ORDERS = ("random", "confidence", "margin", "entropy", "sampled_confidence")


def order_scores(p: torch.Tensor, order: str, tokens: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, L)`` float64 scores, higher revealed first (module docstring); ``tokens`` the drawn tokens, needed
    by ``sampled_confidence``."""
    if order == "random":
        return torch.zeros(p.shape[:-1], dtype=torch.float64)
    if order == "confidence":
        return p.max(-1).values
    if order == "margin":
        top2 = p.topk(2, dim=-1).values if p.shape[-1] > 1 else torch.cat([p, torch.zeros_like(p)], -1)
        return top2[..., 0] - top2[..., 1]
    if order == "entropy":
        return -entropy(p)
    if order == "sampled_confidence":
        if tokens is None:
            raise ValueError("order 'sampled_confidence' needs the drawn tokens")
        return p.gather(-1, tokens[..., None])[..., 0]
    raise ValueError(f"unknown order {order!r}; valid orders: {', '.join(ORDERS)}")


def select_positions(
    scores: torch.Tensor,
    candidates: torch.Tensor,
    counts: torch.Tensor,
    temperature: float = 0.0,
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean ``(B, L)``: the ``counts[b]`` candidate positions of largest key in each row.

    Key ``scores / τ + G`` with Gumbel noise ``G = −log(−log u)`` when ``τ > 0`` (``u`` float64 uniforms shaped
    like ``scores``), else ``scores`` itself with ties going to the lower position (stable sort).
    """
    key = scores.to(torch.float64)
    if temperature > 0:
        if u is None:
            raise ValueError("a sampled order (temperature > 0) needs uniforms")
        key = key / temperature - torch.log(-torch.log(u.to(torch.float64)))
    key = torch.where(candidates, key, torch.full_like(key, -torch.inf))
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices
    ranks = torch.empty_like(order).scatter_(-1, order, torch.arange(key.shape[-1]).expand_as(order))
    return candidates & (ranks < counts[:, None])


def reveal_counts(candidates: torch.Tensor, steps_left: int) -> torch.Tensor:
    """``⌈m / steps_left⌉`` per row (``m`` candidate positions): LLaDA's ``get_num_transfer_tokens`` split
    (``m // n`` each, the remainder one extra on the first steps), computed step by step."""
    m = candidates.sum(-1)
    return torch.div(m + steps_left - 1, steps_left, rounding_mode="floor")
