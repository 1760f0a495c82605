"""The `alti-lens` command line: a quick look at ALTI / ALTI+ without writing code.

    alti-lens explain [--model NAME_OR_DIR] TEXT        decoder-only and encoder models
    alti-lens translate [--model ...] --source TEXT [--target TEXT]     ALTI+
    alti-lens demo [--out DIR]                          both built-in models, one HTML report

Exit codes: 0 success, 2 bad arguments or input, 3 model not available, 4 model not supported
(or its decomposition failed the exactness check), 1 anything else.
"""

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import readout, summary
from ._version import __version__
from .api import alti
from .contributions import MEASURES
from .errors import (
    AltiLensError,
    InputError,
    ModelUnavailableError,
    ReconstructionError,
    UnsupportedModelError,
)
from .logit_api import alti_logit
from .plus import alti_plus
from .results import AltiPlusResult

DEFAULT_DECODER = "demo-induction"
DEFAULT_TRANSLATOR = "demo-translator"
# Words of the demo models' vocabularies (alti_lens.demo.data): a repeated run for the induction
# model (it should predict "window" next), a sentence whose translation reorders words.
DEMO_TEXT = "king river music window paper garden king river music"
DEMO_SOURCE = "the old red cat sees a happy dog"

EXIT_ERROR, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_UNSUPPORTED = 1, 2, 3, 4

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
        try:
            yield
        finally:
            stop.set()
            if ticker is not None:
                ticker.join()
            elapsed = time.perf_counter() - start
            end = "\r" if self.live else ""
            sys.stderr.write(f"{end}{what}: done in {elapsed:.1f} s\n")
            sys.stderr.flush()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alti-lens",
        description="ALTI / ALTI+ token contributions for TransformerLens models.",
        epilog="Built-in models (offline): "
        + ", ".join(sorted(readout.builtin_models()))
        + ". Any model TransformerLens can boot works where it can be downloaded.",
    )
    parser.add_argument("--version", action="version", version=f"alti-lens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dtype", choices=sorted(readout.DTYPES), default=None)
    common.add_argument("--device", default=None, help="e.g. cpu, cuda (default: TL's choice)")
    common.add_argument("-k", "--top", type=int, default=5, help="how many top sources to list")
    common.add_argument("--html", type=Path, help="write an interactive HTML report here")
    common.add_argument("--png", type=Path, help="write a picture (PNG) here")
    common.add_argument("--save", type=Path, help="save the result (safetensors + JSON)")
    common.add_argument(
        "--json", type=str, metavar="PATH", help="write a JSON summary here ('-' = stdout)"
    )
    common.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    common.add_argument("--no-color", action="store_true", help="no ANSI colours")

    ex = sub.add_parser(
        "explain",
        parents=[common],
        help="contributions of each input token (decoder-only and encoder models)",
        description="ALTI contributions of each input token to one position's representation, "
        "and (decoder-only models) ALTI-Logit for the model's next-token prediction.",
    )
    ex.add_argument("text", help="the input text")
    ex.add_argument("--model", default=DEFAULT_DECODER, help="built-in name, directory or hub name")
    ex.add_argument("--position", type=int, default=-1, help="the position to explain (-1: last)")
    ex.add_argument("--layer", type=int, default=-1, help="after which layer (-1: last)")
    ex.add_argument("--measure", choices=MEASURES, default="l1")
    ex.add_argument("--no-logit", action="store_true", help="skip the ALTI-Logit part")

    tr = sub.add_parser(
        "translate",
        parents=[common],
        help="ALTI+ for an encoder-decoder model (source vs target-prefix contributions)",
        description="ALTI+ source and target-prefix contributions of every decoder step; "
        "translates greedily first when no target is given.",
    )
    tr.add_argument("--model", default=DEFAULT_TRANSLATOR, help="built-in name, dir or hub name")
    tr.add_argument("--source", required=True, help="the source text")
    tr.add_argument("--target", help="the target text (default: the model's greedy translation)")
    tr.add_argument("--step", type=int, default=None, help="also list the top sources of a step")
    tr.add_argument("--measure", choices=MEASURES, default="l1")
    tr.add_argument("--max-new-tokens", type=int, default=64)

    demo = sub.add_parser(
        "demo",
        help="run both built-in models and write one HTML report",
        description="Explain a repeated word sequence with the built-in induction model and a "
        "toy translation with the built-in translator; write an HTML report.",
    )
    demo.add_argument("--out", type=Path, default=Path("alti-lens-demo"), help="output folder")
    demo.add_argument("-q", "--quiet", action="store_true")
    demo.add_argument("--no-color", action="store_true")
    return parser


def _load(name: str, args: argparse.Namespace, status: _Status) -> Any:
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


def _outputs(result: Any, args: argparse.Namespace, summary_json: dict[str, Any]) -> None:
    if args.save:
        result.save(args.save)
    if args.html:
        _write_html(args.html, [(str(summary_json.get("model")), result)])
    if args.png:
        _write_png(result, args.png)
    if args.json:
        text = json.dumps(summary_json, indent=2, ensure_ascii=False)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            Path(args.json).write_text(text + "\n", encoding="utf-8")


def _write_html(path: Path, items: list[tuple[str, Any]]) -> None:
    from . import report

    path.parent.mkdir(parents=True, exist_ok=True)
    report.write_report(path, items)


def _check_outputs(args: argparse.Namespace) -> None:
    """Fail before any work when an output cannot be written."""
    if args.top < 1:
        raise InputError(f"--top must be at least 1, got {args.top}.")
    if args.png:
        try:
            import matplotlib  # noqa: F401
        except ImportError as err:
            raise InputError(
                "--png needs matplotlib: pip install matplotlib (or alti-lens[viz])."
            ) from err


def _write_png(result: Any, path: Path) -> None:
    fig = result.plot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def _explain(args: argparse.Namespace, status: _Status) -> int:
    _check_outputs(args)
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
                logit = alti_logit(model, args.text, token_id, position=row)
    if logit is not None and args.measure == "l1":
        result = logit.alti  # alti_logit measured every layer with ALTI already
    else:
        with status.stage("computing ALTI"):
            result = alti(model, args.text, measure=args.measure)
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
    logits = readout.next_token_logits(model, readout.describe(model), tokens, mask)
    probs = logits.softmax(-1)[0]
    token_id = int(probs.argmax())
    token = readout.str_tokens(model, probs.new_tensor([[token_id]]).long())[0][0]
    return token_id, (token, float(probs[token_id]))


def _sources(rows: list[tuple[int, str, float]]) -> list[dict[str, Any]]:
    return [{"position": p, "token": t, "value": round(v, 6)} for p, t, v in rows]


def _translate(args: argparse.Namespace, status: _Status) -> int:
    _check_outputs(args)
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


def _predicted(model: Any, result: AltiPlusResult, t: int) -> list[str]:
    if result.target_labels is None:  # ids given as the target: what each row predicts is unknown
        return ["?"] * t
    labels = result.target_labels[:, :t].clamp_min(0)
    return readout.str_tokens(model, labels)[0]


def _demo(args: argparse.Namespace, status: _Status) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    decoder = _load(DEFAULT_DECODER, args, status)
    with status.stage("ALTI and ALTI-Logit on the induction model"):
        token_id, prediction = _predict(decoder, *readout.tokenize(decoder, [DEMO_TEXT]))
        logit = alti_logit(decoder, DEMO_TEXT, token_id)
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
    path = args.out / "report.html"
    _write_html(path, items)
    sys.stdout.write(f"Report written to {path}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also the console script's entry point)."""
    parser = _parser()
    args = parser.parse_args(argv)
    status = _Status(args.quiet)
    logging.basicConfig(level=logging.WARNING, format="alti-lens: %(message)s")
    commands = {"explain": _explain, "translate": _translate, "demo": _demo}
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


def _fail(err: Exception, code: int) -> int:
    sys.stderr.write(f"alti-lens: error: {err}\n")
    return code


if __name__ == "__main__":  # pragma: no cover - `python -m alti_lens.cli`
    sys.exit(main())
