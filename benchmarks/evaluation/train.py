"""Small models for the evaluation, trained here from fixed seeds (one CPU thread, deterministic).

Every task of the evaluation that needs a model of its own (the agreement translator, the
source-vs-prefix translator, the agreement and name-mover decoders, the fine-tuned MiniLM) trains
it with these helpers: a word-level tokenizer, a training loop for a BART or a GPT-2 of any size,
and `cached(...)`, which keeps a trained checkpoint in a cache folder keyed by everything that
determines it (task, seed, steps, sizes), so a rerun of the report does not train again.

Models are ordinary Hugging Face checkpoints (`save_pretrained`), loaded for ALTI as
`TransformerBridge`s by `run_evaluation.load`.
"""

import hashlib
import json
import os
import random
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

CACHE = Path(os.environ.get("ALTI_LENS_EVAL_CACHE", Path.home() / ".cache" / "alti_lens" / "eval"))


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seeded, one thread, deterministic kernels; the previous thread count restored after."""
    threads = torch.get_num_threads()
    torch.manual_seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)


def word_tokenizer(
    words: Sequence[str],
    specials: Sequence[str],
    *,
    bos: str,
    eos: str,
    pad: str,
    unk: str,
    max_len: int,
    mask: str | None = None,
) -> PreTrainedTokenizerFast:
    """One token per whitespace-separated word (ids: specials first, then `words` in order), BOS
    prepended to every text (what TransformerLens's `add_bos_token=True` rebuilds anyway)."""
    vocab = {w: i for i, w in enumerate(dict.fromkeys([*specials, *words]))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    extra = {} if mask is None else {"mask_token": mask}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, unk_token=unk,
        add_bos_token=True, model_max_length=max_len, **extra,
    )  # fmt: skip


def save(model: torch.nn.Module, tokenizer: PreTrainedTokenizerFast, out: Path) -> None:
    """A checkpoint folder transformers 4 and 5 both read (and TransformerLens boots offline)."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # type: ignore[attr-defined]
    tokenizer.save_pretrained(out)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    special = out / "special_tokens_map.json"
    if not special.exists():  # transformers 5 keeps them in tokenizer_config.json only
        names = ("bos_token", "eos_token", "unk_token", "pad_token", "mask_token")
        tokens = {n: getattr(tokenizer, n) for n in names if getattr(tokenizer, n, None)}
        special.write_text(json.dumps(tokens, indent=2) + "\n")


def seq2seq_batch(
    sources: Sequence[Sequence[str]], targets: Sequence[Sequence[str]], tok: PreTrainedTokenizerFast
) -> dict[str, torch.Tensor]:
    """One BART training batch of word lists: source `<s> words` (right-padded, with its attention
    mask), labels `<s> words </s>` (-100 on padding; BART shifts them right after `</s>`), the
    demo translator's layout."""
    bos, eos = tok.bos_token_id, tok.eos_token_id
    src = [[bos, *tok.convert_tokens_to_ids(list(s))] for s in sources]
    tgt = [[bos, *tok.convert_tokens_to_ids(list(t)), eos] for t in targets]
    S, T = max(map(len, src)), max(map(len, tgt))
    ids = torch.full((len(src), S), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(src), S), dtype=torch.long)
    labels = torch.full((len(src), T), -100, dtype=torch.long)
    for i, (s, t) in enumerate(zip(src, tgt, strict=True)):
        ids[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), 1
        labels[i, : len(t)] = torch.tensor(t)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def train_loop(
    model: torch.nn.Module,
    batches: Callable[[int], dict[str, torch.Tensor]],
    steps: int,
    lr: float,
    *,
    log: str = "",
    weight_decay: float = 0.01,
    params: Sequence[torch.nn.Parameter] | None = None,
) -> float:
    """AdamW with a one-cycle schedule; `batches(step)` gives the keyword arguments of one step
    (labels included, so the model returns its loss). Returns the last loss."""
    chosen = list(model.parameters()) if params is None else list(params)
    opt = torch.optim.AdamW(chosen, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        loss = model(**batches(step)).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(chosen, 1.0)
        opt.step()
        sched.step()
        if log and (step % 500 == 0 or step == steps - 1):
            print(f"{log} step {step:5d} loss {loss.item():.4f}", flush=True)
    model.eval()
    return float(loss.detach())


def cached(key: dict[str, Any], build: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict]:
    """The checkpoint folder for `key` (a JSON-able dict naming the task, seed, steps and every
    size), trained by `build(folder) -> metrics` unless it is already in the cache; returns the
    folder and the metrics `build` measured (kept next to the weights as `metrics.json`)."""
    blob = json.dumps(key, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    folder = CACHE / f"{key.get('task', 'model')}-{digest}"
    done = folder / "metrics.json"
    if done.exists():
        return folder, json.loads(done.read_text())
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    metrics = build(tmp)
    (tmp / "key.json").write_text(blob + "\n")
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder, metrics
