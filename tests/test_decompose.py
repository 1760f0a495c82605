"""The decomposition of one sub-block (`alti_lens.core.decompose`) on random tensors, float64:
every block kind's output is rebuilt from its hand-over tensors (spec §2); the errors."""

import pytest
import torch

from alti_lens.core.decompose import decompose_block, reconstruct
from alti_lens.core.handover import BlockKind, BlockTensors, NormTensors
from alti_lens.errors import AltiLensError, UnsupportedModelError

N, HEADS, KV, D_HEAD, D = 6, 4, 2, 3, 8
EPS = 1e-5


def _norm(u: torch.Tensor, weight: torch.Tensor, centred: bool) -> tuple[torch.Tensor, ...]:
    """A LayerNorm (centred) or RMSNorm without bias, and its real scale."""
    if centred:
        u = u - u.mean(-1, keepdim=True)
    scale = (u.pow(2).mean(-1) + EPS).sqrt()
    return weight * u / scale[..., None], scale


def block(kind: BlockKind, seed: int = 0, kv: int = KV) -> BlockTensors:
    """One causal sub-block of `kind` with grouped-query attention and its real output."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    causal = torch.ones(N, N, dtype=torch.bool).triu(1)
    pattern = rand(1, HEADS, N, N).masked_fill(causal, float("-inf")).softmax(-1)
    v, W_O, b_O, x = rand(1, N, kv, D_HEAD), rand(HEADS, D_HEAD, D), rand(D), rand(1, N, D)
    # query head h reads kv head h // (HEADS / kv)
    per_head = v.repeat_interleave(HEADS // kv, dim=2) if HEADS % kv == 0 else v
    attn = torch.einsum("bhqk,bkhe,hed->bqd", pattern, per_head, W_O) if HEADS % kv == 0 else x
    weight, beta = rand(D) * 0.5 + 1, rand(D) * 0.1
    norm = None
    if kind in (BlockKind.PRE_NORM, BlockKind.PARALLEL, BlockKind.ATTN_ONLY):
        output = x + attn + b_O
    elif kind is BlockKind.POST_NORM:
        normed, scale = _norm(x + attn + b_O, weight, centred=True)
        output, norm = normed + beta, NormTensors(weight, beta, scale, centred=True)
    else:  # sandwich: an RMSNorm on the attention output before the residual add
        normed, scale = _norm(attn + b_O, weight, centred=False)
        output, norm = x + normed, NormTensors(weight, None, scale, centred=False)
    return BlockTensors(kind, pattern, v, W_O, b_O, x, output, norm)


@pytest.mark.parametrize("kind", list(BlockKind), ids=[k.value for k in BlockKind])
def test_every_block_kind_rebuilds_its_output(kind: BlockKind) -> None:
    tensors = block(kind, seed=len(kind.value))
    everything = torch.arange(N)
    terms = decompose_block(tensors, 0, everything, torch.float64)
    assert terms.values.shape == (N, HEADS, D) and not terms.residual_column
    assert (terms.row_scale is None) == (tensors.norm is None)
    torch.testing.assert_close(reconstruct(terms), tensors.output[0], rtol=0, atol=1e-12)
    # the real positions of a (right-)padded sequence: causal rows see only real keys
    first = decompose_block(tensors, 0, torch.arange(4), torch.float64)
    assert first.pattern.shape == (HEADS, 4, 4)
    torch.testing.assert_close(reconstruct(first), tensors.output[0, :4], rtol=0, atol=1e-12)


def test_uneven_key_value_groups_are_an_unsupported_model() -> None:
    tensors = block(BlockKind.PRE_NORM, kv=3)
    with pytest.raises(UnsupportedModelError, match=r"got 4 query heads .* and 3 key/value") as e:
        decompose_block(tensors, 0, torch.arange(N), torch.float64)
    assert isinstance(e.value, AltiLensError) and "n_key_value_heads" in str(e.value)


def test_a_norm_block_without_its_norm_is_refused() -> None:
    tensors = block(BlockKind.POST_NORM)
    broken = BlockTensors(
        tensors.kind, tensors.pattern, tensors.v, tensors.W_O, tensors.b_O, tensors.resid_pre,
        tensors.output,
    )  # fmt: skip
    with pytest.raises(ValueError, match="post_norm block needs its norm's tensors"):
        decompose_block(broken, 0, torch.arange(N), torch.float64)
