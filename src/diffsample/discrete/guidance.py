"""Classifier-free guidance for masked denoisers.

Per position, ``p_w(v) ∝ p_c(v)^{1+w} · p_u(v)^{−w}``: in logit space ``ℓ_u + (1 + w)(ℓ_c − ℓ_u)``, LLaDA's
``un_logits + (cfg_scale + 1) · (logits − un_logits)`` (Nie et al. 2025), the per-position tilt of Schiff et al.
2024 ("Simple guidance mechanisms for discrete diffusion models") with ``γ = 1 + w``. ``w = 0`` is the
conditional model. The tilt is applied to each position's marginal, which is not the marginal of the tilted
joint ``p_c^{1+w} p_u^{−w}`` over whole sequences; samplers then draw from these per-position laws as from any
denoiser. One call evaluates both models and counts 2 (:attr:`evaluations_per_call`).
"""

from __future__ import annotations

import torch

from .contracts import MaskedDenoiser
from .denoiser import CountingMaskedDenoiser

__all__ = ["MaskedCFG", "masked_cfg"]


class MaskedCFG(CountingMaskedDenoiser):
    """``p_c^{1+w} p_u^{−w}`` per position (module docstring); time-free when both models are."""

    evaluations_per_call = 2

    def __init__(self, conditional: MaskedDenoiser, unconditional: MaskedDenoiser, scale: float) -> None:
        if conditional.vocab_size != unconditional.vocab_size:
            raise ValueError(f"vocabularies differ: {conditional.vocab_size} and {unconditional.vocab_size}")
        super().__init__(
            conditional.vocab_size,
            time_free=bool(getattr(conditional, "time_free", False) and getattr(unconditional, "time_free", False)),
        )
        self.conditional, self.unconditional, self.scale = conditional, unconditional, float(scale)

    def forward(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        p_c, p_u = self.conditional(z, t), self.unconditional(z, t)
        log_c = torch.log(torch.where(p_c > 0, p_c, 1.0))
        log_u = torch.log(p_u.clamp(min=torch.finfo(torch.float64).tiny))
        logits = log_c + self.scale * (log_c - log_u)
        return torch.where(p_c > 0, logits, torch.full_like(logits, -torch.inf))


def masked_cfg(conditional: MaskedDenoiser, unconditional: MaskedDenoiser, scale: float) -> MaskedCFG:
    """The guided denoiser ``p_c^{1+w} p_u^{−w}`` with ``w = scale``."""
    return MaskedCFG(conditional, unconditional, scale)
