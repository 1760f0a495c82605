"""`HookedModel`: what `alti_lens` needs of a model, as a runtime-checkable protocol.

TransformerLens 4.x has `transformer_lens.model_protocol.TransformerLensModel` (`cfg`,
`run_with_cache`, `run_with_hooks`, `to_tokens`); 3.x has no protocol, and importing
TransformerLens costs seconds, so alti_lens states its own: the members of that protocol it uses,
plus the ones the read-out reaches for (the tokenizer, `hooks`, the parameters). It is
satisfied by `TransformerBridge` (3.x and 4.x) and 3.x's `HookedTransformer`, `HookedEncoder` and
`HookedEncoderDecoder`; not by a plain `torch.nn.Module` or a Hugging Face model, which have no
hook points (`describe` says how to wrap one).

Members are checked for presence only (`isinstance`), with `inspect.getattr_static` on Python
3.12+: every member is a method or a plain instance attribute of those classes, never a submodule
(which lives in `nn.Module._modules` and is invisible to a static look-up). Submodules (`blocks`,
`ln_final`, `encoder_blocks`, ...) are reached through `__getattr__`, as on any `nn.Module`, and
typed `Any`: the read-out checks them itself (`describe`, `run_plans`).

This module imports neither torch nor TransformerLens.
"""

from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

from alti_lens.errors import UnsupportedModelError

# What works, said once for every refusal.
SUPPORTED = (
    "a TransformerLens model: TransformerBridge (decoder-only, encoder-only or encoder-decoder), "
    "or with TransformerLens 3.x HookedTransformer / HookedEncoder / HookedEncoderDecoder"
)


@runtime_checkable
class HookedModel(Protocol):
    """A TransformerLens model as `alti_lens` uses it (see the module docstring)."""

    @property
    def cfg(self) -> Any:
        """The TransformerLens config (`n_layers`, `n_heads`, `d_model`, `n_ctx`, ...)."""
        ...

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer, or None (then only token ids are accepted)."""
        ...

    def hooks(self, *args: Any, **kwargs: Any) -> Any:
        """A context manager that adds hooks for its duration (`fwd_hooks=[(name, hook)]`)."""
        ...

    def run_with_hooks(self, *args: Any, **kwargs: Any) -> Any:
        """A forward pass with hooks (`fwd_hooks=[(name, hook)]`) that are removed after it."""
        ...

    def to_tokens(self, *args: Any, **kwargs: Any) -> Any:
        """Token ids `[batch, pos]` of a text or texts, with the model's tokenizer."""
        ...

    def parameters(self, recurse: bool = True) -> Iterator[Any]:
        """The weights (`nn.Module.parameters`): their dtype and device are the model's."""
        ...

    def modules(self) -> Iterator[Any]:
        """Every submodule (`nn.Module.modules`): training flags are set and restored on them."""
        ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A plain forward pass."""
        ...

    def __getattr__(self, name: str) -> Any:
        """Submodules and weights (`blocks`, `ln_final`, `W_U`, ...), as on any `nn.Module`, and
        `hook_dict` (hook point name → hook point), which is left out of the members checked at
        run time because the bridge builds it on every access (~0.1 ms for a 2-layer model)."""
        ...


_MEMBERS = ("cfg", "tokenizer", "hooks", "run_with_hooks", "to_tokens", "parameters")


def not_a_model(model: object) -> UnsupportedModelError:
    """The error for an object that is not a `HookedModel`: what came, what works, the fix."""
    cls = type(model)
    came = f"{cls.__module__}.{cls.__name__}"
    missing = [name for name in _MEMBERS if not hasattr(model, name)]
    lacks = f" (it has no {', '.join(missing)})" if missing else ""
    if hasattr(model, "config") and hasattr(model, "parameters") and "cfg" in missing:
        fix = (
            "Fix: this looks like a Hugging Face model; wrap it: "
            "TransformerBridge.boot_transformers(name_or_dir, hf_model=model, tokenizer=tok), "
            "or alti_lens.load_model(name_or_dir)."
        )
    else:
        fix = (
            "Fix: wrap a Hugging Face model with TransformerBridge.boot_transformers(name_or_dir)."
        )
    return UnsupportedModelError(f"expected {SUPPORTED}; got {came}{lacks}. {fix}")
