"""Shared fixtures: offline models of every block kind, built once per session."""

import functools
import importlib.metadata
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

import models


@functools.cache
def bridge(name: str, dtype: torch.dtype = torch.float32):
    """A cached model: building costs 0.1–1 s and tests never modify the models they share.

    One plain forward pass first: the bridge registers its own internal hooks lazily on its first
    run, which would otherwise look like hooks left behind by `alti`.
    """
    model = models.BRIDGE_BUILDERS[name](dtype=dtype)
    with torch.no_grad():
        model(torch.tensor([[0, 3, 4]]))
    return model


TL_MAJOR = int(importlib.metadata.version("transformer-lens").split(".")[0])


@functools.cache
def encdec(name: str, dtype: torch.dtype = torch.float64):
    """A cached encoder-decoder bridge (skipped where this TransformerLens cannot run it)."""
    if name == "t5-preRMS" and TL_MAJOR < 4:
        pytest.skip("TransformerLens 3.x's bridge cannot run T5 (ValueError inside HF's T5Stack)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return models.ENC_DEC_BUILDERS[name](dtype=dtype)


@pytest.fixture(params=list(models.BRIDGE_BUILDERS), ids=list(models.BRIDGE_BUILDERS))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


def hook_count(model: torch.nn.Module) -> int:
    """Every PyTorch hook on the model's modules (TransformerLens and plain ones)."""
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )
