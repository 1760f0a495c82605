"""Models split over devices (`device_map`): each layer is decomposed where it lives.

A split model hands each layer's tensors over on that layer's device, which is not the device of
its first parameter (`ModelInfo.device`, where the input goes). There is no second device on a
CPU-only machine, so the split is mocked the other way round: the measuring steps are told the
model lives on PyTorch's `meta` device while every layer's tensors arrive on the CPU. Any step
that moves a layer's indices or masks to `info.device` instead of the layer's own device computes
on `meta` (or mixes devices) and fails; the results must equal the unmocked run bit for bit.
The Triton launch is put on its tensors' CUDA device (`torch.cuda.device`), which needs a GPU
with two devices to exercise and is not tested here.
"""

import dataclasses

import pytest
import torch
from conftest import bridge

from alti_lens import alti, flow_api, flow_graph, pipeline
from alti_lens._measure import Validated

META = torch.device("meta")


def _mock_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """The measuring steps see a model 'on meta' whose layers arrive on the CPU."""
    measurer = pipeline._measurer

    def on_meta(info, *args, **kwargs):
        return measurer(dataclasses.replace(info, device=META), *args, **kwargs)

    class Collector(flow_api.FlowCollector):
        def __init__(self, call: Validated, shape: torch.Size, neurons: bool) -> None:
            info = dataclasses.replace(call.info, device=META)
            super().__init__(Validated(call.model, info, call.request), shape, neurons)

    monkeypatch.setattr(pipeline, "_measurer", on_meta)
    monkeypatch.setattr(flow_api, "FlowCollector", Collector)


@pytest.mark.parametrize("name", ["gpt2-preLN", "llama-RMS-rotary-GQA", "neox-parallel"])
def test_layers_are_measured_where_they_live(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = bridge(name, torch.float64)
    tokens = torch.tensor([[0, 3, 4, 5, 6], [0, 7, 8, 9, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    expected = alti(model, tokens, attention_mask=mask)
    expected_flow = flow_graph(model, tokens, attention_mask=mask)
    _mock_split(monkeypatch)
    got = alti(model, tokens, attention_mask=mask)
    assert torch.equal(got.contributions, expected.contributions)
    assert torch.equal(got.rollout, expected.rollout)
    got_flow = flow_graph(model, tokens, attention_mask=mask)
    assert torch.equal(got_flow.attention, expected_flow.attention)
    torch.testing.assert_close(got_flow.mlp, expected_flow.mlp, rtol=0, atol=0, equal_nan=True)
