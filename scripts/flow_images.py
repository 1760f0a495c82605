"""The documentation's pictures of the information-flow views, from the shipped demo-induction
model (a 2-layer GPT-2 that has learned induction): a route drawn with matplotlib
(`FlowGraph.plot`) and a screenshot of the HTML report (`FlowGraph.to_html`) in headless Chromium.

    python scripts/flow_images.py        # writes docs/images/flow_route.png, flow_report.png
"""

import dataclasses
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import alti_lens  # noqa: E402 - after the path set-up above
from alti_lens.demo import builtin_path, induction_sequences  # noqa: E402

IMAGES = ROOT / "docs" / "images"
THRESHOLD = 0.04


def _model():
    from transformer_lens.model_bridge import TransformerBridge

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return TransformerBridge.boot_transformers(str(builtin_path("demo-induction")))


def main() -> None:
    words = induction_sequences(3, 7, max_prefix=4, min_len=5, max_len=7)[2]
    text = " ".join(words[:-1])  # the model should now predict the repeated run's last word
    graph = alti_lens.flow_graph(_model(), text)
    # the checkpoint's name rather than the path it was loaded from on this machine
    graph = dataclasses.replace(graph, metadata={**graph.metadata, "model_name": "demo-induction"})
    IMAGES.mkdir(parents=True, exist_ok=True)
    ax = graph.plot(-1, THRESHOLD)
    ax.figure.savefig(IMAGES / "flow_route.png", dpi=130)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("chromium is not on PATH: no report screenshot")
        return
    with tempfile.TemporaryDirectory() as tmp:
        page = graph.save_html(Path(tmp) / "flow.html", title="Information-flow routes")
        subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={tmp}/profile", f"--screenshot={IMAGES / 'flow_report.png'}",
             "--window-size=1200,940", page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    print(f"wrote {IMAGES / 'flow_route.png'} and {IMAGES / 'flow_report.png'}")


if __name__ == "__main__":
    main()
