"""Small offline test models, one per block kind, built from configs (no hub access).

Every builder returns a model in eval mode with random weights whose biases and norm affines are
perturbed away from their initial values (zero biases and unit norm weights would hide bugs in how
they are attributed). Bridge models carry a tiny word-level tokenizer so that string inputs work.
"""

import warnings
from collections.abc import Callable

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

VOCAB_WORDS = [
    "<bos>", "<pad>", "<unk>",
    "the", "a", "cat", "dog", "sat", "on", "mat", "and", "ran", "to", "big", "red",
    "house", "it", "was", "very", "small", "green", "tree", "under", "over", "blue",
    "le", "chat", "chien", "est", "sur", "la", "</s>",
]  # fmt: skip
EOS = VOCAB_WORDS.index("</s>")
D_VOCAB = 64  # larger than the word list: random token tensors use ids up to D_VOCAB
N_CTX = 32


def word_tokenizer(*, bos: bool = True, eos: bool = False) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over VOCAB_WORDS, built locally. Decoder-only models get
    a BOS prepended; encoder-decoder models (`eos=True`) an EOS appended, as T5/Marian do."""
    vocab = {w: i for i, w in enumerate(VOCAB_WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if eos:
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", special_tokens=[("</s>", vocab["</s>"])]
        )
    elif bos:  # like GPT-2/Llama tokenizers as TransformerLens configures them: BOS is added
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<bos>" if bos and not eos else None,
        eos_token="</s>" if eos else "<bos>",
        pad_token="<pad>",
        unk_token="<unk>",
        padding_side="right",
    )


def _perturb(module: torch.nn.Module, seed: int) -> None:
    """Move every parameter away from its init so biases and norm weights matter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.1)


def _bridge_from_hf(
    hf_model: torch.nn.Module,
    architecture: str,
    seed: int,
    dtype: torch.dtype,
    tokenizer: PreTrainedTokenizerFast | None = None,
):
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module

    hf_model = hf_model.to(dtype).eval()
    _perturb(hf_model, seed)
    # Without eager attention `hook_pattern` does not fire. TransformerLens 4 has a helper; with
    # 3.x (whose bridge these tests also run on) ask transformers directly.
    try:
        from transformer_lens.utilities.attn_implementation import force_eager_attention

        force_eager_attention(hf_model)
    except ImportError:
        hf_model.set_attn_implementation("eager")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = build_bridge_from_module(hf_model, architecture, hf_config=hf_model.config)
    bridge.tokenizer = tokenizer or word_tokenizer()
    return bridge.eval()


def bridge_gpt2(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Pre-LN LayerNorm, learned positions, biases everywhere (GPT-2)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=3, n_embd=32, n_head=4, vocab_size=D_VOCAB, n_positions=N_CTX)
    return _bridge_from_hf(GPT2LMHeadModel(cfg), "GPT2LMHeadModel", seed, dtype)


def bridge_opt(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Pre-LN LayerNorm with separate q/k/v/o projections (OPT)."""
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    cfg = OPTConfig(
        hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
        vocab_size=D_VOCAB, max_position_embeddings=N_CTX, word_embed_proj_dim=32,
    )  # fmt: skip
    return _bridge_from_hf(OPTForCausalLM(cfg), "OPTForCausalLM", seed, dtype)


def bridge_llama(dtype: torch.dtype = torch.float32, seed: int = 0):
    """RMSNorm, rotary, grouped-query attention (4 query heads on 2 kv heads), no biases (Llama)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=D_VOCAB, max_position_embeddings=N_CTX,
    )  # fmt: skip
    return _bridge_from_hf(LlamaForCausalLM(cfg), "LlamaForCausalLM", seed, dtype)


def bridge_neox(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Parallel attention + MLP, partial rotary, LayerNorm (GPT-NeoX / Pythia)."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    cfg = GPTNeoXConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        vocab_size=D_VOCAB, max_position_embeddings=N_CTX,
    )  # fmt: skip
    return _bridge_from_hf(GPTNeoXForCausalLM(cfg), "GPTNeoXForCausalLM", seed, dtype)


def bridge_gptj(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Parallel attention + MLP with one shared norm, no attention biases (GPT-J)."""
    from transformers import GPTJConfig, GPTJForCausalLM

    torch.manual_seed(seed)
    cfg = GPTJConfig(
        n_embd=32, n_layer=2, n_head=4, vocab_size=D_VOCAB, n_positions=N_CTX, rotary_dim=4
    )
    return _bridge_from_hf(GPTJForCausalLM(cfg), "GPTJForCausalLM", seed, dtype)


def bridge_gemma2(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Sandwich RMSNorms with a weight offset, GQA, soft-capping (Gemma-2)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(seed)
    cfg = Gemma2Config(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, vocab_size=D_VOCAB, max_position_embeddings=N_CTX,
    )  # fmt: skip
    return _bridge_from_hf(Gemma2ForCausalLM(cfg), "Gemma2ForCausalLM", seed, dtype)


def bridge_bert(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Post-LN bidirectional encoder (BERT)."""
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    cfg = BertConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        vocab_size=D_VOCAB, max_position_embeddings=N_CTX,
    )  # fmt: skip
    return _bridge_from_hf(BertForMaskedLM(cfg), "BertForMaskedLM", seed, dtype)


def bridge_attn_only(dtype: torch.dtype = torch.float32, seed: int = 0):
    """A TL-native attention-only model (no MLPs), LayerNorm, built with boot_native."""
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    torch.manual_seed(seed)
    cfg = TransformerBridgeConfig(
        d_model=32, d_head=8, n_heads=4, n_layers=2, n_ctx=N_CTX, d_vocab=D_VOCAB,
        attn_only=True, normalization_type="LN", act_fn="gelu", seed=seed, dtype=dtype,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_native(cfg)
    bridge = bridge.to(dtype)
    _perturb(bridge, seed)
    bridge.tokenizer = word_tokenizer()
    return bridge.eval()


BRIDGE_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {
    "gpt2-preLN": bridge_gpt2,
    "opt-preLN": bridge_opt,
    "llama-RMS-rotary-GQA": bridge_llama,
    "neox-parallel": bridge_neox,
    "gptj-parallel": bridge_gptj,
    "gemma2-sandwich": bridge_gemma2,
    "bert-postLN": bridge_bert,
    "native-attn-only": bridge_attn_only,
}


def bridge_mamba(seed: int = 0):
    """A state-space model (no attention): alti must refuse it."""
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(seed)
    cfg = MambaConfig(hidden_size=32, num_hidden_layers=2, vocab_size=D_VOCAB, state_size=4)
    return _bridge_from_hf(MambaForCausalLM(cfg), "MambaForCausalLM", seed, torch.float32)


ENC_DEC_IDS = {"pad_token_id": 1, "eos_token_id": EOS, "bos_token_id": 0}


def bridge_t5(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Encoder-decoder, pre-RMSNorm, relative position bias, no biases (T5); 3 + 2 layers."""
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    cfg = T5Config(
        d_model=32, d_kv=8, d_ff=64, num_layers=3, num_decoder_layers=2, num_heads=4,
        vocab_size=D_VOCAB, decoder_start_token_id=1, **ENC_DEC_IDS,
    )  # fmt: skip
    model = T5ForConditionalGeneration(cfg)
    return _bridge_from_hf(model, "T5ForConditionalGeneration", seed, dtype, _enc_dec_tokenizer())


def _bart_like(config_cls, model_cls, architecture: str, start: int, dtype, seed: int):
    torch.manual_seed(seed)
    cfg = config_cls(
        d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=D_VOCAB,
        max_position_embeddings=N_CTX, decoder_start_token_id=start, forced_eos_token_id=EOS,
        **ENC_DEC_IDS,
    )  # fmt: skip
    return _bridge_from_hf(model_cls(cfg), architecture, seed, dtype, _enc_dec_tokenizer())


def bridge_marian(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Encoder-decoder, post-LN, biases, sinusoidal positions (Marian)."""
    from transformers import MarianConfig, MarianMTModel

    return _bart_like(MarianConfig, MarianMTModel, "MarianMTModel", 1, dtype, seed)


def bridge_bart(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Encoder-decoder, post-LN, biases, learned positions, embedding norms (BART)."""
    from transformers import BartConfig, BartForConditionalGeneration

    return _bart_like(
        BartConfig, BartForConditionalGeneration, "BartForConditionalGeneration", EOS, dtype, seed
    )


def bridge_m2m100(dtype: torch.dtype = torch.float32, seed: int = 0):
    """Encoder-decoder, pre-LN with final stack norms (M2M100 / NLLB)."""
    from transformers import M2M100Config, M2M100ForConditionalGeneration

    return _bart_like(
        M2M100Config, M2M100ForConditionalGeneration, "M2M100ForConditionalGeneration", EOS,
        dtype, seed,
    )  # fmt: skip


def _enc_dec_tokenizer() -> PreTrainedTokenizerFast:
    return word_tokenizer(bos=False, eos=True)


ENC_DEC_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {
    "t5-preRMS": bridge_t5,
    "marian-postLN": bridge_marian,
    "bart-postLN": bridge_bart,
    "m2m100-preLN": bridge_m2m100,
}


def previous_token_model(vocab: int = 8, n_ctx: int = 8, sharpness: float = 40.0):
    """A hand-built two-layer attention-only model (no norms) that predicts the previous token.

    The residual has three subspaces: token one-hot, position one-hot, and an output copy of a
    token. Layer 0's single head attends from position p to p − 1 (query: position p; key:
    position p' shifted to p' + 1) and copies that token into the output subspace; layer 1 writes
    nothing. The unembedding reads the output subspace, so the logit of the previous token is ≈ 1
    and, by construction, comes from position t − 1 alone.
    """
    from transformer_lens.config import TransformerBridgeConfig
    from transformer_lens.model_bridge import TransformerBridge

    d_head = max(vocab, n_ctx)
    tok, pos, out = 0, vocab, vocab + n_ctx  # subspace offsets
    d_model = 2 * vocab + n_ctx
    cfg = TransformerBridgeConfig(
        d_model=d_model, d_head=d_head, n_heads=1, n_layers=2, n_ctx=n_ctx, d_vocab=vocab,
        attn_only=True, normalization_type=None, act_fn="gelu", dtype=torch.float64,
        positional_embedding_type="standard",
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TransformerBridge.boot_native(cfg).to(torch.float64)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.original_component.weight[:, tok : tok + vocab] = torch.eye(vocab)
        model.pos_embed.original_component.weight[:, pos : pos + n_ctx] = torch.eye(n_ctx)
        attn = model.blocks[0].attn
        q, k = attn.q.original_component.weight, attn.k.original_component.weight
        v, o = attn.v.original_component.weight, attn.o.original_component.weight
        for p_ in range(n_ctx):
            q[p_, pos + p_] = sharpness  # query of position p is e_p
            if p_ + 1 < n_ctx:
                k[p_ + 1, pos + p_] = sharpness  # key of position p' is e_{p'+1}
        for w in range(vocab):
            v[w, tok + w] = 1.0  # value: the token's one-hot
            o[out + w, w] = 1.0  # output: into the output subspace
        model.unembed.original_component.weight[:, out : out + vocab] = torch.eye(vocab)
    return model.eval()
