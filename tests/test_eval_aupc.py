"""The AUPC task (alti_lens.evaluation.aupc, benchmarks/evaluation/task_aupc.py): the planted data's
known answer, the removal protocol on hand-made cases against naive forward passes, and the reduced
run with bounds on its headline numbers."""

import sys
from pathlib import Path

import pytest
import torch

from alti_lens.errors import InputError
from alti_lens.evaluation import aupc
from alti_lens.evaluation.runs import mean_pool
from tests.models import bridge_bert

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "evaluation"))


# --- data ----------------------------------------------------------------------------------------


def test_planted_sentences_known_answer_by_construction():
    sentences = aupc.planted_sentences(200, 3)
    assert sentences == aupc.planted_sentences(200, 3)  # deterministic
    labels = [s.label for s in sentences]
    assert 60 < sum(labels) < 140
    assert any(s.counter for s in sentences) and not all(s.counter for s in sentences)
    for s in sentences:
        own, other = (aupc.POSITIVE, aupc.NEGATIVE) if s.label else (aupc.NEGATIVE, aupc.POSITIVE)
        assert 1 <= len(s.evidence) <= 2 and len(s.counter) <= 1
        assert all(s.words[i] in own for i in s.evidence)
        assert all(s.words[i] in other for i in s.counter)
        # the majority decides; every other word is neutral noise
        assert len(s.evidence) > len(s.counter)
        planted = set(s.evidence) | set(s.counter)
        noise = [w for i, w in enumerate(s.words) if i not in planted]
        assert not set(noise) & (set(aupc.POSITIVE) | set(aupc.NEGATIVE) | {"good", "bad"})
        assert 10 <= len(noise) <= 29
    short = aupc.planted_sentences(50, 3, clauses=1)
    assert all(5 <= len(s.words) - len(s.evidence) - len(s.counter) <= 14 for s in short)


def test_planted_sentences_rejects_bad_arguments():
    with pytest.raises(InputError, match="at least one"):
        aupc.planted_sentences(0, 0)


def test_token_mask():
    assert aupc.token_mask([None, 0, 1, 1, 2, None], [1]).tolist() == [
        False, False, True, True, False, False,
    ]  # fmt: skip


# --- the removal protocol, pure ------------------------------------------------------------------


def test_bin_counts_follow_the_authors_ceil():
    assert aupc.bin_counts(20) == [1, 1, 2, 4, 10]
    assert aupc.bin_counts(3) == [1, 1, 1, 1, 2]
    assert aupc.bin_counts(100) == [1, 5, 10, 20, 50]


def test_ranking_and_removal_rows():
    scores = torch.tensor([9.0, 0.1, 0.5, 0.3, 0.5, 9.0])
    order = aupc.ranking(scores)
    assert order.tolist() == [2, 4, 3, 1]  # ends never ranked; ties keep position order
    tokens = torch.tensor([101, 11, 12, 13, 14, 102])
    rows = [r.tolist() for r in aupc.removal_rows(tokens, order, [1, 3])]
    assert rows == [
        [101, 11, 13, 14, 102],  # without the top 1
        [101, 11, 102],  # without the top 3
        [101, 12, 102],  # only the top 1 (word order kept)
        [101, 12, 13, 14, 102],  # only the top 3
        [101, 102],  # empty sentence
    ]


def test_removal_curves_aggregation():
    c = aupc.RemovalCurves(full=0.9, removed=[0.8, 0.85, 0.5, 0.6, 0.1],
                           kept=[0.3, 0.2, 0.7, 0.6, 0.9], empty=0.4)  # fmt: skip
    assert c.comprehensiveness() == pytest.approx((0.1 + 0.05 + 0.4 + 0.3 + 0.8) / 5)
    assert c.sufficiency() == pytest.approx((0.6 + 0.7 + 0.2 + 0.3 + 0.0) / 5)
    comp, suff = c.paper_aggregation()
    # running min 0.8 0.8 0.5 0.5 0.1; running max from the empty 0.4: 0.4 0.4 0.7 0.7 0.9
    assert comp == pytest.approx((0.1 + 0.1 + 0.4 + 0.4 + 0.8) / 6)
    assert suff == pytest.approx((0.5 + 0.5 + 0.2 + 0.2 + 0.0) / 6)


def test_evidence_recall():
    evidence = torch.tensor([False, True, False, True, False, False])
    assert aupc.evidence_recall(torch.tensor([0, 5, 1, 4, 2, 0.0]), evidence) == 1.0
    assert aupc.evidence_recall(torch.tensor([0, 5, 4, 1, 2, 0.0]), evidence) == 0.5
    with pytest.raises(InputError, match="no evidence"):
        aupc.evidence_recall(torch.zeros(6), torch.zeros(6, dtype=torch.bool))


# --- the experiment functions on a tiny encoder, against naive forward passes --------------------


@pytest.fixture(scope="module")
def tiny():
    model = bridge_bert(torch.float64)
    gen = torch.Generator().manual_seed(0)
    head = torch.nn.Linear(32, 2).double().requires_grad_(False)
    with torch.no_grad():
        head.weight.copy_(torch.randn(2, 32, generator=gen, dtype=torch.float64) * 3)
    tokens = torch.tensor([1, 5, 9, 7, 12, 4, 8, 2])
    return model, head, tokens


def _naive_probs(model, head, row):
    hidden = model.run_with_cache(row[None])[1]["blocks.1.hook_resid_post"]
    return head(hidden.mean(1)).softmax(-1)[0]


def test_probabilities_padded_batch_match_single_rows(tiny):
    model, head, tokens = tiny
    rows = [tokens, tokens[:4], tokens[[0, 3, 7]]]
    got = aupc.probabilities(model, head, rows, pad_id=0, batch_size=2)
    for row, p in zip(rows, got, strict=True):
        torch.testing.assert_close(p, _naive_probs(model, head, row), rtol=0, atol=1e-12)


def test_logit_forward_is_the_classifier_logit(tiny):
    model, head, tokens = tiny
    with torch.no_grad():
        logit = aupc._logit_forward(model, head, tokens[None], 1)()
    hidden = model.run_with_cache(tokens[None])[1]["blocks.1.hook_resid_post"]
    want = head(mean_pool(hidden, torch.ones(1, len(tokens), dtype=torch.long)))[:, 1]
    torch.testing.assert_close(logit, want, rtol=0, atol=1e-12)


def test_occlusion_and_removal_curves_against_naive_removal(tiny):
    model, head, tokens = tiny
    target = 1
    full = _naive_probs(model, head, tokens)[target]
    occ = aupc.occlusion_scores(model, head, tokens, target, pad_id=0)
    for j in range(1, len(tokens) - 1):
        without = torch.cat([tokens[:j], tokens[j + 1 :]])
        want = full - _naive_probs(model, head, without)[target]
        assert float(occ[j]) == pytest.approx(float(want), abs=1e-12)
    assert occ[0] == 0 and occ[-1] == 0
    # the known answer of a hand-made ranking: the two positions occlusion finds most important
    curves = aupc.removal_curves(model, head, tokens, target, {"occ": occ}, pad_id=0)["occ"]
    top = aupc.ranking(occ)
    keep = torch.ones(len(tokens), dtype=torch.bool)
    keep[top[:1]] = False  # 6 candidates: bins 1/5/10/20% remove 1 token, 50% removes 3
    assert curves.removed[0] == pytest.approx(float(_naive_probs(model, head, tokens[keep])[1]))
    only = tokens[torch.cat([torch.tensor([0]), top[:3].sort().values, torch.tensor([7])])]
    assert curves.kept[4] == pytest.approx(float(_naive_probs(model, head, only)[1]))
    assert curves.empty == pytest.approx(float(_naive_probs(model, head, tokens[[0, 7]])[1]))
    # occlusion's top token, removed, is the largest single-token drop there is
    assert curves.full - curves.removed[0] == pytest.approx(float(occ.max()))


def test_attributions_on_tiny_model(tiny):
    model, head, tokens = tiny
    evidence = torch.zeros(len(tokens), dtype=torch.bool)
    evidence[3] = True
    counter = torch.zeros(len(tokens), dtype=torch.bool)
    counter[5] = True
    got = aupc.attributions(model, head, tokens, 0, (evidence, counter), pad_id=0,
                            generator=torch.Generator().manual_seed(0), ig_steps=4)  # fmt: skip
    assert list(got) == list(aupc.METHODS)
    assert all(v.shape == (len(tokens),) for v in got.values())
    assert int(aupc.ranking(got[aupc.ORACLE])[0]) == 3
    assert int(aupc.ranking(got[aupc.ORACLE])[-1]) == 5
    # the measures' pooled shares: each row of the rollout sums to 1, so their mean does too
    for name in ("ALTI", "attention rollout", "norm", "attention"):
        assert float(got[name].sum()) == pytest.approx(1.0, abs=1e-9)


def test_evidence_enrichment(tiny):
    model, _, tokens = tiny
    everything = torch.ones(len(tokens), dtype=torch.bool)
    for name, value in aupc.evidence_enrichment(model, tokens, everything).items():
        assert value == pytest.approx(1.0), name  # all inner tokens: exactly their fair share
    one = torch.zeros(len(tokens), dtype=torch.bool)
    one[2] = True
    got = aupc.evidence_enrichment(model, tokens, one)
    share = aupc._measure_scores(model, tokens[None])["ALTI"]
    assert got["ALTI"] == pytest.approx(float(share[2] / share[1:-1].sum()) * 6)


# --- the reduced run -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reduced():
    import task_aupc

    return task_aupc.run("reduced", task_aupc.SEED)


def test_reduced_run(reduced):
    import task_aupc

    # measured (MiniLM, last layer + head fine-tuned 30 steps, 3 sentences, seed SEED): accuracy
    # 1.0; flips 0.67 (evidence removed) vs 0.0 (random); comprehensiveness ALTI 0.325, attention
    # 0.327, gradient norm 0.329, occlusion 0.331, oracle 0.300, random 0.083; sufficiency ALTI
    # 0.020, random 0.326; evidence recall ALTI 0.67, occlusion 0.83, random 0.17; ALTI evidence
    # enrichment 1.97 (attention 2.41, rollout 1.12, norm 1.31); 18.9 s CPU for the whole run
    m = reduced["models"][0]
    assert m["hf_logit_gap"] < 1e-10  # the bridge + head are the HF classifier
    assert m["bridge_accuracy"] > 0.9
    # the known answer is causal: removing the evidence flips far more predictions than random
    assert m["intervention"]["evidence"] > m["intervention"]["random"] + 0.3
    methods = reduced["methods"]
    assert set(methods) == set(aupc.METHODS)
    comp = {k: v["comprehensiveness"]["mean"] for k, v in methods.items()}
    suff = {k: v["sufficiency"]["mean"] for k, v in methods.items()}
    recall = {k: v["recall"]["mean"] for k, v in methods.items()}
    assert comp[aupc.ORACLE] > comp[aupc.RANDOM] + 0.1
    assert recall[aupc.OCCLUSION] >= 0.5
    # ALTI finds what the prediction needs: far above random on both scores and on the evidence
    assert comp["ALTI"] > comp[aupc.RANDOM] + 0.15
    assert suff["ALTI"] < suff[aupc.RANDOM] - 0.15
    assert recall["ALTI"] >= 0.5
    assert reduced["enrichment"]["seed 0"]["ALTI"] > 1.5  # the evidence is above its fair share
    lines = task_aupc.summary(reduced)
    assert 1 <= len(lines) <= 3
    text = task_aupc.section(reduced, {})
    assert "| ALTI |" in text and "### " in text and "\n## " not in text
