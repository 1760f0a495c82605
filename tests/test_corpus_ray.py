"""The corpus Ray engine on a real local Ray cluster (two CPUs, as CI has), no mocks: the rows it
writes are the rows `rows.process` computes (the local engine's), for ALTI and ALTI+, with one and
two model-holding workers; a rerun resumes; save="full" writes the matrices; without Ray a clear
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

import alti_lens  # noqa: E402
from alti_lens.corpus import ray_engine  # noqa: E402
from alti_lens.corpus.options import CorpusOptions  # noqa: E402
from alti_lens.corpus.rows import process  # noqa: E402
from alti_lens.demo.data import induction_sequences, translation_pairs  # noqa: E402
from alti_lens.errors import InputError, MissingDependencyError  # noqa: E402

# The demo models compute in float32; the actors run with one thread and other batches than the
# reference, so sums are reassociated: agreement to a few dozen float32 ulps of O(1) values.
TOL = 64 * torch.finfo(torch.float32).eps


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


def reader(records: list[dict[str, Any]]):
    return lambda path, options: records


def written_rows(out: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    rows = [r for shard in sorted(out.glob("*.parquet")) for r in pq.read_table(shard).to_pylist()]
    return sorted(rows, key=lambda r: r["id"])


def reference_rows(model_name: str, records: list[dict[str, Any]], options: CorpusOptions):
    """`rows.process` in this process, one record per call (no padding at all)."""
    model = alti_lens.load_model(model_name, progress=False)
    rows = [process(model, options.method, [r], options)[0] for r in records]
    return sorted(rows, key=lambda r: r["id"])


def assert_same(got: Any, want: Any, where: str = "row") -> None:
    if isinstance(want, float):
        assert isinstance(got, float) and math.isclose(got, want, rel_tol=TOL, abs_tol=TOL), (
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


def without_tensors(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "_tensors"} for r in rows]


@pytest.fixture(scope="module")
def alti_run(tmp_path_factory: pytest.TempPathFactory):
    """One worker, save="full": the run the resume and tensor tests reuse."""
    out = tmp_path_factory.mktemp("alti")
    records = induction_records()
    options = CorpusOptions("alti", batch_size=4, save="full")
    manifest = ray_engine.run(
        "demo-induction", "corpus.jsonl", out, options, workers=1, read_records=reader(records)
    )
    return out, records, options, manifest


def test_alti_rows_equal_the_local_rows_with_one_worker(alti_run) -> None:
    out, records, options, manifest = alti_run
    want = reference_rows("demo-induction", records, options)
    assert_same(written_rows(out), without_tensors(want))
    assert manifest["engine"] == "ray" and manifest["workers"] == 1
    assert manifest["counts"] == {
        "examples": 6,
        "written": 6,
        "skipped_existing": 0,
        "shards": len(list(out.glob("*.parquet"))),
    }
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["options"]["method"] == "alti"
    assert manifest["versions"]["ray"] == ray.__version__
    # the actors leave a CPU share for Ray Data's own tasks (the deadlock in docs/RAY_NOTES.md)
    assert manifest["resources"]["num_cpus"] < 2


def test_full_save_writes_the_matrices_of_every_row(alti_run) -> None:
    from safetensors.torch import load_file

    out, records, options, _ = alti_run
    want = {r["id"]: r["_tensors"] for r in reference_rows("demo-induction", records, options)}
    got: dict[str, torch.Tensor] = {}
    for shard in out.glob("*.safetensors"):
        got.update(load_file(shard))
    assert sorted(got) == sorted(f"{i}/{name}" for i in want for name in want[i])
    for key, tensor in got.items():
        row_id, name = key.split("/")
        torch.testing.assert_close(tensor, want[row_id][name], rtol=TOL, atol=TOL)
    assert not list(out.glob(".*.tmp")), "no temporary file is left behind"


def test_rerun_resumes_and_never_duplicates(alti_run) -> None:
    out, records, options, _ = alti_run
    before = sorted(p.name for p in out.glob("*.parquet"))
    more = [*records, {"id": "extra", "text": "the cat sat on the mat"}]
    manifest = ray_engine.run(
        "demo-induction", "corpus.jsonl", out, options, workers=1, read_records=reader(more)
    )
    assert manifest["counts"]["skipped_existing"] == 6 and manifest["counts"]["written"] == 1
    assert set(before) < {p.name for p in out.glob("*.parquet")}, "finished shards are kept"
    ids = [r["id"] for r in written_rows(out)]
    assert sorted(ids) == sorted(r["id"] for r in more), "each id exactly once"


def test_alti_plus_rows_equal_the_local_rows_with_two_workers(tmp_path: Path) -> None:
    records = translation_records()
    options = CorpusOptions("alti_plus", batch_size=2)
    manifest = ray_engine.run(
        "demo-translator", "pairs.jsonl", tmp_path, options, workers=2, read_records=reader(records)
    )
    assert manifest["workers"] == 2 and manifest["counts"]["written"] == len(records)
    # two actors on two CPUs must each leave room for Ray Data's tasks
    assert 2 * manifest["resources"]["num_cpus"] < 2
    want = reference_rows("demo-translator", records, options)
    assert_same(written_rows(tmp_path), want)


def test_plan_resources_leaves_cpus_for_ray_data_and_checks_gpus() -> None:
    one = ray_engine.plan_resources({"CPU": 2.0}, workers=1, num_gpus_per_worker=None)
    two = ray_engine.plan_resources({"CPU": 2.0}, workers=2, num_gpus_per_worker=None)
    assert one.num_cpus * 1 < 2 and two.num_cpus * 2 < 2 and one.num_gpus == two.num_gpus == 0
    big = ray_engine.plan_resources({"CPU": 64.0, "GPU": 8.0}, workers=8, num_gpus_per_worker=None)
    assert big.num_gpus == 1 and big.num_cpus == 1
    half = ray_engine.plan_resources({"CPU": 8.0, "GPU": 1.0}, workers=2, num_gpus_per_worker=0.5)
    assert half.num_gpus == 0.5
    with pytest.raises(InputError, match="need 2 GPUs; the Ray cluster has 1"):
        ray_engine.plan_resources({"CPU": 8.0, "GPU": 1.0}, workers=2, num_gpus_per_worker=1)
    with pytest.raises(InputError, match="too few"):
        ray_engine.plan_resources({"CPU": 0.0}, workers=1, num_gpus_per_worker=0)


def test_bad_workers_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="workers must be at least 1"):
        ray_engine.run("demo-induction", "x", tmp_path, CorpusOptions("alti"), workers=0)


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
        ray_engine.run("demo-induction", "x", tmp_path, CorpusOptions("alti"))
    assert not list(tmp_path.iterdir()), "nothing is written before the check"


def test_an_error_in_the_actors_reaches_the_caller_as_itself(tmp_path: Path) -> None:
    """load_model fails inside the actor: the caller gets alti_lens' InputError, not Ray's
    ActorDiedError that keeps only its text, and no shard is written."""
    records = induction_records(2)
    with pytest.raises(InputError, match="neither a built-in name"):
        ray_engine.run(
            str(tmp_path / "no-such-model"),
            "corpus.jsonl",
            tmp_path / "out",
            CorpusOptions("alti"),
            read_records=reader(records),
        )
    assert not list((tmp_path / "out").glob("*.parquet"))


def test_errors_cross_ray_with_their_class_and_attributes() -> None:
    from alti_lens.errors import ReconstructionError

    err = ReconstructionError("not exact", layer=2, error=1.0, tolerance=0.1, part="encoder")
    back = ray_engine.decode_error(ray_engine.encode_error(err))
    assert type(back) is ReconstructionError and str(back) == "not exact"
    assert (back.layer, back.error, back.tolerance, back.part) == (2, 1.0, 0.1, "encoder")
