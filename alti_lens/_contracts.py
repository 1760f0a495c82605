"""Public functions that validate their own arguments, and what that means for type checkers.

The entry points (`alti`, `alti_plus`, `alti_logit`) are contracts in two layers: the public
function validates what the user passed (`alti_lens.inputs`), with errors that say what was
expected, what came and the fix; it then calls an inner function decorated
`@jaxtyped(typechecker=beartype)`, whose signature carries the shapes (`Int[Tensor, "batch pos"]`,
...), so that a shape mismatch that slips past validation is a shape error, for users too.

Torch-free: the pure modules (`evaluation.metrics`) use it too.
"""

from collections.abc import Callable
from typing import TypeVar

_F = TypeVar("_F", bound=Callable[..., object])


def validates_arguments(fn: _F) -> _F:
    """Mark a public function that validates its own arguments with friendly errors.

    A runtime type checker's wrapper around it (jaxtyping's import hook, which the test suite
    installs on the package, puts one under every decorator) is told to pass it by, by the
    `__no_type_check__` flag that jaxtyping, typeguard and beartype honour; otherwise the
    checker would pre-empt the friendly messages with generic ones. The plain function (what
    users get without an import hook) is left as it is: `typing.get_type_hints` and static
    checkers see its annotations (unlike with `typing.no_type_check`, which pyright reads as
    "unannotated"). Shapes are checked by the inner function it calls after validation.
    """
    inner = getattr(fn, "__wrapped__", None)
    if inner is not None:  # a checker's wrapper, and the function it checks
        vars(fn)["__no_type_check__"] = True
        vars(inner)["__no_type_check__"] = True
    return fn
