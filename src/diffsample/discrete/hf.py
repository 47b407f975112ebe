"""A Hugging Face masked diffusion LM (LLaDA/Dream-style) as a :class:`~.contracts.MaskedDenoiser`.

The model is anything called as ``model(input_ids, attention_mask=…)`` returning an object with ``.logits`` of
shape ``(B, L, V_hf)`` (a ``transformers`` ``AutoModel``/``AutoModelForMaskedLM``/``AutoModelForCausalLM``, or
any ``nn.Module`` that answers the same way); ``transformers`` itself is never imported here.

**Vocabulary.** The model's mask token ``m`` lies inside its vocabulary ``0 … V_hf − 1``; diffsample's contract
puts the mask one past a vocabulary without it (:func:`~.contracts.mask_id`). The adapter's vocabulary is the
model's without ``m``: ``V = V_hf − 1``, Hugging Face id ``h`` ↦ ``h`` below ``m`` and ``h − 1`` above it, ``m``
↦ ``V`` (:meth:`HFMaskedDenoiser.to_diffsample`, :meth:`HFMaskedDenoiser.to_hf`). The logits lose column ``m``,
so no sampler can draw the mask token; the softmax is taken in float64.

**Conventions.** ``"llada"`` (Nie et al. 2025, "Large language diffusion models"): the logits at position ``i``
predict token ``i``. ``"dream"`` (Ye et al. 2025, "Dream 7B"; its ``generation_utils.py``): the model keeps the
autoregressive shift of the LM it was initialised from, the logits at ``i − 1`` predict token ``i``, and Dream
reads ``logits = cat([logits[:, :1], logits[:, :-1]], 1)``; position 0 has no predictor, so it must be a prompt
token (checked by :func:`~.hf_generate.generate`).

**Padding.** Prompts are left-padded with ``pad_token_id``: in each row the leading run of that id within the
first ``prompt_columns`` columns is padding (attention 0, the rest 1), read from the tokens themselves so that a
cached sampler may evaluate any subset of rows. The 2-D ``attention_mask`` is passed only when some row is padded
(otherwise the model's default, full attention, as Dream's ``"full"``). ``position_ids=True`` then also passes
positions that skip the padding (Dream's ``tok_idx = cumsum(mask) − 1``, pads at 1), so a padded row sees what the
unpadded prompt would; LLaDA passes the attention mask only. ``masked_columns = P`` shows the first ``P`` columns
as masks (after the attention mask is read): LLaDA's unconditional branch for classifier-free guidance.

**Time.** LLaDA and Dream are time-free (the output depends on the tokens alone), so a sampler may reuse an
output while a row is unchanged. ``timestep_kwarg="…"`` passes ``t`` (a ``(B,)`` float tensor) under that keyword
for a time-conditioned model, which then is not time-free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..errors import DiffsampleError, ShapeError
from .denoiser import CountingMaskedDenoiser

__all__ = ["CONVENTIONS", "HFMaskedDenoiser", "find_mask_token_id", "hf_masked_denoiser"]

CONVENTIONS = ("llada", "dream")


def _config_value(model: object, tokenizer: object, name: str) -> int | None:
    """``name`` from the model's config, its generation config (Dream keeps the mask id there) or the tokenizer."""
    for holder in (getattr(model, "config", None), getattr(model, "generation_config", None), tokenizer):
        value = getattr(holder, name, None) if holder is not None else None
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if value is not None:
            return int(value)
    return None


def find_mask_token_id(model: object, tokenizer: object = None, mask_token_id: int | None = None) -> int:
    """The mask token id: ``mask_token_id`` if given, else ``mask_token_id`` of the model's config, its
    generation config, or the tokenizer; a clear error when none names one."""
    found = mask_token_id if mask_token_id is not None else _config_value(model, tokenizer, "mask_token_id")
    if found is None:
        raise DiffsampleError(
            "no mask token id: pass mask_token_id=… (LLaDA uses 126336, Dream 151666) or a model whose config or "
            "generation_config, or a tokenizer, sets mask_token_id"
        )
    return int(found)


def _device(model: object) -> torch.device:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration, TypeError):
        return torch.device("cpu")


class HFMaskedDenoiser(CountingMaskedDenoiser):
    """``D(z, t) -> p(x0 | z)`` from a Hugging Face masked diffusion LM (module docstring)."""

    output = "logits"

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        mask_token_id: int,
        vocab_size: int,
        convention: str = "llada",
        pad_token_id: int | None = None,
        position_ids: bool | None = None,
        timestep_kwarg: str | None = None,
        suppress_tokens: Sequence[int] = (),
    ) -> None:
        if convention not in CONVENTIONS:
            raise DiffsampleError(f"unknown convention {convention!r}; valid conventions: {', '.join(CONVENTIONS)}")
        hf_vocab = int(vocab_size)
        if not 0 <= int(mask_token_id) < hf_vocab:
            raise DiffsampleError(f"mask_token_id {mask_token_id} lies outside the model's vocabulary [0, {hf_vocab})")
        if pad_token_id is not None and int(pad_token_id) == int(mask_token_id):
            raise DiffsampleError(f"pad_token_id equals mask_token_id ({mask_token_id}): padding would read as masks")
        suppressed = sorted({int(s) for s in suppress_tokens})
        if any(not 0 <= s < hf_vocab for s in suppressed):
            raise DiffsampleError(f"suppress_tokens must lie in [0, {hf_vocab}), got {suppressed}")
        if len(set(suppressed) | {int(mask_token_id)}) >= hf_vocab:
            raise DiffsampleError("suppress_tokens leaves no token that can be drawn")
        super().__init__(hf_vocab - 1, time_free=timestep_kwarg is None)
        self.model = model
        self.hf_vocab_size = hf_vocab
        self.mask_token_id = int(mask_token_id)
        self.convention = convention
        self.pad_token_id = None if pad_token_id is None else int(pad_token_id)
        self.position_ids = convention == "dream" if position_ids is None else bool(position_ids)
        self.timestep_kwarg = timestep_kwarg
        self.suppress_tokens = suppressed
        self.prompt_columns: int | None = None  # where left padding may lie (None: anywhere); set by generate
        self.masked_columns = 0  # leading columns shown as masks (the unconditional branch of CFG); set by generate
        keep = torch.ones(hf_vocab, dtype=torch.bool)
        keep[self.mask_token_id] = False
        self._keep = keep

    # -- vocabulary mapping ---------------------------------------------------------------------------------
    def to_diffsample(self, ids: torch.Tensor) -> torch.Tensor:
        """Hugging Face ids → diffsample ids (the mask token ↦ ``vocab_size``)."""
        ids = ids.to(torch.int64)
        if ((ids < 0) | (ids >= self.hf_vocab_size)).any():
            raise ShapeError(f"token ids must lie in [0, {self.hf_vocab_size}) (the model's vocabulary)")
        out = torch.where(ids > self.mask_token_id, ids - 1, ids)
        return torch.where(ids == self.mask_token_id, torch.full_like(ids, self.vocab_size), out)

    def to_hf(self, z: torch.Tensor) -> torch.Tensor:
        """diffsample ids → Hugging Face ids (``vocab_size`` ↦ the mask token)."""
        z = z.to(torch.int64)
        out = torch.where(z >= self.mask_token_id, z + 1, z)
        return torch.where(z == self.vocab_size, torch.full_like(z, self.mask_token_id), out)

    # -- the model call -------------------------------------------------------------------------------------
    def attention_mask(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` int64: 0 on each row's leading run of ``pad_token_id`` within the first ``prompt_columns``
        columns (left padding), 1 elsewhere."""
        if self.pad_token_id is None:
            return torch.ones_like(ids)
        real = ids != self.pad_token_id
        if self.prompt_columns is not None:
            real[:, self.prompt_columns :] = True
        return (real.cumsum(-1) > 0).to(torch.int64)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ids = self.to_hf(z)
        attention = self.attention_mask(ids)
        if self.masked_columns:
            ids[:, : self.masked_columns] = self.mask_token_id
        device = _device(self.model)
        kwargs: dict[str, Any] = {}
        if (attention == 0).any():  # else the model's default: full attention (Dream's "full")
            kwargs["attention_mask"] = attention.to(device)
            if self.position_ids:
                kwargs["position_ids"] = (attention.cumsum(-1) - 1).masked_fill(attention == 0, 1).to(device)
        if self.timestep_kwarg is not None:
            kwargs[self.timestep_kwarg] = t.to(device=device, dtype=torch.float32)
        with torch.no_grad():
            out = self.model(ids.to(device), **kwargs)
        logits = getattr(out, "logits", None)
        if logits is None:
            raise ShapeError(f"{type(self.model).__name__} returned {type(out).__name__} without .logits")
        if logits.shape != (*ids.shape, self.hf_vocab_size):
            raise ShapeError(
                f"the model returned logits of shape {tuple(logits.shape)}, expected "
                f"{(*ids.shape, self.hf_vocab_size)} (batch, length, the model's vocabulary)"
            )
        logits = logits.detach().to(device="cpu", dtype=torch.float64)
        if self.convention == "dream":
            logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        if self.suppress_tokens:
            logits[..., self.suppress_tokens] = -torch.inf
        return logits[..., self._keep]


def hf_masked_denoiser(
    model: Callable[..., Any],
    *,
    tokenizer: object = None,
    mask_token_id: int | None = None,
    vocab_size: int | None = None,
    convention: str = "llada",
    pad_token_id: int | None = None,
    position_ids: bool | None = None,
    timestep_kwarg: str | None = None,
    suppress_tokens: Sequence[int] = (),
) -> HFMaskedDenoiser:
    """Wrap ``model`` (module docstring). ``mask_token_id``, ``vocab_size`` (the logits' width) and
    ``pad_token_id`` default to the model's config, its generation config or the tokenizer (the pad id falls
    back to the EOS id, as in Dream); ``position_ids`` defaults to ``convention == "dream"``."""
    mask = find_mask_token_id(model, tokenizer, mask_token_id)
    if vocab_size is None:
        vocab_size = getattr(getattr(model, "config", None), "vocab_size", None)
    if vocab_size is None:
        raise DiffsampleError(
            "no vocabulary size: pass vocab_size=… (the width of the logits) or a model with a config"
        )
    if pad_token_id is None:
        pad_token_id = _config_value(model, tokenizer, "pad_token_id")
    if pad_token_id is None:
        pad_token_id = _config_value(model, tokenizer, "eos_token_id")
    if pad_token_id is not None and int(pad_token_id) == mask:
        pad_token_id = None  # a config whose pad is the mask: no padding can be read (generate checks prompts)
    return HFMaskedDenoiser(
        model,
        mask_token_id=mask,
        vocab_size=int(vocab_size),
        convention=convention,
        pad_token_id=pad_token_id,
        position_ids=position_ids,
        timestep_kwarg=timestep_kwarg,
        suppress_tokens=suppress_tokens,
    )
