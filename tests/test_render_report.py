"""The interactive HTML report (`alti_lens.render.report`): content, escaping, size, errors.

Its run in a real headless Chromium: tests/test_render_report_browser.py.
"""

import dataclasses
import json
import re

import pytest
import torch
from conftest import EVIL, assert_report_close, report_data

from alti_lens.errors import InputError, InputIndexError, InputTypeError
from alti_lens.render.report.sections import rounded
from alti_lens.report import build_report, write_report


def test_rounded_keeps_four_significant_digits() -> None:
    values = torch.tensor([0.123456, 0.0, 1.0, 12345.678, -0.00098765, 3e-9, float("nan")])
    assert rounded(values) == [0.1235, 0, 1.0, 12350.0, -0.0009877, 3e-9, None]
    text = json.dumps(rounded(torch.rand(50, dtype=torch.float64)))
    assert max(len(v) for v in re.findall(r"[\d.e-]+", text)) <= 9  # no float noise


def test_page_is_self_contained(decoder, translator, logit) -> None:
    page = build_report([("decoder", decoder), ("translator", translator), logit])
    assert page.startswith("<!DOCTYPE html>")
    for external in ("http:", "https:", "src=", "<link", "@import", "url(", "//cdn"):
        assert external not in page
    assert page.count("<script") == 3  # error catcher, data, renderer: nothing fetched
    data = report_data(page)
    kinds = [(s["kind"], s["title"]) for s in data["sections"]]
    assert kinds == [
        ("matrix", "decoder"),
        ("matrix", "translator"),
        ("logit", "ALTI-Logit \u2014 external"),
    ]
    seq = data["sections"][0]["sequences"][1]
    view = seq["views"][0]
    n = int(decoder.attention_mask[1].sum())
    assert view["name"] == "rollout" and view["rows"] == decoder.str_tokens[1][:n]
    assert_report_close(view["data"][-1], decoder.rollout[1, -1, :n, :n])


def test_translator_section_lists_every_view(translator) -> None:
    data = report_data(translator.to_html())
    seq = data["sections"][0]["sequences"][1]
    names = [v["name"] for v in seq["views"]]
    assert names == [
        "extended rollout", "cross-attention", "decoder self-attention", "encoder rollout",
    ]  # fmt: skip
    s = int(translator.source_attention_mask[1].sum())
    t = int(translator.target_attention_mask[1].sum())
    ext, cross = seq["views"][0], seq["views"][1]
    assert ext["groups"] == [["source", 0, s], ["target prefix", s, s + t]]
    assert cross["cols"][-1] == "(residual)" and len(cross["cols"]) == s + 1
    S = translator.source_tokens.shape[1]
    assert_report_close(
        [row[-1] for row in cross["data"][-1]], translator.cross_contributions[1, -1, :t, S]
    )
    assert_report_close(seq["bars"]["values"], translator.source_contribution[1, :t])


def test_logit_section_adds_up(logit) -> None:
    sec = report_data(logit.to_html(title="why 'the'"))["sections"][0]
    assert sec["title"] == "why 'the'"
    seq = sec["sequences"][0]
    parts = dict(seq["parts"])
    assert parts["sum of the parts"] == pytest.approx(parts["model logit difference"], abs=1e-4)
    assert parts["input tokens (sum of scores)"] == pytest.approx(float(logit.scores[0].sum()))
    L, H = logit.head_scores.shape[1:3]
    assert len(seq["heads"]["data"]) == L and len(seq["heads"]["data"][0]) == H
    assert seq["position"] == int(logit.position[0])
    # the result has no vocabulary, but both tokens occur in the inputs
    assert seq["summary"].startswith("explains \u201cthe\u201d (id 3) minus \u201ca\u201d (id 4)")


def test_tokens_cannot_break_the_page(decoder) -> None:
    tokens = [*EVIL, "x"][: len(decoder.str_tokens[0])]
    evil = dataclasses.replace(decoder, str_tokens=[tokens, decoder.str_tokens[1]])
    page = build_report([("</script> & <b>title</b>", evil)], title="<title> & </script>")
    assert page.count("</script>") == 3 and "<s>" not in page and "<!--" not in page
    assert "&lt;title&gt; &amp; &lt;/script&gt;" in page
    data = report_data(page)
    assert data["sections"][0]["sequences"][0]["views"][0]["cols"] == tokens
    assert data["sections"][0]["title"] == "</script> & <b>title</b>"


def test_bad_items_say_what_is_expected(tmp_path, decoder) -> None:
    with pytest.raises(TypeError, match="got str"):
        build_report([("title", "not a result")])
    with pytest.raises(ValueError, match="at least one result"):
        build_report([])
    with pytest.raises(IndexError, match="batch=5 is out of range"):
        decoder.to_html(batch=5)
    path = write_report(tmp_path / "r.html", [decoder])
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert decoder.save_html(tmp_path / "new" / "one.html").stat().st_size > 10_000


def test_bad_items_are_alti_lens_errors_with_the_fix(decoder) -> None:
    with pytest.raises(InputTypeError, match=r"got str\. Fix: pass the result of alti\(\)"):
        build_report([("title", "not a result")])
    with pytest.raises(InputError, match=r"got an empty list\. Fix: pass results"):
        build_report([])
    with pytest.raises(InputIndexError, match=r"expected an index in 0\.\.1 .* Fix: pass batch="):
        decoder.to_html(batch=[0, -3])

    class Mine(type(decoder)):  # a user's subclass is still a result
        pass

    mine = Mine(**{f.name: getattr(decoder, f.name) for f in dataclasses.fields(decoder)})
    assert report_data(build_report([mine]))["sections"][0]["kind"] == "matrix"
    imposter = type("AltiResult", (), {})()  # the name alone does not make a result
    with pytest.raises(InputTypeError, match="got AltiResult"):
        build_report([imposter])


def test_the_first_import_path_still_works() -> None:
    import alti_lens
    import alti_lens.report as first
    from alti_lens.render import report

    for name in first.__all__:
        assert getattr(first, name) is getattr(report, name), name
    assert alti_lens.report is first and {"render", "report", "models"} <= set(dir(alti_lens))
