"""Self-attention layers of diffusers networks: finding them, and swapping their attention processors for one call.

Attention-perturbation guidance (:mod:`.attention_guidance`) changes what chosen self-attention layers of a
diffusers UNet or transformer compute, for one network call at a time. diffusers routes every
:class:`diffusers.models.attention_processor.Attention` module's computation through its ``processor``
attribute; this module provides

* :func:`self_attention_layers` — the names of a model's self-attention modules (``Attention`` with
  ``is_cross_attention`` false, as diffusers' ``PAGMixin`` selects them; SD3-style joint attention included),
  and :func:`resolve_layers`, which turns layer names / regular expressions (diffusers' ``pag_applied_layers``
  spelling) into module names, with :func:`default_layers` per model family;
* :class:`IdentityAttention` — the perturbed processor of PAG: the attention map is replaced by the identity,
  so each token's output is its own value projection, ``out = W_o (W_v h)`` (residual and rescale as the module's
  configuration says); :class:`JointIdentityAttention` is its SD3-style joint (image + text tokens) form;
* :class:`CapturingAttention` — plain scaled-dot-product self-attention (the computation of diffusers'
  ``AttnProcessor2_0``) that keeps the softmax map ``softmax(q kᵀ / √d)`` for SAG;
* :func:`installed` — a context manager that installs processors on named modules for the duration of one call
  and restores the previous ones afterwards (also on error).

Thread safety
-------------
Processors are attributes of the shared model, so a plain swap would be visible to every caller of that model
while it lasts. Two guards keep callers apart:

* :func:`installed` does not put the new processor itself on a module but a :class:`ScopedProcessor`, which runs
  it only for calls made from the context (thread, or asyncio task) that opened the ``with`` block, and the
  module's previous processor for every other caller (a context variable holds the open blocks);
* it also holds a per-model re-entrant lock (:func:`model_lock`) from installation to restoration, and the
  guidance transforms hold the same lock around all their network calls, so two guided walks on one model
  take turns instead of installing and restoring over each other.

So two walks on the same model, guided or not, in two threads never see each other's processors.

diffusers is imported only inside the functions that need its ``Attention`` class.
"""

from __future__ import annotations

import contextvars
import re
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.nn import functional as F

from ..errors import DiffsampleError

__all__ = [
    "CapturingAttention",
    "IdentityAttention",
    "JointIdentityAttention",
    "RowSplitAttention",
    "ScopedProcessor",
    "default_layers",
    "identity_processor",
    "installed",
    "is_joint_attention",
    "model_lock",
    "resolve_layers",
    "self_attention_layers",
]

_LOCKS: weakref.WeakKeyDictionary[torch.nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()

PLAIN_PROCESSORS = ("AttnProcessor2_0", "AttnProcessor")
"""Processors whose computation :class:`CapturingAttention` reproduces (to rounding)."""


def model_lock(model: torch.nn.Module) -> threading.RLock:
    """The re-entrant lock that guards ``model``'s attention processors (one per model, created on first use)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


def _attention_class() -> type:
    from diffusers.models.attention_processor import Attention

    return Attention


def is_joint_attention(module: torch.nn.Module) -> bool:
    """An SD3-style joint attention: image tokens and context tokens attend in one sequence (``add_k_proj``)."""
    return getattr(module, "add_k_proj", None) is not None


def self_attention_layers(model: torch.nn.Module) -> list[str]:
    """Names of ``model``'s self-attention modules, in ``named_modules`` order.

    A self-attention module is a diffusers ``Attention`` whose ``is_cross_attention`` is false: plain
    self-attention (UNet attention blocks, ``attn1`` of transformer blocks) and SD3-style joint attention over
    image and context tokens (``add_k_proj``; see :func:`is_joint_attention`). Flux-style modules of other
    classes (``FluxAttention``) are not listed.
    """
    attention = _attention_class()
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, attention) and not module.is_cross_attention
    ]


def _no_layers_error(model: torch.nn.Module) -> DiffsampleError:
    others = [
        f"{n} ({type(m).__name__})"
        for n, m in model.named_modules()
        if "Attention" in type(m).__name__ and hasattr(m, "processor")
    ]
    reason = (
        f"its attention modules ({', '.join(others[:3])}{', …' if len(others) > 3 else ''}) are not diffusers "
        f"Attention self-attention modules, which attention perturbation here supports"
        if others
        else "it has no diffusers Attention module that attends over its own tokens"
    )
    return DiffsampleError(f"{type(model).__name__} has no self-attention layer to perturb: {reason}")


def default_layers(model: torch.nn.Module) -> list[str]:
    """The self-attention layers guidance perturbs by default, per model family.

    * UNets (a ``mid_block`` with self-attention: UNet2DConditionModel, UNet2DModel): every self-attention
      layer of the mid block, as diffusers' PAG pipelines default to (``pag_applied_layers="mid"``);
    * transformers with a ``transformer_blocks`` list (DiT, PixArt, …): the self-attention of the middle
      block, ``transformer_blocks.{n // 2}``;
    * otherwise: the middle one of all self-attention layers.

    Raises:
        DiffsampleError: the model has no self-attention layer.
    """
    names = self_attention_layers(model)
    if not names:
        raise _no_layers_error(model)
    mid = [n for n in names if n.startswith("mid_block.")]
    if mid:
        return mid
    blocks = getattr(model, "transformer_blocks", None)
    if isinstance(blocks, torch.nn.ModuleList) and len(blocks) > 0:
        prefix = f"transformer_blocks.{len(blocks) // 2}."
        middle = [n for n in names if n.startswith(prefix)]
        if middle:
            return middle
    return [names[len(names) // 2]]


def _matches(pattern: str, name: str, module_paths: set[str]) -> bool:
    """``pattern`` names ``name``: as a module path (the layer or a module holding it), else as a regex.

    A pattern that is a module path of the model (``"transformer_blocks.1"``, ``"mid_block"``) selects the
    self-attention layers inside that module only (so ``transformer_blocks.1`` does not select block 10);
    any other pattern is searched in the layer name (``re.search``, diffusers' ``pag_applied_layers`` rule, so
    diffusers' short ``"blocks.1"`` also selects blocks 10–19 of a deep transformer, as it does in diffusers).
    """
    if pattern in module_paths:
        return name == pattern or name.startswith(pattern + ".")
    return re.search(pattern, name) is not None


def resolve_layers(model: torch.nn.Module, layers: str | Sequence[str] | None) -> list[str]:
    """Self-attention module names selected by ``layers`` (None: :func:`default_layers`).

    Args:
        model: a diffusers UNet or transformer.
        layers: a module path or a regular expression, or a list of them (diffusers' ``pag_applied_layers``:
            ``"mid"``, ``"down_blocks.0"``, ``"transformer_blocks.(1|2)"``, a full layer name).

    Raises:
        DiffsampleError: the model has no self-attention layer, a pattern is not a valid regular expression,
            or a pattern selects no self-attention layer (the message lists the valid names).
    """
    names = self_attention_layers(model)
    if not names:
        raise _no_layers_error(model)
    if layers is None:
        return default_layers(model)
    patterns = [layers] if isinstance(layers, str) else list(layers)
    if not patterns or not all(isinstance(p, str) for p in patterns):
        raise DiffsampleError(f"layers must be a name/regex or a non-empty list of them, got {layers!r}")
    module_paths = {n for n, _ in model.named_modules() if n}
    chosen: list[str] = []
    for pattern in patterns:
        try:
            found = [n for n in names if _matches(pattern, n, module_paths)]
        except re.error as err:
            raise DiffsampleError(f"layer pattern {pattern!r} is not a valid regular expression: {err}") from None
        if not found:
            raise DiffsampleError(
                f"layer {pattern!r} selects no self-attention layer of {type(model).__name__}; "
                f"its self-attention layers are: {', '.join(names)}"
            )
        chosen.extend(n for n in found if n not in chosen)
    return chosen


def _flatten(
    attn: torch.nn.Module, hidden_states: torch.Tensor, temb: torch.Tensor | None
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """The processor prologue of diffusers' ``AttnProcessor2_0``: spatial norm, ``(B, C, H, W) -> (B, HW, C)``,
    group norm. Returns the tokens and the 4-D shape to restore (empty for 3-D input)."""
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    shape: tuple[int, ...] = ()
    if hidden_states.ndim == 4:
        shape = tuple(hidden_states.shape)
        b, c, h, w = shape
        hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    return hidden_states, shape


def _finish(attn: torch.nn.Module, out: torch.Tensor, residual: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """The epilogue: output projection and dropout, back to 4-D, residual connection, output rescale."""
    out = attn.to_out[1](attn.to_out[0](out))
    if shape:
        out = out.transpose(-1, -2).reshape(shape)
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor


def _refuse_context(encoder_hidden_states: torch.Tensor | None) -> None:
    if encoder_hidden_states is not None:
        raise DiffsampleError(
            "attention perturbation applies to self-attention only, but this layer was called with "
            "encoder_hidden_states (it attends to a context); choose another layer"
        )


class IdentityAttention:
    """PAG's perturbed self-attention (Ahn et al. 2024): the attention map ``softmax(q kᵀ/√d)`` is
    replaced by the identity matrix, so the layer returns ``W_o (W_v h)`` per token (every head's output is its
    own value; the heads' concatenation is the value projection), with the module's group/spatial norm,
    residual connection and output rescale unchanged. Same computation as the perturbed half of diffusers'
    ``PAGIdentitySelfAttnProcessor2_0``.
    """

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _refuse_context(encoder_hidden_states)
        residual = hidden_states
        tokens, shape = _flatten(attn, hidden_states, temb)
        return _finish(attn, attn.to_v(tokens), residual, shape)


class JointIdentityAttention:
    """PAG's perturbed joint attention (SD3-style ``JointAttnProcessor2_0`` layers), as diffusers'
    ``PAGJointAttnProcessor2_0`` perturbs them for StableDiffusion3PAGPipeline: in the joint map over
    ``[image tokens; context tokens]`` the image-to-image block is the identity (each image token attends to
    itself and to the context tokens only), the rest is unchanged. Without context tokens this is
    :class:`IdentityAttention`'s rule. Returns ``(image, context)`` like the joint processor.
    """

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if encoder_hidden_states is None:
            return attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))
        batch, image_tokens, _ = hidden_states.shape
        heads = attn.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, -1, heads, t.shape[-1] // heads).transpose(1, 2)

        query, key, value = (
            split(attn.to_q(hidden_states)),
            split(attn.to_k(hidden_states)),
            split(attn.to_v(hidden_states)),
        )
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        c_query = split(attn.add_q_proj(encoder_hidden_states))
        c_key = split(attn.add_k_proj(encoder_hidden_states))
        c_value = split(attn.add_v_proj(encoder_hidden_states))
        if attn.norm_added_q is not None:
            c_query = attn.norm_added_q(c_query)
        if attn.norm_added_k is not None:
            c_key = attn.norm_added_k(c_key)
        query, key, value = (torch.cat(pair, dim=2) for pair in ((query, c_query), (key, c_key), (value, c_value)))
        length = query.shape[2]
        mask = torch.zeros(length, length, dtype=query.dtype, device=query.device)
        mask[:image_tokens, :image_tokens] = float("-inf")
        mask[:image_tokens, :image_tokens].fill_diagonal_(0.0)
        out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)
        out = out.transpose(1, 2).reshape(batch, length, -1).to(query.dtype)
        image, context = out[:, :image_tokens], out[:, image_tokens:]
        if not attn.context_pre_only:
            context = attn.to_add_out(context)
        return attn.to_out[1](attn.to_out[0](image)), context


def identity_processor(module: torch.nn.Module) -> IdentityAttention | JointIdentityAttention:
    """PAG's perturbed processor for ``module``: :class:`JointIdentityAttention` for joint attention,
    :class:`IdentityAttention` otherwise."""
    return JointIdentityAttention() if is_joint_attention(module) else IdentityAttention()


class RowSplitAttention:
    """One layer call on a stacked batch: rows ``[:split]`` through ``original`` (the module's own processor),
    rows ``[split:]`` through ``perturbed`` — the perturbed branch of PAG batched with the others, as diffusers'
    ``PAGCFGIdentitySelfAttnProcessor2_0`` does. Per-row inputs (``encoder_hidden_states``, ``attention_mask``,
    ``temb`` with the batch's leading size) are split alike; a joint layer's ``(image, context)`` are joined
    back pairwise."""

    def __init__(self, original: Any, perturbed: Any, split: int) -> None:  # noqa: ANN401 -- processors
        self.original = original
        self.perturbed = perturbed
        self.split = split

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> Any:  # noqa: ANN401 -- a tensor, or (image, context) for joint attention
        rows = hidden_states.shape[0]

        def part(t: torch.Tensor | None, sl: slice) -> torch.Tensor | None:
            return t[sl] if t is not None and t.dim() > 0 and t.shape[0] == rows else t

        outs = []
        for processor, sl in ((self.original, slice(None, self.split)), (self.perturbed, slice(self.split, None))):
            extra = {} if temb is None else {"temb": part(temb, sl)}
            outs.append(
                processor(
                    attn,
                    hidden_states[sl],
                    encoder_hidden_states=part(encoder_hidden_states, sl),
                    attention_mask=part(attention_mask, sl),
                    **extra,
                )
            )
        if isinstance(outs[0], tuple):
            return tuple(torch.cat(pair) for pair in zip(*outs, strict=True))
        return torch.cat(outs)


class CapturingAttention:
    """Scaled-dot-product self-attention that keeps its attention map (for SAG).

    Computes what diffusers' ``AttnProcessor2_0`` computes, ``softmax(q kᵀ/√d + mask) v`` per head with
    ``d`` the head dimension (the scale ``F.scaled_dot_product_attention`` uses), but with the softmax
    formed explicitly; :attr:`probs` holds the last map, shape ``(B, heads, N, N)`` (rows: queries).
    """

    def __init__(self) -> None:
        self.probs: torch.Tensor | None = None

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        _refuse_context(encoder_hidden_states)
        residual = hidden_states
        tokens, shape = _flatten(attn, hidden_states, temb)
        batch, length, _ = tokens.shape
        query, key, value = attn.to_q(tokens), attn.to_k(tokens), attn.to_v(tokens)
        heads = attn.heads
        head_dim = key.shape[-1] // heads
        query, key, value = (t.view(batch, -1, heads, head_dim).transpose(1, 2) for t in (query, key, value))
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        scores = (query @ key.transpose(-1, -2)) * head_dim**-0.5
        if attention_mask is not None:
            mask = attn.prepare_attention_mask(attention_mask, length, batch)
            scores = scores + mask.view(batch, heads, -1, mask.shape[-1])
        probs = F.softmax(scores.float(), dim=-1).to(query.dtype)
        self.probs = probs
        out = (probs @ value).transpose(1, 2).reshape(batch, -1, heads * head_dim).to(query.dtype)
        return _finish(attn, out, residual, shape)


_OPEN_SCOPES: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "diffsample_attention_scopes", default=frozenset()
)
"""The :func:`installed` blocks open in the current context (ids of their scope tokens)."""


class ScopedProcessor:
    """Runs ``processor`` for calls from the context that installed it (its scope is open there), ``original``
    for any other caller. Both are called as diffusers calls a processor; ``temb`` is passed on only when given.
    """

    def __init__(self, processor: Any, original: Any, scope: object) -> None:  # noqa: ANN401 -- processors
        self.processor = processor
        self.original = original
        self.scope = id(scope)

    def __call__(
        self,
        attn: torch.nn.Module,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> Any:  # noqa: ANN401 -- a tensor, or (image, context) for joint attention
        target = self.processor if self.scope in _OPEN_SCOPES.get() else self.original
        extra = {} if temb is None else {"temb": temb}
        return target(
            attn, hidden_states, encoder_hidden_states=encoder_hidden_states, attention_mask=attention_mask, **extra
        )


@contextmanager
def installed(model: torch.nn.Module, processors: Mapping[str, Any]) -> Iterator[None]:
    """Install ``processors`` (module name → processor) on ``model`` for the ``with`` block, then restore.

    Each module gets a :class:`ScopedProcessor`: the new processor runs only for calls from this context,
    other threads keep the previous one. Holds :func:`model_lock` for the whole block; the previous processors
    are put back on exit, also when the block raises. Blocks nest (inner ones see the outer ones' processors).
    """
    modules = dict(model.named_modules())
    scope = object()
    with model_lock(model):
        saved = {name: modules[name].processor for name in processors}
        token = _OPEN_SCOPES.set(_OPEN_SCOPES.get() | {id(scope)})
        try:
            for name, processor in processors.items():
                modules[name].set_processor(ScopedProcessor(processor, saved[name], scope))
            yield
        finally:
            _OPEN_SCOPES.reset(token)
            for name, processor in saved.items():
                modules[name].set_processor(processor)
