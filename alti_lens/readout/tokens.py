"""Text to token ids and back, the model's way; greedy generation of a target (ALTI+)."""

from typing import Any

import torch
from torch import Tensor

from alti_lens.errors import InputError, UnknownTokenWarning, warn_user

from .models import BRIDGE, ModelInfo, backend_of, is_encoder_decoder
from .protocol import HookedModel


def _tokenizer(model: HookedModel) -> Any:
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise InputError(
            "text needs a tokenizer: got text, but the model has no tokenizer. Fix: pass token "
            "ids as an int tensor "
            "[batch, pos], or give the model a tokenizer."
        )
    return tokenizer


def _pad_id(model: HookedModel) -> int:
    tokenizer = getattr(model, "tokenizer", None)
    pad = None if tokenizer is None else tokenizer.pad_token_id
    if pad is None:
        pad = getattr(model.cfg, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def _right_pad(model: HookedModel, rows: list[Tensor]) -> tuple[Tensor, Tensor]:
    n = max(len(r) for r in rows)
    tokens = torch.full((len(rows), n), _pad_id(model), dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return tokens, mask


def unknown_token_id(model: HookedModel) -> int | None:
    """The tokenizer's unknown token, where it is a real one: byte-level BPE tokenizers (GPT-2)
    name their BOS/EOS token as `unk_token` but never produce it for text."""
    tokenizer = getattr(model, "tokenizer", None)
    unk = None if tokenizer is None else getattr(tokenizer, "unk_token_id", None)
    if not isinstance(unk, int):
        return None
    others = {getattr(tokenizer, f"{name}_token_id", None) for name in ("bos", "eos", "pad")}
    return None if unk in others else unk


def unknown_words(model: HookedModel, text: str, target: bool = False) -> list[str]:
    """The words of `text` that the tokenizer maps to its unknown token (none if it has none)."""
    unk = unknown_token_id(model)
    if unk is None:
        return []
    tokenizer = model.tokenizer
    key = "text_target" if target else "text"
    words = []
    for word in text.split():
        ids = tokenizer(**{key: word}, add_special_tokens=False)["input_ids"]
        if unk in ids and word not in words:
            words.append(word)
    return words


def warn_unknown(model: HookedModel, texts: list[str], name: str, target: bool = False) -> None:
    """Warn once per call, naming the words the model cannot read (they all become one token)."""
    found: list[str] = []
    for text in texts:
        found += [w for w in unknown_words(model, text, target) if w not in found]
    if found:
        shown = ", ".join(map(repr, found[:12])) + (" ..." if len(found) > 12 else "")
        token = model.tokenizer.unk_token
        warn_user(
            f"{len(found)} word(s) of the {name} are not in the model's vocabulary and become "
            f"its unknown token {token!r}: {shown}. Their contributions are those of {token!r}, "
            "not of the words. Fix: use words the tokenizer knows (the built-in demo models "
            "know only their toy vocabularies: alti_lens.demo.data), or a model that reads them.",
            UnknownTokenWarning,
        )


def tokenize(model: HookedModel, texts: list[str], name: str = "text") -> tuple[Tensor, Tensor]:
    """Tokenize each text as the model does, then right-pad; returns (tokens, mask).

    Each text is tokenized alone, so the mask is known exactly even where the pad token is also the
    BOS/EOS token (GPT-2); padding on the right keeps positions identical to a single run.
    Decoder-only and encoder models use TransformerLens' `to_tokens` (BOS as the config says);
    encoder-decoder sources use the tokenizer itself (EOS, language tags as it adds them).
    """
    tokenizer = _tokenizer(model)
    rows: list[Tensor] = []
    for text in texts:
        if is_encoder_decoder(model):
            ids = torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)
        else:
            out = model.to_tokens(text, truncate=False)
            ids = (out[0] if isinstance(out, tuple) else out)[
                0
            ]  # HookedEncoder: (ids, types, mask)
        rows.append(ids.cpu())
    warn_unknown(model, texts, name)
    return _right_pad(model, rows)


def tokenize_targets(
    model: HookedModel, info: ModelInfo, texts: list[str]
) -> tuple[Tensor, Tensor, Tensor]:
    """Target texts as (decoder input, mask, labels): `labels` as the tokenizer makes them for the
    target side, the decoder input shifted right with the decoder start token (row t predicts
    label t)."""
    tokenizer = _tokenizer(model)
    start = _decoder_start(model, info)
    labels = [torch.tensor(tokenizer(text_target=t)["input_ids"], dtype=torch.long) for t in texts]
    warn_unknown(model, texts, "target", target=True)
    inputs = [torch.cat([torch.tensor([start]), row[:-1]]) for row in labels]
    tokens, mask = _right_pad(model, inputs)
    label_ids, _ = _right_pad(model, labels)
    return tokens, mask, label_ids.masked_fill(mask == 0, -1)


def _decoder_start(model: HookedModel, info: ModelInfo) -> int:
    if info.decoder_start_token_id is None:
        raise InputError(
            f"the model's config has no decoder_start_token_id ({info.architecture}); "
            "alti_plus cannot shift a target right. Fix: set model.cfg.decoder_start_token_id, "
            "or pass the decoder input ids yourself."
        )
    return info.decoder_start_token_id


def _eos_ids(model: HookedModel) -> set[int]:
    ids: set[int] = set()
    sources = [getattr(model, "tokenizer", None), model.cfg]
    hf = getattr(model, "original_model", None)
    if hf is not None:
        sources += [hf.config, getattr(hf, "generation_config", None)]
    for src in sources:
        value = getattr(src, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


@torch.inference_mode()
def generate(
    model: HookedModel, info: ModelInfo, src: Tensor, src_mask: Tensor, max_new_tokens: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Greedy translation of each source; returns (decoder input, mask, labels) as for a given
    target: the input starts with the decoder start token and ends before the last generated
    token, which (EOS) is the last row's label."""
    start = _decoder_start(model, info)
    src, src_mask = src.to(info.device), src_mask.to(info.device)
    hf = getattr(model, "original_model", None)
    if backend_of(model) == BRIDGE and hf is not None:
        # Hugging Face generation honours the model's generation config (forced BOS language tags
        # of M2M100/NLLB, forced EOS of Marian/BART).
        out = hf.generate(
            input_ids=src, attention_mask=src_mask, max_new_tokens=max_new_tokens, do_sample=False
        )
    else:
        out = torch.full((src.shape[0], 1), start, dtype=torch.long, device=info.device)
        mask = src_mask.to(info.dtype)  # TL 3.x: an int mask gives NaN scores in float64 models
        eos = _eos_ids(model)
        for _ in range(max_new_tokens):
            logits = model(src, decoder_input=out, one_zero_attention_mask=mask)
            out = torch.cat([out, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
            if all(any(int(t) in eos for t in row[1:]) for row in out):
                break
    eos = _eos_ids(model)
    inputs, labels = [], []
    for row in out.cpu():
        generated = row[1:].tolist()
        stop = next((i + 1 for i, t in enumerate(generated) if t in eos), len(generated))
        labels.append(torch.tensor(generated[:stop], dtype=torch.long))
        inputs.append(row[:stop])
    tokens, mask = _right_pad(model, inputs)
    label_ids, _ = _right_pad(model, labels)
    return tokens, mask, label_ids.masked_fill(mask == 0, -1)


def str_tokens(model: HookedModel, tokens: Tensor) -> list[list[str]]:
    """Readable token strings, one per position (padding included, so indices match tensors)."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return [[str(int(t)) for t in row] for row in tokens]
    return [tokenizer.batch_decode([[int(t)] for t in row]) for row in tokens]


def special_tokens_mask(model: HookedModel, tokens: Tensor) -> Tensor:
    """Positions holding special tokens (EOS, BOS, padding, language tags)."""
    tokenizer = getattr(model, "tokenizer", None)
    ids = set(getattr(tokenizer, "all_special_ids", None) or []) | _eos_ids(model)
    for name in ("bos_token_id", "pad_token_id"):
        value = getattr(model.cfg, name, None)
        if isinstance(value, int):
            ids.add(value)
    return torch.isin(tokens, torch.tensor(sorted(ids), dtype=tokens.dtype))


def single_token_id(model: HookedModel, text: str, name: str) -> int:
    """The id of `text` if the tokenizer makes it exactly one token (no special tokens added)."""
    tokenizer = _tokenizer(model)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        pieces = tokenizer.convert_ids_to_tokens(ids)
        raise InputError(
            f"{name} {text!r} is {len(ids)} tokens {pieces}; expected exactly one token. "
            "Fix: pass a token id, or the string of one token (mind a leading space: ' Paris')."
        )
    return int(ids[0])
