"""The `alti-lens` command line: a quick look at ALTI / ALTI+ without writing code.

    alti-lens explain [--model NAME_OR_DIR] TEXT        decoder-only and encoder models
    alti-lens translate [--model ...] --source TEXT [--target TEXT]     ALTI+
    alti-lens demo [--out DIR]                          both built-in models, one HTML report
    alti-lens flow [--model ...] TEXT                   the information-flow route of a prediction
    alti-lens corpus --model M --method ... --input FILE --output DIR      a whole corpus

Exit codes: 0 success, 2 bad arguments or input (an output path that cannot be written included),
3 model not available, 4 model not supported (or its decomposition failed the exactness check),
1 anything else.

Arguments are parsed, and every input and output path checked, before anything heavy is imported:
torch, TransformerLens and the model are loaded by the command functions only, so `--help` and
argument errors answer at once.

Modules: `parser` (options, help, examples), `output` (progress lines, output paths and files),
`commands` (explain, translate, demo), `flow` (flow), `corpus` (corpus). The command line
uses the public API only (`alti`, `alti_plus`, `alti_logit`, `flow_graph`, `load_model`,
`alti_lens.models`, `alti_lens.corpus`, the results and errors) and
`alti_lens.render`; an import-linter contract in pyproject.toml keeps it off the private modules.
"""

import logging
import sys
import warnings
from collections.abc import Sequence
from typing import TextIO

from alti_lens.errors import (
    AltiLensError,
    InputError,
    ModelUnavailableError,
    ReconstructionError,
    UnsupportedModelError,
)

from .commands import demo as _demo
from .commands import explain as _explain
from .commands import translate as _translate
from .corpus import corpus as _corpus
from .flow import flow as _flow
from .output import Status as _Status
from .parser import (
    DEFAULT_DECODER,
    DEFAULT_TRANSLATOR,
    DEMO_SOURCE,
    DEMO_TEXT,
    DTYPE_NAMES,
    EXIT_CODES,
    EXIT_ERROR,
    EXIT_UNAVAILABLE,
    EXIT_UNSUPPORTED,
    EXIT_USAGE,
    MEASURES,
)
from .parser import build_parser as _parser

__all__ = [
    "DEFAULT_DECODER",
    "DEFAULT_TRANSLATOR",
    "DEMO_SOURCE",
    "DEMO_TEXT",
    "DTYPE_NAMES",
    "EXIT_CODES",
    "EXIT_ERROR",
    "EXIT_UNAVAILABLE",
    "EXIT_UNSUPPORTED",
    "EXIT_USAGE",
    "MEASURES",
    "main",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (also the console script's entry point)."""
    parser = _parser()
    args = parser.parse_args(argv)
    status = _Status(args.quiet)
    logging.basicConfig(level=logging.WARNING, format="alti-lens: %(message)s")
    # looked up here at each call, so a test may replace one (`alti_lens.cli._explain = ...`)
    commands = {
        "explain": _explain,
        "translate": _translate,
        "demo": _demo,
        "flow": _flow,
        "corpus": _corpus,
    }
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
