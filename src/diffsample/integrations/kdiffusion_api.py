"""k-diffusion's sampler calling convention for every registered solver (a drop-in for k-diffusion/ComfyUI).

k-diffusion samplers are functions ``sample_<name>(model, x, sigmas, extra_args=None, callback=None,
disable=None, **options)`` where ``model(x, sigma, **extra_args)`` returns the denoised sample, i.e. a
σ-space denoiser; ``callback`` gets a dict with ``i``, ``x``, ``sigma``, ``sigma_hat``, ``denoised``;
``disable`` turns the progress bar off. This module makes one such function per registered solver,
``sample_euler``, ``sample_dpmpp_2m``, ``sample_unipc``, …, all built by :func:`ksampler` around
:func:`diffsample.sample` (nothing is copied per solver). Solvers registered after this module is
imported are reached through :func:`ksampler` or attribute access (``kdiffusion_api.sample_<name>``).

Noise: stochastic solvers take diffsample's ``noise=`` (a noise source), or k-diffusion's
``noise_sampler`` (called as ``noise_sampler(sigma, sigma_next)``, e.g. its ``BrownianTreeNoiseSampler``),
or ``seed=`` (:func:`diffsample.noise.seeded`, one stream per sample). With none of them the solver's
own default applies. Deterministic solvers ignore noise.

Differences from k-diffusion, by design: the update maths runs in float32 (float64 for float64 ``x``)
with step coefficients in float64, as :func:`diffsample.sample` does, and the result is returned in
``x``'s dtype; the callback dict also carries ``sigma_next``; a non-finite model output raises
:class:`~diffsample.errors.NonFiniteError`. The progress bar uses tqdm when it is installed and is
silent otherwise.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from .. import noise as noise_module
from .. import solvers
from ..contracts import NoiseSource
from ..sampling import sample

__all__ = ["KSAMPLER_NAMES", "ksampler", "noise_from_sampler"]

KSampler = Callable[..., torch.Tensor]


def noise_from_sampler(noise_sampler: Callable[[Any, Any], torch.Tensor]) -> noise_module.NoiseSource:
    """A diffsample noise source from a k-diffusion ``noise_sampler(sigma, sigma_next)``.

    k-diffusion's samplers return standard normals shaped like ``x`` (its default sampler, its Brownian
    tree sampler), which is what a diffsample noise source returns; σ arrive as Python floats.
    """

    def source(x: torch.Tensor, sigma: float | None = None, sigma_next: float | None = None) -> torch.Tensor:
        return noise_sampler(sigma, sigma_next).to(device=x.device, dtype=x.dtype)

    return source


class _Progress:
    """Per-step progress: a tqdm bar over ``total`` steps when tqdm is installed and ``disable`` is not true.

    Solvers call the callback once per step; the bar advances when the step index changes.
    """

    def __init__(self, total: int | None, disable: bool | None) -> None:
        self.bar: Any = None
        self.last = -1
        if disable is True:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, disable=disable)

    def update(self, i: int) -> None:
        if self.bar is not None and i != self.last:
            self.bar.update(1)
        self.last = i

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _resolve_noise(
    noise: NoiseSource | None, noise_sampler: Callable[[Any, Any], torch.Tensor] | None, seed: int | None
) -> NoiseSource | None:
    given = [v is not None for v in (noise, noise_sampler, seed)]
    if sum(given) > 1:
        raise TypeError("pass at most one of noise=, noise_sampler=, seed=")
    if noise_sampler is not None:
        return noise_from_sampler(noise_sampler)
    if seed is not None:
        return noise_module.seeded(seed)
    return noise


@functools.cache
def ksampler(name: str) -> KSampler:
    """The k-diffusion-style sampling function for the registered solver ``name``.

    The function is ``f(model, x, sigmas, extra_args=None, callback=None, disable=None, *, noise=None,
    noise_sampler=None, seed=None, **options)``; ``options`` go to the solver. It returns the state at
    ``sigmas[-1]`` in ``x``'s dtype.
    """
    spec = solvers.spec(name)  # raises UnknownNameError listing the valid names

    def sampler(
        model: Callable[..., torch.Tensor],
        x: torch.Tensor,
        sigmas: torch.Tensor,
        extra_args: dict[str, Any] | None = None,
        callback: Callable[[dict[str, Any]], Any] | None = None,
        disable: bool | None = None,
        *,
        noise: NoiseSource | None = None,
        noise_sampler: Callable[[Any, Any], torch.Tensor] | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> torch.Tensor:
        kwargs = dict(extra_args or {})

        def denoiser(xs: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return model(xs, sigma, **kwargs)

        progress = _Progress(None if spec.adaptive else len(sigmas) - 1, disable)

        def report(info: dict[str, Any]) -> None:
            progress.update(int(info["i"]))
            if callback is not None:
                callback(info)

        try:
            out = sample(
                denoiser,
                x,
                sigmas,
                solver=name,
                noise=_resolve_noise(noise, noise_sampler, seed),
                callback=report,
                **options,
            )
        finally:
            progress.close()
        return out.to(x.dtype)

    sampler.__name__ = sampler.__qualname__ = f"sample_{name}"
    sampler.__doc__ = (
        f"k-diffusion-style sampler for diffsample's {name!r} solver: {spec.summary}\n\n"
        f"``model(x, sigma, **extra_args)`` returns the denoised sample; see "
        f":mod:`diffsample.integrations.kdiffusion_api`."
    )
    return sampler


KSAMPLER_NAMES: list[str] = solvers.available()
"""The solver names with a ``sample_<name>`` function here (the registry at import time)."""

for _name in KSAMPLER_NAMES:
    globals()[f"sample_{_name}"] = ksampler(_name)
    __all__.append(f"sample_{_name}")


def __getattr__(attr: str) -> KSampler:
    """``sample_<name>`` for solvers registered after this module was imported."""
    if attr.startswith("sample_") and attr[len("sample_") :] in solvers.available():
        return ksampler(attr[len("sample_") :])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
