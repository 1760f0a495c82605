"""The README's Python examples run as written, in order, on the built-in models (offline)."""

import re
import warnings
from pathlib import Path

import pytest

from alti_lens import UnknownTokenWarning
from alti_lens.demo import builtin_path

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
# Hub names an example may use, and the built-in checkpoints that stand in for them offline.
HUB_STAND_INS = {"gpt2": "demo-induction", "Helsinki-NLP/opus-mt-en-de": "demo-translator"}


def test_the_examples_are_found() -> None:
    assert len(BLOCKS) >= 4
    calls = ("load_model(", "alti(", "flow_graph(", "corpus.run(")
    assert all(any(call in b for call in calls) for b in BLOCKS)


def test_the_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    pytest.importorskip("pandas")
    from transformer_lens.model_bridge import TransformerBridge

    boot = TransformerBridge.boot_transformers

    def offline_boot(name: str, *args: object, **kwargs: object) -> object:
        local = HUB_STAND_INS.get(name)
        return boot(str(builtin_path(local)) if local else name, *args, **kwargs)

    monkeypatch.setattr(TransformerBridge, "boot_transformers", offline_boot)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    with warnings.catch_warnings():
        # an example whose words the built-in models cannot read would explain "<unk>"
        warnings.simplefilter("error", UnknownTokenWarning)
        for i, block in enumerate(BLOCKS):
            try:
                exec(compile(block, f"README.md python block {i}", "exec"), namespace)
            except Exception as err:  # say which block failed
                raise AssertionError(f"README python block {i} failed:\n{block}") from err
    assert (tmp_path / "run.safetensors").exists()
