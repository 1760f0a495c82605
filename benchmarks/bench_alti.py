"""Time and peak memory of `alti()` against a plain forward pass, GPT-2-small shape, random weights.

    python benchmarks/bench_alti.py                      # 128, 512 and 2,048 tokens, 2 threads
    python benchmarks/bench_alti.py --lengths 512 --repeats 5
    python benchmarks/bench_alti.py --reference          # also time the chunked PyTorch path

Each measurement runs in a fresh subprocess so that peak resident memory (ru_maxrss) belongs to
that measurement alone; "extra memory" is alti's peak minus the forward pass's peak.
Not a test: numbers depend on the machine. Quote them with the machine they came from.
"""

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings


def build(n_ctx: int, layers: int, d_model: int, heads: int):
    import torch
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module
    from transformer_lens.utilities.attn_implementation import force_eager_attention
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=layers, n_embd=d_model, n_head=heads, n_positions=n_ctx)
    hf = GPT2LMHeadModel(cfg).eval()
    force_eager_attention(hf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_bridge_from_module(hf, "GPT2LMHeadModel", hf_config=hf.config).eval()


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    model = build(max(args.length, 1024), args.layers, args.d_model, args.heads)
    tokens = torch.randint(0, 50_000, (1, args.length), generator=torch.Generator().manual_seed(1))
    if args.mode == "forward":

        def run() -> None:
            with torch.inference_mode():
                model(tokens)
    else:
        from alti_lens import alti

        def run() -> None:
            alti(model, tokens)

    run()  # warm-up (lazy bridge set-up, allocator)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": statistics.median(times), "peak_mb": peak_mb}))


def measure(args: argparse.Namespace, length: int, mode: str, kernel: str = "auto") -> dict:
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--length", str(length)]
    cmd += ["--repeats", str(1 if length >= 2048 else args.repeats), "--threads", str(args.threads)]
    cmd += [
        "--layers",
        str(args.layers),
        "--d-model",
        str(args.d_model),
        "--heads",
        str(args.heads),
    ]
    env = {**os.environ, "ALTI_LENS_KERNEL": kernel}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument(
        "--reference", action="store_true", help="also time the chunked PyTorch reference path"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["forward", "alti"], help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    import torch

    print(
        f"GPT-2-small shape (layers {args.layers}, d_model {args.d_model}, heads {args.heads}), "
        f"random weights, float32, {args.threads} threads, torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}; median of {args.repeats} "
        "(1 at 2,048 tokens)"
    )
    columns = ["tokens", "forward (s)", "alti (s)", "ratio", "forward peak (MB)", "alti peak (MB)"]
    extra = ["reference alti (s)", "reference ratio"] if args.reference else []
    print("| " + " | ".join([*columns, "extra (MB)", *extra]) + " |")
    print("|" + "---|" * (7 + len(extra)))
    for length in args.lengths:
        fwd = measure(args, length, "forward")
        alt = measure(args, length, "alti")
        print(
            f"| {length} | {fwd['seconds']:.3f} | {alt['seconds']:.3f} | "
            f"{alt['seconds'] / fwd['seconds']:.2f}× | {fwd['peak_mb']:.0f} | "
            f"{alt['peak_mb']:.0f} | {alt['peak_mb'] - fwd['peak_mb']:.0f} |",
            end="",
        )
        if args.reference:
            ref = measure(args, length, "alti", kernel="reference")
            print(f" {ref['seconds']:.3f} | {ref['seconds'] / fwd['seconds']:.2f}× |", end="")
        print(flush=True)


if __name__ == "__main__":
    main()
