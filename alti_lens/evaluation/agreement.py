"""Translation with agreement: a toy language pair whose target words need two source words.

The data (pure Python, `random.Random(seed)`): a verb-final source `NP [of NP] NP VERB`
(subject, an optional genitive on the subject, object; `NP = DET ADJ{0,2} NOUN` with English
words), translated into a verb-final target `NP' [de NP'] NP' VERB'` with `NP' = DET' NOUN' ADJ'*`
(adjectives after the noun, in reverse order). The subject noun is far from the verb on both
sides, with the genitive's and the object's nouns in between (agreement attractors). The source
marks number on the noun only (`dog` / `dogs`); its determiners, adjectives and (past-tense)
verbs are invariant.
The target marks gender on determiners and adjectives (agreeing with their noun's lexical gender),
number on the verb (agreeing with the subject) and on the nouns of the object and the genitive
(`hundo` / `hundoj`), but not on the subject noun (so that the source nouns' number is learnt from
every noun translation, while the subject's number never shows in the target prefix). So:

- a target determiner needs its aligned source determiner (which one) and the NP's source noun
  (its gender); it precedes the target noun, so the gender is nowhere in the target prefix;
- the target verb needs its aligned source verb and the *subject* noun (its number), which the
  target prefix never shows (the subject noun, determiners and adjectives carry no number); the
  genitive and the object bring distractor nouns between the subject and the verb (their
  number does show in the target prefix);
- a target adjective needs its source adjective and the noun's gender, but the gender is also in
  the target prefix (the determiner and noun just produced): a weaker known answer, kept apart.

Each target word has a known aligned source word and, for the agreeing ones, a known agreement
source word (`AgreementPair`). `substitutions` gives the interventions that confirm the known
answer on a trained model (change the agreement source's gender/number: the target form flips;
change another word: it does not; `substitution_check` runs them). The experiment reads every
method's target-word × source-word scores with the gold target teacher-forced, at the row that
predicts each word (the ALTI+ paper's protocol, special tokens excluded): `layered_scores`
(ALTI+, attention, norm: per decoder layer), `gradient_scores`, `value_zeroing_scores`,
`occlusion_scores` (the causal reference) and the trivial baselines; `sentence_counts` /
`corpus_counts` score them (AER against the aligned words, recall@k of the aligned and the
agreement source words), `bootstrap_ratio` gives intervals over sentences, and `clipped_share`
measures how often ALTI's `max(0, ·)` clips a source to exactly 0.
"""

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import cast

import torch
from jaxtyping import Float, Int
from torch import Tensor

from alti_lens import Measure, alti_plus, models
from alti_lens._contracts import validates_arguments
from alti_lens.errors import InputError
from alti_lens.models import HookedModel
from alti_lens.results.plus import AltiPlusResult

from . import metrics
from .alignment import ALIGNMENT_METHODS, AlignedPair, _pad

# Source determiner -> (masculine, feminine) target determiner; the source ones are invariant.
DETERMINERS: dict[str, tuple[str, str]] = {
    "the": ("lo", "la"), "my": ("mio", "mia"), "your": ("tuo", "tua"), "his": ("suo", "sua"),
    "our": ("nostro", "nostra"), "their": ("loro", "lora"),
}  # fmt: skip
ADJECTIVES: dict[str, tuple[str, str]] = {
    "big": ("grando", "granda"), "small": ("petito", "petita"), "red": ("rozo", "roza"),
    "old": ("vecho", "vecha"), "young": ("jovo", "jova"), "happy": ("felico", "felica"),
    "sad": ("tristo", "trista"), "black": ("negro", "negra"), "white": ("blanko", "blanka"),
    "tall": ("alto", "alta"), "good": ("bono", "bona"), "new": ("novo", "nova"),
}  # fmt: skip
# Source noun (singular, plural) -> (target noun, its gender: 0 masculine, 1 feminine). The
# target form does not show the gender (arbitrary, as in a real language's lexicon).
NOUNS: dict[tuple[str, str], tuple[str, int]] = {
    ("dog", "dogs"): ("hundo", 0), ("cat", "cats"): ("gato", 1), ("bird", "birds"): ("ptako", 0),
    ("man", "men"): ("viro", 0), ("woman", "women"): ("dama", 1),
    ("child", "children"): ("kido", 1),
    ("teacher", "teachers"): ("magistro", 0), ("farmer", "farmers"): ("farmo", 1),
    ("king", "kings"): ("rego", 0), ("queen", "queens"): ("regina", 1),
    ("horse", "horses"): ("kavalo", 1), ("fish", "fishes"): ("piso", 0),
    ("mouse", "mice"): ("muso", 1), ("girl", "girls"): ("knabina", 0),
    ("boy", "boys"): ("knabo", 1), ("doctor", "doctors"): ("medico", 0),
    ("friend", "friends"): ("amiko", 1), ("baker", "bakers"): ("pankisto", 0),
    ("wolf", "wolves"): ("lupo", 1), ("fox", "foxes"): ("vulpo", 0),
    ("lion", "lions"): ("leono", 1), ("student", "students"): ("studento", 0),
    ("sailor", "sailors"): ("maristo", 1), ("cook", "cooks"): ("kuiro", 0),
}  # fmt: skip
# Source verb (past tense: number-neutral) -> (singular, plural) target verb.
VERBS: dict[str, tuple[str, str]] = {
    "saw": ("vidas", "vidan"), "liked": ("amas", "aman"), "followed": ("sekvas", "sekvan"),
    "helped": ("helpas", "helpan"), "found": ("trovas", "trovan"), "called": ("vokas", "vokan"),
    "knew": ("konas", "konan"), "watched": ("rigardas", "rigardan"), "fed": ("nutras", "nutran"),
    "met": ("renkontas", "renkontan"), "chased": ("casas", "casan"), "heard": ("audas", "audan"),
}  # fmt: skip
PREPOSITIONS: dict[str, str] = {"of": "de"}  # one: the PP is an attractor, not a lexical task

NOUN_LEXEMES: tuple[tuple[str, str], ...] = tuple(NOUNS)
SOURCE_WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [*DETERMINERS, *ADJECTIVES, *(w for pair in NOUNS for w in pair), *VERBS, *PREPOSITIONS]
    )
)
TARGET_WORDS: tuple[str, ...] = tuple(
    dict.fromkeys(
        [
            *(w for forms in DETERMINERS.values() for w in forms),
            *(w for forms in ADJECTIVES.values() for w in forms),
            *(t for t, _ in NOUNS.values()),
            *(t + "j" for t, _ in NOUNS.values()),
            *(w for forms in VERBS.values() for w in forms),
            *PREPOSITIONS.values(),
        ]
    )
)
# Kinds of target word; the first two are the agreement words whose agreement source is in the
# source only, ADJECTIVE's is also in the target prefix.
DETERMINER, VERB, ADJECTIVE, NOUN, PREPOSITION = "determiner", "verb", "adjective", "noun", "prep"
AGREEMENT_KINDS = (DETERMINER, VERB, ADJECTIVE)


@dataclass(frozen=True)
class NounPhrase:
    """`DET ADJ* NOUN`: the noun lexeme's index in `NOUN_LEXEMES` and its number."""

    determiner: str
    adjectives: tuple[str, ...]
    noun: int
    plural: bool

    @property
    def gender(self) -> int:
        """The target noun's lexical gender (0 masculine, 1 feminine)."""
        return NOUNS[NOUN_LEXEMES[self.noun]][1]


@dataclass(frozen=True)
class Sentence:
    """The structure both sides are realised from (`realize`); `pp` attaches to the subject."""

    subject: NounPhrase
    pp: tuple[str, NounPhrase] | None
    verb: str
    object: NounPhrase


@dataclass(frozen=True)
class AgreementPair:
    """One sentence pair with its known answer, per target word `t`: the aligned source word
    `aligned[t]`, the agreement source word `agreement[t]` (None: the word agrees with nothing)
    and its kind (`DETERMINER`, `VERB`, `ADJECTIVE`, `NOUN`, `PREPOSITION`). Indices are word
    positions. `alignment` lists the gold links `(t, aligned[t])` (for `runs.AlignedPair`)."""

    source: list[str]
    target: list[str]
    aligned: list[int]
    agreement: list[int | None]
    kinds: list[str]
    sentence: Sentence

    @property
    def alignment(self) -> list[tuple[int, int]]:
        """The gold word alignment `(target word, source word)`, one link per target word."""
        return list(enumerate(self.aligned))


def _np_source(np_: NounPhrase) -> list[str]:
    return [np_.determiner, *np_.adjectives, NOUN_LEXEMES[np_.noun][int(np_.plural)]]


def target_noun(np_: NounPhrase, subject: bool) -> str:
    """The target noun: invariant in the subject, with the plural suffix `-j` elsewhere."""
    word = NOUNS[NOUN_LEXEMES[np_.noun]][0]
    return word + "j" if np_.plural and not subject else word


def _np_target(
    np_: NounPhrase, start: int, subject: bool = False
) -> list[tuple[str, int, int | None, str]]:
    """Target words of an NP whose source starts at word `start`: (word, aligned source word,
    agreement source word, kind), in target order `DET' NOUN' ADJ'*` (adjectives reversed)."""
    noun_at = start + 1 + len(np_.adjectives)
    g = np_.gender
    out: list[tuple[str, int, int | None, str]] = [
        (DETERMINERS[np_.determiner][g], start, noun_at, DETERMINER)
    ]
    out.append((target_noun(np_, subject), noun_at, None, NOUN))
    for k in reversed(range(len(np_.adjectives))):
        out.append((ADJECTIVES[np_.adjectives[k]][g], start + 1 + k, noun_at, ADJECTIVE))
    return out


def realize(sentence: Sentence) -> AgreementPair:
    """Both sides of `sentence` and the known answer of every target word."""
    source = _np_source(sentence.subject)
    target = _np_target(sentence.subject, 0, subject=True)
    subject_noun = len(source) - 1
    if sentence.pp is not None:
        prep, np_ = sentence.pp
        target.append((PREPOSITIONS[prep], len(source), None, PREPOSITION))
        source.append(prep)
        target += _np_target(np_, len(source))
        source += _np_source(np_)
    target += _np_target(sentence.object, len(source))
    source += _np_source(sentence.object)
    verb = VERBS[sentence.verb][int(sentence.subject.plural)]
    target.append((verb, len(source), subject_noun, VERB))
    source.append(sentence.verb)
    return AgreementPair(
        source=source,
        target=[w for w, _, _, _ in target],
        aligned=[a for _, a, _, _ in target],
        agreement=[g for _, _, g, _ in target],
        kinds=[k for _, _, _, k in target],
        sentence=sentence,
    )


def _noun_phrase(rng: random.Random) -> NounPhrase:
    n_adj = rng.choices((0, 1, 2), weights=(4, 4, 2))[0]
    return NounPhrase(
        determiner=rng.choice(tuple(DETERMINERS)),
        adjectives=tuple(rng.sample(tuple(ADJECTIVES), n_adj)),
        noun=rng.randrange(len(NOUN_LEXEMES)),
        plural=rng.random() < 0.5,
    )


def random_sentence(rng: random.Random, pp_probability: float = 0.4) -> Sentence:
    """One random sentence structure (subject PP with probability `pp_probability`)."""
    subject = _noun_phrase(rng)
    pp = (
        (rng.choice(tuple(PREPOSITIONS)), _noun_phrase(rng))
        if rng.random() < pp_probability
        else None
    )
    return Sentence(subject, pp, rng.choice(tuple(VERBS)), _noun_phrase(rng))


def agreement_pairs(n: int, seed: int) -> list[AgreementPair]:
    """`n` random sentence pairs with their known answers (source 5-14 words)."""
    if n < 1:
        raise InputError(f"agreement_pairs: n must be at least 1, got {n}. Fix: ask for n >= 1.")
    rng = random.Random(seed)
    return [realize(random_sentence(rng)) for _ in range(n)]


# --- substitutions (the known answer, confirmed on the model) ------------------------------------


@dataclass(frozen=True)
class Substitution:
    """A changed sentence and the target word `row` to look at: with `flips`, the change hits
    the row's agreement source (the gold form at `row` changes); otherwise it hits another source
    word and the gold form at `row` stays. The target before `row` is the same in both pairs
    when `same_prefix` (the model cannot read the change from the target prefix)."""

    original: AgreementPair
    changed: AgreementPair
    row: int
    flips: bool
    same_prefix: bool


def _phrases(sentence: Sentence) -> dict[str, NounPhrase]:
    out = {"subject": sentence.subject, "object": sentence.object}
    if sentence.pp is not None:
        out["pp"] = sentence.pp[1]
    return out


def _with_phrase(sentence: Sentence, role: str, np_: NounPhrase) -> Sentence:
    if role == "pp" and sentence.pp is not None:
        return replace(sentence, pp=(sentence.pp[0], np_))
    return replace(sentence, **{role: np_})


def _other_gender_noun(np_: NounPhrase, rng: random.Random) -> NounPhrase:
    others = [i for i, lex in enumerate(NOUN_LEXEMES) if NOUNS[lex][1] != np_.gender]
    return replace(np_, noun=rng.choice(others))


def _other_noun_same_gender(np_: NounPhrase, rng: random.Random) -> NounPhrase:
    same = [
        i for i, lex in enumerate(NOUN_LEXEMES) if NOUNS[lex][1] == np_.gender and i != np_.noun
    ]
    return replace(np_, noun=rng.choice(same), plural=not np_.plural)


def noun_positions(sentence: Sentence) -> dict[str, int]:
    """Source word position of each noun phrase's noun: role (subject / pp / object) -> index."""
    end = len(_np_source(sentence.subject))
    out = {"subject": end - 1}
    if sentence.pp is not None:
        end += 1 + len(_np_source(sentence.pp[1]))
        out["pp"] = end - 1
    out["object"] = end + len(_np_source(sentence.object)) - 1
    return out


def _owner_role(pair: AgreementPair, row: int) -> str:
    """The noun phrase (subject / pp / object) whose noun is the agreement source of `row`."""
    return next(r for r, at in noun_positions(pair.sentence).items() if at == pair.agreement[row])


def _pair_substitutions(pair: AgreementPair, row: int, rng: random.Random) -> list[Substitution]:
    """The flip and the control of one agreeing target word."""
    s = pair.sentence
    phrases = _phrases(s)
    if pair.kinds[row] == VERB:
        # flip: the subject's number; control: the number of every other noun (the target is
        # unchanged by it: target nouns carry no number)
        flipped = replace(s, subject=replace(s.subject, plural=not s.subject.plural))
        control = s
        for role, np_ in phrases.items():
            if role != "subject":
                control = _with_phrase(control, role, replace(np_, plural=not np_.plural))
    else:
        # flip: a noun of the other gender; control: the same-gender noun of another lexeme
        # with the other number, and every other noun phrase's noun of the other gender
        role = _owner_role(pair, row)
        flipped = _with_phrase(s, role, _other_gender_noun(phrases[role], rng))
        control = _with_phrase(s, role, _other_noun_same_gender(phrases[role], rng))
        for other, np_ in phrases.items():
            if other != role:
                control = _with_phrase(control, other, _other_gender_noun(np_, rng))
    out = []
    for changed, flips in ((flipped, True), (control, False)):
        new = realize(changed)
        out.append(
            Substitution(pair, new, row, flips, same_prefix=new.target[:row] == pair.target[:row])
        )
    return out


def substitutions(pairs: Sequence[AgreementPair], seed: int) -> list[Substitution]:
    """For every agreeing target word of `pairs`, two changed sentences: one that changes its
    agreement source (`flips`: the subject's number for the verb, the noun's gender for a
    determiner or adjective) and one that changes other words only (the other nouns' gender or
    number, the noun's lexeme within the same gender)."""
    rng = random.Random(seed)
    return [
        sub
        for pair in pairs
        for row, kind in enumerate(pair.kinds)
        if kind in AGREEMENT_KINDS
        for sub in _pair_substitutions(pair, row, rng)
    ]


# --- the experiment: every method's target-word x source-word scores ------------------------------

# name -> (measure, matrix) read from `alti_plus` per decoder layer: `alignment`'s methods
# ("rollout" R^l, "cross" C_ca^l, "cross x enc" C_ca^l · R_enc, the encoder's rollout)
LAYERED_METHODS = ALIGNMENT_METHODS
VALUE_ZEROING = "value zeroing (cross-attention, layer output)"
GRADIENT_NORM, GRADIENT_X_INPUT, INTEGRATED = (
    "gradient norm",
    "gradient x input",
    "integrated gradients",
)
# one pair's word scores, `[layer, tgt_word, src_word]` (a layer axis of length 1: no layers);
# a plain alias: sentences differ in length, so a list of them has no common jaxtyping shape
WordScores = Tensor


def _words(pair: AlignedPair, scores: Float[Tensor, "tgt_pos src_pos"]) -> Tensor:
    """Token scores of one pair's predicting rows as word scores (`metrics.word_level`)."""
    T, S = len(pair.decoder_input), len(pair.source_ids)
    return metrics.word_level(scores[:T, :S], pair.label_words, pair.source_words)


def _matrix(result: AltiPlusResult, matrix: str, b: int, layer: int, S: int) -> Tensor:
    if matrix == "rollout":
        return result.rollout[b, layer, :, :S]
    cross = result.cross_contributions[b, layer, :, :S]
    if matrix == "cross x enc":
        return cross @ result.encoder_rollout[b, -1, :S, :S]
    return cross


def alti_plus_results(
    model: HookedModel, pairs: Sequence[AlignedPair], measures: Sequence[str]
) -> dict[str, AltiPlusResult]:
    """`alti_plus` of every pair with each measure (teacher forcing; exactness checked)."""
    src, src_mask = _pad([p.source_ids for p in pairs])
    tgt, tgt_mask = _pad([p.decoder_input for p in pairs])
    return {
        m: alti_plus(
            model,
            src,
            tgt,
            source_attention_mask=src_mask,
            target_attention_mask=tgt_mask,
            measure=cast(Measure, m),
        )
        for m in measures
    }


def layered_scores(
    model: HookedModel, pairs: Sequence[AlignedPair]
) -> tuple[dict[str, list[WordScores]], dict[str, AltiPlusResult]]:
    """Every `LAYERED_METHODS` method's word scores per pair, `[decoder layer, tgt word, src
    word]`, and the `alti_plus` results they were read from (by measure)."""
    results = alti_plus_results(model, pairs, sorted({m for m, _ in LAYERED_METHODS.values()}))
    out: dict[str, list[WordScores]] = {}
    for name, (measure, matrix) in LAYERED_METHODS.items():
        result = results[measure]
        out[name] = [
            torch.stack(
                [
                    _words(p, _matrix(result, matrix, b, layer, len(p.source_ids)))
                    for layer in range(result.rollout.shape[1])
                ]
            )
            for b, p in enumerate(pairs)
        ]
    return out, results


def _labels(pair: AlignedPair) -> list[int]:
    """The token each decoder row predicts: the next decoder input (the last row's label is a
    special token without a word, never scored)."""
    return [*pair.decoder_input[1:], -1]


def _by_source_length(pairs: Sequence[AlignedPair]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(len(p.source_ids), []).append(i)
    return groups


def teacher_forced_log_probs(
    model: HookedModel,
    sources: Sequence[Sequence[int]],
    decoder_inputs: Sequence[Sequence[int]],
) -> list[Float[Tensor, "tgt_pos d_vocab"]]:
    """Log-probabilities of every decoder row (plain forward passes, float64 on the CPU), one
    pass per source length: unpadded sources, right-padded decoder inputs (causal: harmless)."""
    out: list[Tensor | None] = [None] * len(sources)
    lengths: dict[int, list[int]] = {}
    for i, s in enumerate(sources):
        lengths.setdefault(len(s), []).append(i)
    for rows in lengths.values():
        src = torch.tensor([list(sources[i]) for i in rows], dtype=torch.long)
        tgt, _ = _pad([decoder_inputs[i] for i in rows])
        with torch.inference_mode():
            logits = model(src, decoder_input=tgt)
        logp = torch.log_softmax(logits.detach().cpu().to(torch.float64), dim=-1)
        for k, i in enumerate(rows):
            out[i] = logp[k, : len(decoder_inputs[i])]
    return [x for x in out if x is not None]


def gradient_scores(
    model: HookedModel, pairs: Sequence[AlignedPair], *, steps: int = 16
) -> dict[str, list[WordScores]]:
    """Gradient norm, gradient × input and integrated gradients (`models.embedding_gradients`,
    all-zero baseline, `steps` midpoints) of the gold target token's log-probability at each
    predicting row, with respect to the source token embeddings (`hook_embed`); signed (a word
    that supports the gold token scores high). One backward pass serves every row of every
    pair of one source length: the batch holds one copy of a pair per scored row."""
    names = (GRADIENT_NORM, GRADIENT_X_INPUT, INTEGRATED)
    out: dict[str, list[Tensor | None]] = {n: [None] * len(pairs) for n in names}
    for members in _by_source_length(pairs).values():
        copies = [
            (i, r) for i in members for r, w in enumerate(pairs[i].label_words) if w is not None
        ]
        src = torch.tensor([pairs[i].source_ids for i, _ in copies], dtype=torch.long)
        tgt, _ = _pad([pairs[i].decoder_input for i, _ in copies])
        at = (
            torch.arange(len(copies)),
            torch.tensor([r for _, r in copies]),
            torch.tensor([_labels(pairs[i])[r] for i, r in copies]),
        )
        forward = _gold_log_prob(model, src, tgt, at)
        grads = models.embedding_gradients(model, forward, ("hook_embed",), steps=steps)
        g = grads["hook_embed"]
        for name, values in zip(names, (g.norm, g.times_input, g.integrated), strict=True):
            _scatter(out[name], pairs, copies, values)
    return {n: [x for x in v if x is not None] for n, v in out.items()}


def _gold_log_prob(
    model: HookedModel, src: Tensor, tgt: Tensor, at: tuple[Tensor, Tensor, Tensor]
) -> Callable[[], Tensor]:
    """The score the gradients explain: each copy's gold-token log-probability at its row."""

    def forward() -> Tensor:
        logp = torch.log_softmax(model(src, decoder_input=tgt).to(torch.float64), dim=-1)
        return logp[at]

    return forward


def _scatter(
    out: list[Tensor | None],
    pairs: Sequence[AlignedPair],
    copies: Sequence[tuple[int, int]],
    values: Float[Tensor, "copy src_pos"],
) -> None:
    """Per-copy source rows back into each pair's `[1, tgt word, src word]` word scores."""
    rows: dict[int, Tensor] = {}
    for k, (i, r) in enumerate(copies):
        if i not in rows:
            rows[i] = torch.zeros(
                len(pairs[i].decoder_input), len(pairs[i].source_ids), dtype=torch.float64
            )
        rows[i][r] = values[k]
    for i, token_scores in rows.items():
        out[i] = _words(pairs[i], token_scores)[None]


def value_zeroing_scores(
    model: HookedModel, pairs: Sequence[AlignedPair], n_layers: int
) -> list[WordScores]:
    """Value zeroing in each of the `n_layers` decoder layers' cross-attention
    (`models.value_zeroing_encoder_decoder`): the relative change of the layer's output at each
    row when source `j`'s values are zeroed in every head."""
    out = []
    for p in pairs:
        src = torch.tensor([p.source_ids], dtype=torch.long)
        tgt = torch.tensor([p.decoder_input], dtype=torch.long)
        effects = [
            models.value_zeroing_encoder_decoder(model, src, tgt, "decoder_cross", layer)["layer"]
            for layer in range(n_layers)
        ]
        out.append(torch.stack([_words(p, e) for e in effects]))
    return out


def occlusion_scores(
    model: HookedModel,
    pairs: Sequence[AlignedPair],
    alternatives: Sequence[Sequence[Sequence[int]]],
) -> list[WordScores]:
    """Occlusion (erasure), the causal reference: source word `w` of pair `b` is replaced in turn
    by each token of `alternatives[b][w]` (single-token words), and its score at a target row is
    the gold token's probability on the clean source minus its mean over the replacements (the
    gold target prefix teacher-forced throughout)."""
    out = []
    for b, p in enumerate(pairs):
        variants, owner = [list(p.source_ids)], []
        for s, w in enumerate(p.source_words):
            if w is None:
                continue
            for token in alternatives[b][w]:
                changed = list(p.source_ids)
                changed[s] = int(token)
                variants.append(changed)
                owner.append(s)
        if len(owner) + 1 != len(variants) or not owner:
            raise InputError(
                f"occlusion_scores: pair {b} has no replacement; expected some per word"
            )
        logp = teacher_forced_log_probs(model, variants, [p.decoder_input] * len(variants))
        labels = torch.tensor(_labels(p)).clamp(min=0)
        gold = torch.stack([lp.exp().gather(-1, labels[:, None])[:, 0] for lp in logp])
        drop = torch.zeros(len(p.decoder_input), len(p.source_ids), dtype=torch.float64)
        counts = torch.zeros(len(p.source_ids), dtype=torch.float64)
        for k, s in enumerate(owner):
            drop[:, s] += gold[0] - gold[k + 1]
            counts[s] += 1
        out.append(_words(p, drop / counts.clamp(min=1))[None])
    return out


# --- trivial baselines --------------------------------------------------------------------------


def diagonal_scores(pair: AgreementPair) -> WordScores:
    """The monotone baseline: target word `t` of `T` scores source word `s` of `S` by
    `-|(t + ½)/T − (s + ½)/S|` (the diagonal of the sentence pair)."""
    T, S = len(pair.target), len(pair.source)
    t = (torch.arange(T, dtype=torch.float64) + 0.5) / T
    s = (torch.arange(S, dtype=torch.float64) + 0.5) / S
    return -(t[:, None] - s[None, :]).abs()[None]


def random_scores(pair: AgreementPair, generator: torch.Generator) -> WordScores:
    """Uniform random scores (the chance baseline)."""
    return torch.rand(
        1, len(pair.target), len(pair.source), generator=generator, dtype=torch.float64
    )


def _translations(word: str) -> set[str]:
    """Every target form a source word translates to, in any agreement."""
    if word in DETERMINERS:
        return set(DETERMINERS[word])
    if word in ADJECTIVES:
        return set(ADJECTIVES[word])
    if word in VERBS:
        return set(VERBS[word])
    if word in PREPOSITIONS:
        return {PREPOSITIONS[word]}
    return {NOUNS[lex][0] + suffix for lex in NOUN_LEXEMES if word in lex for suffix in ("", "j")}


def dictionary_scores(pair: AgreementPair, *, nearest_noun: bool = False) -> WordScores:
    """The lexicon baseline: the source words whose translations include the target word score
    2 (ties broken by the diagonal), the rest follow in diagonal order. With `nearest_noun`, the
    source nouns come second, nearest to the matched word first: the best a dictionary plus a
    part-of-speech tagger and proximity can do for the agreement source."""
    scores = diagonal_scores(pair)[0] * 0.01
    nouns = [s for s, w in enumerate(pair.source) if any(w in lex for lex in NOUN_LEXEMES)]
    for t, word in enumerate(pair.target):
        matched = [s for s, w in enumerate(pair.source) if word in _translations(w)]
        scores[t, matched] += 2.0
        if nearest_noun and matched:
            for s in nouns:
                if s not in matched:
                    scores[t, s] += 1.0 - 0.01 * min(abs(s - m) for m in matched)
    return scores[None]


# --- scoring against the known answer ------------------------------------------------------------


def _rank_of(row: Float[Tensor, " src_word"], target: int) -> int:
    """0-based rank of `target` in `row`, highest first, ties counted against it: the number of
    other words scoring at least as high. A method that gives several words the same score (ALTI
    clips many to exactly 0) has not singled any of them out."""
    others = torch.ones_like(row, dtype=torch.bool)
    others[target] = False
    return int((row[others] >= row[target]).sum())


Counts = dict[str, tuple[int, int]]  # metric -> (hits, items) of one sentence
ARGMAX = "argmax = aligned"


def sentence_counts(scores: Float[Tensor, "tgt_word src_word"], pair: AgreementPair) -> Counts:
    """Hits and items of one sentence: `ARGMAX` (the argmax source word is the aligned one: AER
    is `1 −` its rate, one gold and one predicted link per target word, as
    `metrics.alignment_error_rate` of `metrics.argmax_alignment` gives), `aligned@k` (the aligned
    source word among the top k, every target word) and `agreement@k <kind>` (the agreement
    source among the top k, each agreeing kind, and `agreement@k` over the kinds whose agreement
    source is in the source only: determiners and verbs); ranks count ties against the word."""
    counts: dict[str, list[int]] = {}

    def add(key: str, hit: bool) -> None:
        c = counts.setdefault(key, [0, 0])
        c[0] += int(hit)
        c[1] += 1

    for t, (aligned, agree, kind) in enumerate(
        zip(pair.aligned, pair.agreement, pair.kinds, strict=True)
    ):
        add(ARGMAX, int(scores[t].argmax()) == aligned)  # the link `argmax_alignment` makes
        rank = _rank_of(scores[t], aligned)
        for k in (1, 2):
            add(f"aligned@{k}", rank < k)
        if agree is None:
            continue
        rank = _rank_of(scores[t], agree)
        for k in (1, 2):
            add(f"agreement@{k} {kind}", rank < k)
            if kind != ADJECTIVE:
                add(f"agreement@{k}", rank < k)
    return {k: (v[0], v[1]) for k, v in counts.items()}


def corpus_counts(
    scores: Sequence[WordScores], pairs: Sequence[AgreementPair]
) -> list[dict[str, Tensor]]:
    """Per layer of the scores: metric -> `[sentence, (hits, items)]` over the corpus."""
    out = []
    for layer in range(scores[0].shape[0]):
        per = [sentence_counts(s[layer], p) for s, p in zip(scores, pairs, strict=True)]
        keys = sorted({k for c in per for k in c})
        out.append(
            {k: torch.tensor([c.get(k, (0, 0)) for c in per], dtype=torch.long) for k in keys}
        )
    return out


@validates_arguments  # friendly errors before any shape check
def bootstrap_ratio(
    counts: Int[Tensor, "seed sentence 2"],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """The mean over seeds of `hits / items` (summed over sentences) and its percentile
    bootstrap interval, resampling sentences (the same sentences for every seed: the interval
    is over the evaluation data, the seeds are averaged)."""
    if counts.ndim != 3 or counts.shape[-1] != 2 or counts.shape[1] == 0:
        raise InputError(
            f"bootstrap_ratio: expected counts [seed, sentence, (hits, items)], got "
            f"{tuple(counts.shape)}. Fix: stack `corpus_counts` of each seed."
        )
    c = counts.to(torch.float64)
    point = float((c[..., 0].sum(1) / c[..., 1].sum(1).clamp(min=1)).mean())
    generator = torch.Generator().manual_seed(seed)
    n = c.shape[1]
    index = torch.randint(n, (n_resamples, n), generator=generator)
    picked = c[:, index].sum(2)  # [seed, resample, (hits, items)]
    values = (picked[..., 0] / picked[..., 1].clamp(min=1)).mean(0)
    tail = (1 - level) / 2
    return point, float(values.quantile(tail)), float(values.quantile(1 - tail))


def clipped_share(
    cross: Float[Tensor, "batch dec_layer tgt_pos src_pos"],
    links: Sequence[Sequence[tuple[int, int]]],
) -> list[float]:
    """Per decoder layer, the share of the token links `(decoder row, source position)` of each
    sequence whose ALTI cross contribution is exactly 0: clipped by the measure's `max(0, ·)`
    (spec §2.2; a real source token's contribution is otherwise positive). `cross` is an
    `AltiPlusResult`'s `cross_contributions` (its last column, the decoder residual, may be left
    on); `links[b]` lists sequence `b`'s links, e.g. each target word's predicting row with its
    gold (aligned) source token."""
    if len(links) != cross.shape[0]:
        raise InputError(
            f"clipped_share: {len(links)} link lists for {cross.shape[0]} sequences; expected one "
            "per sequence. Fix: pass the links of every sequence of the result."
        )
    rows = torch.tensor([r for ls in links for r, _ in ls], dtype=torch.long)
    cols = torch.tensor([s for ls in links for _, s in ls], dtype=torch.long)
    seqs = torch.tensor([b for b, ls in enumerate(links) for _ in ls], dtype=torch.long)
    if len(rows) == 0:
        raise InputError("clipped_share: no links at all; expected at least one. Fix: pass links.")
    values = cross[seqs, :, rows, cols]  # [link, dec_layer]
    return (values == 0).to(torch.float64).mean(0).tolist()


def token_links(pair: AlignedPair, word_links: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Word links `(target word, source word)` as token links `(predicting decoder row, source
    position)`: every row predicting a token of the target word with every source token of the
    source word."""
    return [
        (r, s)
        for t, w in word_links
        for r, tw in enumerate(pair.label_words)
        if tw == t
        for s, sw in enumerate(pair.source_words)
        if sw == w
    ]


# --- substitution: the known answer on the model ------------------------------------------------


def substitution_check(
    model: HookedModel,
    subs: Sequence[Substitution],
    encode: Callable[[AgreementPair], AlignedPair],
) -> list[dict[str, bool]]:
    """For each substitution, teacher-forced on the changed pair's gold target: does the model's
    argmax at `row` equal the changed pair's gold form (`follows`; for a flip, the form changed;
    for a control, it stayed)? And, with the *original* target prefix and the changed source
    (`follows_source_with_old_prefix`), does it still follow the source (for adjectives the
    gender is also in the prefix: this tells which one the model reads)?"""
    changed = [encode(s.changed) for s in subs]
    original = [encode(s.original) for s in subs]
    new = teacher_forced_log_probs(
        model, [c.source_ids for c in changed], [c.decoder_input for c in changed]
    )
    old = teacher_forced_log_probs(
        model, [c.source_ids for c in changed], [o.decoder_input for o in original]
    )
    out = []
    for s, c, lp_new, lp_old in zip(subs, changed, new, old, strict=True):
        row = c.label_words.index(s.row)  # the decoder row predicting target word `row`
        gold = _labels(c)[row]
        out.append(
            {
                "follows": int(lp_new[row].argmax()) == gold,
                "follows_source_with_old_prefix": int(lp_old[row].argmax()) == gold,
            }
        )
    return out


def _word_class(word: str) -> tuple[str, ...]:
    """The source words of `word`'s class (every noun form for a noun)."""
    for group in (DETERMINERS, ADJECTIVES, VERBS, PREPOSITIONS):
        if word in group:
            return tuple(group)
    return tuple(w for lex in NOUN_LEXEMES for w in lex)


def same_class_alternatives(pair: AgreementPair, k: int, rng: random.Random) -> list[list[str]]:
    """For occlusion: `k` other words of the same class for each source word (a determiner
    for a determiner, any noun form for a noun, ...; all of them for a smaller class), so that
    the occluded sentence stays in the training distribution (an `<unk>` the model never saw is
    off it)."""
    out = []
    for word in pair.source:
        others = [w for w in _word_class(word) if w != word]
        out.append(rng.sample(others, min(k, len(others))))
    return out
