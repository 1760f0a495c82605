"""The architecture matrix: every architecture key TransformerLens can bridge, as a tiny offline
model in float32 and float64, is exact (with the invariants) or refused with an alti_lens error —
never another exception — exactly as `tests/data/architectures.json` and the support table say."""

import json
from pathlib import Path

import architectures
import pytest

EXPECTED = json.loads(architectures.EXPECTED_FILE.read_text())
KEYS = architectures.all_keys()
# the slowest to build (multimodal wrappers, large default sub-models): `-m "not slow"` skips them
SLOW = {k for k, cells in EXPECTED.items() if cells["float32"].get("seconds", 0) > 3}


@pytest.mark.parametrize("dtype", list(architectures.DTYPES), ids=list(architectures.DTYPES))
@pytest.mark.parametrize(
    "key", [pytest.param(k, marks=[pytest.mark.slow] if k in SLOW else []) for k in KEYS]
)
def test_architecture(key: str, dtype: str) -> None:
    assert key in EXPECTED, (
        f"{key} is a new architecture key of this TransformerLens: run "
        f"`python scripts/supported_models.py {key}` and review its outcome"
    )
    expected = EXPECTED[key][dtype]
    try:
        outcome = architectures.measure(key, architectures.DTYPES[dtype])
    except architectures.NotBuildable as e:
        assert expected["status"] == "not buildable", f"{key} no longer builds here: {e}"
        return
    summary = {k: expected.get(k) for k in outcome.summary()}
    assert outcome.summary() == summary, outcome.note


def test_the_support_table_is_generated_from_the_expectations() -> None:
    doc = Path(__file__).parent.parent / "docs" / "SUPPORTED_MODELS.md"
    assert doc.read_text() == architectures.render_table(EXPECTED), (
        "docs/SUPPORTED_MODELS.md is stale: python scripts/supported_models.py"
    )


def test_the_matrix_covers_every_key() -> None:
    assert set(EXPECTED) == set(KEYS)
    assert all(set(cells) == set(architectures.DTYPES) for cells in EXPECTED.values())
