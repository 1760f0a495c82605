"""Time and peak memory of `alti()` against a plain forward pass of the same model, random weights.

    python benchmarks/bench_alti.py                        # CPU: GPT-2 small, 128/512/2,048 tokens
    python benchmarks/bench_alti.py --lengths 512 --repeats 5
    python benchmarks/bench_alti.py --compare              # + chunked PyTorch path, rows="last"
    python benchmarks/bench_alti.py --variants last last-reference --lengths 512 2048
    python benchmarks/bench_alti.py --device cuda          # the GPU rows: GPT-2 small @1,024 and
                                                           # the Llama-3-8B shape @4,096 (bf16)
    python benchmarks/bench_alti.py --baseline main --lengths 128 512 --rounds 3
                                                           # before (a git revision) and after

Variants: `fused` (default: `alti()` as shipped, the fused kernel of the device), `reference` (the
straightforward chunked PyTorch path, `ALTI_LENS_KERNEL=reference`), `last` (`rows="last"`: the
rollout of the last token only), `last-reference` (both).

`--baseline REV` also measures the `alti_lens` of a git revision (extracted with `git archive`
into a temporary directory, first on the children's `sys.path`; its kernel builds into its own
cache entry), alternating with the working tree's, `--rounds` times per length and variant: the
"code" column says which; the times and ratios are medians over the rounds of each child's
medians. Both see the same load, and the same forward pass.

Each measurement runs in a fresh subprocess so that peak memory belongs to that measurement
alone: on a CPU the process's maximum resident memory (ru_maxrss), on CUDA the allocator's peak
(`torch.cuda.max_memory_allocated`). "extra" is alti's peak minus the forward pass's peak.
Not a test: numbers depend on the machine. Quote them with the machine they came from.
"""

import argparse
import atexit
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

PRESETS = {
    # name: (layers, d_model, heads, kv_heads, weight dtype)
    "gpt2-small": (12, 768, 12, 12, "float32"),
    "llama3-8b": (32, 4096, 32, 8, "bfloat16"),
}
VARIANTS = {  # name: (ALTI_LENS_KERNEL, rows)
    "fused": ("auto", "all"),
    "reference": ("reference", "all"),
    "last": ("auto", "last"),
    "last-reference": ("reference", "last"),
}


def build(args: argparse.Namespace, n_ctx: int):
    """A randomly initialised model of the preset's shape (overridable), as a TransformerBridge."""
    import torch
    from transformer_lens.model_bridge.sources._bridge_builder import build_bridge_from_module
    from transformer_lens.utilities.attn_implementation import force_eager_attention

    torch.manual_seed(0)
    layers, d_model, heads, kv_heads, dtype_name = PRESETS[args.preset]
    layers = args.layers or layers
    d_model = args.d_model or d_model
    heads = args.heads or heads
    kv_heads = args.kv_heads or (heads if args.preset == "gpt2-small" else kv_heads)
    dtype = getattr(torch, dtype_name)
    device = torch.device(args.device)
    with torch.device(device):
        if args.preset == "gpt2-small":
            from transformers import GPT2Config, GPT2LMHeadModel

            cfg = GPT2Config(n_layer=layers, n_embd=d_model, n_head=heads, n_positions=n_ctx)
            hf, arch = GPT2LMHeadModel(cfg), "GPT2LMHeadModel"
        else:
            from transformers import LlamaConfig, LlamaForCausalLM

            cfg = LlamaConfig(
                hidden_size=d_model, intermediate_size=int(d_model * 3.5), num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=128_256,
                max_position_embeddings=max(n_ctx, 8192), rope_theta=500_000.0,
            )  # fmt: skip
            # Weights drawn directly in bf16 on the device: 8B float32 parameters would not fit.
            default = torch.get_default_dtype()
            torch.set_default_dtype(dtype)
            try:
                hf, arch = LlamaForCausalLM(cfg), "LlamaForCausalLM"
            finally:
                torch.set_default_dtype(default)
    hf = hf.to(dtype).eval()
    force_eager_attention(hf)  # hook_pattern fires only with eager attention
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_bridge_from_module(hf, arch, hf_config=hf.config).eval()


def child(args: argparse.Namespace) -> None:
    if os.environ.get("ALTI_BENCH_SOURCE"):  # --baseline: that revision's alti_lens first
        sys.path.insert(0, os.environ["ALTI_BENCH_SOURCE"])
    import torch

    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    model = build(args, max(args.length, 1024))
    vocab = 50_000 if args.preset == "gpt2-small" else 128_000
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, vocab, (1, args.length), generator=gen).to(args.device)

    def forward() -> None:
        with torch.inference_mode():
            model(tokens)

    def run_alti() -> None:
        from alti_lens import alti

        alti(model, tokens, rows=args.rows)

    def timed(run: Callable[[], None]) -> tuple[float, float]:
        """Wall-clock and CPU time (all threads of this process) of one run."""
        start, cpu = time.perf_counter(), time.process_time()
        run()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start, time.process_time() - cpu

    runs = [forward] if args.mode == "forward" else [forward, run_alti]
    for run in runs:
        run()  # warm-up (lazy bridge set-up, allocator, kernel compilation)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    # Forward and alti alternate in one process, so that both see the same load on a shared machine.
    times: list[list[float]] = [[] for _ in runs]
    cpu_times: list[list[float]] = [[] for _ in runs]
    for _ in range(args.repeats):
        for k, run in enumerate(runs):
            wall, cpu = timed(run)
            times[k].append(wall)
            cpu_times[k].append(cpu)
    if cuda:
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratios = [a / f for f, a in zip(times[0], times[-1], strict=True)]
    cpu_ratios = [a / f for f, a in zip(cpu_times[0], cpu_times[-1], strict=True)]
    import alti_lens

    result = {
        "alti_lens": alti_lens.__file__,  # which code was measured (--baseline)
        "seconds": statistics.median(times[-1]),
        "forward_seconds": statistics.median(times[0]),
        "ratio": statistics.median(ratios),
        "cpu_ratio": statistics.median(cpu_ratios),
        "peak_mb": peak_mb,
        "times": times,
    }
    print(json.dumps(result))


def measure(
    args: argparse.Namespace, length: int, mode: str, variant: str = "fused", source: str = ""
) -> dict:
    """One child process; `source`: a directory holding another `alti_lens` to measure."""
    kernel, rows = VARIANTS[variant]
    repeats = 1 if length >= 2048 and args.device == "cpu" else args.repeats
    cmd = [sys.executable, __file__, "--child", "--mode", mode, "--length", str(length)]
    cmd += ["--repeats", str(repeats), "--threads", str(args.threads), "--rows", rows]
    cmd += ["--device", args.device, "--preset", args.preset]
    for flag, value in (
        ("--layers", args.layers),
        ("--d-model", args.d_model),
        ("--heads", args.heads),
        ("--kv-heads", args.kv_heads),
    ):
        if value:
            cmd += [flag, str(value)]
    env = {**os.environ, "ALTI_LENS_KERNEL": kernel, "ALTI_BENCH_SOURCE": source}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def table(args: argparse.Namespace, lengths: list[int]) -> None:
    import torch

    layers, d_model, heads, kv_heads, dtype = PRESETS[args.preset]
    where = (
        torch.cuda.get_device_name() if args.device == "cuda"
        else f"{platform.processor() or platform.machine()}, {args.threads} threads"
    )  # fmt: skip
    print(
        f"\n{args.preset} shape (layers {args.layers or layers}, "
        f"d_model {args.d_model or d_model}, heads {args.heads or heads}, "
        f"kv heads {args.kv_heads or kv_heads}), random {dtype} "
        f"weights, float32 ALTI, {where}, torch {torch.__version__}; median of {args.repeats}"
        + (" (1 at 2,048+ tokens)" if args.device == "cpu" else "")
    )
    print(
        "forward (s): the plain forward pass timed in the same process, alternating with alti; "
        "ratio: median of the per-repeat ratios alti / forward (wall clock); CPU ratio: the "
        "same with the process's CPU time (less sensitive to other load on a shared machine); "
        "forward peak: a process that runs the forward pass only"
    )
    codes = [("", "working tree")]
    if args.baseline_dir:
        codes = [(args.baseline_dir, args.baseline), *codes]
    cols = ["tokens", "variant"] + (["code"] if args.baseline_dir else [])
    cols += ["forward (s)", "alti (s)", "ratio", "CPU ratio", "forward peak (MB)"]
    cols += ["alti peak (MB)", "extra (MB)"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for length in lengths:
        fwd = measure(args, length, "forward")
        for variant in args.variants:
            runs: dict[str, list[dict]] = {name: [] for _, name in codes}
            for _ in range(args.rounds if args.baseline_dir else 1):
                for source, name in codes:
                    runs[name].append(measure(args, length, "alti", variant, source))
            for _, name in codes:
                alt = {
                    key: statistics.median(r[key] for r in runs[name])
                    for key in ("forward_seconds", "seconds", "ratio", "cpu_ratio", "peak_mb")
                }
                code = [name] if args.baseline_dir else []
                cells = [str(length), variant, *code, f"{alt['forward_seconds']:.3f}"]
                cells += [
                    f"{alt['seconds']:.3f}",
                    f"{alt['ratio']:.2f}×",
                    f"{alt['cpu_ratio']:.2f}×",
                ]
                cells += [f"{fwd['peak_mb']:.0f}", f"{alt['peak_mb']:.0f}"]
                cells += [f"{alt['peak_mb'] - fwd['peak_mb']:.0f}"]
                print("| " + " | ".join(cells) + " |", flush=True)


def extract(revision: str) -> str:
    """`alti_lens` as of a git revision, in a temporary directory (removed at exit)."""
    root = Path(__file__).resolve().parent.parent
    target = tempfile.mkdtemp(prefix="alti-baseline-")
    atexit.register(shutil.rmtree, target, ignore_errors=True)
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "alti_lens"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--preset", choices=list(PRESETS), default=None)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["fused"])
    parser.add_argument("--compare", action="store_true", help="variants fused, reference and last")
    parser.add_argument("--reference", action="store_true", help="add the reference variant")
    parser.add_argument("--baseline", help="also measure alti_lens at this git revision (before)")
    parser.add_argument("--rounds", type=int, default=1, help="with --baseline: alternations")
    # Shape overrides (e.g. a small Llama-shaped model to try the script on a CPU).
    parser.add_argument("--layers", type=int, default=0)
    parser.add_argument("--d-model", type=int, default=0)
    parser.add_argument("--heads", type=int, default=0)
    parser.add_argument("--kv-heads", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["forward", "alti"], help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rows", default="all", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    args.baseline_dir = extract(args.baseline) if args.baseline else ""
    if args.compare:
        args.variants = ["fused", "reference", "last"]
    elif args.reference and "reference" not in args.variants:
        args.variants.append("reference")
    if args.device == "cuda" and args.preset is None and args.lengths is None:
        # The GPU rows of the performance targets.
        for preset, length in (("gpt2-small", 1024), ("llama3-8b", 4096)):
            args.preset = preset
            table(args, [length])
        return
    args.preset = args.preset or "gpt2-small"
    table(args, args.lengths or ([128, 512, 2048] if args.device == "cpu" else [1024]))


if __name__ == "__main__":
    main()
