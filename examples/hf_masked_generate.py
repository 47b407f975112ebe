"""Generate with a Hugging Face masked diffusion LM in LLaDA's and Dream's vocabulary.

A real model loads the usual way (downloads, not done here):

    model = AutoModel.from_pretrained("GSAI-ML/LLaDA-8B-Instruct", trust_remote_code=True, torch_dtype=torch.bfloat16)
    out = discrete.generate(model, input_ids, gen_length=128, steps=128, block_length=32, mask_token_id=126336)

This script builds a tiny randomly initialised masked LM instead (so it runs offline; its text is noise) and shows
the calls. Run: `python examples/hf_masked_generate.py` (needs `transformers`).
"""

from __future__ import annotations

import torch
import transformers

from diffsample import discrete


def tiny_masked_lm(vocab: int = 64, mask_token_id: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    config.mask_token_id = mask_token_id  # LLaDA and Dream name theirs in the config or the tokenizer
    return transformers.AutoModelForMaskedLM.from_config(config).eval()


def main() -> None:
    model = tiny_masked_lm()
    prompts = torch.tensor([[5, 9, 12, 40], [0, 0, 7, 8]])  # the second row is left-padded
    attention = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])

    llada = discrete.generate(
        model, prompts, attention_mask=attention, gen_length=16, steps=16, block_length=8,
        remasking="low_confidence", temperature=0.0, cfg_scale=0.5,
    )  # fmt: skip
    print(f"LLaDA low_confidence, 2 blocks, CFG: {llada.nfe} model calls")
    print(llada.generated)

    dream = discrete.generate(
        model, prompts[:1], gen_length=16, steps=8, alg="entropy", temperature=0.7, top_p=0.95, alg_temp=0.1,
        convention="llada", seed=[7],
    )  # fmt: skip
    print(f"Dream entropy order, 2 tokens per step: {dream.nfe} model calls")
    print(dream.generated)
    assert not (llada.generated == 3).any() and not (dream.generated == 3).any()  # the mask is never drawn


if __name__ == "__main__":
    main()
