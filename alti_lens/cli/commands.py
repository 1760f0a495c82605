"""The commands `explain`, `translate` and `demo`: check the arguments, load the model, run the
public API (`alti`, `alti_plus`, `alti_logit`, `alti_lens.models`), print a summary
(`alti_lens.render.text`) and write the outputs.

torch, TransformerLens and the model are imported inside the command functions only.
"""

import argparse
import sys
from typing import TYPE_CHECKING, Any

from alti_lens.errors import InputError

from .output import (
    Status,
    check_outputs,
    check_path,
    check_position,
    check_text,
    colour_choice,
    write_html,
    write_outputs,
)
from .parser import DEFAULT_DECODER, DEFAULT_TRANSLATOR, DEMO_SOURCE, DEMO_TEXT

if TYPE_CHECKING:
    from alti_lens.models import HookedModel
    from alti_lens.results import AltiPlusResult


def load(name: str, args: argparse.Namespace, status: Status) -> "HookedModel":
    """The model `name` (built-in, directory or hub name), with a progress line."""
    from alti_lens import load_model

    with status.stage(f"loading model {name}"):
        return load_model(
            name,
            device=getattr(args, "device", None),  # `demo` has neither option
            dtype=getattr(args, "dtype", None),
            progress=not args.quiet,
        )


def load_single_stack(
    args: argparse.Namespace, status: Status, command: str
) -> tuple["HookedModel", Any, Any]:
    """`--model`, refused if it is an encoder-decoder, and `TEXT` tokenized: (model, tokens,
    mask), the commands for decoder-only and encoder models (`explain`, `flow`)."""
    from alti_lens import models

    model = load(args.model, args, status)
    if models.is_encoder_decoder(model):
        raise InputError(
            f"{args.model} is an encoder-decoder model; `{command}` takes decoder-only and "
            "encoder models. Fix: alti-lens translate --model ... --source TEXT"
        )
    tokens, mask = models.tokenize(model, [args.text])
    return model, tokens, mask


def explain(args: argparse.Namespace, status: Status) -> int:
    """`alti-lens explain`: ALTI of one text (and ALTI-Logit of its next-token prediction)."""
    check_text(args.text, "TEXT", 'the text to explain, e.g. alti-lens explain "the cat sat"')
    check_outputs(args)
    from alti_lens import alti, alti_logit, models
    from alti_lens.render import text as summary

    model, tokens, mask = load_single_stack(args, status, "explain")
    n, n_layers = int(mask[0].sum()), models.n_layers(model)
    row = check_position(args.position, n)
    if not -n_layers <= args.layer < n_layers:
        raise InputError(
            f"--layer {args.layer} is outside the model's {n_layers} layers; expected "
            f"{-n_layers}..{n_layers - 1} (negative counts from the end). Fix: pass a layer in "
            "that range."
        )
    prediction = logit = None
    if models.is_causal_lm(model):
        token_id, prediction = _predict(model, tokens[:, : row + 1], mask[:, : row + 1])
        if not args.no_logit:
            with status.stage("computing ALTI-Logit"):
                # the tokens read above: text is tokenized (and unknown words warned of) once
                logit = alti_logit(
                    model,
                    tokens,
                    token_id,
                    attention_mask=mask,
                    position=row,
                    check_bridge=args.check_bridge,
                )
    if logit is not None and args.measure == "l1":
        result = logit.alti  # alti_logit measured every layer with ALTI already
    else:
        with status.stage("computing ALTI"):
            result = alti(
                model,
                tokens,
                attention_mask=mask,
                measure=args.measure,
                check_bridge=args.check_bridge,
            )
    text = summary.explain_summary(
        result,
        model=args.model,
        position=row,
        layer=args.layer,
        k=args.top,
        colour=colour_choice(args),
        prediction=prediction,
        logit=logit,
    )
    data: dict[str, Any] = {
        "model": args.model,
        "tokens": result.str_tokens[0][:n],
        "position": row,
        "layer": args.layer % result.n_layers,
        "measure": args.measure,
        "rollout_row": [round(v, 6) for v in result.rollout[0, args.layer, row, :n].tolist()],
        "top_sources": _sources(result.top_sources(row, args.top, layer=args.layer)),
        "max_reconstruction_error": float(result.reconstruction_error.max()),
        "bridge_check": result.metadata.get("bridge_check"),
    }
    if prediction is not None:
        data["prediction"] = {"token": prediction[0], "probability": prediction[1]}
    if logit is not None:
        data["alti_logit"] = {
            "logit": float(logit.logit[0]),
            "scores": [round(v, 6) for v in logit.scores[0, :n].tolist()],
            "components": {k: float(v[0]) for k, v in logit.components.items()},
        }
    if args.json != "-":
        sys.stdout.write(text + "\n")
    write_outputs(result, args, data)
    return 0


def _predict(model: "HookedModel", tokens: Any, mask: Any) -> tuple[int, tuple[str, float]]:
    """The model's own next token after the last position: (id, (string, probability))."""
    from alti_lens import models

    probs = models.next_token_logits(model, tokens, mask).softmax(-1)[0]
    token_id = int(probs.argmax())
    token = models.str_tokens(model, probs.new_tensor([[token_id]]).long())[0][0]
    return token_id, (token, float(probs[token_id]))


def _sources(rows: list[tuple[int, str, float]]) -> list[dict[str, Any]]:
    return [{"position": p, "token": t, "value": round(v, 6)} for p, t, v in rows]


def translate(args: argparse.Namespace, status: Status) -> int:
    """`alti-lens translate`: ALTI+ of a source sentence and its (given or greedy) translation."""
    check_text(args.source, "--source", "the source sentence to translate")
    check_text(
        args.target,
        "--target",
        "the target sentence (leave --target out to use the model's greedy translation)",
    )
    check_outputs(args)
    from alti_lens import alti_plus, models
    from alti_lens.render import text as summary

    model = load(args.model, args, status)
    if not models.is_encoder_decoder(model):
        raise InputError(
            f"{args.model} is not an encoder-decoder model; `translate` runs ALTI+ on "
            "encoder-decoder models. Fix: alti-lens explain --model ... TEXT"
        )
    what = "computing ALTI+" if args.target else "translating, then computing ALTI+"
    with status.stage(what):
        result = alti_plus(
            model,
            args.source,
            args.target,
            measure=args.measure,
            max_new_tokens=args.max_new_tokens,
            check_bridge=args.check_bridge,
        )
    t = int(result.target_attention_mask[0].sum())
    if args.step is not None and not -t <= args.step < t:
        raise InputError(
            f"--step {args.step} is outside the {t} decoder steps; expected {-t}..{t - 1} "
            "(negative counts from the end). Fix: pass a step in that range, or leave --step out."
        )
    predicted = _predicted(model, result, t)
    text = summary.translate_summary(
        result, model=args.model, predicted=predicted, step=args.step, k=args.top
    )
    s = int(result.source_attention_mask[0].sum())
    data: dict[str, Any] = {
        "model": args.model,
        "source_tokens": result.source_str_tokens[0][:s],
        "decoder_input": result.target_str_tokens[0][:t],
        "predicted": predicted,
        "measure": args.measure,
        "source_contribution": [round(v, 6) for v in result.source_contribution[0, :t].tolist()],
        "max_reconstruction_error": float(result.reconstruction_error.max()),
        "bridge_check": result.metadata.get("bridge_check"),
    }
    if args.step is not None:
        data["top_sources"] = _sources(result.top_sources(args.step, args.top))
    if args.json != "-":
        sys.stdout.write(text + "\n")
    write_outputs(result, args, data)
    return 0


def _predicted(model: "HookedModel", result: "AltiPlusResult", t: int) -> list[str]:
    from alti_lens import models

    if result.target_labels is None:  # ids given as the target: what each row predicts is unknown
        return ["?"] * t
    labels = result.target_labels[:, :t].clamp_min(0)
    return models.str_tokens(model, labels)[0]


def demo(args: argparse.Namespace, status: Status) -> int:
    """`alti-lens demo`: both built-in models, summaries and one HTML report."""
    check_path("--out", args.out, folder=True)
    path = args.out / "report.html"
    if args.out.is_dir():
        check_path("--out", path)
    from alti_lens import alti_logit, alti_plus, flow_graph, models
    from alti_lens.render import text as summary

    decoder = load(DEFAULT_DECODER, args, status)
    with status.stage("ALTI, ALTI-Logit and the flow graph on the induction model"):
        tokens, mask = models.tokenize(decoder, [DEMO_TEXT])
        token_id, prediction = _predict(decoder, tokens, mask)
        logit = alti_logit(decoder, tokens, token_id, attention_mask=mask)
        result = logit.alti  # every layer's ALTI, measured by the same run
        graph = flow_graph(decoder, tokens, attention_mask=mask)
    translator = load(DEFAULT_TRANSLATOR, args, status)
    with status.stage("ALTI+ on the toy translator"):
        plus = alti_plus(translator, DEMO_SOURCE, None)
    items = [
        (f"ALTI · {DEFAULT_DECODER}: induction on a repeated word sequence", result),
        (f"ALTI-Logit · {DEFAULT_DECODER}: the next-token prediction", logit),
        (f"Information flow · {DEFAULT_DECODER}: the routes of every token", graph),
        (f"ALTI+ · {DEFAULT_TRANSLATOR}: a toy translation with reordering", plus),
    ]
    n = int(result.attention_mask[0].sum())
    use_colour = colour_choice(args)
    sys.stdout.write(
        summary.explain_summary(
            result,
            model=DEFAULT_DECODER,
            position=n - 1,
            layer=-1,
            k=5,
            colour=use_colour,
            prediction=prediction,
            logit=logit,
        )
        + "\n\n"
    )
    t = int(plus.target_attention_mask[0].sum())
    sys.stdout.write(
        summary.translate_summary(
            plus,
            model=DEFAULT_TRANSLATOR,
            predicted=_predicted(translator, plus, t),
            step=None,
            k=5,
        )
        + "\n\n"
    )
    write_html("--out", path, items)
    sys.stdout.write(f"Report written to {path}\n")
    return 0
