"""`alti-lens corpus` through a real subprocess: rows and manifest written, resumed, bad input and
unwritable paths answered with exit code 2 and the line number."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pq = pytest.importorskip("pyarrow.parquet")

ROOT = Path(__file__).resolve().parents[1]
# words of the built-in induction model's vocabulary (alti_lens.demo.data)
TEXTS = ["king river music window", "paper garden king", "river music window paper garden king"]


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "alti_lens.cli", "corpus", *argv],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def args(path: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model", "demo-induction", "--method", "alti", "--input", str(path),
        "--output", str(out), "-q", *extra,
    ]  # fmt: skip


def test_corpus_writes_rows_and_resumes(tmp_path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(json.dumps({"id": f"s{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS))
    )
    out = tmp_path / "out"
    first = cli(*args(path, out, "--batch-size", "2"))
    assert first.returncode == 0, first.stderr
    assert "3 rows in" in first.stdout and "3 computed now" in first.stdout
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and manifest["model"] == "demo-induction"
    ids = [i for name in manifest["shards"] for i in pq.read_table(out / name)["id"].to_pylist()]
    assert sorted(ids) == ["s0", "s1", "s2"]
    again = cli(*args(path, out))
    assert again.returncode == 0, again.stderr
    assert "0 computed now, 3 already there" in again.stdout


def test_bad_input_exits_2_with_the_line_number(tmp_path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("id,text\na,king river\nb,\n")
    out = tmp_path / "out"
    bad = cli(*args(path, out))
    assert bad.returncode == 2
    assert "alti-lens: error:" in bad.stderr and "line 3: empty text in field 'text'" in bad.stderr
    assert not list(out.glob("part-*"))
    # --skip-bad and rejects.jsonl: tests/test_corpus.py (in process, without a second start)


def test_unreadable_input_and_unwritable_output_exit_2(tmp_path) -> None:
    missing = cli(*args(tmp_path / "nope.jsonl", tmp_path / "out"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"text": "king"}) + "\n")
    (tmp_path / "file").write_text("")
    taken = cli(*args(path, tmp_path / "file"))
    assert taken.returncode == 2 and "--output" in taken.stderr
    # argparse refuses an unknown method before anything runs
    wrong = cli(
        "--model", "demo-induction", "--method", "lrp", "--input", str(path), "--output", "o"
    )
    assert wrong.returncode == 2
