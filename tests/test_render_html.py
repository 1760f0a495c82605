"""HTML views (`alti_lens.render.html`): coloured tokens as escaped spans, the notebook view."""

import re

import pytest
import torch
from conftest import bridge, encdec

from alti_lens import alti, alti_logit, alti_plus

TEXTS = ["the cat sat on the mat", "a big red dog"]


@pytest.fixture(scope="module")
def plain():
    return alti(bridge("gpt2-preLN", torch.float64), TEXTS)


def test_html_text_marks_the_query_and_escapes(plain) -> None:
    html = plain.coloured_text(-2, html=True)
    spans = re.findall(r'<span title="([^"]*)" style="([^"]*)">([^<]*)</span>', html)
    assert [s[2] for s in spans] == ["&lt;bos&gt;", "the", "cat", "sat", "on", "the", "mat"]
    assert [("outline" in s[1]) for s in spans].index(True) == 5
    values = [float(s[0]) for s in spans]
    torch.testing.assert_close(
        torch.tensor(values, dtype=torch.float64), plain.rollout[0, -1, 5], rtol=1e-3, atol=1e-12
    )


def test_notebook_views(plain) -> None:
    html = plain._repr_html_()
    assert "AltiResult(batch=2" in html and "&lt;bos&gt;" in html
    logit = alti_logit(bridge("gpt2-preLN", torch.float64), TEXTS, "the")
    assert "ALTI-Logit" in logit._repr_html_()
    plus = alti_plus(encdec("bart-postLN"), TEXTS, ["le chat", "le chien est"])
    assert "source contribution" in plus._repr_html_()
