"""Small offline TransformerLens 3.x models: HookedTransformer, HookedEncoder, HookedEncoderDecoder.

The 3.x classes were removed in TransformerLens 4.x: they are imported inside the builders, so this
module imports (but its builders cannot run) under 4.x. Every builder returns a model in eval mode
whose parameters are ALL drawn at random: fresh 3.x models have zero biases and unit norm weights
(which would hide bugs in how they are attributed), and `HookedEncoder` leaves its parameters
uninitialised (`torch.empty`), as does `HookedEncoderDecoder`. Models carry the tiny word-level
tokenizer of `models.py`, loaded back from a local directory as TransformerLens 3.x needs, so that
`to_tokens` prepends `<bos>` and pads on the right; the encoder-decoder's appends `</s>` instead.
"""

import contextlib
import io
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from models import D_VOCAB, EOS, N_CTX, word_tokenizer

DEPRECATED = r".* is deprecated"  # "HookedTransformer is deprecated and will be removed in 4.0 ..."


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the 3.x classes' DeprecationWarnings and HookedEncoder's "Moving model to" print."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.filterwarnings("ignore", message=DEPRECATED, category=DeprecationWarning)
        yield


@contextlib.contextmanager
def _tokenizer(*, token_type_ids: bool = False, eos: bool = False) -> Iterator[Any]:
    """`word_tokenizer()` saved to a folder and loaded back; build the model inside the block.

    `HookedTransformer.set_tokenizer` reloads the tokenizer from its `name_or_path` (an in-memory
    tokenizer has none: KeyError), so the folder must exist while the model is constructed.
    """
    from transformers import AutoTokenizer

    # HookedEncoder.to_tokens reads `token_type_ids` from the encoding, as BERT tokenizers give.
    names = ["input_ids", "token_type_ids", "attention_mask"]
    extra = {"model_input_names": names} if token_type_ids else {}
    with tempfile.TemporaryDirectory() as folder:
        word_tokenizer(bos=not eos, eos=eos).save_pretrained(folder)
        yield AutoTokenizer.from_pretrained(folder, **extra)


def _randomise(model: torch.nn.Module, seed: int) -> None:
    """Draw every parameter: norm weights `1 + 0.2·N`, biases `0.2·N`, matrices `N/√d_model`."""
    gen = torch.Generator().manual_seed(seed)
    d_model = model.cfg.d_model  # type: ignore[union-attr]
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype)
            leaf = name.rsplit(".", 1)[-1]
            parent = name.rsplit(".", 2)[-2] if "." in name else ""
            if leaf == "w" and "ln" in parent:  # ln1.w, ln_final.w, encoder_final_ln.w, ...
                p.copy_(1 + 0.2 * noise)
            elif leaf.startswith(("b", "_b")):  # b, b_Q, b_V, _b_V (GQA), b_in, b_U, ...
                p.copy_(0.2 * noise)
            else:
                p.copy_(noise / d_model**0.5)


def _config(dtype: torch.dtype, seed: int, **overrides):
    from transformer_lens import HookedTransformerConfig

    base = dict(
        n_layers=2, d_model=32, n_heads=4, d_head=8, d_mlp=64, n_ctx=N_CTX, d_vocab=D_VOCAB,
        act_fn="gelu", normalization_type="LN", seed=seed, dtype=dtype, device="cpu",
    )  # fmt: skip
    base.update(overrides)
    return HookedTransformerConfig(**base)


def _hooked_transformer(dtype: torch.dtype, seed: int, **overrides):
    from transformer_lens import HookedTransformer

    with _quiet(), _tokenizer() as tokenizer:
        model = HookedTransformer(_config(dtype, seed, **overrides), tokenizer=tokenizer)
    _randomise(model, seed)
    return model.eval()


def ht_gpt2(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Pre-LN LayerNorm, learned positions, biases everywhere (GPT-2-like), 3 layers."""
    return _hooked_transformer(dtype, seed, n_layers=3)


def ht_llama(dtype: torch.dtype = torch.float32, seed: int = 0):
    """RMSNorm, rotary, grouped-query attention (4 query heads on 2 kv heads), gated MLP."""
    return _hooked_transformer(
        dtype, seed, normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8,
        n_key_value_heads=2, gated_mlp=True, act_fn="silu",
    )  # fmt: skip


def ht_parallel(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Parallel attention + MLP with partial rotary and LayerNorm (GPT-NeoX / Pythia-like)."""
    return _hooked_transformer(
        dtype, seed, parallel_attn_mlp=True, positional_embedding_type="rotary", rotary_dim=4
    )


def ht_sandwich(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Sandwich RMSNorms around attention and MLP (Gemma-2-like; 3.x builds only the RMS kind)."""
    return _hooked_transformer(
        dtype, seed, normalization_type="RMS", use_normalization_before_and_after=True,
        positional_embedding_type="rotary", rotary_dim=8,
    )  # fmt: skip


def ht_attn_only(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Attention-only, LayerNorm, learned positions."""
    return _hooked_transformer(dtype, seed, attn_only=True, d_mlp=None)


def encoder_bert(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Post-LN bidirectional encoder (BERT-like `HookedEncoder`)."""
    from transformer_lens import HookedEncoder

    cfg = _config(
        dtype, seed, attention_dir="bidirectional", original_architecture="BertForMaskedLM",
        eps=1e-12,
    )  # fmt: skip
    with _quiet(), _tokenizer(token_type_ids=True) as tokenizer:
        model = HookedEncoder(cfg, tokenizer=tokenizer)
    _randomise(model, seed)
    return model.eval()


def hed_t5(dtype: torch.dtype = torch.float64, seed: int = 0):
    """T5-like `HookedEncoderDecoder`: pre-RMSNorm, relative position bias, 2 encoder + 2 decoder
    layers; decoder start token 1 (`<pad>`, as T5), EOS `</s>` (`models.EOS`)."""
    from transformer_lens import HookedEncoderDecoder

    cfg = _config(
        dtype, seed, act_fn="relu", normalization_type="RMS", attention_dir="bidirectional",
        positional_embedding_type="relative_positional_bias", relative_attention_num_buckets=8,
        relative_attention_max_distance=16, use_attn_scale=False, decoder_start_token_id=1,
        original_architecture="T5ForConditionalGeneration", eps=1e-6,
    )  # fmt: skip
    with _quiet(), _tokenizer(eos=True) as tokenizer:
        model = HookedEncoderDecoder(cfg, tokenizer=tokenizer)
    assert model.tokenizer.eos_token_id == EOS and model.tokenizer.pad_token_id == 1
    _randomise(model, seed)
    return model.eval()


TL3_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {
    "ht-gpt2-preLN": ht_gpt2,
    "ht-llama-RMS-rotary-GQA": ht_llama,
    "ht-parallel": ht_parallel,
    "ht-sandwich-RMS": ht_sandwich,
    "ht-attn-only": ht_attn_only,
    "encoder-bert-postLN": encoder_bert,
}
