"""CircuitsVis's attention-heads widget over contribution matrices (imported when drawn)."""

from typing import Any

from jaxtyping import Float
from torch import Tensor

from alti_lens.errors import MissingDependencyError


def attention_heads(
    tokens: list[str], patterns: Float[Tensor, "head_index query_pos key_pos"], names: list[str]
) -> Any:
    """The widget, one "head" per matrix (`names` label them); needs `pip install circuitsvis`."""
    try:
        from circuitsvis.attention import attention_heads  # pyright: ignore[reportMissingImports]
    except ImportError as err:
        raise MissingDependencyError(
            "show_circuitsvis() needs CircuitsVis: pip install circuitsvis "
            "(or use to_html() / save_html(), which need nothing extra)."
        ) from err
    return attention_heads(attention=patterns, tokens=tokens, attention_head_names=names)
