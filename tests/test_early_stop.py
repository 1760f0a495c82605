"""`alti()` stops the forward pass once the last block's attention has been read: the same
numbers as a full run, nothing after it runs, and the model is left as it was."""

from typing import Any

import torch
from conftest import bridge, hook_count

from alti_lens import alti, pipeline, readout

TEXTS = ["the cat sat on the mat", "a dog ran"]


def test_same_result_as_the_full_forward_pass(kind: str, monkeypatch) -> None:
    model = bridge(kind, torch.float64)
    before = hook_count(model)
    stopped = alti(model, TEXTS)
    assert hook_count(model) == before
    full_read = readout.read_blocks

    def full(*args, **kwargs):
        kwargs["stop_early"] = False
        return full_read(*args, **kwargs)

    monkeypatch.setattr(pipeline.readout, "read_blocks", full)
    whole = alti(model, TEXTS)
    assert torch.equal(stopped.contributions, whole.contributions)
    assert torch.equal(stopped.rollout, whole.rollout)
    assert torch.equal(stopped.reconstruction_error, whole.reconstruction_error)
    assert stopped.metadata == whole.metadata


def test_nothing_after_the_last_attention_runs() -> None:
    model: Any = bridge("gpt2-preLN")
    last = len(model.blocks) - 1
    fired: list[str] = []
    after = [f"blocks.{last}.hook_mlp_out", f"blocks.{last}.hook_resid_post", "ln_final.hook_scale"]

    def record(name: str):
        return lambda tensor, hook: fired.append(name)

    with model.hooks(fwd_hooks=[(name, record(name)) for name in after]):
        alti(model, TEXTS)
    assert fired == []
    hooks = [(name, record(name)) for name in after]
    with model.hooks(fwd_hooks=hooks), torch.inference_mode():  # the model still runs whole
        logits = model(torch.tensor([[0, 3, 4]]))
    assert fired == after
    assert logits.shape == (1, 3, model.cfg.d_vocab)
