"""alti_lens.corpus: rows equal the direct API calls, every input format, bad input with line
numbers, resume without duplicates or recomputation, write-then-rename, Ctrl-C.

Tiny models only (tests/models.py's gpt2-preLN bridge, n_ctx 32; the built-in translator)."""

import json

import pytest
import torch
from conftest import bridge

import alti_lens
from alti_lens import InputError, alti, alti_logit, alti_plus, flow_graph
from alti_lens.corpus import CorpusOptions, io, local, rows, shards

pq = pytest.importorskip("pyarrow.parquet")

TEXTS = ["the cat sat", "a dog ran", "the cat sat on the mat", "a", "the dog ran", "cat"]
F64 = 1e-12  # float64 model: a batched (padded) run equals a single run to float64 precision


@pytest.fixture(scope="module")
def model():
    return bridge("gpt2-preLN", torch.float64)


@pytest.fixture(scope="module")
def translator():
    return alti_lens.load_model("demo-translator", dtype="float64", progress=False)


def T(values):
    return torch.tensor(values, dtype=torch.float64)


def records(texts=TEXTS, **extra):
    return [{"id": f"r{i}", "text": t, **extra} for i, t in enumerate(texts)]


def write_jsonl(path, items):
    path.write_text("".join(json.dumps(x) + "\n" for x in items))
    return path


def test_alti_rows_equal_direct_calls(model) -> None:
    got = rows.process(model, "alti", records(), CorpusOptions("alti"))
    assert [r["id"] for r in got] == [f"r{i}" for i in range(len(TEXTS))]
    for row, text in zip(got, TEXTS, strict=True):
        want = alti(model, text)
        n = want.tokens.shape[1]
        assert row["n_tokens"] == n and row["tokens"] == want.str_tokens[0]
        torch.testing.assert_close(
            T(row["rollout_last"]), want.rollout[0, -1, n - 1], atol=F64, rtol=0
        )
        top = want.top_sources(-1, 5)
        assert [(s["position"], s["token"]) for s in row["top_sources"]] == [t[:2] for t in top]
        assert len(row["top_sources"]) == min(5, n)  # padding is never a source
        assert row["max_reconstruction_error"] == pytest.approx(
            float(want.reconstruction_error.max()), abs=1e-12
        )
        assert 0 <= row["max_reconstruction_error"] < 1e-10


def test_alti_full_tensors_hold_the_summary(model) -> None:
    got = rows.process(model, "alti", records(TEXTS[:3]), CorpusOptions("alti", save="full"))
    for row in got:
        n, tensors = row["n_tokens"], row["_tensors"]
        assert tensors["rollout"].shape == (model.cfg.n_layers, n, n)
        assert tensors["contributions"].shape == (model.cfg.n_layers, n, n)
        torch.testing.assert_close(
            tensors["rollout"][-1, -1], T(row["rollout_last"]), atol=F64, rtol=0
        )


def test_alti_logit_rows_equal_direct_calls(model) -> None:
    recs = records(TEXTS[:4])
    for r, target in zip(recs, ["cat", "the", "dog", "sat"], strict=True):
        r["target"] = target
    got = rows.process(model, "alti_logit", recs, CorpusOptions("alti_logit"))
    for row, r in zip(got, recs, strict=True):
        want = alti_logit(model, r["text"], r["target"])
        assert row["target"] == r["target"] and row["target_id"] == int(want.target[0])
        assert row["logit"] == pytest.approx(float(want.logit[0]), abs=F64)
        torch.testing.assert_close(T(row["scores"]), want.scores[0], atol=F64, rtol=0)
        top = [(p, t) for p, t, _ in want.top_sources(5)]  # no padding: negative scores stay
        assert [(s["position"], s["token"]) for s in row["top_sources"]] == top


def test_flow_rows_are_the_route_of_the_last_token(model) -> None:
    opts = CorpusOptions("flow", threshold=0.05)
    got = rows.process(model, "flow", records(TEXTS[:3]), opts)
    for row, text in zip(got, TEXTS[:3], strict=True):
        route = flow_graph(model, text).routes(-1, 0.05)
        want = {(s, t, k): a["weight"] for s, t, k, a in route.edges(keys=True, data=True)}
        edges = {(e["source"], e["target"], e["key"]): e["weight"] for e in row["route"]}
        assert edges.keys() == want.keys() and len(edges) > 0
        for key, weight in want.items():
            assert edges[key] == pytest.approx(weight, abs=F64)
        assert all(e["weight"] >= 0.05 for e in row["route"])
        assert row["route_sink"] == route.graph["sink"]


def test_alti_plus_rows_equal_direct_calls_with_and_without_targets(translator) -> None:
    recs = [
        {"id": "a", "source": "the old red cat sees a happy dog", "target": None},
        {"id": "b", "source": "the cat sees a dog", "target": "lo gato"},
    ]
    got = rows.process(translator, "alti_plus", recs, CorpusOptions("alti_plus"))
    assert [r["id"] for r in got] == ["a", "b"]
    for row, r in zip(got, recs, strict=True):
        want = alti_plus(translator, r["source"], r["target"])
        t = want.target_tokens.shape[1]
        torch.testing.assert_close(
            T(row["source_contribution"]), want.source_contribution[0], atol=1e-9,
            rtol=0,
        )  # fmt: skip
        stats = want.sentence_statistics()
        assert row["n_target_tokens"] == t
        for key, value in stats.items():
            assert row[f"source_contribution_{key}"] == pytest.approx(float(value[0]), abs=1e-9)
        assert {"source_contribution_mean", "source_contribution_min"} <= row.keys()


def test_options_refuse_bad_values() -> None:
    with pytest.raises(InputError, match="method must be one of"):
        CorpusOptions("alti+")
    with pytest.raises(InputError, match="batch_size must be >= 1"):
        CorpusOptions("alti", batch_size=0)
    with pytest.raises(InputError, match="measure must be one of"):
        CorpusOptions("flow", measure="attention")
    with pytest.raises(InputError, match="threshold"):
        CorpusOptions("flow", threshold=2.0)


def _formats(tmp_path, items):
    import csv

    import datasets
    import pyarrow as pa

    jsonl = write_jsonl(tmp_path / "in.jsonl", items)
    with (tmp_path / "in.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "text"])
        writer.writeheader()
        writer.writerows(items)
    pq.write_table(pa.Table.from_pylist(items), tmp_path / "in.parquet")
    datasets.Dataset.from_list(items).save_to_disk(str(tmp_path / "in_ds"))
    return [jsonl, tmp_path / "in.csv", tmp_path / "in.parquet", tmp_path / "in_ds"]


def test_every_input_format_reads_the_same_records(tmp_path, model) -> None:
    items = [{"id": f"x{i}", "text": t} for i, t in enumerate(TEXTS)]
    seen = []
    for path in _formats(tmp_path, items):
        corpus = io.load(path, CorpusOptions("alti"), model)
        seen.append([(i.record, i.length) for i in corpus.items])
        assert not corpus.rejects
    assert all(s == seen[0] for s in seen)
    assert [r["id"] for r, _ in seen[0]] == [x["id"] for x in items]
    assert [n for _, n in seen[0]] == [alti(model, t).tokens.shape[1] for t in TEXTS]


def _bad_file(tmp_path):
    lines = [
        json.dumps({"text": "the cat sat"}),  # line 1: fine, id "1"
        "{not json",  # line 2: malformed
        json.dumps({"other": "x"}),  # line 3: missing field
        json.dumps({"text": "   "}),  # line 4: empty
        json.dumps({"text": " ".join(["cat"] * 40)}),  # line 5: longer than n_ctx 32
        "",  # a blank line is no record
        json.dumps({"id": "1", "text": "a dog"}),  # line 7: duplicate id "1"
        json.dumps({"id": "ok", "text": "a dog"}),  # line 8: fine
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_input_is_refused_with_line_numbers_before_any_work(tmp_path, model) -> None:
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        alti_lens.corpus.run(model, _bad_file(tmp_path), out, method="alti", quiet=True)
    message = str(err.value)
    for expected in (
        "line 2: malformed JSON", "line 3: missing field 'text'", "line 4: empty text",
        "line 5: text is 41 tokens, longer than the model's context of 32",
        "line 7: duplicate id '1'", "--skip-bad",
    ):  # fmt: skip
        assert expected in message, message
    assert not list(out.glob("part-*")) and not (out / "manifest.json").exists()


def test_skip_bad_writes_the_rejects_and_computes_the_rest(tmp_path, model) -> None:
    out = tmp_path / "out"
    manifest = alti_lens.corpus.run(
        model, _bad_file(tmp_path), out, method="alti", skip_bad=True, quiet=True
    )
    rejects = [json.loads(x) for x in (out / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 3, 4, 5, 7]
    assert all(r["reason"] for r in rejects)
    assert manifest["counts"].items() >= {"rejected": 5, "done": 2, "computed": 2}.items()
    table = alti_lens.corpus.read_table(out)
    assert sorted(table.column("id").to_pylist()) == ["1", "ok"]


def test_unreadable_input_and_unwritable_output_are_input_errors(tmp_path, model) -> None:
    good = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}])
    with pytest.raises(InputError, match="does not exist"):
        alti_lens.corpus.run(model, tmp_path / "missing.jsonl", tmp_path / "o", method="alti")
    (tmp_path / "in.txt").write_text("x")
    with pytest.raises(InputError, match="suffix"):
        alti_lens.corpus.run(model, tmp_path / "in.txt", tmp_path / "o", method="alti")
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file"):
        alti_lens.corpus.run(model, good, tmp_path / "file", method="alti")
    with pytest.raises(InputError, match="engine must be"):
        alti_lens.corpus.run(model, good, tmp_path / "o", method="alti", engine="spark")
    with pytest.raises(InputError, match="needs an encoder-decoder"):
        alti_lens.corpus.run(model, good, tmp_path / "o", method="alti_plus", quiet=True)


class Counting:
    """rows.process, counting its calls and records; raises `error` on call `fail_on`."""

    def __init__(self, fail_on=None, error=RuntimeError):
        self.calls, self.ids, self.fail_on, self.error = 0, [], fail_on, error
        self.real = rows.process

    def __call__(self, model, method, recs, options):
        self.calls += 1
        if self.calls == self.fail_on:
            raise self.error("simulated crash")
        self.ids += [r["id"] for r in recs]
        return self.real(model, method, recs, options)


def _ids(out):
    return alti_lens.corpus.read_table(out).column("id").to_pylist()


def test_rerun_skips_what_is_done_and_duplicates_nothing(tmp_path, model, monkeypatch) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    out = tmp_path / "out"
    counter = Counting()
    monkeypatch.setattr(rows, "process", counter)
    first = alti_lens.corpus.run(
        model, path, out, method="alti", batch_size=2, shard_size=2, quiet=True
    )
    assert counter.calls == 3 and sorted(counter.ids) == sorted(map(str, range(1, 7)))
    assert first["complete"] and first["counts"]["done"] == 6 and len(first["shards"]) == 3
    again = alti_lens.corpus.run(
        model, path, out, method="alti", batch_size=2, shard_size=2, quiet=True
    )
    assert counter.calls == 3  # nothing recomputed
    assert again["counts"].items() >= {"skipped": 6, "computed": 0, "done": 6}.items()
    assert sorted(_ids(out)) == sorted(map(str, range(1, 7)))
    with pytest.raises(InputError, match="Expected the same, to resume"):
        alti_lens.corpus.run(model, path, out, method="flow", quiet=True)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_a_crash_keeps_finished_shards_and_the_rerun_completes(
    tmp_path, model, monkeypatch, error
) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    out = tmp_path / "out"
    monkeypatch.setattr(rows, "process", Counting(fail_on=2, error=error))
    with pytest.raises(error, match="simulated crash"):
        alti_lens.corpus.run(
            model, path, out, method="alti", batch_size=2, shard_size=2, quiet=True
        )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False and manifest["counts"]["done"] == 2
    assert len(_ids(out)) == 2  # the finished shard is a valid dataset
    counter = Counting()
    monkeypatch.setattr(rows, "process", counter)
    done = alti_lens.corpus.run(
        model, path, out, method="alti", batch_size=2, shard_size=2, quiet=True
    )
    assert (
        done["complete"]
        and done["counts"].items() >= {"skipped": 2, "computed": 4, "done": 6}.items()
    )
    assert len(counter.ids) == 4
    assert sorted(_ids(out)) == sorted(map(str, range(1, 7)))


def test_a_shard_is_never_visible_half_written(tmp_path, model, monkeypatch) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    out = tmp_path / "out"
    real = pq.write_table

    def half(table, where, **kwargs):
        with open(where, "wb") as f:
            f.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", half)
    with pytest.raises(OSError, match="disk full"):
        alti_lens.corpus.run(
            model, path, out, method="alti", batch_size=2, shard_size=2, quiet=True
        )
    assert not list(out.glob("part-*.parquet"))  # only the temporary file, never a shard
    assert list(out.glob(".part-*.tmp"))
    assert json.loads((out / "manifest.json").read_text())["complete"] is False
    monkeypatch.setattr(pq, "write_table", real)
    done = alti_lens.corpus.run(
        model, path, out, method="alti", batch_size=2, shard_size=2, quiet=True
    )
    assert done["complete"] and sorted(_ids(out)) == sorted(map(str, range(1, 7)))
    assert not list(out.glob(".part-*.tmp"))


def test_full_save_writes_tensors_next_to_the_rows(tmp_path, model) -> None:
    path = write_jsonl(
        tmp_path / "in.jsonl", [{"id": f"e{i}", "text": t} for i, t in enumerate(TEXTS)]
    )
    out = tmp_path / "out"
    alti_lens.corpus.run(
        model, path, out, method="alti", save="full", batch_size=2, shard_size=4, quiet=True
    )
    assert len(list(out.glob("part-*.safetensors"))) == 2
    table = alti_lens.corpus.read_table(out).to_pylist()
    for row in table:
        tensors = alti_lens.corpus.load_tensors(out, row["id"])
        torch.testing.assert_close(
            tensors["rollout"][-1, -1], T(row["rollout_last"]), atol=F64, rtol=0
        )


def test_batches_are_bucketed_by_length_and_padding_is_reported() -> None:
    items = [io.Item(i, {"id": str(i)}, n) for i, n in enumerate([9, 1, 8, 2, 7, 3])]
    groups = list(local.batches(items, 2))
    assert [[i.length for i in g] for g in groups] == [[1, 2], [3, 7], [8, 9]]
    assert local.padding_waste(groups) == pytest.approx((2 * 2 + 7 * 2 + 9 * 2 - 30) / 30)
    assert local.padding_waste([[io.Item(0, {}, 4)]]) == 0.0


def test_manifest_records_model_versions_options_counts_and_timings(tmp_path, model) -> None:
    path = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    manifest = alti_lens.corpus.run(model, path, tmp_path / "out", method="alti", quiet=True)
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk == json.loads(json.dumps(manifest))
    assert on_disk["options"]["method"] == "alti" and on_disk["versions"]["torch"]
    assert on_disk["timings"]["examples_per_s"] > 0 and on_disk["padding_waste"] >= 0
    assert on_disk["format"] == shards.FORMAT
    assert alti_lens.run_corpus is alti_lens.corpus.run


def test_alti_plus_corpus_checks_source_and_target_lengths(tmp_path, translator) -> None:
    from alti_lens import models

    limit = models.n_ctx(translator)
    long = " ".join(["cat"] * limit)
    items = [
        {"id": "ok", "source": "the cat sees a dog", "target": "lo gato"},
        {"id": "gen", "source": "a happy dog"},  # no target: translated first
        {"id": "long-source", "source": long},
        {"id": "long-target", "source": "the cat", "target": long},  # limit + 1 tokens (EOS)
        {"id": "edge", "source": "the cat", "target": " ".join(["gato"] * (limit - 1))},
    ]
    path = write_jsonl(tmp_path / "pairs.jsonl", items)
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"line 3: source is \d+ tokens.*line 4: target is 33"):
        alti_lens.corpus.run(translator, path, out, method="alti_plus", quiet=True)
    manifest = alti_lens.corpus.run(
        translator, path, out, method="alti_plus", skip_bad=True, quiet=True
    )
    assert manifest["counts"]["done"] == 3 and manifest["counts"]["rejected"] == 2
    assert limit == 32
    table = {r["id"]: r for r in alti_lens.corpus.read_table(out).to_pylist()}
    assert table["gen"]["target"] is None and table["ok"]["target"] == "lo gato"
    want = alti_plus(translator, "the cat sees a dog", "lo gato").sentence_statistics()["mean"]
    assert table["ok"]["source_contribution_mean"] == pytest.approx(float(want[0]), abs=1e-9)


def test_ray_engine_gets_every_argument_or_a_clear_error(tmp_path, monkeypatch) -> None:
    import sys
    import types

    from alti_lens import MissingDependencyError

    name = "alti_lens.corpus.ray_engine"
    monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(MissingDependencyError, match="engine='ray' is not available"):
        alti_lens.corpus.run("m", "in.jsonl", tmp_path, method="alti", engine="ray")
    seen = {}
    fake = types.ModuleType(name)
    fake.run = lambda **kwargs: seen.update(kwargs) or {"ok": True}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, name, fake)
    got = alti_lens.corpus.run(
        "m", "in.jsonl", tmp_path, method="flow", engine="ray", workers=2, ray_address="auto"
    )
    assert got == {"ok": True}
    assert seen["workers"] == 2 and seen["ray_address"] == "auto" and "engine" not in seen
    assert seen["options"] == CorpusOptions("flow") and seen["model"] == "m"
