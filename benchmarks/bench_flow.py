"""Time and peak memory of `flow_graph()` next to `alti()` and a plain forward pass (GPT-2-small
shape, random weights).

    python benchmarks/bench_flow.py                          # 128 and 512 tokens, 2 threads
    python benchmarks/bench_flow.py --lengths 128 --repeats 5 --methods alti flow

Methods: `alti` (token level), `alti-heads` (`alti(per_head=True)`), `flow` (`flow_graph()`),
`flow-neurons` (`flow_graph(neurons=True)`). Each runs in a fresh subprocess (peak memory is that
process's maximum resident memory, ru_maxrss), alternating with the forward pass so that both see
the same load; times are medians over `--repeats`, "× forward" the median of the per-repeat ratios.
Not a test: numbers depend on the machine. Quote them with the machine they came from.
"""

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

METHODS = ("alti", "alti-heads", "flow", "flow-neurons")


def child(args: argparse.Namespace) -> None:
    import torch
    from bench_alti import build

    from alti_lens import alti, flow_graph

    torch.set_num_threads(args.threads)
    args.preset, args.device = "gpt2-small", "cpu"
    args.layers = args.d_model = args.heads = args.kv_heads = 0
    model = build(args, max(args.length, 1024))
    tokens = torch.randint(0, 50_000, (1, args.length), generator=torch.Generator().manual_seed(1))
    calls = {
        "alti": lambda: alti(model, tokens),
        "alti-heads": lambda: alti(model, tokens, per_head=True),
        "flow": lambda: flow_graph(model, tokens),
        "flow-neurons": lambda: flow_graph(model, tokens, neurons=True),
    }

    def forward() -> None:
        with torch.inference_mode():
            model(tokens)

    run = calls[args.method]
    forward()
    run()  # warm-up: lazy bridge set-up, kernel compilation
    times: list[list[float]] = [[], []]
    for _ in range(args.repeats):
        for k, call in enumerate((forward, run)):
            start = time.perf_counter()
            call()
            times[k].append(time.perf_counter() - start)
    ratios = [m / f for f, m in zip(*times, strict=True)]
    print(json.dumps({
        "seconds": statistics.median(times[1]),
        "forward_seconds": statistics.median(times[0]),
        "ratio": statistics.median(ratios),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


def measure(args: argparse.Namespace, method: str, length: int) -> dict:
    cmd = [sys.executable, __file__, "--child", "--method", method, "--length", str(length)]
    cmd += ["--repeats", str(args.repeats), "--threads", str(args.threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(f"GPT-2-small shape, random weights, {platform.machine()}, {args.threads} threads, "
          f"median of {args.repeats}")  # fmt: skip
    print("| tokens | method | seconds | forward s | × forward | peak MB |")
    print("|---|---|---|---|---|---|")
    for length in args.lengths:
        for method in args.methods:
            r = measure(args, method, length)
            print(
                f"| {length} | {method} | {r['seconds']:.3f} | {r['forward_seconds']:.3f} | "
                f"{r['ratio']:.2f} | {r['peak_mb']:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
