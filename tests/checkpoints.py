"""Tiny Hugging Face checkpoint directories written to disk, for the paths that load a model by
name: `load_model(dir)`, the command line. Random weights, the word-level test tokenizers."""

from pathlib import Path

import torch
from models import D_VOCAB, ENC_DEC_IDS, EOS, N_CTX, word_tokenizer


def save_gpt2(path: Path, seed: int = 0) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tokenizer = word_tokenizer()
    cfg = GPT2Config(
        n_layer=2, n_embd=32, n_head=4, vocab_size=D_VOCAB, n_positions=N_CTX,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_bart(path: Path, seed: int = 0) -> Path:
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(seed)
    cfg = BartConfig(
        d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=D_VOCAB,
        max_position_embeddings=N_CTX, decoder_start_token_id=EOS, forced_eos_token_id=EOS,
        **ENC_DEC_IDS,
    )  # fmt: skip
    BartForConditionalGeneration(cfg).save_pretrained(path)
    word_tokenizer(bos=False, eos=True).save_pretrained(path)
    return path
