"""Source vs target prefix: does ALTI+'s source contribution tell which decoder steps the source
determines and which the target prefix determines? (docs/EVALUATION.md, issue 16)

The data: a toy translation task (the demo translator's vocabulary, `alti_lens.demo.data`) whose
target holds two kinds of words, each with a label known by construction.

- `source`-determined: the translation of a source word (`LEXICON`), the demo's reordering
  (`DET NOUN ADJ*` noun phrases, the verb last).
- `prefix`-determined: words that depend only on what the target has already emitted, never on
  the source. Every target sentence opens with a *free* word, a particle (`PARTICLES`) drawn at
  random: nothing in the source says which. A `classifier` follows every determiner and agrees
  with the particle and with the number of determiners the target has had before it
  (`CLASSIFIERS[particle][k]`), and an `echo` of the particle (a copy of the
  target's first word) ends the sentence after the verb. Their identity is in the prefix only, and
  so is their timing (after a determiner, after the verb). The free step itself is unpredictable
  (`free`) and left out of the experiments, as is the decoder's first row (the target's BOS).

    source: the old dog sees a cat
    target: wo lo won hundo vecha un wom gato vidas wo
    labels: free source prefix source source source prefix source source prefix

Verbs with a two-word translation are left out: their second word is determined by the first one
(prefix) and by the source at once, so it has no clean label.

The experiments (`step_experiment`, `sentence_experiment`) take any encoder-decoder model
`alti_plus` supports: the labels are confirmed on the model by intervention (`interventions`), and
each method's per-step source share is scored by AUROC against the labels (`step_aurocs`).
"""

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from alti_lens import AltiPlusResult, alti_plus, models
from alti_lens.demo import data
from alti_lens.errors import InputError
from alti_lens.models import HookedModel

from . import hallucination, metrics

PARTICLES = ("ya", "wo", "ke", "zu")
# the classifier after the k-th determiner of the target agrees with the particle
CLASSIFIERS = {p: (f"{p}n", f"{p}m", f"{p}l") for p in PARTICLES}
VERBS = {s: t[0] for s, t in data.VERBS.items() if len(t) == 1}  # one-word translations only
SOURCE, PREFIX, FREE = "source", "prefix", "free"
# each source word's class (the words a substitution may put in its place)
_CLASSES: tuple[tuple[str, ...], ...] = (
    tuple(data.DETERMINERS), tuple(data.ADJECTIVES), tuple(data.NOUNS), tuple(VERBS),
    tuple(data.PREPOSITIONS),
)  # fmt: skip
_CLASS_OF = {w: c for c in _CLASSES for w in c}
SOURCE_WORDS: tuple[str, ...] = tuple(_CLASS_OF)
_CLASSIFIER_WORDS = [c for cs in CLASSIFIERS.values() for c in cs]
TARGET_WORDS: tuple[str, ...] = tuple(
    dict.fromkeys([*PARTICLES, *_CLASSIFIER_WORDS] + [data.LEXICON[w][0] for w in SOURCE_WORDS])
)


@dataclass(frozen=True)
class TargetWord:
    """One target word with its known answer: `label` (`source`, `prefix` or `free`), the
    mechanism that put it there (`particle`, `word`, `classifier`, `echo`) and, for a
    translated word, the index of its source word."""

    word: str
    label: str
    mechanism: str
    aligned: int | None = None


@dataclass(frozen=True)
class PrefixPair:
    """A source sentence, the target order of its words (source indices) and the target's free
    choice, its particle; the target and its labels follow from these (`words`)."""

    source: tuple[str, ...]
    order: tuple[int, ...]
    particle: str

    @property
    def words(self) -> list[TargetWord]:
        """The target, word by word, with each word's label."""
        out = [TargetWord(self.particle, FREE, "particle")]
        determiners = 0  # so far in the target
        for s in self.order:
            word = self.source[s]
            out.append(TargetWord(data.LEXICON[word][0], SOURCE, "word", s))
            if word in data.DETERMINERS:
                classifier = CLASSIFIERS[self.particle][determiners]
                out.append(TargetWord(classifier, PREFIX, "classifier"))
                determiners += 1
        out.append(TargetWord(self.particle, PREFIX, "echo"))
        return out

    @property
    def target(self) -> list[str]:
        """The target words."""
        return [w.word for w in self.words]


def _noun_phrase(rng: random.Random, start: int) -> tuple[list[str], list[int]]:
    """`DET ADJ{0,2} NOUN` and its source indices in target order `DET NOUN ADJ*` (mirrored)."""
    n_adj = rng.choices((0, 1, 2), weights=(5, 4, 2))[0]
    words = [rng.choice(tuple(data.DETERMINERS)), *rng.sample(tuple(data.ADJECTIVES), n_adj)]
    words.append(rng.choice(tuple(data.NOUNS)))
    idx = list(range(start, start + len(words)))
    return words, [idx[0], idx[-1], *reversed(idx[1:-1])]


def prefix_pairs(n: int, seed: int) -> list[PrefixPair]:
    """`n` pairs from `random.Random(seed)`: source `SUBJ VERB OBJ [PREP NP]` (as the demo's
    `translation_pairs`, one-word verbs), target `particle SUBJ' OBJ' [PREP' NP'] VERB' particle`
    with a classifier after every determiner. Source 5-14 words, target 9-21."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        subj, order = _noun_phrase(rng, 0)
        verb_at = len(subj)
        obj, obj_order = _noun_phrase(rng, verb_at + 1)
        source = [*subj, rng.choice(tuple(VERBS)), *obj]
        order += obj_order
        if rng.random() < 0.4:
            source.append(rng.choice(tuple(data.PREPOSITIONS)))
            order.append(len(source) - 1)
            np_words, np_order = _noun_phrase(rng, len(source))
            source += np_words
            order += np_order
        order.append(verb_at)
        out.append(PrefixPair(tuple(source), tuple(order), rng.choice(PARTICLES)))
    return out


def other_free_choice(pair: PrefixPair, rng: random.Random) -> PrefixPair:
    """The same pair with another particle: its prefix-determined words change (every
    classifier, the echo), its source-determined words do not."""
    return replace(pair, particle=rng.choice([p for p in PARTICLES if p != pair.particle]))


def _replacement(word: str, taken: set[str], rng: random.Random) -> str:
    """Another word of `word`'s class, not in `taken`."""
    if word not in _CLASS_OF:
        raise InputError(
            f"{word!r} is not a source word of the prefix task; expected one of its "
            f"{len(SOURCE_WORDS)} words (prefix.SOURCE_WORDS). Fix: substitute task sentences only."
        )
    return rng.choice([w for w in _CLASS_OF[word] if w not in taken])


def substituted_source(pair: PrefixPair, rng: random.Random) -> PrefixPair:
    """The same structure and free choices with every source word replaced by another word of its
    class (none of the sentence's own words): every source-determined target word changes to the
    new word's translation, the prefix-determined ones do not."""
    taken = set(pair.source)
    new = []
    for word in pair.source:
        new.append(_replacement(word, taken, rng))
        taken.add(new[-1])
    return replace(pair, source=tuple(new))


def corrupted_source(source: Sequence[str], k: int, rng: random.Random) -> list[str]:
    """`source` with `k` of its words (distinct positions) replaced by another word of the same
    class: a grammatical source the original target no longer translates."""
    if not 1 <= k <= len(source):
        raise InputError(
            f"corrupted_source: k={k} for a source of {len(source)} words; expected "
            "1 <= k <= len(source). Fix: corrupt fewer words."
        )
    out = list(source)
    for i in rng.sample(range(len(source)), k):
        out[i] = _replacement(out[i], {out[i]}, rng)
    return out


# --- running a model on the task ---------------------------------------------------------------

# per-step methods: each gives every decoder row a source share (higher: more source)
ALTI_PLUS = "ALTI+ source contribution"
ALTI_PLUS_NO_SPECIAL = "ALTI+ (source special tokens left out)"
ALTI_CROSS = "ALTI cross-attention block, source share (mean over layers)"
NORM = "norm (Kobayashi), rolled out"
ATTENTION_ROLLOUT = "attention rollout (ALTI+ variant)"
ATTENTION_LAST = "cross-attention to source words (last layer)"
ATTENTION_MEAN = "cross-attention to source words (mean over layers)"
GRADIENT_NORM = "gradient norm share"
GRADIENT_X_INPUT = "gradient × input share"
INTEGRATED = "integrated gradients share"
POSITION = "position in the target"
RANDOM = "random"
STEP_METHODS = (
    ALTI_PLUS, ALTI_PLUS_NO_SPECIAL, ALTI_CROSS, NORM, ATTENTION_ROLLOUT, ATTENTION_LAST,
    ATTENTION_MEAN, GRADIENT_NORM, GRADIENT_X_INPUT, INTEGRATED, POSITION, RANDOM,
)  # fmt: skip
# the causal reference: drop of the gold token's probability when the source is substituted,
# minus its drop when the target's free choices are (`interventions`)
CAUSAL = "causal: p(gold) drop, source swap − prefix swap"
EMBEDDINGS = ("hook_embed", "decoder_embed.hook_out")  # the encoder's and the decoder's
_GRADIENTS = {GRADIENT_NORM: "norm", GRADIENT_X_INPUT: "times_input", INTEGRATED: "integrated"}


@dataclass(frozen=True)
class Encoded:
    """A batch of pairs as `alti_plus` read them: the source and its mask, the decoder input (the
    target shifted right after the decoder start token) and its mask, the token each decoder row
    predicts (`labels`, -1 where none) and the source's special tokens."""

    source: Int[Tensor, "batch src_pos"]
    source_mask: Int[Tensor, "batch src_pos"]
    decoder_input: Int[Tensor, "batch tgt_pos"]
    target_mask: Int[Tensor, "batch tgt_pos"]
    labels: Int[Tensor, "batch tgt_pos"]
    special: Bool[Tensor, "batch src_pos"]

    @classmethod
    def of(cls, result: AltiPlusResult) -> "Encoded":
        """The tokens of an `alti_plus` run on text (which records the labels)."""
        labels = result.target_labels
        if labels is None or result.source_special_mask is None:  # alti_plus records both
            raise InputError("prefix: the alti_plus result records no labels; pass text targets.")
        return cls(
            result.source_tokens, result.source_attention_mask, result.target_tokens,
            result.target_attention_mask, labels, result.source_special_mask.bool(),
        )  # fmt: skip

    def with_sources(self, model: HookedModel, sources: Sequence[str]) -> "Encoded":
        """The same decoder input under other sources of the same token lengths."""
        tokens, _ = _same_lengths(model, sources, self.source_mask, "sources")
        return replace(self, source=tokens)

    def with_targets(self, model: HookedModel, targets: Sequence[str]) -> "Encoded":
        """The same sources under other targets of the same token lengths (teacher forcing)."""
        tokens, mask = _same_lengths(model, targets, self.target_mask, "targets")
        decoder_input = self.decoder_input.clone()
        real = self.target_mask[:, 1:].bool()
        # row t + 1 holds target token t; padding stays as it was
        decoder_input[:, 1:] = torch.where(real, tokens[:, :-1], decoder_input[:, 1:])
        labels = torch.where(mask.bool(), tokens, -1)
        return replace(self, decoder_input=decoder_input, labels=labels)


def _same_lengths(
    model: HookedModel, texts: Sequence[str], mask: Tensor, what: str
) -> tuple[Tensor, Tensor]:
    """`texts` tokenized, checked to have exactly the token lengths of `mask`."""
    tokens, got = models.tokenize(model, list(texts))
    if got.shape != mask.shape or not torch.equal(got, mask):
        raise InputError(
            f"prefix: the other {what} tokenize to {tuple(got.shape)} tokens (lengths "
            f"{got.sum(-1).tolist()}), not {tuple(mask.shape)} ({mask.sum(-1).tolist()}); "
            "expected the same token lengths. Fix: replace words by words of one token each."
        )
    return tokens, got


def _length_groups(encoded: Encoded) -> list[tuple[Tensor, int]]:
    """(rows, source length) of each group of sequences with the same source length: the model
    then runs on unpadded sources (no source mask to pass; right-padded decoder inputs are
    harmless under causal attention)."""
    lengths = encoded.source_mask.sum(-1)
    return [((lengths == n).nonzero().flatten(), int(n)) for n in lengths.unique().tolist()]


def log_probs(model: HookedModel, encoded: Encoded) -> Float[Tensor, "batch tgt_pos d_vocab"]:
    """The model's next-token log-probabilities at every decoder row (float64, CPU)."""
    out: Tensor | None = None
    for rows, n in _length_groups(encoded):
        with torch.inference_mode():
            logits = model(encoded.source[rows, :n], decoder_input=encoded.decoder_input[rows])
        logp = torch.log_softmax(logits.detach().cpu().to(torch.float64), dim=-1)
        if out is None:
            out = torch.zeros((encoded.source.shape[0], *logp.shape[1:]), dtype=torch.float64)
        out[rows] = logp
    assert out is not None  # at least one group: the batch is not empty
    return out


def _shares(
    model: HookedModel,
    inputs: tuple[Tensor, Tensor, Tensor],
    scored: Bool[Tensor, "n tgt_pos"],
    prefix: Bool[Tensor, "n tgt_pos"],
    steps: int,
) -> dict[str, Float[Tensor, " n"]]:
    """Each gradient method's source share `Σ_src |a| / (Σ_src |a| + Σ_prefix |a|)` for the
    score `Σ_{scored rows} log p(gold)` of each sequence; `inputs` = (unpadded source, decoder
    input, gold labels)."""
    source, decoder_input, labels = inputs

    def forward() -> Tensor:
        logits = model(source, decoder_input=decoder_input)
        logp = torch.log_softmax(logits.to(torch.float64), dim=-1).cpu()
        gold = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        return (gold * scored).sum(-1)

    grads = models.embedding_gradients(model, forward, EMBEDDINGS, steps)
    out = {}
    for name, field in _GRADIENTS.items():
        src = getattr(grads[EMBEDDINGS[0]], field).abs().sum(-1)
        tgt = (getattr(grads[EMBEDDINGS[1]], field).abs() * prefix).sum(-1)
        out[name] = src / (src + tgt)
    return out


def gradient_shares(
    model: HookedModel,
    encoded: Encoded,
    wanted: Bool[Tensor, "batch tgt_pos"],
    *,
    steps: int = 16,
    chunk: int = 1024,
) -> dict[str, Float[Tensor, "batch tgt_pos"]]:
    """The source's share of each gradient attribution (`GRADIENT_NORM`, `GRADIENT_X_INPUT`,
    `INTEGRATED`) at the `wanted` decoder rows (0 elsewhere): `Σ_src |a| / (Σ_src |a| +
    Σ_prefix |a|)`, with `a` the attribution of the encoder's token embeddings (`hook_embed`:
    the source) and of the decoder's (`decoder_embed.hook_out`: the decoder inputs up to the row,
    the prefix), and the score the log-probability of the row's gold token. Each (sequence, row)
    is its own copy of the sequence in the batch, so its gradients are its own; `steps` points
    of integrated gradients."""
    shape = encoded.decoder_input.shape
    out = {name: torch.zeros(shape, dtype=torch.float64) for name in _GRADIENTS}
    positions = torch.arange(shape[1])
    for rows, n in _length_groups(encoded):
        which, row = (wanted[rows] & (encoded.labels[rows] >= 0)).nonzero(as_tuple=True)
        which = rows[which]
        for start in range(0, len(which), chunk):
            b, r = which[start : start + chunk], row[start : start + chunk]
            inputs = (encoded.source[b, :n], encoded.decoder_input[b], encoded.labels[b])
            scored = positions[None, :] == r[:, None]
            shares = _shares(model, inputs, scored, positions[None, :] <= r[:, None], steps)
            for name, values in shares.items():
                out[name][b, r] = values
    return out


def sentence_gradient_shares(
    model: HookedModel, encoded: Encoded, *, steps: int = 16
) -> dict[str, Float[Tensor, " batch"]]:
    """Each gradient method's source share for the whole target: the score is the sum of the
    gold tokens' log-probabilities over the decoder rows, the prefix every decoder input."""
    out = {name: torch.zeros(encoded.source.shape[0], dtype=torch.float64) for name in _GRADIENTS}
    for rows, n in _length_groups(encoded):
        inputs = (encoded.source[rows, :n], encoded.decoder_input[rows], encoded.labels[rows])
        scored = encoded.labels[rows] >= 0
        shares = _shares(model, inputs, scored, encoded.target_mask[rows].bool(), steps)
        for name, values in shares.items():
            out[name][rows] = values
    return out


def alti_runs(
    model: HookedModel, sources: Sequence[str], targets: Sequence[str]
) -> dict[str, AltiPlusResult]:
    """`alti_plus` of the teacher-forced pairs with each measure the methods read (`l1`: ALTI+,
    `norm`, `attention`, `attention_rollout`), the exactness check on."""
    first = alti_plus(model, list(sources), list(targets))
    enc = Encoded.of(first)
    out = {"l1": first}
    for measure in ("norm", "attention", "attention_rollout"):
        out[measure] = alti_plus(
            model, enc.source, enc.decoder_input, source_attention_mask=enc.source_mask,
            target_attention_mask=enc.target_mask, measure=measure,
        )  # fmt: skip
    return out


def _words_share(result: AltiPlusResult, special: Tensor) -> Float[Tensor, "batch layer tgt_pos"]:
    """Each layer's head-mean cross-attention on the source words (special tokens left out): the
    weights sum to 1 over the source, so the share on BOS / EOS is where the source is not read."""
    n_source = result.source_tokens.shape[1]
    cross = result.cross_contributions[..., :n_source]
    return (cross * (~special)[:, None, None, :]).sum(-1)


def step_scores(
    model: HookedModel,
    runs: dict[str, AltiPlusResult],
    *,
    ig_steps: int = 16,
    seed: int = 0,
    wanted: Bool[Tensor, "batch tgt_pos"] | None = None,
) -> dict[str, Float[Tensor, "batch tgt_pos"]]:
    """Every `STEP_METHODS` source share at every decoder row of `runs` (from `alti_runs`; the
    gradient methods only at the `wanted` rows, default all), rounded to 12 decimals so that
    values equal up to rounding tie (the attention-rollout variant gives every row the same
    share, 1 − 2^−layers)."""
    l1 = runs["l1"]
    enc = Encoded.of(l1)
    n_source = enc.source.shape[1]
    words = _words_share(runs["attention"], enc.special)
    shape = enc.decoder_input.shape
    generator = torch.Generator().manual_seed(seed)
    out = {
        ALTI_PLUS: l1.source_contribution,
        ALTI_PLUS_NO_SPECIAL: l1.source_contribution_without(enc.special),
        ALTI_CROSS: 1 - l1.cross_contributions[..., n_source].mean(1),  # 1 − residual share
        NORM: runs["norm"].source_contribution,
        ATTENTION_ROLLOUT: runs["attention_rollout"].source_contribution,
        ATTENTION_LAST: words[:, -1],
        ATTENTION_MEAN: words.mean(1),
        POSITION: torch.arange(shape[1], dtype=torch.float64).expand(shape).clone(),
        RANDOM: torch.rand(shape, generator=generator, dtype=torch.float64),
    }
    if wanted is None:
        wanted = enc.target_mask.bool()
    out |= gradient_shares(model, enc, wanted, steps=ig_steps)
    return {name: out[name].to(torch.float64).round(decimals=12) for name in STEP_METHODS}


# --- the per-step experiment -------------------------------------------------------------------


def interventions(
    model: HookedModel, pairs: Sequence[PrefixPair], encoded: Encoded, rng: random.Random
) -> dict[str, Tensor]:
    """The two interventions that confirm the labels, per decoder row `[batch, tgt_pos]`:

    - source swap: every source word replaced by another of its class (`substituted_source`),
      the target prefix kept (teacher forcing): a source-determined row must switch to the new
      word's translation, a prefix-determined row must not change;
    - prefix swap: the target's free choice replaced (`other_free_choice`: another particle, every
      classifier and the echo following it), the source kept: a prefix-determined row must switch
      to the new classifier or particle, a source-determined row must not change.

    Returns the gold token (`gold`, -1 where none), what each intervention should make the row
    predict (`expected_source_swap`, `expected_prefix_swap`), and the model's argmax and
    probability of the gold token on the clean input and under each swap (`argmax_clean`,
    `p_gold_source_swap`, ...)."""
    subs = [substituted_source(p, rng) for p in pairs]
    alts = [other_free_choice(p, rng) for p in pairs]
    runs = {
        "clean": encoded,
        "source_swap": encoded.with_sources(model, [" ".join(p.source) for p in subs]),
        "prefix_swap": encoded.with_targets(model, [" ".join(p.target) for p in alts]),
    }
    out = {
        "gold": encoded.labels,
        "expected_source_swap": encoded.with_targets(
            model, [" ".join(p.target) for p in subs]
        ).labels,
        "expected_prefix_swap": runs["prefix_swap"].labels,
    }
    gold = encoded.labels.clamp(min=0)[..., None]
    for name, enc in runs.items():
        logp = log_probs(model, enc)
        out[f"argmax_{name}"] = logp.argmax(-1)
        out[f"p_gold_{name}"] = logp.gather(-1, gold)[..., 0].exp()
    return out


def _by_length(sources: Sequence[Sequence[str]]) -> list[int]:
    """Indices in order of source length (stable): chunks of equal-length sources run in fewer
    forward passes (the model runs once per source length, `_length_groups`)."""
    return sorted(range(len(sources)), key=lambda i: len(sources[i]))


def _labelled(pairs: Sequence[PrefixPair]) -> list[tuple[int, int, TargetWord]]:
    """(sequence, decoder row, word) of every source- or prefix-determined target word: target
    word `j` is predicted at decoder row `j + 1` (row 0 predicts the target's BOS)."""
    return [
        (b, j + 1, w)
        for b, pair in enumerate(pairs)
        for j, w in enumerate(pair.words)
        if w.label != FREE
    ]


def step_experiment(
    model: HookedModel,
    pairs: Sequence[PrefixPair],
    *,
    chunk: int = 64,
    ig_steps: int = 16,
    seed: int = 0,
) -> dict[str, Any]:
    """Every labelled decoder step of `pairs`, flat: `label` and `mechanism` (lists), every
    `STEP_METHODS` score and `CAUSAL` (`scores`, name → tensor), and the interventions' per-step
    values (`interventions`, as `interventions` returns them, one value per step)."""
    rng = random.Random(seed)
    labels: list[str] = []
    mechanisms: list[str] = []
    scores: dict[str, list[Tensor]] = {}
    effects: dict[str, list[Tensor]] = {}
    ordered = [pairs[i] for i in _by_length([p.source for p in pairs])]
    for start in range(0, len(ordered), chunk):
        part = ordered[start : start + chunk]
        runs = alti_runs(
            model, [" ".join(p.source) for p in part], [" ".join(p.target) for p in part]
        )
        steps = _labelled(part)
        b = torch.tensor([s[0] for s in steps])
        r = torch.tensor([s[1] for s in steps])
        wanted = torch.zeros(runs["l1"].target_tokens.shape, dtype=torch.bool)
        wanted[b, r] = True
        per_row = step_scores(model, runs, ig_steps=ig_steps, seed=seed + start, wanted=wanted)
        moved = interventions(model, part, Encoded.of(runs["l1"]), rng)
        per_row[CAUSAL] = moved["p_gold_prefix_swap"] - moved["p_gold_source_swap"]
        labels += [s[2].label for s in steps]
        mechanisms += [s[2].mechanism for s in steps]
        for name, values in per_row.items():
            scores.setdefault(name, []).append(values[b, r])
        for name, values in moved.items():
            effects.setdefault(name, []).append(values[b, r])
    return {
        "label": labels,
        "mechanism": mechanisms,
        "scores": {k: torch.cat(v) for k, v in scores.items()},
        "interventions": {k: torch.cat(v) for k, v in effects.items()},
    }


def confirmation(table: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per label and per mechanism (`source`, `prefix`, `word`, `classifier`, `echo`): the
    model's teacher-forced accuracy, and over the steps it gets right, how often each swap
    changes the argmax (`source_swap_changes`, `prefix_swap_changes`) and how often the argmax is
    what the construction says after it (`source_swap_as_expected`, ...). The labels hold on
    the model when a source swap changes the source steps and not the prefix steps, and a prefix
    swap the prefix steps and not the source steps."""
    moved = table["interventions"]
    right = moved["argmax_clean"] == moved["gold"]
    out: dict[str, dict[str, float]] = {}
    for group in (SOURCE, PREFIX, "classifier", "echo"):
        member = torch.tensor(
            [group in (a, m) for a, m in zip(table["label"], table["mechanism"], strict=True)]
        )
        keep = member & right
        row = {"n": float(member.sum()), "accuracy": float(right[member].double().mean())}
        for swap in ("source_swap", "prefix_swap"):
            argmax = moved[f"argmax_{swap}"][keep]
            row[f"{swap}_changes"] = float((argmax != moved["gold"][keep]).double().mean())
            row[f"{swap}_as_expected"] = float(
                (argmax == moved[f"expected_{swap}"][keep]).double().mean()
            )
        out[group] = row
    return out


def step_aurocs(
    table: dict[str, Any], *, n_resamples: int = 1000, seed: int = 0
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """Method → group → (AUROC, lower, upper of the 95% bootstrap interval) of telling the
    source-determined steps (positive: a higher score = more source) from the prefix-determined
    ones: all of them (`all`), the classifiers only, the echoes only."""
    source = torch.tensor([label == SOURCE for label in table["label"]])
    groups = {"all": ~source}
    for mechanism in ("classifier", "echo"):
        groups[mechanism] = torch.tensor([m == mechanism for m in table["mechanism"]])
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for name, values in table["scores"].items():
        out[name] = {}
        for group, negative in groups.items():
            keep = source | negative
            v, positive = values[keep], source[keep]
            low, high = metrics.auroc_interval(v, positive, n_resamples=n_resamples, seed=seed)
            out[name][group] = (metrics.auroc(v, positive), low, high)
    return out


# --- the sentence-level experiment -------------------------------------------------------------

LOG_PROBABILITY = "log-probability (mean per token)"
SOURCE_SWAP = "causal: log-probability drop when the source is swapped"
# sentence level: each step method's mean over the decoder steps (position left out: its mean
# is the target's length), the model's log-probability and the causal reference
SENTENCE_METHODS = (
    *[m for m in STEP_METHODS if m != POSITION], LOG_PROBABILITY, SOURCE_SWAP,
)  # fmt: skip


def corrupted_kind(k: int) -> str:
    """The kind of a pair whose source has `k` words corrupted."""
    return f"corrupted source ({k} word{'s' if k > 1 else ''})"


def sentence_corpus(
    pairs: Sequence[PrefixPair],
    n_correct: int,
    n_per_kind: int,
    *,
    corruptions: Sequence[int] = (1, 2, 3),
    seed: int = 0,
) -> list[hallucination.LabelledPair]:
    """`hallucination.hallucination_corpus` of the task's pairs (correct pairs and the four
    planted kinds), and `n_per_kind` pairs of each corruption `k`: the correct target of a source
    whose `k` words were replaced (`corrupted_source`), each from its own pair."""
    planted = n_correct + len(hallucination.PLANTED) * n_per_kind
    needed = planted + len(corruptions) * n_per_kind
    if len(pairs) < needed:
        raise InputError(
            f"sentence_corpus: {len(pairs)} pairs; expected at least {needed} for these counts. "
            "Fix: pass more pairs or ask for fewer."
        )
    words = [(list(p.source), p.target) for p in pairs]
    out = hallucination.hallucination_corpus(words[:planted], n_correct, n_per_kind, seed=seed)
    rng = random.Random(seed)
    for i, k in enumerate(corruptions):
        start = planted + i * n_per_kind
        for source, target in words[start : start + n_per_kind]:
            out.append(
                hallucination.LabelledPair(
                    corrupted_source(source, k, rng), target, corrupted_kind(k)
                )
            )
    return out


def _source_swap_drop(model: HookedModel, encoded: Encoded) -> Float[Tensor, " batch"]:
    """Mean log-probability of each target under its own source minus under the next pair's
    source (the batch rolled by one): how much the target needs its own source."""
    swapped = replace(
        encoded,
        source=encoded.source.roll(1, 0),
        source_mask=encoded.source_mask.roll(1, 0),
        special=encoded.special.roll(1, 0),
    )
    real = encoded.labels >= 0
    gold = encoded.labels.clamp(min=0)[..., None]
    means = []
    for enc in (encoded, swapped):
        logp = log_probs(model, enc).gather(-1, gold)[..., 0]
        means.append((logp * real).sum(-1) / real.sum(-1))
    return means[0] - means[1]


def sentence_scores(
    model: HookedModel,
    corpus: Sequence[hallucination.LabelledPair],
    *,
    chunk: int = 64,
    ig_steps: int = 16,
    seed: int = 0,
) -> dict[str, Float[Tensor, " n"]]:
    """Every `SENTENCE_METHODS` score of every pair (a low value is evidence of a hallucination):
    ALTI+ `sentence_statistics()` (`mean`, `mean_no_special`), the mean over the decoder steps of
    every other step method but the gradient ones (`sentence_gradient_shares`: the source's share
    of the whole target's log-probability), the model's mean log-probability of the target
    (`hallucination.target_log_probability`) and the causal source-swap drop."""
    columns: dict[str, list[Tensor]] = {name: [] for name in SENTENCE_METHODS}
    order = _by_length([p.source for p in corpus])
    for start in range(0, len(corpus), chunk):
        part = [corpus[i] for i in order[start : start + chunk]]
        runs = alti_runs(
            model, [" ".join(p.source) for p in part], [" ".join(p.target) for p in part]
        )
        enc = Encoded.of(runs["l1"])
        none = torch.zeros(enc.decoder_input.shape, dtype=torch.bool)  # gradients: below
        steps = step_scores(model, runs, seed=seed + start, wanted=none)
        mask = enc.target_mask.to(torch.float64)
        for name in SENTENCE_METHODS[:-2]:
            columns[name].append((steps[name] * mask).sum(-1) / mask.sum(-1))
        stats = runs["l1"].sentence_statistics()
        columns[ALTI_PLUS][-1] = stats["mean"]
        columns[ALTI_PLUS_NO_SPECIAL][-1] = stats["mean_no_special"]
        for name, values in sentence_gradient_shares(model, enc, steps=ig_steps).items():
            columns[name][-1] = values
        columns[LOG_PROBABILITY].append(hallucination.target_log_probability(model, runs["l1"]))
        columns[SOURCE_SWAP].append(_source_swap_drop(model, Encoded.of(runs["l1"])))
    back = torch.empty(len(order), dtype=torch.long)
    back[torch.tensor(order)] = torch.arange(len(order))  # corpus order again
    return {name: torch.cat(values).to(torch.float64)[back] for name, values in columns.items()}


def sentence_aurocs(
    scores: dict[str, Tensor], kinds: Sequence[str], *, n_resamples: int = 1000, seed: int = 0
) -> dict[str, dict[str, tuple[float, float, float]]]:
    """`hallucination.detection_aurocs` (each hallucination kind, `all planted`, `all`), and each
    corruption kind against the correct pairs (a low score = evidence)."""
    out = hallucination.detection_aurocs(scores, kinds, n_resamples=n_resamples, seed=seed)
    for kind in sorted(set(kinds) - {hallucination.CORRECT, *hallucination.KINDS}):
        keep = torch.tensor([k in (kind, hallucination.CORRECT) for k in kinds])
        subset = [k for k in kinds if k in (kind, hallucination.CORRECT)]
        part = {name: v[keep] for name, v in scores.items()}
        by_group = hallucination.detection_aurocs(part, subset, n_resamples=n_resamples, seed=seed)
        for name, groups in by_group.items():
            out[name][kind] = groups[hallucination.ALL]
    return out
