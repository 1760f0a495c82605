"""ALTI+ of encoder-decoders whose encoder attention is not dense (readout/layouts.py): LED
(Longformer's sliding window), LongT5 (local blocks) and SwitchTransformers (whose bridged
`hook_pattern` is the position bias; its second layers' MLPs are routed experts).

Tiny models whose windows are shorter than the sources, so the band really cuts: LED
`attention_window` 4 (keys i−2..i+2, the encoder pads to a multiple of 4), LongT5 `local_radius` 2
(blocks of 3). Every run is exact (`check=True`), and padded batches equal single runs.
"""

import functools
import warnings

import pytest
import torch
from conftest import assert_plus_row_equals_single
from naive_encdec import contribution_matrix, self_attention_terms

from alti_lens import alti_plus
from alti_lens.errors import UnsupportedModelError
from alti_lens.readout.layouts import blocked_to_dense, windowed_to_dense
from tests import architectures as A
from tests.models import _bridge_from_hf

# TransformerLens 4.x's adapters of these architectures (3.x's bridge has none)

LED, LONGT5, SWITCH = (
    "LEDForConditionalGeneration",
    "LongT5ForConditionalGeneration",
    "SwitchTransformersForConditionalGeneration",
)
SMALL = {
    LED: dict(
        attention_window=[4, 4], max_encoder_position_embeddings=64,
        max_decoder_position_embeddings=64,
    ),
    LONGT5: dict(encoder_attention_type="local", local_radius=2),
    SWITCH: dict(encoder_sparse_step=2, decoder_sparse_step=2),  # layer 1: a routed MoE MLP
}  # fmt: skip
START = 0  # T5-family configs have no decoder_start_token_id of their own (the real T5's is 0)

# two sources longer than the windows (10 and 7 real tokens) and two decoder inputs (4 and 3)
SRC = torch.tensor([[0, 5, 6, 7, 8, 9, 10, 11, 12, 2], [0, 13, 6, 14, 8, 15, 2, 1, 1, 1]])
SRC_MASK = torch.tensor([[1] * 10, [1] * 7 + [0] * 3])
TGT_MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])


def _config(key: str, **changes: object):
    cfg = A.config(key)
    for name, value in (SMALL[key] | {"decoder_start_token_id": START} | changes).items():
        setattr(cfg, name, value)
    return cfg


@functools.cache
def model(key: str, dtype: torch.dtype = torch.float64, **changes: object):
    """A tiny bridged model of `key` with small windows (cached: tests never modify it)."""
    model_cls, _ = A.hf_classes(key)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _bridge_from_hf(model_cls(_config(key, **changes)), key, 0, dtype)


def _target(m) -> torch.Tensor:
    start = m.cfg.decoder_start_token_id
    return torch.tensor([[start, 5, 6, 7], [start, 8, 9, 1]])


@functools.cache
def _batch(key: str, dtype: torch.dtype):
    m = model(key, dtype)
    return alti_plus(
        m, SRC, _target(m), source_attention_mask=SRC_MASK, target_attention_mask=TGT_MASK
    )


def _single(key: str, dtype: torch.dtype, b: int):
    m = model(key, dtype)
    s, t = int(SRC_MASK[b].sum()), int(TGT_MASK[b].sum())
    return alti_plus(m, SRC[b : b + 1, :s], _target(m)[b : b + 1, :t])


KEYS = [LED, LONGT5, SWITCH]
DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("key", KEYS)
def test_exact_rows_sum_to_one_and_causal(key: str, dtype: torch.dtype) -> None:
    r = _batch(key, dtype)
    limit = 1e-4 if dtype == torch.float32 else 1e-9  # errors relative to |y| ~ 1..10
    assert float(r.reconstruction_error.max()) < limit
    S = SRC.shape[1]
    for b in range(2):
        s, t = int(SRC_MASK[b].sum()), int(TGT_MASK[b].sum())
        ones = torch.ones(1, dtype=r.encoder_contributions.dtype)
        enc = r.encoder_contributions[b, :, :s, :s].sum(-1)
        dec = r.decoder_contributions[b, :, :t, :t]
        cross = r.cross_contributions[b, :, :t, :s].sum(-1) + r.cross_contributions[b, :, :t, S]
        for sums in (enc, dec.sum(-1), cross):
            torch.testing.assert_close(sums, ones.expand_as(sums), rtol=0, atol=1e-5)
        assert bool((dec.triu(diagonal=1) == 0).all())  # causal: no later target token
        assert bool((r.encoder_contributions[b, :, s:] == 0).all())  # padding rows are empty


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("key", KEYS)
def test_padded_batch_equals_single_runs(key: str, dtype: torch.dtype) -> None:
    batch = _batch(key, dtype)
    for b in range(2):
        assert_plus_row_equals_single(batch, b, _single(key, dtype, b))


@pytest.mark.parametrize(("key", "radius"), [(LED, 2), (LONGT5, 2)])
def test_first_encoder_layer_is_banded(key: str, radius: int) -> None:
    """In the first encoder layer a token outside the window contributes exactly nothing (its
    term is 0); inside the window the contributions are not all 0. LongT5's blocks of 3 reach
    at most 2 positions further (radius 2)."""
    r = _batch(key, torch.float64)
    C = r.encoder_contributions[0, 0]  # the unpadded source, 10 tokens
    i, j = torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij")
    assert bool((C[(i - j).abs() > radius] == 0).all())
    assert bool((C[(i - j).abs() <= radius] > 0).float().mean() > 0.5)


def test_led_encoder_layer_matches_naive() -> None:
    """LED's first encoder layer rebuilt from its weights alone (a dense pattern masked to
    |i − j| ≤ 2, the values, the post-norm `self_attn_layer_norm`), float64, loop by loop:
    the model's own output to 1e-12, and alti_plus's contributions."""
    m = model(LED, torch.float64)
    layer = m.original_model.led.encoder.layers[0]
    attn, ln = layer.self_attn.longformer_self_attn, layer.self_attn_layer_norm
    x = {}
    names = ["encoder_blocks.0.hook_in", "encoder_blocks.0.ln1.hook_out"]

    def keep(t: torch.Tensor, hook) -> None:
        x[hook.name] = t[0, :10].detach().clone()  # the encoder pads to 12 positions

    m.run_with_hooks(
        SRC[:1],
        decoder_input=_target(m)[:1],
        return_type=None,
        fwd_hooks=[(n, keep) for n in names],
    )
    h, H = x[names[0]], 4
    dh = h.shape[-1] // H

    def project(linear, t):  # the bridge wraps HF's Linear layers: read their weights
        linear = getattr(linear, "original_component", linear)
        return t @ linear.weight.detach().T + linear.bias.detach()

    q = (project(attn.query, h) / dh**0.5).view(10, H, dh)
    k, v = project(attn.key, h).view(10, H, dh), project(attn.value, h).view(10, H, dh)
    pattern = torch.zeros(H, 10, 10, dtype=torch.float64)
    for head in range(H):
        for i in range(10):
            keys = [j for j in range(10) if abs(i - j) <= 2]
            scores = torch.stack([q[i, head] @ k[j, head] for j in keys])
            # LED takes the softmax in float32 whatever the model's dtype: so does this
            pattern[head, i, keys] = torch.softmax(scores.float(), -1).double()
    u = torch.einsum("hqk,khd->qhd", pattern, v).reshape(10, -1)
    u = h + project(layer.self_attn.output, u)
    scale = (u.var(-1, unbiased=False) + ln.eps).sqrt()
    sb = self_attention_terms(
        "enc0", "post_norm", m.encoder_blocks[0].attn, pattern, v.detach(), h,
        x[names[1]], causal=False, ln=m.encoder_blocks[0].ln1, scale=scale,
    )  # fmt: skip
    assert sb.reconstruction_error() < 1e-12
    r = _batch(LED, torch.float64)
    ours = r.encoder_contributions[0, 0]
    torch.testing.assert_close(ours, contribution_matrix(sb, "l1"), rtol=0, atol=1e-12)


def test_led_generates_and_explains() -> None:
    m = model(LED, torch.float64)
    r = alti_plus(m, SRC, source_attention_mask=SRC_MASK, max_new_tokens=3)
    assert r.metadata["target_generated"]
    assert r.target_tokens.shape[0] == 2 and 1 <= r.target_tokens.shape[1] <= 3
    assert float(r.reconstruction_error.max()) < 1e-9


def test_longt5_transient_global_is_refused_before_running() -> None:
    m = model(LONGT5, torch.float32, encoder_attention_type="transient-global")
    calls = []
    m.add_hook("encoder_blocks.0.hook_in", lambda t, hook: calls.append(1))
    try:
        with pytest.raises(UnsupportedModelError, match=r"transient-global.*local"):
            alti_plus(m, SRC[:1], _target(m)[:1])
    finally:
        m.reset_hooks()
    assert calls == []


def test_dense_conversions_place_each_weight() -> None:
    """Each windowed / blocked weight lands on its own (query, key); out-of-range ones vanish."""
    windowed = torch.arange(1.0, 1 + 1 * 4 * 1 * 3).view(1, 4, 1, 3)  # n 4, one-sided window 1
    dense = windowed_to_dense(windowed)[0, 0]
    for i in range(4):
        for c in range(3):
            if 0 <= i + c - 1 < 4:
                assert dense[i, i + c - 1] == windowed[0, i, 0, c]
    assert int((dense != 0).sum()) == 4 * 3 - 2
    blocked = torch.arange(1.0, 1 + 2 * 2 * 6).view(1, 2, 1, 2, 6)  # 2 blocks of 2, n 3
    dense = blocked_to_dense(blocked, 3)[0, 0]
    for m_ in range(2):
        for qi in range(2):
            for c in range(6):
                query, key = 2 * m_ + qi, 2 * (m_ - 1) + c
                if query < 3 and 0 <= key < 3:
                    assert dense[query, key] == blocked[0, m_, 0, qi, c]
