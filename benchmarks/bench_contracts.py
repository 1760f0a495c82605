"""What the entry points' contracts cost per call: the shape check of the inner functions
(`@jaxtyped(typechecker=beartype)`) and the `HookedModel` protocol check, next to a whole call.

    python benchmarks/bench_contracts.py                  # the built-in demo-induction model
    python benchmarks/bench_contracts.py --repeats 2001 --text "a b c"

For each inner function (`api._alti`, `plus._alti_plus`, `logit_api._alti_logit`) a function with
the same annotations and an empty body is timed with and without the decorator, on the arguments
the entry point passes (the difference is the check: binding, beartype's isinstance checks and
jaxtyping's shape memo); `isinstance(model, HookedModel)` is timed on the model; `alti(model,
text)` is timed whole for scale. Medians of `--repeats` calls. Run it without pytest (whose import
hook checks every function of the package). Not a test: quote the numbers with the machine.
"""

import argparse
import inspect
import statistics
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from beartype import beartype
from jaxtyping import jaxtyped

import alti_lens
from alti_lens import api, logit_api, plus, readout
from alti_lens._measure import Request, Validated


def median_us(call: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def empty_twin(original: Callable[..., Any]) -> Callable[..., Any]:
    """An empty function with `original`'s parameters and annotations (the return's left out)."""
    params = list(inspect.signature(original).parameters)
    namespace: dict[str, Any] = {}
    exec(f"def empty({', '.join(params)}):\n    return None", namespace)
    empty = namespace["empty"]
    empty.__annotations__ = {k: v for k, v in original.__annotations__.items() if k != "return"}
    return empty


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--model", default="demo-induction")
    parser.add_argument("--text", default="a b c d e f g h a b c d e f g h")
    parser.add_argument("--repeats", type=int, default=1001)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    model = alti_lens.load_model(args.model, progress=False)
    info = readout.describe(model)
    tokens, mask = readout.tokenize(model, [args.text])
    call = Validated(model, info, Request())
    rows = targets = torch.tensor([tokens.shape[1] - 1])
    cases = {
        "_alti": (api._alti, (call, tokens, mask, False)),
        "_alti_logit": (logit_api._alti_logit, (call, tokens, mask, rows, targets, None)),
        # the shapes are what is checked: the single-stack model serves as an encoder-decoder's
        "_alti_plus": (plus._alti_plus, (call, tokens, mask, tokens, mask, tokens, False)),
    }
    print(
        f"model {args.model}, {tokens.shape[1]} tokens, {args.threads} threads, medians of "
        f"{args.repeats} calls"
    )
    for name, (inner, arguments) in cases.items():
        original = inspect.unwrap(inner)
        bare, checked = empty_twin(original), jaxtyped(typechecker=beartype)(empty_twin(original))
        plain = median_us(lambda f=bare, a=arguments: f(*a), args.repeats)
        typed = median_us(lambda f=checked, a=arguments: f(*a), args.repeats)
        print(
            f"{name:12s} shape check: {typed - plain:7.1f} µs per call "
            f"({typed:.1f} with, {plain:.1f} without)"
        )
    protocol = median_us(lambda: isinstance(model, readout.HookedModel), args.repeats)
    print(f"isinstance(model, HookedModel): {protocol:.1f} µs")
    whole = median_us(lambda: alti_lens.alti(model, args.text), max(5, args.repeats // 50))
    print(f"alti(model, text), whole call: {whole / 1000:.1f} ms")


if __name__ == "__main__":
    main()
