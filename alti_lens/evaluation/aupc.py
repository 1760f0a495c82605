r"""Faithfulness by token removal on a classifier with planted evidence (the ALTI paper's AUPC).

Ferrando, Gállego & Costa-jussà (2022, EMNLP; "ALTI") compare input attributions of fine-tuned
text classifiers by comprehensiveness and sufficiency (DeYoung et al. 2020, ERASER) over the
token-removal bins 1/5/10/20/50%. Here the classifier is trained on synthetic sentences whose label
is *planted*: neutral toy sentences (`alti_lens.demo.data`'s English side) with one or two evidence
words of the label's class inserted at random positions, and in some sentences one counter-evidence
word of the other class (the majority decides). So besides the faithfulness scores there is a
known answer: the label's evidence words.

- `planted_sentences(n, seed)`: the data, with the word index of every evidence word.
- `attributions(model, head, tokens, evidence, counter)`: every method's per-token importance of
  the predicted class for one sentence (ALTI, attention, attention rollout, norm rollout, gradient
  norm, gradient × input, integrated gradients, occlusion, the planted oracle, random).
- `removal_scores(...)`: the predicted class's probability after removing (comprehensiveness) or
  keeping only (sufficiency) each method's top-k% tokens, and the AUPC of both.
- `evidence_recall(...)`: the share of the planted evidence among each method's top tokens.

Removal means removal: the tokens are taken out of the input (the sentence gets shorter), never
replaced by [MASK]; [CLS] and [SEP] are never removed. Bin `b` removes `ceil(b · n)` of the `n`
non-special tokens (the authors' `aupc.py`). Comprehensiveness at a bin is `p(x) − p(x \ top-k)`
(higher: the attribution found what the prediction needs), sufficiency `p(x) − p(top-k only)`
(lower: the top tokens alone suffice); each AUPC is the mean over the five bins (DeYoung et al.).
The authors' notebook aggregates slightly differently (a running minimum / maximum over the bins,
the empty sentence as the first sufficiency point, and the sum over the five bins divided by six);
`paper_aggregation` computes that variant too, for comparison with their numbers.

The classifier is any encoder `alti` supports with mean pooling and a linear head (what a
sentence-transformers model with a classification head is); the head is given as a callable on
the pooled `[batch, d_model]` embedding.
"""

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from alti_lens import alti, models
from alti_lens.demo import data
from alti_lens.errors import InputError

from .runs import SINGLE_STACK_MEASURES, mean_pool

BINS: tuple[float, ...] = (0.01, 0.05, 0.10, 0.20, 0.50)
POSITIVE: tuple[str, ...] = (
    "great", "excellent", "wonderful", "lovely", "superb", "fantastic", "brilliant", "delightful",
)  # fmt: skip
NEGATIVE: tuple[str, ...] = (
    "terrible", "awful", "horrible", "dreadful", "poor", "nasty", "miserable", "disgusting",
)  # fmt: skip
# words of the toy sentences that carry sentiment themselves: left out of the neutral noise
_NOT_NEUTRAL = frozenset({"good", "bad", "happy", "sad"})
ORACLE = "planted oracle"
OCCLUSION = "occlusion"
RANDOM = "random"
GRADIENT_METHODS = ("gradient norm", "gradient × input", "integrated gradients")
# every method, in table order: ALTI first, then the other measures, gradients, references
METHODS: tuple[str, ...] = (
    *SINGLE_STACK_MEASURES, *GRADIENT_METHODS, OCCLUSION, ORACLE, RANDOM,
)  # fmt: skip
Head = Callable[[Float[Tensor, "batch d_model"]], Float[Tensor, "batch n_class"]]


@dataclass(frozen=True)
class PlantedSentence:
    """A sentence (words), its label (1: positive) and the word indices of the label's evidence
    words and of the counter-evidence word (of the other class; at most one)."""

    words: list[str]
    label: int
    evidence: list[int]
    counter: list[int] = field(default_factory=list)


def _noise(rng: random.Random, clauses: int) -> list[str]:
    """`clauses` toy sentences joined by "and", sentiment-bearing adjectives left out (two
    clauses: 10–29 words)."""
    words: list[str] = []
    for pair in data.translation_pairs(clauses, rng.randrange(2**31)):
        words += [*(["and"] if words else []), *pair.source]
    return [w for w in words if w not in _NOT_NEUTRAL]


def _insert(words: list[str], planted: list[str], rng: random.Random) -> list[int]:
    """Insert `planted` at random positions of `words` (in place); their final indices."""
    marked: list[str | None] = [None] * len(words)
    for word in planted:
        at = rng.randint(0, len(words))
        words.insert(at, word)
        marked.insert(at, word)
    return [i for i, w in enumerate(marked) if w is not None]


def planted_sentences(
    n: int, seed: int, *, p_counter: float = 0.25, clauses: int = 2
) -> list[PlantedSentence]:
    """`n` labelled sentences, balanced at random: one or two evidence words of the label's class
    (`POSITIVE` for 1, `NEGATIVE` for 0) inserted into `clauses` neutral toy sentences; with
    probability `p_counter` two evidence words and one counter-evidence word of the other class,
    so that the majority decides."""
    if n < 1 or clauses < 1 or not 0.0 <= p_counter <= 1.0:
        raise InputError(
            f"planted_sentences: expected n >= 1, clauses >= 1 and 0 <= p_counter <= 1, got "
            f"n={n}, clauses={clauses}, p_counter={p_counter}. Fix: ask for at least one sentence "
            "of at least one clause."
        )
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.randint(0, 1)
        own, other = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
        conflict = rng.random() < p_counter
        n_own = 2 if conflict else rng.randint(1, 2)
        planted = rng.sample(own, n_own) + ([rng.choice(other)] if conflict else [])
        words = _noise(rng, clauses)
        at = _insert(words, planted, rng)
        evidence = [i for i in at if words[i] in own]
        counter = [i for i in at if words[i] in other]
        out.append(PlantedSentence(words, label, evidence, counter))
    return out


def token_mask(word_ids: Sequence[int | None], chosen: Sequence[int]) -> Bool[Tensor, " pos"]:
    """True at the tokens of the chosen words (`word_ids[t]`: token `t`'s word, None: special)."""
    wanted = set(chosen)
    return torch.tensor([w is not None and w in wanted for w in word_ids], dtype=torch.bool)


# --- the classifier ------------------------------------------------------------------------------


def _pad(rows: Sequence[Tensor], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-padded `[batch, pos]` tokens and their attention mask."""
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return tokens, mask


def probabilities(
    model: models.HookedModel,
    head: Head,
    rows: Sequence[Tensor],
    pad_id: int,
    batch_size: int = 64,
) -> Float[Tensor, "batch n_class"]:
    """The classifier's class probabilities (float64) for token rows of any lengths: the encoder's
    last layer, mean-pooled over the real tokens, through `head`."""
    out = []
    for start in range(0, len(rows), batch_size):
        tokens, mask = _pad(rows[start : start + batch_size], pad_id)
        pooled = mean_pool(models.last_hidden(model, tokens, mask), mask)
        with torch.no_grad():
            out.append(head(pooled).double().softmax(-1))
    return torch.cat(out)


def _logit_forward(
    model: models.HookedModel, head: Head, tokens: Int[Tensor, "1 pos"], target: int
) -> Callable[[], Float[Tensor, " batch"]]:
    """A forward with gradients: the `target` logit of the classifier on one unpadded sentence."""
    ones = torch.ones_like(tokens)

    def forward() -> Tensor:
        hidden = models.last_hidden(model, tokens, ones, grad=True)
        return head(hidden.mean(1))[:, target]

    return forward


# --- attributions --------------------------------------------------------------------------------


def _measure_scores(model: models.HookedModel, tokens: Tensor) -> dict[str, Tensor]:
    """Each single-stack measure's share of every input token in the pooled embedding: the mean
    over the rows of its last-layer matrix (mean pooling averages the rows)."""
    out = {}
    for name, (measure, rolled) in SINGLE_STACK_MEASURES.items():
        result = alti(model, tokens, measure=measure)
        matrix = (result.rollout if rolled else result.contributions)[0, -1]
        out[name] = matrix.double().mean(0).cpu()
    return out


def _gradient_scores(
    model: models.HookedModel, head: Head, tokens: Tensor, target: int, steps: int
) -> dict[str, Tensor]:
    forward = _logit_forward(model, head, tokens, target)
    got = models.embedding_gradients(model, forward, ("hook_embed",), steps=steps)["hook_embed"]
    return {
        "gradient norm": got.norm[0],
        "gradient × input": got.times_input[0],
        "integrated gradients": got.integrated[0],
    }


def occlusion_scores(
    model: models.HookedModel, head: Head, tokens: Int[Tensor, " pos"], target: int, pad_id: int
) -> Float[Tensor, " pos"]:
    """Erasure: `p(target | x) − p(target | x without token j)` for every token `j` (removed, the
    sentence one token shorter; the first and last position, [CLS] and [SEP], get 0)."""
    n = len(tokens)
    keep = torch.ones(n, dtype=torch.bool)
    rows = [tokens]
    for j in range(1, n - 1):
        keep[j] = False
        rows.append(tokens[keep])
        keep[j] = True
    probs = probabilities(model, head, rows, pad_id)[:, target]
    out = torch.zeros(n, dtype=torch.float64)
    out[1:-1] = probs[0] - probs[1:]
    return out


def attributions(
    model: models.HookedModel,
    head: Head,
    tokens: Int[Tensor, " pos"],
    target: int,
    known: tuple[Bool[Tensor, " pos"], Bool[Tensor, " pos"]],
    *,
    pad_id: int,
    generator: torch.Generator,
    ig_steps: int = 32,
) -> dict[str, Float[Tensor, " pos"]]:
    """Every method of `METHODS` for one unpadded sentence `[CLS] … [SEP]` and its predicted class
    `target` (gradients and occlusion explain that class's logit / probability; the measures are
    class-agnostic). `known` = (evidence, counter-evidence) token masks: the oracle ranks the
    evidence first and the counter-evidence last; `random` is a random score per token."""
    batch = tokens[None]
    out = _measure_scores(model, batch)
    out.update(_gradient_scores(model, head, batch, target, ig_steps))
    out[OCCLUSION] = occlusion_scores(model, head, tokens, target, pad_id)
    jitter = torch.rand(len(tokens), generator=generator, dtype=torch.float64)
    evidence, counter = known
    out[ORACLE] = evidence.double() * 2 - counter.double() * 2 + jitter  # jitter: random ties
    out[RANDOM] = torch.rand(len(tokens), generator=generator, dtype=torch.float64)
    return {name: out[name] for name in METHODS}


# --- removal -------------------------------------------------------------------------------------


def bin_counts(n_candidates: int, bins: Sequence[float] = BINS) -> list[int]:
    """Tokens removed (or kept) at each bin: `ceil(b · n)` (at least one token for every bin)."""
    return [math.ceil(n_candidates * b - 1e-9) for b in bins]


def ranking(scores: Float[Tensor, " pos"]) -> Int[Tensor, " n_candidates"]:
    """The non-special positions (all but the first and the last), most important first; ties
    keep position order."""
    inner = scores[1:-1]
    return torch.sort(inner, descending=True, stable=True).indices + 1


def removal_rows(
    tokens: Int[Tensor, " pos"], order: Int[Tensor, " n_candidates"], counts: Sequence[int]
) -> list[Tensor]:
    """The inputs a removal curve reads: for each count `k`, the sentence without the top-k tokens
    (comprehensiveness), then for each `k` only the top-k tokens (sufficiency), [CLS]/[SEP] and
    the word order kept; last, the empty sentence `[CLS] [SEP]` (the authors' first sufficiency
    point)."""
    n = len(tokens)
    rows = []
    for keep_top in (False, True):
        for k in counts:
            keep = torch.zeros(n, dtype=torch.bool) if keep_top else torch.ones(n, dtype=torch.bool)
            keep[order[:k]] = keep_top
            keep[0] = keep[-1] = True
            rows.append(tokens[keep])
    rows.append(tokens[[0, n - 1]])
    return rows


@dataclass
class RemovalCurves:
    """One sentence's predicted-class probabilities: `full` on the whole sentence, `removed[b]`
    without the top tokens of bin `b`, `kept[b]` with only them, `empty` with none."""

    full: float
    removed: list[float]
    kept: list[float]
    empty: float

    def comprehensiveness(self) -> float:
        r"""Mean over the bins of `p(x) − p(x \ top-k)` (DeYoung et al. 2020)."""
        return sum(self.full - p for p in self.removed) / len(self.removed)

    def sufficiency(self) -> float:
        """Mean over the bins of `p(x) − p(top-k only)`."""
        return sum(self.full - p for p in self.kept) / len(self.kept)

    def paper_aggregation(self) -> tuple[float, float]:
        """(comprehensiveness, sufficiency) as the authors' evaluation notebook computes them: a
        running minimum of the removed curve (from `p(x)`), a running maximum of the kept curve
        (from the empty sentence), summed over the five bins and divided by six."""
        low, high = self.full, self.empty
        comp = suff = 0.0
        for removed, kept in zip(self.removed, self.kept, strict=True):
            low, high = min(low, removed), max(high, kept)
            comp += self.full - low
            suff += self.full - high
        return comp / (len(self.removed) + 1), suff / (len(self.kept) + 1)


def removal_curves(
    model: models.HookedModel,
    head: Head,
    tokens: Int[Tensor, " pos"],
    target: int,
    scores: dict[str, Float[Tensor, " pos"]],
    pad_id: int,
) -> dict[str, RemovalCurves]:
    """Each method's `RemovalCurves` for one unpadded sentence (all variants in one batch)."""
    counts = bin_counts(len(tokens) - 2)
    per_method = {n: removal_rows(tokens, ranking(s), counts) for n, s in scores.items()}
    # many methods agree on the top tokens of the small bins: each distinct input is run once
    unique: dict[tuple[int, ...], int] = {tuple(tokens.tolist()): 0}
    for rows in per_method.values():
        for row in rows:
            unique.setdefault(tuple(row.tolist()), len(unique))
    inputs = [torch.tensor(key, dtype=tokens.dtype) for key in unique]
    probs = probabilities(model, head, inputs, pad_id)[:, target].tolist()
    full, k = probs[0], len(counts)
    out = {}
    for name, rows in per_method.items():
        p = [probs[unique[tuple(row.tolist())]] for row in rows]
        out[name] = RemovalCurves(full, p[:k], p[k : 2 * k], p[-1])
    return out


def evidence_enrichment(
    model: models.HookedModel, tokens: Int[Tensor, " pos"], evidence: Bool[Tensor, " pos"]
) -> dict[str, float]:
    """Per single-stack measure: the evidence tokens' share of the pooled embedding among the
    non-special tokens, divided by their share of those tokens (1: no more than any other token;
    `n / |E|` at most). How much the encoder concentrates the pooled embedding on the evidence."""
    inner = torch.zeros(len(tokens), dtype=torch.bool)
    inner[1:-1] = True
    expected = float(evidence[inner].double().sum()) / int(inner.sum())
    out = {}
    for name, share in _measure_scores(model, tokens[None]).items():
        got = float(share[evidence & inner].sum() / share[inner].sum())
        out[name] = got / expected
    return out


def evidence_recall(scores: Float[Tensor, " pos"], evidence: Bool[Tensor, " pos"]) -> float:
    """The share of the evidence tokens among the top-|evidence| non-special tokens of `scores`."""
    n = int(evidence.sum())
    if n == 0:
        raise InputError(
            "evidence_recall: the sentence has no evidence token; expected at least one. Fix: "
            "pass the planted evidence mask of the sentence."
        )
    top = ranking(scores)[:n]
    return float(evidence[top].double().sum()) / n
