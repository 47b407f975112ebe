"""The conditional digits model driven by a continuous class *embedding* instead of a label (for CADS).

The class-conditional :class:`~diffsample.models.network.DigitsMLP` adds a learned label embedding
``e_y = label_emb(y) ∈ R^128`` to its noise embedding. Condition-annealed sampling (Sadat et al. 2024, CADS;
:func:`diffsample.transforms.cads`) needs that embedding as an input it can perturb, so
:class:`DigitsEmbeddingDenoiser` is the same network, the same weights and the same EDM preconditioning,
called as ``D(x, sigma, class_embedding=e)`` with ``e`` of shape ``(B, 128)`` (or ``(128,)``, ``(1, 128)``); with
``e = label_embedding(y)`` it equals :func:`~diffsample.models.load_digits_model`'s
``D(x, sigma, class_labels=y)`` to float rounding (it skips the ε round trip through the DDPM table).
``class_embedding=None`` is the null label's embedding (the unconditional branch).
"""

from __future__ import annotations

from typing import Any

import torch

from ..denoisers import Denoiser
from ..errors import DiffsampleError, ShapeError
from ..schedules import edm_preconditioning
from .digits import NULL_LABEL, load_digits_network
from .network import DigitsMLP, VPEpsNetwork

__all__ = ["DigitsEmbeddingDenoiser", "load_digits_embedding_model"]


class DigitsEmbeddingDenoiser(Denoiser):
    """``D(x, sigma, class_embedding=None) -> x̂0`` of the conditional digits network (module docstring)."""

    def __init__(self, network: VPEpsNetwork) -> None:
        super().__init__()
        core = network.core
        if not isinstance(core, DigitsMLP) or core.label_emb is None:
            raise DiffsampleError("DigitsEmbeddingDenoiser needs the class-conditional digits network")
        self.network = network
        self.core: DigitsMLP = core
        self.noise_schedule = network.noise_schedule
        self.sigma_data = network.sigma_data

    @property
    def embedding_dim(self) -> int:
        return self.core.emb_dim

    def label_embedding(self, labels: torch.Tensor | int) -> torch.Tensor:
        """The learned embedding ``(B, 128)`` of class labels (0…9, or :data:`NULL_LABEL` for none), float32."""
        assert self.core.label_emb is not None
        y = torch.as_tensor(labels).long().reshape(-1)
        if bool(((y < 0) | (y > NULL_LABEL)).any()):
            raise DiffsampleError(f"class labels must lie in 0…{NULL_LABEL} ({NULL_LABEL} = null)")
        with torch.no_grad():
            return self.core.label_emb(y).detach().clone()

    def denoise(
        self, x: torch.Tensor, sigma: torch.Tensor, class_embedding: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        if kwargs:
            raise DiffsampleError(f"unexpected keywords {sorted(kwargs)}; the condition is class_embedding=…")
        batch = x.shape[0]
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        e = self.label_embedding(NULL_LABEL) if class_embedding is None else class_embedding
        e = e.to(x.device, torch.float32)
        if e.dim() == 1 or e.shape[0] == 1:
            e = e.reshape(1, -1).expand(batch, -1)
        if e.shape != (batch, self.embedding_dim):
            raise ShapeError(f"class_embedding must be ({batch}, {self.embedding_dim}), got {tuple(e.shape)}")
        c_skip, c_out, c_in, c_noise = edm_preconditioning(sigma.detach().to("cpu", torch.float64), self.sigma_data)
        xin = c_in.to(x.device, torch.float32).reshape(-1, 1, 1, 1) * x.to(torch.float32)
        out = self.core(xin, c_noise.to(x.device, torch.float32), label_embedding=e).to(work)
        shape = (-1,) + (1,) * (x.dim() - 1)
        return c_skip.to(x.device, work).reshape(shape) * x.to(work) + c_out.to(x.device, work).reshape(shape) * out


def load_digits_embedding_model() -> DigitsEmbeddingDenoiser:
    """The shipped class-conditional digits model as ``D(x, sigma, class_embedding=e)``; see the module docstring.

    Example (CADS with CFG on the digit 3)::

        D = load_digits_embedding_model()
        e = D.label_embedding(3).expand(16, -1)
        guided = cfg(cads(D, key="class_embedding", noise_scale=0.25), 3.0, uncond=D,
                     cond_kwargs={"class_embedding": e})
    """
    return DigitsEmbeddingDenoiser(load_digits_network(conditional=True))
