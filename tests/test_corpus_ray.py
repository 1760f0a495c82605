"""The corpus Ray engine on a real local Ray cluster (two CPUs, as CI has), no mocks: the rows it
writes are the local engine's rows (sorted by id), for ALTI and ALTI+, with one and two
model-holding workers; a rerun resumes; save="full" writes the matrices; without Ray a clear
error names the install."""

import builtins
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ray = pytest.importorskip("ray", reason='the Ray engine tests need pip install "alti-lens[ray]"')

from alti_lens import corpus  # noqa: E402
from alti_lens.corpus import ray_engine  # noqa: E402
from alti_lens.corpus.options import CorpusOptions  # noqa: E402
from alti_lens.demo.data import induction_sequences, translation_pairs  # noqa: E402
from alti_lens.errors import InputError, MissingDependencyError  # noqa: E402

# The demo models compute in float32. The engines compute the same batches, but the actors run
# with one thread and the local engine with all, so sums may be reassociated: measured, ALTI rows
# agree exactly and ALTI+ rows to 3.2e-6 relative (27 float32 ulps); allowed: 64 ulps relative,
# 4 ulps of an O(1) value absolute (for values near zero).
TOL = 64 * torch.finfo(torch.float32).eps
ABS_TOL = 4 * torch.finfo(torch.float32).eps


@pytest.fixture(scope="module", autouse=True)
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def induction_records(n: int = 6) -> list[dict[str, Any]]:
    seqs = induction_sequences(n, seed=3, min_len=3, max_len=7)
    return [{"id": f"s{i}", "text": " ".join(words)} for i, words in enumerate(seqs)]


def translation_records(n: int = 6) -> list[dict[str, Any]]:
    pairs = translation_pairs(n, seed=5)
    records = [
        {"id": f"p{i}", "source": " ".join(p.source), "target": " ".join(p.target)}
        for i, p in enumerate(pairs)
    ]
    records[-1].pop("target")  # one record translated greedily by the model first
    return records


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def by_id(out: Path) -> list[dict[str, Any]]:
    return sorted(corpus.read_table(out).to_pylist(), key=lambda r: r["id"])


def assert_same(got: Any, want: Any, where: str = "row") -> None:
    if isinstance(want, float):
        assert isinstance(got, float) and math.isclose(got, want, rel_tol=TOL, abs_tol=ABS_TOL), (
            f"{where}: {got} != {want}"
        )
    elif isinstance(want, dict):
        assert set(got) == set(want), f"{where}: columns {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def engines(tmp: Path, model: str, input: Path, workers: int, **kw: Any) -> tuple[dict, dict]:
    """The same corpus run by the local and by the Ray engine: their manifests."""
    local = corpus.run(model, input, tmp / "local", engine="local", quiet=True, **kw)
    on_ray = corpus.run(model, input, tmp / "ray", engine="ray", workers=workers, quiet=True, **kw)
    return local, on_ray


@pytest.fixture(scope="module")
def alti_runs(tmp_path_factory: pytest.TempPathFactory):
    """ALTI with one worker and save="full" (reused by the resume and tensor tests)."""
    tmp = tmp_path_factory.mktemp("alti")
    records = induction_records()
    input = write_jsonl(tmp / "corpus.jsonl", records)
    local, on_ray = engines(
        tmp, "demo-induction", input, 1, method="alti", batch_size=4, save="full"
    )
    return tmp, records, local, on_ray


def test_alti_rows_equal_the_local_engine_s_with_one_worker(alti_runs) -> None:
    tmp, records, local, on_ray = alti_runs
    assert_same(by_id(tmp / "ray"), by_id(tmp / "local"))
    assert len(by_id(tmp / "ray")) == len(records)
    assert on_ray["engine"] == "ray" and on_ray["workers"] == 1 and on_ray["complete"]
    assert on_ray["counts"] == {**local["counts"]}
    assert on_ray["padding_waste"] == local["padding_waste"], "the same batches as local"
    assert json.loads((tmp / "ray" / "manifest.json").read_text()) == on_ray
    assert on_ray["options"] == local["options"] and on_ray["versions"]["ray"] == ray.__version__
    # the actor leaves a CPU share for Ray Data's own tasks (the deadlock in RAY_NOTES.md)
    assert on_ray["resources"]["num_cpus"] < 2


def test_full_save_writes_the_local_engine_s_matrices(alti_runs) -> None:
    tmp, records, _, _ = alti_runs
    for record in records:
        got = corpus.load_tensors(tmp / "ray", record["id"])
        want = corpus.load_tensors(tmp / "local", record["id"])
        assert sorted(got) == sorted(want) == ["contributions", "rollout"]
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=TOL, atol=ABS_TOL)
    assert not list((tmp / "ray").glob(".*.tmp")), "no temporary file is left behind"


def test_rerun_resumes_and_never_duplicates(alti_runs) -> None:
    tmp, records, _, _ = alti_runs
    before = {p.name for p in (tmp / "ray").glob("*.parquet")}
    more = [*records, {"id": "extra", "text": "the cat sat on the mat"}]
    input = write_jsonl(tmp / "more.jsonl", more)
    manifest = corpus.run(
        "demo-induction", input, tmp / "ray", method="alti", engine="ray", batch_size=4,
        save="full", quiet=True,
    )  # fmt: skip
    assert manifest["counts"]["skipped"] == 6 and manifest["counts"]["computed"] == 1
    assert manifest["counts"]["done"] == 7 and manifest["complete"]
    assert before < {p.name for p in (tmp / "ray").glob("*.parquet")}, "finished shards stay"
    assert [r["id"] for r in by_id(tmp / "ray")] == sorted(r["id"] for r in more)


def test_alti_plus_rows_equal_the_local_engine_s_with_two_workers(tmp_path: Path) -> None:
    input = write_jsonl(tmp_path / "pairs.jsonl", translation_records())
    local, on_ray = engines(tmp_path, "demo-translator", input, 2, method="alti_plus", batch_size=2)
    assert local["counts"] == on_ray["counts"]
    assert on_ray["workers"] == 2 and on_ray["counts"]["computed"] == 6
    # two actors on two CPUs must each leave room for Ray Data's tasks
    assert 2 * on_ray["resources"]["num_cpus"] < 2
    assert_same(by_id(tmp_path / "ray"), by_id(tmp_path / "local"))


def test_an_error_in_the_actors_reaches_the_caller_as_itself(tmp_path: Path) -> None:
    """The model fails to load inside the actor (the driver validated another path): the caller
    gets alti_lens' InputError, not Ray's ActorDiedError that keeps only its text."""
    from alti_lens.corpus import io

    options = CorpusOptions("alti")
    plan = ray_engine.plan_resources(ray.cluster_resources(), 1, 0)
    job = ray_engine.Job(str(tmp_path / "no-such-model"), tmp_path, options, plan, None, None)
    groups = [[io.Item(1, {"id": "a", "text": "the cat"}, 3)]]
    manifest: dict[str, Any] = {"counts": {}, "timings": {}}
    with pytest.raises(InputError, match="neither a built-in name"):
        ray_engine._compute(ray, job, groups, manifest, quiet=True)
    assert manifest["complete"] is False and manifest["counts"]["computed"] == 0
    assert not list(tmp_path.glob("*.parquet"))


def test_refusals_before_any_work(tmp_path: Path) -> None:
    input = write_jsonl(tmp_path / "c.jsonl", induction_records(1))
    with pytest.raises(InputError, match="needs the model's name or checkpoint directory"):
        ray_engine.run(object(), input, tmp_path / "o", CorpusOptions("alti"))
    with pytest.raises(InputError, match="batch_size=3 disagrees"):
        ray_engine.run("demo-induction", input, tmp_path / "o", CorpusOptions("alti"), batch_size=3)
    with pytest.raises(InputError, match="workers must be an int >= 1"):
        ray_engine.run("demo-induction", input, tmp_path / "o", CorpusOptions("alti"), workers=0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "the cat"}\n{"id": "b"}\n')
    with pytest.raises(InputError, match="line 2: missing field 'text'"):
        corpus.run("demo-induction", bad, tmp_path / "o", method="alti", engine="ray", quiet=True)
    assert not list((tmp_path / "o").glob("*.parquet"))


def test_plan_resources_leaves_cpus_for_ray_data_and_checks_gpus() -> None:
    one = ray_engine.plan_resources({"CPU": 2.0}, workers=1, num_gpus=None)
    two = ray_engine.plan_resources({"CPU": 2.0}, workers=2, num_gpus=None)
    assert one.num_cpus * 1 < 2 and two.num_cpus * 2 < 2 and one.num_gpus == two.num_gpus == 0
    big = ray_engine.plan_resources({"CPU": 64.0, "GPU": 8.0}, workers=8, num_gpus=None)
    assert big.num_gpus == 1 and big.num_cpus == 1
    half = ray_engine.plan_resources({"CPU": 8.0, "GPU": 1.0}, workers=2, num_gpus=0.5)
    assert half.num_gpus == 0.5
    with pytest.raises(InputError, match="need 2 GPUs; the Ray cluster has 1"):
        ray_engine.plan_resources({"CPU": 8.0, "GPU": 1.0}, workers=2, num_gpus=1)
    with pytest.raises(InputError, match="too few"):
        ray_engine.plan_resources({"CPU": 0.0}, workers=1, num_gpus=0)


def test_without_ray_a_clear_error_names_the_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        monkeypatch.delitem(sys.modules, name)
    with pytest.raises(MissingDependencyError, match=r'pip install "alti-lens\[ray\]"'):
        ray_engine.run("demo-induction", tmp_path / "x.jsonl", tmp_path, CorpusOptions("alti"))
    assert not list(tmp_path.iterdir()), "nothing is written before the check"


def test_errors_cross_ray_with_their_class_and_attributes() -> None:
    from alti_lens.errors import ReconstructionError

    err = ReconstructionError("not exact", layer=2, error=1.0, tolerance=0.1, part="encoder")
    back = ray_engine.decode_error(ray_engine.encode_error(err))
    assert type(back) is ReconstructionError and str(back) == "not exact"
    assert (back.layer, back.error, back.tolerance, back.part) == (2, 1.0, 0.1, "encoder")


def test_command_line_engine_ray_starts_a_local_cluster_and_matches_local(tmp_path: Path) -> None:
    """`alti-lens corpus --engine ray` in a fresh process (no Ray running there, no RAY_ADDRESS):
    the engine starts a local cluster, writes the local engine's rows, and stops it."""
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    input = write_jsonl(tmp_path / "in.jsonl", induction_records(3))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root)}
    env.pop("RAY_ADDRESS", None)
    common = ["--model", "demo-induction", "--method", "alti", "--input", str(input), "-q"]
    done = subprocess.run(
        [sys.executable, "-m", "alti_lens.cli", "corpus", *common, "--output",
         str(tmp_path / "ray"), "--engine", "ray", "--workers", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "3 rows in" in done.stdout
    corpus.run("demo-induction", input, tmp_path / "local", method="alti", quiet=True)
    assert_same(by_id(tmp_path / "ray"), by_id(tmp_path / "local"))
    manifest = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert manifest["engine"] == "ray" and manifest["complete"]
