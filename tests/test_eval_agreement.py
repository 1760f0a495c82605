"""The agreement translator (issue 16, deliverable 1): the data's known answer by construction, the
scoring functions on hand-made cases, and the reduced run on the shipped checkpoint with bounds on
its headline numbers (the substitution check there confirms the known answer on the model)."""

import random
import sys
from pathlib import Path

import pytest
import torch

from alti_lens.evaluation import agreement as A
from alti_lens.evaluation.alignment import AlignedPair

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "evaluation"

# --- the data -----------------------------------------------------------------------------------


def test_known_answer_by_construction() -> None:
    pairs = A.agreement_pairs(300, 3)
    for p in pairs:
        assert len(p.target) == len(p.aligned) == len(p.agreement) == len(p.kinds)
        nouns = A.noun_positions(p.sentence)
        for t, word in enumerate(p.target):
            # the aligned source word translates to the target word (in some agreement)
            assert word in A._translations(p.source[p.aligned[t]])
            kind, agree = p.kinds[t], p.agreement[t]
            if kind in A.AGREEMENT_KINDS:
                assert agree is not None and agree != p.aligned[t]
                assert agree in nouns.values()  # always a noun, never the aligned word
            else:
                assert agree is None
            if kind == A.VERB:
                assert agree == nouns["subject"]
                assert p.aligned[t] == len(p.source) - 1 and t == len(p.target) - 1  # verb-final
        # the source determiners, adjectives and verbs are invariant: the aligned word alone
        # cannot tell the form (both forms of every word occur with the same source word)
    forms: dict[str, set[str]] = {}
    for p in pairs:
        for t, kind in enumerate(p.kinds):
            if kind in A.AGREEMENT_KINDS:
                forms.setdefault(p.source[p.aligned[t]], set()).add(p.target[t])
    assert forms and all(len(f) == 2 for f in forms.values())


def test_substitutions_flip_the_form_and_controls_keep_it() -> None:
    pairs = A.agreement_pairs(200, 4)
    subs = A.substitutions(pairs, seed=0)
    assert len(subs) == 2 * sum(k in A.AGREEMENT_KINDS for p in pairs for k in p.kinds)
    for s in subs:
        before, after = s.original.target[s.row], s.changed.target[s.row]
        assert (before != after) == s.flips
        assert s.changed.kinds == s.original.kinds  # same structure: the row is the same word
        if s.flips and s.original.kinds[s.row] in (A.DETERMINER, A.VERB):
            # the change is invisible in the target prefix: only the source can tell
            assert s.same_prefix
        if s.original.kinds[s.row] == A.VERB and not s.flips:
            # the other nouns' number: only those nouns' target forms change, never the verb
            pairs = zip(s.original.target, s.changed.target, strict=True)
            changed = [t for t, (a, b) in enumerate(pairs) if a != b]
            assert all(s.original.kinds[t] == A.NOUN for t in changed)


def test_same_class_alternatives_stay_in_class() -> None:
    pair = A.agreement_pairs(1, 5)[0]
    alternatives = A.same_class_alternatives(pair, 4, random.Random(0))
    for word, others in zip(pair.source, alternatives, strict=True):
        assert word not in others and others
        assert all(A._word_class(o) == A._word_class(word) for o in others)


# --- scoring on hand-made cases ---------------------------------------------------------------


def _pair() -> A.AgreementPair:
    # "the dog the cats saw" -> "lo hundo la gatoj vidas" (the object noun marks number)
    sentence = A.Sentence(
        subject=A.NounPhrase("the", (), A.NOUN_LEXEMES.index(("dog", "dogs")), False),
        pp=None,
        verb="saw",
        object=A.NounPhrase("the", (), A.NOUN_LEXEMES.index(("cat", "cats")), True),
    )
    return A.realize(sentence)


def test_hand_made_pair() -> None:
    p = _pair()
    assert p.source == ["the", "dog", "the", "cats", "saw"]
    assert p.target == ["lo", "hundo", "la", "gatoj", "vidas"]
    assert p.aligned == [0, 1, 2, 3, 4]
    assert p.agreement == [1, None, 3, None, 1]


def test_sentence_counts_hand_computed() -> None:
    p = _pair()
    f64 = {"dtype": torch.float64}
    scores = torch.zeros(5, 5, **f64)
    scores[0, [0, 1]] = torch.tensor([0.9, 0.5], **f64)  # det: aligned first, its noun second
    scores[1, [1, 4]] = torch.tensor([0.4, 0.6], **f64)  # noun: aligned second
    scores[2, [2, 1]] = torch.tensor([0.9, 0.5], **f64)  # det: the other NP's noun second
    scores[3, 3] = 1.0
    scores[4, [1, 4]] = torch.tensor([0.9, 0.1], **f64)  # verb: subject first, aligned second
    c = A.sentence_counts(scores, p)
    assert c["aligned@1"] == (3, 5) and c["aligned@2"] == (5, 5) and c[A.ARGMAX] == (3, 5)
    assert c["agreement@1"] == (1, 3) and c["agreement@2"] == (2, 3)
    assert c["agreement@2 determiner"] == (1, 2) and c["agreement@1 verb"] == (1, 1)
    # ties count against the word: four zeros are all ranked last
    assert A._rank_of(torch.zeros(4), 0) == 3 and A._rank_of(torch.zeros(4), 3) == 3
    assert A._rank_of(torch.tensor([0.5, 0.2, 0.5]), 2) == 1


def test_trivial_baselines() -> None:
    p = _pair()
    dictionary = A.dictionary_scores(p)[0]
    # "lo" and "la" both match either "the": the diagonal picks the right one here
    assert dictionary.argmax(1).tolist() == [0, 1, 2, 3, 4]
    assert A.sentence_counts(dictionary, p)["aligned@1"] == (5, 5)
    noun = A.dictionary_scores(p, nearest_noun=True)[0]
    # the verb: "saw", then the nearest noun: the object (the attractor), not the subject
    assert A._rank_of(noun[4], 4) == 0 and A._rank_of(noun[4], 3) == 1
    assert A._rank_of(noun[4], 1) == 2
    assert A.diagonal_scores(p).shape == (1, 5, 5)


def test_bootstrap_ratio() -> None:
    # two seeds, three sentences: seed 0 has 3/6, seed 1 has 6/6
    counts = torch.tensor([[[1, 2], [1, 2], [1, 2]], [[2, 2], [2, 2], [2, 2]]])
    mean, low, high = A.bootstrap_ratio(counts, n_resamples=200)
    assert (
        mean == pytest.approx(0.75) and low == pytest.approx(0.75) and high == pytest.approx(0.75)
    )
    varied = torch.tensor([[[0, 2], [2, 2], [1, 2], [2, 2]]])
    mean, low, high = A.bootstrap_ratio(varied, n_resamples=500)
    assert mean == pytest.approx(5 / 8) and low < mean < high
    with pytest.raises(ValueError, match="seed, sentence"):
        A.bootstrap_ratio(torch.zeros(3, 2))


def test_clipped_share_and_token_links() -> None:
    cross = torch.ones(2, 2, 4, 3, dtype=torch.float64)  # [batch, layer, tgt, src + 1]
    cross[0, 0, 1, 0] = 0.0  # clipped in layer 0 only
    cross[1, :, 2, 1] = 0.0  # clipped in both layers
    links = [[(1, 0), (2, 1)], [(2, 1), (3, 0)]]
    assert A.clipped_share(cross, links) == [pytest.approx(0.5), pytest.approx(0.25)]
    with pytest.raises(ValueError, match="one per sequence"):
        A.clipped_share(cross, links[:1])
    pair = AlignedPair(
        source_ids=[0, 5, 6], source_words=[None, 0, 1], decoder_input=[2, 0, 7, 8],
        label_words=[None, 0, 1, None], gold={(0, 1), (1, 0)},
    )  # fmt: skip
    assert A.token_links(pair, [(0, 1), (1, 0)]) == [(1, 2), (2, 1)]


# --- the reduced run on the shipped checkpoint ----------------------------------------------------


@pytest.fixture(scope="module")
def reduced() -> dict:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    import task_agreement

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = task_agreement.run("reduced", 7)
    finally:
        torch.set_num_threads(threads)
    return results


def test_reduced_run_substitution_confirms_the_known_answer(reduced: dict) -> None:
    sub = reduced["per_seed"][0]["substitution"]
    # measured on the shipped checkpoint (training seed 1), 8 sentences: the determiners' and the
    # verbs' forms follow their agreement source 19/19 and 8/8; changing other words keeps the
    # determiners 19/19 and the verbs 7/8 (one attraction error: the object's number)
    for kind in (A.DETERMINER, A.VERB):
        assert sub[kind]["agreement source changed"] >= 0.9, sub
        assert sub[kind]["other words changed"] >= 0.75, sub
    # adjectives read their gender from the target prefix, not the source (measured 0/19)
    assert sub[A.ADJECTIVE]["follows source, old target prefix"] <= 0.3, sub


def test_reduced_run_headline(reduced: dict) -> None:
    import task_agreement

    h = task_agreement.headline(reduced)
    # measured (reduced, evaluation seed 7, 58 target words, 26 determiners + verbs): AER
    # ALTI+ 0.103, ALTI cross 0.086, attention 0.103; agreement@2 occlusion 1.000, random 0.308
    assert h["aer_alti_plus"] <= 0.25, h
    assert h["aer_alti_cross"] <= 0.25, h
    assert h["agreement2_occlusion"] >= 0.8, h
    assert h["agreement2_random"] <= 0.6, h
    # the decoder's first layer fetches the noun's gender by cross-attention: ALTI's layer-0
    # cross contributions have the agreement source of 17/18 determiners in their top 2
    layer0 = task_agreement.metric(reduced, "ALTI cross C_ca^l", "agreement@2 determiner", 0)
    assert layer0 is not None and layer0["mean"] >= 0.75, layer0
    text = task_agreement.section(reduced, {})
    assert "### Is encoder mixing needed" in text and "| ALTI+ (rollout R^l) |" in text
    assert task_agreement.summary(reduced)
