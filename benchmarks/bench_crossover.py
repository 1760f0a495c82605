"""Where the C++ kernel starts to pay: one causal layer, kernel against PyTorch path, per length.

    python benchmarks/bench_crossover.py                  # GPT-2-small and demo shapes, 8..512
    python benchmarks/bench_crossover.py --lengths 16 32 64 --repeats 21 --threads 2

Times `source_scores(terms, "l1", kernel=...)` ("reference": the chunked PyTorch path; "fused":
the C++ kernel) on random float32 tensors of one causal layer (GPT-2-small: 12 heads, d_model
768; the demo induction model: 4 heads, d_model 64), median of `--repeats`, wall-clock and CPU
time. A causal layer of n tokens has n(n+1)/2 attended (query row, key) pairs, the quantity
`alti_lens.core.kernels.dispatch.choose` compares with `CROSSOVER_PAIRS`. The crossover printed
is the shortest length from which the kernel is faster by at least `--margin` (ratio) and
`--min-ms` per layer at that and every longer length measured. It also compiles the kernel once
into an empty temporary cache and says how many layers (and GPT-2-small 12-layer inputs) at each
length repay that compile. Not a test: quote the numbers with the machine they came from.
"""

import argparse
import os
import statistics
import tempfile
import time

SHAPES = {"gpt2-small": (12, 768, 12), "demo": (4, 64, 2)}  # heads, d_model, layers


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--lengths", type=int, nargs="+", default=[8, 16, 32, 64, 96, 128, 256, 512]
    )
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument(
        "--margin", type=float, default=2.0, help="kernel at least this much faster"
    )
    parser.add_argument(
        "--min-ms", type=float, default=2.0, help="and saves at least this per layer"
    )
    args = parser.parse_args()

    # The compile, first, into an empty cache: the cost that the savings below must repay.
    os.environ["TORCH_EXTENSIONS_DIR"] = tempfile.mkdtemp(prefix="alti-crossover-")
    import torch

    from alti_lens.core.decompose import AttentionTerms
    from alti_lens.core.kernels import dispatch, fused
    from alti_lens.core.measures import source_scores

    wall, cpu = time.perf_counter(), time.process_time()
    fused._state.clear()
    assert fused.extension() is not None, "the kernel could not be built"
    compile_s = time.perf_counter() - wall
    print(f"compile: {compile_s:.2f} s wall, {time.process_time() - cpu:.2f} s CPU in this "
          f"process (the compiler runs in a child); cache {fused.cache_dir()}")  # fmt: skip

    torch.set_num_threads(args.threads)
    print(f"one causal layer, float32, cpu, {args.threads} threads; median of {args.repeats}; "
          f"CROSSOVER_PAIRS = {dispatch.CROSSOVER_PAIRS}")  # fmt: skip
    for shape in args.shapes:
        heads, d_model, layers = SHAPES[shape]
        print(f"\n{shape} (heads {heads}, d_model {d_model})")
        print("| tokens | pairs | reference wall / CPU (ms) | fused wall / CPU (ms) | ratio | "
              "saved per layer (ms) | layers to repay the compile |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        rows = []
        for n in args.lengths:
            gen = torch.Generator().manual_seed(n)
            causal = torch.ones(n, n, dtype=torch.bool).triu(1)
            pattern = torch.randn(heads, n, n, generator=gen).masked_fill(causal, -torch.inf)
            pattern = pattern.softmax(-1)
            values = torch.randn(n, heads, d_model, generator=gen)
            residual = torch.randn(n, d_model, generator=gen) * 3
            output = torch.einsum("hqk,khd->qd", pattern, values) + residual
            terms = AttentionTerms(
                pattern, None, values, residual, torch.zeros_like(residual), output
            )
            times = {}
            for kernel in ("reference", "fused"):
                source_scores(terms, "l1", kernel=kernel)  # warm-up
                walls, cpus = [], []
                for _ in range(args.repeats):
                    wall, cpu = time.perf_counter(), time.process_time()
                    source_scores(terms, "l1", kernel=kernel)
                    walls.append(time.perf_counter() - wall)
                    cpus.append(time.process_time() - cpu)
                times[kernel] = (statistics.median(walls) * 1e3, statistics.median(cpus) * 1e3)
            (ref, ref_cpu), (fus, fus_cpu) = times["reference"], times["fused"]
            saved = ref - fus
            repay = f"{compile_s * 1e3 / saved:.0f}" if saved > 0 else "never"
            rows.append((n, ref / fus, saved))
            cells = [
                n,
                n * (n + 1) // 2,
                f"{ref:.2f} / {ref_cpu:.2f}",
                f"{fus:.2f} / {fus_cpu:.2f}",
            ]
            cells += [f"{ref / fus:.2f}×", f"{saved:.2f}", repay]
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)
        pays = [r[1] >= args.margin and r[2] >= args.min_ms for r in rows]
        cross = next((rows[i][0] for i in range(len(rows)) if all(pays[i:])), None)
        if cross is None:
            print(f"crossover: the kernel never pays by {args.margin}× and {args.min_ms} ms here")
        else:
            saved = next(r[2] for r in rows if r[0] == cross)
            inputs = compile_s * 1e3 / (saved * layers)
            print(f"crossover: from {cross} tokens ({cross * (cross + 1) // 2} pairs) the kernel "
                  f"is ≥ {args.margin}× and ≥ {args.min_ms} ms per layer faster; at that length "
                  f"{inputs:.1f} {layers}-layer inputs repay the compile")  # fmt: skip


if __name__ == "__main__":
    main()
