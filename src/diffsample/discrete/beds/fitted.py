"""A Markov chain fitted to the stdlib character corpus, and its exact metrics without enumeration.

Fit. On the training split of :func:`~diffsample.discrete.corpus.load_corpus` (one token stream, the corpus's
``V = 58`` symbols kept as they are: no classes merged), with bigram counts ``C(a, b)`` and unigram counts
``c(a)``, add-``k`` (Lidstone) smoothing gives

    ``T(a, b) = (C(a, b) + k) / (Σ_b' C(a, b') + k V)``,   ``π(a) = (c(a) + k) / (Σ c + k V)``

(``π`` is the unigram law: a window of the corpus starts anywhere, so its first symbol follows the unigram law,
which is also close to the stationary law of ``T``). Every entry is positive, so every sequence has finite
log-probability. The denoiser is :class:`~.chain.ChainDenoiser`: exact by forward–backward in ``O(L V²)``.

Metrics (nats per token) that need no sum over the ``V^L`` sequences:

* :func:`exact_entropy_rate` ``H(p) / L`` with ``H(p) = H(π) + Σ_{i<L} Σ_v P(x_i = v) H(T(v, ·))`` (chain rule
  of entropy; ``P(x_i = ·) = π T^{i−1}``; Cover & Thomas 2006, §4.2);
* :func:`sample_metrics` of ``(N, L)`` samples: ``nll`` ``−mean log p(x) / L`` (a Monte-Carlo estimate of the
  cross-entropy rate; the exact chain's own value is its entropy rate); ``transition_kl_rate``
  ``Σ_a q(a) KL(Q(a, ·) ‖ T(a, ·))`` with ``q(a)``, ``Q(a, b) = n(a, b) / n(a)`` the plug-in from the samples'
  bigram counts ``n`` (0 for samples with the chain's transitions, up to the plug-in's positive bias of order
  ``V² / (2 N (L − 1))``); ``entropy_rate`` the same plug-in of the samples' own Markov entropy,
  ``[H(q_1) + (L − 1) Σ_a q(a) H(Q(a, ·))] / L`` with ``q_1`` the empirical law of the first token;
  ``unigram_error`` ``½ Σ_v |q̄(v) − p̄(v)|`` against the chain's exact position-averaged marginal ``p̄``.
"""

from __future__ import annotations

import torch

from ..corpus import VOCAB_SIZE, load_corpus
from .chain import MarkovChain
from .metrics import _xlogy, tv

__all__ = ["exact_entropy_rate", "fitted_text_chain", "marginals", "sample_metrics", "text128"]

DEFAULT_SMOOTHING = 0.5
"""The add-``k`` pseudo-count of :func:`fitted_text_chain` (Jeffreys' ``k = 1/2``)."""


def fitted_text_chain(length: int = 128, smoothing: float = DEFAULT_SMOOTHING) -> MarkovChain:
    """The add-``smoothing`` bigram chain of the corpus's training split over ``length`` positions (module
    docstring), named ``text{length}``."""
    if smoothing <= 0:
        raise ValueError(f"smoothing must be positive (every transition needs mass); got {smoothing}")
    stream = load_corpus().train
    v = VOCAB_SIZE
    bigrams = torch.bincount(stream[:-1] * v + stream[1:], minlength=v * v).reshape(v, v).to(torch.float64)
    unigrams = torch.bincount(stream, minlength=v).to(torch.float64)
    transition = (bigrams + smoothing) / (bigrams.sum(-1, keepdim=True) + smoothing * v)
    initial = (unigrams + smoothing) / (unigrams.sum() + smoothing * v)
    return MarkovChain(initial, transition, length, f"text{length}")


def text128() -> MarkovChain:
    """The fitted text chain over 128 positions (:func:`fitted_text_chain` with its defaults)."""
    return fitted_text_chain(128)


def marginals(chain: MarkovChain) -> torch.Tensor:
    """``P(x_i = ·) = π T^{i−1}`` for every position, ``(L, V)``."""
    rows = [chain.initial]
    for _ in range(chain.length - 1):
        rows.append(rows[-1] @ chain.transition)
    return torch.stack(rows)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -_xlogy(p, p).sum(-1)


def exact_entropy_rate(chain: MarkovChain) -> float:
    """``H(p) / L = [H(π) + Σ_{i<L} Σ_v P(x_i = v) H(T(v, ·))] / L`` (module docstring)."""
    row_entropy = _entropy(chain.transition)
    h = _entropy(chain.initial) + (marginals(chain)[:-1] @ row_entropy).sum()
    return float(h) / chain.length


def sample_metrics(chain: MarkovChain, x: torch.Tensor) -> dict[str, float]:
    """``nll``, ``transition_kl_rate``, ``entropy_rate`` and ``unigram_error`` of ``(N, L)`` samples against
    ``chain`` (module docstring)."""
    v, n = chain.vocab_size, chain.length
    counts = torch.bincount((x[:, :-1] * v + x[:, 1:]).reshape(-1), minlength=v * v).reshape(v, v)
    bigrams = counts.to(torch.float64) / counts.sum()
    q = bigrams.sum(-1)
    fitted = bigrams / q[:, None].clamp(min=1e-300)
    row_kl = (_xlogy(fitted, fitted) - _xlogy(fitted, chain.transition)).sum(-1)
    first = torch.bincount(x[:, 0], minlength=v).to(torch.float64) / x.shape[0]
    unigram_q = torch.bincount(x.reshape(-1), minlength=v).to(torch.float64) / x.numel()
    return {
        "nll": float(-chain.log_prob(x).mean()) / n,
        "transition_kl_rate": max(0.0, float(q @ row_kl)),
        "entropy_rate": float(_entropy(first) + (n - 1) * (q @ _entropy(fitted))) / n,
        "unigram_error": tv(unigram_q, marginals(chain).mean(0)),
    }
