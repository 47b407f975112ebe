"""The shipped text model's network: a small bidirectional (non-causal) dilated convolutional net.

``TextConvNet(z) -> logits``: ``z`` is a ``(B, L)`` tensor of ids ``0 … V`` (``V`` = the mask token), the output
``(B, L, V)`` logits of ``p(x0_i | z)`` over the vocabulary without the mask. There is no time input: for
absorbing diffusion the exact denoiser depends on ``z`` alone (Ou et al. 2024), so the model is *time-free* and a
sampler may reuse its output while ``z`` has not changed.

Architecture (a ByteNet-style stack, Kalchbrenner et al. 2016, made non-causal): a token embedding of width
``d``; residual blocks ``h ← h + W₂ GELU(W₁ [LN(h)_{i−2δ}, LN(h)_{i−δ}, LN(h)_i, LN(h)_{i+δ}, LN(h)_{i+2δ}])``,
a width-5 convolution of dilation ``δ`` (zero padding at both ends) written as one matrix product over the
stacked shifts; dilations ``1, 2, 4, 8, 1, 2, 4, 8`` see ``± 60`` characters, the whole window; a final
LayerNorm and a linear read-out. Positions are implicit in the zero padding. A small transformer trained the
same way stayed at the unigram loss for the first hundreds of steps (it must first learn positions), too slow
for the 20-minute budget; the convolution learns local spelling from the first steps.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ConvConfig", "TextConvNet"]


@dataclass(frozen=True)
class ConvConfig:
    """Sizes of :class:`TextConvNet`: vocabulary ``V`` (without the mask), window length, width, kernel,
    dilations."""

    vocab_size: int
    length: int = 64
    width: int = 128
    kernel: int = 5
    dilations: tuple[int, ...] = field(default=(1, 2, 4, 8, 1, 2, 4, 8))

    def __post_init__(self) -> None:
        object.__setattr__(self, "dilations", tuple(int(d) for d in self.dilations))
        if self.kernel % 2 != 1:
            raise ValueError(f"kernel must be odd, got {self.kernel}")

    def to_dict(self) -> dict[str, object]:
        return {**asdict(self), "dilations": list(self.dilations)}


class _DilatedBlock(nn.Module):
    def __init__(self, width: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.kernel, self.dilation = kernel, dilation
        self.norm = nn.LayerNorm(width)
        self.mix = nn.Linear(kernel * width, width)
        self.out = nn.Linear(width, width)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, d = h.shape[1], self.dilation
        padded = F.pad(self.norm(h), (0, 0, d * (self.kernel // 2), d * (self.kernel // 2)))
        taps = torch.cat([padded[:, i * d : i * d + n] for i in range(self.kernel)], dim=-1)
        return h + self.out(F.gelu(self.mix(taps)))


class TextConvNet(nn.Module):
    """Non-causal dilated convolutions ``(B, L)`` ids (mask = ``V``) → ``(B, L, V)`` logits (module docstring)."""

    def __init__(self, config: ConvConfig) -> None:
        super().__init__()
        self.config = config
        self.token = nn.Embedding(config.vocab_size + 1, config.width)
        self.blocks = nn.ModuleList(_DilatedBlock(config.width, config.kernel, d) for d in config.dilations)
        self.norm = nn.LayerNorm(config.width)
        self.out = nn.Linear(config.width, config.vocab_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] > self.config.length:
            raise ValueError(f"sequences of length {z.shape[-1]} exceed the model's {self.config.length}")
        h = self.token(z)
        for block in self.blocks:
            h = block(h)
        return self.out(self.norm(h))
