"""Where `alti()`'s time goes, by stage, against a plain forward pass (GPT-2-small shape, random).

    python benchmarks/profile_alti.py --length 512              # CPU time, 1 thread
    python benchmarks/profile_alti.py --length 512 --wall --threads 2
    python benchmarks/profile_alti.py --length 128 --full-forward   # without the early stop

Each stage of `alti_lens` is wrapped with a timer for the run: the decomposition, the contribution
kernel, the whole measure (kernel + support masks + scores), the exactness check, the
normalisation and the rollout; the read-out's finite checks and its hook bodies as a whole ("hooks":
everything done inside the forward pass's hooks, the stages above included). What is left of
`alti` minus the stages is the forward pass with the read-out hooks, which `alti` stops once the
last block's attention has been read (the last MLP, final norm and unembedding are not run);
`--full-forward` runs it whole, as before that change. CPU time (default, summed over the
process's threads) is far less sensitive than wall-clock time to other processes on a shared
machine. Not a test.
"""

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--wall", action="store_true", help="wall-clock instead of CPU time")
    parser.add_argument("--rows", default="all", choices=["all", "last"])
    parser.add_argument(
        "--full-forward", action="store_true", help="run the forward pass whole (no early stop)"
    )
    args = parser.parse_args()

    import torch
    from bench_alti import build

    import alti_lens._measure as measure
    import alti_lens.api as api
    import alti_lens.core.kernels.fused as fused
    import alti_lens.core.measures as contributions
    import alti_lens.readout.run as run
    import alti_lens.readout.single as single
    from alti_lens import alti

    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.wall else time.process_time
    model = build(argparse.Namespace(preset="gpt2-small", layers=0, d_model=0, heads=0,
                                     kv_heads=0, device="cpu"), max(1024, args.length))  # fmt: skip
    tokens = torch.randint(0, 50_000, (1, args.length), generator=torch.Generator().manual_seed(1))
    spent: dict[str, float] = {}

    def wrap(module: Any, name: str, label: str) -> None:
        inner: Callable[..., Any] = getattr(module, name)

        def timed(*a: Any, **k: Any) -> Any:
            start = clock()
            try:
                return inner(*a, **k)
            finally:
                spent[label] = spent.get(label, 0.0) + clock() - start

        setattr(module, name, timed)

    wrap(measure, "decompose_block", "decompose")
    wrap(measure, "scores_and_sums", "measure (kernel + masks)")
    wrap(contributions.fused, "distances", "kernel")
    wrap(measure, "check_exact", "check")
    wrap(measure, "normalise", "normalise")
    wrap(api, "rollout", "rollout")  # after the run, on the padded matrices
    wrap(api, "last_row_rollout", "rollout")
    wrap(run, "_check_finite", "finite")
    assert contributions.fused is fused
    plans = single.run_plans

    def run_plans(*a: Any, **k: Any) -> Any:
        if args.full_forward:
            k["stop_early"] = False
        return plans(*a, **k)

    single.run_plans = run_plans
    model_class: Any = type(model)
    run_with_hooks = model_class.run_with_hooks

    def timed_hooks(self: Any, input: Any, fwd_hooks: Any = (), **k: Any) -> Any:
        def timed(fn: Callable[..., Any]) -> Callable[..., Any]:
            def hook(*a: Any, **kw: Any) -> Any:
                start = clock()
                try:
                    return fn(*a, **kw)
                finally:
                    spent["hooks"] = spent.get("hooks", 0.0) + clock() - start

            return hook

        return run_with_hooks(self, input, fwd_hooks=[(n, timed(f)) for n, f in fwd_hooks], **k)

    model_class.run_with_hooks = timed_hooks

    def forward() -> None:
        with torch.inference_mode():
            model(tokens)

    alti(model, tokens, rows=args.rows)
    forward()
    print(f"GPT-2-small shape, {args.length} tokens, {args.threads} thread(s), "
          f"{'wall-clock' if args.wall else 'CPU'} seconds, rows={args.rows!r}"
          + (", whole forward pass" if args.full_forward else ""))  # fmt: skip
    for _ in range(args.repeats):
        start = clock()
        forward()
        fwd = clock() - start
        spent.clear()
        start = clock()
        alti(model, tokens, rows=args.rows)
        total = clock() - start
        stages = ", ".join(f"{k} {v:.3f}" for k, v in spent.items())
        print(f"forward {fwd:.3f} | alti {total:.3f} ({total / fwd:.2f}×) | {stages}", flush=True)


if __name__ == "__main__":
    main()
