"""The `alti-lens` command line: a quick look at ALTI / ALTI+ without writing code.

    alti-lens explain [--model NAME_OR_DIR] TEXT        decoder-only and encoder models
    alti-lens translate [--model ...] --source TEXT [--target TEXT]     ALTI+
    alti-lens demo [--out DIR]                          both built-in models, one HTML report

Exit codes: 0 success, 2 bad arguments or input (an output path that cannot be written included),
3 model not available, 4 model not supported (or its decomposition failed the exactness check),
1 anything else.

Arguments are parsed, and every input and output path checked, before anything heavy is imported:
torch, TransformerLens and the model are loaded by the command functions only, so `--help` and
argument errors answer at once.
"""

import argparse
import json
import logging
import os
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ._types import MEASURES
from ._version import __version__
from .demo import BUILTIN_MODELS
from .errors import (
    AltiLensError,
    InputError,
    ModelUnavailableError,
    ReconstructionError,
    UnsupportedModelError,
)

if TYPE_CHECKING:
    from .results import AltiPlusResult

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

log = logging.getLogger("alti_lens.cli")


class _Status:
    """Progress on stderr: a line per stage with its duration; on a terminal, a live timer."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live = not quiet and sys.stderr.isatty()

    @contextmanager
    def stage(self, what: str) -> Iterator[None]:
        if self.quiet:
            yield
            return
        start = time.perf_counter()
        stop = threading.Event()
        ticker = None
        if self.live:

            def tick() -> None:
                while not stop.wait(0.25):
                    elapsed = time.perf_counter() - start
                    sys.stderr.write(f"\r{what} … {elapsed:5.1f} s")
                    sys.stderr.flush()

            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
        else:
            sys.stderr.write(f"{what} …\n")
        outcome = "failed after"
        try:
            yield
            outcome = "done in"
        except KeyboardInterrupt:
            outcome = "interrupted after"
            raise
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
            elapsed = time.perf_counter() - start
            end = "\r" if self.live else ""
            sys.stderr.write(f"{end}{what}: {outcome} {elapsed:.1f} s\n")
            sys.stderr.flush()


class _Formatter(argparse.RawDescriptionHelpFormatter):
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


TOP_EXAMPLES = f"""\
  alti-lens demo                       both built-in models; report in alti-lens-demo/report.html
  alti-lens explain "king river music window king river"
  alti-lens explain --model gpt2 "The cat sat on the mat" --html cat.html
  alti-lens translate --source "{DEMO_SOURCE}"
  alti-lens explain "king river music king" --json - | python -m json.tool

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

DEMO_EXAMPLES = """\
  alti-lens demo
  alti-lens demo --out /tmp/alti-demo --no-color"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alti-lens",
        description="ALTI / ALTI+ token contributions for TransformerLens models.",
        epilog=_epilog(TOP_EXAMPLES),
        formatter_class=_Formatter,
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
        formatter_class=_Formatter,
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
        formatter_class=_Formatter,
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

    demo = sub.add_parser(
        "demo",
        help="run both built-in models and write one HTML report",
        description="Explain a repeated word sequence with the built-in induction model and a\n"
        "toy translation with the built-in translator; write one HTML report.",
        epilog=_epilog(DEMO_EXAMPLES),
        formatter_class=_Formatter,
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


def _load(name: str, args: argparse.Namespace, status: _Status) -> Any:
    from . import readout

    with status.stage(f"loading model {name}"):
        return readout.load_model(
            name,
            device=getattr(args, "device", None),  # `demo` has neither option
            dtype=getattr(args, "dtype", None),
            progress=not args.quiet,
        )


def _colour(args: argparse.Namespace) -> bool | None:
    """False with --no-color; else None: colour when stdout is a colour terminal (NO_COLOR and
    FORCE_COLOR are honoured)."""
    return False if args.no_color else None


@contextmanager
def _writing(flag: str, path: Path | str) -> Iterator[None]:
    """An OSError while writing an output (it was checked before the work, so something changed
    since) is a clean usage error, not a traceback."""
    try:
        yield
    except OSError as err:
        if isinstance(err, AltiLensError):
            raise
        why = err.strerror or str(err)
        raise InputError(
            f"{flag} {path}: could not write it ({why}); choose a path in a folder you can write "
            "to and run again."
        ) from err


def _outputs(result: Any, args: argparse.Namespace, summary_json: dict[str, Any]) -> None:
    if args.save:
        with _writing("--save", args.save):
            result.save(args.save)
    if args.html:
        _write_html("--html", args.html, [(str(summary_json.get("model")), result)])
    if args.png:
        _write_png(result, args.png)
    if args.json:
        text = json.dumps(summary_json, indent=2, ensure_ascii=False)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            with _writing("--json", args.json):
                path = Path(args.json)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text + "\n", encoding="utf-8")


def _write_html(flag: str, path: Path, items: list[tuple[str, Any]]) -> None:
    from . import report

    with _writing(flag, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        report.write_report(path, items)


def _write_png(result: Any, path: Path) -> None:
    fig = result.plot()
    with _writing("--png", path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")


def _unwritable(path: Path, *, folder: bool = False, example: str = "output") -> str | None:
    """What is wrong with writing a file (or creating a folder) at `path`, with the fix; None when
    it can be written. Missing parent folders are fine (they are created) as long as the nearest
    existing one is a folder this process can create files in."""
    if path.is_dir():
        if not folder:
            return f"is a directory; give a file path, e.g. {path / example}"
        return _cannot_create_in(path)
    if path.exists():
        if folder:
            return "is a file, not a folder; give a folder path (it is created if missing)"
        if not os.access(path, os.W_OK):
            return (
                "the file exists and is not writable; choose another path or change its permissions"
            )
        if path.is_file():  # a regular file: can it really be opened for writing?
            try:
                with open(path, "ab"):
                    pass
            except OSError as err:
                return f"cannot write to it ({err.strerror or err}); choose another path"
        return None
    ancestor = path.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return f"{ancestor} is a file, not a folder; choose a path inside a folder"
    return _cannot_create_in(ancestor)


def _cannot_create_in(folder: Path) -> str | None:
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return (
            f"cannot create files in {folder} ({err.strerror or err}); choose a path in a folder "
            "you can write to"
        )
    return None


def _check_path(flag: str, path: Path | str | None, *, folder: bool = False) -> None:
    if path is None or (flag == "--json" and str(path) == "-"):
        return
    problem = _unwritable(Path(path), folder=folder, example=EXAMPLE_NAMES.get(flag, "output"))
    if problem:
        raise InputError(f"{flag} {path}: {problem}.")


def _check_text(value: str | None, what: str, expected: str) -> None:
    if value is not None and not value.strip():
        raise InputError(f"{what} is empty; expected {expected}.")


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before any work when an option is invalid or an output cannot be written."""
    if args.top < 1:
        raise InputError(f"--top must be at least 1, got {args.top}.")
    for flag in ("--html", "--png", "--save", "--json"):
        _check_path(flag, getattr(args, flag[2:]))
    if args.png:
        try:
            import matplotlib  # noqa: F401
        except ImportError as err:
            raise InputError(
                "--png needs matplotlib: pip install matplotlib (or alti-lens[viz])."
            ) from err


def _explain(args: argparse.Namespace, status: _Status) -> int:
    _check_text(args.text, "TEXT", 'the text to explain, e.g. alti-lens explain "the cat sat"')
    _check_outputs(args)
    from . import readout, summary
    from .api import alti
    from .logit_api import alti_logit

    model = _load(args.model, args, status)
    if readout.is_encoder_decoder(model):
        raise InputError(
            f"{args.model} is an encoder-decoder model; `explain` takes decoder-only and encoder "
            "models. Fix: alti-lens translate --model ... --source TEXT"
        )
    tokens, mask = readout.tokenize(model, [args.text])
    n, n_layers = int(mask[0].sum()), readout.describe(model).n_layers
    if not -n <= args.position < n:
        raise InputError(f"--position {args.position} is outside the {n} tokens of the text.")
    if not -n_layers <= args.layer < n_layers:
        raise InputError(f"--layer {args.layer} is outside the model's {n_layers} layers.")
    row = args.position % n
    prediction = logit = None
    if readout.is_causal_lm(model):
        token_id, prediction = _predict(model, tokens[:, : row + 1], mask[:, : row + 1])
        if not args.no_logit:
            with status.stage("computing ALTI-Logit"):
                # the tokens read above: text is tokenized (and unknown words warned of) once
                logit = alti_logit(model, tokens, token_id, attention_mask=mask, position=row)
    if logit is not None and args.measure == "l1":
        result = logit.alti  # alti_logit measured every layer with ALTI already
    else:
        with status.stage("computing ALTI"):
            result = alti(model, tokens, attention_mask=mask, measure=args.measure)
    text = summary.explain_summary(
        result,
        model=args.model,
        position=row,
        layer=args.layer,
        k=args.top,
        colour=_colour(args),
        prediction=prediction,
        logit=logit,
    )
    data: dict[str, Any] = {
        "model": args.model,
        "tokens": result.str_tokens[0][:n],
        "position": row,
        "layer": args.layer % result.n_layers,
        "measure": args.measure,
        "rollout_row": [round(v, 6) for v in result.rollout[0, args.layer, row, :n].tolist()],
        "top_sources": _sources(result.top_sources(row, args.top, layer=args.layer)),
        "max_reconstruction_error": float(result.reconstruction_error.max()),
    }
    if prediction is not None:
        data["prediction"] = {"token": prediction[0], "probability": prediction[1]}
    if logit is not None:
        data["alti_logit"] = {
            "logit": float(logit.logit[0]),
            "scores": [round(v, 6) for v in logit.scores[0, :n].tolist()],
            "components": {k: float(v[0]) for k, v in logit.components.items()},
        }
    if args.json != "-":
        sys.stdout.write(text + "\n")
    _outputs(result, args, data)
    return 0


def _predict(model: Any, tokens: Any, mask: Any) -> tuple[int, tuple[str, float]]:
    """The model's own next token after the last position: (id, (string, probability))."""
    from . import readout

    logits = readout.next_token_logits(model, readout.describe(model), tokens, mask)
    probs = logits.softmax(-1)[0]
    token_id = int(probs.argmax())
    token = readout.str_tokens(model, probs.new_tensor([[token_id]]).long())[0][0]
    return token_id, (token, float(probs[token_id]))


def _sources(rows: list[tuple[int, str, float]]) -> list[dict[str, Any]]:
    return [{"position": p, "token": t, "value": round(v, 6)} for p, t, v in rows]


def _translate(args: argparse.Namespace, status: _Status) -> int:
    _check_text(args.source, "--source", "the source sentence to translate")
    _check_text(
        args.target,
        "--target",
        "the target sentence (leave --target out to use the model's greedy translation)",
    )
    _check_outputs(args)
    from . import readout, summary
    from .plus import alti_plus

    model = _load(args.model, args, status)
    if not readout.is_encoder_decoder(model):
        raise InputError(
            f"{args.model} is not an encoder-decoder model; `translate` runs ALTI+ on "
            "encoder-decoder models. Fix: alti-lens explain --model ... TEXT"
        )
    what = "computing ALTI+" if args.target else "translating, then computing ALTI+"
    with status.stage(what):
        result = alti_plus(
            model,
            args.source,
            args.target,
            measure=args.measure,
            max_new_tokens=args.max_new_tokens,
        )
    t = int(result.target_attention_mask[0].sum())
    if args.step is not None and not -t <= args.step < t:
        raise InputError(f"--step {args.step} is outside the {t} decoder steps.")
    predicted = _predicted(model, result, t)
    text = summary.translate_summary(
        result, model=args.model, predicted=predicted, step=args.step, k=args.top
    )
    s = int(result.source_attention_mask[0].sum())
    data: dict[str, Any] = {
        "model": args.model,
        "source_tokens": result.source_str_tokens[0][:s],
        "decoder_input": result.target_str_tokens[0][:t],
        "predicted": predicted,
        "measure": args.measure,
        "source_contribution": [round(v, 6) for v in result.source_contribution[0, :t].tolist()],
        "max_reconstruction_error": float(result.reconstruction_error.max()),
    }
    if args.step is not None:
        data["top_sources"] = _sources(result.top_sources(args.step, args.top))
    if args.json != "-":
        sys.stdout.write(text + "\n")
    _outputs(result, args, data)
    return 0


def _predicted(model: Any, result: "AltiPlusResult", t: int) -> list[str]:
    from . import readout

    if result.target_labels is None:  # ids given as the target: what each row predicts is unknown
        return ["?"] * t
    labels = result.target_labels[:, :t].clamp_min(0)
    return readout.str_tokens(model, labels)[0]


def _demo(args: argparse.Namespace, status: _Status) -> int:
    _check_path("--out", args.out, folder=True)
    path = args.out / "report.html"
    if args.out.is_dir():
        _check_path("--out", path)
    from . import readout, summary
    from .logit_api import alti_logit
    from .plus import alti_plus

    decoder = _load(DEFAULT_DECODER, args, status)
    with status.stage("ALTI and ALTI-Logit on the induction model"):
        tokens, mask = readout.tokenize(decoder, [DEMO_TEXT])
        token_id, prediction = _predict(decoder, tokens, mask)
        logit = alti_logit(decoder, tokens, token_id, attention_mask=mask)
        result = logit.alti  # every layer's ALTI, measured by the same run
    translator = _load(DEFAULT_TRANSLATOR, args, status)
    with status.stage("ALTI+ on the toy translator"):
        plus = alti_plus(translator, DEMO_SOURCE, None)
    items = [
        (f"ALTI · {DEFAULT_DECODER}: induction on a repeated word sequence", result),
        (f"ALTI-Logit · {DEFAULT_DECODER}: the next-token prediction", logit),
        (f"ALTI+ · {DEFAULT_TRANSLATOR}: a toy translation with reordering", plus),
    ]
    n = int(result.attention_mask[0].sum())
    colour = _colour(args)
    sys.stdout.write(
        summary.explain_summary(
            result,
            model=DEFAULT_DECODER,
            position=n - 1,
            layer=-1,
            k=5,
            colour=colour,
            prediction=prediction,
            logit=logit,
        )
        + "\n\n"
    )
    t = int(plus.target_attention_mask[0].sum())
    sys.stdout.write(
        summary.translate_summary(
            plus,
            model=DEFAULT_TRANSLATOR,
            predicted=_predicted(translator, plus, t),
            step=None,
            k=5,
        )
        + "\n\n"
    )
    _write_html("--out", path, items)
    sys.stdout.write(f"Report written to {path}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also the console script's entry point)."""
    parser = _parser()
    args = parser.parse_args(argv)
    status = _Status(args.quiet)
    logging.basicConfig(level=logging.WARNING, format="alti-lens: %(message)s")
    commands = {"explain": _explain, "translate": _translate, "demo": _demo}
    with warnings.catch_warnings():  # restores the caller's warning display on return
        warnings.showwarning = _show_warning
        try:
            return commands[args.command](args, status)
        except ModelUnavailableError as err:
            return _fail(err, EXIT_UNAVAILABLE)
        except (UnsupportedModelError, ReconstructionError) as err:
            return _fail(err, EXIT_UNSUPPORTED)
        except InputError as err:
            return _fail(err, EXIT_USAGE)
        except AltiLensError as err:
            return _fail(err, EXIT_ERROR)
        except KeyboardInterrupt:
            sys.stderr.write("alti-lens: interrupted\n")
            return 130


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """A Python warning as one `alti-lens: warning: MESSAGE` line (not `file:line: Category:`)."""
    text = " ".join(str(message).split())
    (file or sys.stderr).write(f"alti-lens: warning: {text}\n")


def _fail(err: Exception, code: int) -> int:
    sys.stderr.write(f"alti-lens: error: {err}\n")
    return code


if __name__ == "__main__":  # pragma: no cover - `python -m alti_lens.cli`
    sys.exit(main())
