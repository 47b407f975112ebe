"""The masked-sampler registry: names mapped to a sampler function and its preset options.

A masked sampler is ``sampler(denoiser, z, steps, *, schedule=None, seed=None, uniforms=None, transform=None,
cache=True, callback=None, **options) -> tokens``. Presets name the published configurations of the generic
ones (``confidence`` is ``ordered(order="confidence")``, ``llada`` its sampled-confidence variant), so a
benchmark can enumerate them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch

from ..errors import UnknownNameError
from .ancestral import ancestral
from .entropy_bounded import entropy_bounded
from .first_hitting import first_hitting
from .ordered import ordered
from .remdm import remdm

__all__ = ["MaskedSamplerSpec", "available", "get", "register", "spec"]

SamplerFn = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class MaskedSamplerSpec:
    """A registered sampler: its function, preset options, a one-line summary; ``own_steps`` when it chooses its
    number of steps itself (``steps`` is then left out: first-hitting, entropy-bounded)."""

    name: str
    fn: SamplerFn
    options: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    own_steps: bool = False

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.fn(*args, **{**self.options, **kwargs})


_REGISTRY: dict[str, MaskedSamplerSpec] = {}


def register(name: str, fn: SamplerFn, summary: str, *, own_steps: bool = False, **options: Any) -> None:
    """Add ``fn`` with preset ``options`` under ``name``."""
    if name in _REGISTRY:
        raise ValueError(f"masked sampler {name!r} is registered twice")
    _REGISTRY[name] = MaskedSamplerSpec(name, fn, dict(options), summary, own_steps)


def available() -> list[str]:
    """Names of the registered masked samplers, sorted."""
    return sorted(_REGISTRY)


def spec(name: str) -> MaskedSamplerSpec:
    """The :class:`MaskedSamplerSpec` under ``name``; the error lists the valid names."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError("masked sampler", name, list(_REGISTRY)) from None


def get(name: str) -> SamplerFn:
    """The sampler under ``name`` with its preset options bound."""
    s = spec(name)
    return partial(s.fn, **s.options)


register("ancestral", ancestral, "MDLM ancestral: each masked position revealed with probability (α_s−α_t)/(1−α_t)")
register("tau_leaping", ancestral, "Euler τ-leaping: reveal probability = rate × step", reveal="euler")
register("first_hitting", first_hitting, "first-hitting: one token at the exact next reveal time", own_steps=True)
register("random", ordered, "k tokens per step at uniformly random positions", order="random")
register("confidence", ordered, "k tokens per step, most confident predicted distribution first", order="confidence")
register("margin", ordered, "k tokens per step, largest top-1 − top-2 margin first", order="margin")
register("entropy", ordered, "k tokens per step, lowest entropy first", order="entropy")
register(
    "sampled_confidence",
    ordered,
    "k tokens per step, highest probability of the drawn token first (LLaDA low_confidence remasking; biased)",
    order="sampled_confidence",
)
register(
    "entropy_bounded",
    entropy_bounded,
    "variable tokens per step within an entropy budget γ (EB-sampler)",
    own_steps=True,
)
register("remdm", remdm, "ReMDM: ancestral steps that may mask visible tokens again (cap / rescale, on-off window)")
register("remdm_rescale", remdm, "ReMDM-rescale: remask probability η · σ_max (η = 0.5)", strategy="rescale", eta=0.5)
register(
    "remdm_confidence",
    remdm,
    "ReMDM-conf: remask visible tokens by softmax(−confidence at reveal) · σ_max",
    strategy="confidence",
)
register(
    "remdm_loop",
    remdm,
    "ReMDM-loop: hold α = 0.9 on t ∈ [0.05, 0.55] and remask there with σ = 0.02 (the authors' values)",
    loop=(0.55, 0.05, 0.9),
    eta=0.02,
)
