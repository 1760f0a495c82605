"""The `alti-lens` command line, run for real: console script and `python -m alti_lens` in
subprocesses on checkpoint directories written to disk; error paths through `main()`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from checkpoints import save_bart, save_gpt2
from conftest import report_data

from alti_lens import AltiPlusResult, AltiResult, FlowGraph
from alti_lens.cli import EXIT_UNAVAILABLE, EXIT_USAGE, main
from alti_lens.readout.boot import _download_command

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {"gpt2": save_gpt2(root / "gpt2"), "bart": save_bart(root / "bart")}


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alti_lens", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **OFFLINE, **(env or {})},
        timeout=300,
    )


def test_console_script_is_installed_and_answers() -> None:
    script = Path(sys.executable).parent / "alti-lens"
    assert script.exists(), "reinstall the package (pip install -e .) to get the console script"
    out = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("alti-lens ")
    out = subprocess.run([str(script), "explain"], capture_output=True, text=True, timeout=120)
    assert out.returncode == EXIT_USAGE and "the following arguments are required" in out.stderr


def test_explain_end_to_end(dirs: dict[str, Path], tmp_path: Path) -> None:
    files = {k: tmp_path / f"out.{k}" for k in ("html", "png", "safetensors", "json")}
    out = run(
        "explain", "--model", str(dirs["gpt2"]), "the cat sat on the mat", "--top", "3",
        "--position", "-2", "--html", str(files["html"]), "--png", str(files["png"]),
        "--save", str(files["safetensors"]), "--json", str(files["json"]),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Top sources of position 5 ('the')" in out.stdout
    assert "loading model" in out.stderr and "done in" in out.stderr  # progress
    data = json.loads(files["json"].read_text())
    assert data["tokens"] == ["<bos>", "the", "cat", "sat", "on", "the", "mat"]
    assert data["position"] == 5
    row = torch.tensor(data["rollout_row"])
    assert abs(float(row.sum()) - 1) < 1e-4 and float(row[6]) == 0  # causal: no future source
    values = [s["value"] for s in data["top_sources"]]
    assert len(values) == 3 and values == sorted(values, reverse=True)
    # ALTI-Logit explains the model's own prediction after position 5, and adds up to its logit
    logit = data["alti_logit"]
    total = sum(logit["scores"]) + sum(logit["components"].values())
    assert abs(total - logit["logit"]) < 1e-3
    assert data["prediction"]["token"] in out.stdout
    saved = AltiResult.load(files["safetensors"])
    torch.testing.assert_close(saved.rollout[0, -1, 5, :7], row, atol=1e-6, rtol=0)
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<script" in files["html"].read_text(encoding="utf-8")


def test_flow_end_to_end(dirs: dict[str, Path], tmp_path: Path) -> None:
    files = {k: tmp_path / f"flow.{k}" for k in ("safetensors", "json", "html", "png")}
    out = run(
        "flow", "--model", str(dirs["gpt2"]), "the cat sat on the mat", "--position", "-2",
        "--threshold", "0.05", "--neurons", "--save", str(files["safetensors"]),
        "--json", str(files["json"]), "--html", str(files["html"]), "--png", str(files["png"]),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "route of position 5 ('the')" in out.stdout and "strongest edges:" in out.stdout
    data = json.loads(files["json"].read_text())
    assert data["sink"] == "resid_post.1.5" and data["position"] == 5  # 2 layers
    weights = [e["weight"] for e in data["edges"]]
    assert weights == sorted(weights, reverse=True) and min(weights) >= 0.05
    assert {e["kind"] for e in data["edges"]} <= {"attention head", "residual", "mlp", "neuron"}
    saved = FlowGraph.load(files["safetensors"])
    assert saved.neurons is not None
    route = saved.routes(position=-2, threshold=0.05)
    assert route.number_of_edges() == len(data["edges"]) and data["nodes"] == len(route)
    assert files["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = report_data(files["html"].read_text(encoding="utf-8"))
    (section,) = page["sections"]
    assert section["kind"] == "flow" and section["position"] == -2 and section["threshold"] == 0.05


def test_translate_json_to_stdout(dirs: dict[str, Path]) -> None:
    out = run(
        "translate", "--model", str(dirs["bart"]), "--source", "the cat sat",
        "--target", "le chat est", "--json", "-", "--step", "1",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)  # nothing else on stdout with --json -
    assert data["source_tokens"] == ["the", "cat", "sat", "</s>"]
    assert data["predicted"] == ["le", "chat", "est", "</s>"]  # row t predicts target word t
    assert len(data["source_contribution"]) == 4
    assert all(0 <= v <= 1 for v in data["source_contribution"])
    assert len(data["top_sources"]) == 5


def test_translate_generates_when_no_target(dirs: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "plus.safetensors"
    assert main(["translate", "-q", "--model", str(dirs["bart"]), "--source", "the dog",
                 "--save", str(path)]) == 0  # fmt: skip
    result = AltiPlusResult.load(path)
    assert result.metadata["target_generated"] is True and result.target_labels is not None
    assert result.source_str_tokens[0] == ["the", "dog", "</s>"]


def test_offline_hub_name_fails_fast_with_a_fix() -> None:
    out = run("explain", "--model", "no-such-org/no-such-model-xyz", "hello")
    assert out.returncode == EXIT_UNAVAILABLE
    assert "offline mode is set" in out.stderr and "Fix:" in out.stderr
    assert "Traceback" not in out.stderr
    # the stage line says the stage failed, and the fix names the installed hub's command
    assert "loading model no-such-org/no-such-model-xyz: failed after " in out.stderr
    assert "done in" not in out.stderr
    assert f"`{_download_command('no-such-org/no-such-model-xyz')}`" in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", "--model", "./missing-dir", "hi"], "neither a built-in name"),
        (["explain", "--model", "{bart}", "the cat"], "alti-lens translate"),
        (["translate", "--model", "{gpt2}", "--source", "the cat"], "alti-lens explain"),
        (["explain", "--model", "{gpt2}", "the cat", "--position", "9"], "outside the 3 tokens"),
        (["explain", "--model", "{gpt2}", "the cat", "--layer", "2"], "outside the model's 2"),
        (["explain", "--model", "{gpt2}", "the cat", "--top", "0"], "--top must be at least 1"),
        (["explain", "--model", "{gpt2}", "the cat", "--dtype", "float64", "--position", "-4"],
         "outside the 3 tokens"),
        (["explain", "--model", "{gpt2}", "the cat", "--layer", "-3"],
         "expected -2..1 (negative counts from the end). Fix: pass a layer in that range"),
        (["explain", "--model", "{gpt2}", "the cat", "--top", "-1"], "Fix: pass how many"),
        (["translate", "--model", "{bart}", "--source", "the cat", "--target", "le chat",
          "--step", "9"], "--step 9 is outside the 3 decoder steps; expected -3..2"),
        (["flow", "--model", "{gpt2}", "the cat", "--position", "3"],
         "--position 3 is outside the 3 tokens of the text; expected -3..2"),
        (["flow", "--model", "{gpt2}", "the cat", "--threshold", "1.5"],
         "--threshold 1.5 is not an edge weight; expected a number in [0, 1]"),
        (["flow", "--model", "{bart}", "the cat"], "`flow` takes decoder-only and encoder"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_a_message(
    dirs: dict[str, Path],
    args: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for key, value in OFFLINE.items():
        monkeypatch.setenv(key, value)
    args = [a.format(**{k: str(v) for k, v in dirs.items()}) for a in args]
    assert main([*args, "-q"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("alti-lens: error: ") and message in err, err


def test_directory_without_config_is_explained(tmp_path: Path, capsys) -> None:
    assert main(["explain", "-q", "--model", str(tmp_path), "hi"]) == EXIT_USAGE
    assert "holds no config.json" in capsys.readouterr().err


def test_demo_runs_both_builtin_models_and_writes_a_report(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "alti-lens"
    out = subprocess.run(
        [str(script), "demo", "--out", str(tmp_path / "demo"), "--no-color"],
        capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    # the induction model finds the word to copy, and predicts it
    assert "Top sources of position 9 ('music')" in out.stdout
    assert "1. pos    4  'window'" in out.stdout
    assert "Prediction after position 9: 'window'" in out.stdout
    assert "model demo-translator" in out.stdout and "mean source contribution" in out.stdout
    report = (tmp_path / "demo" / "report.html").read_text(encoding="utf-8")
    for title in ("ALTI \\u00b7 demo-induction", "ALTI-Logit \\u00b7 demo-induction",
                  "Information flow \\u00b7 demo-induction",
                  "ALTI+ \\u00b7 demo-translator"):  # fmt: skip
        assert f'"title":"{title}' in report  # one section per result


def test_explain_defaults_to_the_builtin_induction_model(capsys) -> None:
    assert main(["explain", "-q", "--no-color", "king river music window king river"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("model demo-induction")
    assert "Prediction after position 6: 'music'" in text  # induction: river was followed by music


def test_png_without_matplotlib_fails_before_any_work(
    dirs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    args = ["explain", "-q", "--model", str(dirs["gpt2"]), "the cat", "--png", str(tmp_path / "x")]
    assert main(args) == EXIT_USAGE
    captured = capsys.readouterr()
    assert "--png needs matplotlib: pip install matplotlib" in captured.err
    assert captured.out == ""  # nothing computed or printed first


def test_offline_fix_names_the_installed_hub_command() -> None:
    from importlib import metadata

    assert _download_command("gpt2", "0.20.3") == "huggingface-cli download gpt2"
    assert _download_command("gpt2", "0.34.0") == "hf download gpt2"
    assert _download_command("gpt2", "1.2.0") == "hf download gpt2"
    command = _download_command("org/name")  # the installed version's command, shipped with it
    assert command.endswith(" download org/name")
    script = Path(sys.executable).parent / command.split()[0]
    version = metadata.version("huggingface_hub")
    assert script.exists(), f"{command} suggested for huggingface_hub {version}; {script} missing"


def test_status_lines(capsys: pytest.CaptureFixture[str]) -> None:
    from alti_lens.cli import _Status

    status = _Status(quiet=False)
    with status.stage("easy"):
        pass
    with pytest.raises(RuntimeError), status.stage("hard"):
        raise RuntimeError("boom")
    err = capsys.readouterr().err
    assert "easy: done in " in err and "hard: failed after " in err and "hard: done" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--html", "/proc/r.html"], "--html /proc/r.html: cannot create files in /proc"),
        (["--json", "/proc/x.json"], "--json /proc/x.json: cannot create files in /proc"),
        (["--png", "/proc/x.png"], "--png /proc/x.png: cannot create files in /proc"),
        (["--html", "{tmp}"], "--html {tmp}: is a directory; give a file path, e.g. {tmp}/report"),
        (["--save", "{file}/r.safetensors"], "{file} is a file, not a folder"),
        (["--json", "{file}/deeper/x.json"], "{file} is a file, not a folder"),
    ],
)  # fmt: skip
def test_unwritable_outputs_exit_2_before_any_work(
    args: list[str], message: str, tmp_path: Path
) -> None:
    if "/proc/" in " ".join(args) and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    names = {"tmp": str(tmp_path), "file": str(tmp_path / "a-file")}
    (tmp_path / "a-file").write_text("x")
    out = run("explain", "king river music king", *(a.format(**names) for a in args))
    assert out.returncode == EXIT_USAGE, out.stderr
    assert out.stderr.startswith("alti-lens: error: ") and message.format(**names) in out.stderr
    assert "; " in out.stderr  # what is wrong; how to fix it
    assert "Traceback" not in out.stderr
    assert "loading model" not in out.stderr and out.stdout == ""  # nothing computed first


def test_unwritable_folder_exits_2(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes to read-only folders")
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o500)
    out = run("explain", "king river", "--html", str(folder / "r.html"))
    assert out.returncode == EXIT_USAGE and "cannot create files in" in out.stderr
    assert "Traceback" not in out.stderr


def test_demo_out_must_be_a_folder(tmp_path: Path) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    for out_dir, message in [(file, "is a file, not a folder"), ("/proc/demo", "in /proc")]:
        out = run("demo", "--out", str(out_dir))
        assert out.returncode == EXIT_USAGE, out.stderr
        assert f"alti-lens: error: --out {out_dir}: " in out.stderr and message in out.stderr
        assert "Traceback" not in out.stderr and "loading model" not in out.stderr


def test_missing_parent_folders_are_created(tmp_path: Path) -> None:
    path = tmp_path / "new" / "deeper" / "summary.json"
    assert main(["explain", "-q", "king river music king", "--json", str(path)]) == 0
    assert json.loads(path.read_text())["model"] == "demo-induction"


WRITE_FAILS = """
import sys
import alti_lens.render.report
def boom(path, items):
    raise PermissionError(13, "Permission denied", str(path))
alti_lens.render.report.write_report = boom
from alti_lens.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_write_that_fails_after_the_check_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "r.html"
    out = subprocess.run(
        [sys.executable, "-c", WRITE_FAILS, "explain", "-q", "king river", "--html", str(path)],
        capture_output=True, text=True, env={**os.environ, **OFFLINE}, timeout=300,
    )  # fmt: skip
    assert out.returncode == EXIT_USAGE, out.stderr
    assert f"alti-lens: error: --html {path}: could not write it (Permission denied)" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["explain", ""], "TEXT is empty; expected the text to explain"),
        (["explain", "  "], "TEXT is empty; expected the text to explain"),
        (["translate", "--source", ""], "--source is empty; expected the source sentence"),
        (["translate", "--source", "the cat", "--target", ""], "--target is empty; expected"),
    ],
)
def test_empty_text_names_the_argument(args: list[str], message: str) -> None:
    out = run(*args)
    assert out.returncode == EXIT_USAGE
    assert out.stderr.startswith("alti-lens: error: ") and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


WARNS = """
import sys, warnings
import alti_lens.cli as cli
from alti_lens import WeightProcessingWarning
def explain(args, status):
    warnings.warn("the weights were\\n  processed", WeightProcessingWarning, stacklevel=2)
    return 0
cli._explain = explain
sys.exit(cli.main(["explain", "hi"]))
"""


def test_warnings_are_one_clean_line() -> None:
    out = subprocess.run([sys.executable, "-c", WARNS], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stderr == "alti-lens: warning: the weights were processed\n"


def test_unknown_words_are_warned_of_once(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "-q", "--no-color", "king zebra river music"]) == 0
    err = capsys.readouterr().err
    warned = [line for line in err.splitlines() if line.startswith("alti-lens: warning:")]
    assert len(warned) == 1 and "'zebra'" in warned[0] and "'<unk>'" in warned[0], err
