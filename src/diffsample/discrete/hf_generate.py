"""``generate`` for Hugging Face masked diffusion LMs in LLaDA's and Dream's vocabulary, built on diffsample's
samplers.

    out = discrete.generate(model, prompt_ids, gen_length=128, steps=128, block_length=32)
    out.sequences  # (B, P + gen_length) Hugging Face ids, the prompt kept; out.nfe the forward calls

The prompt is followed by ``gen_length`` mask tokens and the model (wrapped by :func:`~.hf.hf_masked_denoiser`)
fills them in ``steps`` forward calls:

* **LLaDA** (Nie et al. 2025, ``generate.py``): ``remasking="low_confidence"`` reveals, each step, the masked
  positions whose drawn token is most probable under the untempered model (:func:`~.ordered.ordered` with
  ``order="sampled_confidence"`` and ``score_transform`` the identity); ``"random"`` reveals uniformly random
  positions. ``block_length`` cuts the generation into consecutive blocks filled left to right, each in
  ``steps / blocks`` steps; a step reveals ``⌈m / steps_left⌉`` of the block's ``m`` masked positions, which is
  LLaDA's ``get_num_transfer_tokens`` split (``m // n`` each, the remainder one extra on the first steps).
* **Dream** (Ye et al. 2025, ``generation_utils.py``): ``alg="origin"`` is MDLM ancestral sampling (each masked
  position revealed with probability ``1 − s/t`` on Dream's grid ``t = linspace(1, eps, steps + 1)``, the last
  step revealing all): :func:`~.ancestral.ancestral` with the schedule ``α_t = (1 − eps)(1 − t)``, ``α_0 = 1``,
  whose reveal probabilities on diffsample's uniform grid are exactly Dream's. ``"maskgit_plus"``,
  ``"topk_margin"``, ``"entropy"`` are the orders ``sampled_confidence``, ``margin``, ``entropy``, scored (as
  Dream does) on the distribution the token is drawn from — at ``temperature = 0`` on the top-p/top-k truncated
  model distribution, since the draw is then the argmax. ``alg_temp > 0`` samples the order (Gumbel-top-k on
  ``score / alg_temp``, the law of Dream's ``multinomial(softmax(confidence / alg_temp))`` without
  replacement).
* Token draws: ``temperature`` then ``top_p`` then ``top_k`` (Dream's order; LLaDA has temperature only),
  ``temperature = 0`` the argmax; every draw is a float64 inverse-CDF draw from the sample's own uniform stream
  (:mod:`~.random`), so sample ``i`` is the same in any batch and never the mask token.
* ``cfg_scale = w > 0``: classifier-free guidance :func:`~.guidance.masked_cfg` with LLaDA's unconditional
  branch, the same sequence with every prompt column masked (padding keeps attention 0); two forward calls per
  step.

Where this differs from the reference code, on purpose:

* **Draw precision.** LLaDA draws by Gumbel-max in float64 (``exp(logits) / (−log u)^T`` with ``u`` from
  ``torch.rand`` in float64): the same law as our float64 inverse-CDF draw, both reading the model's (bfloat16)
  logits. Published float32 or float16 Gumbel draws would lower the temperature (Zheng et al. 2024; measured by
  ``python -m benchmarks discrete --sections float32``); neither LLaDA's code nor ours does that. Dream draws with
  ``torch.distributions.Categorical`` on ``softmax(logits)`` taken in the model's dtype (bfloat16 for its released
  weights: each probability rounded to 8 significant bits); we take the softmax in float64. LLaDA's and Dream's
  confidences are likewise in the model's dtype, ours in float64, so near-ties may order differently.
* **Dream's tokens per step.** Dream reveals ``⌊m (1 − s/t)⌋`` positions (possibly none, the rest on the last
  step); here every order uses the ``⌈m / steps_left⌉`` split above, so each step reveals at least one token.
  The number of forward calls is the same (``steps``). With ``steps = gen_length`` and ``eps = 10⁻³`` Dream's
  first step reveals nothing and its last two tokens at once, so its "one token per step" is not the exact
  chain rule (``python -m benchmarks hf_generate --sections dream-counts``).
* **Caching.** Both models are time-free, so a row whose tokens did not change keeps its output: a step that
  reveals nothing (``alg="origin"`` with few tokens, or more steps than masked positions in a block) costs no
  call for that row. ``nfe`` counts the calls made (LLaDA and Dream always call).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import DiffsampleError, ShapeError
from . import categorical
from .ancestral import ancestral
from .contracts import MaskedDenoiser
from .denoiser import CountingMaskedDenoiser
from .guidance import masked_cfg
from .hf import HFMaskedDenoiser, hf_masked_denoiser
from .ordered import blocks_of, ordered
from .random import seeded_uniforms
from .schedules import MaskingSchedule, custom

__all__ = ["ALGS", "REMASKINGS", "Generation", "dream_schedule", "generate"]

REMASKINGS = ("low_confidence", "random")
ALGS = ("origin", "maskgit_plus", "topk_margin", "entropy")
_ALG_ORDERS = {"maskgit_plus": "sampled_confidence", "topk_margin": "margin", "entropy": "entropy"}

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Generation:
    """The output of :func:`generate`: ``sequences`` ``(B, P + G)`` Hugging Face ids (prompt then generation),
    ``nfe`` forward calls (CFG counts two per step), ``rows`` sequences evaluated."""

    sequences: torch.Tensor
    prompt_length: int
    nfe: int
    rows: int

    @property
    def generated(self) -> torch.Tensor:
        """``(B, G)``: the generated tokens alone."""
        return self.sequences[:, self.prompt_length :]


def dream_schedule(eps: float = 1e-3) -> MaskingSchedule:
    """``α_t = (1 − eps)(1 − t)`` for ``t > 0`` and ``α_0 = 1``: on the uniform grid ``t_i = 1 − i/N`` the
    masked fraction ``1 − α`` is Dream's ``linspace(1, eps, N + 1)``, and the last step reveals everything."""
    if not 0.0 <= eps < 1.0:
        raise DiffsampleError(f"eps must lie in [0, 1), got {eps}")
    return custom(lambda t: torch.where(t > 0, (1.0 - eps) * (1.0 - t), torch.ones_like(t)), f"dream(eps={eps})")


class _Window:
    """The denoiser seen while one block is filled: columns from ``hidden_from`` on hold a placeholder for the
    sampler (so they are no candidates) and are shown to ``inner`` as masks. Counts nothing itself."""

    def __init__(self, inner: MaskedDenoiser, hidden_from: int) -> None:
        self.inner, self.hidden_from = inner, hidden_from
        self.vocab_size, self.time_free = inner.vocab_size, inner.time_free

    def __call__(self, z: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
        z = z.clone()
        z[:, self.hidden_from :] = self.vocab_size
        return self.inner(z, t)


def _identity(p: torch.Tensor) -> torch.Tensor:
    return p


def _compose(steps: list[Transform]) -> Transform | None:
    if not steps:
        return None

    def apply(p: torch.Tensor) -> torch.Tensor:
        for step in steps:
            p = step(p)
        return p

    return apply


def _truncations(top_p: float | None, top_k: int | None) -> list[Transform]:
    steps: list[Transform] = []
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise DiffsampleError(f"top_p must lie in (0, 1], got {top_p}")
        if top_p < 1.0:
            steps.append(lambda p: categorical.top_p(p, top_p))
    if top_k is not None:
        if int(top_k) < 1:
            raise DiffsampleError(f"top_k must be a positive integer, got {top_k}")
        steps.append(lambda p: categorical.top_k(p, int(top_k)))
    return steps


def _prepare_prompt(
    den: HFMaskedDenoiser, prompt_ids: torch.Tensor, attention_mask: torch.Tensor | None
) -> torch.Tensor:
    """The prompt as ``(B, P)`` int64 Hugging Face ids, padded positions set to the pad id (checked)."""
    prompt = torch.as_tensor(prompt_ids)
    if prompt.dim() == 1:
        prompt = prompt[None]
    if prompt.dim() != 2 or prompt.is_floating_point() or prompt.shape[0] < 1:
        raise ShapeError(f"prompt_ids must be a (B, P) integer tensor, got {tuple(prompt.shape)} {prompt.dtype}")
    prompt = prompt.to(torch.int64).clone()
    if ((prompt < 0) | (prompt >= den.hf_vocab_size)).any():
        raise ShapeError(f"prompt_ids must lie in [0, {den.hf_vocab_size}) (the model's vocabulary)")
    if attention_mask is not None:
        am = torch.as_tensor(attention_mask).to(torch.int64)
        if am.shape != prompt.shape or ((am != 0) & (am != 1)).any():
            raise ShapeError(f"attention_mask must be 0/1 of the prompt's shape {tuple(prompt.shape)}")
        if (am[:, 1:] < am[:, :-1]).any():
            raise DiffsampleError("attention_mask must describe left padding (zeros, then ones, in every row)")
        if (am == 0).any():
            if den.pad_token_id is None:
                raise DiffsampleError("a left-padded prompt needs pad_token_id (none given, none in the config)")
            prompt = torch.where(am == 0, torch.full_like(prompt, den.pad_token_id), prompt)
            first = (am.cumsum(-1) == 1) & (am == 1)
            if (prompt[first] == den.pad_token_id).any():
                raise DiffsampleError(
                    f"a padded prompt row starts with the pad token id {den.pad_token_id}: its padding cannot be "
                    "told from the prompt; pad with another id"
                )
        real = am == 1
    else:
        real = torch.ones_like(prompt, dtype=torch.bool)
    if (prompt[real] == den.mask_token_id).any():
        raise DiffsampleError(f"prompt_ids holds the mask token id {den.mask_token_id}; a prompt must be unmasked")
    if den.convention == "dream" and not real.any(-1).all():
        raise DiffsampleError(
            "the dream convention needs at least one prompt token in every row (position i is predicted by "
            "position i - 1, so the first generated token needs a predecessor)"
        )
    return prompt


def _check_length(den: HFMaskedDenoiser, total: int) -> None:
    limit = getattr(getattr(den.model, "config", None), "max_position_embeddings", None)
    if isinstance(limit, int) and total > limit:
        raise DiffsampleError(
            f"prompt length + gen_length = {total} exceeds the model's max_position_embeddings ({limit})"
        )


def generate(
    model: Callable[..., Any],
    prompt_ids: torch.Tensor,
    *,
    gen_length: int = 128,
    steps: int = 128,
    block_length: int | None = None,
    remasking: str | None = None,
    alg: str | None = None,
    alg_temp: float = 0.0,
    temperature: float = 0.0,
    top_p: float | None = None,
    top_k: int | None = None,
    cfg_scale: float = 0.0,
    eps: float = 1e-3,
    seed: int | Sequence[int] | torch.Tensor = 0,
    attention_mask: torch.Tensor | None = None,
    tokenizer: object = None,
    mask_token_id: int | None = None,
    convention: str = "llada",
    pad_token_id: int | None = None,
    suppress_tokens: Sequence[int] = (),
    cache: bool = True,
) -> Generation:
    """Generate ``gen_length`` tokens after each prompt in ``steps`` steps (module docstring).

    ``model`` is a Hugging Face masked diffusion LM or an :class:`~.hf.HFMaskedDenoiser`; ``remasking`` (LLaDA,
    the default ``"low_confidence"``) and ``alg`` (Dream) are exclusive. ``attention_mask`` marks left padding of
    unequal prompts. ``mask_token_id``, ``pad_token_id``, ``convention`` (``"llada"``: position ``i`` predicts
    token ``i``; ``"dream"``: position ``i − 1`` does) and ``suppress_tokens`` (ids never drawn, LLaDA's
    ``logits_eos_inf``) configure the adapter when ``model`` is not one already. ``seed``: one integer (sample
    ``i`` uses its derived seed) or one seed per prompt.
    """
    if remasking is not None and alg is not None:
        raise DiffsampleError("give remasking (LLaDA) or alg (Dream), not both")
    if alg is not None and alg not in ALGS:
        raise DiffsampleError(f"unknown alg {alg!r}; valid algs: {', '.join(ALGS)}")
    remasking = "low_confidence" if alg is None and remasking is None else remasking
    if remasking is not None and remasking not in REMASKINGS:
        raise DiffsampleError(f"unknown remasking {remasking!r}; valid remaskings: {', '.join(REMASKINGS)}")
    if temperature < 0 or alg_temp < 0 or cfg_scale < 0:
        raise DiffsampleError(
            f"temperature, alg_temp and cfg_scale must be >= 0, got {temperature}, {alg_temp}, {cfg_scale}"
        )
    gen_length, steps = int(gen_length), int(steps)
    if gen_length < 1 or steps < 1:
        raise DiffsampleError(f"gen_length and steps must be positive, got {gen_length} and {steps}")
    block = gen_length if block_length is None else int(block_length)
    if block < 1 or gen_length % block:
        raise DiffsampleError(f"gen_length ({gen_length}) must be a multiple of block_length ({block_length})")
    if steps % (gen_length // block):
        raise DiffsampleError(f"steps ({steps}) must be a multiple of the number of blocks ({gen_length // block})")
    blocks, per_block = blocks_of(gen_length, steps, block)

    if isinstance(model, HFMaskedDenoiser):
        base = copy.copy(model)
    else:
        base = hf_masked_denoiser(
            model,
            tokenizer=tokenizer,
            mask_token_id=mask_token_id,
            convention=convention,
            pad_token_id=pad_token_id,
            suppress_tokens=suppress_tokens,
        )
    base.reset_counter()
    prompt = _prepare_prompt(base, prompt_ids, attention_mask)
    batch, plen = prompt.shape
    _check_length(base, plen + gen_length)
    base.prompt_columns = plen if attention_mask is not None else 0

    top: CountingMaskedDenoiser = base
    if cfg_scale > 0:
        unconditional = copy.copy(base)
        unconditional.masked_columns = plen
        top = masked_cfg(base, unconditional, cfg_scale)

    truncations = _truncations(top_p, top_k)
    tempered: list[Transform] = [] if temperature == 1.0 else [lambda p: categorical.temperature(p, temperature)]
    draw = _compose(tempered + truncations)
    order, scores = "random", None
    if alg is None:  # LLaDA: the drawn token's probability under the untempered model
        order = "sampled_confidence" if remasking == "low_confidence" else "random"
        scores = _identity
    elif alg != "origin":  # Dream: the draw distribution, or its truncation when the draw is the argmax
        order = _ALG_ORDERS[alg]
        scores = None if temperature > 0 else (_compose(truncations) or _identity)
    uniforms = seeded_uniforms(seed)
    schedule = dream_schedule(eps) if alg == "origin" else None

    vocab = base.vocab_size
    z = torch.full((batch, plen + gen_length), vocab, dtype=torch.int64)
    z[:, :plen] = base.to_diffsample(prompt)
    for _, hi in blocks:
        end = plen + hi
        view = _Window(top, end) if end < z.shape[1] else top
        z[:, end:] = 0  # placeholders: visible to the sampler, masks to the model
        if alg == "origin":
            z = ancestral(view, z, per_block, schedule=schedule, uniforms=uniforms, transform=draw, cache=cache)
        else:
            z = ordered(
                view,
                z,
                per_block,
                order=order,
                order_temperature=alg_temp,
                uniforms=uniforms,
                transform=draw,
                score_transform=scores,
                cache=cache,
            )
        z[:, end:] = vocab
    return Generation(base.to_hf(z), plen, top.nfe, top.rows)
