"""`alti_plus` on the deprecated TransformerLens 3.x `HookedEncoderDecoder` (T5).

The class does not exist in TransformerLens 4.x, so the module is skipped there; it runs in a
second environment with transformer-lens 3.x.
"""

import functools

import pytest
import torch
from conftest import TL_MAJOR, assert_plus_row_equals_single
from models import EOS
from models_tl3 import hed_t5
from naive_plus import assert_rollout_matches_naive

import alti_lens
from alti_lens import UnsupportedModelError, alti, alti_plus

if TL_MAJOR != 3:
    pytest.skip(
        "needs TransformerLens 3.x: runs in .ci/run's second environment", allow_module_level=True
    )


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(hp._forward_hooks) + len(hp._backward_hooks) for hp in model.hook_dict.values())


SOURCES = ["the cat sat on the mat", "a big dog"]
TARGETS = ["le chat est sur la", "le chien"]
SUB_BLOCKS = ["encoder.0", "encoder.1"] + [
    f"decoder.{i}.{part}" for i in range(2) for part in ("self", "cross")
]


@functools.cache
def t5(dtype: torch.dtype = torch.float64):
    """A cached `hed_t5`; tests that modify a model build their own."""
    return hed_t5(dtype=dtype)


def padded_ids() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two sources (6 and 4 tokens) and two decoder inputs (5 and 3), right-padded with <pad>."""
    src = torch.tensor([[3, 5, 7, 8, 9, EOS], [4, 13, 6, EOS, 1, 1]])
    src_mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    tgt = torch.tensor([[1, 25, 26, 28, 29], [1, 25, 27, 1, 1]])  # start token 1 first
    tgt_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    return src, src_mask, tgt, tgt_mask


def _rows_sum_to_one(M: torch.Tensor, real_rows: torch.Tensor) -> None:
    sums = M.sum(-1)[real_rows]
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-9)


def test_hed_builder_draws_every_parameter() -> None:
    model = t5()
    assert not model.training
    assert model.cfg.decoder_start_token_id == 1 and model.tokenizer.eos_token_id == EOS
    for param_name, p in model.named_parameters():
        assert torch.isfinite(p).all(), param_name
        assert not bool((p == 0).all()) and not bool((p == 1).all()), param_name
    assert float(model.encoder_final_ln.w.detach().mean()) > 0.5  # a norm weight, near 1


def test_hed_exact_on_token_tensor_and_block_kinds() -> None:
    src, src_mask, tgt, tgt_mask = padded_ids()
    result = alti_plus(
        t5(), src, tgt, source_attention_mask=src_mask, target_attention_mask=tgt_mask
    )
    assert result.metadata["backend"] == "HookedEncoderDecoder"
    assert result.metadata["sub_blocks"] == SUB_BLOCKS
    parts = ["encoder.0", "encoder.1", "decoder_self.0", "decoder_cross.0", "decoder_self.1"]
    assert result.metadata["block_kinds"] == dict.fromkeys([*parts, "decoder_cross.1"], "pre_norm")
    assert result.metadata["decoder_start_token_id"] == 1
    assert result.metadata["target_generated"] is False
    assert result.reconstruction_error.shape == (2, len(SUB_BLOCKS))
    assert not result.reconstruction_error.isnan().any()
    assert float(result.reconstruction_error.max()) <= 1e-9
    assert result.rollout.dtype == torch.float64
    assert result.encoder_contributions.shape == (2, 2, 6, 6)
    assert result.decoder_contributions.shape == (2, 2, 5, 5)
    assert result.cross_contributions.shape == (2, 2, 5, 7)
    assert result.rollout.shape == (2, 2, 5, 11)


def test_hed_invariants() -> None:
    src, src_mask, tgt, tgt_mask = padded_ids()
    result = alti_plus(
        t5(), src, tgt, source_attention_mask=src_mask, target_attention_mask=tgt_mask
    )
    S = src.shape[1]
    src_real, tgt_real = src_mask.bool(), tgt_mask.bool()
    enc_rows = src_real[:, None].expand(-1, 2, -1)
    dec_rows = tgt_real[:, None].expand(-1, 2, -1)
    for M in (result.encoder_contributions, result.encoder_rollout):
        assert (M >= 0).all() and not M.isnan().any()
        _rows_sum_to_one(M, enc_rows)
        assert (M[~enc_rows] == 0).all() and (M.transpose(-1, -2)[~enc_rows] == 0).all()
    assert float(result.encoder_contributions[0, 0].triu(1).sum()) > 0.1  # bidirectional
    for M in (result.decoder_contributions, result.cross_contributions, result.rollout):
        assert (M >= 0).all() and not M.isnan().any()
        _rows_sum_to_one(M, dec_rows)
        assert (M[~dec_rows] == 0).all()  # padded decoder rows
    D = result.decoder_contributions
    assert (D.transpose(-1, -2)[~dec_rows] == 0).all()  # padded decoder columns
    assert (D.triu(1) == 0).all()  # causal zeros
    assert (result.rollout[..., S:].triu(1) == 0).all()  # no step draws on later targets
    assert (result.rollout[..., S:].transpose(-1, -2)[~dec_rows] == 0).all()
    pad_src = ~src_real[:, None, None, :].expand(-1, 2, tgt.shape[1], -1)
    assert (result.cross_contributions[..., :S][pad_src] == 0).all()
    assert (result.rollout[..., :S][pad_src] == 0).all()
    assert (result.cross_contributions[..., S][dec_rows] > 0).all()  # the residual column
    sc = result.source_contribution
    torch.testing.assert_close(sc, result.rollout[:, -1, :, :S].sum(-1), rtol=0, atol=0)
    assert (sc[tgt_real] > 0).all() and (sc[tgt_real] < 1).all() and (sc[~tgt_real] == 0).all()
    # the extended rollout is the spec's recurrence, computed loop by loop
    for b in range(2):
        assert_rollout_matches_naive(result, b)


def test_hed_right_padded_ids_equal_single_runs() -> None:
    model = t5()
    src, src_mask, tgt, tgt_mask = padded_ids()
    batch = alti_plus(
        model, src, tgt, source_attention_mask=src_mask, target_attention_mask=tgt_mask
    )
    assert float(batch.reconstruction_error.max()) <= 1e-9
    for b in range(2):
        s, t = int(src_mask[b].sum()), int(tgt_mask[b].sum())
        one = alti_plus(model, src[b : b + 1, :s], tgt[b : b + 1, :t])
        assert float(one.reconstruction_error.max()) <= 1e-9
        assert_plus_row_equals_single(batch, b, one)


def test_hed_strings_equal_ids_and_single_runs() -> None:
    model = t5()
    text = alti_plus(model, SOURCES, TARGETS)
    # the tokenizer appends </s> and pads with <pad> on the right; targets are shifted right
    assert text.source_tokens.tolist() == [[3, 5, 7, 8, 3, 9, EOS], [4, 13, 6, EOS, 1, 1, 1]]
    assert text.source_attention_mask.tolist() == [[1] * 7, [1, 1, 1, 1, 0, 0, 0]]
    assert text.target_tokens.tolist() == [[1, 25, 26, 28, 29, 30], [1, 25, 27, 1, 1, 1]]
    assert text.target_labels.tolist() == [[25, 26, 28, 29, 30, EOS], [25, 27, EOS, -1, -1, -1]]
    assert text.source_str_tokens[1][:4] == ["a", "big", "dog", "</s>"]
    assert text.source_special_mask.tolist()[1] == [False] * 3 + [True] + [False] * 3
    assert float(text.reconstruction_error.max()) <= 1e-9
    ids = alti_plus(
        model,
        text.source_tokens,
        text.target_tokens,
        source_attention_mask=text.source_attention_mask,
        target_attention_mask=text.target_attention_mask,
    )
    assert torch.equal(ids.rollout, text.rollout)
    for b, (source, target) in enumerate(zip(SOURCES, TARGETS, strict=True)):
        assert_plus_row_equals_single(text, b, alti_plus(model, source, target))


def test_hed_float32_agrees_with_float64() -> None:
    src, src_mask, tgt, tgt_mask = padded_ids()
    masks = dict(source_attention_mask=src_mask, target_attention_mask=tgt_mask)
    r64 = alti_plus(t5(), src, tgt, **masks)
    r32 = alti_plus(t5(torch.float32), src, tgt, **masks)
    assert r32.rollout.dtype == torch.float32
    assert float(r32.reconstruction_error.max()) <= 1e-5
    torch.testing.assert_close(r32.rollout.double(), r64.rollout, rtol=0, atol=1e-4)


def test_hed_generation_then_explanation() -> None:
    model = t5()
    src, src_mask, _, _ = padded_ids()
    result = alti_plus(model, src, source_attention_mask=src_mask, max_new_tokens=5)
    assert result.metadata["target_generated"] is True
    tgt, mask, labels = result.target_tokens, result.target_attention_mask, result.target_labels
    assert tgt.shape[0] == 2 and (tgt[:, 0] == 1).all()  # the decoder start token
    assert ((labels == -1) == (mask == 0)).all()
    assert float(result.reconstruction_error.max()) <= 1e-9
    # teacher forcing reproduces the greedy choices: the model's argmax at row t is label t
    with torch.no_grad():
        logits = model(src, decoder_input=tgt, one_zero_attention_mask=src_mask.double())
    assert (logits.argmax(-1) == labels)[mask.bool()].all()
    # each source generated alone gives the same target
    for b in range(2):
        s = int(src_mask[b].sum())
        one = alti_plus(model, src[b : b + 1, :s], max_new_tokens=5)
        t = one.target_tokens.shape[1]
        assert torch.equal(one.target_tokens[0], tgt[b, :t]) and int(mask[b].sum()) == t
    # plain ids, no mask, no tokenizer strings: still generated from the start token
    again = alti_plus(model, src[:1], max_new_tokens=3)
    assert again.target_tokens.shape == (1, 3) and int(again.target_tokens[0, 0]) == 1


def test_hed_generation_stops_at_eos() -> None:
    model = hed_t5(seed=2)
    with torch.no_grad():
        model.unembed.b_U[EOS] += 100.0  # every step predicts </s>
    result = alti_plus(model, SOURCES)
    assert result.metadata["target_generated"] is True
    assert result.target_tokens.tolist() == [[1], [1]]
    assert result.target_labels.tolist() == [[EOS], [EOS]]
    assert float(result.reconstruction_error.max()) <= 1e-9


def test_hed_zeroed_cross_attention_output_gives_no_source_contribution() -> None:
    model = hed_t5(seed=5)
    with torch.no_grad():
        for block in model.decoder:
            block.cross_attn.W_O.zero_()
            block.cross_attn.b_O.zero_()
    src, src_mask, tgt, tgt_mask = padded_ids()
    result = alti_plus(
        model, src, tgt, source_attention_mask=src_mask, target_attention_mask=tgt_mask
    )
    real = tgt_mask.bool()
    assert float(result.reconstruction_error.max()) <= 1e-9
    assert (result.source_contribution[real] == 0).all()
    assert (result.cross_contributions[..., :-1] == 0).all()
    rows = real[:, None].expand(-1, 2, -1)
    assert (result.cross_contributions[..., -1][rows] == 1).all()


def test_hed_no_hooks_left_behind() -> None:
    model = t5()
    before = hook_count(model)
    alti_plus(model, SOURCES, TARGETS)
    alti_plus(model, SOURCES[:1], max_new_tokens=2)
    assert hook_count(model) == before


def test_encoder_decoder_is_rejected() -> None:
    with pytest.raises(UnsupportedModelError, match="alti_plus"):
        alti(t5(), torch.tensor([[0, 4, 5, 6]]))
    assert issubclass(UnsupportedModelError, alti_lens.AltiLensError)
