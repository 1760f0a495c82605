"""Deterministic data for the two built-in demo models (pure Python; no model libraries).

- Induction: `induction_sequences(n, seed)` gives word sequences `A + A` (a random run of distinct
  words, then the same run again). A model that has learned induction predicts every word of the
  second copy after its first one; the first copy is unpredictable (chance is 1 / len(vocabulary)).
- Toy translation: `translation_pairs(n, seed)` gives `TranslationPair`s of an English-like source
  language (determiner, adjectives before the noun, subject-verb-object, optional prepositional
  phrase) and an invented target language (nouns before their adjectives in reverse order, the verb
  last), with the gold word alignment of every pair. Each source word has a fixed translation of one
  or two target words (`LEXICON`), so the alignment is exact, not estimated.

Both generators use `random.Random(seed)`: the same seed gives the same data on every platform.
The demo models were trained on seed 0; evaluate on any other seed.
"""

import random
from dataclasses import dataclass

from alti_lens.errors import InputError


def _unique(words: tuple[str, ...]) -> tuple[str, ...]:
    """The words in first-seen order, each once."""
    return tuple(dict.fromkeys(words))


# Induction vocabulary: common English words, each a single whitespace-free lowercase token.
_COMMON_WORDS = """
    time year people way day man thing woman life child world school state family student group
    country problem hand part place case week company system program question work government
    number night point home water room mother area money story fact month lot right study book eye
    job word business issue side kind head house service friend father power hour game line end
    member law car city name president team minute idea kid body information back parent face
    others level office door health person art war history party result change morning reason
    research girl guy moment air teacher force education foot boy age policy music market sense
    nation plan college interest death experience effect class control care field development role
    effort rate heart drug show leader light voice wife police mind price report decision son view
    relationship town road arm difference value building action model season society tax director
    position player record paper space ground form event official matter center couple site project
    activity star table need court oil situation cost industry figure street image phone data
    picture practice piece land product doctor wall patient worker news test movie north love
    support technology step baby computer type attention film tree source organization hair window
    evidence population site truth garden river dog cat bird horse fish apple bread milk sugar salt
    stone glass wood iron gold silver king queen ship train plane bridge island mountain forest
    desert ocean lake rain snow wind cloud sun moon summer winter spring autumn morning evening red
    blue green black white yellow brown small big old young new long short happy sad fast slow
    warm cold hot dark bright quiet loud clean dirty soft hard sweet bitter rich poor strong weak
    run walk talk sing dance read write draw cook eat drink sleep swim fly climb jump open close
    build break carry push pull throw catch hold give take find lose buy sell send bring teach learn
"""
INDUCTION_WORDS: tuple[str, ...] = _unique(tuple(_COMMON_WORDS.split()))


def induction_sequences(
    n: int, seed: int, *, min_len: int = 5, max_len: int = 15, max_prefix: int = 0
) -> list[list[str]]:
    """`n` sequences `P + A + A`: `A` is `k` words (`min_len <= k <= max_len`), `P` a random
    prefix of 0 to `max_prefix` words; all words of `P + A` are distinct.

    With the default `max_prefix=0` a sequence is `A + A`, `k = len(words) // 2`; in general
    `repeat_length(words)` gives `k`. Feed a sequence as text (`" ".join(words)`): the model's
    tokenizer makes one token per word and prepends BOS, so word `w` is at token position `w + 1`.
    Induction predicts every word of the second copy after its first one (the last `k - 1`
    words). The demo model was trained with `max_prefix=20` (so the position of the first copy
    varies and only a content-based mechanism can find it), at most 51 tokens with BOS.
    """
    if not 1 <= min_len <= max_len or max_prefix < 0 or max_len + max_prefix > len(INDUCTION_WORDS):
        raise InputError(
            f"expected 1 <= min_len <= max_len, max_prefix >= 0 and max_len + max_prefix <= "
            f"{len(INDUCTION_WORDS)} (the vocabulary), got min_len={min_len}, max_len={max_len}, "
            f"max_prefix={max_prefix}. Fix: shorten the sequences or the prefix: every word of a "
            "sequence is distinct."
        )
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        k, m = rng.randint(min_len, max_len), rng.randint(0, max_prefix)
        words = rng.sample(INDUCTION_WORDS, m + k)
        out.append(words + words[m:])
    return out


def repeat_length(words: list[str]) -> int:
    """The length `k` of the repeated run that ends a sequence (`words[-2k:-k] == words[-k:]`),
    the largest such `k`; 0 if the sequence does not end with a repeat."""
    for k in range(len(words) // 2, 0, -1):
        if words[-2 * k : -k] == words[-k:]:
            return k
    return 0


# Toy translation lexicon: source word -> its target word(s). Target words are invented and share
# no form with the source words. A few verbs translate to two target words (1-to-2 alignments).
DETERMINERS = {
    "the": ("lo",), "a": ("un",), "this": ("ce",), "that": ("ka",), "every": ("oni",),
    "my": ("mi",), "your": ("tu",), "his": ("su",),
}  # fmt: skip
ADJECTIVES = {
    "big": ("grando",), "small": ("peti",), "red": ("roza",), "blue": ("bleva",),
    "green": ("verda",), "old": ("vecha",), "young": ("jova",), "happy": ("feli",),
    "sad": ("trista",), "fast": ("rapa",), "slow": ("lenta",), "tall": ("alta",),
    "short": ("kurta",), "good": ("bona",), "bad": ("mala",), "new": ("nova",),
    "black": ("negra",), "white": ("blanka",), "hungry": ("fama",), "quiet": ("kalma",),
}  # fmt: skip
NOUNS = {
    "dog": ("hundo",), "cat": ("gato",), "bird": ("ptako",), "man": ("viro",),
    "woman": ("dama",), "child": ("kido",), "teacher": ("magistro",), "farmer": ("farmo",),
    "king": ("rego",), "queen": ("regina",), "horse": ("kavalo",), "fish": ("piso",),
    "mouse": ("muso",), "girl": ("knabina",), "boy": ("knabo",), "doctor": ("medico",),
    "friend": ("amiko",), "baker": ("pankisto",), "wolf": ("lupo",), "fox": ("vulpo",),
    "lion": ("leono",), "student": ("studento",), "sailor": ("maristo",), "cook": ("kuiro",),
}  # fmt: skip
VERBS = {
    "sees": ("vidas",), "likes": ("amas",), "follows": ("sekvas",), "helps": ("helpas",),
    "finds": ("trovas",), "calls": ("vokas",), "knows": ("konas",), "watches": ("rigardas",),
    "feeds": ("nutras",), "meets": ("renkontas",), "chases": ("casas",), "hears": ("audas",),
    "visits": ("iras", "vizi"), "teaches": ("faras", "lerni"), "wakes": ("faras", "veki"),
    "forgets": ("ne", "memoras"),
}  # fmt: skip
PREPOSITIONS = {"with": ("kun",), "near": ("apud",), "behind": ("malantau",), "under": ("sub",)}
LEXICON: dict[str, tuple[str, ...]] = {
    **DETERMINERS, **ADJECTIVES, **NOUNS, **VERBS, **PREPOSITIONS
}  # fmt: skip
SOURCE_WORDS: tuple[str, ...] = tuple(LEXICON)
TARGET_WORDS: tuple[str, ...] = _unique(tuple(t for ts in LEXICON.values() for t in ts))


@dataclass(frozen=True)
class TranslationPair:
    """One toy sentence pair with its gold word alignment.

    `alignment` lists `(target_index, source_index)` pairs, one per target word (a target word
    aligns to exactly one source word; a source word may have two target words). Indices are word
    positions, which are also token positions: the demo tokenizer makes one token per word and
    appends EOS (source) / the decoder start token is prepended by `alti_plus` (target).
    """

    source: list[str]
    target: list[str]
    alignment: list[tuple[int, int]]


def _noun_phrase(rng: random.Random, start: int) -> tuple[list[str], list[int]]:
    """A source noun phrase `DET ADJ* NOUN` and the source indices in target order
    `DET NOUN ADJ*` (adjectives mirrored, as in 'the old red cat' -> 'lo gato roza vecha')."""
    n_adj = rng.choices((0, 1, 2), weights=(5, 4, 2))[0]
    words = [rng.choice(tuple(DETERMINERS))]
    words += rng.sample(tuple(ADJECTIVES), n_adj)
    words.append(rng.choice(tuple(NOUNS)))
    idx = list(range(start, start + len(words)))
    order = [idx[0], idx[-1], *reversed(idx[1:-1])]
    return words, order


def translation_pairs(n: int, seed: int) -> list[TranslationPair]:
    """`n` toy sentence pairs with their gold alignments.

    Source: `SUBJ VERB OBJ [PREP NP]`, each NP `DET ADJ{0,2} NOUN`; target: `SUBJ' OBJ' [PREP' NP']
    VERB'` with each NP' `DET' NOUN' ADJ'` (adjectives in reverse order); every word replaced by its
    `LEXICON` translation. Source length 5-14 words, target length 5-15.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        subj, subj_order = _noun_phrase(rng, 0)
        verb_pos = len(subj)
        verb = rng.choice(tuple(VERBS))
        obj, obj_order = _noun_phrase(rng, verb_pos + 1)
        source = [*subj, verb, *obj]
        order = subj_order + obj_order
        if rng.random() < 0.4:
            source.append(rng.choice(tuple(PREPOSITIONS)))
            order.append(len(source) - 1)
            np_words, np_order = _noun_phrase(rng, len(source))
            source += np_words
            order += np_order
        order.append(verb_pos)
        target: list[str] = []
        alignment: list[tuple[int, int]] = []
        for s in order:
            for word in LEXICON[source[s]]:
                alignment.append((len(target), s))
                target.append(word)
        out.append(TranslationPair(source, target, alignment))
    return out
