"""Source vs target prefix (issue 16, deliverable 2): a toy translator whose decoder steps are
determined either by the source or by the target prefix (alti_lens.evaluation.prefix), and how well
ALTI+'s source contribution and the baselines tell them apart, per step and per sentence.

    python benchmarks/evaluation/task_prefix.py --size full --json /tmp/p.json --md /tmp/p.md
    python benchmarks/evaluation/task_prefix.py --ship  # the checkpoint the reduced run loads

Models: BART, 2 encoder + 2 decoder layers, d_model 64, trained here from fixed seeds on one thread
(train.py's cache keeps them); the reduced size loads the shipped seed-0 checkpoint in
benchmarks/evaluation/models/prefix/.
"""

import argparse
import json
import shutil
import statistics
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from train import cached, deterministic, save, seq2seq_batch, train_loop, word_tokenizer
from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

from alti_lens.evaluation import hallucination as H
from alti_lens.evaluation import prefix as P

TITLE = "Source vs target prefix (ALTI+'s source contribution)"
HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
SHIPPED = HERE / "models" / "prefix"
TRAIN_STEPS, BATCH, LR = 1200, 64, 3e-3
SEED = 20261126  # the evaluation's seed (run_evaluation.py passes it to `run`)
DATA_OFFSET = 16  # this task's held-out data come from SEED + 16 (training data: the model seed)
EVAL_SEED = SEED + DATA_OFFSET
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]
N_HELDOUT = 500  # teacher-forced accuracy


# --- model --------------------------------------------------------------------------------------


def tokenizer() -> PreTrainedTokenizerFast:
    return word_tokenizer(
        [*P.SOURCE_WORDS, *P.TARGET_WORDS],
        SPECIALS,
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        unk="<unk>",
        max_len=32,
    )


def batch(pairs: list[P.PrefixPair], tok: PreTrainedTokenizerFast) -> dict[str, torch.Tensor]:
    """Source `<s> words`, labels `<s> target </s>` (BART's layout, as the demo translator)."""
    return seq2seq_batch([p.source for p in pairs], [p.target for p in pairs], tok)


@torch.no_grad()
def accuracy(model: Any, tok: PreTrainedTokenizerFast, pairs: list[P.PrefixPair]) -> dict:
    """Teacher-forced accuracy of the argmax per label (`source`, `prefix`; `free` steps are a
    free choice: chance is 1/4 for the particle, 1/6 for the name)."""
    model.eval()
    inputs = batch(pairs, tok)
    pred = model(**inputs).logits.argmax(-1)
    hits: dict[str, list[int]] = {}
    for b, pair in enumerate(pairs):
        for j, word in enumerate(pair.words):  # label j + 1 is target word j
            ok = int(pred[b, j + 1] == inputs["labels"][b, j + 1])
            for key in (word.label, word.mechanism):
                hits.setdefault(key, []).append(ok)
    return {f"accuracy_{k}": sum(v) / len(v) for k, v in hits.items()}


def train_model(out: Path, seed: int, steps: int = TRAIN_STEPS) -> dict:
    with deterministic(seed):
        tok = tokenizer()
        config = BartConfig(
            vocab_size=len(tok),
            d_model=64,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=128,
            decoder_ffn_dim=128,
            max_position_embeddings=32,
            dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            bos_token_id=0,
            pad_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=2,
            forced_eos_token_id=2,
        )
        model = BartForConditionalGeneration(config)
        model.generation_config.max_length = 32
        train = P.prefix_pairs(steps * BATCH, seed)
        start = time.perf_counter()
        loss = train_loop(
            model,
            lambda step: batch(train[step * BATCH : (step + 1) * BATCH], tok),
            steps,
            LR,
            log=f"prefix seed {seed}",
        )
        seconds = time.perf_counter() - start
        seen = {p.source for p in train}
        heldout = [p for p in P.prefix_pairs(N_HELDOUT, EVAL_SEED + 1) if p.source not in seen]
        metrics = accuracy(model, tok, heldout)
    save(model, tok, out)
    metrics |= {"train_seconds": seconds, "final_loss": loss, "steps": steps, "seed": seed}
    metrics |= {
        "n_heldout": len(heldout),
        "weights_mib": (out / "model.safetensors").stat().st_size / 2**20,
    }
    return metrics


def trained(seed: int) -> tuple[Path, dict]:
    key = {
        "task": "prefix",
        "seed": seed,
        "steps": TRAIN_STEPS,
        "batch": BATCH,
        "lr": LR,
        "d_model": 64,
        "d_ffn": 128,
        "layers": "2+2",
        "data": "prefix_pairs v1",
    }
    return cached(key, lambda out: train_model(out, seed))


def load(path: Path) -> Any:
    """A checkpoint as a float64 TransformerBridge (as run_evaluation.load)."""
    from transformer_lens.model_bridge import TransformerBridge

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = TransformerBridge.boot_transformers(str(path))
    return model.to(torch.float64)


# --- the experiments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Size:
    seeds: tuple[int, ...]  # training seeds (models)
    step_pairs: int  # sentence pairs whose labelled decoder steps are scored
    correct: int  # correct pairs of the sentence-level test set
    per_kind: int  # pairs of each hallucination / corruption kind
    ig_steps: int  # integrated-gradients points
    resamples: int  # bootstrap resamples


SIZES = {
    "reduced": Size((0,), 12, 12, 3, 4, 200),
    "full": Size((0, 1, 2), 96, 80, 20, 8, 1000),
}
CORRUPTIONS = (1, 2, 3)
N_KINDS = len(H.PLANTED) + len(CORRUPTIONS)  # the generated kind comes on top


def _triple(x: tuple[float, float, float]) -> list[float]:
    return [float(v) for v in x]


def step_part(model: Any, size: Size, seed: int) -> dict[str, Any]:
    pairs = P.prefix_pairs(size.step_pairs, seed)
    table = P.step_experiment(model, pairs, ig_steps=size.ig_steps, seed=seed)
    aurocs = P.step_aurocs(table, n_resamples=size.resamples, seed=0)
    groups = {
        g: torch.tensor(
            [g in (a, m) for a, m in zip(table["label"], table["mechanism"], strict=True)]
        )
        for g in (P.SOURCE, P.PREFIX, "classifier", "echo")
    }
    means = {
        name: {g: float(v[member].mean()) for g, member in groups.items()}
        for name, v in table["scores"].items()
    }
    return {
        "aurocs": {k: {g: _triple(x) for g, x in v.items()} for k, v in aurocs.items()},
        "confirmation": P.confirmation(table),
        "mean_scores": means,
        "counts": {g: int(m.sum()) for g, m in groups.items()},
        "alti_plus_values": {
            g: [round(x, 4) for x in table["scores"][P.ALTI_PLUS][m].tolist()]
            for g, m in groups.items()
            if g in (P.SOURCE, P.PREFIX)
        },
    }


def sentence_part(model: Any, size: Size, seed: int) -> dict[str, Any]:
    planted = size.correct + N_KINDS * size.per_kind
    pairs = P.prefix_pairs(planted + size.per_kind, seed + 1)
    corpus = P.sentence_corpus(
        pairs[:planted], size.correct, size.per_kind, corruptions=CORRUPTIONS, seed=0
    )
    corpus += H.generated_hallucinations(model, [p.target for p in pairs[planted:]])
    scores = P.sentence_scores(model, corpus, ig_steps=size.ig_steps, seed=seed)
    kinds = [p.kind for p in corpus]
    aurocs = P.sentence_aurocs(scores, kinds, n_resamples=size.resamples, seed=0)
    order = [H.CORRECT, *dict.fromkeys(k for k in kinds if k != H.CORRECT)]
    means = {
        name: {k: float(v[torch.tensor([x == k for x in kinds])].mean()) for k in order}
        for name, v in scores.items()
    }
    return {
        "aurocs": {k: {g: _triple(x) for g, x in v.items()} for k, v in aurocs.items()},
        "means": means,
        "counts": {k: kinds.count(k) for k in order},
        "examples": {
            k: next([" ".join(p.source), " ".join(p.target)] for p in corpus if p.kind == k)
            for k in order
        },
    }


def _spread(values: list[list[float]]) -> dict[str, float]:
    """Mean over seeds of (AUROC, low, high), with the seeds' min and max AUROC."""
    first = [v[0] for v in values]
    return {
        "mean": statistics.fmean(first),
        "min": min(first),
        "max": max(first),
        "low": statistics.fmean(v[1] for v in values),
        "high": statistics.fmean(v[2] for v in values),
    }


def aggregate(per_seed: list[dict[str, Any]], part: str) -> dict[str, dict[str, dict]]:
    methods = per_seed[0][part]["aurocs"]
    return {
        m: {g: _spread([s[part]["aurocs"][m][g] for s in per_seed]) for g in groups}
        for m, groups in methods.items()
    }


def run(size: str, seed: int = SEED) -> dict[str, Any]:
    torch.set_num_threads(1)
    config = SIZES[size]
    data_seed = seed + DATA_OFFSET
    timings: dict[str, float] = {}
    trained_models, per_seed = [], []
    for s in config.seeds:
        start = time.perf_counter()
        if size == "reduced":
            path, metrics = SHIPPED, json.loads((SHIPPED / "metrics.json").read_text())
        else:
            path, metrics = trained(s)
        timings[f"train seed {s} (0 if cached)"] = time.perf_counter() - start
        model = load(path)
        start = time.perf_counter()
        result = {"seed": s, "steps": step_part(model, config, data_seed)}
        timings[f"per-step seed {s}"] = time.perf_counter() - start
        start = time.perf_counter()
        result["sentences"] = sentence_part(model, config, data_seed)
        timings[f"sentence level seed {s}"] = time.perf_counter() - start
        per_seed.append(result)
        trained_models.append({"seed": s} | metrics)
    confirmation = {
        g: {
            k: statistics.fmean(r["steps"]["confirmation"][g][k] for r in per_seed)
            for k in per_seed[0]["steps"]["confirmation"][g]
        }
        for g in per_seed[0]["steps"]["confirmation"]
    }
    return {
        "size": size,
        "seed": seed,
        "data_seed": data_seed,
        "config": asdict(config)
        | {
            "train_steps": TRAIN_STEPS,
            "batch": BATCH,
            "lr": LR,
            "corruptions": list(CORRUPTIONS),
        },
        "models": trained_models,
        "per_seed": per_seed,
        "steps": aggregate(per_seed, "steps"),
        "sentences": aggregate(per_seed, "sentences"),
        "confirmation": confirmation,
        "timings": timings,
    }


# --- the report ---------------------------------------------------------------------------------

STEP_GROUPS = ("all", "classifier", "echo")


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def _cell(v: dict[str, float], seeds: int) -> str:
    spread = f" ({_f(v['min'], 2)}–{_f(v['max'], 2)})" if seeds > 1 else ""
    return f"{_f(v['mean'])}{spread} [{_f(v['low'], 2)}, {_f(v['high'], 2)}]"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def headline(results: dict[str, Any]) -> dict[str, float]:
    """The numbers the summary quotes and the test bounds (means over seeds)."""
    steps, sentences = results["steps"], results["sentences"]
    ours = (P.ALTI_PLUS, P.ALTI_PLUS_NO_SPECIAL, P.ALTI_CROSS, P.CAUSAL)
    baselines = [m for m in steps if m not in ours]
    best = max(baselines, key=lambda m: steps[m]["all"]["mean"])
    conf = results["confirmation"]
    return {
        "step_alti_plus": steps[P.ALTI_PLUS]["all"]["mean"],
        "step_best_baseline": steps[best]["all"]["mean"],
        "step_best_baseline_name": best,
        "step_causal": steps[P.CAUSAL]["all"]["mean"],
        "step_random": steps[P.RANDOM]["all"]["mean"],
        "sentence_alti_plus_all": sentences[P.ALTI_PLUS]["all"]["mean"],
        "sentence_logprob_all": sentences[P.LOG_PROBABILITY]["all"]["mean"],
        "sentence_causal_all": sentences[P.SOURCE_SWAP]["all"]["mean"],
        "source_accuracy": statistics.fmean(m["accuracy_source"] for m in results["models"]),
        "prefix_accuracy": statistics.fmean(m["accuracy_prefix"] for m in results["models"]),
        "confirmed_source": min(
            conf[P.SOURCE]["source_swap_as_expected"], conf[P.SOURCE]["prefix_swap_as_expected"]
        ),
        "confirmed_prefix": min(
            conf[P.PREFIX]["source_swap_as_expected"], conf[P.PREFIX]["prefix_swap_as_expected"]
        ),
    }


def summary(results: dict[str, Any]) -> list[str]:
    h = headline(results)
    n = len(results["models"])
    return [
        f"**Source vs target prefix, per decoder step (AUROC, {n} seeds):** ALTI+'s source "
        f"contribution tells source-determined steps from prefix-determined ones with AUROC "
        f"{_f(h['step_alti_plus'])}; the best baseline ({h['step_best_baseline_name']}) "
        f"{_f(h['step_best_baseline'])}, random {_f(h['step_random'])}; the causal reference "
        f"(source swap vs prefix swap) reaches {_f(h['step_causal'])}.",
        f"**Sentence level (corrupted sources and hallucinations, AUROC, all kinds):** ALTI+ mean "
        f"source contribution {_f(h['sentence_alti_plus_all'])}, the model's log-probability "
        f"{_f(h['sentence_logprob_all'])}, the causal source-swap drop "
        f"{_f(h['sentence_causal_all'])}.",
    ]


def _confirmation_table(conf: dict[str, dict[str, float]]) -> str:
    rows = []
    for group in (P.SOURCE, P.PREFIX, "classifier", "echo"):
        c = conf[group]
        rows.append(
            [
                group,
                f"{c['n']:.0f}",
                _f(c["accuracy"]),
                _f(c["source_swap_changes"]),
                _f(c["source_swap_as_expected"]),
                _f(c["prefix_swap_changes"]),
                _f(c["prefix_swap_as_expected"]),
            ]
        )
    header = [
        "steps",
        "n (per seed)",
        "model accuracy",
        "source swap: changed",
        "source swap: as constructed",
        "prefix swap: changed",
        "prefix swap: as constructed",
    ]
    return _table(header, rows)


def _models_table(models: list[dict[str, Any]]) -> str:
    rows = [
        [
            str(m["seed"]),
            _f(m["accuracy_source"]),
            _f(m["accuracy_classifier"]),
            _f(m["accuracy_echo"]),
            _f(m["accuracy_particle"]),
            f"{m['train_seconds']:.0f}",
        ]
        for m in models
    ]
    header = [
        "seed",
        "source steps",
        "classifier steps",
        "echo steps",
        "particle (free; chance 0.25)",
        "training s",
    ]
    return _table(header, rows)


def _step_table(results: dict[str, Any]) -> str:
    n = len(results["models"])
    steps = results["steps"]
    rows = [[m, *[_cell(steps[m][g], n) for g in STEP_GROUPS]] for m in steps]
    header = [
        "method (source share at the predicting row)",
        "all prefix steps",
        "classifiers",
        "echoes",
    ]
    return _table(header, rows)


def _sentence_table(results: dict[str, Any]) -> str:
    n = len(results["models"])
    sentences = results["sentences"]
    groups = list(next(iter(sentences.values())))
    rows = [[m, *[_cell(sentences[m][g], n) for g in groups]] for m in sentences]
    return _table(["detector (low = hallucination)", *groups], rows)


def section(results: dict[str, Any], plots: dict[str, str]) -> str:
    n = len(results["models"])
    cfg = results["config"]
    seed0 = results["per_seed"][0]
    counts = seed0["steps"]["counts"]
    sent_counts = seed0["sentences"]["counts"]
    parts = [
        TASK_TEXT.format(
            steps=cfg["train_steps"],
            batch=cfg["batch"],
            pairs=cfg["step_pairs"],
            n_source=counts[P.SOURCE],
            n_prefix=counts[P.PREFIX],
            n_classifier=counts["classifier"],
            n_echo=counts["echo"],
            seeds=", ".join(str(s) for s in cfg["seeds"]),
        )
    ]
    parts += [
        "#### Models (teacher-forced accuracy, held-out pairs)",
        _models_table(results["models"]),
    ]
    parts += [CONFIRMATION_TEXT, _confirmation_table(results["confirmation"])]
    parts += [
        STEP_TEXT.format(n=n, ig=cfg["ig_steps"], resamples=cfg["resamples"]),
        _step_table(results),
    ]
    if "prefix_steps" in plots:
        parts.append(f"![per-step AUROC]({plots['prefix_steps']})")
    if "prefix_values" in plots:
        parts.append(f"![ALTI+ source contribution per label]({plots['prefix_values']})")
    parts += [
        SENTENCE_TEXT.format(
            counts=", ".join(f"{v} {k}" for k, v in sent_counts.items()),
            ig=cfg["ig_steps"],
        ),
        _sentence_table(results),
    ]
    if "prefix_sentences" in plots:
        parts.append(f"![sentence-level AUROC]({plots['prefix_sentences']})")
    parts += [discussion(results), PUBLISHED_TEXT, REPRODUCE_TEXT]
    return "\n\n".join(parts) + "\n"


TASK_TEXT = """\
**Task** (`alti_lens.evaluation.prefix`). A toy translation task with the demo translator's \
vocabulary (`alti_lens.demo.data`: `SUBJ VERB OBJ [PREP NP]`, noun phrases reordered to \
`DET NOUN ADJ*` with the adjectives mirrored, the verb last; one-word verbs only) whose target \
also holds words the source cannot determine. Every target opens with a *free* particle \
(`ya`/`wo`/`ke`/`zu`, drawn at random: nothing in the source says which); a *classifier* follows \
every determiner and agrees with the particle and with the number of determiners before it \
(`won`, `wom`, `wol` after `wo`); an *echo* of the particle ends the sentence after the verb. \
So each decoder step has a label by construction: **source-determined** (the translation of a \
source word) or **prefix-determined** (a classifier or the echo: identity and timing depend only \
on what the target has already emitted). The free particle itself and the decoder's first row \
(the target's BOS) are left out. Example: `the old dog sees a cat` → \
`wo lo won hundo vecha un wom gato vidas wo`.

**Models.** BART (`BartForConditionalGeneration`), 2 encoder + 2 decoder layers, d_model 64, 4 \
heads, FFN 128, trained here from seeds {seeds} ({steps} steps of {batch} pairs, AdamW one-cycle, \
one thread, deterministic; `benchmarks/evaluation/task_prefix.py`, cached by \
`train.cached`), run as float64 `TransformerBridge`s with the exactness check on every \
`alti_plus` call. Per seed, {pairs} held-out pairs: {n_source} source-determined and \
{n_prefix} prefix-determined steps ({n_classifier} classifiers, {n_echo} echoes)."""

CONFIRMATION_TEXT = """\
#### The labels, confirmed on the models by intervention

Two teacher-forced interventions per pair (`prefix.interventions`): **source swap** — every \
source word replaced by another word of its class (same structure; the target prefix kept): a \
source-determined step must switch to the new word's translation, a prefix-determined step must \
not change; **prefix swap** — the particle replaced by another one, with every classifier and \
the echo in the prefix following it (the source kept): a prefix-determined step must switch to \
the new classifier/particle, a source-determined step must not change. Rates over the steps the \
model predicts correctly, mean over seeds ("as constructed": the argmax after the intervention is \
the word the construction says)."""

STEP_TEXT = """\
#### Per decoder step: which steps draw on the source?

Each method gives every decoder row a *source share*; AUROC of telling the source-determined \
steps (positive: a higher share) from the prefix-determined ones, all of them and each mechanism \
alone. Cells: mean over the {n} seeds (min–max over seeds) [mean of the seeds' 95% bootstrap \
intervals, {resamples} resamples of steps; the steps of one sentence are resampled independently \
although they are not, so the intervals are somewhat narrow]. Methods: ALTI+ \
(`AltiPlusResult.source_contribution` at the predicting row, and with the source's BOS column \
left out); the ALTI cross-attention sub-block alone, `1 − ρ^l` (its residual share) averaged over \
the decoder layers, not rolled out; Kobayashi's norm measure rolled out like ALTI+ \
(`alti_plus(measure="norm")`); the attention-rollout variant \
(`alti_plus(measure="attention_rollout")`); the head-mean cross-attention on the source *words* \
(the special tokens left out: cross-attention sums to 1 over the source, so its mass on the \
source is always 1), last layer and mean over layers; gradient norm, gradient × input and \
integrated gradients ({ig} points, zero baseline) w.r.t. the encoder's and the decoder's token \
embeddings (`alti_lens.models.embedding_gradients`, hooks `hook_embed` and \
`decoder_embed.hook_out`; plain PyTorch autograd), score = the **log-probability of the gold \
token** at that row, source share = Σ_src |a| / (Σ_src |a| + Σ_prefix |a|); position in the \
target and random (trivial); and the **causal reference**: the drop of the gold token's \
probability under the source swap minus its drop under the prefix swap."""

SENTENCE_TEXT = """\
#### Sentence level: corrupted sources and hallucinations

Test set per seed: {counts}. `unrelated`, `copy`, `repeated_word`, `looped_fragment` and \
`generated` are `alti_lens.evaluation.hallucination`'s kinds (`hallucination_corpus`, \
`generated_hallucinations`: the model's own greedy output for a target-language sentence given \
as source); *corrupted source (k words)*: the correct target teacher-forced on its source with k \
words replaced by other words of their class (`prefix.corrupted_source`) — a target the source \
no longer supports in k places. Detectors (a low value = evidence): ALTI+ \
`sentence_statistics()["mean"]` (and `mean_no_special`), the other step methods' means over the \
decoder steps, the gradient methods' source share of the whole target's log-probability ({ig} \
integrated-gradients points), the model's mean log-probability of the target, and the causal \
reference: how much the target's mean log-probability drops when the source is swapped for \
another pair's. AUROC of each kind against the correct pairs (`hallucination.detection_aurocs`; \
"all" pools every kind), same cell format as above."""

PUBLISHED_TEXT = """\
#### Published numbers

Dale et al. (2023, ACL, "Detecting and Mitigating Hallucinations in Machine Translation: Model \
Internal Workings Alone Do Well, Sentence Similarity Even Better") score ALTI+ total source \
contribution on natural hallucinations of a real De→En Transformer (Guerreiro et al. 2023's \
annotated set) and report that it "improves detection accuracy for the most severe \
hallucinations by a factor of 2" over sequence log-probability; their metrics and data (natural \
hallucinations of a large model, not teacher-forced planted ones; no per-step labels) do not \
match ours, and we could not retrieve their table here, so no number of theirs is placed beside \
ours. Ferrando et al. (2022, the ALTI+ paper) show source-contribution curves over decoding \
steps and their change under source/prefix perturbations, not an AUROC against known per-step \
labels; no published number matches the per-step protocol."""

REPRODUCE_TEXT = """\
#### Reproduce

`python benchmarks/evaluation/task_prefix.py --size full --json out.json --md out.md` (trains \
the seeds into the cache, then evaluates); the reduced size (CI) loads the shipped seed-0 \
checkpoint (`benchmarks/evaluation/models/prefix/`, written by `--ship`). Library: \
`alti_lens.evaluation.prefix` (`prefix_pairs`, `step_experiment`, `confirmation`, `step_aurocs`, \
`sentence_corpus`, `sentence_scores`, `sentence_aurocs`), on any encoder-decoder model \
`alti_plus` supports."""


def _m(results: dict[str, Any], part: str, method: str, group: str) -> str:
    return _f(results[part][method][group]["mean"])


def _mean_score(results: dict[str, Any], method: str, group: str) -> str:
    values = [s["steps"]["mean_scores"][method][group] for s in results["per_seed"]]
    return _f(statistics.fmean(values), 2)


def _verdict(x: float) -> str:
    """How an AUROC reads (a detector's or a separator's)."""
    if x >= 0.7:
        return "separates"
    if x > 0.6:
        return "weak"
    return "chance" if x >= 0.4 else "reversed"


def _compare(a: float, b: float) -> str:
    if abs(a - b) < 0.02:
        return "about the same as"
    return "above" if a > b else "below"


def discussion(results: dict[str, Any]) -> str:
    parts = [_labels_text, _alti_text, _others_text, _sentence_text]
    return "\n\n".join(["#### Discussion", *(part(results) for part in parts)])


def _getters(results: dict[str, Any]) -> tuple[Any, Any, Any]:
    def st(method: str, group: str = "all", key: str = "mean") -> float:
        return results["steps"][method][group][key]

    def se(method: str, group: str = "all") -> float:
        return results["sentences"][method][group]["mean"]

    def ms(method: str, group: str) -> float:
        values = [s["steps"]["mean_scores"][method][group] for s in results["per_seed"]]
        return statistics.fmean(values)

    return st, se, ms


def _labels_text(results: dict[str, Any]) -> str:
    st, _, _ = _getters(results)
    conf = results["confirmation"]
    return (
        f"**The labels hold on these models.** On the steps the models get right, the source "
        f"swap moves {_f(conf[P.SOURCE]['source_swap_changes'])} of the source-determined steps "
        f"and {_f(conf[P.PREFIX]['source_swap_changes'])} of the prefix-determined ones; the "
        f"prefix swap moves {_f(conf[P.PREFIX]['prefix_swap_changes'])} of the prefix-determined "
        f"steps and {_f(conf[P.SOURCE]['prefix_swap_changes'])} of the source-determined ones. "
        f"The causal reference (gold-probability drop under the source swap minus under the "
        f"prefix swap) separates the two kinds with AUROC {_f(st(P.CAUSAL))}: that is the "
        "ceiling here, and a method below it misses something the model really does."
    )


def _alti_text(results: dict[str, Any]) -> str:
    st, _, ms = _getters(results)
    alti, cross, nospecial = st(P.ALTI_PLUS), st(P.ALTI_CROSS), st(P.ALTI_PLUS_NO_SPECIAL)
    return (
        f"**ALTI+ per step: {_f(alti)}** (seeds {_f(st(P.ALTI_PLUS, key='min'))}–"
        f"{_f(st(P.ALTI_PLUS, key='max'))}; classifiers {_f(st(P.ALTI_PLUS, 'classifier'))}, "
        f"echoes {_f(st(P.ALTI_PLUS, 'echo'))}). Its mean source contribution is "
        f"{_f(ms(P.ALTI_PLUS, P.SOURCE), 2)} at source-determined steps against "
        f"{_f(ms(P.ALTI_PLUS, 'classifier'), 2)} at classifiers and "
        f"{_f(ms(P.ALTI_PLUS, 'echo'), 2)} at echoes: the quantity moves the way the ALTI+ paper "
        f"reads it. The cross sub-block alone, per layer and not rolled out (`1 − ρ^l`, "
        f"{_f(cross)}), is {_compare(cross, alti)} the full extended rollout, so the rollout "
        f"through the encoder and the decoder self-attention adds little on this task; leaving "
        f"the source's BOS column out gives {_f(nospecial)} ({_compare(nospecial, alti)} ALTI+). "
        "ALTI+ is most likely not at the ceiling because it is a share of the whole row "
        "representation, not of the predicted token: a classifier row still carries the "
        "source (the decoder keeps track of where it is in the source, which the next step, "
        "a noun, needs), and ALTI+ counts that although the classifier itself ignores it."
    )


def _others_text(results: dict[str, Any]) -> str:
    st, _, ms = _getters(results)
    candidates = [m for m in results["steps"] if m != P.CAUSAL]
    best = max(candidates, key=lambda m: st(m))
    g, gx, ig = st(P.GRADIENT_NORM), st(P.GRADIENT_X_INPUT), st(P.INTEGRATED)
    last, mean = st(P.ATTENTION_LAST), st(P.ATTENTION_MEAN)
    return (
        f"**The best method per step is {best} ({_f(st(best))}).** Gradient norm "
        f"({_f(g)}, {_compare(g, st(P.ALTI_PLUS))} ALTI+) asks the question the labels are about: "
        f"how sensitive the *gold token's* log-probability is to the source vs the prefix "
        f"embeddings. A classifier's probability does not move with the source (the "
        f"interventions show it), so its source share of the gradient is small "
        f"({_f(ms(P.GRADIENT_NORM, 'classifier'), 2)} vs {_f(ms(P.GRADIENT_NORM, P.SOURCE), 2)} at "
        f"source steps). Gradient × input ({_f(gx)}) and integrated gradients ({_f(ig)}) estimate "
        "each embedding's effect against an all-zero embedding (the first-order term, or the "
        "path integral from zero), which is not the counterfactual of the labels (another word "
        "in its place), and lose part of the separation.\n\n"
        f"**Attention.** The head-mean cross-attention on the source words separates "
        f"{_compare(last, st(P.ALTI_PLUS))} ALTI+: {_f(last)} in the last layer (seeds "
        f"{_f(st(P.ATTENTION_LAST, key='min'))}–{_f(st(P.ATTENTION_LAST, key='max'))}), {_f(mean)} "
        f"averaged over layers. At a classifier step the decoder keeps attending to the source "
        f"words ({_f(ms(P.ATTENTION_LAST, 'classifier'), 2)} of the last layer's attention vs "
        f"{_f(ms(P.ATTENTION_LAST, P.SOURCE), 2)} at source steps): where a head reads does not "
        "say whether the prediction uses what it reads, and the spread over seeds shows how "
        "differently each model's heads distribute it. The norm-based measure (Kobayashi, "
        f"rolled out like ALTI+, {_f(st(P.NORM))}) keeps the contributions' sizes but not "
        "their alignment with "
        "the output (ALTI's distance-based measure discounts a vector that the others cancel). "
        "The attention-rollout variant of ALTI+ gives every row the same source share, "
        f"1 − 0.5² = {_f(ms(P.ATTENTION_ROLLOUT, P.SOURCE), 2)} (each sub-block is "
        "`0.5·Ā + 0.5·I`, and the cross sub-block's residual column is the `0.5·I`), so its "
        f"AUROC is 0.5 by construction. Position in the target ({_f(st(P.POSITION))}) and random "
        f"({_f(st(P.RANDOM))}) are at chance overall; position separates the echoes "
        f"({_f(st(P.POSITION, 'echo'))}, reversed) only because they come last."
    )


def _sentence_text(results: dict[str, Any]) -> str:
    _, se, _ = _getters(results)
    kinds = [g for g in results["sentences"][P.ALTI_PLUS] if g not in ("all", "all planted")]
    by_kind = ", ".join(
        f"{k} {_f(se(P.ALTI_PLUS, k))} ({_verdict(se(P.ALTI_PLUS, k))})" for k in kinds
    )
    logp = ", ".join(f"{k} {_f(se(P.LOG_PROBABILITY, k))}" for k in kinds)
    swap = ", ".join(f"{k} {_f(se(P.SOURCE_SWAP, k))}" for k in kinds)
    grad = ", ".join(f"{k} {_f(se(P.GRADIENT_NORM, k))}" for k in kinds)
    return (
        f"**Sentence level: ALTI+ {_f(se(P.ALTI_PLUS))} overall.** Per kind: {by_kind}. The mean "
        "source contribution measures how much the model *uses* its source, not whether the "
        "target agrees with it. Teacher-forced, this decoder keeps reading the source at every "
        "step whatever the prefix (the source contribution of step `t` is computed from the "
        "source and the prefix up to `t`, not from the forced token), so corrupted sources (the "
        "source still read, only a different word found there), unrelated targets and "
        "repetitions barely move it, and copies of the source, made of source words, draw on "
        "the source as much as translations do or more. What does move it is a model that stops "
        "reading its source: its own greedy outputs for a source it cannot read — the same "
        "finding as the hallucination section on the demo translator, here on other models. The "
        "model's "
        f"log-probability is perfect ({logp}): this toy model is near-certain of every correct "
        "word, so any forced mismatch is improbable; Dale et al. found sequence log-probability "
        "weak on a real model's natural hallucinations, which the model itself found likely — a "
        "setting a toy model with near-100% accuracy cannot reproduce. The causal reference (the "
        "drop of the target's log-probability when the source is swapped for another pair's: "
        f"{_f(se(P.SOURCE_SWAP))} overall; {swap}) is this task's ceiling for a score that asks "
        "how much the target needs its own source. The gradient shares are erratic at the "
        f"sentence level and often reversed (gradient norm {_f(se(P.GRADIENT_NORM))} overall; "
        f"{grad}): an improbable forced token is *more* sensitive to the source that argues "
        "against it, so a large source gradient signals a mismatch, the opposite of what a "
        f"source share should say. Cross-attention on the source words ({_f(se(P.ATTENTION_LAST))}"
        f" last layer, {_f(se(P.ATTENTION_MEAN))} mean over layers) does not detect them either."
    )


# --- plots --------------------------------------------------------------------------------------


def make_plots(results: dict[str, Any], folder: Path, relative_to: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, part, groups, name in (
        ("prefix_steps", "steps", STEP_GROUPS, "prefix_steps.png"),
        ("prefix_sentences", "sentences", None, "prefix_sentences.png"),
    ):
        table = results[part]
        methods = list(table)
        chosen = groups or [
            "all",
            *[g for g in next(iter(table.values())) if g.startswith("corrupted")],
        ]
        fig, ax = plt.subplots(figsize=(9, 0.35 * len(methods) * len(chosen) / 2 + 1.5))
        height = 0.8 / len(chosen)
        for i, g in enumerate(chosen):
            y = [k + i * height for k in range(len(methods))]
            mean = [table[m][g]["mean"] for m in methods]
            # max(0, ·): the mean of equal values can round past them
            err = [
                [max(0.0, table[m][g]["mean"] - table[m][g]["min"]) for m in methods],
                [max(0.0, table[m][g]["max"] - table[m][g]["mean"]) for m in methods],
            ]
            ax.barh(y, mean, height, xerr=err, label=g)
        ax.axvline(0.5, color="grey", lw=0.8, ls="--")
        ax.set_yticks([k + 0.4 - height / 2 for k in range(len(methods))], methods, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xlabel("AUROC (mean over seeds; bars: min–max)")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        path = folder / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out[key] = (
            str(path.relative_to(relative_to)) if path.is_relative_to(relative_to) else str(path)
        )
    values = results["per_seed"][0]["steps"]["alti_plus_values"]
    fig, ax = plt.subplots(figsize=(6, 3))
    for label, v in values.items():
        ax.hist(v, bins=30, range=(0, 1), alpha=0.6, label=f"{label}-determined steps")
    ax.set_xlabel("ALTI+ source contribution at the predicting row (seed 0)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = folder / "prefix_values.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    out["prefix_values"] = (
        str(path.relative_to(relative_to)) if path.is_relative_to(relative_to) else str(path)
    )
    return out


# --- command line -------------------------------------------------------------------------------


def ship() -> None:
    """Train (or take from the cache) the seed-0 model and copy it into the shipped folder."""
    folder, _ = trained(0)
    shutil.rmtree(SHIPPED, ignore_errors=True)
    SHIPPED.mkdir(parents=True)
    for f in folder.iterdir():
        if f.is_file() and f.name != "key.json":
            shutil.copy(f, SHIPPED / f.name)
            (SHIPPED / f.name).chmod(0o644)  # safetensors writes 0600
    print(f"shipped {folder} -> {SHIPPED}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="reduced")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--ship", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.ship:
        ship()
        return
    results = run(args.size, args.seed)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.md:
        md = args.md.resolve()
        plots = make_plots(results, md.parent / "evaluation", md.parent)
        md.write_text(f"## {TITLE}\n\n" + section(results, plots))
    print(json.dumps(headline(results), indent=1))
    print(json.dumps(results["timings"], indent=1))


if __name__ == "__main__":
    main()
