"""Measurements on the saved demo checkpoints (through TransformerLens and alti_lens) and the
model cards written from them and from the training metrics: used by train_demo_models.py.

Also the constants that define the training and held-out data, shared by both modules.
"""

import hashlib
import json
from pathlib import Path

import torch
from transformers import BartForConditionalGeneration, GPT2LMHeadModel

from alti_lens.demo import data

TRAIN_SEED, HELDOUT_SEED = 0, 1
N_HELDOUT = 1000
MIN_LEN = 5  # shortest repeat in training (2 would force offset-1 heads but trains far slower)
MAX_PREFIX = 20  # random words before the first copy: its position must not be predictable


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
