"""Yardsticks for the word-alignment and induction experiments: what a trivial method scores,
and what the causal reference (substituting or occluding one input) finds, with its own ceiling.

- `trivial_alignments`: AER of a dictionary lookup, of the diagonal and of random links, so that a
  method's AER reads against what the task gives away for free.
- `substitution_alignment`: each source word replaced in turn by another word of its class
  (`substitute`), teacher-forced: does the prediction of the target word change when its gold
  source is replaced (the gold source *is* a cause: confirmation rate), and the alignment read
  from the drop of the gold token's probability (occlusion's AER: the causal reference's own
  ceiling on this task).
- `clipping`: how often ALTI's `max(0, ·)` clips a gold source's contribution to exactly 0, and
  how many of ALTI cross's alignment errors that explains.
- `occlusion_rows` / `gradient_rows`: per-position scores of the causal reference and of the
  gradient baselines for the induction experiment (`runs.induction_top_sources`).
"""

from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from alti_lens import models

from . import metrics
from .alignment import AlignedPair, _pad


def _words(pair: AlignedPair) -> tuple[int, int]:
    n_src = len({w for w in pair.source_words if w is not None})
    n_tgt = len({w for w in pair.label_words if w is not None})
    return n_src, n_tgt


def _dictionary(pair: AlignedPair, translations: dict[int, set[int]]) -> set[metrics.Link]:
    """Each target word to the first source word whose token translates to its first token
    (the diagonal where the lexicon knows none)."""
    n_src, n_tgt = _words(pair)
    first_label: dict[int, int] = {}
    for r, w in enumerate(pair.label_words):
        if w is not None:
            first_label.setdefault(
                w, pair.decoder_input[r + 1] if r + 1 < len(pair.decoder_input) else -1
            )
    links = set()
    for w, token in first_label.items():
        sources = translations.get(token, set())
        hits = [pair.source_words[j] for j, s in enumerate(pair.source_ids) if s in sources]
        hits = [h for h in hits if h is not None]
        links.add((w, hits[0] if hits else _diagonal_word(w, n_src, n_tgt)))
    return links


def _diagonal_word(w: int, n_src: int, n_tgt: int) -> int:
    return round(w * (n_src - 1) / max(1, n_tgt - 1))


def trivial_alignments(
    pairs: Sequence[AlignedPair], translations: dict[int, set[int]], seed: int = 0
) -> dict[str, float]:
    """AER of the trivial aligners: `dictionary` (`translations`: target token id → the source
    token ids a lexicon translates to it; the first matching source word wins, so repeated words
    and one-to-many entries are where it errs), `diagonal` (target word `w` of `T` to source word
    `round(w·(S−1)/(T−1))`), `random` (a uniformly random source word per target word)."""
    generator = torch.Generator().manual_seed(seed)
    found: dict[str, list[set[metrics.Link]]] = {"dictionary": [], "diagonal": [], "random": []}
    for pair in pairs:
        n_src, n_tgt = _words(pair)
        found["dictionary"].append(_dictionary(pair, translations))
        found["diagonal"].append({(w, _diagonal_word(w, n_src, n_tgt)) for w in range(n_tgt)})
        picks = torch.randint(n_src, (n_tgt,), generator=generator).tolist()
        found["random"].append({(w, s) for w, s in enumerate(picks)})
    gold = [p.gold for p in pairs]
    return {k: metrics.alignment_error_rate(v, gold) for k, v in found.items()}


def _teacher_forced(
    model: models.HookedModel, sources: Int[Tensor, "variant src_pos"], decoder_input: list[int]
) -> Float[Tensor, "variant tgt_pos d_vocab"]:
    tgt = torch.tensor([decoder_input] * sources.shape[0])
    with torch.inference_mode():
        logits = model(sources, decoder_input=tgt)
    return torch.log_softmax(logits.detach().cpu().to(torch.float64), dim=-1)


def substitution_alignment(
    model: models.HookedModel,
    pairs: Sequence[AlignedPair],
    substitute: Callable[[int], int],
) -> dict[str, float]:
    """Replace each source word in turn by `substitute(token)` (another word of its class),
    teacher-forcing the gold target, and measure at each target word's predicting rows:

    - `confirmed`: share of gold links whose source's substitution changes the model's argmax
      prediction of that target word (the gold source is a cause);
    - `other_changes`: share of (target word, non-gold source word) pairs whose substitution
      changes it (how often something else is a cause too);
    - `aer`: AER of the alignment read from the drop of the gold token's probability (argmax
      over source words of `p_clean − p_substituted`): occlusion's own ceiling on the task.
    Source words must be one token each (the demo tokenizer's)."""
    confirmed = links = other = others = 0
    predicted = []
    for pair in pairs:
        src = torch.tensor(pair.source_ids)
        words = [j for j, w in enumerate(pair.source_words) if w is not None]
        variants = src.repeat(len(words) + 1, 1)
        for v, j in enumerate(words, start=1):
            variants[v, j] = substitute(int(src[j]))
        logp = _teacher_forced(model, variants, pair.decoder_input)
        labels = torch.tensor([*pair.decoder_input[1:], 0])
        gold_p = logp.gather(-1, labels.expand(len(variants), -1)[..., None])[..., 0].exp()
        changed = logp.argmax(-1) != logp[0].argmax(-1)  # [variant, row]
        drop = (gold_p[:1] - gold_p[1:]).T  # [row, word variant]
        scores = torch.zeros(len(pair.decoder_input), len(pair.source_ids), dtype=torch.float64)
        scores[:, words] = drop
        predicted.append(metrics.argmax_alignment(
            metrics.word_level(scores, pair.label_words, pair.source_words)
        ))  # fmt: skip
        for r, w in enumerate(pair.label_words):
            if w is None:
                continue
            for v, j in enumerate(words, start=1):
                if (w, pair.source_words[j]) in pair.gold:
                    confirmed, links = confirmed + int(changed[v, r]), links + 1
                else:
                    other, others = other + int(changed[v, r]), others + 1
    return {
        "confirmed": confirmed / max(1, links),
        "other_changes": other / max(1, others),
        "aer": metrics.alignment_error_rate(predicted, [p.gold for p in pairs]),
    }


def clipping(model: models.HookedModel, pairs: Sequence[AlignedPair]) -> dict[str, dict]:
    """Per decoder layer (keys "0", "1", …): how often ALTI's `max(0, ·)` sets a gold link's
    cross contribution `C_ca^l` to exactly 0 (its vector overshoots the output:
    `||y − T_j||_1 ≥ ||y||_1`; `agreement.clipped_share`), and among the target words that
    layer's ALTI cross alignment gets wrong, how many have their gold source at 0. Predicting
    rows; word scores as in `alignment` (one-token words: the token's own score)."""
    from alti_lens import alti_plus

    from .agreement import clipped_share, token_links

    src, src_mask = _pad([p.source_ids for p in pairs])
    tgt, tgt_mask = _pad([p.decoder_input for p in pairs])
    result = alti_plus(
        model, src, tgt, source_attention_mask=src_mask, target_attention_mask=tgt_mask
    )
    shares = clipped_share(
        result.cross_contributions, [token_links(p, sorted(p.gold)) for p in pairs]
    )
    out = {}
    for layer, share in enumerate(shares):
        wrong = wrong_clipped = 0
        for b, pair in enumerate(pairs):
            s, t = len(pair.source_ids), len(pair.decoder_input)
            cross = result.cross_contributions[b, layer, :t, :s]
            words = metrics.word_level(cross, pair.label_words, pair.source_words)
            guessed = metrics.argmax_alignment(words)
            for w, sw in pair.gold - guessed:
                wrong, wrong_clipped = wrong + 1, wrong_clipped + bool(words[w, sw] == 0)
        n_links = sum(len(p.gold) for p in pairs)
        out[str(layer)] = {
            "clipped": share, "n_links": n_links, "errors": wrong, "errors_clipped": wrong_clipped
        }  # fmt: skip
    return out


def occlusion_rows(
    model: models.HookedModel,
    tokens: Int[Tensor, "batch pos"],
    predictions: Int[Tensor, "batch pos"],
    replacement: Int[Tensor, " batch"],
) -> Float[Tensor, "batch query_pos key_pos"]:
    """`drop[b, t, j]`: how much the probability of the model's own prediction at `t` falls when
    input `j` is replaced by `replacement[b]` (a token absent from sequence `b`): the causal
    reference for "which input does this prediction come from". One forward pass per sequence
    serves every `t` (causal: replacing `j` only changes rows `t ≥ j`)."""
    batch, n = tokens.shape
    drop = torch.zeros(batch, n, n, dtype=torch.float64)
    for b in range(batch):
        variants = tokens[b].repeat(n + 1, 1)
        variants[torch.arange(1, n + 1), torch.arange(n)] = int(replacement[b])
        probs = models.logits(model, variants).double().softmax(-1)
        picked = probs.gather(-1, predictions[b].expand(n + 1, n)[..., None])[..., 0]
        drop[b] = (picked[0][None, :] - picked[1:]).T  # [t, j]
    return drop


def gradient_rows(
    model: models.HookedModel,
    tokens: Int[Tensor, "batch pos"],
    predictions: Int[Tensor, "batch pos"],
    positions: Sequence[int],
    steps: int = 32,
) -> dict[str, dict[int, Float[Tensor, "batch pos"]]]:
    """Gradient norm, gradient × input and integrated gradients of the logit of the model's own
    prediction at each of `positions`, per input token (`models.embedding_gradients`)."""
    out: dict[str, dict[int, Tensor]] = {
        "gradient norm": {},
        "gradient x input": {},
        "integrated gradients": {},
    }
    rows = torch.arange(tokens.shape[0])
    for t in positions:

        def forward(t: int = t) -> Tensor:
            return model(tokens)[rows, t, predictions[:, t]]

        g = models.embedding_gradients(model, forward, steps=steps)["hook_embed"]
        out["gradient norm"][t] = g.norm
        out["gradient x input"][t] = g.times_input
        out["integrated gradients"][t] = g.integrated
    return out
