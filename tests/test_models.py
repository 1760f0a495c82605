"""The public model helpers (`alti_lens.models`): kind, layers, tokens and the next-token
prediction, as `alti` and the models themselves see them."""

import torch
from conftest import bridge, encdec

import alti_lens
from alti_lens import alti, models
from alti_lens.readout import patching

TEXTS = ["the cat sat on the mat", "a big red dog"]


def test_kinds_and_layers() -> None:
    decoder, encoder, translator = (
        bridge("gpt2-preLN"),
        bridge("bert-postLN"),
        encdec("bart-postLN"),
    )
    assert models.is_causal_lm(decoder) and not models.is_encoder_decoder(decoder)
    assert not models.is_encoder_decoder(encoder)
    assert models.is_encoder_decoder(translator) and not models.is_causal_lm(translator)
    assert models.n_layers(decoder) == alti(decoder, TEXTS[0]).n_layers == decoder.cfg.n_layers
    assert models.n_layers(encoder) == alti(encoder, TEXTS[0]).n_layers


def test_an_encoder_is_not_a_causal_lm() -> None:
    assert not models.is_causal_lm(bridge("bert-postLN"))


def test_tokens_are_the_ones_alti_reads() -> None:
    model = bridge("gpt2-preLN")
    result = alti(model, TEXTS)
    tokens, mask = models.tokenize(model, TEXTS)
    assert torch.equal(tokens, result.tokens) and torch.equal(mask, result.attention_mask)
    one, one_mask = models.tokenize(model, TEXTS[1])
    n = int(mask[1].sum())
    assert torch.equal(one[0], tokens[1, :n]) and bool(one_mask.all())
    assert models.str_tokens(model, tokens) == result.str_tokens


def test_next_token_logits_are_the_model_s_own() -> None:
    model = bridge("gpt2-preLN")
    tokens, mask = models.tokenize(model, TEXTS)
    got = models.next_token_logits(model, tokens, mask)
    for b in range(len(TEXTS)):
        n = int(mask[b].sum())
        with torch.no_grad():
            own = model(tokens[b : b + 1, :n], return_type="logits")[0, -1]
        torch.testing.assert_close(got[b], own.float(), rtol=1e-4, atol=1e-4)
    single = models.next_token_logits(model, tokens[:1])  # no mask: every position is real
    torch.testing.assert_close(single[0], got[0], rtol=1e-4, atol=1e-4)


def test_interventions_are_readout_s() -> None:
    assert models.value_zeroing is patching.value_zeroing
    assert models.value_zeroing_encoder_decoder is patching.value_zeroing_encoder_decoder
    assert models.logits is patching.logits and models.last_hidden is patching.last_hidden
    assert models.load_model is alti_lens.load_model
