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
model card whose numbers this script measures after training (the measurements and the model
cards are in demo_cards.py, next to this script).
"""

import argparse
import json
import random
import time
from pathlib import Path

import torch
from demo_cards import (  # scripts/demo_cards.py: scripts/ is on sys.path when run as a script
    HELDOUT_SEED,
    MAX_PREFIX,
    MIN_LEN,
    N_HELDOUT,
    TRAIN_SEED,
    induction_card,
    induction_mechanism,
    translator_alignment,
    translator_card,
)
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
