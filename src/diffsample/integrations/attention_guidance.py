"""Attention-perturbation guidance on diffusers networks, as denoiser transforms: PAG and SAG.

Both guide a denoiser away from a *degraded* prediction of the same network. The papers write the rule on noise
predictions, ``ε̃ = ε_c + s (ε_c − ε_degraded)``, optionally on top of classifier-free guidance (Ho & Salimans
2022), ``ε_u + w (ε_c − ε_u) + s (·)``. Here it is done in σ-space (``x = x0 + σ ε``, ``D = x − σ ε̂``):

* PAG's degraded prediction is taken at the same ``x``, so the rule is the same on ``D``:
  ``D = D_c + s (D_c − D_perturbed)``;
* SAG's is taken at a degraded input ``x'``, whose noise estimate is ``ε̂(x') = (x' − D(x'))/σ``; the ε-rule then
  reads ``D = D_c − s σ (ε̂_c(x) − ε̂(x')) = D_c + s (x̂0' − D(x'))`` with ``x̂0' = x' − σ ε̂_c`` the degraded
  prediction that built ``x'`` (below). No σ is divided by, so it holds at every level.

Both are :class:`~diffsample.transforms.Transform` s, so they work unchanged with every solver (ODE, multistep,
SDE).

Perturbed-attention guidance (Ahn et al. 2024, "Self-Rectifying Diffusion Sampling with Perturbed-Attention
Guidance"): ``D_degraded`` is the network with the self-attention map of chosen layers replaced by the identity
(:class:`~.attention_layers.IdentityAttention`, each token keeps its own value; in SD3-style joint attention
the image-to-image block of the map, as diffusers' SD3 PAG does: :class:`~.attention_layers.JointIdentityAttention`).
Adaptive scale (diffusers' ``pag_adaptive_scale``): ``s(t) = max(0, s − a (1000 − t))`` with ``t`` the network's
timestep label.

Self-attention guidance (Hong et al. 2023, "Improving Sample Quality of Diffusion Models Using Self-Attention
Guidance"): the guided branch's pass keeps the self-attention map ``A`` (heads × queries × keys) of one layer;
the mask ``M`` marks the tokens whose received attention mass ``Σ_q mean_h A[h, q, k]`` exceeds ``ψ``
(default 1, the paper's and diffusers' setting), upsampled (nearest) to the image; the prediction is blurred
there, ``x̂0' = M ⊙ G_σ(x̂0) + (1 − M) ⊙ x̂0`` (Gaussian kernel 9, σ_blur = 1, reflect padding), re-noised with
the model's own noise estimate, ``x' = x̂0' + σ ε̂ = x̂0' + (x − x̂0)``, and the guided denoiser is
``D + s (x̂0' − D(x', σ))``. With CFG the guided branch is the unconditional one, as in the paper and diffusers'
StableDiffusionSAGPipeline: ``D_u + w (D_c − D_u) + s (x̂0'_u − D_u(x'_u))``.

NFE accounting: every branch is a network call counted by the inner denoiser (read through
:meth:`~diffsample.transforms.Transform.call_inner`): 2 per call (3 with CFG); PAG's ``batched=True`` runs them as
one call of stacked rows (``calls`` 1, ``nfe`` still 2 or 3). A zero scale (also a zero
adaptive scale for every sample) skips the degraded branch. Processors are installed only for the degraded (PAG)
or capturing (SAG) call and restored right after, under :func:`~.attention_layers.model_lock` (see
:mod:`.attention_layers` for thread safety).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.nn import functional as F

from .. import contracts
from ..denoisers import append_dims, broadcast_sigma
from ..errors import DiffsampleError, ShapeError
from ..transforms.base import Transform, to_work, work_dtype
from ..transforms.branches import stack_branch_kwargs
from .attention_layers import (
    PLAIN_PROCESSORS,
    CapturingAttention,
    RowSplitAttention,
    identity_processor,
    installed,
    is_joint_attention,
    model_lock,
    resolve_layers,
)

__all__ = [
    "PerturbedAttentionGuidance",
    "SelfAttentionGuidance",
    "attention_map_size",
    "gaussian_blur",
    "pag",
    "sag",
    "sag_blur",
    "sag_degrade",
    "sag_mask",
    "stack_branch_kwargs",
]


def _network_module(denoiser: contracts.Denoiser, model: torch.nn.Module | None) -> torch.nn.Module:
    """The diffusers module behind ``denoiser``: ``model`` if given, else ``denoiser.network.model`` (what
    :func:`~diffsample.integrations.load_diffusers_denoiser` builds), found through wrapping transforms."""
    if model is not None:
        if not isinstance(model, torch.nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module (a diffusers UNet/transformer), got {type(model).__name__}"
            )
        return model
    current: Any = denoiser
    while current is not None:
        found = getattr(getattr(current, "network", None), "model", None)
        if isinstance(found, torch.nn.Module):
            return found
        current = getattr(current, "inner", None)
    raise DiffsampleError(
        f"cannot find the diffusers network inside {type(denoiser).__name__}: pass model=<the UNet/transformer the "
        f"denoiser calls> (a denoiser from load_diffusers_denoiser is found automatically)"
    )


def _time_labels(denoiser: contracts.Denoiser) -> Callable[[torch.Tensor], torch.Tensor]:
    """``σ -> t_in``, the network's timestep labels, from the first ModelDenoiser in the chain."""
    current: Any = denoiser
    while current is not None:
        if hasattr(current, "network_inputs"):
            return lambda sigma: current.network_inputs(sigma)[1]
        current = getattr(current, "inner", None)
    raise DiffsampleError(
        "an adaptive PAG scale needs the network's timestep labels: wrap a ModelDenoiser "
        "(load_diffusers_denoiser), or use adaptive_scale=0"
    )


def _check_scale(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise DiffsampleError(f"{name} must be finite, got {value}")
    return value


class _AttentionGuidance(Transform):
    """Shared set-up of PAG and SAG: the wrapped network module, the CFG branch and the cost per call."""

    counts_own_calls = True

    def __init__(
        self,
        denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
        scale: float,
        *,
        model: torch.nn.Module | None,
        cfg_scale: float | None,
        cond_kwargs: Mapping[str, Any] | None,
        uncond_kwargs: Mapping[str, Any] | None,
    ) -> None:
        super().__init__(denoiser)
        self.model = _network_module(self.inner, model)
        self.scale = _check_scale("scale", scale)
        self.cfg_scale = None if cfg_scale is None else _check_scale("cfg_scale", cfg_scale)
        self.cond_kwargs = dict(cond_kwargs or {})
        self.uncond_kwargs = dict(uncond_kwargs or {})
        if self.cfg_scale is not None and not self.uncond_kwargs:
            raise DiffsampleError(
                "cfg_scale needs uncond_kwargs, the keywords of the unconditional branch "
                "(e.g. {'encoder_hidden_states': empty_prompt} or {'class_labels': null_label})"
            )
        if self.cfg_scale is None and self.uncond_kwargs:
            raise DiffsampleError("uncond_kwargs are used only with cfg_scale; pass cfg_scale=<CFG weight w>")
        branches = 1 + (self.cfg_scale is not None) + (self.scale != 0)
        self.nfe_per_call = branches
        self.network_calls_per_call = branches

    @property
    def with_cfg(self) -> bool:
        return self.cfg_scale is not None


class PerturbedAttentionGuidance(_AttentionGuidance):
    """PAG (Ahn et al. 2024) as a transform; see the module doc. Built by :func:`pag`.

    ``layers`` are the resolved self-attention module names that the perturbed branch replaces.
    """

    def __init__(
        self,
        denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
        scale: float,
        *,
        layers: str | Sequence[str] | None = None,
        model: torch.nn.Module | None = None,
        cfg_scale: float | None = None,
        cond_kwargs: Mapping[str, Any] | None = None,
        uncond_kwargs: Mapping[str, Any] | None = None,
        adaptive_scale: float = 0.0,
        batched: bool = False,
    ) -> None:
        super().__init__(
            denoiser, scale, model=model, cfg_scale=cfg_scale, cond_kwargs=cond_kwargs, uncond_kwargs=uncond_kwargs
        )
        self.batched = bool(batched)
        if self.batched:
            self.network_calls_per_call = 1
        self.layers = resolve_layers(self.model, layers)
        self.adaptive_scale = _check_scale("adaptive_scale", adaptive_scale)
        if self.adaptive_scale < 0:
            raise DiffsampleError(f"adaptive_scale must be >= 0, got {adaptive_scale}")
        self._time_label = _time_labels(self.inner) if self.adaptive_scale > 0 else None

    def __repr__(self) -> str:
        return (
            f"PerturbedAttentionGuidance(scale={self.scale}, layers={self.layers}, cfg_scale={self.cfg_scale}, "
            f"batched={self.batched})"
        )

    def scale_at(self, sigma: torch.Tensor) -> torch.Tensor:
        """Float64 ``(B,)`` PAG scale at ``sigma``: ``s``, or ``max(0, s − a (1000 − t_in(σ)))`` when adaptive."""
        s = torch.full(sigma.shape, self.scale, dtype=torch.float64)
        if self._time_label is None or self.scale == 0:
            return s
        t = self._time_label(sigma).to(torch.float64).reshape(sigma.shape)
        return (s - self.adaptive_scale * (1000.0 - t)).clamp_min(0.0)

    def perturbed_branch(self, x: torch.Tensor, sigma: torch.Tensor | float, **kwargs: Any) -> torch.Tensor:
        """``D_perturbed(x, σ)``: the conditional branch with :attr:`layers` as identity attention (counted)."""
        sigma = broadcast_sigma(sigma, x)
        modules = dict(self.model.named_modules())
        with installed(self.model, {name: identity_processor(modules[name]) for name in self.layers}):
            return self.call_inner(self.inner, x, sigma, {**kwargs, **self.cond_kwargs})

    def _branches_in_one_call(
        self, x: torch.Tensor, sigma: torch.Tensor, branches: list[dict[str, Any]], perturb_last: bool
    ) -> list[torch.Tensor]:
        """The branches as one call on their stacked rows; with ``perturb_last`` the last branch's rows run the
        chosen layers as identity attention (:class:`~.attention_layers.RowSplitAttention`)."""
        n, batch = len(branches), x.shape[0]
        stacked = stack_branch_kwargs(branches, batch, x.device)
        processors = {}
        if perturb_last:
            modules = dict(self.model.named_modules())
            processors = {
                name: RowSplitAttention(modules[name].processor, identity_processor(modules[name]), (n - 1) * batch)
                for name in self.layers
            }
        with installed(self.model, processors):
            out = self.call_inner(self.inner, torch.cat([x] * n), torch.cat([sigma] * n), stacked, copies=n)
        return list(out.split(batch))

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        scale = self.scale_at(sigma)
        perturb = bool((scale != 0).any())
        cond_kw = {**kwargs, **self.cond_kwargs}
        with model_lock(self.model):
            if self.batched:
                branches = [cond_kw] + ([{**kwargs, **self.uncond_kwargs}] if self.with_cfg else [])
                outs = self._branches_in_one_call(x, sigma, branches + ([cond_kw] if perturb else []), perturb)
                d_c = outs[0]
                d_u = outs[1] if self.with_cfg else None
                d_p = outs[-1] if perturb else None
            else:
                d_c = self.call_inner(self.inner, x, sigma, cond_kw)
                d_u = None
                if self.cfg_scale is not None:
                    d_u = self.call_inner(self.inner, x, sigma, {**kwargs, **self.uncond_kwargs})
                d_p = self.perturbed_branch(x, sigma, **kwargs) if perturb else None
        dtype = work_dtype(d_c.dtype)
        d_c = d_c.to(dtype)
        guided = d_c if d_u is None else torch.lerp(d_u.to(dtype), d_c, self.cfg_scale)
        if d_p is not None:
            guided = guided + append_dims(scale.to(device=x.device, dtype=dtype), x.dim()) * (d_c - d_p.to(dtype))
        return guided


def pag(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    scale: float = 3.0,
    *,
    layers: str | Sequence[str] | None = None,
    model: torch.nn.Module | None = None,
    cfg_scale: float | None = None,
    cond_kwargs: Mapping[str, Any] | None = None,
    uncond_kwargs: Mapping[str, Any] | None = None,
    adaptive_scale: float = 0.0,
    batched: bool = False,
) -> PerturbedAttentionGuidance:
    """Perturbed-attention guidance ``D_c + s (D_c − D_perturbed)`` of a diffusers denoiser, as a new denoiser.

    Args:
        denoiser: a σ-space denoiser of a diffusers UNet/transformer (:func:`load_diffusers_denoiser`), or any
            denoiser calling ``model``.
        scale: the PAG scale ``s`` (diffusers' ``pag_scale``, default 3.0 as there); 0 gives ``D_c`` exactly.
        layers: self-attention layers to perturb: module paths or regular expressions (diffusers'
            ``pag_applied_layers``); default per family (:func:`~.attention_layers.default_layers`).
        model: the diffusers module the denoiser calls (found automatically in a loaded denoiser).
        cfg_scale: also apply classifier-free guidance with weight ``w`` (three branches).
        cond_kwargs: keywords of the conditional (and perturbed) branch, e.g. ``{"encoder_hidden_states": c}``.
        uncond_kwargs: keywords of the unconditional branch (with ``cfg_scale``).
        adaptive_scale: diffusers' ``pag_adaptive_scale`` ``a``: the scale decays as ``max(0, s − a (1000 − t))``
            with the network's timestep label ``t``.
        batched: run the branches as one network call on their stacked rows (2 or 3 × the batch), the perturbed
            rows through identity attention in the chosen layers, as diffusers' PAG pipelines do: same result
            (to rounding), same ``nfe``, one ``call``. Branch keywords must then be stackable (tensors, or
            values equal in every branch).

    Raises:
        DiffsampleError: an unknown layer (the message lists the valid ones), a model without self-attention,
            a non-finite scale, ``cfg_scale`` without ``uncond_kwargs``.
    """
    return PerturbedAttentionGuidance(
        denoiser,
        scale,
        layers=layers,
        model=model,
        cfg_scale=cfg_scale,
        cond_kwargs=cond_kwargs,
        uncond_kwargs=uncond_kwargs,
        adaptive_scale=adaptive_scale,
        batched=batched,
    )


def attention_map_size(tokens: int, height: int, width: int) -> tuple[int, int]:
    """The ``(h, w)`` grid of ``tokens`` attention tokens over an ``height × width`` image: ``h·w = tokens`` with
    the aspect ratio closest to the image's (a UNet level's feature map, or a transformer's patch grid).

    Raises:
        ShapeError: no grid with that many tokens has the image's aspect ratio within a factor 2.
    """
    best: tuple[float, int, int] | None = None
    for h in range(1, tokens + 1):
        if tokens % h:
            continue
        w = tokens // h
        err = abs(math.log((h / w) / (height / width)))
        if best is None or err < best[0]:
            best = (err, h, w)
    if best is None or best[0] > math.log(2.0):
        raise ShapeError(f"cannot lay {tokens} attention tokens out as a grid over a {height}×{width} image")
    return best[1], best[2]


def sag_mask(probs: torch.Tensor, height: int, width: int, threshold: float = 1.0) -> torch.Tensor:
    """SAG's mask (Hong et al. 2023): float ``(B, 1, height, width)``, 1 where the token's received attention mass
    ``Σ_q mean_h A[b, h, q, k]`` exceeds ``threshold``, upsampled to the image by nearest neighbour.

    ``probs`` is the attention map ``(B, heads, N_q, N_k)`` (rows sum to 1, so the masses average to 1).
    """
    if probs.dim() != 4:
        raise ShapeError(f"attention map must be (B, heads, queries, keys), got shape {tuple(probs.shape)}")
    mass = probs.float().mean(1).sum(1)
    h, w = attention_map_size(mass.shape[1], height, width)
    mask = (mass > threshold).to(torch.float32).reshape(-1, 1, h, w)
    return F.interpolate(mask, size=(height, width), mode="nearest")


def gaussian_blur(x: torch.Tensor, sigma: float = 1.0, kernel_size: int = 9) -> torch.Tensor:
    """Per-channel Gaussian blur of ``(B, C, H, W)`` images: separable normalised kernel ``exp(−i²/2σ²)`` on
    ``i = −(k−1)/2 … (k−1)/2``, reflect padding (SAG's ``G_σ``; kernel 9, σ = 1 as in diffusers)."""
    if x.dim() != 4:
        raise ShapeError(f"gaussian_blur needs (B, C, H, W) images, got shape {tuple(x.shape)}")
    if kernel_size < 1 or kernel_size % 2 == 0 or not sigma > 0:
        raise DiffsampleError(f"blur needs an odd kernel_size >= 1 and sigma > 0, got {kernel_size}, {sigma}")
    pad = kernel_size // 2
    if pad >= min(x.shape[-2:]):
        raise ShapeError(
            f"a {kernel_size}-wide blur kernel needs images larger than {pad} pixels a side (reflect padding), "
            f"got {tuple(x.shape[-2:])}; pass a smaller blur_kernel"
        )
    grid = torch.linspace(-(kernel_size - 1) / 2, (kernel_size - 1) / 2, kernel_size, dtype=torch.float64)
    pdf = torch.exp(-0.5 * (grid / sigma) ** 2)
    kernel = (pdf / pdf.sum()).to(device=x.device, dtype=x.dtype)
    channels = x.shape[1]
    out = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, kernel_size), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(channels, 1, kernel_size, 1), groups=channels)


def sag_blur(
    x0: torch.Tensor, probs: torch.Tensor, *, threshold: float = 1.0, blur_sigma: float = 1.0, blur_kernel: int = 9
) -> torch.Tensor:
    """SAG's degraded prediction ``x̂0' = M ⊙ G(x̂0) + (1 − M) ⊙ x̂0`` (:func:`sag_mask`, :func:`gaussian_blur`)."""
    if x0.dim() != 4:
        raise ShapeError(f"SAG needs image-shaped x (B, C, H, W), got shape {tuple(x0.shape)}")
    mask = sag_mask(probs, x0.shape[-2], x0.shape[-1], threshold).to(device=x0.device) > 0.5
    return torch.where(mask, gaussian_blur(x0, blur_sigma, blur_kernel), x0)


def sag_degrade(
    x: torch.Tensor,
    x0: torch.Tensor,
    probs: torch.Tensor,
    *,
    threshold: float = 1.0,
    blur_sigma: float = 1.0,
    blur_kernel: int = 9,
) -> torch.Tensor:
    """SAG's degraded input at the same σ: ``x̂0' + (x − x̂0)`` with ``x̂0'`` from :func:`sag_blur`.

    ``x − x̂0 = σ ε̂`` is the model's own noise estimate, so this is diffusers' ``add_noise(x̂0', ε̂, t)`` in
    σ-space (divide by α); no σ appears, so it holds at every level.
    """
    return sag_blur(x0, probs, threshold=threshold, blur_sigma=blur_sigma, blur_kernel=blur_kernel) + (x - x0)


class SelfAttentionGuidance(_AttentionGuidance):
    """SAG (Hong et al. 2023) as a transform; see the module doc. Built by :func:`sag`.

    ``layer`` is the one self-attention module whose map is read.
    """

    def __init__(
        self,
        denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
        scale: float,
        *,
        layer: str | None = None,
        model: torch.nn.Module | None = None,
        cfg_scale: float | None = None,
        cond_kwargs: Mapping[str, Any] | None = None,
        uncond_kwargs: Mapping[str, Any] | None = None,
        threshold: float = 1.0,
        blur_sigma: float = 1.0,
        blur_kernel: int = 9,
    ) -> None:
        super().__init__(
            denoiser, scale, model=model, cfg_scale=cfg_scale, cond_kwargs=cond_kwargs, uncond_kwargs=uncond_kwargs
        )
        chosen = resolve_layers(self.model, layer)
        if layer is not None and len(chosen) != 1:
            raise DiffsampleError(f"SAG reads one attention map, but {layer!r} selects {len(chosen)} layers: {chosen}")
        self.layer = chosen[0]
        module = dict(self.model.named_modules())[self.layer]
        if is_joint_attention(module):
            raise DiffsampleError(
                f"SAG reads a self-attention map over image tokens; {self.layer} is a joint image-text attention "
                f"(SD3 style), which SAG here does not support"
            )
        processor = type(module.processor).__name__
        if processor not in PLAIN_PROCESSORS:
            raise DiffsampleError(
                f"SAG reads the map of {self.layer} by computing its attention explicitly, which reproduces "
                f"{' / '.join(PLAIN_PROCESSORS)} only; that layer runs {processor}"
            )
        self.threshold = _check_scale("threshold", threshold)
        self.blur_sigma = float(blur_sigma)
        self.blur_kernel = int(blur_kernel)
        if not self.blur_sigma > 0 or self.blur_kernel < 1 or self.blur_kernel % 2 == 0:
            raise DiffsampleError(f"SAG needs blur_sigma > 0 and an odd blur_kernel, got {blur_sigma}, {blur_kernel}")

    def __repr__(self) -> str:
        return f"SelfAttentionGuidance(scale={self.scale}, layer={self.layer!r}, cfg_scale={self.cfg_scale})"

    def captured_branch(
        self, x: torch.Tensor, sigma: torch.Tensor, branch_kwargs: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The guided branch's ``D(x, σ)`` and the attention map ``(B, heads, N, N)`` of :attr:`layer` (counted)."""
        capture = CapturingAttention()
        with installed(self.model, {self.layer: capture}):
            out = self.call_inner(self.inner, x, sigma, branch_kwargs)
        if capture.probs is None:
            raise DiffsampleError(f"the network call did not run the attention layer {self.layer}")
        return out, capture.probs

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        cond_kw = {**kwargs, **self.cond_kwargs}
        branch_kw = {**kwargs, **self.uncond_kwargs} if self.with_cfg else cond_kw
        with model_lock(self.model):
            d_c = self.call_inner(self.inner, x, sigma, cond_kw) if self.with_cfg else None
            if self.scale == 0:
                d_b = self.call_inner(self.inner, x, sigma, branch_kw)
                d_deg = None
            else:
                d_b, probs = self.captured_branch(x, sigma, branch_kw)
                x0_deg = sag_blur(
                    to_work(d_b),
                    probs,
                    threshold=self.threshold,
                    blur_sigma=self.blur_sigma,
                    blur_kernel=self.blur_kernel,
                )
                x_deg = (x0_deg + (x - d_b)).to(x.dtype)
                d_deg = self.call_inner(self.inner, x_deg, sigma, branch_kw)
        d_b = to_work(d_b)
        guided = d_b if d_c is None else torch.lerp(d_b, d_c.to(d_b.dtype), self.cfg_scale)
        if d_deg is not None:
            guided = guided + self.scale * (x0_deg.to(d_b.dtype) - d_deg.to(d_b.dtype))
        return guided


def sag(
    denoiser: contracts.Denoiser | Callable[..., torch.Tensor],
    scale: float = 0.75,
    *,
    layer: str | None = None,
    model: torch.nn.Module | None = None,
    cfg_scale: float | None = None,
    cond_kwargs: Mapping[str, Any] | None = None,
    uncond_kwargs: Mapping[str, Any] | None = None,
    threshold: float = 1.0,
    blur_sigma: float = 1.0,
    blur_kernel: int = 9,
) -> SelfAttentionGuidance:
    """Self-attention guidance ``D + s (x̂0' − D(x'))`` (the paper's ``ε + s (ε − ε(x'))``) as a new denoiser.

    Args:
        denoiser: a σ-space denoiser of a diffusers UNet/transformer (:func:`load_diffusers_denoiser`).
        scale: the SAG scale ``s`` (diffusers' ``sag_scale``, default 0.75 as there); 0 gives the model exactly.
        layer: the self-attention layer whose map builds the mask (a module path or regex selecting one layer);
            default the first of :func:`~.attention_layers.default_layers` (the mid block's for UNets).
        model: the diffusers module the denoiser calls (found automatically in a loaded denoiser).
        cfg_scale: also apply classifier-free guidance with weight ``w``; SAG then guides the unconditional branch.
        cond_kwargs: keywords of the conditional branch.
        uncond_kwargs: keywords of the unconditional branch (with ``cfg_scale``).
        threshold: ``ψ``, the attention mass above which a token is masked (1 = more than average).
        blur_sigma: standard deviation of the Gaussian blur, in pixels of ``x``.
        blur_kernel: odd kernel width of the blur.
    """
    return SelfAttentionGuidance(
        denoiser,
        scale,
        layer=layer,
        model=model,
        cfg_scale=cfg_scale,
        cond_kwargs=cond_kwargs,
        uncond_kwargs=uncond_kwargs,
        threshold=threshold,
        blur_sigma=blur_sigma,
        blur_kernel=blur_kernel,
    )
