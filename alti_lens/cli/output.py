"""What the command line writes besides its summary: progress on stderr, and the output files
(`--html`, `--png`, `--save`, `--json`), each path checked before any work is done."""

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alti_lens.errors import AltiLensError, InputError

from .parser import EXAMPLE_NAMES


class Status:
    """Progress on stderr: a line per stage with its duration; on a terminal, a live timer."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live = not quiet and sys.stderr.isatty()

    @contextmanager
    def stage(self, what: str) -> Iterator[None]:
        """Say `what` is running (with a live timer on a TTY), and how long it took or that it
        failed."""
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


def colour_choice(args: argparse.Namespace) -> bool | None:
    """False with --no-color; else None: colour when stdout is a colour terminal (NO_COLOR and
    FORCE_COLOR are honoured)."""
    return False if args.no_color else None


@contextmanager
def writing(flag: str, path: Path | str) -> Iterator[None]:
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


def write_outputs(
    result: Any,
    args: argparse.Namespace,
    summary_json: dict[str, Any],
    view: dict[str, Any] | None = None,
) -> None:
    """Write every output the command line asked for: --save, --html, --png and --json. `view`:
    what the picture and the report show first (a `FlowGraph`'s `position` and `threshold`)."""
    view = view or {}
    if args.save:
        with writing("--save", args.save):
            result.save(args.save)
    if args.html:
        write_html("--html", args.html, [(str(summary_json.get("model")), result)], **view)
    if args.png:
        write_png(result, args.png, **view)
    if args.json:
        text = json.dumps(summary_json, indent=2, ensure_ascii=False)
        if args.json == "-":
            sys.stdout.write(text + "\n")
        else:
            with writing("--json", args.json):
                path = Path(args.json)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text + "\n", encoding="utf-8")


def write_html(flag: str, path: Path, items: list[tuple[str, Any]], **options: Any) -> None:
    """Write the interactive report of `items` (title, result) to `path` (`flag` names it in
    errors); `options` as `build_report`'s."""
    from alti_lens.render import report

    with writing(flag, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        report.write_report(path, items, **options)


def write_png(result: Any, path: Path, **options: Any) -> None:
    """Write the result's default picture (`result.plot(**options)`) to `path`."""
    fig = result.plot(**options)
    fig = getattr(fig, "figure", fig)  # FlowGraph.plot returns the axes it drew on
    with writing("--png", path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120, bbox_inches="tight")


def unwritable(path: Path, *, folder: bool = False, example: str = "output") -> str | None:
    """What is wrong with writing a file (or creating a folder) at `path`, with the fix; None when
    it can be written. Missing parent folders are fine (they are created) as long as the nearest
    existing one is a folder this process can create files in."""
    if path.is_dir():
        if not folder:
            return f"is a directory; give a file path, e.g. {path / example}"
        return cannot_create_in(path)
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
    return cannot_create_in(ancestor)


def cannot_create_in(folder: Path) -> str | None:
    """Why no file can be created in `folder`, or None where one can."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return (
            f"cannot create files in {folder} ({err.strerror or err}); choose a path in a folder "
            "you can write to"
        )
    return None


def check_path(flag: str, path: Path | str | None, *, folder: bool = False) -> None:
    """Raise `InputError` (exit 2) before any work when `path` cannot be written."""
    if path is None or (flag == "--json" and str(path) == "-"):
        return
    problem = unwritable(Path(path), folder=folder, example=EXAMPLE_NAMES.get(flag, "output"))
    if problem:
        raise InputError(f"{flag} {path}: {problem}.")


def check_text(value: str | None, what: str, expected: str) -> None:
    """Raise `InputError` when a text argument is given but empty."""
    if value is not None and not value.strip():
        raise InputError(f"{what} is empty; expected {expected}.")


def check_position(position: int, n: int) -> int:
    """`--position` as an index into the text's `n` tokens, or an `InputError` with the range."""
    if not -n <= position < n:
        raise InputError(
            f"--position {position} is outside the {n} tokens of the text; expected "
            f"{-n}..{n - 1} (negative counts from the end). Fix: pass a position in that range."
        )
    return position % n


def check_outputs(args: argparse.Namespace) -> None:
    """Fail before any work when an option is invalid or an output cannot be written."""
    if args.top < 1:
        raise InputError(
            f"--top must be at least 1, got {args.top}. Fix: pass how many top sources to list, "
            "e.g. --top 5."
        )
    for flag in ("--html", "--png", "--save", "--json"):
        check_path(flag, getattr(args, flag[2:]))
    # found, not imported: only alti_lens.render imports matplotlib (when it draws)
    if args.png and importlib.util.find_spec("matplotlib") is None:
        raise InputError(
            "--png needs matplotlib: pip install matplotlib (or alti-lens[viz]), or leave out "
            "--png; it is not installed here."
        )
