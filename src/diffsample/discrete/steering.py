"""Masked discrete samplers as proposals of the particle engine (:mod:`diffsample.scaling.engine`): best-of-N,
Feynman–Kac / SMC steering, twisted SMC and SVDD for masked diffusion models run on the same engine as images.

:class:`MaskedProposal` advances ``N`` particles (partially masked sequences ``z``) by one step of a masked
sampler — ``first_hitting`` (one token per step, the exact reverse process; Zheng et al. 2024), ``ancestral``
(MDLM; Sahoo et al. 2024) or ``ordered`` (k tokens per step in a confidence order; MaskGIT / LLaDA) — with the
draws of the samplers in :mod:`diffsample.discrete` (the same uniforms in the same order, so a particle that is
never resampled is the sampler's own output for its slot seed). After each step the model is called once on the
new state; that output gives the clean prediction ``x̂0`` for intermediate rewards (``prediction="argmax"``, or
``"sample"``: a completion drawn from ``p(x0 | z)`` position by position, from a separate stream) and is kept in
``extras["probs"]`` for the next step, so a run costs what the plain sampler costs (the model at the level's
own time; exact for time-free models such as the exact and the shipped text denoisers). A time-free model is
only called on the rows that changed (MDLM's cache); :meth:`MaskedProposal.cost` counts the rows evaluated.

Proposals other than the model's own (a ``guide`` denoiser, e.g. the exact tilted denoiser of
:mod:`~diffsample.discrete.beds.tilted` or a guided model, and/or a ``transform`` of the draw distribution)
report ``log q`` and ``log p`` of the drawn tokens, so the engine's weights carry ``p/q`` (twisted SMC; Wu et al.
2023, Alg. 1). For ``first_hitting`` a step picks a uniformly random masked position ``j`` and draws its token:
``log q − log p = log q_j(v) − log p_j(v)``; for ``ancestral`` every masked position is revealed with the same
probability under both, so ``log q − log p = Σ_{revealed j} log q_j(v_j) − log p_j(v_j)``. The reveal terms
are common to ``q`` and ``p`` and left out of both. ``ordered`` chooses its positions from the drawn values and
has no tractable transition density, so it runs only as the model's own proposal.

With the exact optimal value ``log V(z) = log E[exp(r(x0)/α) | z]`` of a tilted bed as the engine's value
(:func:`exact_value`) and the ``difference`` potential, the path weights telescope to
``exp(r(x)/α) · (q-ratio)``; with the exact tilted denoiser as ``guide`` as well, every particle's weight is
exactly ``Z`` (zero-variance SMC; the test of this module).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import DiffsampleError, ShapeError
from ..noise import derive_seed
from ..scaling.engine import Particles, ProposalCost, Transition, ValueFunction
from ._walk import Transform
from .ancestral import step_reveal_probability
from .beds.tilted import EnumeratedTilt, TiltedChain
from .categorical import inverse_cdf
from .contracts import MaskedDenoiser
from .denoiser import as_masked_denoiser
from .orders import ORDERS, order_scores, reveal_counts, select_positions
from .random import SeededUniforms
from .schedules import MaskingSchedule, linear, time_grid

__all__ = ["MASKED_PROPOSALS", "PREDICTIONS", "MaskedProposal", "exact_soft_value", "exact_value"]

MASKED_PROPOSALS = ("first_hitting", "ancestral", "ordered")
"""The masked samplers :class:`MaskedProposal` steps."""

PREDICTIONS = ("argmax", "sample")
"""How ``x̂0`` is read from ``p(x0 | z)``: the most likely token per position, or a sampled completion."""

PREDICTION_STREAM = 1
"""Index of the stream (``derive_seed(slot seed, 1)``) that draws sampled ``x̂0`` completions."""


class _Model:
    """A masked denoiser with per-row counting and MDLM's cache for unchanged rows of time-free models."""

    def __init__(self, denoiser: MaskedDenoiser) -> None:
        self.denoiser = as_masked_denoiser(denoiser)
        self.per_row = int(getattr(self.denoiser, "evaluations_per_call", 1))
        self.evaluations = 0

    def __call__(
        self, z: torch.Tensor, t: torch.Tensor, old_z: torch.Tensor | None, old_p: torch.Tensor | None
    ) -> torch.Tensor:
        if old_z is None or old_p is None or not self.denoiser.time_free:
            self.evaluations += z.shape[0] * self.per_row
            return self.denoiser(z, t)
        changed = (z != old_z).any(-1)
        p = old_p.clone()
        if bool(changed.any()):
            self.evaluations += int(changed.sum()) * self.per_row
            p[changed] = self.denoiser(z[changed], t[changed])
        return p


class MaskedProposal:
    """One step of a masked sampler on ``N`` particles, for :func:`diffsample.scaling.engine.feynman_kac` and the
    engine's other methods (module docstring).

    Args:
        denoiser: the pretrained masked model ``p(x0 | z)`` (its transition is the base ``p``).
        length: the sequence length ``L`` (or give ``prompt``).
        sampler: one of :data:`MASKED_PROPOSALS`.
        steps: ``ancestral`` / ``ordered``: the number of steps; ``first_hitting``: one per masked token
            (``None`` or exactly that number).
        schedule: the masking schedule (linear by default).
        order, order_temperature: the ``ordered`` sampler's reveal order (:mod:`~diffsample.discrete.orders`).
        transform: a categorical transform of the draw distribution (temperature, top-k …); it makes the proposal
            differ from the model, so its log-densities are reported.
        guide: a second masked denoiser to draw tokens from instead of ``denoiser`` (both are called each step).
        prediction: one of :data:`PREDICTIONS`.
        prompt: ``(L,)`` tokens with the mask id ``V`` at the positions to generate (all masked by default).
    """

    def __init__(
        self,
        denoiser: MaskedDenoiser,
        length: int | None = None,
        *,
        sampler: str = "first_hitting",
        steps: int | None = None,
        schedule: MaskingSchedule | None = None,
        order: str = "confidence",
        order_temperature: float = 0.0,
        transform: Transform | None = None,
        guide: MaskedDenoiser | None = None,
        prediction: str = "argmax",
        prompt: torch.Tensor | None = None,
    ) -> None:
        if sampler not in MASKED_PROPOSALS:
            raise DiffsampleError(f"unknown masked proposal {sampler!r}; valid: {', '.join(MASKED_PROPOSALS)}")
        if prediction not in PREDICTIONS:
            raise DiffsampleError(f"unknown prediction {prediction!r}; valid: {', '.join(PREDICTIONS)}")
        if order not in ORDERS:
            raise DiffsampleError(f"unknown order {order!r}; valid orders: {', '.join(ORDERS)}")
        self.model = _Model(denoiser)
        self.guide = None if guide is None else _Model(guide)
        self.vocab_size = int(self.model.denoiser.vocab_size)
        if self.guide is not None and int(self.guide.denoiser.vocab_size) != self.vocab_size:
            raise ShapeError(f"guide has vocabulary {self.guide.denoiser.vocab_size}, the model {self.vocab_size}")
        self.prompt = self._prompt(length, prompt)
        self.length = int(self.prompt.shape[0])
        self.sampler, self.prediction, self.transform = sampler, prediction, transform
        self.order, self.order_temperature = order, float(order_temperature)
        self.schedule = schedule or linear()
        self.weighted = transform is not None or guide is not None
        if self.weighted and sampler == "ordered":
            raise DiffsampleError(
                "the ordered sampler has no tractable transition density, so it cannot run with a guide or a "
                "transform; use first_hitting or ancestral"
            )
        masked = int((self.prompt == self.vocab_size).sum())
        if masked < 1:
            raise ShapeError("the prompt has no masked position to generate")
        if sampler == "first_hitting":
            if steps is not None and int(steps) != masked:
                raise DiffsampleError(f"first_hitting takes one step per masked token ({masked}); got steps={steps}")
            self._steps = masked
        else:
            if steps is None or int(steps) < 1:
                raise DiffsampleError(f"{sampler} needs a positive number of steps, got {steps!r}")
            self._steps = int(steps)
        self._uniforms: SeededUniforms | None = None
        self._predict_uniforms: SeededUniforms | None = None

    def _prompt(self, length: int | None, prompt: torch.Tensor | None) -> torch.Tensor:
        if prompt is None:
            if length is None or int(length) < 1:
                raise ShapeError(f"give a positive length or a prompt, got length={length!r}")
            return torch.full((int(length),), self.vocab_size, dtype=torch.int64)
        p = torch.as_tensor(prompt)
        if p.dim() != 1 or p.is_floating_point() or bool(((p < 0) | (p > self.vocab_size)).any()):
            raise ShapeError(f"prompt must be an (L,) integer tensor of ids in [0, {self.vocab_size}]")
        if length is not None and int(length) != p.shape[0]:
            raise ShapeError(f"length {length} differs from the prompt's {p.shape[0]}")
        return p.to(torch.int64)

    @property
    def num_steps(self) -> int:
        return self._steps

    def cost(self) -> ProposalCost:
        """Rows evaluated by the model (and the guide) since :meth:`start`; no backward passes."""
        return ProposalCost(self.model.evaluations + (0 if self.guide is None else self.guide.evaluations))

    def _u(self, batch: int, size: int) -> torch.Tensor:
        assert self._uniforms is not None, "call start() first"
        return self._uniforms(batch, size)

    def _predict(self, p: torch.Tensor) -> torch.Tensor:
        if self.prediction == "argmax":
            return p.argmax(-1)
        assert self._predict_uniforms is not None
        return inverse_cdf(p, self._predict_uniforms(p.shape[0], p.shape[1]))

    def _time(self, z: torch.Tensor, level: int, t: torch.Tensor) -> torch.Tensor:
        """The time the model sees at a state: the grid time (ancestral), the masked fraction's (ordered), the
        reveal time of the last token (first_hitting)."""
        if self.sampler == "ancestral":
            return time_grid(self._steps)[level].expand(z.shape[0])
        if self.sampler == "ordered":
            return self.schedule.inverse(1.0 - (z == self.vocab_size).sum(-1).to(torch.float64) / self.length)
        return t

    def _evaluate(self, z: torch.Tensor, t: torch.Tensor, previous: Particles | None) -> dict[str, torch.Tensor]:
        old_z = None if previous is None else previous.x
        out = {"t": t, "probs": self.model(z, t, old_z, None if previous is None else previous.extras["probs"])}
        if self.guide is not None:
            out["guide_probs"] = self.guide(z, t, old_z, None if previous is None else previous.extras["guide_probs"])
        return out

    def start(self, seeds: Sequence[int]) -> Particles:
        seeds = [int(s) for s in seeds]
        n = len(seeds)
        self._uniforms = SeededUniforms(seeds)
        self._predict_uniforms = SeededUniforms([derive_seed(s, PREDICTION_STREAM) for s in seeds])
        self.model.evaluations = 0
        if self.guide is not None:
            self.guide.evaluations = 0
        z = self.prompt.expand(n, -1).clone()
        extras = self._evaluate(z, self._time(z, 0, torch.ones(n, dtype=torch.float64)), None)
        return Particles(z, self._predict(extras["probs"]), 0, 1.0, extras)

    def renoise(self, particles: Particles, level: int) -> Particles:
        """Move particles back to the earlier ``level`` by the forward (masking) process, each row drawing from its
        own stream, and evaluate the model there (path search's re-noising; Ma et al. 2025, §3.2).

        ``first_hitting``: a uniformly random ``level``-subset of the generated tokens stays visible (the forward
        process seen at the moment ``level`` of them are left). ``ancestral``: each generated token is masked
        independently with probability ``1 − α(t_level)/α(t_now)``. ``ordered`` has no forward process between its
        levels (its counts are a schedule, its positions a function of the model) and cannot be re-noised.
        """
        if self.sampler == "ordered":
            raise DiffsampleError("the ordered sampler cannot re-noise (use first_hitting or ancestral)")
        if not 0 <= level <= particles.level:
            raise DiffsampleError(f"can only re-noise to a level in [0, {particles.level}], got {level}")
        z, n, mask_id = particles.x, particles.x.shape[0], self.vocab_size
        visible = (self.prompt == mask_id).unsqueeze(0) & (z != mask_id)
        u = self._u(n, self.length)
        if self.sampler == "first_hitting":
            keep = select_positions(
                torch.zeros(n, self.length, dtype=torch.float64), visible, torch.full((n,), level), 1.0, u
            )
            generated = int((self.prompt == mask_id).sum())
            t = self.schedule.inverse(torch.full((n,), 1.0 - level / generated, dtype=torch.float64))
        else:
            times = time_grid(self._steps)
            a_now, a_then = self.schedule.alpha(times[particles.level]), self.schedule.alpha(times[level])
            stay = a_then / a_now if float(a_now) > 0 else torch.zeros((), dtype=torch.float64)
            keep = visible & (u < stay)
            t = times[level].expand(n)
        new = torch.where(visible & ~keep, torch.full_like(z, mask_id), z)
        extras = self._evaluate(new, self._time(new, level, t), None)
        frac = float((new == mask_id).sum()) / float(new.numel())
        return Particles(new, self._predict(extras["probs"]), level, frac, extras)

    def step(self, particles: Particles) -> Transition:
        z, level = particles.x, particles.level
        if level >= self._steps:
            raise DiffsampleError(f"the particles are at the last level ({level}); nothing left to reveal")
        n, mask_id = z.shape[0], self.vocab_size
        mask = z == mask_id
        p = particles.extras["probs"]
        draw = particles.extras["guide_probs"] if self.guide is not None else p
        q = draw if self.transform is None else self.transform(draw)
        t = particles.extras["t"]
        if self.sampler == "first_hitting":
            m = mask.sum(-1)
            exponent = 1.0 / m.clamp(min=1).to(torch.float64)
            s = self.schedule.inverse(1.0 - (1.0 - self.schedule.alpha(t)) * self._u(n, 1)[:, 0] ** exponent)
            tokens = inverse_cdf(q, self._u(n, self.length))
            chosen = select_positions(
                torch.zeros(n, self.length, dtype=torch.float64), mask, (m > 0).long(), 1.0, self._u(n, self.length)
            )
            t_new = torch.where(m > 0, s, t)
        elif self.sampler == "ancestral":
            times = time_grid(self._steps)
            r = step_reveal_probability(self.schedule, times[level], times[level + 1])
            chosen = mask & (self._u(n, self.length) < r)
            tokens = inverse_cdf(q, self._u(n, self.length))
            t_new = times[level + 1].expand(n)
        else:
            tokens = inverse_cdf(q, self._u(n, self.length))
            chosen = select_positions(
                order_scores(q, self.order, tokens),
                mask,
                reveal_counts(mask, self._steps - level),
                self.order_temperature if self.order != "random" else 1.0,
                self._u(n, self.length),
            )
            t_new = t
        new = torch.where(chosen, tokens, z)
        log_q = log_p = None
        if self.weighted:
            log_q = _drawn_log_prob(q, tokens, chosen)
            log_p = _drawn_log_prob(p, tokens, chosen)
        if level + 1 == self._steps:
            if bool((new == mask_id).any()):
                raise DiffsampleError("the last step left masked positions (a schedule with α_0 < 1?)")
            out = Particles(new, new.clone(), level + 1, 0.0, {})
        else:
            extras = self._evaluate(new, self._time(new, level + 1, t_new), particles)
            frac = float((new == mask_id).sum()) / float(new.numel())
            out = Particles(new, self._predict(extras["probs"]), level + 1, frac, extras)
        return Transition(out, log_q, log_p)


def _drawn_log_prob(probs: torch.Tensor, tokens: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """``Σ_{chosen j} log probs_j(tokens_j)`` per row, float64."""
    picked = torch.gather(probs, -1, tokens.unsqueeze(-1))[..., 0].to(torch.float64)
    return torch.where(chosen, torch.log(picked), torch.zeros_like(picked)).sum(-1)


def exact_value(bed: TiltedChain | EnumeratedTilt) -> ValueFunction:
    """The engine value ``ℓ(particles) = log E[exp(r(x0)/α) | z]`` of a tilted bed
    (:class:`~diffsample.discrete.beds.tilted.TiltedChain` or :class:`~.beds.tilted.EnumeratedTilt`)."""

    def value(particles: Particles) -> torch.Tensor:
        return bed.log_value(particles.x)

    return value


def exact_soft_value(bed: TiltedChain | EnumeratedTilt) -> ValueFunction:
    """SVDD's soft value ``v(z) = α log E[exp(r(x0)/α) | z]`` of a tilted bed (Li et al. 2024, eq. 3), on the
    reward's scale, so that selecting ``∝ exp(v/α)`` selects ``∝ V(z)``."""

    def value(particles: Particles) -> torch.Tensor:
        return bed.alpha * bed.log_value(particles.x)

    return value
