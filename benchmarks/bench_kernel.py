"""One causal attention layer's contribution scores, per kernel (GPT-2-small shape, synthetic).

    python benchmarks/bench_kernel.py --lengths 128 512 2048
    python benchmarks/bench_kernel.py --device cuda --heads 32 --d-model 4096 --lengths 4096

Times `source_scores(terms, "l1", kernel=...)` on random tensors of one layer's shape (softmax
causal attention, values, residual, output) for the chunked PyTorch path ("reference") and the
fused kernel of the device (C++ on a CPU, Triton on CUDA). Median of `--repeats`; wall-clock and
CPU time (summed over threads). Not a test.
"""

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--kernels", nargs="+", default=["reference", "fused"])
    args = parser.parse_args()

    import torch

    from alti_lens.core.decompose import AttentionTerms
    from alti_lens.core.measures import source_scores

    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    where = args.device if cuda else f"cpu, {args.threads} threads"
    print(f"one causal layer, heads {args.heads}, d_model {args.d_model}, float32, {where}; "
          f"median of {args.repeats}")  # fmt: skip
    print("| tokens | kernel | wall (s) | CPU (s) |\n|---|---|---|---|")
    for n in args.lengths:
        gen = torch.Generator().manual_seed(0)
        causal = torch.ones(n, n, dtype=torch.bool).triu(1)
        scores = torch.randn(args.heads, n, n, generator=gen).masked_fill(causal, float("-inf"))
        pattern = scores.softmax(-1)
        values = torch.randn(n, args.heads, args.d_model, generator=gen)
        residual = torch.randn(n, args.d_model, generator=gen) * 3
        output = torch.einsum("hqk,khd->qd", pattern, values) + residual
        dev = torch.device(args.device)
        terms = AttentionTerms(
            pattern.to(dev), None, values.to(dev), residual.to(dev),
            torch.zeros_like(residual).to(dev), output.to(dev),
        )  # fmt: skip
        for kernel in args.kernels:
            source_scores(terms, "l1", kernel=kernel)  # warm-up (compilation)
            walls, cpus = [], []
            for _ in range(args.repeats):
                wall, cpu = time.perf_counter(), time.process_time()
                source_scores(terms, "l1", kernel=kernel)
                if cuda:
                    torch.cuda.synchronize()
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
            print(
                f"| {n} | {kernel} | {statistics.median(walls):.3f} | "
                f"{statistics.median(cpus):.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
