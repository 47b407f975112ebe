"""``discrete.generate`` on tiny randomly initialised ``transformers`` models built here (offline): a
bidirectional ``BertForMaskedLM`` in LLaDA's convention and a ``Qwen2ForCausalLM`` read in Dream's shifted one.
Plumbing against known answers: the prompt kept, every mask filled, the mask token never drawn, calls counted,
sample ``i`` the same in any batch, left padding equal to the unpadded prompt, clear errors."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

from diffsample import discrete
from diffsample.errors import DiffsampleError

transformers = pytest.importorskip(
    "transformers", reason="transformers is not installed (pip install --no-deps -r requirements-peers.txt)"
)

VOCAB, MASK, PAD = 24, 5, 0


def _bert(seed: int = 0, mask_token_id: int | None = MASK) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        pad_token_id=PAD,
    )
    if mask_token_id is not None:
        config.mask_token_id = mask_token_id
    return transformers.AutoModelForMaskedLM.from_config(config).eval()


def _qwen2(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=32,
        max_position_embeddings=32,
        pad_token_id=PAD,
    )
    config.mask_token_id = MASK
    return transformers.AutoModelForCausalLM.from_config(config).eval()


BERT = _bert()
QWEN = _qwen2()
PROMPTS = torch.tensor([[3, 7, 9, 11], [12, 4, 4, 20], [1, 2, 3, 6]])


@pytest.mark.parametrize(
    ("model", "options"),
    [
        (BERT, {"remasking": "low_confidence", "block_length": 4}),
        (BERT, {"remasking": "random", "temperature": 1.0, "cfg_scale": 1.0}),
        (QWEN, {"convention": "dream", "alg": "maskgit_plus", "temperature": 0.7, "top_p": 0.9}),
        (QWEN, {"convention": "dream", "alg": "topk_margin", "top_k": 3, "alg_temp": 0.5}),
        (QWEN, {"convention": "dream", "alg": "origin", "temperature": 1.0}),
    ],
)
def test_prompt_kept_masks_filled_mask_never_drawn_and_calls_counted(model: torch.nn.Module, options: dict) -> None:
    out = discrete.generate(model, PROMPTS, gen_length=8, steps=8, seed=[1, 2, 3], **options)
    assert out.sequences.shape == (3, 12) and torch.equal(out.sequences[:, :4], PROMPTS)
    assert not (out.generated == MASK).any() and ((out.generated >= 0) & (out.generated < VOCAB)).all()
    calls = 2 * 8 if options.get("cfg_scale", 0) > 0 else 8
    if options.get("alg") == "origin":  # ancestral: a step that reveals nothing in any row costs no call
        assert 1 <= out.nfe <= calls
    else:
        assert out.nfe == calls


def test_mask_token_is_never_drawn_even_when_the_model_prefers_it() -> None:
    """The mask column is removed before the draw: with its logit 100 above the rest, still no mask comes out,
    and a suppressed token (LLaDA's ``logits_eos_inf``) never either."""
    model = _bert(seed=1)
    with torch.no_grad():
        model.cls.predictions.decoder.bias[MASK] = 100.0
        model.cls.predictions.decoder.bias[7] = 50.0
    out = discrete.generate(model, PROMPTS, gen_length=8, steps=4, temperature=1.0, suppress_tokens=[7])
    assert not (out.generated == MASK).any() and not (out.generated == 7).any()


def test_sample_i_is_the_same_in_any_batch_and_seeded() -> None:
    options = {"gen_length": 8, "steps": 8, "block_length": 4, "temperature": 1.0}
    batch = discrete.generate(BERT, PROMPTS, seed=[10, 11, 12], **options)
    for i in range(3):
        solo = discrete.generate(BERT, PROMPTS[i : i + 1], seed=[10 + i], **options)
        assert torch.equal(solo.sequences[0], batch.sequences[i])
    again = discrete.generate(BERT, PROMPTS, seed=[10, 11, 12], **options)
    other = discrete.generate(BERT, PROMPTS, seed=[20, 21, 22], **options)
    assert torch.equal(again.sequences, batch.sequences) and not torch.equal(other.sequences, batch.sequences)


@pytest.mark.parametrize("model", [BERT, QWEN])
def test_left_padded_prompt_sees_what_the_unpadded_prompt_does(model: torch.nn.Module) -> None:
    """With the attention mask and padding-skipping position ids, a left-padded row's probabilities at the
    generated positions are its unpadded prompt's (to float32 rounding), so greedy generation (no uniforms in
    the draw or the order) gives the same tokens."""
    dream = model is QWEN
    den = discrete.hf_masked_denoiser(model, position_ids=True, convention="dream" if dream else "llada")
    short, long = torch.tensor([[9, 3]]), torch.tensor([[3, 7, 9, 11]])
    padded = torch.cat([torch.cat([torch.full((1, 2), PAD), short], 1), long])
    attention = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    gen = torch.tensor([[MASK, 8, MASK, MASK, 13, MASK]])
    den.prompt_columns = 4
    p_padded = den(den.to_diffsample(torch.cat([padded, gen.expand(2, -1)], 1)), 1.0)
    p_short = den(den.to_diffsample(torch.cat([short, gen], 1)), 1.0)
    assert torch.allclose(p_padded[0, 4:], p_short[0, 2:], atol=1e-6, rtol=0)
    assert (p_padded[0, 4:] - p_padded[1, 4:]).abs().max() > 1e-3  # another prompt is seen differently
    options = {"gen_length": 6, "steps": 3, "alg": "entropy" if dream else None}
    both = discrete.generate(den, padded, attention_mask=attention, **options)
    alone = discrete.generate(den, short, **options)
    assert torch.equal(both.generated[0], alone.generated[0]) and torch.equal(both.sequences[:, :4], padded)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: discrete.generate(_bert(mask_token_id=None), PROMPTS, gen_length=4, steps=4), "no mask token id"),
        (lambda: discrete.generate(BERT, PROMPTS, gen_length=6, steps=6, block_length=4), "multiple of block_length"),
        (lambda: discrete.generate(BERT, PROMPTS, gen_length=8, steps=3, block_length=4), "multiple of the number"),
        (lambda: discrete.generate(BERT, PROMPTS, gen_length=30, steps=30), "max_position_embeddings"),
        (lambda: discrete.generate(BERT, torch.tensor([[1, MASK]]), gen_length=4, steps=4), "mask token id"),
        (lambda: discrete.generate(BERT, PROMPTS, remasking="random", alg="entropy"), "not both"),
        (lambda: discrete.generate(BERT, PROMPTS, alg="greedy"), "valid algs: origin"),
        (lambda: discrete.generate(BERT, PROMPTS, remasking="high"), "valid remaskings: low_confidence"),
        (lambda: discrete.generate(QWEN, PROMPTS[:, :0], convention="dream", gen_length=4, steps=4), "at least one"),
        (
            lambda: discrete.generate(BERT, PROMPTS, attention_mask=torch.tensor([[1, 0, 1, 1]] * 3)),
            "left padding",
        ),
    ],
)
def test_bad_input_gets_a_clear_error(call, message: str) -> None:
    with pytest.raises(DiffsampleError, match=message):
        call()


def test_example_script_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """examples/hf_masked_generate.py, run in this interpreter (transformers is imported already)."""
    runpy.run_path(str(Path(__file__).resolve().parents[2] / "examples" / "hf_masked_generate.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "LLaDA low_confidence, 2 blocks, CFG: 32 model calls" in out
    assert "Dream entropy order, 2 tokens per step: 8 model calls" in out
