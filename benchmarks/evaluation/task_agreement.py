"""Translator v2 with agreement (issue 16, deliverable 1): training, the run and the report section.

    python benchmarks/evaluation/task_agreement.py --size full --json /tmp/a.json --md /tmp/a.md
    python benchmarks/evaluation/task_agreement.py --ship   # the checkpoint the reduced run loads

The data and the experiment are `alti_lens.evaluation.agreement`; this script trains the 2+2-layer
BARTs on it (one per training seed, cached by `train.cached`), runs the experiment on each and
writes the section.
"""

import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train import cached, deterministic, save, seq2seq_batch, train_loop, word_tokenizer

from alti_lens.evaluation import agreement

TITLE = "Translator v2: agreement (the target word needs a second, distant source word)"
ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "benchmarks" / "evaluation" / "models" / "agreement"
TRAIN_DATA_SEED = 0  # training sentences; evaluation sentences come from `run`'s seed
HELDOUT_SEED = 1  # the held-out set of the training metrics
STEPS, BATCH, LR = 2000, 64, 2e-3
LEARNED = 0.95  # a seed is evaluated if it has learned the agreement (see `learned`)
SIZES = {
    "reduced": {"seeds": [0], "sentences": 8, "substitution_sentences": 8, "ig_steps": 4},
    "full": {
        "seeds": [0, 1, 2, 3, 4],
        "sentences": 100,
        "substitution_sentences": 100,
        "ig_steps": 8,
    },
}


# --- training ------------------------------------------------------------------------------------


def tokenizer() -> Any:
    words = [*agreement.SOURCE_WORDS, *agreement.TARGET_WORDS]
    return word_tokenizer(
        words, ["<s>", "<pad>", "</s>", "<unk>"], bos="<s>", eos="</s>", pad="<pad>", unk="<unk>",
        max_len=32,
    )  # fmt: skip


def batch(pairs: list[agreement.AgreementPair], tok: Any) -> dict[str, torch.Tensor]:
    """Source `<s> words`, labels `<s> words </s>` (BART shifts them right after `</s>`)."""
    return seq2seq_batch([p.source for p in pairs], [p.target for p in pairs], tok)


@torch.no_grad()
def training_metrics(model: Any, tok: Any, pairs: list[agreement.AgreementPair]) -> dict:
    """Greedy exact match of whole outputs, teacher-forced token accuracy (words and EOS) and
    teacher-forced accuracy on each agreeing kind of target word."""
    model.eval()
    exact = hits = total = 0
    kind_hits: dict[str, list[int]] = {k: [0, 0] for k in agreement.AGREEMENT_KINDS}
    for i in range(0, len(pairs), 200):
        chunk = pairs[i : i + 200]
        b = batch(chunk, tok)
        out = model.generate(
            input_ids=b["input_ids"], attention_mask=b["attention_mask"],
            max_new_tokens=b["labels"].shape[1] + 2, do_sample=False,
        )  # fmt: skip
        pred = model(**b).logits.argmax(-1)
        real = b["labels"] != -100
        real[:, 0] = False
        hits += int((pred == b["labels"])[real].sum())
        total += int(real.sum())
        for j, p in enumerate(chunk):
            gold = b["labels"][j][b["labels"][j] != -100].tolist()
            got = out[j, 1:].tolist()
            got = got[: got.index(tok.eos_token_id) + 1] if tok.eos_token_id in got else got
            exact += got == gold
            for t, kind in enumerate(p.kinds):
                if kind in kind_hits:  # label position 1 + t holds target word t
                    kind_hits[kind][0] += int(pred[j, 1 + t] == b["labels"][j, 1 + t])
                    kind_hits[kind][1] += 1
    return {
        "exact_match": exact / len(pairs),
        "teacher_forced_token_accuracy": hits / total,
        **{f"teacher_forced_{k}_accuracy": h / max(1, n) for k, (h, n) in kind_hits.items()},
    }


def _build(seed: int, steps: int) -> Any:
    def build(out: Path) -> dict[str, Any]:
        from transformers import BartConfig, BartForConditionalGeneration

        with deterministic(seed):
            tok = tokenizer()
            config = BartConfig(
                vocab_size=len(tok), d_model=64, encoder_layers=2, decoder_layers=2,
                encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=256,
                decoder_ffn_dim=256, max_position_embeddings=32, dropout=0.0,
                attention_dropout=0.0, activation_dropout=0.0, bos_token_id=0, pad_token_id=1,
                eos_token_id=2, decoder_start_token_id=2, forced_eos_token_id=2,
            )  # fmt: skip
            model = BartForConditionalGeneration(config)
            model.generation_config.max_length = 32
            # training sentences depend on the training seed too, so seeds differ in data order
            train = agreement.agreement_pairs(steps * BATCH, 1000 * seed + TRAIN_DATA_SEED)
            start = time.perf_counter()
            loss = train_loop(
                model, lambda s: batch(train[s * BATCH : (s + 1) * BATCH], tok), steps, LR,
                log=f"agreement seed {seed}",
            )  # fmt: skip
            seconds = time.perf_counter() - start
            seen = {tuple(p.source) for p in train}
            heldout = [
                p
                for p in agreement.agreement_pairs(1000, HELDOUT_SEED)
                if tuple(p.source) not in seen
            ]
            metrics = training_metrics(model, tok, heldout)
            save(model, tok, out)
        return metrics | {
            "train_seconds": seconds, "final_loss": loss, "steps": steps, "batch": BATCH,
            "n_heldout": len(heldout),
        }  # fmt: skip

    return build


def checkpoint(seed: int, steps: int = STEPS) -> tuple[Path, dict[str, Any]]:
    """The trained checkpoint of `seed` (from the cache, trained if missing) and its metrics."""
    key = {
        "task": "agreement", "seed": seed, "steps": steps, "batch": BATCH, "lr": LR,
        "d_model": 64, "layers": "2+2", "heads": 4, "ffn": 256, "data": "agreement-v4",
    }  # fmt: skip
    return cached(key, _build(seed, steps))


def learned(metrics: dict[str, Any]) -> bool:
    """Has the model learned the task? Held-out teacher-forced accuracy of the determiners and of
    the verbs at least `LEARNED` (below it the forms are guessed, and a known answer about
    where they come from means nothing)."""
    return all(
        metrics[f"teacher_forced_{k}_accuracy"] >= LEARNED
        for k in (agreement.DETERMINER, agreement.VERB)
    )


def ship() -> None:
    """Copy the first training seed's checkpoint that learned the task (trained by the same
    function as the full run) into the repository, for the reduced run."""
    for seed in SIZES["full"]["seeds"]:
        folder, metrics = checkpoint(seed)
        if learned(metrics):
            break
    else:
        raise SystemExit("no training seed learned the task")
    shutil.rmtree(SHIPPED, ignore_errors=True)
    SHIPPED.mkdir(parents=True)
    for f in folder.iterdir():
        if f.is_file():
            shutil.copy(f, SHIPPED / f.name)
            (SHIPPED / f.name).chmod(0o644)  # safetensors writes 0600
    (SHIPPED / "metrics.json").write_text(json.dumps(metrics | {"seed": seed}, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    print(f"shipped seed {seed} to {SHIPPED}")


# --- the run --------------------------------------------------------------------------------------

OCCLUSION = "occlusion (same-class words)"
OCCLUSION_UNK = "occlusion (<unk>)"
DICTIONARY, DICTIONARY_NOUN = "dictionary", "dictionary + nearest noun"
DIAGONAL, RANDOM = "diagonal", "random"
CAUSAL = (OCCLUSION, OCCLUSION_UNK)
TRIVIAL = (DICTIONARY, DICTIONARY_NOUN, DIAGONAL, RANDOM)
N_ALTERNATIVES = 4  # same-class replacements averaged per occluded word


def _load(folder: Path) -> Any:
    from run_evaluation import load  # the sibling script's loader (TransformerBridge, float64)

    return load(folder)


def _encoder(model: Any):
    from run_evaluation import aligned_pairs

    return lambda pair: aligned_pairs(model, [pair])[0]


def _method_scores(
    model: Any, pairs: list[agreement.AgreementPair], encoded: list[Any], cfg: dict, seed: int
) -> tuple[dict[str, list[torch.Tensor]], Any, dict[str, float]]:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    scores, results = agreement.layered_scores(model, encoded)
    timings["alti_plus"] = time.perf_counter() - start
    start = time.perf_counter()
    scores |= agreement.gradient_scores(model, encoded, steps=cfg["ig_steps"])
    timings["gradients"] = time.perf_counter() - start
    start = time.perf_counter()
    n_layers = results["l1"].rollout.shape[1]
    scores[agreement.VALUE_ZEROING] = agreement.value_zeroing_scores(model, encoded, n_layers)
    timings["value_zeroing"] = time.perf_counter() - start
    start = time.perf_counter()
    tok = model.tokenizer
    rng = random.Random(seed)
    same = [
        [
            tok.convert_tokens_to_ids(ws)
            for ws in agreement.same_class_alternatives(p, N_ALTERNATIVES, rng)
        ]
        for p in pairs
    ]
    scores[OCCLUSION] = agreement.occlusion_scores(model, encoded, same)
    unk = [[[tok.unk_token_id]] * len(p.source) for p in pairs]
    scores[OCCLUSION_UNK] = agreement.occlusion_scores(model, encoded, unk)
    timings["occlusion"] = time.perf_counter() - start
    generator = torch.Generator().manual_seed(seed)
    scores[DICTIONARY] = [agreement.dictionary_scores(p) for p in pairs]
    scores[DICTIONARY_NOUN] = [agreement.dictionary_scores(p, nearest_noun=True) for p in pairs]
    scores[DIAGONAL] = [agreement.diagonal_scores(p) for p in pairs]
    scores[RANDOM] = [agreement.random_scores(p, generator) for p in pairs]
    return scores, results["l1"], timings


def _clipping(result: Any, encoded: list[Any], pairs: list[agreement.AgreementPair]) -> dict:
    """Share of gold (aligned) and agreement source tokens whose ALTI cross contribution is
    clipped to exactly 0, per decoder layer, by kind of target word."""
    out: dict[str, list[float]] = {}
    groups = {"aligned (all words)": lambda p, t: p.aligned[t]}
    for kind in agreement.AGREEMENT_KINDS:
        groups[f"agreement source ({kind})"] = lambda p, t, k=kind: (
            p.agreement[t] if p.kinds[t] == k else None
        )
        groups[f"aligned ({kind})"] = lambda p, t, k=kind: p.aligned[t] if p.kinds[t] == k else None
    for name, pick in groups.items():
        links = []
        for e, p in zip(encoded, pairs, strict=True):
            words = [(t, pick(p, t)) for t in range(len(p.target))]
            links.append(agreement.token_links(e, [(t, s) for t, s in words if s is not None]))
        out[name] = agreement.clipped_share(result.cross_contributions, links)
    return out


def _clipped_errors(
    cross_scores: list[torch.Tensor], result: Any, encoded: list[Any], pairs: list[Any]
) -> list[dict[str, int]]:
    """Per decoder layer: the target words whose ALTI cross C_ca^l argmax misses the aligned
    word (`errors`) and how many of those have the aligned source clipped to exactly 0."""
    out = []
    for layer in range(result.cross_contributions.shape[1]):
        errors = clipped = 0
        for b, (e, p) in enumerate(zip(encoded, pairs, strict=True)):
            for t, aligned in enumerate(p.aligned):
                if int(cross_scores[b][layer, t].argmax()) == aligned:
                    continue
                errors += 1
                links = agreement.token_links(e, [(t, aligned)])
                clipped += all(
                    float(result.cross_contributions[b, layer, r, s]) == 0 for r, s in links
                )
        out.append({"errors": errors, "clipped": clipped})
    return out


def _encoder_mixing(result: Any, encoded: list[Any], pairs: list[agreement.AgreementPair]) -> dict:
    """How much of the agreement source the encoder has mixed into the aligned word's state:
    the mean encoder-rollout share R_enc[aligned, agreement source] after the last encoder layer,
    beside the mean share of the other (non-aligned) source words, per kind."""
    out: dict[str, dict[str, float]] = {}
    for kind in agreement.AGREEMENT_KINDS:
        agree, other = [], []
        for b, (e, p) in enumerate(zip(encoded, pairs, strict=True)):
            R = result.encoder_rollout[b, -1]
            pos = {w: s for s, w in enumerate(e.source_words) if w is not None}
            for t, k in enumerate(p.kinds):
                if k != kind:
                    continue
                a, g = pos[p.aligned[t]], pos[p.agreement[t]]
                agree.append(float(R[a, g]))
                rest = [pos[w] for w in pos if w not in (p.aligned[t], p.agreement[t])]
                other += [float(R[a, s]) for s in rest]
        out[kind] = {
            "agreement_source": sum(agree) / max(1, len(agree)),
            "other_word": sum(other) / max(1, len(other)),
        }
    return out


def _substitution_rates(model: Any, pairs: list[agreement.AgreementPair], seed: int) -> dict:
    subs = agreement.substitutions(pairs, seed)
    checks = agreement.substitution_check(model, subs, _encoder(model))
    out: dict[str, dict[str, float]] = {}
    for kind in agreement.AGREEMENT_KINDS:
        for flips, name in ((True, "agreement source changed"), (False, "other words changed")):
            picked = [
                c for s, c in zip(subs, checks, strict=True)
                if s.original.kinds[s.row] == kind and s.flips == flips
            ]  # fmt: skip
            out.setdefault(kind, {})[name] = sum(c["follows"] for c in picked) / max(1, len(picked))
            if flips:
                out[kind]["follows source, old target prefix"] = sum(
                    c["follows_source_with_old_prefix"] for c in picked
                ) / max(1, len(picked))
                out[kind]["n"] = len(picked)
    return out


def _evaluate_seed(folder: Path, cfg: dict, seed: int) -> tuple[dict, dict]:
    """Counts per method (per layer, per sentence) and the per-seed measurements."""
    model = _load(folder)
    pairs = agreement.agreement_pairs(cfg["sentences"], seed)
    encode = _encoder(model)
    encoded = [encode(p) for p in pairs]
    scores, result, timings = _method_scores(model, pairs, encoded, cfg, seed)
    counts = {
        name: [
            {k: v.tolist() for k, v in layer.items()} for layer in agreement.corpus_counts(s, pairs)
        ]
        for name, s in scores.items()
    }
    start = time.perf_counter()
    sub_pairs = agreement.agreement_pairs(cfg["substitution_sentences"], seed + 1)
    measured = {
        "clipped_share": _clipping(result, encoded, pairs),
        "clipped_among_errors": _clipped_errors(
            scores["ALTI cross C_ca^l"], result, encoded, pairs
        ),
        "encoder_mixing": _encoder_mixing(result, encoded, pairs),
        "substitution": _substitution_rates(model, sub_pairs, seed + 2),
        "n_target_words": sum(len(p.target) for p in pairs),
        "n_agreeing": {k: sum(p.kinds.count(k) for p in pairs) for k in agreement.AGREEMENT_KINDS},
    }
    timings["substitution_and_clipping"] = time.perf_counter() - start
    measured["timings"] = timings
    return counts, measured


def _summarise(per_seed_counts: list[dict]) -> dict:
    """method -> layer -> metric -> {mean, low, high, min, max} over seeds (interval: bootstrap
    over sentences of the seed mean)."""
    out: dict[str, list[dict]] = {}
    for name in per_seed_counts[0]:
        layers = []
        for layer in range(len(per_seed_counts[0][name])):
            metrics = {}
            for key in per_seed_counts[0][name][layer]:
                c = torch.tensor([s[name][layer][key] for s in per_seed_counts])
                mean, low, high = agreement.bootstrap_ratio(c, n_resamples=500)
                per = (c[..., 0].sum(1) / c[..., 1].sum(1).clamp(min=1)).tolist()
                metrics[key] = {
                    "mean": mean,
                    "low": low,
                    "high": high,
                    "min": min(per),
                    "max": max(per),
                }
            layers.append(metrics)
        out[name] = layers
    return out


def run(size: str, seed: int) -> dict[str, Any]:
    """Train (full: every training seed, from the cache when there) or load (reduced: the
    shipped checkpoint) the models, and evaluate those that learned the task (`learned`)."""
    cfg = SIZES[size]
    timings: dict[str, float] = {}
    training: dict[str, dict] = {}
    folders: dict[str, Path] = {}
    for train_seed in cfg["seeds"]:
        start = time.perf_counter()
        if size == "reduced":
            metrics = json.loads((SHIPPED / "metrics.json").read_text())
            folders[str(metrics.get("seed", train_seed))] = SHIPPED
            training[str(metrics.get("seed", train_seed))] = metrics
        else:
            folders[str(train_seed)], training[str(train_seed)] = checkpoint(train_seed)
        timings[f"train_or_load_seed{train_seed}"] = time.perf_counter() - start
    evaluated = [k for k, m in training.items() if learned(m)]
    per_seed_counts, per_seed = [], []
    for train_seed in evaluated:
        start = time.perf_counter()
        counts, measured = _evaluate_seed(folders[train_seed], cfg, seed)
        timings[f"evaluate_seed{train_seed}"] = time.perf_counter() - start
        per_seed_counts.append(counts)
        per_seed.append(measured | {"training_seed": int(train_seed)})
    start = time.perf_counter()
    methods = _summarise(per_seed_counts)
    timings["bootstrap"] = time.perf_counter() - start
    config = cfg | {"steps": STEPS, "batch": BATCH, "lr": LR, "learned_threshold": LEARNED}
    return {
        "size": size, "seed": seed, "config": config, "training": training,
        "evaluated_seeds": [int(k) for k in evaluated], "methods": methods,
        "per_seed": per_seed, "timings": timings,
    }  # fmt: skip


TRAINING_NOTE = (
    "In our training logs (one batch's loss every 500 steps) every seed reached a plateau near 2 "
    "nats per token by step 500; seeds 1, 3 and 4 left it before step 1000, seed 0 only late "
    "(0.9 at step 2000) and seed 2 not at all. 2000 steps were what the time budget allowed. "
    "Training seconds were measured on a shared 2-core machine under load."
)
LAST = -1  # layered methods are read after the last decoder layer (fixed, not chosen on the data)
HEADLINE_METHODS = (
    "ALTI+ (rollout R^l)", "ALTI cross C_ca^l", "ALTI cross x encoder rollout",
    "cross-attention (head mean)", "cross-attention x encoder attention rollout",
    "attention rollout (extended)", "norm (Kobayashi) cross", "norm rollout (extended)",
    agreement.VALUE_ZEROING, agreement.GRADIENT_NORM, agreement.GRADIENT_X_INPUT,
    agreement.INTEGRATED, *CAUSAL, *TRIVIAL,
)  # fmt: skip
MIXING = ("ALTI cross C_ca^l", "ALTI cross x encoder rollout", "ALTI+ (rollout R^l)")


def _f(x: float, digits: int = 3) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _cell(m: dict | None, *, error: bool = False, interval: bool = True) -> str:
    """mean [low, high] (error: 1 − the value, for AER); the seed spread in the JSON."""
    if m is None:
        return "–"
    mean, low, high = m["mean"], m["low"], m["high"]
    if error:
        mean, low, high = 1 - mean, 1 - high, 1 - low
    return f"{_f(mean)} [{_f(low)}, {_f(high)}]" if interval else _f(mean)


def metric(results: dict, method: str, key: str, layer: int = LAST) -> dict | None:
    layers = results["methods"][method]
    return layers[layer if len(layers) > 1 else 0].get(key)


def headline(results: dict) -> dict[str, float]:
    """The numbers the summary quotes and the test bounds (means over seeds)."""

    def mean(method: str, key: str, layer: int = LAST) -> float:
        m = metric(results, method, key, layer)
        return float("nan") if m is None else m["mean"]

    out = {
        "aer_alti_plus": 1 - mean("ALTI+ (rollout R^l)", agreement.ARGMAX),
        "aer_attention": 1 - mean("cross-attention (head mean)", agreement.ARGMAX),
        "aer_alti_cross": 1 - mean("ALTI cross C_ca^l", agreement.ARGMAX),
        "agreement2_alti_plus": mean("ALTI+ (rollout R^l)", "agreement@2"),
        "agreement2_alti_cross": mean("ALTI cross C_ca^l", "agreement@2"),
        "agreement2_alti_cross_enc": mean("ALTI cross x encoder rollout", "agreement@2"),
        "agreement2_attention": mean("cross-attention (head mean)", "agreement@2"),
        "agreement2_occlusion": mean(OCCLUSION, "agreement@2"),
        "agreement2_random": mean(RANDOM, "agreement@2"),
        "agreement2_integrated": mean(agreement.INTEGRATED, "agreement@2"),
    }
    subs = [s["substitution"] for s in results["per_seed"]]
    for kind in (agreement.DETERMINER, agreement.VERB):
        out[f"substitution_{kind}"] = sum(s[kind]["agreement source changed"] for s in subs) / len(
            subs
        )
    return out


def summary(results: dict) -> list[str]:
    h = headline(results)
    seeds = len(results["evaluated_seeds"])
    return [
        f"**Agreement translator (section: {TITLE.split(':')[0]}), {seeds} trained model(s):** "
        f"target determiners and verbs need a second, distant source word (the noun's gender, "
        f"the subject's number; confirmed by substitution: "
        f"{_f(h['substitution_determiner'])} / {_f(h['substitution_verb'])} of the forms flip). "
        f"Recall@2 of that agreement source: ALTI+ rollout {_f(h['agreement2_alti_plus'])}, "
        f"ALTI cross C_ca {_f(h['agreement2_alti_cross'])} (× encoder rollout "
        f"{_f(h['agreement2_alti_cross_enc'])}), cross-attention {_f(h['agreement2_attention'])}, "
        f"integrated gradients {_f(h['agreement2_integrated'])}, occlusion (the causal "
        f"reference) {_f(h['agreement2_occlusion'])}, random {_f(h['agreement2_random'])}; AER "
        f"ALTI+ {_f(h['aer_alti_plus'])} vs attention {_f(h['aer_attention'])}.",
    ]


def _seed_mean(results: dict, get: Any) -> str:
    values = [get(s) for s in results["per_seed"]]
    mean = sum(values) / len(values)
    return _f(mean) if len(values) == 1 else f"{_f(mean)} ({_f(min(values))}–{_f(max(values))})"


def _models_table(results: dict) -> str:
    rows = []
    for seed, m in results["training"].items():
        rows.append([
            seed, _f(m["exact_match"]), _f(m["teacher_forced_token_accuracy"]),
            _f(m["teacher_forced_determiner_accuracy"]), _f(m["teacher_forced_verb_accuracy"]),
            _f(m["teacher_forced_adjective_accuracy"]), f"{m['train_seconds']:.0f}",
        ])  # fmt: skip
    header = ["training seed", "exact match (greedy)", "token accuracy (teacher-forced)",
              "determiners", "verbs", "adjectives", "training s"]  # fmt: skip
    return _table(header, rows)


def _substitution_table(results: dict) -> str:
    rows = []
    for kind in agreement.AGREEMENT_KINDS:

        def get(key: str, k: str = kind) -> str:
            return _seed_mean(results, lambda s: s["substitution"][k][key])

        rows.append([
            kind, get("agreement source changed"), get("other words changed"),
            get("follows source, old target prefix"),
            str(results["per_seed"][0]["substitution"][kind]["n"]),
        ])  # fmt: skip
    header = ["target word", "agreement source changed: the form follows",
              "other words changed: the form stays",
              "with the old target prefix: follows the source",
              "n (per seed)"]  # fmt: skip
    return _table(header, rows)


def _main_table(results: dict) -> str:
    rows = []
    for name in HEADLINE_METHODS:

        def c(key: str, n: str = name, **kw: Any) -> str:
            return _cell(metric(results, n, key), **kw)

        rows.append([
            name, c(agreement.ARGMAX, error=True), c("aligned@2", interval=False),
            c("agreement@1", interval=False), c("agreement@2"),
            c("agreement@2 determiner", interval=False), c("agreement@2 verb", interval=False),
            c("agreement@2 adjective", interval=False),
        ])  # fmt: skip
    header = ["method", "AER", "aligned@2", "agreement@1", "agreement@2 (det + verb)",
              "@2 determiners", "@2 verbs", "@2 adjectives"]  # fmt: skip
    return _table(header, rows)


def _layer_table(results: dict, names: tuple[str, ...]) -> str:
    rows = []
    for name in names:
        for layer in range(len(results["methods"][name])):

            def c(key: str, n: str = name, ly: int = layer, **kw: Any) -> str:
                return _cell(metric(results, n, key, ly), **kw)

            rows.append([
                name, str(layer), c(agreement.ARGMAX, error=True, interval=False),
                c("agreement@1 determiner", interval=False), c("agreement@2 determiner"),
                c("agreement@1 verb", interval=False), c("agreement@2 verb"),
            ])  # fmt: skip
    header = ["method", "decoder layer", "AER", "@1 determiners", "@2 determiners", "@1 verbs",
              "@2 verbs"]  # fmt: skip
    return _table(header, rows)


def _clipping_table(results: dict) -> str:
    groups = results["per_seed"][0]["clipped_share"]
    n_layers = len(next(iter(groups.values())))
    rows = [
        [
            g,
            *(
                _seed_mean(results, lambda s, g=g, ly=ly: s["clipped_share"][g][ly])
                for ly in range(n_layers)
            ),
        ]
        for g in groups
    ]
    return _table(["source token", *(f"decoder layer {ly}" for ly in range(n_layers))], rows)


def _mixing_line(results: dict) -> str:
    parts = []
    for kind in (agreement.DETERMINER, agreement.VERB):
        a = _seed_mean(results, lambda s, k=kind: s["encoder_mixing"][k]["agreement_source"])
        o = _seed_mean(results, lambda s, k=kind: s["encoder_mixing"][k]["other_word"])
        parts.append(
            f"{kind}s: {a} of the aligned word's encoder state comes from the agreement "
            f"source, {o} from an average other word"
        )
    return "; ".join(parts)


def section(results: dict, plots: dict[str, str]) -> str:
    """The section body (markdown, `###` headings inside)."""
    cfg = results["config"]
    per = results["per_seed"][0]
    n_agree = per["n_agreeing"]
    out = [
        "Does a method find the *second* source word a target word needs? A toy language pair "
        "(`alti_lens.evaluation.agreement`): a verb-final source `NP [of NP] NP VERB` (subject, "
        "optional genitive, object; `NP = DET ADJ{0,2} NOUN`, English words; number marked on "
        "the noun only: *dog / dogs*; determiners, adjectives and the past-tense verb invariant) "
        "into a target `NP' [de NP'] NP' VERB'` with `NP' = DET' NOUN' ADJ'*` (adjectives after "
        "the noun, reversed) whose determiners and adjectives agree in gender with the noun "
        "(lexical, not visible on the noun) and whose verb agrees in number with the subject; the "
        "subject noun carries no number in the target (the genitive's and the object's do). Known "
        "answer per target word: its aligned source word and, for agreeing words, the *agreement "
        "source*: the NP's noun for a determiner (which precedes the noun in the target, so its "
        "gender is nowhere in the target prefix), the subject noun for the verb (far away on both "
        "sides, with the genitive's and the object's nouns in between as attractors; the subject's "
        "number is nowhere in the target prefix). Adjectives also agree with the noun, but their "
        "gender is already in the target prefix (the determiner and noun just produced): reported "
        "apart.",
        "",
        f"Models: BART, 2+2 layers, d_model 64, 4 heads, trained from scratch with "
        f"`train.train_loop` ({cfg['steps']} steps of batch {cfg['batch']}, lr {cfg['lr']}, one "
        f"thread, deterministic), training seeds {cfg['seeds']}; a seed is evaluated when it has "
        f"learned the task (held-out teacher-forced accuracy ≥ {cfg['learned_threshold']} on "
        f"determiners and on verbs): seeds {results['evaluated_seeds']}. Evaluated on "
        f"{cfg['sentences']} held-out sentences ({per['n_target_words']} target words, "
        f"{n_agree['determiner']} determiners, {n_agree['verb']} verbs, {n_agree['adjective']} "
        f"adjectives), float64, exactness checked on every ALTI call.",
        "",
        _models_table(results),
        "",
        TRAINING_NOTE if results.get("size") == "full" else "",
        "",
        "### The known answer, confirmed by substitution",
        "",
        "Teacher-forced on the changed pair's gold target, the model's argmax at the agreeing "
        "word. *Agreement source changed*: a noun of the other gender (determiners, adjectives) "
        "or the subject's other number (verbs): the gold form changes; the share where the model's "
        "form follows. *Other words changed*: the noun's lexeme within its gender and number "
        "flipped, the other nouns' gender (or, for verbs, the other nouns' number): the gold form "
        "stays; the share where the model's stays. *With the old target prefix*: the changed "
        "source with the original prefix (identical for determiners and verbs; for adjectives it "
        "still shows the old gender): does the model follow the source? Mean over seeds "
        "(min–max).",
        "",
        _substitution_table(results),
        "",
        "### Scores against the known answer",
        "",
        "Protocol of the ALTI+ paper (`alignment.py`): the gold target teacher-forced, each "
        "target word read from the decoder row that *predicts* it, source special tokens never "
        "candidates, word scores as in `metrics.word_level`. AER against the aligned words (one "
        "gold and one predicted link per word: AER = 1 − the share whose argmax is the aligned "
        "word); "
        "*aligned@2*: the aligned word among the top 2; *agreement@k*: the agreement source among "
        "the method's top k source words (over determiners and verbs, then per kind); a word tied "
        "with others counts as ranked below them all (ALTI clips many sources to exactly 0: a "
        "zero shared with other words is not a find). Layered "
        "methods after the last decoder layer (fixed in advance; every layer below). Gradients: "
        "w.r.t. the source token embeddings (`hook_embed`) of the gold token's "
        "**log-probability** at the row, signed (plain autograd, "
        f"`models.embedding_gradients`; integrated gradients {cfg['ig_steps']} midpoint steps "
        "from an all-zero embedding). Value zeroing: relative change of the decoder layer's "
        "output when source j's values are zeroed in that layer's cross-attention. Occlusion "
        f"(the causal reference): the drop of the gold token's probability when the word is "
        f"replaced by {N_ALTERNATIVES} other words of its class (in distribution), or by `<unk>`; "
        "its own recall is the ceiling a causal method reaches. Trivial baselines: *dictionary* "
        "(the lexicon match, then the diagonal), *+ nearest noun* (a lexicon plus a part-of-speech "
        "tagger: the nouns next, nearest first), *diagonal*, *random*. Mean over seeds [bootstrap "
        "95% interval over sentences, 500 resamples]; per-seed spreads are in the JSON.",
        "",
        _main_table(results),
        "",
    ]
    if "recall" in plots:
        out += [f"![agreement recall@2 per method]({plots['recall']})", ""]
    out += [
        "### Is encoder mixing needed to find the agreement source?",
        "",
        "The same per decoder layer for the cross contributions alone (C_ca^l), mapped through "
        "the encoder rollout (C_ca^l · R_enc) and the full ALTI+ rollout R^l. If the encoder has "
        f"moved the noun's gender or number into the aligned word's state, C_ca^l alone points at "
        f"the aligned word and only the encoder rollout reaches the noun. Encoder rollout shares "
        f"(ALTI, after the last encoder layer): {_mixing_line(results)}.",
        "",
        _layer_table(
            results,
            (
                *MIXING,
                "cross-attention (head mean)",
                "norm (Kobayashi) cross",
                agreement.VALUE_ZEROING,
            ),
        ),
        "",
        "### Clipping: ALTI's `max(0, ·)` on this translator",
        "",
        "Share of source tokens whose per-layer ALTI cross contribution C_ca^l is exactly 0 "
        "(clipped by the measure's `max(0, ·)`), for the aligned words and the agreement sources "
        "(`agreement.clipped_share`), mean over seeds (min–max):",
        "",
        _clipping_table(results),
        "",
        "### What the numbers say",
        "",
        *_discussion(results),
        "",
        *_reading(results),
        "",
        "### The authors' numbers beside ours",
        "",
        "We could not find an AER table in the ALTI+ paper (Ferrando et al. 2022, *Towards "
        "opening the black box of neural machine translation: source and target contributions*) "
        "through our search tools, so we quote no paper number. The authors' repository "
        "(github.com/mt-upc/transformer-contributions-nmt, `AER.ipynb`) stores AER outputs for a "
        "bilingual 6-layer Transformer on Europarl de-en with the same protocol (teacher forcing, "
        "the predicting row, their `AWO` setting; modes `alti`, `decoder.encoder_attn` with l1 "
        "contributions, `alti_enc_cross_attn`, `attn_w`). Real data, subwords, 6 layers: not our "
        "task, but the same methods and protocol:",
        "",
        _published_table(results),
        "",
    ]
    return "\n".join(out)


# The authors' own AER on Europarl de-en (bilingual 6-layer Transformer, seed 9819), "AWO" rows
# (the predicting decoder row, our protocol), from the outputs stored in their notebook
# AER.ipynb (github.com/mt-upc/transformer-contributions-nmt): per decoder layer 1..6.
PUBLISHED_AWO = {
    "ALTI+ (rollout R^l)": (0.794, 0.786, 0.730, 0.637, 0.569, 0.558),
    "ALTI cross C_ca^l": (0.852, 0.856, 0.695, 0.478, 0.389, 0.516),
    "ALTI cross x encoder rollout": (0.794, 0.787, 0.663, 0.560, 0.510, 0.574),
    "cross-attention (head mean)": (0.918, 0.886, 0.676, 0.499, 0.505, 0.642),
}


def _published_table(results: dict) -> str:
    rows = []
    for name, values in PUBLISHED_AWO.items():
        ours = [1 - (metric(results, name, agreement.ARGMAX, ly) or {"mean": float("nan")})["mean"]
                for ly in range(len(results["methods"][name]))]  # fmt: skip
        rows.append([
            name, _f(values[-1]), _f(min(values)), str(1 + values.index(min(values))),
            _f(ours[-1]), _f(min(ours)),
        ])  # fmt: skip
    header = ["method", "Europarl de-en, last layer", "best layer", "which (of 6)",
              "ours, last layer", "ours, best layer"]  # fmt: skip
    return _table(header, rows)


ATTRIBUTION = tuple(m for m in HEADLINE_METHODS if m not in CAUSAL + TRIVIAL)


def _m(results: dict, method: str, key: str, layer: int = LAST) -> float:
    m = metric(results, method, key, layer)
    return float("nan") if m is None else m["mean"]


def _ranking(results: dict, key: str, names: tuple[str, ...] = ATTRIBUTION) -> list[str]:
    return sorted(names, key=lambda n: -_m(results, n, key))


def _errors_clipped(results: dict) -> str:
    parts = []
    for ly in range(len(results["per_seed"][0]["clipped_among_errors"])):
        e = sum(s["clipped_among_errors"][ly]["errors"] for s in results["per_seed"])
        c = sum(s["clipped_among_errors"][ly]["clipped"] for s in results["per_seed"])
        parts.append(f"layer {ly}: {c} of {e} errors")
    return "; ".join(parts)


def _discussion(results: dict) -> list[str]:
    """Numbers-driven remarks; the reading of them is in the text around (written from the
    full run)."""
    m = lambda n, k, ly=LAST: _f(_m(results, n, k, ly))  # noqa: E731
    by_agreement = _ranking(results, "agreement@2")
    by_aer = _ranking(results, agreement.ARGMAX)
    R, C, CE = MIXING[2], MIXING[0], MIXING[1]
    return [
        "- **Ranking by agreement@2 (determiners + verbs, last layer):** "
        + ", ".join(f"{n} {m(n, 'agreement@2')}" for n in by_agreement)
        + f"; occlusion (causal ceiling) {m(OCCLUSION, 'agreement@2')}, random "
        f"{m(RANDOM, 'agreement@2')}, dictionary + nearest noun "
        f"{m(DICTIONARY_NOUN, 'agreement@2')}.",
        "- **Ranking by AER (aligned word, last layer):** "
        + ", ".join(f"{n} {_f(1 - _m(results, n, agreement.ARGMAX))}" for n in by_aer)
        + f"; dictionary {_f(1 - _m(results, DICTIONARY, agreement.ARGMAX))}.",
        f"- **Encoder mixing (determiners / verbs, agreement@2, last layer):** C_ca^l alone "
        f"{m(C, 'agreement@2 determiner')} / {m(C, 'agreement@2 verb')}, × encoder rollout "
        f"{m(CE, 'agreement@2 determiner')} / {m(CE, 'agreement@2 verb')}, full ALTI+ R^l "
        f"{m(R, 'agreement@2 determiner')} / {m(R, 'agreement@2 verb')}.",
        f"- **Clipping:** ALTI cross C_ca^l errors on the aligned word whose aligned source is "
        f"clipped to exactly 0 (all seeds): {_errors_clipped(results)}.",
    ]


def _share(results: dict, group: str, layer: int) -> float:
    values = [s["clipped_share"][group][layer] for s in results["per_seed"]]
    return sum(values) / len(values)


def _reading(results: dict) -> list[str]:
    """The reading of the numbers (the claims were checked on the full run; the numbers are
    this run's)."""
    v = lambda n, k, ly=LAST: _f(_m(results, n, k, ly))  # noqa: E731
    aer = lambda n, ly=LAST: _f(1 - _m(results, n, agreement.ARGMAX, ly))  # noqa: E731
    R, C, CE = MIXING[2], MIXING[0], MIXING[1]
    A, G = "cross-attention (head mean)", agreement.GRADIENT_NORM
    mix = {
        k: _seed_mean(results, lambda s, k=k: s["encoder_mixing"][k]["agreement_source"])
        for k in (agreement.DETERMINER, agreement.VERB)
    }
    clip = {g: _f(_share(results, g, LAST)) for g in results["per_seed"][0]["clipped_share"]}
    other_verb = _seed_mean(results, lambda s: s["encoder_mixing"]["verb"]["other_word"])
    adjective = _seed_mean(
        results, lambda s: s["substitution"]["adjective"]["follows source, old target prefix"]
    )
    return [
        f"**Aligned words (AER): ALTI wins over attention here.** ALTI+ {aer(R)}, ALTI cross "
        f"C_ca^l {aer(C)}, head-mean cross-attention {aer(A)}, norm {aer('norm (Kobayashi) cross')}"
        f", value zeroing {aer(agreement.VALUE_ZEROING)}, occlusion {aer(OCCLUSION)} (last "
        f"layer; the intervals in the table do not overlap for ALTI against attention). On the "
        f"old word-for-word translator attention was nearly perfect; here the model also reads "
        f"a second word for many targets, and the head mean averages heads doing different "
        f"jobs, while ALTI, the norm and value zeroing weigh each source by how much it adds to "
        f"the output, where the aligned word dominates (our reading, not a measured mechanism). "
        f"The dictionary is still the best aligner ({aer(DICTIONARY)}): the aligned word is a "
        f"lexicon lookup.",
        "",
        f"**The agreement source: the last layer's per-layer view loses it.** The last "
        f"layer's ALTI cross contributions C_ca^l have the agreement source in their top 2 for "
        f"{v(C, 'agreement@2')} of the determiners and verbs (random {v(RANDOM, 'agreement@2')})"
        f": they clip it to exactly 0 for {clip['agreement source (determiner)']} of the "
        f"determiners and {clip['agreement source (verb)']} of the verbs. The full ALTI+ rollout "
        f"R^l recovers part of it ({v(R, 'agreement@2')}), far from the causal ceiling "
        f"(occlusion with in-class words {v(OCCLUSION, 'agreement@2')}). The best attribution "
        f"method for the second source is the gradient norm ({v(G, 'agreement@2')}; verbs "
        f"{v(G, 'agreement@2 verb')}), at an AER of {aer(G)}; then the norm rollout "
        f"({v('norm rollout (extended)', 'agreement@2')}), whose unclipped norms keep the small "
        f"sources ALTI's `max(0, ·)` erases. Integrated gradients "
        f"{v(agreement.INTEGRATED, 'agreement@2')}, gradient × input "
        f"{v(agreement.GRADIENT_X_INPUT, 'agreement@2')} (its signed sum over embedding "
        f"dimensions is noisy: AER {aer(agreement.GRADIENT_X_INPUT)}). Attention rollout finds "
        f"the agreement source about as often as ALTI+ or more "
        f"({v('attention rollout (extended)', 'agreement@2')}) but its `0.5·A + 0.5·I` mixing "
        f"spreads every row over the sentence: its AER is {aer('attention rollout (extended)')}.",
        "",
        f"**Is encoder mixing needed? For verbs yes, for determiners no.** *Determiners:* the "
        f"decoder's first layer fetches the noun itself: its C_ca^0 has the noun in the top 2 "
        f"for {v(C, 'agreement@2 determiner', 0)} of the determiners (that layer's AER is "
        f"{aer(C, 0)}: it reads the noun, the second layer the aligned word), while the encoder "
        f"puts only {mix['determiner']} of a source determiner's state on its noun (about what it "
        f"puts on any other word). So the last layer's C_ca^l misses the noun "
        f"({v(C, 'agreement@2 determiner')}), the encoder rollout adds some "
        f"({v(CE, 'agreement@2 determiner')}) and the decoder-side rollout across layers more "
        f"(R^l: {v(R, 'agreement@2 determiner')}). *Verbs:* no decoder layer "
        f"reads the subject directly (C_ca^0 {v(C, 'agreement@2 verb', 0)}, C_ca^1 "
        f"{v(C, 'agreement@2 verb')}); the encoder has moved it into the verb's state "
        f"({mix['verb']} of the verb's state on the subject, against {other_verb} on an average "
        f"other word), and only through the encoder rollout does ALTI reach it "
        f"(C_ca^l · R_enc {v(CE, 'agreement@2 verb')}, R^l {v(R, 'agreement@2 verb')}).",
        "",
        f"**Clipping.** At the last layer the aligned source token is clipped to 0 for "
        f"{clip['aligned (all words)']} of the target words; among the words whose C_ca^l argmax "
        f"misses the aligned word it is clipped in {_errors_clipped(results)} (issue 16 counts 44 "
        f"of 61 on the old word-for-word translator). The agreement sources are clipped far more "
        f"often ({clip['agreement source (determiner)']} of determiners', "
        f"{clip['agreement source (verb)']} of verbs'): a source whose transformed vector is "
        f"farther from the row's output than the output's own norm (plausibly one that shifts "
        f"the form rather than carrying the bulk of the representation) gets exactly 0 from "
        f"`max(0, ·)`, and no ranking can recover it.",
        "",
        f"**Adjectives** read their gender from the target prefix, not from the source: with the "
        f"changed source and the old prefix the model follows the source "
        f"{adjective} of the time, so no source-side method should find the noun for them (ALTI+ "
        f"{v(R, 'agreement@2 adjective')}, occlusion {v(OCCLUSION, 'agreement@2 adjective')}); "
        f"the dictionary's and diagonal's high adjective numbers only reflect that the noun is "
        f"the adjective's neighbour.",
    ]


def make_plots(results: dict, folder: Path, relative_to: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    names = list(HEADLINE_METHODS)
    fig, ax = plt.subplots(figsize=(8, 5))
    for k, (key, label) in enumerate((("agreement@2 determiner", "determiners"),
                                      ("agreement@2 verb", "verbs"))):  # fmt: skip
        ms = [metric(results, n, key) or {"mean": 0, "low": 0, "high": 0} for n in names]
        y = [i + 0.2 * (k - 0.5) for i in range(len(names))]
        ax.barh(
            y,
            [m["mean"] for m in ms],
            height=0.4,
            label=label,
            xerr=[[m["mean"] - m["low"] for m in ms], [m["high"] - m["mean"] for m in ms]],
        )
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("recall@2 of the agreement source (higher is better)")
    ax.set_title("Agreement translator: is the second source word found?")
    ax.legend(fontsize=8)
    path = folder / "agreement_recall.png"
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return {"recall": path.relative_to(relative_to).as_posix()}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--seed", type=int, default=20261126)  # run_evaluation.SEED
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--md", type=Path, default=None)
    parser.add_argument("--ship", action="store_true", help="train seed 0 and ship its checkpoint")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.ship:
        ship()
        return 0
    results = run(args.size, args.seed)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.md:
        folder = args.md.resolve().parent / "evaluation"
        plots = make_plots(results, folder, args.md.resolve().parent)
        text = "\n".join(summary(results)) + "\n\n" + section(results, plots)
        args.md.write_text(f"## {TITLE}\n\n{text}\n")
    print(json.dumps(results["timings"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
