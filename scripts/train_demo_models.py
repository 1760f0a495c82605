"""Train the two built-in demo models and write them into alti_lens/demo/models/.

    python scripts/train_demo_models.py                 # both models (2-7 min each on 2 CPU cores)
    python scripts/train_demo_models.py --only induction
    python scripts/train_demo_models.py --out /tmp/demo # elsewhere (to compare with the shipped)

Deterministic: fixed seeds, one CPU thread, `torch.use_deterministic_algorithms(True)`, data from
`alti_lens.demo.data` (training seed 0, held-out seed 1). With the same torch build on the same kind
of CPU the written weights are bit-identical (`sha256sum */model.safetensors`); other CPUs or torch
builds may round differently and give slightly different weights and numbers.

Each directory is an ordinary Hugging Face checkpoint (config.json, generation_config.json,
model.safetensors, tokenizer.json, tokenizer_config.json, special_tokens_map.json) plus a README.md
model card whose numbers this script measures after training.
"""

import argparse
import hashlib
import json
import random
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from alti_lens.demo import data

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "alti_lens" / "demo" / "models"
TRAIN_SEED, HELDOUT_SEED = 0, 1
N_HELDOUT = 1000
MIN_LEN = 5  # shortest repeat in training (2 would force offset-1 heads but trains far slower)
MAX_PREFIX = 20  # random words before the first copy: its position must not be predictable


def _setup(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def word_tokenizer(
    words: list[str], specials: list[str], *, bos: str, eos: str, pad: str, unk: str, max_len: int
) -> PreTrainedTokenizerFast:
    """One token per whitespace-separated word, BOS prepended to every text.

    BOS and nothing else: TransformerLens reloads the tokenizer with `add_bos_token=True`, which
    rebuilds the post-processor as `BOS $A` (an EOS template would be dropped), so the saved
    tokenizer does exactly that too and plain Hugging Face use agrees with the bridge."""
    vocab = {w: i for i, w in enumerate([*specials, *words])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk,
        add_bos_token=True, model_max_length=max_len,
    )  # fmt: skip


def _save(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # type: ignore[attr-defined]
    tokenizer.save_pretrained(out)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    # the class name transformers 4 and 5 both know (5 writes its own `TokenizersBackend`)
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    special = out / "special_tokens_map.json"
    if not special.exists():  # transformers 5 keeps them in tokenizer_config.json only
        names = ("bos_token", "eos_token", "unk_token", "pad_token")
        tokens = {n: getattr(tokenizer, n) for n in names if getattr(tokenizer, n) is not None}
        special.write_text(json.dumps(tokens, indent=2) + "\n")
    for f in out.iterdir():
        f.chmod(0o644)  # safetensors writes 0600; the files ship in the wheel


def _mib(path: Path) -> float:
    return path.stat().st_size / 2**20


# ---------------------------------------------------------------------------------------------
# Induction model


def _induction_batch(
    seqs: list[list[str]], tok: PreTrainedTokenizerFast
) -> tuple[torch.Tensor, ...]:
    """BOS + words, right-padded; labels only on the predictable words (the second copy after
    its first word), -100 elsewhere: the random words' loss is a constant log(vocabulary) that
    only adds noise to the gradient."""
    bos = tok.bos_token_id
    rows = [[bos, *tok.convert_tokens_to_ids(s)] for s in seqs]
    n = max(len(r) for r in rows)
    ids = torch.full((len(rows), n), bos, dtype=torch.long)
    labels = torch.full((len(rows), n), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        # word w sits at token position w + 1; the last k - 1 words are predictable
        first = len(r) - data.repeat_length(seqs[i]) + 1
        labels[i, first : len(r)] = torch.tensor(r[first:])
    return ids, labels


@torch.no_grad()
def evaluate_induction(model: GPT2LMHeadModel, tok: PreTrainedTokenizerFast, seqs) -> dict:
    """Accuracy of the argmax prediction on the first copy (unpredictable: chance is
    1/len(vocabulary)) and on the second copy after its first word (predictable by induction)."""
    model.eval()
    first = second = n_first = n_second = 0
    for i in range(0, len(seqs), 200):
        chunk = seqs[i : i + 200]
        ids, _ = _induction_batch(chunk, tok)
        pred = model(ids).logits.argmax(-1)
        for b, s in enumerate(chunk):
            k, n = data.repeat_length(s), len(s)
            # word w sits at token position w + 1 (after BOS) and is predicted at position w
            hits = (pred[b, :n] == ids[b, 1 : n + 1]).tolist()
            first += sum(hits[n - 2 * k : n - k])
            n_first += k
            second += sum(hits[n - k + 1 :])
            n_second += k - 1
    return {"first_copy_accuracy": first / n_first, "second_copy_accuracy": second / n_second}


def train_induction(
    out: Path,
    steps: int,
    lr: float = 3e-3,
    d_model: int = 64,
    d_mlp: int = 256,
    init: float = 0.2,
    min_len: int = MIN_LEN,
) -> dict:
    _setup(TRAIN_SEED)
    words = list(data.INDUCTION_WORDS)
    eot = "<|endoftext|>"
    tok = word_tokenizer(words, [eot, "<unk>"], bos=eot, eos=eot, pad=eot, unk="<unk>", max_len=64)
    config = GPT2Config(
        vocab_size=len(tok), n_positions=64, n_embd=d_model, n_layer=2, n_head=4, n_inner=d_mlp,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, initializer_range=init,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    model = GPT2LMHeadModel(config)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    train = data.induction_sequences(steps * 64, TRAIN_SEED, max_prefix=MAX_PREFIX, min_len=min_len)
    seen = {tuple(s) for s in train}
    heldout = data.induction_sequences(
        N_HELDOUT, HELDOUT_SEED, max_prefix=MAX_PREFIX, min_len=min_len
    )
    heldout = [s for s in heldout if tuple(s) not in seen]
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        ids, labels = _induction_batch(train[step * 64 : (step + 1) * 64], tok)
        loss = model(ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"induction step {step:5d} loss {loss.item():.3f}", flush=True)
    seconds = time.perf_counter() - start
    model.eval()
    metrics = evaluate_induction(model, tok, heldout)
    metrics |= {"train_seconds": seconds, "steps": steps, "batch": 64, "n_heldout": len(heldout)}
    metrics |= {"heldout_in_training": N_HELDOUT - len(heldout), "min_len": min_len}
    _save(model, tok, out)
    metrics["weights_mib"] = _mib(out / "model.safetensors")
    return metrics


# ---------------------------------------------------------------------------------------------
# Translator


def _translation_batch(pairs, tok: PreTrainedTokenizerFast) -> tuple[torch.Tensor, ...]:
    """Source `<s> words` (as the tokenizer makes it), labels `<s> words </s>` (BART's layout:
    the decoder input is the labels shifted right after the start token `</s>`)."""
    bos, eos = tok.bos_token_id, tok.eos_token_id
    src = [[bos, *tok.convert_tokens_to_ids(p.source)] for p in pairs]
    tgt = [[bos, *tok.convert_tokens_to_ids(p.target), eos] for p in pairs]
    S, T = max(map(len, src)), max(map(len, tgt))
    ids = torch.full((len(pairs), S), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(pairs), S), dtype=torch.long)
    labels = torch.full((len(pairs), T), -100, dtype=torch.long)
    for i, (s, t) in enumerate(zip(src, tgt, strict=True)):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
        labels[i, : len(t)] = torch.tensor(t)
    return ids, mask, labels


@torch.no_grad()
def evaluate_translator(model, tok: PreTrainedTokenizerFast, pairs) -> dict:
    """Greedy generation: exact match of the whole output (`<s> words </s>`); word accuracy
    position by position (a missing or extra word counts as wrong at every position it shifts);
    teacher-forced token accuracy (the next token given the gold prefix, words and EOS)."""
    model.eval()
    exact = tok_hits = tok_total = tf_hits = tf_total = 0
    for i in range(0, len(pairs), 200):
        chunk = pairs[i : i + 200]
        ids, mask, labels = _translation_batch(chunk, tok)
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=labels.shape[1] + 2, do_sample=False
        )
        tf = model(input_ids=ids, attention_mask=mask, labels=labels).logits.argmax(-1)
        real = labels != -100
        real[:, 0] = False  # `<s>` after the start token: trivial
        tf_hits += int((tf == labels)[real].sum())
        tf_total += int(real.sum())
        for b in range(len(chunk)):
            gold = labels[b][labels[b] != -100].tolist()
            got = out[b, 1:].tolist()  # drop the decoder start token
            got = got[: got.index(tok.eos_token_id) + 1] if tok.eos_token_id in got else got
            exact += got == gold
            tok_hits += sum(g == h for g, h in zip(gold[1:-1], got[1:], strict=False))
            tok_total += len(gold) - 2
    return {
        "exact_match": exact / len(pairs),
        "greedy_word_accuracy": tok_hits / tok_total,
        "teacher_forced_token_accuracy": tf_hits / tf_total,
    }


def train_translator(out: Path, steps: int, lr: float = 1e-3) -> dict:
    _setup(TRAIN_SEED)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    words = [*data.SOURCE_WORDS, *data.TARGET_WORDS]
    tok = word_tokenizer(
        words, specials, bos="<s>", eos="</s>", pad="<pad>", unk="<unk>", max_len=32
    )
    config = BartConfig(
        vocab_size=len(tok), d_model=64, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=256,
        decoder_ffn_dim=256, max_position_embeddings=32, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, bos_token_id=0, pad_token_id=1, eos_token_id=2,
        decoder_start_token_id=2, forced_eos_token_id=2,
    )  # fmt: skip
    model = BartForConditionalGeneration(config)
    model.generation_config.max_length = 32
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    train = data.translation_pairs(steps * 64, TRAIN_SEED)
    seen = {tuple(p.source) for p in train}
    all_heldout = data.translation_pairs(N_HELDOUT, HELDOUT_SEED)
    heldout = [p for p in all_heldout if tuple(p.source) not in seen]
    start = time.perf_counter()
    model.train()
    for step in range(steps):
        ids, mask, labels = _translation_batch(train[step * 64 : (step + 1) * 64], tok)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"translator step {step:5d} loss {loss.item():.4f}", flush=True)
    seconds = time.perf_counter() - start
    metrics = evaluate_translator(model, tok, heldout)
    metrics |= {"train_seconds": seconds, "steps": steps, "batch": 64, "n_heldout": len(heldout)}
    metrics["heldout_in_training"] = N_HELDOUT - len(heldout)
    _save(model, tok, out)
    metrics["weights_mib"] = _mib(out / "model.safetensors")
    return metrics


# ---------------------------------------------------------------------------------------------
# Mechanism checks on the saved checkpoints, through TransformerLens and alti_lens


def _boot(path: Path):
    from transformer_lens.model_bridge import TransformerBridge

    return TransformerBridge.boot_transformers(str(path))


@torch.no_grad()
def induction_mechanism(path: Path, n: int = 100) -> dict:
    """Per head: the previous-token score (mean attention from each position to the one before)
    and the induction score (mean attention from a second-copy token to the token after its first
    occurrence); ALTI-Logit of the prediction in the middle of the second copy: where the logit
    comes from (input positions, heads)."""
    from alti_lens import alti_logit

    model = _boot(path)
    # repeats of 5+ words: for shorter ones the induction target is (nearly) the previous token
    seqs = data.induction_sequences(n, HELDOUT_SEED + 1, max_prefix=MAX_PREFIX)
    prev = torch.zeros(2, 4)
    ind = torch.zeros(2, 4)
    back = torch.zeros(4, 8)  # layer 0: mean attention 0..7 tokens back
    shifted = torch.zeros(4, 7)  # layer 1, second copy: attention to the induction target + 0..6
    counts = torch.zeros(7)
    for s in seqs:
        k, n_words = data.repeat_length(s), len(s)
        _, cache = model.run_with_cache(
            " ".join(s), names_filter=lambda name: name.endswith("attn.hook_pattern")
        )
        q = torch.arange(n_words - k + 1, n_words + 1)  # token positions of the second copy
        for layer in range(2):
            A = cache[f"blocks.{layer}.attn.hook_pattern"][0].float()  # [head, query, key]
            P = A.shape[-1]
            prev[layer] += A[:, torch.arange(1, P), torch.arange(0, P - 1)].mean(-1)
            ind[layer] += A[:, q, q - k + 1].mean(-1)
            if layer == 0:
                p = torch.arange(8, P)
                for o in range(8):
                    back[:, o] += A[:, p, p - o].mean(-1)
            else:
                for d in range(min(7, k)):  # the key must not be after the query
                    ok = q - k + 1 + d <= q
                    shifted[:, d] += A[:, q[ok], q[ok] - k + 1 + d].mean(-1)
                    counts[d] += 1
    prev, ind, back, shifted = prev / n, ind / n, back / n, shifted / counts
    texts, targets, current, predicted = [], [], [], []
    for s in seqs:
        k, n_words = data.repeat_length(s), len(s)
        j = (k - 1) // 2  # explain the prediction of word j + 1 of the copy, given word j
        texts.append(" ".join(s[: n_words - k + j + 1]))
        targets.append(" " + s[n_words - k + j + 1])
        current.append(n_words - 2 * k + j + 1)  # token position of the first copy of word j
        predicted.append(current[-1] + 1)  # ... and of word j + 1 (what the model predicts)
    result = alti_logit(model, texts, targets)
    share_current = share_predicted = top_current = 0.0
    for b in range(n):
        scores = result.scores[b][result.attention_mask[b].bool()]
        total = scores.sum()
        share_current += float(scores[current[b]] / total) / n
        share_predicted += float(scores[predicted[b]] / total) / n
        top_current += (int(scores.argmax()) == current[b]) / n
    heads = result.head_scores.sum(-1).mean(0) / result.scores.sum(-1).mean()
    return {
        "previous_token_score": prev.tolist(),
        "layer0_attention_by_offset_back": back.tolist(),
        "layer1_attention_by_shift_from_induction_target": shifted.tolist(),
        "induction_score": ind.tolist(),
        "logit_share_first_copy_of_current_word": share_current,
        "logit_share_first_copy_of_predicted_word": share_predicted,
        "top_source_is_first_copy_of_current_word": top_current,
        "logit_share_per_head": heads.tolist(),
        "max_logit_error": float(result.logit_error.max()),
    }


@torch.no_grad()
def translator_alignment(path: Path, n: int = 200) -> dict:
    """How often the source token with the largest ALTI+ contribution (last layer) to the
    prediction of a target word is its gold-aligned source word; the same for the last layer's
    head-mean cross-attention. Informative only: tutorials and evaluations measure this properly."""
    from alti_lens import alti_plus

    model = _boot(path)
    pairs = data.translation_pairs(n, HELDOUT_SEED + 1)
    result = alti_plus(
        model, [" ".join(p.source) for p in pairs], [" ".join(p.target) for p in pairs]
    )
    tok, start = model.tokenizer, model.cfg.decoder_start_token_id
    last = len(model.decoder_blocks) - 1
    alti_hits = attn_hits = total = 0
    for b, p in enumerate(pairs):
        src = torch.tensor([[tok.bos_token_id, *tok.convert_tokens_to_ids(p.source)]])
        tgt = torch.tensor([[start, tok.bos_token_id, *tok.convert_tokens_to_ids(p.target)]])
        _, cache = model.run_with_cache(
            src,
            decoder_input=tgt,
            names_filter=lambda name: name.endswith("cross_attn.hook_pattern"),
        )
        attn = cache[f"decoder_blocks.{last}.cross_attn.hook_pattern"][0].mean(0)  # [tgt, src]
        for t, s in p.alignment:
            row = t + 1  # decoder row t + 1 predicts target word t (row 0 predicts <s>)
            # source word s is source token s + 1 (after <s>)
            alti_hits += int(result.rollout[b, -1, row, 1 : len(p.source) + 1].argmax()) == s
            attn_hits += int(attn[row, 1 : len(p.source) + 1].argmax()) == s
            total += 1
    return {
        "alti_plus_top_source_is_gold": alti_hits / total,
        "cross_attention_top_source_is_gold": attn_hits / total,
        "max_reconstruction_error": float(result.reconstruction_error.max()),
    }


# ---------------------------------------------------------------------------------------------
# Model cards


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _table(rows: list[list[float]], row: str = "layer", col: str = "head {}") -> str:
    head = f"| {row} | " + " | ".join(col.format(h) for h in range(len(rows[0]))) + " |"
    sep = "|---" * (len(rows[0]) + 1) + "|"
    body = [f"| {i} | " + " | ".join(f"{v:.2f}" for v in r) + " |" for i, r in enumerate(rows)]
    return "\n".join([head, sep, *body])


def induction_card(out: Path, m: dict, mech: dict) -> str:
    config = json.loads((out / "config.json").read_text())
    n_params = sum(p.numel() for p in GPT2LMHeadModel.from_pretrained(out).parameters())
    V = len(data.INDUCTION_WORDS)
    current = mech["logit_share_first_copy_of_current_word"]
    predicted = mech["logit_share_first_copy_of_predicted_word"]
    top = mech["top_source_is_first_copy_of_current_word"]
    prev0, ind1 = max(mech["previous_token_score"][0]), max(mech["induction_score"][1])
    back = torch.tensor(mech["layer0_attention_by_offset_back"])
    shifted = torch.tensor(mech["layer1_attention_by_shift_from_induction_target"])
    offset, shift = int(back.mean(0).argmax()), int(shifted.mean(0).argmax())
    min_len = m["min_len"]
    if prev0 > 0.5 and ind1 > 0.5:
        verdict = (
            "So layer 0 holds previous-token heads and layer 1 induction heads: the textbook "
            "two-layer induction circuit."
        )
    else:
        verdict = f"""This is NOT the textbook circuit (best layer-0 previous-token
score {prev0:.2f}, best layer-1 induction score {ind1:.2f}). Its layer-0 heads look mostly
{offset} tokens back, and its layer-1 heads attend from a second-copy token mostly to the
first-copy token {shift} after the induction target, whose layer-0 output carries the token
{offset} back: the induction target, i.e. the predicted word. It is still induction
(content-based retrieval from the first copy by composing a look-back head in layer 0 with a
matching head in layer 1), with an offset of {shift} instead of 1, which works because every
repeat is at least {min_len} words long. Present it as such."""
    return f"""# demo-induction

A 2-layer GPT-2 that has learned **induction**: given a run of words that repeats, it predicts
each word of the second copy from the first. Shipped with `alti_lens` as a built-in demo model
(`alti_lens.demo.builtin_path("demo-induction")`); trained from scratch by
`scripts/train_demo_models.py` on synthetic data only. License: MIT (as alti_lens).

```python
from transformer_lens.model_bridge import TransformerBridge
from alti_lens import alti_logit
from alti_lens.demo import builtin_path

model = TransformerBridge.boot_transformers(str(builtin_path("demo-induction")))  # offline
result = alti_logit(model, "dog tree sun cold rain dog tree", " sun")  # p(sun) = 0.98
```

## Model
`GPT2LMHeadModel`: {config["n_layer"]} layers, {config["n_head"]} heads, d_model {config["n_embd"]},
d_mlp {config["n_inner"]}, learned positions (n_positions {config["n_positions"]}), tied
embeddings, {n_params:,} parameters, float32 ({m["weights_mib"]:.2f} MiB).

Tokenizer: word level, one token per whitespace-separated word over {len(data.INDUCTION_WORDS)}
common English words (`alti_lens.demo.INDUCTION_WORDS`), `<|endoftext|>` (BOS = EOS = pad, id 0)
prepended to every text, `<unk>` (id 1) for any other word.

## Training data
`alti_lens.demo.induction_sequences(n, seed=0, min_len={min_len}, max_prefix={MAX_PREFIX})`: BOS,
a random prefix of 0–{MAX_PREFIX} words, then a run `A` of {min_len}–15 words and `A` again; all
words of prefix + `A` distinct. The random prefix moves the first copy, so position arithmetic
cannot find it (trained on `A + A` alone, layer 0 learned positional heads that guess where the
first copy is). The loss is on the predictable tokens only (the second copy after its first
word). GPT-2's default initialisation (std 0.02) kept the attention nearly uniform for
thousands of steps; this model uses `initializer_range` {config["initializer_range"]}.
{m["steps"]} steps of batch {m["batch"]}, AdamW (lr 3e-3, one-cycle, weight decay 0.01),
seed 0, one CPU thread, deterministic algorithms: {m["train_seconds"]:.0f} s on the shared
(loaded) 2-core CPU it was trained on.

## Held-out results (seed 1, {m["n_heldout"]} sequences as in training, none seen in training)
| | argmax accuracy |
|---|---|
| second copy, after its first word (induction) | {m["second_copy_accuracy"]:.4f} |
| first copy (random words; chance 1/{V} = {1 / V:.4f}) | {m["first_copy_accuracy"]:.4f} |

## Mechanism (TransformerLens and alti_lens on 100 held-out sequences, seed 2, repeats of 5–15)
Previous-token score (mean attention from each position to the one before it):

{_table(mech["previous_token_score"])}

Induction score (mean attention from each token of the second copy to the token after its
first occurrence):

{_table(mech["induction_score"])}

Layer-0 attention by distance (mean over positions 8 and later):

{_table(mech["layer0_attention_by_offset_back"], "head", "{} back")}

Layer-1 attention from second-copy tokens to the first-copy token `d` after the induction target:

{_table(mech["layer1_attention_by_shift_from_induction_target"], "head", "d = {}")}

{verdict}

ALTI-Logit of the prediction in the middle of the second copy (`alti_logit`, exactness check on,
max logit error {mech["max_logit_error"]:.1e}): on average
{current:.0%} of the token scores fall on the first copy of the
current word and {predicted:.0%} on the first copy of the
predicted word; the top-scoring input token is the first copy of the current word in
{top:.0%} of the cases.
Share of the logit routed through each head:

{_table(mech["logit_share_per_head"])}

## Reproduce
`python scripts/train_demo_models.py --only induction` (writes this directory; add `--out DIR` to
write elsewhere). model.safetensors sha256 `{_sha256(out / "model.safetensors")}` (torch
{torch.__version__}, one thread; other CPUs or builds may round differently).

## Limits
A toy: it knows nothing but these words, is trained on sequences of at most 51 tokens (positions
up to 63 exist but were never trained), and after a sequence that does not repeat its predictions
are meaningless.
"""


def translator_card(out: Path, m: dict, align: dict) -> str:
    config = json.loads((out / "config.json").read_text())
    n_params = sum(
        p.numel() for p in BartForConditionalGeneration.from_pretrained(out).parameters()
    )
    example = data.translation_pairs(1, 5)[0]
    return f"""# demo-translator

A tiny BART that translates a toy language with word reordering, so the gold word alignment of
every sentence pair is known. Shipped with `alti_lens` as a built-in demo model
(`alti_lens.demo.builtin_path("demo-translator")`); trained from scratch by
`scripts/train_demo_models.py` on synthetic data only. License: MIT (as alti_lens).

```python
from transformer_lens.model_bridge import TransformerBridge
from alti_lens import alti_plus
from alti_lens.demo import builtin_path, translation_pairs

model = TransformerBridge.boot_transformers(str(builtin_path("demo-translator")))  # offline
pair = translation_pairs(1, seed=5)[0]  # source, target, gold alignment
result = alti_plus(model, " ".join(pair.source))  # greedy translation, then ALTI+
```

## The toy languages (`alti_lens.demo.translation_pairs`, `LEXICON`)
Source: English-like, `SUBJ VERB OBJ [PREP NP]`, each noun phrase `DET ADJ{{0,2}} NOUN`.
Target: invented words, `SUBJ' OBJ' [PREP' NP'] VERB'` (verb last), each noun phrase
`DET' NOUN' ADJ'` with the adjectives in reverse order. Every source word has a fixed translation
of one word, or two for four verbs (e.g. `visits` → `iras vizi`). Example (seed 5):

- source: `{" ".join(example.source)}`
- target: `{" ".join(example.target)}`
- alignment (target index, source index): `{example.alignment}`

## Model
`BartForConditionalGeneration`: {config["encoder_layers"]}+{config["decoder_layers"]} layers,
{config["encoder_attention_heads"]} heads, d_model {config["d_model"]},
ffn {config["encoder_ffn_dim"]},
learned positions (max {config["max_position_embeddings"]}), tied embeddings, {n_params:,}
parameters, float32 ({m["weights_mib"]:.2f} MiB).

Tokenizer: word level, one token per word; the {len(data.SOURCE_WORDS)} source and
{len(data.TARGET_WORDS)} target words are disjoint; `<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3. Every
text gets `<s>` prepended and nothing appended (TransformerLens reloads tokenizers with
`add_bos_token=True`, which makes exactly this). BART's layout: the source is `<s> words`, the
decoder starts with `decoder_start_token_id` 2 (`</s>`) and produces `<s> words </s>`. So source
word `i` is source token `i + 1`, and decoder row `t + 1` predicts target word `t`.

## Training
`translation_pairs(n, seed=0)`, {m["steps"]} steps of batch {m["batch"]}, AdamW (lr 1e-3,
one-cycle, weight decay 0.01), seed 0, one CPU thread, deterministic algorithms:
{m["train_seconds"]:.0f} s on the shared 2-core CPU it was trained on.

## Held-out results (seed 1, {m["n_heldout"]} pairs whose source was not seen in training)
| | |
|---|---|
| exact match, greedy generation | {m["exact_match"]:.4f} |
| word accuracy, greedy generation (position by position) | {m["greedy_word_accuracy"]:.4f} |
| token accuracy, teacher forcing (words and `</s>`) | {m["teacher_forced_token_accuracy"]:.4f} |

## Alignment (informative; 200 held-out pairs, seed 2)
For each target word, the source word with the largest contribution to its prediction agrees
with the gold alignment in {align["alti_plus_top_source_is_gold"]:.1%} of the cases for ALTI+
(last-layer rollout, `alti_plus`, max reconstruction error {align["max_reconstruction_error"]:.1e}),
and in {align["cross_attention_top_source_is_gold"]:.1%} for the last layer's head-mean
cross-attention.

## Reproduce
`python scripts/train_demo_models.py --only translator` (writes this directory; add `--out DIR` to
write elsewhere). model.safetensors sha256 `{_sha256(out / "model.safetensors")}` (torch
{torch.__version__}, one thread; other CPUs or builds may round differently).

## Limits
A toy: it translates only sentences of this grammar and vocabulary (at most 14 source words);
anything else gets `<unk>` tokens and meaningless output.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["induction", "translator"])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--induction-steps", type=int, default=3000)
    parser.add_argument("--translator-steps", type=int, default=3000)
    parser.add_argument("--induction-d-model", type=int, default=64)
    parser.add_argument("--induction-init", type=float, default=0.2)
    parser.add_argument("--induction-min-len", type=int, default=MIN_LEN)
    args = parser.parse_args()
    if args.only in (None, "induction"):
        out = args.out / "induction"
        metrics = train_induction(
            out,
            args.induction_steps,
            d_model=args.induction_d_model,
            init=args.induction_init,
            min_len=args.induction_min_len,
        )
        mech = induction_mechanism(out)
        print(json.dumps(metrics | mech, indent=2))
        (out / "README.md").write_text(induction_card(out, metrics, mech))
        (out / "README.md").chmod(0o644)
    if args.only in (None, "translator"):
        out = args.out / "translator"
        metrics = train_translator(out, args.translator_steps)
        align = translator_alignment(out)
        print(json.dumps(metrics | align, indent=2))
        (out / "README.md").write_text(translator_card(out, metrics, align))
        (out / "README.md").chmod(0o644)


if __name__ == "__main__":
    main()
