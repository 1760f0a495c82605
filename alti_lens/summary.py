"""Plain-text summaries of results for a terminal (used by the `alti-lens` command line).

Each function returns a string (no printing here); colour is ANSI and optional, so the same text
reads the same when piped to a file.
"""

from torch import Tensor

from .results import AltiLogitResult, AltiPlusResult, AltiResult

_BAR = "█"


def _bar(value: float, width: int = 20) -> str:
    return _BAR * max(0, min(width, round(value * width)))


def _shade(token: str, value: float, colour: bool) -> str:
    """A token on a background whose strength follows `value` in [0, 1] (ANSI 256 colours)."""
    if not colour:
        return token
    # the 256-colour ramp from white (231) through light to deep blue
    ramp = [231, 195, 159, 123, 117, 111, 75, 69, 33, 27]
    code = ramp[max(0, min(len(ramp) - 1, int(value * (len(ramp) - 1) + 0.5)))]
    fg = 16 if code in (231, 195, 159, 123, 117) else 231
    return f"\x1b[48;5;{code}m\x1b[38;5;{fg}m{token}\x1b[0m"


def coloured_row(tokens: list[str], values: Tensor, *, colour: bool) -> str:
    """The tokens of one row, each shaded by its value relative to the row's maximum; without
    colour, each token is followed by its value in brackets."""
    top = float(values.max()) if len(values) else 0.0
    parts = []
    for token, value in zip(tokens, values.tolist(), strict=True):
        shown = token.replace("\n", "\\n")
        if colour:
            parts.append(_shade(shown, value / top if top > 0 else 0.0, colour))
        else:
            parts.append(f"{shown}[{value:.2f}]")
    return " ".join(parts)


def _table(rows: list[tuple[int, str, float]]) -> list[str]:
    width = max((len(repr(token)) for _, token, _ in rows), default=0)
    return [
        f"  {rank:>2}. pos {pos:>4}  {token!r:<{width}}  {value:7.4f}  {_bar(value)}"
        for rank, (pos, token, value) in enumerate(rows, start=1)
    ]


def explain_summary(
    result: AltiResult,
    *,
    model: str,
    position: int,
    layer: int,
    k: int,
    colour: bool,
    prediction: tuple[str, float] | None = None,
    logit: AltiLogitResult | None = None,
) -> str:
    """What `alti-lens explain` prints: the text shaded by the chosen row, its top sources, and
    (decoder models) the model's prediction with the tokens that pushed it (ALTI-Logit)."""
    n = int(result.attention_mask[0].sum())
    tokens = result.str_tokens[0][:n]
    row = position if position >= 0 else n + position
    n_layers = result.n_layers
    shown_layer = layer if layer >= 0 else n_layers + layer
    values = result.rollout[0, layer, row, :n]
    lines = [
        f"model {model} · {n} tokens · {n_layers} layers · measure "
        f"{result.metadata.get('measure')} · max reconstruction error "
        f"{float(result.reconstruction_error.max()):.1e}",
        "",
        f"Contributions to position {row} ({tokens[row]!r}) after layer {shown_layer + 1} "
        "(rollout):",
        "  " + coloured_row(tokens, values, colour=colour),
        "",
        f"Top sources of position {row} ({tokens[row]!r}):",
        *_table(result.top_sources(row, k, layer=layer)),
    ]
    if prediction is not None:
        token, prob = prediction
        lines += ["", f"Prediction after position {row}: {token!r} (p = {prob:.3f})"]
    if logit is not None:
        scores = logit.scores[0, :n]
        target = prediction[0] if prediction else "?"
        parts = ", ".join(f"{k} {float(v[0]):+.3f}" for k, v in logit.components.items())
        lines += [
            f"ALTI-Logit: the logit of {target!r}, {float(logit.logit[0]):.3f}, is tokens "
            f"{float(scores.sum()):+.3f} plus {parts}. Tokens that raised it most:",
            *_logit_table(logit, k),
        ]
    return "\n".join(lines)


def _logit_table(logit: AltiLogitResult, k: int) -> list[str]:
    rows = logit.top_sources(k)
    width = max((len(repr(token)) for _, token, _ in rows), default=0)
    return [
        f"  {rank:>2}. pos {pos:>4}  {token!r:<{width}}  {value:+8.3f}"
        for rank, (pos, token, value) in enumerate(rows, start=1)
    ]


def translate_summary(
    result: AltiPlusResult,
    *,
    model: str,
    predicted: list[str],
    step: int | None,
    k: int,
) -> str:
    """What `alti-lens translate` prints: source and target, the source contribution of every
    decoder step, and the top sources of one step. `predicted[t]` is the token row t predicts."""
    s = int(result.source_attention_mask[0].sum())
    t = int(result.target_attention_mask[0].sum())
    source = result.source_str_tokens[0][:s]
    target = result.target_str_tokens[0][:t]
    sc = result.source_contribution[0, :t]
    lines = [
        f"model {model} · source {s} tokens · target {t} steps · "
        f"max reconstruction error {float(result.reconstruction_error.max()):.1e}",
        "",
        "source: " + " ".join(source),
        "target: " + " ".join(predicted),
        "",
        "Source contribution per decoder step (last layer, extended rollout):",
        "  step  input -> predicts        source  target",
    ]
    width = max((len(repr(x)) for x in target), default=0)
    for i in range(t):
        value = float(sc[i])
        lines.append(
            f"  {i:>4}  {target[i]!r:<{width}} -> {predicted[i]!r:<{width}}  {value:6.3f}  "
            f"{1 - value:6.3f}  {_bar(value, 10)}"
        )
    mean = float(sc.mean()) if t else float("nan")
    lines += ["", f"mean source contribution: {mean:.3f}"]
    if step is not None:
        row = step if step >= 0 else t + step
        lines += [
            "",
            f"Top sources of step {row} (predicting {predicted[row]!r}):",
            *_table(result.top_sources(row, k)),
        ]
    return "\n".join(lines)
