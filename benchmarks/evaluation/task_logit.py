"""ALTI-Logit paper protocol: contrastive MRR of the evidence token (Ferrando et al. 2023).

Two small GPT-2s (2 layers, d_model 64, word-level tokenizer) trained here from fixed seeds on
synthetic data with a known answer (`alti_lens.evaluation.contrastive`): subject–verb agreement
across attractor nouns, and indirect-object identification. Each prediction is explained as
`logit(target) − logit(foil)` by every method, and scored by the reciprocal rank of the evidence
token (the subject noun; the IO name's mention, and the repeated subject S2).

    python benchmarks/evaluation/task_logit.py --size full --json /tmp/logit.json --md /tmp/logit.md
    python benchmarks/evaluation/task_logit.py --ship  # the seed-0 models the reduced run loads

The reduced size loads the shipped seed-0 checkpoints from benchmarks/evaluation/models/logit/;
the full size trains `Size.seeds` seeds per task (cached in ~/.cache/alti_lens/eval).
"""

import argparse
import json
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules, run or imported
from train import cached, deterministic, save, train_loop, word_tokenizer

from alti_lens.evaluation import contrastive as C

TITLE = "ALTI-Logit: contrastive explanations against the evidence token (the paper's protocol)"
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "benchmarks" / "evaluation" / "models" / "logit"
DATA_SEED = 20261205  # evaluation examples; training data comes from the training seed
# The full size trains and evaluates from this task's own fixed seeds 0, 1, 2 whatever the
# driver's --seed (recorded in the config): the section's discussion was written from these three
# models. Another three (20261126-20261128) gave other means (agreement, contrastive ALTI-Logit
# 0.820 against 0.687 here): with 3 seeds the spread between models dominates, as the per-seed
# ranges in the tables show.
FULL_SEED = 0
TASKS = ("agreement", "ioi")
EVIDENCE = {"agreement": ("subject",), "ioi": ("io", "s2")}
PAPER = "Ferrando et al. 2023"


@dataclass(frozen=True)
class Size:
    seeds: int  # training seeds per task (reduced: the shipped seed-0 checkpoint only)
    examples: int  # evaluation examples per task and seed
    ig_steps: int  # integrated-gradients points


SIZES = {"reduced": Size(1, 32, 8), "full": Size(3, 200, 32)}


@dataclass(frozen=True)
class Training:
    steps: int = 1200
    batch: int = 64
    lr: float = 3e-3
    d_model: int = 64
    d_mlp: int = 128
    heads: int = 4
    layers: int = 2
    version: int = 1  # bump when the data or the recipe changes (the cache key)


TRAINING = {"agreement": Training(), "ioi": Training()}


# --- training ---------------------------------------------------------------------------------


def _sentences(task: str, rng: random.Random, n: int) -> list[list[str]]:
    if task == "agreement":
        # 0–2 attractors, each number at random: the subject is the only reliable cue
        return [C.agreement_sentence(rng, rng.choice((0, 1, 1, 2, 2)), None) for _ in range(n)]
    return [[*C.ioi_sentence(rng)[0], "."] for _ in range(n)]


def _tokenizer(task: str) -> Any:
    words = C.AGREEMENT_WORDS if task == "agreement" else C.IOI_WORDS
    eot = "<|endoftext|>"
    return word_tokenizer(
        list(words), [eot, "<unk>"], bos=eot, eos=eot, pad=eot, unk="<unk>", max_len=32
    )


def _batch(tok: Any, sentences: list[list[str]]) -> dict[str, torch.Tensor]:
    encoded = tok([" ".join(s) for s in sentences], padding=True, return_tensors="pt")
    labels = encoded["input_ids"].clone()
    labels[encoded["attention_mask"] == 0] = -100
    labels[:, 0] = -100  # BOS is given, never predicted
    return {
        "input_ids": encoded["input_ids"],
        "attention_mask": encoded["attention_mask"],
        "labels": labels,
    }


def train_model(task: str, seed: int, out: Path, cfg: Training) -> dict[str, Any]:
    """Train one GPT-2 on `task` from `seed` (deterministic, one thread) and save it to `out`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = _tokenizer(task)
    with deterministic(seed):
        config = GPT2Config(
            vocab_size=len(tok), n_positions=32, n_embd=cfg.d_model, n_layer=cfg.layers,
            n_head=cfg.heads, n_inner=cfg.d_mlp, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )  # fmt: skip
        model = GPT2LMHeadModel(config)
        rng = random.Random(seed)
        start = time.perf_counter()
        loss = train_loop(
            model, lambda step: _batch(tok, _sentences(task, rng, cfg.batch)), cfg.steps, cfg.lr,
            log=f"{task} seed {seed}",
        )  # fmt: skip
        seconds = time.perf_counter() - start
    save(model, tok, out)
    return {"final_loss": loss, "train_seconds": seconds}


def checkpoint(task: str, seed: int) -> tuple[Path, dict[str, Any]]:
    """The cached checkpoint of `task` trained from `seed` (trained now if missing)."""
    cfg = TRAINING[task]
    key = {"task": f"logit-{task}", "seed": seed, **asdict(cfg)}
    return cached(key, lambda out: train_model(task, seed, out, cfg))


def ship() -> None:
    """Write the seed-0 checkpoints the reduced run loads (same training as the full run)."""
    for task in TASKS:
        folder, metrics = checkpoint(task, 0)
        target = SHIPPED / task
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        for f in folder.iterdir():
            if f.name != "key.json":
                shutil.copy(f, target / f.name)
        print(f"shipped {task}: {sorted(p.name for p in target.iterdir())} {metrics}")


def load(path: Path) -> Any:
    from run_evaluation import load as load_bridge

    return load_bridge(path)


# --- evaluation -------------------------------------------------------------------------------


def examples(task: str, n: int) -> list[C.ContrastiveExample]:
    return (
        C.agreement_examples(n, DATA_SEED) if task == "agreement" else C.ioi_examples(n, DATA_SEED)
    )


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def evaluate(task: str, model: Any, size: Size, seed: int) -> dict[str, Any]:
    """One model's numbers: intervention rates and per-example reciprocal ranks / top-1."""
    data = examples(task, size.examples)
    start = time.perf_counter()
    rates = C.intervention_rates(model, data)
    shares = C.logit_shares(model, data)
    report = C.evidence_ranks(model, data, ig_steps=size.ig_steps, seed=seed)
    groups = [len(e.distractors) for e in data]  # agreement: attractors; IOI: always 1
    by_group = {
        m: {str(g): _mean([v for v, h in zip(d[EVIDENCE[task][0]], groups, strict=True) if h == g])
            for g in sorted(set(groups))}
        for m, d in report.reciprocal_rank.items()
    }  # fmt: skip
    return {
        "interventions": rates,
        "logit_shares": shares,
        "mrr_by_distractors": by_group,
        "accuracy": report.accuracy,
        "logit_difference": report.logit_difference,
        "reciprocal_rank": report.reciprocal_rank,
        "top1": report.top1,
        "seconds": time.perf_counter() - start,
    }


def _aggregate(per_seed: list[dict[str, Any]], table: str) -> dict[str, dict[str, Any]]:
    """Per method and evidence: mean over seeds, min–max of the seed means, bootstrap 95%
    interval of the pooled mean (examples resampled within each seed)."""
    out: dict[str, dict[str, Any]] = {}
    for method, by_name in per_seed[0][table].items():
        for name in by_name:
            runs = [r[table][method][name] for r in per_seed]
            seed_means = [sum(v) / len(v) for v in runs]
            values = [x for v in runs for x in v]
            groups = [i for i, v in enumerate(runs) for _ in v]
            summary = C.summarise(values, groups)
            out.setdefault(method, {})[name] = summary | {
                "seed_min": min(seed_means), "seed_max": max(seed_means), "seeds": seed_means,
            }  # fmt: skip
    return out


def _seed_summary(one: dict[str, Any]) -> dict[str, Any]:
    """One seed's numbers without the per-example lists (kept small for the JSON)."""
    mean = _mean
    return {
        "accuracy": one["accuracy"],
        "interventions": one["interventions"],
        "mrr_by_distractors": one["mrr_by_distractors"],
        "logit_shares": one["logit_shares"],
        "training": one["training"],
        "mean_logit_difference": mean(one["logit_difference"]),
        "mrr": {m: {k: mean(v) for k, v in d.items()} for m, d in one["reciprocal_rank"].items()},
        "top1": {m: {k: mean(v) for k, v in d.items()} for m, d in one["top1"].items()},
        "seconds": one["seconds"],
    }


def run(size: str, seed: int) -> dict[str, Any]:
    """The whole task at `size` ("reduced": shipped seed-0 models; "full": `seeds` trainings)."""
    torch.set_num_threads(1)
    chosen = SIZES[size]
    timings: dict[str, float] = {}
    training = {t: asdict(c) for t, c in TRAINING.items()}
    config = {"size": size, "seed": seed, **asdict(chosen), "data_seed": DATA_SEED}
    base = seed if size == "reduced" else FULL_SEED
    results: dict[str, Any] = {"config": config | {"training": training}}
    for task in TASKS:
        per_seed = []
        for s in range(chosen.seeds):
            start = time.perf_counter()
            if size == "reduced":
                folder, metrics = (
                    SHIPPED / task,
                    json.loads((SHIPPED / task / "metrics.json").read_text()),
                )
            else:
                folder, metrics = checkpoint(task, base + s)
            timings[f"{task} train/load seed {s}"] = time.perf_counter() - start
            model = load(folder)
            one = evaluate(task, model, chosen, base + s)
            one["training"] = metrics
            timings[f"{task} evaluate seed {s}"] = one["seconds"]
            per_seed.append(one)
        results[task] = {
            "per_seed": [_seed_summary(r) for r in per_seed],
            "mrr": _aggregate(per_seed, "reciprocal_rank"),
            "top1": _aggregate(per_seed, "top1"),
            "interventions": {
                k: [r["interventions"][k] for r in per_seed] for k in per_seed[0]["interventions"]
            },
        }
    results["timings"] = timings
    return results


# --- the report -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="reduced")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--md", type=Path)
    parser.add_argument("--plots", type=Path, help="folder for the plots (default: next to --md)")
    parser.add_argument("--ship", action="store_true", help="write the seed-0 checkpoints")
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
        folder = args.plots or args.md.parent
        plots = make_plots(results, folder, args.md.parent)
        args.md.write_text(f"## {TITLE}\n\n" + section(results, plots) + "\n")
    print("\n".join(summary(results)))


# The authors' numbers: GPT-2 Small, MRR of the evidence token, printed by the evaluation notebook
# of their repository (github.com/mt-upc/logit-explanations, evaluation.ipynb, the cell that draws
# the per-dataset bar charts): SVA = mean over its four subsets (1–4 attractors), IOI. "Logit"
# (their ALTI-less variant) is left out: we have no such method.
PAPER_MRR = {
    "SVA (GPT-2 Small)": {"random": 0.283, "gradient norm": 0.449, "gradient × input": 0.295,
                          "erasure": 0.410, C.ALTI_LOGIT: 0.604},
    "IOI (GPT-2 Small)": {"random": 0.245, "gradient norm": 0.860, "gradient × input": 0.111,
                          "erasure": 0.865, C.ALTI_LOGIT: 1.000},
}  # fmt: skip
COLUMNS = (("agreement", "subject"), ("ioi", "io"), ("ioi", "s2"))
COLUMN_NAMES = {
    ("agreement", "subject"): "agreement: subject",
    ("ioi", "io"): "IOI: IO mention",
    ("ioi", "s2"): "IOI: S2",
}


def _cell(summary: dict[str, Any]) -> str:
    return (
        f"{summary['mean']:.3f} [{summary['lo']:.3f}, {summary['hi']:.3f}] "
        f"({summary['seed_min']:.2f}–{summary['seed_max']:.2f})"
    )


def _get(results: dict, task: str, name: str, method: str, table: str = "mrr") -> float:
    return results[task][table][method][name]["mean"]


def _spread(values: list[float]) -> str:
    return f"{sum(values) / len(values):.3f} ({min(values):.2f}–{max(values):.2f})"


def summary(results: dict) -> list[str]:
    """1–3 bullets for the document's summary."""
    a = lambda m: _get(results, "agreement", "subject", m)  # noqa: E731
    i = lambda m: _get(results, "ioi", "io", m)  # noqa: E731
    seeds = results["config"]["seeds"]
    return [
        f"**ALTI-Logit protocol** (contrastive MRR of the evidence token, {seeds} training seeds "
        f"per task, evidence confirmed by intervention): agreement with attractors — contrastive "
        f"ALTI-Logit {a(C.ALTI_LOGIT):.2f}, erasure {a(C.ERASURE):.2f}, gradient norm "
        f"{a('gradient norm'):.2f}, G×I {a('gradient × input'):.2f}, random {a(C.RANDOM):.2f}; "
        f"IOI (IO mention) — contrastive ALTI-Logit {i(C.ALTI_LOGIT):.2f}, target-only "
        f"{i(C.ALTI_LOGIT_TARGET):.2f}, ALTI {i('ALTI'):.2f}, erasure {i(C.ERASURE):.2f}, "
        f"random {i(C.RANDOM):.2f}.",
    ]


def _table(results: dict, table: str) -> list[str]:
    methods = list(results["agreement"][table])
    head = "| method | " + " | ".join(COLUMN_NAMES[c] for c in COLUMNS) + " |"
    lines = [head, "|---|" + "---|" * len(COLUMNS)]
    for m in methods:
        cells = [_cell(results[t][table][m][n]) for t, n in COLUMNS]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _intervention_lines(results: dict) -> list[str]:
    rows = [
        ("agreement", "accuracy", "model accuracy (target above foil)"),
        ("agreement", "evidence", "subject's number changed → verb flips"),
        ("agreement", "distractor", "attractors' number changed → verb stays"),
        ("ioi", "accuracy", "model accuracy (IO above S)"),
        ("ioi", "evidence", "IO mention renamed → the new name wins"),
        ("ioi", "distractor", "subject renamed (both mentions) → IO still wins"),
        ("ioi", "s2", "S2 replaced by the IO name → S wins"),
    ]
    lines = ["| task | check | rate: mean over seeds (min–max) |", "|---|---|---|"]
    for task, key, text in rows:
        lines.append(f"| {task} | {text} | {_spread(results[task]['interventions'][key])} |")
    return lines


def _attractor_lines(results: dict) -> list[str]:
    per_seed = results["agreement"]["per_seed"]
    groups = sorted(per_seed[0]["mrr_by_distractors"][C.RANDOM])
    lines = ["| method | " + " | ".join(f"{g} attractor(s)" for g in groups) + " |"]
    lines.append("|---|" + "---|" * len(groups))
    for m in per_seed[0]["mrr_by_distractors"]:
        cells = [_spread([r["mrr_by_distractors"][m][g] for r in per_seed]) for g in groups]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _paper_lines(results: dict) -> list[str]:
    ours = {"SVA (GPT-2 Small)": ("agreement", "subject"), "IOI (GPT-2 Small)": ("ioi", "io")}
    methods = list(next(iter(PAPER_MRR.values())))
    lines = ["| method | paper SVA | ours: agreement | paper IOI | ours: IOI (IO mention) |"]
    lines.append("|---|---|---|---|---|")
    for m in methods:
        cells = []
        for dataset, (task, name) in ours.items():
            cells += [f"{PAPER_MRR[dataset][m]:.3f}", f"{_get(results, task, name, m):.3f}"]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def make_plots(results: dict, folder: Path, relative_to: Path) -> dict[str, str]:
    """One bar chart: MRR per method with its bootstrap 95% interval (bars) and each seed's MRR
    (dots), per evidence column."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    methods = list(results["agreement"]["mrr"])
    fig, axes = plt.subplots(1, len(COLUMNS), figsize=(13, 4.2), sharey=True)
    for ax, (task, name) in zip(axes, COLUMNS, strict=True):
        rows = [results[task]["mrr"][m][name] for m in methods]
        means = [r["mean"] for r in rows]
        errors = [[r["mean"] - r["lo"] for r in rows], [r["hi"] - r["mean"] for r in rows]]
        colors = ["#C15252" if m.startswith("ALTI-Logit") else "#5C5C5C" if m == C.ERASURE
                  else "#9AB" for m in methods]  # fmt: skip
        ax.barh(range(len(methods)), means, xerr=errors, color=colors, capsize=2)
        for k, r in enumerate(rows):  # each training seed's own MRR
            ax.scatter(r["seeds"], [k] * len(r["seeds"]), s=9, color="black", zorder=3)
        ax.set_title(COLUMN_NAMES[(task, name)])
        ax.set_xlim(0, 1.02)
        ax.set_xlabel("MRR of the evidence token")
        ax.invert_yaxis()
    axes[0].set_yticks(range(len(methods)), methods)
    fig.tight_layout()
    path = folder / "logit_mrr.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {
        "mrr": str(path.relative_to(relative_to)) if path.is_relative_to(relative_to) else str(path)
    }


def section(results: dict, plots: dict[str, str]) -> str:
    """The section body (markdown, "###" inside)."""
    cfg = results["config"]
    train = cfg["training"]["agreement"]
    parts = [
        INTRO.format(
            seeds=cfg["seeds"],
            examples=cfg["examples"],
            steps=train["steps"],
            d_model=train["d_model"],
            layers=train["layers"],
            ig_steps=cfg["ig_steps"],
        ),
        "### The known answer, confirmed by intervention\n",
        *_intervention_lines(results),
        "",
        "### MRR of the evidence token",
        "",
        "Mean over all examples and seeds, [bootstrap 95% interval] (examples resampled within "
        "each seed), (min–max of the per-seed means).\n",
        *_table(results, "mrr"),
        "",
        *([f"![MRR per method]({plots['mrr']})", ""] if "mrr" in plots else []),
        "Top-1: the share of examples where the evidence token is the method's highest-scoring "
        "context token (ties broken at random, in expectation).\n",
        *_table(results, "top1"),
        "",
        "Where the logit difference is written (contrastive ALTI-Logit's parts, each as a share of "
        "the difference, mean over examples; mean over seeds, min–max). The token scores are what "
        "ALTI-Logit ranks; the MLPs' part is a component that no token gets (spec §5).\n",
        *_share_lines(results),
        "",
        "Agreement, MRR of the subject by the number of attractors (mean over seeds, min–max):\n",
        *_attractor_lines(results),
        "",
        "### Beside the paper",
        "",
        PAPER_NOTE,
        "",
        *_paper_lines(results),
        "",
        "### What the numbers say",
        "",
        discussion(results),
    ]
    return "\n".join(parts)


INTRO = """Ferrando et al. (2023, *Explaining How Transformers Use Context to Build Predictions*,
ACL)
evaluate ALTI-Logit on contrastive pairs (after Yin & Neubig 2022): the prediction explained is
`logit(target) − logit(foil)` (the grammatical form against the ungrammatical one, the right name
against the wrong one), and a method is good when it ranks the *evidence* token first; the score is
the mean reciprocal rank (MRR) of that token. We rebuild the protocol on two synthetic tasks whose
evidence is known and checked by intervention, each learned by a small GPT-2 ({layers} layers,
d_model {d_model}, word-level tokenizer, {steps} steps) trained here from {seeds} seeds; {examples}
held-out examples per task and seed (`alti_lens.evaluation.contrastive`,
`benchmarks/evaluation/task_logit.py`).

- **Agreement with attractors** (their SVA/BLiMP `distractor_agreement` analogue): "the (adj) N
  (prep the (adj) N′)^k" with k = 1 or 2 attractors N′ all of the other number; the model predicts
  the verb (target: the agreeing form, foil: the other); evidence: the subject noun (the only
  number-bearing word besides the attractors; the determiner is always "the"). Trained on 0–2
  attractors of random number, so the subject is the only reliable cue.
- **IOI** ("when mary and john went to the store , john gave a drink to" → mary, three templates,
  IO first or second): target the indirect object, foil the subject (the repeated name). Evidence:
  the IO's mention — the paper's convention (its IOI file marks the IO name as the evidence) — and,
  as a second column, S2 (the repeated subject: in Wang et al.'s circuit the S-inhibition signal
  that tells the name movers which name *not* to copy; it pushes the same difference from the
  foil's side).

Methods, each explaining the same difference at the last position: contrastive ALTI-Logit
(`alti_logit(..., target=, foil=)`), ALTI-Logit of the target alone, ALTI (the `l1` rollout row of
the last position), attention (last layer, head mean), attention rollout, norm (Kobayashi, rolled
out), erasure (occlusion, the causal reference), gradient norm (L2), gradient × input and
integrated gradients ({ig_steps} points, zero embedding baseline) of the logit difference w.r.t.
the token embeddings (plain autograd, `alti_lens.models.embedding_gradients`), random. Conventions:
candidates are the context tokens without BOS, the explained last token included (as in the paper);
signed methods are ranked by their signed value (a token that pushes towards the foil ranks last),
as the paper ranks them; ties share their mean rank; ALTI-Logit gets the last token's own embedding
logit added to that token (the paper's code does the same). Every example counts, also the ones a
model gets wrong (the paper's protocol; accuracies are below). Two erasures: *positions kept*
(the paper's, the causal reference: token j is hidden from every attention row through
`hook_pattern`, the other tokens keep their positions; checked to 1e-9 against the Hugging Face
model with that token masked and its position ids kept), and *deletion* (through the
TransformerLens bridge an attention mask renumbers the later positions, so masking a token is
deleting it, also checked to 1e-9).
"""

PAPER_NOTE = """The authors' MRR for GPT-2 Small, as printed by the evaluation notebook of their
repository (`mt-upc/logit-explanations`, `evaluation.ipynb`: SVA = the mean of its four subsets
with 1–4 attractors; IOI = their IOI set with the IO name as evidence). We could not read the
paper's own text here, so these are the numbers behind its bar charts as the notebook prints them,
not a table quoted from the paper. The protocols differ in the model (GPT-2 Small on natural
text vs. a 2-layer model trained on the task), the data (natural sentences vs. a grammar) and
three details: their erasure masks a token with positions kept and scores p(target) − p(foil);
their gradient norm is the L1 norm; their MRR uses dense ranks over all prefix tokens (GPT-2 has
no BOS). The orderings can be compared; the absolute values only loosely."""


def _shares(results: dict, task: str) -> dict[str, list[float]]:
    per_seed = results[task]["per_seed"]
    return {k: [r["logit_shares"][k] for r in per_seed] for k in per_seed[0]["logit_shares"]}


def _share_lines(results: dict) -> list[str]:
    lines = [
        "| task | token scores (attention paths) | MLPs | other components | logit difference |",
        "|---|---|---|---|---|",
    ]
    for task in TASKS:
        sh = _shares(results, task)
        other = [1 - t - m for t, m in zip(sh["tokens"], sh["mlps"], strict=True)]
        cells = [_spread(sh["tokens"]), _spread(sh["mlps"]), _spread(other)]
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {_spread(sh['logit difference'])} |")
    return lines


def _compare(x: float, y: float) -> str:
    return "above" if x > y + 0.02 else "below" if x < y - 0.02 else "level with"


def _seeds(results: dict, task: str, name: str, method: str) -> str:
    return ", ".join(f"{v:.2f}" for v in results[task]["mrr"][method][name]["seeds"])


def discussion(results: dict) -> str:
    """What the numbers say, with the numbers (written from `results`)."""
    a = lambda m, t="mrr": _get(results, "agreement", "subject", m, t)  # noqa: E731
    io = lambda m, t="mrr": _get(results, "ioi", "io", m, t)  # noqa: E731
    s2 = lambda m, t="mrr": _get(results, "ioi", "s2", m, t)  # noqa: E731
    rates = [
        v for t in TASKS for k, vs in results[t]["interventions"].items() if k != "n" for v in vs
    ]
    share_a, share_i = _shares(results, "agreement"), _shares(results, "ioi")
    worst = min(range(len(share_a["tokens"])), key=lambda k: share_a["tokens"][k])
    worst_mrr = results["agreement"]["mrr"][C.ALTI_LOGIT]["subject"]["seeds"][worst]
    deletion_top = (
        "on one example of the seed-0 model, deleting any token but the last changed it by "
        "6.0–9.0 logits, out of 9.9"
    )
    return f"""
**The yardstick and its ceiling.** Every model prefers the target and every intervention goes the
way the evidence says in at least {min(rates):.0%} of the examples (table above), so the
evidence tokens are causal. Erasure with positions kept — the paper's erasure — ranks the subject
first in {a(C.ERASURE, "top1"):.0%} of the agreement examples (MRR {a(C.ERASURE):.3f}) but the IO
mention first in only {io(C.ERASURE, "top1"):.0%} (MRR {io(C.ERASURE):.3f}; per seed
{_seeds(results, "ioi", "io", C.ERASURE)}): the causal reference itself misses the IO mention
in some models (which tokens outrank it varies by seed; we did not analyse it further). Deletion is
worse on IOI (MRR {io(C.DELETION):.3f}): the
templates fix every position, and deleting a token renumbers all later ones, so nearly every
deletion changes the difference by several logits ({deletion_top}) — an out-of-distribution
artefact, not evidence. This is why the paper's erasure hides the token instead of deleting it.

**Agreement: ALTI-Logit loses here, because the MLPs write the difference.** Erasure
({a(C.ERASURE):.3f}) and gradient norm ({a("gradient norm"):.3f}) find the subject almost always;
contrastive ALTI-Logit reaches {a(C.ALTI_LOGIT):.3f} (per seed
{_seeds(results, "agreement", "subject", C.ALTI_LOGIT)}: the same recipe gives models whose
attention paths carry the subject in very different ways), {_compare(a(C.ALTI_LOGIT), a("norm"))}
norm ({a("norm"):.3f}) and {_compare(a(C.ALTI_LOGIT), a(C.RANDOM))} random ({a(C.RANDOM):.3f}).
The table of shares says why: ALTI-Logit distributes over the tokens only what the attention
paths write into the logit, and in these 2-layer models that is
{sum(share_a["tokens"]) / 3:.1%} of the difference (per seed
{", ".join(f"{v:.1%}" for v in share_a["tokens"])}) while the MLPs write
{sum(share_a["mlps"]) / 3:.1%}. Spec §5 keeps every MLP output as a component that no token gets
(an MLP is not linear in its input tokens), so the subject's score is only the small direct logit
of the attention that moves its number to the verb position; in seed {worst} (token share
{share_a["tokens"][worst]:.1%}) that direct effect points the other way and the subject's MRR is
{worst_mrr:.2f}. Spreading each MLP's logit over the tokens by the rollout of its input (the
"+ MLPs by rollout" row, a read-out rather than a decomposition) does not rescue it
({a(C.MLP_ROLLED):.3f}): the ALTI rollout row of the last position, which decides where the MLPs'
logit goes, ranks the subject at {a("ALTI"):.3f} on its own and lower with two attractors (see the
attractor table): it gives other tokens more of the MLP's input than the subject. How much of a
token a representation holds (ALTI) is not how much of the decision
that token carries. The contrast does not help on this task either: target-only ALTI-Logit
{a(C.ALTI_LOGIT_TARGET):.3f}. Gradient × input
({a("gradient × input"):.3f}) is {_compare(a("gradient × input"), a(C.RANDOM))} random, as in
the paper's SVA results (0.295 against random 0.283).

**IOI: the contrast splits the evidence between the IO mention and S2.** The ALTI rollout row
({io("ALTI"):.3f}) and target-only ALTI-Logit ({io(C.ALTI_LOGIT_TARGET):.3f}) find the IO mention
{_compare(io(C.ALTI_LOGIT_TARGET), io(C.ALTI_LOGIT))} contrastive ALTI-Logit
({io(C.ALTI_LOGIT):.3f}), which in exchange credits S2 — the repeated subject, which tells the model
which name not to predict (in Wang et al.'s GPT-2 circuit, the S-inhibition signal) — more than the
target-only
version does ({s2(C.ALTI_LOGIT):.3f} against {s2(C.ALTI_LOGIT_TARGET):.3f}). Both tokens decide
the difference (the S2 intervention flips it), so a single-evidence MRR penalises the contrastive
explanation for seeing both. The token scores carry {sum(share_i["tokens"]) / 3:.1%} of the
difference here (MLPs {sum(share_i["mlps"]) / 3:.1%}), more than in agreement; with the MLPs
spread by rollout the IO mention gets {io(C.MLP_ROLLED):.3f}. Integrated gradients
({s2("integrated gradients"):.3f}) and erasure ({s2(C.ERASURE):.3f}) rank S2 highest; gradient ×
input ranks the IO
mention {_compare(io("gradient × input"), io(C.RANDOM))} random ({io("gradient × input"):.3f}
against {io(C.RANDOM):.3f}) — the paper's G×I on IOI is 0.111, the same failure. Attention (last
layer, head mean) and attention rollout stay close to random on both tasks (agreement
{a("attention"):.3f} / {a("attention rollout"):.3f}, IOI {io("attention"):.3f} /
{io("attention rollout"):.3f}); attention rollout never ranks the evidence first (top-1
{a("attention rollout", "top1"):.3f} and {io("attention rollout", "top1"):.3f}).

**Beside the paper.** On IOI the paper's order of ALTI-Logit, gradient norm and G×I is reproduced
(paper 1.000 / 0.860 / 0.111; ours {io(C.ALTI_LOGIT):.3f} / {io("gradient norm"):.3f} /
{io("gradient × input"):.3f}), but not ALTI-Logit's lead over erasure (paper 1.000 against 0.865;
ours {io(C.ALTI_LOGIT):.3f} against {io(C.ERASURE):.3f}) nor its level: our models also put part
of the decision on S2 and most of it in the MLPs. On agreement
the paper's ALTI-Logit leads (SVA 0.604 against erasure 0.410 and gradient norm 0.449) and ours
trails both: in our 2-layer models the MLPs write almost all of the agreement logit, and the
decomposition leaves MLPs unattributed. Whether an
explanation method "wins" depends on where the model writes the decision; the shares table is the
number to read before the MRR.""".strip()


if __name__ == "__main__":
    main()
