"""Plain-text summaries of results for a terminal (used by the `alti-lens` command line).

Each function returns a string (no printing here); colour is ANSI and optional (the results' own
`coloured_text`), so the same text reads the same when piped to a file.
"""

from .results import AltiLogitResult, AltiPlusResult, AltiResult

_BAR = "█"


def _bar(value: float, width: int = 20) -> str:
    return _BAR * max(0, min(width, round(value * width)))


def _table(rows: list[tuple[int, str, float]], *, signed: bool = False) -> list[str]:
    """Ranked (position, token, value) rows; shares get a bar, signed scores a sign."""
    width = max((len(repr(token)) for _, token, _ in rows), default=0)
    return [
        f"  {rank:>2}. pos {pos:>4}  {token!r:<{width}}  "
        + (f"{value:+8.3f}" if signed else f"{value:7.4f}  {_bar(value)}")
        for rank, (pos, token, value) in enumerate(rows, start=1)
    ]


def explain_summary(
    result: AltiResult,
    *,
    model: str,
    position: int,
    layer: int,
    k: int,
    colour: bool | None,
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
    lines = [
        f"model {model} · {n} tokens · {n_layers} layers · measure "
        f"{result.metadata.get('measure')} · max reconstruction error "
        f"{float(result.reconstruction_error.max()):.1e}",
        "",
        f"Contributions to position {row} ({tokens[row]!r}) after layer {shown_layer} "
        f"(0-based, of 0–{n_layers - 1}; rollout):",
        "  " + result.coloured_text(row, layer=layer, colour=colour),
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
            *_table(logit.top_sources(k), signed=True),
        ]
    return "\n".join(lines)


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
            f"{max(0.0, 1 - value):6.3f}  {_bar(value, 10)}"
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
