"""Throughput of `alti_lens.corpus.run`: the local engine against the Ray engine with 1 and 2
workers, examples/s, on this machine's CPUs.

    python benchmarks/bench_corpus.py                       # both models, 48 examples each
    python benchmarks/bench_corpus.py --models translator --examples 96
    python benchmarks/bench_corpus.py --cpus 2 --workers 1 2

Models: `gpt2-small`, a GPT-2-small-shaped model (12 layers, d_model 768, 12 heads, vocabulary
50,257) with random weights and a word-level tokenizer, saved to a temporary checkpoint directory
(the Ray workers load it by path, as they would a real checkpoint), method "alti" over texts of
`--words` words; `translator`, the built-in "demo-translator", method "alti_plus" over its
synthetic sentence pairs (targets given).

Ray runs on a local cluster started once here (`ray.init(num_cpus=--cpus)`), so its start-up is
not counted; every run's actors start and load the model anew, which is counted. Columns:
"compute s" is the manifest's compute time (the local engine: the batches; Ray: the actor pool,
model loads in the actors included), "wall s" the whole call (validation, which loads the model
once in the driver, included). "overhead" is Ray's wall time over the local engine's (equal
work; the local engine is one process that uses all CPUs, so "workers" = 1). "examples/s per
busy actor": rows over the actors' summed seconds in batches (the manifest's `batches_s`), i.e.
one actor's steady-state speed without its start-up and model load. Not a test:
numbers depend on the machine and on what else runs on it. Quote them with the machine.
"""

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's alti_lens


def save_gpt2_small(path: Path, n_ctx: int) -> Path:
    """A random GPT-2-small-shaped checkpoint with a word-level tokenizer (no download)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    from alti_lens.demo.data import INDUCTION_WORDS

    torch.manual_seed(0)
    words = ["<bos>", "<pad>", "<unk>", *sorted(set(INDUCTION_WORDS))]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<bos>", pad_token="<pad>",
        unk_token="<unk>", padding_side="right",
    )  # fmt: skip
    cfg = GPT2Config(
        n_layer=12, n_embd=768, n_head=12, n_positions=n_ctx, vocab_size=50_257,
        bos_token_id=vocab["<bos>"], eos_token_id=vocab["<bos>"], pad_token_id=vocab["<pad>"],
    )  # fmt: skip
    GPT2LMHeadModel(cfg).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def corpus_files(root: Path, examples: int, words: int) -> dict[str, tuple[str, str, Path]]:
    """name → (model, method, input JSONL)."""
    import random

    from alti_lens.demo.data import INDUCTION_WORDS, translation_pairs

    rng = random.Random(0)
    pool = sorted(set(INDUCTION_WORDS))
    texts = root / "texts.jsonl"
    with texts.open("w") as f:
        for i in range(examples):
            n = rng.randint(words // 2, words)  # lengths vary: the engines bucket them
            f.write(json.dumps({"id": f"t{i}", "text": " ".join(rng.choices(pool, k=n))}) + "\n")
    pairs = root / "pairs.jsonl"
    with pairs.open("w") as f:
        for i, p in enumerate(translation_pairs(examples, seed=0)):
            record = {"id": f"p{i}", "source": " ".join(p.source), "target": " ".join(p.target)}
            f.write(json.dumps(record) + "\n")
    gpt2 = save_gpt2_small(root / "gpt2-small", n_ctx=max(64, words + 8))
    return {
        "gpt2-small": (str(gpt2), "alti", texts),
        "translator": ("demo-translator", "alti_plus", pairs),
    }


def measure(model: str, method: str, input: Path, out: Path, engine: str, workers: int, batch: int):
    from alti_lens import corpus

    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    manifest = corpus.run(
        model, input, out, method=method, engine=engine, workers=workers, batch_size=batch,
        quiet=True,
    )  # fmt: skip
    wall = time.perf_counter() - start
    n = manifest["counts"]["computed"]
    timings = manifest["timings"]
    return {"n": n, "wall": wall, "compute": timings["compute_s"], "busy": timings.get("batches_s")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["gpt2-small", "translator"])
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--words", type=int, default=24, help="longest gpt2-small text, words")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import ray

    root = Path(tempfile.mkdtemp(prefix="bench_corpus_"))
    try:
        files = corpus_files(root, args.examples, args.words)
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        print(
            f"{platform.processor() or platform.machine()}, {args.cpus} CPUs for Ray, "
            f"{os.cpu_count()} cores; ray {ray.__version__}; {args.examples} examples, "
            f"batch size {args.batch_size}\n"
        )
        print(
            "| model (method) | engine | workers | wall s | compute s | examples/s (wall) "
            "| examples/s (compute) | Ray overhead (wall) | examples/s per busy actor |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for name in args.models:
            model, method, input = files[name]
            runs = [("local", 1)] + [("ray", w) for w in args.workers]
            local_wall = None
            for engine, workers in runs:
                r = measure(model, method, input, root / "out", engine, workers, args.batch_size)
                local_wall = r["wall"] if engine == "local" else local_wall
                overhead = "" if engine == "local" else f"{r['wall'] / local_wall:.2f}×"
                busy = f"{r['n'] / r['busy']:.2f}" if r["busy"] else ""
                print(
                    f"| {name} ({method}) | {engine} | {workers} | {r['wall']:.1f} | "
                    f"{r['compute']:.1f} | {r['n'] / r['wall']:.2f} | "
                    f"{r['n'] / r['compute']:.2f} | {overhead} | {busy} |",
                    flush=True,
                )
    finally:
        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
