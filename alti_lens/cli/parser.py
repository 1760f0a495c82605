"""The `alti-lens` argument parser: commands, options, their help and examples (torch-free)."""

import argparse
import textwrap
from pathlib import Path

from alti_lens._types import MEASURES, VECTOR_MEASURES
from alti_lens._version import __version__
from alti_lens.demo import BUILTIN_MODELS

DEFAULT_DECODER = "demo-induction"
DEFAULT_TRANSLATOR = "demo-translator"
# Words of the demo models' vocabularies (alti_lens.demo.data): a repeated run for the induction
# model (it should predict "window" next), a sentence whose translation reorders words.
DEMO_TEXT = "king river music window paper garden king river music"
DEMO_SOURCE = "the old red cat sees a happy dog"

# A torch-free copy for the parser (a test asserts it equals readout.DTYPES, which needs torch).
DTYPE_NAMES: tuple[str, ...] = ("bfloat16", "float16", "float32", "float64")

# file names suggested when an output option names a directory
EXAMPLE_NAMES = {
    "--html": "report.html",
    "--png": "rollout.png",
    "--save": "result.safetensors",
    "--json": "summary.json",
}

EXIT_ERROR, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_UNSUPPORTED = 1, 2, 3, 4

EXIT_CODES = """\
exit codes:
  0  success
  2  bad arguments or input (an output path that cannot be written included)
  3  model not available (not built in, no such directory, not downloadable from here)
  4  model not supported, or its decomposition failed the exactness check
  1  any other error"""


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Epilogs kept as written; "(default: ...)" added to every option that has a real default
    (not to flags, nor where the help already says what the default means)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def _split_lines(self, text: str, width: int) -> list[str]:
        # never break names like alti-lens-demo or --max-new-tokens at their hyphens
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            "%(default)" in text
            or "default:" in text
            or not action.option_strings
            or action.default in (None, False, argparse.SUPPRESS)
        ):
            return text
        return f"{text} (default: %(default)s)"


def _epilog(examples: str) -> str:
    return f"examples:\n{examples}\n\n{EXIT_CODES}"


FLOW_MEASURES = VECTOR_MEASURES  # the flow graph measures vectors: no attention-only measures

TOP_EXAMPLES = f"""\
  alti-lens demo                       both built-in models; report in alti-lens-demo/report.html
  alti-lens explain "king river music window king river"
  alti-lens explain --model gpt2 "The cat sat on the mat" --html cat.html
  alti-lens translate --source "{DEMO_SOURCE}"
  alti-lens explain "king river music king" --json - | python -m json.tool
  alti-lens flow "king river music window king river music" --html flow.html

Built-in models (offline): {", ".join(sorted(BUILTIN_MODELS))}. Any model TransformerLens can boot
works where it can be downloaded, and so does a local Hugging Face checkpoint directory."""

EXPLAIN_EXAMPLES = """\
  alti-lens explain "king river music window king river"
  alti-lens explain --model gpt2 "The cat sat on the mat" --position -2 --top 3
  alti-lens explain --model ./my-checkpoint "some text" --html report.html --png rollout.png
  alti-lens explain --model gpt2 "some text" --measure norm --no-logit --json -"""

TRANSLATE_EXAMPLES = f"""\
  alti-lens translate --source "{DEMO_SOURCE}"
  alti-lens translate --source "the cat sat" --target "le chat est" --step 1
  alti-lens translate --model ./my-bart --source "some text" --html plus.html \
      --save plus.safetensors"""

FLOW_EXAMPLES = """\
  alti-lens flow "king river music window king river music"
  alti-lens flow --model gpt2 "When Mary and John went to the store, John gave a drink to" \
      --threshold 0.05 --html ioi.html
  alti-lens flow "king river music king river" --position -2 --neurons --json -"""

CORPUS_EXAMPLES = """\
  alti-lens corpus --model demo-translator --method alti_plus --input pairs.jsonl --output scores/
  alti-lens corpus --model gpt2 --method alti --input prompts.csv --output out/ --batch-size 16
  alti-lens corpus --model gpt2 --method flow --input data/ --output routes/ --skip-bad -q
  alti-lens corpus --model gpt2 --method alti --input big.parquet --output out/ --engine ray \
      --workers 4 --ray-address auto

Input: JSONL, CSV, Parquet, or a `datasets` dataset saved to disk (a directory). Output: Parquet
shards (one row per example) in the output folder with manifest.json; read them with
alti_lens.corpus.read_table(DIR). Rerunning on the same folder resumes (ids already written are
skipped)."""

CORPUS_METHODS = ("alti", "alti_plus", "alti_logit", "flow")

DEMO_EXAMPLES = """\
  alti-lens demo
  alti-lens demo --out /tmp/alti-demo --no-color"""


def build_parser() -> argparse.ArgumentParser:
    """The `alti-lens` parser: its commands, options, defaults, examples and exit codes."""
    parser = argparse.ArgumentParser(
        prog="alti-lens",
        description="ALTI / ALTI+ token contributions for TransformerLens models.",
        epilog=_epilog(TOP_EXAMPLES),
        formatter_class=Formatter,
    )
    parser.add_argument("--version", action="version", version=f"alti-lens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dtype",
        choices=DTYPE_NAMES,
        default="float32",
        help="floating-point type to load the model in",
    )
    common.add_argument(
        "--device",
        default=None,
        help="where to run, e.g. cpu, cuda (default: TransformerLens' choice)",
    )
    common.add_argument(
        "-k", "--top", type=int, default=5, metavar="N", help="how many top sources to list"
    )
    common.add_argument(
        "--html", type=Path, metavar="PATH", help="write an interactive HTML report to this file"
    )
    common.add_argument(
        "--png", type=Path, metavar="PATH", help="write a picture (PNG) to this file"
    )
    common.add_argument(
        "--save",
        type=Path,
        metavar="PATH",
        help="save the full result to this .safetensors file (reload with AltiResult.load)",
    )
    common.add_argument(
        "--json",
        type=str,
        metavar="PATH",
        help="write a JSON summary to this file ('-': to stdout, instead of the text summary)",
    )
    common.add_argument(
        "--check-bridge",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="once, compare the TransformerLens bridge's logits with those of the Hugging Face "
        "model it wraps and warn when they differ (then ALTI is exact for the bridge's model, "
        "not Hugging Face's)",
    )
    quiet_help = "no progress lines on stderr (warnings and errors are still printed)"
    colour_help = "no ANSI colours (also: NO_COLOR=1; default: colour on a colour terminal)"
    common.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    common.add_argument("--no-color", action="store_true", help=colour_help)
    measure_help = (
        "contribution measure: l1 is ALTI; l2, norm (Kobayashi), attention, attention_rollout"
    )

    ex = sub.add_parser(
        "explain",
        parents=[common],
        help="contributions of each input token (decoder-only and encoder models)",
        description="ALTI contributions of each input token to one position's representation,\n"
        "and (decoder-only models) ALTI-Logit for the model's next-token prediction.",
        epilog=_epilog(EXPLAIN_EXAMPLES),
        formatter_class=Formatter,
    )
    ex.add_argument("text", metavar="TEXT", help="the input text")
    ex.add_argument(
        "--model",
        default=DEFAULT_DECODER,
        metavar="NAME_OR_DIR",
        help="built-in name, checkpoint directory or hub name",
    )
    ex.add_argument(
        "--position",
        type=int,
        default=-1,
        help="the position to explain; negative counts from the end",
    )
    ex.add_argument(
        "--layer", type=int, default=-1, help="after which layer; negative counts from the end"
    )
    ex.add_argument("--measure", choices=MEASURES, default="l1", help=measure_help)
    ex.add_argument(
        "--no-logit", action="store_true", help="skip ALTI-Logit (the next-token prediction part)"
    )

    tr = sub.add_parser(
        "translate",
        parents=[common],
        help="ALTI+ for an encoder-decoder model (source vs target-prefix contributions)",
        description="ALTI+ source and target-prefix contributions of every decoder step;\n"
        "translates greedily first when no target is given.",
        epilog=_epilog(TRANSLATE_EXAMPLES),
        formatter_class=Formatter,
    )
    tr.add_argument(
        "--model",
        default=DEFAULT_TRANSLATOR,
        metavar="NAME_OR_DIR",
        help="built-in name, checkpoint directory or hub name",
    )
    tr.add_argument("--source", required=True, help="the source sentence to translate")
    tr.add_argument(
        "--target", help="the target sentence (default: the model's greedy translation)"
    )
    tr.add_argument(
        "--step", type=int, default=None, help="also list the top sources of this decoder step"
    )
    tr.add_argument("--measure", choices=MEASURES, default="l1", help=measure_help)
    tr.add_argument(
        "--max-new-tokens",
        type=int,
        default=64,
        help="longest greedy translation, in tokens (when no --target is given)",
    )

    fl = sub.add_parser(
        "flow",
        parents=[common],
        help="the information-flow route of a prediction (heads, MLPs; decoder-only and encoder "
        "models)",
        description="The information-flow graph (Ferrando & Voita 2024) of one text, and the\n"
        "route that carried one position's representation after the last layer: its edges\n"
        "(attention heads per source token, residuals, MLPs) of weight >= --threshold.",
        epilog=_epilog(FLOW_EXAMPLES),
        formatter_class=Formatter,
    )
    fl.add_argument("text", metavar="TEXT", help="the input text")
    fl.add_argument(
        "--model",
        default=DEFAULT_DECODER,
        metavar="NAME_OR_DIR",
        help="built-in name, checkpoint directory or hub name",
    )
    fl.add_argument(
        "--position", type=int, default=-1, help="the route's sink; negative counts from the end"
    )
    fl.add_argument(
        "--threshold", type=float, default=0.04, help="keep edges of at least this weight"
    )
    fl.add_argument(
        "--measure", choices=FLOW_MEASURES, default="l1", help="l1 is ALTI's (the paper's)"
    )
    fl.add_argument("--neurons", action="store_true", help="also split each MLP over its neurons")

    _corpus_parser(sub, quiet_help, colour_help)

    demo = sub.add_parser(
        "demo",
        help="run both built-in models and write one HTML report",
        description="Explain a repeated word sequence with the built-in induction model and a\n"
        "toy translation with the built-in translator; write one HTML report.",
        epilog=_epilog(DEMO_EXAMPLES),
        formatter_class=Formatter,
    )
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("alti-lens-demo"),
        metavar="DIR",
        help="folder for report.html (created if missing)",
    )
    demo.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    demo.add_argument("--no-color", action="store_true", help=colour_help)
    return parser


def _corpus_parser(sub: argparse._SubParsersAction, quiet_help: str, colour_help: str) -> None:
    """`alti-lens corpus`: its own options (its --save is a choice, not a file)."""
    co = sub.add_parser(
        "corpus",
        help="ALTI over a corpus file into a Parquet dataset (resumable; local or Ray)",
        description="One row per input record (id, tokens, the method's columns, reconstruction\n"
        "error) written as Parquet shards with a manifest; bad records are reported with their\n"
        "line numbers before any model work.",
        epilog=_epilog(CORPUS_EXAMPLES),
        formatter_class=Formatter,
    )
    co.add_argument(
        "--model", required=True, metavar="NAME_OR_DIR",
        help="built-in name, checkpoint directory or hub name",
    )  # fmt: skip
    co.add_argument("--method", required=True, choices=CORPUS_METHODS, help="what each row holds")
    co.add_argument(
        "--input", required=True, type=Path, metavar="FILE",
        help="JSONL, CSV or Parquet file, or a `datasets` dataset saved to disk",
    )  # fmt: skip
    co.add_argument(
        "--output", required=True, type=Path, metavar="DIR",
        help="folder for the Parquet shards and manifest.json (created if missing)",
    )  # fmt: skip
    co.add_argument("--engine", choices=("local", "ray"), default="local", help="where to run")
    co.add_argument("--workers", type=int, default=1, help="model-holding Ray workers")
    co.add_argument("--batch-size", type=int, default=8, help="records per model call")
    co.add_argument("--text-field", default="text", help="the column holding the text")
    co.add_argument("--source-field", default="source", help="the source column (alti_plus)")
    co.add_argument(
        "--target-field", default="target",
        help="the target column (alti_plus: optional; alti_logit: the one token explained)",
    )  # fmt: skip
    co.add_argument(
        "--id-field", default="id", help="the id column (missing: the line or row number)"
    )
    co.add_argument(
        "--save", choices=("summary", "full"), default="summary",
        help="full: also the matrices, in safetensors shards next to the Parquet shards",
    )  # fmt: skip
    co.add_argument(
        "--skip-bad", action="store_true",
        help="leave bad records out (listed in DIR/rejects.jsonl) instead of stopping",
    )  # fmt: skip
    co.add_argument("--measure", choices=MEASURES, default="l1", help="l1 is ALTI")
    co.add_argument("--threshold", type=float, default=0.04, help="flow: the route's edge weight")
    co.add_argument("--shard-size", type=int, default=256, help="rows per Parquet shard (local)")
    co.add_argument(
        "--ray-address", default=None,
        help="the Ray cluster to join (default: RAY_ADDRESS, else a local one)",
    )  # fmt: skip
    co.add_argument(
        "--num-gpus", type=float, default=None,
        help="GPUs per Ray worker (default: one each where GPUs exist)",
    )  # fmt: skip
    co.add_argument(
        "--dtype", choices=DTYPE_NAMES, default="float32", help="floating-point type of the model"
    )
    co.add_argument("--device", default=None, help="where to run (default: TransformerLens')")
    co.add_argument("-q", "--quiet", action="store_true", help=quiet_help)
    co.add_argument("--no-color", action="store_true", help=colour_help)
