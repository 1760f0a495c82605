"""`alti_logit`: the logit identity, a model whose answer is known by construction, batching and
positions, targets and errors (spec §5). The float64 brute-force comparison is in
test_logit_reference.py."""

import pytest
import torch
from conftest import between_runs, bridge, hook_count
from models import previous_token_model

from alti_lens import InputError, UnsupportedModelError, alti, alti_logit

DECODERS = [
    "gpt2-preLN", "opt-preLN", "llama-RMS-rotary-GQA", "neox-parallel", "gptj-parallel",
    "gemma2-sandwich", "native-attn-only",
]  # fmt: skip
TEXTS = ["the cat sat on the mat and it", "a big red dog ran to"]


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_logit_identity(name: str, dtype: torch.dtype) -> None:
    model = bridge(name, dtype)
    result = alti_logit(model, TEXTS, "the")
    total = result.scores.sum(-1) + sum(result.components.values())
    # HF RMSNorms compute in float32 even in float64 models: their identity holds to ~1e-7
    atol = (
        1e-5
        if dtype == torch.float32 or name in ("llama-RMS-rotary-GQA", "gemma2-sandwich")
        else 1e-12
    )
    expected = result.metadata["pre_soft_cap_logit"]
    if expected is None:
        expected = result.logit
    torch.testing.assert_close(total, expected, rtol=0, atol=atol)
    # the model's own logit at each sequence's last real token
    with torch.no_grad():
        logits = model(result.tokens, attention_mask=result.attention_mask)
    the = model.tokenizer.convert_tokens_to_ids("the")
    for b in range(2):
        assert int(result.position[b]) == int(result.attention_mask[b].sum()) - 1
        own = logits[b, int(result.position[b]), the]
        torch.testing.assert_close(result.logit[b], own.to(result.logit.dtype), rtol=0, atol=atol)
    # heads add up to the scores; padded positions score exactly 0
    torch.testing.assert_close(result.head_scores.sum(dim=(1, 2)), result.scores)
    assert (result.scores[~result.attention_mask.bool()] == 0).all()
    assert set(result.components) == {
        "embedding", "attention_biases", "mlps", "final_norm_bias", "unembedding_bias",
    }  # fmt: skip


def test_known_answer_previous_token_head() -> None:
    """Layer 0 copies the previous token; layer 1 writes nothing: the logit of the previous token
    comes from position t − 1 alone, and through head 0 of layer 0."""
    model = previous_token_model()
    tokens = torch.tensor([[3, 1, 4, 1, 5, 2, 6, 0], [2, 7, 1, 0, 0, 0, 0, 0]])
    mask = torch.tensor([[1] * 8, [1, 1, 1, 0, 0, 0, 0, 0]])
    result = alti_logit(model, tokens, [6, 7], attention_mask=mask)
    assert result.scores[0].argmax() == 6 and result.scores[1].argmax() == 1
    torch.testing.assert_close(result.scores[0, 6], result.logit[0], rtol=0, atol=1e-12)
    assert result.logit[0] > 0.99 and result.logit[1] > 0.99
    assert result.head_scores[:, 1].abs().max() == 0  # layer 1 writes nothing
    for key, value in result.components.items():
        assert value.abs().max() <= 1e-12, key
    # contrastive: against a token that occurs elsewhere in the input, only t − 1 pushes
    contrast = alti_logit(model, tokens[:1], 6, foil=4)
    assert contrast.scores[0].argmax() == 6 and contrast.scores[0, 2] <= 1e-12


def test_foil_is_the_difference_of_two_targets() -> None:
    model = bridge("gpt2-preLN", torch.float64)
    a = alti_logit(model, TEXTS, "the")
    b = alti_logit(model, TEXTS, "a")
    both = alti_logit(model, TEXTS, "the", foil="a")
    torch.testing.assert_close(both.scores, a.scores - b.scores, rtol=0, atol=1e-12)
    torch.testing.assert_close(both.logit, a.logit - b.logit, rtol=0, atol=1e-12)
    assert both.foil is not None and both.foil.tolist() == [4, 4]


def test_padded_batch_equals_single_runs() -> None:
    model = bridge("llama-RMS-rotary-GQA", torch.float64)
    batch = alti_logit(model, TEXTS, "the", foil="cat")
    for b, text in enumerate(TEXTS):
        one = alti_logit(model, text, "the", foil="cat")
        n = one.tokens.shape[1]
        # Llama's softmax and RMSNorms run in float32 in Hugging Face: so do the scores' digits
        assert batch.metadata["model_precision"] == "float32"
        atol = between_runs(batch, one) * max(1.0, float(one.logit.abs().max()))
        torch.testing.assert_close(batch.scores[b, :n], one.scores[0], rtol=0, atol=atol)
        torch.testing.assert_close(batch.logit[b], one.logit[0], rtol=0, atol=atol)


def test_positions_and_targets() -> None:
    model = bridge("gpt2-preLN", torch.float64)
    tokens = alti(model, TEXTS[0]).tokens
    at3 = alti_logit(model, tokens, 5, position=3)
    assert int(at3.position[0]) == 3 and (at3.scores[0, 4:] == 0).all()  # causal: nothing later
    back = alti_logit(model, tokens, 5, position=-6)
    assert int(back.position[0]) == tokens.shape[1] - 6
    by_id = alti_logit(model, TEXTS, torch.tensor([3, 4]))
    assert by_id.target.tolist() == [3, 4]


def test_alti_result_is_included() -> None:
    model = bridge("neox-parallel", torch.float64)
    result = alti_logit(model, TEXTS, "the")
    plain = alti(model, TEXTS)
    torch.testing.assert_close(result.alti.rollout, plain.rollout, rtol=0, atol=1e-12)
    # a genuine alti() result: the same metadata, fields and types
    assert type(result.alti) is type(plain) and result.alti.metadata == plain.metadata
    torch.testing.assert_close(result.alti.contributions, plain.contributions, rtol=0, atol=1e-12)
    assert result.alti.rows == "all" and result.alti.rollout_rows is None


def test_no_hooks_left_behind() -> None:
    model = bridge("gemma2-sandwich")
    before = hook_count(model)
    alti_logit(model, TEXTS, "the")
    with pytest.raises(InputError):
        alti_logit(model, TEXTS, "the cat")
    assert hook_count(model) == before


@pytest.mark.parametrize(
    ("target", "kwargs", "match"),
    [
        ("the cat", {}, r"target 'the cat' is 2 tokens \['the', 'cat'\]; expected exactly one"),
        (999, {}, r"target ids \[999, 999\] are outside the vocabulary \[0, 63\]"),
        ([1, 2, 3], {}, r"target has 3 entries for 2 sequences"),
        (2.5, {}, r"target must be a token id or a one-token string"),
        ("the", {"foil": "big red"}, r"foil 'big red' is 2 tokens"),
        ("the", {"position": 40}, r"position 40 is padding or beyond the end"),
        ("the", {"position": 8}, r"position 8 is padding or beyond the end in some sequence"),
        ("the", {"position": -40}, r"position -40 counts back past the start"),
        ("the", {"position": "last"}, r"position must be an int"),
    ],
)
def test_bad_arguments(target, kwargs, match: str) -> None:
    with pytest.raises(InputError, match=match):
        alti_logit(bridge("gpt2-preLN"), TEXTS, target, **kwargs)


def test_encoders_are_refused() -> None:
    with pytest.raises(UnsupportedModelError, match=r"decoder-only model.*got an encoder"):
        alti_logit(bridge("bert-postLN"), TEXTS, "the")
