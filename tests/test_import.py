"""`import alti_lens` and the command line's help load nothing heavy (torch, TransformerLens,
transformers): the modules a fresh interpreter has loaded are checked, not wall time."""

import argparse
import json
import os
import subprocess
import sys

import pytest

import alti_lens
from alti_lens import cli

HEAVY = ("torch", "transformer_lens", "transformers", "numpy", "safetensors", "jaxtyping")

# prints the heavy top-level modules loaded after running the snippet in a fresh interpreter
PROBE = """
import json, sys
{snippet}
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print("HEAVY=" + json.dumps(heavy))
"""


def loaded_after(snippet: str) -> tuple[list[str], subprocess.CompletedProcess[str]]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(snippet=snippet, heavy=HEAVY)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    line = [x for x in out.stdout.splitlines() if x.startswith("HEAVY=")][-1]
    return json.loads(line.removeprefix("HEAVY=")), out


def test_import_alti_lens_loads_nothing_heavy() -> None:
    heavy, _ = loaded_after("import alti_lens\nassert alti_lens.__version__")
    assert heavy == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["explain", "--help"],
        ["translate", "--help"],
        ["demo", "--help"],
        ["flow", "--help"],
        ["corpus", "--help"],
    ],
)
def test_help_loads_nothing_heavy(argv: list[str]) -> None:
    snippet = f"""
import contextlib, io
from alti_lens.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    try:
        main({argv!r})
    except SystemExit as exit:
        assert exit.code == 0, exit.code
text = buf.getvalue()
assert "examples:" in text and "exit codes:" in text, text
"""
    heavy, _ = loaded_after(snippet)
    assert heavy == []


def test_argument_and_path_errors_answer_before_loading_torch(tmp_path) -> None:
    snippet = f"""
from alti_lens.cli import main
assert main(["explain", ""]) == 2
assert main(["translate", "--source", " "]) == 2
assert main(["explain", "hi", "--html", {str(tmp_path)!r}]) == 2
"""
    heavy, out = loaded_after(snippet)
    assert heavy == []
    assert out.stderr.count("alti-lens: error: ") == 3


def test_every_public_name_still_works() -> None:
    for name in alti_lens.__all__:
        assert getattr(alti_lens, name) is not None
    assert set(alti_lens.__all__) <= set(dir(alti_lens))
    from alti_lens import AltiResult, alti, load_model

    assert alti is alti_lens.api.alti and load_model is alti_lens.readout.load_model
    assert AltiResult.__module__ == "alti_lens.results"
    assert callable(alti_lens.readout.describe)  # submodules as attributes, as before
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = alti_lens.no_such_name  # type: ignore[attr-defined]


def test_cli_choices_are_the_library_s() -> None:
    from alti_lens import readout
    from alti_lens.core.measures import MEASURES

    assert cli.MEASURES == MEASURES
    assert sorted(cli.DTYPE_NAMES) == sorted(readout.DTYPES)
    from alti_lens.demo import BUILTIN_MODELS

    assert {cli.DEFAULT_DECODER, cli.DEFAULT_TRANSLATOR} <= set(BUILTIN_MODELS)


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_option_has_help_and_shows_its_default() -> None:
    parser = cli._parser()
    commands = _subparsers(parser)
    assert set(commands) == {"explain", "translate", "demo", "flow", "corpus"}
    for name, sub in commands.items():
        for action in sub._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        text = sub.format_help()
        assert "examples:" in text and "exit codes:" in text, name
        assert "  4  model not supported" in text
    explain = commands["explain"].format_help()
    assert "{l1,l2,norm,attention,attention_rollout}" in explain
    assert "{bfloat16,float16,float32,float64}" in explain
    for default in ("(default: 5)", "(default: float32)", "(default: demo-induction)"):
        assert default in " ".join(explain.split()), default
    translate = " ".join(commands["translate"].format_help().split())
    assert "(default: demo-translator)" in translate and "(default: 64)" in translate
    assert "(default: alti-lens-demo)" in " ".join(commands["demo"].format_help().split())
    flow = " ".join(commands["flow"].format_help().split())
    assert "{l1,l2,norm}" in flow and "(default: 0.04)" in flow
    assert "demo-induction, demo-translator" in parser.format_help()


def test_results_and_render_load_no_plotting_table_or_widget_library() -> None:
    """lint-imports checks the import statements; this, what really gets loaded: results load
    render's modules but not matplotlib, pandas or CircuitsVis, and render loads no result."""
    snippet = """
import alti_lens.render.report, alti_lens.render.text
assert not [m for m in sys.modules if m.startswith("alti_lens.results")]
import alti_lens.results
optional = {m.split(".")[0] for m in sys.modules} & {"matplotlib", "pandas", "circuitsvis"}
assert not optional, optional
"""
    loaded_after(snippet)
