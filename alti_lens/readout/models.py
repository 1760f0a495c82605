"""Which TransformerLens model this is: backend, shape, weight processing (spec §6)."""

import importlib.metadata
import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from alti_lens.errors import UnsupportedModelError

from . import layouts
from .attention import output_weights, value_bias
from .protocol import HookedModel, not_a_model

BRIDGE = "TransformerBridge"
HOOKED_TRANSFORMER = "HookedTransformer"
HOOKED_ENCODER = "HookedEncoder"
HOOKED_ENCODER_DECODER = "HookedEncoderDecoder"


def tl_version() -> str:
    """The installed TransformerLens version ("unknown" where its metadata is missing)."""
    try:
        return importlib.metadata.version("transformer-lens")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - a dependency
        return "unknown"


def backend_of(model: object) -> str:
    """Name of the TransformerLens class `model` is, or raise `UnsupportedModelError`.

    Matched on the class hierarchy by name and package, which imports nothing and holds across
    TransformerLens versions (3.x exports the bridge from `model_bridge` only, 4.x at top level).
    """
    names = (BRIDGE, HOOKED_TRANSFORMER, HOOKED_ENCODER, HOOKED_ENCODER_DECODER)
    for cls in type(model).__mro__:  # these classes are `HookedModel`s (tests/test_contracts.py)
        if cls.__name__ in names and cls.__module__.startswith("transformer_lens."):
            return cls.__name__
    raise not_a_model(model)


@dataclass(frozen=True)
class ModelInfo:
    """What `alti_lens` needs to know about a model before running it."""

    backend: str
    name: str
    architecture: str
    n_layers: int
    n_heads: int
    d_model: int
    n_ctx: int
    d_vocab: int
    dtype: torch.dtype
    device: torch.device
    weight_processing: dict[str, bool] = field(default_factory=dict)
    n_decoder_layers: int = 0  # encoder-decoder models: n_layers counts the encoder
    decoder_start_token_id: int | None = None

    @property
    def tl_version(self) -> str:
        """The installed TransformerLens version."""
        return tl_version()


def _is_encoder_decoder(model: HookedModel, backend: str) -> bool:
    if backend == HOOKED_ENCODER_DECODER:
        return True
    return backend == BRIDGE and hasattr(model, "decoder_blocks")


def is_encoder_decoder(model: HookedModel) -> bool:
    """True for encoder-decoder models (bridged or 3.x `HookedEncoderDecoder`)."""
    return _is_encoder_decoder(model, backend_of(model))


def _arch(model: HookedModel) -> str:
    cfg = model.cfg
    arch = getattr(cfg, "architecture", None) or getattr(cfg, "original_architecture", None)
    return str(arch or "unknown")


def encoder_blocks(model: HookedModel) -> Any:
    """The encoder's blocks (the bridge's and 3.x's attribute names differ)."""
    return model.encoder_blocks if hasattr(model, "encoder_blocks") else model.encoder


def decoder_blocks(model: HookedModel) -> Any:
    """The decoder's blocks (the bridge's and 3.x's attribute names differ)."""
    return model.decoder_blocks if hasattr(model, "decoder_blocks") else model.decoder


def attention_modules(model: HookedModel) -> list[Any]:
    """Every attention module, in order (self-attention of each stack, then cross-attention)."""
    if not hasattr(model, "blocks"):
        dec = decoder_blocks(model)
        return (
            [b.attn for b in encoder_blocks(model)]
            + [getattr(b, "self_attn", None) or b.attn for b in dec]
            + [b.cross_attn for b in dec]
        )
    return [b.attn for b in model.blocks]


def describe(model: object, *, encoder_decoder: bool = False) -> ModelInfo:
    """Validate `model` for `alti` (one stack) or `alti_plus` (`encoder_decoder`); describe it.

    `model` is whatever the user passed: anything but a `HookedModel` of a TransformerLens class
    is refused with an `UnsupportedModelError` that says what came and what works."""
    if not isinstance(model, HookedModel):
        raise not_a_model(model)
    backend = backend_of(model)
    is_enc_dec = _is_encoder_decoder(model, backend)
    if is_enc_dec and not encoder_decoder:
        raise UnsupportedModelError(
            f"{type(model).__name__} wraps an encoder-decoder model ({_arch(model)}); "
            "alti() expects one stack of self-attention. Fix: use "
            "alti_plus(model, source, target) for source and target contributions (ALTI+)."
        )
    if encoder_decoder and not is_enc_dec:
        raise UnsupportedModelError(
            f"{type(model).__name__} ({_arch(model)}) is not an encoder-decoder model; "
            "alti_plus() needs an encoder, a decoder and cross-attention. Fix: use "
            "alti(model, inputs) for decoder-only and encoder-only models."
        )
    _check_reads_text(model)
    cfg = model.cfg
    n_layers, n_dec = _count_layers(model, is_enc_dec)
    if is_enc_dec:  # attention no exact read-out covers, refused before the model runs
        layouts.check_supported(_arch(model), attention_modules(model))
    _check_attention_readable(model)
    param = next(model.parameters())
    start = getattr(cfg, "decoder_start_token_id", None)
    return ModelInfo(
        backend=backend,
        name=str(getattr(cfg, "model_name", None) or type(model).__name__),
        architecture=_arch(model),
        n_layers=n_layers,
        n_heads=int(cfg.n_heads),
        d_model=int(cfg.d_model),
        n_ctx=int(cfg.n_ctx),
        d_vocab=int(getattr(cfg, "d_vocab", -1)),
        dtype=param.dtype,
        device=param.device,
        weight_processing=weight_processing(model, backend),
        n_decoder_layers=n_dec,
        decoder_start_token_id=None if start is None else int(start),
    )


def _count_layers(model: HookedModel, is_enc_dec: bool) -> tuple[int, int]:
    """(layers of the single stack or encoder, decoder layers), once every block is one whose
    attention ALTI can read: refused otherwise, naming the block and why."""
    if is_enc_dec:
        for layer, block in enumerate(decoder_blocks(model)):
            if getattr(block, "cross_attn", None) is None:
                raise UnsupportedModelError(
                    f"{_arch(model)}: decoder block {layer} ({type(block).__name__}) has no "
                    "separate cross-attention (T5Gemma 2 attends to the encoder and the target "
                    "prefix in one merged attention). ALTI+ needs the decoder's self-attention and "
                    "cross-attention as two sub-blocks (spec §2.4). Fix: none for this model."
                )
        _check_no_sandwich(model)
        return len(encoder_blocks(model)), len(decoder_blocks(model))
    blocks = getattr(model, "blocks", None)
    if blocks is None or len(blocks) == 0:
        raise UnsupportedModelError(
            f"{type(model).__name__} has no `blocks`: expected a stack of transformer blocks. "
            "Fix: pass a TransformerLens model of a transformer (see alti_lens's README)."
        )
    for layer, block in enumerate(blocks):
        _check_block(model, layer, block)
    return len(blocks), 0


def _check_no_sandwich(model: HookedModel) -> None:
    """ALTI+'s read-out knows pre- and post-norm encoder-decoder blocks; a norm on the attention
    output (T5Gemma's sandwich) would be left out of the decomposition: refuse it up front."""
    for stack, blocks in (("encoder", encoder_blocks(model)), ("decoder", decoder_blocks(model))):
        for layer, block in enumerate(blocks):
            if hasattr(block, "ln1_post"):
                raise UnsupportedModelError(
                    f"{_arch(model)}: {stack} block {layer} normalises the attention output "
                    "before the residual add (a sandwich norm, as T5Gemma's), which alti_plus "
                    "does not decompose for encoder-decoder models (spec §2.3 covers it for "
                    "single stacks only). Fix: none for this model yet."
                )


# sub-blocks that mix tokens besides attention (state-space / recurrent / convolutional mixers)
_OTHER_MIXERS = ("mamba", "mixer", "ssm", "conv", "time_mix", "linear_attn")


def _check_block(model: HookedModel, layer: int, block: Any) -> None:
    """Refuse a block without attention (SSM, recurrent, hybrid layers) or with another token
    mixer beside it (Falcon-H1 runs attention and Mamba in parallel): ALTI decomposes attention,
    and another mixer's share of the output would be left unexplained."""
    others = [n for n, _ in block.named_children() if n.lower().startswith(_OTHER_MIXERS)]
    if getattr(block, "attn", None) is not None and not others:
        return
    parts = ", ".join(
        f"{n}: {type(m).__name__}" for n, m in block.named_children() if not n.startswith("hook")
    )
    what = (
        f"mixes tokens with {', '.join(others)} besides attention"
        if getattr(block, "attn", None) is not None
        else "has no attention sub-block"
    )
    raise UnsupportedModelError(
        f"{_arch(model)}: block {layer} {what} ({parts}). ALTI decomposes attention; "
        "state-space (SSM/Mamba), recurrent and hybrid layers are not supported (spec §2.3). "
        "Fix: use a transformer model (docs/SUPPORTED_MODELS.md lists them)."
    )


def _check_reads_text(model: HookedModel) -> None:
    """Refuse models whose input is not token ids (vision and audio models TransformerLens can
    bridge: ViT, DeiT, AST, Wav2Vec2, HuBERT): ALTI attributes to input tokens."""
    wrapped = getattr(model, "original_model", None)  # the bridge's Hugging Face model
    reads = getattr(wrapped, "main_input_name", "input_ids")
    if reads != "input_ids":
        raise UnsupportedModelError(
            f"{type(wrapped).__name__} ({_arch(model)}) reads {reads!r}, not token ids: "
            "alti_lens needs a text-token model, because ALTI attributes each representation to "
            "input tokens. Fix: use a text model (docs/SUPPORTED_MODELS.md lists them)."
        )


def _check_attention_readable(model: HookedModel) -> None:
    """Refuse, up front, attention modules whose per-head output weights `W_O` TransformerLens
    cannot give (JetMoE's mixture of attention heads routes each token's heads to experts;
    DeepSeek-V4's attention is a generic component). One module of each class is read.
    (Multi-head latent attention's `W_O` is read off its `o_proj`: `attention.output_weights`.)"""
    seen: set[type] = set()
    for layer, attn in enumerate(attention_modules(model)):
        if type(attn) in seen:
            continue
        seen.add(type(attn))
        try:
            output_weights(attn)
        except UnsupportedModelError:
            raise
        except Exception as e:  # whatever TransformerLens raises: say it here
            raise UnsupportedModelError(
                f"{_arch(model)}: TransformerLens gives no per-head output weights W_O for the "
                f"attention of block {layer} ({type(attn).__name__}: {type(e).__name__}: {e}). "
                "ALTI needs each attention block's pattern, values and W_O, so this attention "
                "is not one alti_lens can decompose. Fix: none for this architecture; "
                "docs/SUPPORTED_MODELS.md lists the supported ones."
            ) from e


# ---------------------------------------------------------------------------------------------
# Weight processing (spec §6)


def _norm_type(model: HookedModel) -> str:
    return str(getattr(model.cfg, "normalization_type", None) or "")


def weight_processing(model: HookedModel, backend: str) -> dict[str, bool]:
    """Detect TransformerLens' weight processing from flags and, where none exist, from weights.

    3.x keeps no flag for centring or value-bias folding, so both are read off the weights:
    centred writing weights have `W_O` rows with zero mean over `d_model`; folded value biases are
    all zero while some `b_O` is not. Random-initialised models satisfy neither.
    """
    attns = attention_modules(model)
    # Each test stops at the first layer that settles it (layer 0 for unprocessed models), so a
    # large model's weights are not all read on every call.
    # (`output_weights`, `value_bias`: multi-head latent attention has no TL `W_O`/`b_V`.)
    centred = all(_writes_centred(output_weights(a)[0]) for a in attns)
    b_V = [value_bias(a) for a in attns]
    folded_v = all(x is not None and not bool(x.detach().any()) for x in b_V) and any(
        (b_O := output_weights(a)[1]) is not None and bool(b_O.any()) for a in attns
    )
    if backend == BRIDGE:
        processed = bool(getattr(model, "_weights_processed", False))
        fold_ln = processed or bool(getattr(model.cfg, "layer_norm_folding", False))
    else:
        fold_ln = _norm_type(model).endswith("Pre")
    return {
        "fold_ln": fold_ln,
        "center_writing_weights": centred,
        "fold_value_biases": folded_v,
    }


def _writes_centred(W_O: Tensor) -> bool:
    """`W_O` rows have zero mean over `d_model` (TransformerLens' `center_writing_weights`)."""
    W_O = W_O.float()
    return bool(W_O.mean(dim=-1).abs().amax() <= 1e-6 * W_O.abs().amax().clamp_min(1e-30))


_WARNED: "weakref.WeakSet[Any]" = weakref.WeakSet()


def first_time(model: HookedModel) -> bool:
    """True the first time a given model object is seen (for warn-once messages)."""
    if model in _WARNED:
        return False
    _WARNED.add(model)
    return True
