"""Tiny offline models of every architecture TransformerLens can bridge (the architecture matrix).

`build(key)` makes a random Hugging Face model of architecture `key` (a key of TransformerLens'
`SUPPORTED_ARCHITECTURES`) from a tiny config (d_model 32, 4 heads, 2 layers), perturbs its
weights (`tests.models`) and wraps it in a `TransformerBridge`. Keys that cannot be built here
(remote code, TransformerLens-only formats, TransformerLens failing to wrap them) raise
`NotBuildable`. `tests/test_architectures.py` and `scripts/supported_models.py` share this module,
so the support table shows what the test measured.
"""

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tests.models import D_VOCAB, _bridge_from_hf

# A tiny shape for every config, under the names configs use for it (a config ignores or stores the
# names it does not know; `attribute_map` sends the standard ones to each family's own).
TINY: dict[str, Any] = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=8, vocab_size=D_VOCAB, max_position_embeddings=64,
    d_model=32, d_ff=64, d_kv=8, num_layers=2, num_heads=4, num_decoder_layers=2,
    encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
    encoder_ffn_dim=64, decoder_ffn_dim=64, ffn_dim=64, ffn_hidden_size=64,
    moe_intermediate_size=32, shared_expert_intermediate_size=32, num_experts=4,
    num_local_experts=4, n_routed_experts=4, num_experts_per_tok=2, n_shared_experts=1,
    first_k_dense_replace=1, n_group=1, topk_group=1, kv_lora_rank=16, q_lora_rank=16,
    qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8, sliding_window=64,
    pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=0,
    tie_word_embeddings=False, use_cache=False,
)  # fmt: skip

# Per-architecture corrections to TINY, where a family spells its shape its own way or needs a
# value inside a range it checks.
MLA = ("DeepseekV2ForCausalLM", "DeepseekV3ForCausalLM", "Glm4MoeLiteForCausalLM",
       "GlmMoeDsaForCausalLM", "YoutuForCausalLM")  # fmt: skip
OVERRIDES: dict[str, dict[str, Any]] = {
    "GPTJForCausalLM": dict(rotary_dim=4),
    "GPTNeoForCausalLM": dict(attention_types=[[["global", "local"], 1]], window_size=4),
    "BambaForCausalLM": dict(mamba_n_heads=4, mamba_d_head=16),
    "GraniteMoeHybridForCausalLM": dict(mamba_n_heads=4, mamba_d_head=16),
    "Mamba2ForCausalLM": dict(num_heads=8, head_dim=8, n_groups=1),
    "Zamba2ForCausalLM": dict(layers_block_type=["mamba", "hybrid"]),
    "Lfm2MoeForCausalLM": dict(layer_types=["conv", "full_attention"]),
    # multi-head latent attention: one key/value per head, the rotary width is the head_dim
    **{key: dict(num_key_value_heads=4, head_dim=4, qk_rope_head_dim=4) for key in MLA},
}


class NotBuildable(Exception):
    """transformers (as installed) cannot build this architecture offline."""


def all_keys() -> list[str]:
    """Every architecture key of TransformerLens' adapter factory, in its own order."""
    from transformer_lens.factories.architecture_adapter_factory import SUPPORTED_ARCHITECTURES

    return list(SUPPORTED_ARCHITECTURES)


def hf_classes(key: str) -> tuple[type, type]:
    """The transformers model and config classes of `key`, or raise `NotBuildable`."""
    import transformers

    try:
        model_cls = getattr(transformers, key)
    except (AttributeError, ImportError, RuntimeError) as e:
        raise NotBuildable(f"transformers {transformers.__version__} has no class {key}") from e
    config_cls = getattr(model_cls, "config_class", None)
    if config_cls is None:
        raise NotBuildable(f"{key} has no config class")
    return model_cls, config_cls


def config(key: str) -> Any:
    """A tiny config of architecture `key` (its sub-configs, e.g. `text_config`, tiny too)."""
    _, config_cls = hf_classes(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return config_cls(**_tiny_kwargs(config_cls, OVERRIDES.get(key, {})))


def _tiny_kwargs(config_cls: type, overrides: dict[str, Any]) -> dict[str, Any]:
    """TINY's names that `config_cls` has (a stray `num_key_value_heads` would reach adapters
    that read it off any config), sub-configs made tiny the same way, then `overrides`."""
    default = config_cls()
    kwargs: dict[str, Any] = {k: v for k, v in TINY.items() if _settable(default, k)}
    for name, value in vars(default).items():
        if hasattr(value, "to_dict") and hasattr(type(value), "model_type"):  # a sub-config
            kwargs[name] = type(value)(**_tiny_kwargs(type(value), {}))
    kwargs.update(overrides)
    return kwargs


def _settable(cfg: Any, name: str) -> bool:
    """Whether `name` is one of this config's own settings that TINY's value can replace."""
    prop = getattr(type(cfg), name, None)
    if isinstance(prop, property) and prop.fset is None:
        return False
    try:
        default = getattr(cfg, name)
    except AttributeError:
        return False
    except Exception:  # a per-layer setting read globally (Gemma 4): it is the config's own
        return True
    # a per-stage list (Florence-2's vision `num_heads`) is not a scalar setting
    return not isinstance(default, (list, tuple, dict)) or isinstance(TINY[name], type(default))


def build(key: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> Any:
    """A bridged tiny random model of architecture `key`."""
    model_cls, _ = hf_classes(key)
    cfg = config(key)
    torch.manual_seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hf = model_cls(cfg)
    except Exception as e:  # any failure of transformers' own constructor
        raise NotBuildable(f"transformers cannot build it: {type(e).__name__}: {e}") from e
    try:
        return _bridge_from_hf(hf, key, seed, dtype)
    except Exception as e:  # TransformerLens' adapter refuses or fails on it
        raise NotBuildable(f"TransformerLens cannot wrap it: {type(e).__name__}: {e}") from e


# ---------------------------------------------------------------------------------------------
# What alti_lens does with each architecture: the matrix test asserts it, the support table
# (docs/SUPPORTED_MODELS.md, written by scripts/supported_models.py) shows it.

EXPECTED_FILE = Path(__file__).parent / "data" / "architectures.json"
SOURCE = torch.tensor([[0, 5, 6, 7, 8, 9, 3, 4], [0, 5, 6, 11, 1, 1, 1, 1]])  # right-padded
SOURCE_MASK = (SOURCE != 1).long()
TARGET = torch.tensor([[0, 25, 26, 27], [0, 28, 29, 1]])
TARGET_MASK = (TARGET != 1).long()
NEXT = torch.tensor([3, 4])  # the tokens alti_logit explains


@dataclass
class Outcome:
    """What each entry point did on one architecture in one dtype: "exact" (ran, passed the
    exactness check and the invariants), "n/a" (not for this kind of model), or the name of the
    alti_lens error it raised, with the block kinds it found and the first refusal's message."""

    method: str  # "alti" (decoder-only, encoder-only) or "alti_plus" (encoder-decoder)
    status: str
    logit: str = "n/a"  # alti_logit, on causal language models
    flow: str = "n/a"  # flow_graph, on single-stack models alti is exact on
    neurons: str = "n/a"  # flow_graph(neurons=True), where flow_graph is exact
    kinds: list[str] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """What the expectations file pins (no message text, no timing)."""
        return {"method": self.method, "status": self.status, "logit": self.logit,
                "flow": self.flow, "neurons": self.neurons, "kinds": self.kinds}  # fmt: skip


def _status(call: Callable[[], Any]) -> tuple[str, Any, str]:
    """("exact", result, "") or (alti_lens error name, None, message); any other exception
    propagates: the matrix's point is that none escapes."""
    from alti_lens import AltiLensError

    try:
        return "exact", call(), ""
    except AltiLensError as e:
        return type(e).__name__, None, str(e).split("\n")[0]


def measure(key: str, dtype: torch.dtype) -> Outcome:
    """Run alti_lens's entry points on a tiny model of `key` and check what they return."""
    from alti_lens import models as public

    start = time.perf_counter()
    model = build(key, dtype)
    if public.is_encoder_decoder(model):
        outcome = _measure_plus(model)
    else:
        outcome = _measure_single(model, public.is_causal_lm(model))
    outcome.seconds = round(time.perf_counter() - start, 2)
    return outcome


def _measure_single(model: Any, causal: bool) -> Outcome:
    from alti_lens import alti, alti_logit, flow_graph

    status, result, note = _status(lambda: alti(model, SOURCE, attention_mask=SOURCE_MASK))
    outcome = Outcome("alti", status, note=note)
    if result is None:
        return outcome
    outcome.kinds = sorted(set(result.metadata["block_kinds"]))
    check_alti(model, result, causal)
    outcome.flow, graph, note = _status(
        lambda: flow_graph(model, SOURCE, attention_mask=SOURCE_MASK)
    )
    outcome.note = outcome.note or note
    if graph is not None:
        check_flow(model, graph, causal)
        outcome.neurons, graph, note = _status(
            lambda: flow_graph(model, SOURCE, attention_mask=SOURCE_MASK, neurons=True)
        )
        outcome.note = outcome.note or note
        if graph is not None:
            check_flow(model, graph, causal)
    if causal:
        outcome.logit, logit, note = _status(
            lambda: alti_logit(model, SOURCE, NEXT, attention_mask=SOURCE_MASK)
        )
        outcome.note = outcome.note or note
        if logit is not None:
            assert logit.scores.isfinite().all()
    return outcome


def check_alti(model: Any, result: Any, causal: bool) -> None:
    """Invariants of spec §3/§4/§7 on a padded batch, and the batch equals single runs."""
    from conftest import between_runs

    from alti_lens import alti

    C, R, mask = result.contributions, result.rollout, result.attention_mask.bool()
    atol = 1e-12 if C.dtype == torch.float64 else 1e-5
    real = mask[:, None, :].expand(-1, result.n_layers, -1)
    for M in (C, R):
        assert (M >= 0).all() and not M.isnan().any()
        sums = M.sum(-1)[real]
        torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=atol)
        assert (M[~real] == 0).all() and (M.transpose(-1, -2)[~real] == 0).all()
        if causal:
            assert (M.triu(1) == 0).all()
    n = int(mask[1].sum())
    single = alti(model, SOURCE[1:, :n])
    torch.testing.assert_close(
        result.contributions[1, :, :n, :n], single.contributions[0],
        rtol=0, atol=between_runs(result, single),
    )  # fmt: skip


def check_flow(model: Any, graph: Any, causal: bool) -> None:
    """Spec §8's invariants on a padded batch (every node's parts sum to 1, padding and causal
    zeros), and the batch equals single runs."""
    from conftest import between_runs

    from alti_lens import flow_graph

    A, mask = graph.attention, graph.attention_mask.bool()
    atol = 1e-12 if A.dtype == torch.float64 else 1e-5
    real = mask[:, None, :].expand(-1, graph.n_layers, -1)
    parallel = torch.tensor([step == "parallel" for step in graph.steps])[None, :, None]
    mlp = graph.mlp.nan_to_num()
    attention_sums = A.sum((2, 4)) + graph.attention_residual + torch.where(parallel, mlp, 0.0)
    ones = torch.ones_like(attention_sums[real])
    torch.testing.assert_close(attention_sums[real], ones, rtol=0, atol=atol)
    sequential = torch.tensor([step == "attention+mlp" for step in graph.steps])[None, :, None]
    mlp_sums = (mlp + graph.mlp_residual.nan_to_num())[real & sequential]
    torch.testing.assert_close(mlp_sums, torch.ones_like(mlp_sums), rtol=0, atol=atol)
    if graph.neurons is not None:
        shares = graph.neurons.sum(-1)[real & (sequential | parallel)]
        assert ((shares - 1).abs() <= atol).logical_or(shares == 0).all()
    assert (A >= 0).all()
    for b, keep in enumerate(mask):
        assert (A[b][:, :, ~keep] == 0).all() and (A[b][..., ~keep] == 0).all()
    assert (graph.attention_residual[~real] == 0).all() and (graph.mlp[~real] == 0).all()
    if causal:
        assert (A.triu(1) == 0).all()
    n = int(mask[1].sum())
    single = flow_graph(model, SOURCE[1:, :n], neurons=graph.neurons is not None)
    torch.testing.assert_close(
        graph.attention[1, :, :, :n, :n], single.attention[0],
        rtol=0, atol=between_runs(graph, single),
    )  # fmt: skip
    torch.testing.assert_close(
        graph.mlp[1, :, :n], single.mlp[0], rtol=0, atol=between_runs(graph, single),
        equal_nan=True,
    )  # fmt: skip


def _measure_plus(model: Any) -> Outcome:
    from conftest import assert_plus_row_equals_single

    from alti_lens import alti_plus

    def run(b: slice) -> Any:
        return alti_plus(
            model, SOURCE[b], TARGET[b],
            source_attention_mask=SOURCE_MASK[b], target_attention_mask=TARGET_MASK[b],
        )  # fmt: skip

    status, result, note = _status(lambda: run(slice(None)))
    outcome = Outcome("alti_plus", status, note=note)
    if result is None:
        return outcome
    outcome.kinds = sorted(set(result.metadata["block_kinds"].values()))
    R = result.rollout
    real = result.target_attention_mask.bool()
    sums = R[:, -1].sum(-1)[real]
    torch.testing.assert_close(sums, torch.ones_like(sums), rtol=0, atol=1e-5)
    n, t = int(SOURCE_MASK[1].sum()), int(TARGET_MASK[1].sum())
    one = alti_plus(model, SOURCE[1:, :n], TARGET[1:, :t])
    assert_plus_row_equals_single(result, 1, one)
    return outcome


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def expected_entry(key: str, dtype: torch.dtype) -> dict[str, Any]:
    """One cell of the expectations file: the outcome's summary plus its note and timing, or
    "not buildable" and why."""
    try:
        outcome = measure(key, dtype)
    except NotBuildable as e:
        return {"status": "not buildable", "note": str(e).split("\n")[0][:300]}
    return {**outcome.summary(), "note": outcome.note[:300], "seconds": outcome.seconds}


_HEADER = """# Supported models

Every architecture key of TransformerLens {tl}'s adapter factory, built offline as a tiny random
model (d_model 32, 4 heads, 2 layers; a 2-text right-padded batch) by `tests/architectures.py`, run
through `alti` (`alti_plus` for encoder-decoders), `flow_graph` (single-stack models; also with
`neurons=True`) and, on causal language models, `alti_logit`, in float32 and float64. **exact**:
ran, passed the exactness check (the decomposition reproduces the model's own hooked outputs) and
the invariants (rows sum to 1, causal and padding zeros, the padded batch equals single runs).
Otherwise the alti_lens error it raises, whose message names the reason and the fix (a model never
fails with another exception). *Generated* by
`python scripts/supported_models.py` from the expectations `tests/test_architectures.py` asserts
(`tests/data/architectures.json`, transformers {hf}): do not edit by hand.

A tiny random model is not the real checkpoint: a real model of an **exact** architecture can still
be refused where its configuration takes a path the tiny one did not (e.g. values that clipping
changes, sliding windows shorter than the padding in float64); the exactness check runs on every
call, so it is refused, never silently wrong. `float64 …ForwardError`: the model itself cannot run
in float64 (mixture-of-experts layers); run it in float32 with `alti(model, inputs,
dtype=torch.float64)`.

| architecture | float32 | float64 | ALTI-Logit | flow graph | block kinds | note |
|---|---|---|---|---|---|---|
"""


def _cell(entry: dict[str, Any]) -> str:
    status = entry["status"]
    return "**exact**" if status == "exact" else status


def render_table(table: dict[str, dict]) -> str:
    """docs/SUPPORTED_MODELS.md from the expectations."""
    import importlib.metadata

    import transformers

    lines = [
        _HEADER.format(
            tl=importlib.metadata.version("transformer-lens"), hf=transformers.__version__
        )
    ]
    counts: dict[str, int] = {}
    for key, cells in table.items():
        f32, f64 = cells["float32"], cells["float64"]
        counts[_cell(f32)] = counts.get(_cell(f32), 0) + 1
        logit = f32.get("logit", "n/a")
        logit = "**exact**" if logit == "exact" else logit
        flow = f32.get("flow", "n/a")
        flow = "**exact**" if flow == "exact" else flow
        if f32.get("neurons") not in ("exact", "n/a", None):
            flow += f" (neurons: {f32['neurons']})"
        kinds = ", ".join(f32.get("kinds", [])) or "—"
        if f32.get("method") == "alti_plus":
            kinds = "encoder-decoder: " + kinds
        note = (f32.get("note") or f64.get("note") or "").replace("|", "\\|")
        lines.append(
            f"| {key} | {_cell(f32)} | {_cell(f64)} | {logit} | {flow} | {kinds} | {note} |\n"
        )
    total = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    lines.append(f"\nIn float32: {total} (of {len(table)} keys).\n")
    return "".join(lines)
