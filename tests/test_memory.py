"""Memory by construction: no `alti()` run allocates a tensor of `n²·d_model` elements.

Every tensor produced by an ATen operation during the whole call (the model's forward pass, the
read-out, the decomposition, the exactness check, the contributions and the rollout) is recorded
through a `TorchDispatchMode`; the largest must stay far below `n · n · d_model`, which is what a
method that materialises `T` (or the `[H, n, n, d]` per-head tensor) allocates per layer.
"""

import pytest
import torch
from conftest import bridge
from torch.utils._python_dispatch import TorchDispatchMode

from alti_lens import alti
from alti_lens.core.kernels import dispatch


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any ATen operation returns while active."""

    def __init__(self) -> None:
        super().__init__()
        self.numel = 0
        self.op = ""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.numel() > self.numel:
                self.numel, self.op = t.numel(), str(func)
        return out


@pytest.mark.parametrize("kernel", ["reference", "fused"])
@pytest.mark.parametrize("rows", ["all", "last"])
@pytest.mark.parametrize("name", ["gpt2-preLN", "llama-RMS-rotary-GQA", "bert-postLN"])
def test_no_tensor_of_n_n_d_elements(
    name: str, kernel: str, rows: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kernel == "fused" and dispatch.cpu_kernel() is None:
        pytest.skip("the C++ kernel could not be compiled on this machine")
    monkeypatch.setenv("ALTI_LENS_KERNEL", kernel)
    model = bridge(name)
    cfg = model.cfg
    n = cfg.n_ctx  # the longest input the test model takes (32)
    tokens = torch.randint(3, cfg.d_vocab, (1, n), generator=torch.Generator().manual_seed(0))
    probe = LargestTensor()
    with probe:
        result = alti(model, tokens, chunk_size=4, rows=rows)
    n_n_d = n * n * cfg.d_model
    # The largest tensors allowed: the results ([batch, layer, n, n]), the attention pattern
    # ([heads, n, n]) and one chunk of T on the reference path (4 rows × n keys × d_model).
    allowed = max(result.contributions.numel(), cfg.n_heads * n * n, 4 * n * cfg.d_model)
    assert probe.numel <= allowed <= n_n_d // 8, (probe.op, probe.numel)


def test_the_probe_sees_a_materialised_t() -> None:
    """The probe can fail: forming `T` for all rows at once is caught."""
    probe = LargestTensor()
    pattern, values = torch.rand(4, 32, 32), torch.rand(32, 4, 32)
    with probe:
        torch.einsum("hij,jhd->ijd", pattern, values)
    assert probe.numel == 32 * 32 * 32


@pytest.mark.parametrize("kernel", ["reference", "fused"])
@pytest.mark.parametrize("name", ["gpt2-preLN", "neox-parallel", "bert-postLN"])
def test_the_flow_graph_never_forms_the_per_head_tensor(
    name: str, kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`flow_graph` (heads and neurons) stays below the per-head `[H, n, n, d]` tensor by far: its
    largest tensors are its own results and one row's (head, key) parts on the reference path."""
    from alti_lens import flow_graph

    if kernel == "fused" and dispatch.cpu_kernel() is None:
        pytest.skip("the C++ kernel could not be compiled on this machine")
    monkeypatch.setenv("ALTI_LENS_KERNEL", kernel)
    model = bridge(name)
    cfg = model.cfg
    n, H, d = cfg.n_ctx, cfg.n_heads, cfg.d_model
    tokens = torch.randint(3, cfg.d_vocab, (1, n), generator=torch.Generator().manual_seed(0))
    probe = LargestTensor()
    with probe:
        graph = flow_graph(model, tokens, chunk_size=1, neurons=True)
    assert graph.neurons is not None
    d_mlp = graph.neurons.shape[-1]
    allowed = max(graph.attention.numel(), graph.neurons.numel(), H * n * d, d_mlp * d)
    assert probe.numel <= allowed <= H * n * n * d // 8, (probe.op, probe.numel)
