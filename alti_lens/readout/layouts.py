"""Encoder-decoder attention whose hooks are not `[batch, head, query, key]` patterns (spec §2.4).

The decomposition needs each sub-block's dense pattern, the values it weighted and the residuals at
the user's positions. Three bridged families hide one of them; this module finds it and converts it
exactly (measured on tiny random models in float64: the dense pattern times `hook_v` rebuilds the
model's `hook_z` with error 0):

- LED (Longformer encoder): its modules return no weights unless asked (`output_attentions`),
  and then the windowed `[b, n', H, 2w+1]` pattern, in which column `j` of row `i` is key
  `i + j − w`; `hook_v` is sequence-first `[n', b, H, dh]`; and every encoder tensor is padded to
  `n'`, a multiple of `attention_window`. Read: the pattern scattered into `[b, H, n, n]` (zeros
  outside the window), every encoder tensor cut to the user's `n` (the padding keys are masked:
  weight exactly 0).
- LongT5, local attention: the weights (only with `output_attentions`) are blocked,
  `[b, blocks, H, l, 3l]`, key `k` of block `m` being position `(m − 1)·l + k`; the bridge's
  pattern hook fires on 4-D tensors only. Read: the weights from the Hugging Face module's output,
  scattered into `[b, H, n, n]`.
- SwitchTransformers: the bridge fires `hook_pattern` on the relative position bias (the
  module's `output[1]`). Read: the weights, `output[2]` of the Hugging Face module.

LongT5 with transient-global attention is refused (`check_supported`): its side keys are the
RMS-normalised sums of whole blocks of tokens, so a source token reaches a query both as its own
key and through its block's side key, with a second value vector; the decomposition takes one
value vector per key (spec §2.4).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from alti_lens.errors import UnsupportedModelError

# Hugging Face module classes (by name: importing them would load every family's code)
_LONGFORMER_ENCODER = "LEDEncoderAttention"
_LONGT5_LOCAL = "LongT5LocalAttention"
_LONGT5_TRANSIENT_GLOBAL = "LongT5TransientGlobalAttention"

Adapt = Callable[[Tensor], Tensor]
Tap = tuple[Any, Callable[[Any], Tensor]]  # (Hugging Face module, its output -> the pattern)


@dataclass(frozen=True)
class Layout:
    """How one sub-block's tensors are read: a pattern `tap` on the Hugging Face module instead
    of `hook_pattern` (None: the hook), and per-role conversions of what the hooks caught."""

    tap: Tap | None = None
    adapt: dict[str, Adapt] = field(default_factory=dict)


def _hf(attn: Any) -> Any:
    return getattr(attn, "original_component", None)


def _hf_class(attn: Any) -> str:
    return type(_hf(attn)).__name__


def check_supported(architecture: str, attention: list[Any]) -> None:
    """Refuse, before any model work, attention no exact decomposition here covers."""
    for attn in attention:
        _refuse_transient_global(architecture, attn)


def _refuse_transient_global(architecture: str, attn: Any) -> None:
    if _hf_class(attn) == _LONGT5_TRANSIENT_GLOBAL:
        raise UnsupportedModelError(
            f"{architecture} uses transient-global encoder attention "
            "(encoder_attention_type='transient-global'): each query also attends to side "
            "keys that are RMS-normalised sums of whole blocks of source tokens, so a source "
            "token reaches a query through two value vectors; alti_lens decomposes one value "
            "vector per key. Fix: use a LongT5 model with encoder_attention_type='local', or "
            "another encoder-decoder (T5, BART, Marian, M2M100, LED)."
        )


def needs_output_attentions(attention: list[Any]) -> bool:
    """Whether the forward pass must ask Hugging Face for the attention weights: LED's and
    LongT5's local modules return none otherwise (LED's pattern hooks then never fire)."""
    return any(_hf_class(attn) in (_LONGFORMER_ENCODER, _LONGT5_LOCAL) for attn in attention)


def layout(attn: Any, encoder: bool, n_source: int) -> Layout:
    """The layout of the attention bridge `attn`'s sub-block (`encoder`: an encoder
    self-attention over `n_source` user positions)."""
    name = _hf_class(attn)
    _refuse_transient_global("LongT5", attn)  # (describe refuses it first)
    if encoder and name == _LONGFORMER_ENCODER:
        return _longformer(_hf(attn).longformer_self_attn.one_sided_attn_window_size, n_source)
    if encoder and name == _LONGT5_LOCAL:
        return Layout(tap=(_hf(attn), _blocked_weights(_hf(attn).block_len, n_source)))
    if hasattr(_hf(attn), "has_relative_attention_bias") and not getattr(
        attn, "requires_relative_position_bias", True
    ):
        # T5-style module the bridge does not reroute: its `output[1]` is the position bias.
        return Layout(tap=(_hf(attn), _third_output))
    return Layout()


def _longformer(window: int, n: int) -> Layout:
    def cut(t: Tensor) -> Tensor:
        return t[:, :n]

    def values(t: Tensor) -> Tensor:
        return t.transpose(0, 1)[:, :n]  # LED projects the sequence-first hidden states

    def pattern(t: Tensor) -> Tensor:
        if t.shape[-1] != 2 * window + 1:
            raise UnsupportedModelError(
                f"LED encoder attention with global tokens (pattern width {t.shape[-1]}, window "
                f"{2 * window + 1}): the global tokens' own rows are computed apart and not "
                "hooked. Fix: run without a global_attention_mask."
            )
        return windowed_to_dense(t)[:, :, :n, :n]

    adapt = {"pattern": pattern, "v": values, "order_v": values}
    for role in ("ln1_scale", "ln1_out", "ln2_in", "resid_pre"):
        adapt[role] = cut
    return Layout(adapt=adapt)


def windowed_to_dense(windowed: Tensor) -> Tensor:
    """Longformer's `[b, n, H, 2w+1]` sliding-window pattern as `[b, H, n, n]`: column `j` of
    row `i` is key `i + j − w`; columns outside `[0, n)` (weight 0: masked) are dropped."""
    b, n, H, width = windowed.shape
    w = width // 2
    rows = torch.arange(n, device=windowed.device)[:, None].expand(n, width)
    cols = torch.arange(width, device=windowed.device)[None].expand(n, width)
    keys = rows + cols - w
    inside = (keys >= 0) & (keys < n)
    dense = windowed.new_zeros(b, H, n, n)
    # advanced indices separated by a slice come first: [inside, b, H]
    dense[:, :, rows[inside], keys[inside]] = windowed[:, rows[inside], :, cols[inside]].permute(
        1, 2, 0
    )
    return dense


def blocked_to_dense(blocked: Tensor, n: int) -> Tensor:
    """LongT5's local `[b, m, H, l, 3l]` weights as `[b, H, n, n]`: query `q` of block `m` is
    position `m·l + q`, key `k` is `(m − 1)·l + k`; positions outside `[0, n)` (padding, weight
    0) are dropped."""
    b, m, H, l, width = blocked.shape
    blk = torch.arange(m, device=blocked.device)[:, None, None]
    query = (blk * l + torch.arange(l, device=blocked.device)[None, :, None]).expand(m, l, width)
    cols = torch.arange(width, device=blocked.device)[None, None]
    key = ((blk - 1) * l + cols).expand(m, l, width)
    inside = (query < n) & (key >= 0) & (key < n)
    blocks, queries, cols = inside.nonzero(as_tuple=True)
    dense = blocked.new_zeros(b, H, n, n)
    dense[:, :, query[inside], key[inside]] = blocked[:, blocks, :, queries, cols].permute(1, 2, 0)
    return dense


def _weights(output: Any, index: int, dims: int) -> Tensor:
    weights = output[index] if isinstance(output, tuple) and len(output) > index else None
    if not isinstance(weights, Tensor) or weights.dim() != dims:
        raise UnsupportedModelError(
            "the attention module returned no attention weights (Hugging Face returns none with "
            "sdpa/flash attention). Fix: load the model with eager attention "
            "(attn_implementation='eager')."
        )
    return weights


def _third_output(output: Any) -> Tensor:
    return _weights(output, 2, 4)


def _blocked_weights(block_len: int, n: int) -> Callable[[Any], Tensor]:
    def extract(output: Any) -> Tensor:
        blocked = _weights(output, 2, 5)  # (output, position bias, weights)
        if blocked.shape[3] != block_len:
            raise UnsupportedModelError(
                f"LongT5 local attention weights of block length {blocked.shape[3]}, expected "
                f"{block_len}; this transformers version lays them out differently."
            )
        return blocked_to_dense(blocked, n)

    return extract
