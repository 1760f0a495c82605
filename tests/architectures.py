"""Tiny offline models of every architecture TransformerLens 4.x can bridge (the architecture matrix).

`build(key)` makes a random Hugging Face model of architecture `key` (a key of TransformerLens'
`SUPPORTED_ARCHITECTURES`) from a tiny config (d_model 32, 4 heads, 2 layers), perturbs its weights
(`tests.models`) and wraps it in a `TransformerBridge`. Keys transformers cannot build offline (remote
code, TransformerLens-only formats) raise `NotBuildable`; `tests/test_architectures.py` and
`scripts/supported_models.py` share this module, so the support table is what the test measured.
"""

import warnings
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
OVERRIDES: dict[str, dict[str, Any]] = {
    "GPTJForCausalLM": dict(rotary_dim=4),
    "GPTNeoForCausalLM": dict(attention_types=[[["global", "local"], 1]], window_size=4),
    "BambaForCausalLM": dict(mamba_n_heads=4, mamba_d_head=16),
    "GraniteMoeHybridForCausalLM": dict(mamba_n_heads=4, mamba_d_head=16),
    "Mamba2ForCausalLM": dict(num_heads=8, head_dim=8, n_groups=1),
    "Zamba2ForCausalLM": dict(layers_block_type=["mamba", "hybrid"]),
    "Lfm2MoeForCausalLM": dict(layer_types=["conv", "full_attention"]),
}


class NotBuildable(Exception):
    """transformers (as installed) cannot build this architecture offline."""


def keys() -> list[str]:
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
    prop = getattr(type(cfg), name, None)
    if isinstance(prop, property) and prop.fset is None:
        return False
    return hasattr(cfg, name)


def build(key: str, dtype: torch.dtype = torch.float32, seed: int = 0) -> Any:
    """A bridged tiny random model of architecture `key`."""
    model_cls, _ = hf_classes(key)
    cfg = config(key)
    torch.manual_seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            hf = model_cls(cfg)
    except Exception as e:  # noqa: BLE001 - any failure of transformers' own constructor
        raise NotBuildable(f"{key}({type(cfg).__name__}) failed: {type(e).__name__}: {e}") from e
    return _bridge_from_hf(hf, key, seed, dtype)
