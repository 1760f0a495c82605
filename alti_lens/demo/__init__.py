"""Two small trained models shipped with alti_lens, and the data they were trained on.

- `demo-induction`: a 2-layer GPT-2 over 318 English words that has learned induction (it
  continues a repeated run of words, 98% held-out); its card describes the circuit it uses.
- `demo-translator`: a 2+2-layer BART that translates a toy language with word reordering, so
  the gold word alignment of every sentence pair is known (`translation_pairs`).

Both are ordinary Hugging Face checkpoint directories (`builtin_path(name)`), loaded offline with
`TransformerBridge.boot_transformers(str(builtin_path("demo-induction")))`. Each has a README.md
model card with its measured accuracies; `scripts/train_demo_models.py` reproduces the weights.
"""

from pathlib import Path

from alti_lens.errors import InputError

from .data import (
    INDUCTION_WORDS,
    LEXICON,
    SOURCE_WORDS,
    TARGET_WORDS,
    TranslationPair,
    induction_sequences,
    repeat_length,
    translation_pairs,
)

_MODELS = Path(__file__).parent / "models"

BUILTIN_MODELS: dict[str, Path] = {
    "demo-induction": _MODELS / "induction",
    "demo-translator": _MODELS / "translator",
}


def builtin_path(name: str) -> Path:
    """The checkpoint directory of a built-in demo model ("demo-induction", "demo-translator")."""
    if name not in BUILTIN_MODELS:
        raise InputError(
            f"no built-in model named {name!r}; the built-in models are "
            f"{', '.join(repr(n) for n in BUILTIN_MODELS)}. Fix: use one of these names, or pass "
            "a Hugging Face model name or local checkpoint directory to boot_transformers."
        )
    return BUILTIN_MODELS[name]


__all__ = [
    "BUILTIN_MODELS",
    "INDUCTION_WORDS",
    "LEXICON",
    "SOURCE_WORDS",
    "TARGET_WORDS",
    "TranslationPair",
    "builtin_path",
    "induction_sequences",
    "repeat_length",
    "translation_pairs",
]
