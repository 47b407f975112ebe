"""A Markov chain bed's exact denoiser dressed as a Hugging Face masked diffusion LM (no ``transformers``), to test
:func:`~diffsample.discrete.hf_generate.generate` and any pipeline written for LLaDA/Dream against exact laws.

:class:`ChainLM` answers ``model(input_ids, attention_mask=…, position_ids=…) -> .logits`` like LLaDA (logits at
``i`` for token ``i``) or, with ``shift=True``, like Dream (logits at ``i − 1`` for token ``i``). Its vocabulary
is the chain's with a mask token inserted at ``mask_token_id`` (so the adapter's remapping is exercised), and
the mask column gets a logit far above every token's, so a sampler that drew it would show it at once.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from .chain import ChainDenoiser, MarkovChain

__all__ = ["ChainLM"]


class ChainLM(torch.nn.Module):
    """The exact ``p(x0_i | z)`` of ``chain`` as Hugging Face logits (module docstring)."""

    def __init__(self, chain: MarkovChain, mask_token_id: int = 1, shift: bool = False) -> None:
        super().__init__()
        self.chain, self.mask, self.shift = chain, int(mask_token_id), bool(shift)
        self.config = SimpleNamespace(vocab_size=chain.vocab_size + 1, mask_token_id=self.mask)
        self.calls = 0
        self.inputs: list[torch.Tensor] = []  # every call's input_ids

    def hf_ids(self, x: torch.Tensor) -> torch.Tensor:
        """Chain tokens → this model's ids."""
        return torch.where(x >= self.mask, x + 1, x)

    def chain_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """This model's ids → chain tokens (the mask ↦ ``V``)."""
        v = self.chain.vocab_size
        return torch.where(ids == self.mask, torch.full_like(ids, v), torch.where(ids > self.mask, ids - 1, ids))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> SimpleNamespace:
        self.calls += 1
        self.inputs.append(input_ids.clone())
        p = ChainDenoiser(self.chain)(self.chain_ids(input_ids), 0.0)
        logp = torch.log(p.clamp(min=1e-300))
        columns = [c for c in range(self.chain.vocab_size + 1) if c != self.mask]
        logits = torch.full((*input_ids.shape, self.chain.vocab_size + 1), 50.0, dtype=torch.float64)
        logits[..., columns] = logp
        if self.shift:  # position i - 1 predicts token i; the last position predicts nothing
            logits = torch.cat([logits[:, 1:], torch.zeros_like(logits[:, :1])], dim=1)
        return SimpleNamespace(logits=logits)
