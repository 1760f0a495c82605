"""Terminal text (`alti_lens.render.text`): plain `token[value]` and ANSI-coloured tokens, colour
detection, control characters, ALTI+ and ALTI-Logit rows, results with one rollout row."""

import re

import pytest
import torch
from conftest import bridge, encdec

from alti_lens import InputError, alti, alti_logit, alti_plus
from alti_lens.render.text import printable, terminal_supports_colour

TEXTS = ["the cat sat on the mat", "a big red dog"]
ANSI = re.compile(r"\x1b\[([0-9;]*)m")


@pytest.fixture(scope="module")
def plain():
    return alti(bridge("gpt2-preLN", torch.float64), TEXTS)


def _g(value: torch.Tensor) -> float:
    return float(f"{float(value):.3g}")


def _plain_values(text: str) -> list[tuple[str, float, bool]]:
    return [
        (m[2], float(m[3]), m[1] == "*") for m in re.finditer(r"(\*?)(\S+)\[([-+.\de]+)\]", text)
    ]


def test_plain_text_lists_tokens_with_their_values(plain) -> None:
    text = plain.coloured_text(-1, layer=1, batch=1, colour=False)
    n = int(plain.attention_mask[1].sum())
    parsed = _plain_values(text)
    assert [t for t, _, _ in parsed] == plain.str_tokens[1][:n]
    row = plain.rollout[1, 1, n - 1, :n]
    assert [v for _, v, _ in parsed] == [_g(v) for v in row]
    assert [m for _, _, m in parsed] == [False] * (n - 1) + [True]  # the query token is marked
    own = _plain_values(plain.coloured_text(2, layer=0, rollout=False, colour=False))
    assert [v for _, v, _ in own] == [_g(v) for v in plain.contributions[0, 0, 2]]
    assert [m for _, _, m in own].index(True) == 2
    assert "\x1b" not in text


def test_ansi_text_shades_by_value(plain) -> None:
    text = plain.coloured_text(colour=True)
    codes = ANSI.findall(text)
    n = len(plain.str_tokens[0])
    backgrounds = [c for c in codes if c.startswith("48;2;")]
    assert len(backgrounds) == n and codes.count("0") == n  # one colour and one reset per token
    row = plain.rollout[0, -1, n - 1]
    darkest = backgrounds[int(row.argmax())]
    assert darkest.startswith("48;2;217;72;1;")  # the largest value takes the scale's end
    assert backgrounds[-1].endswith(";1;4")  # the query token is bold and underlined
    assert ANSI.sub("", text).split(" ") == plain.str_tokens[0]


def test_colour_auto_detection(monkeypatch) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert terminal_supports_colour(Tty()) and not terminal_supports_colour(object())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not terminal_supports_colour(Tty())
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert terminal_supports_colour(object())


def test_control_characters_cannot_reach_the_terminal(plain) -> None:
    import dataclasses

    evil = ["\x1b[2J", "a\nb", "tab\there", "ok", *plain.str_tokens[0][4:]]
    tricky = dataclasses.replace(plain, str_tokens=[evil, plain.str_tokens[1]])
    text = tricky.coloured_text(colour=True)
    assert "\x1b[2J" not in text and "\n" not in text and "\t" not in text
    assert "\\x1b[2J" in text and "a\\nb" in text and "tab\\there" in text
    assert printable("é✓ fine") == "é✓ fine"
    html = tricky.coloured_text(html=True)
    assert "<bos>" not in html and "&lt;bos&gt;" in plain.coloured_text(html=True)


def test_alti_plus_coloured_text_splits_source_and_target() -> None:
    plus = alti_plus(encdec("marian-postLN"), TEXTS, ["le chat", "le chien est"])
    text = plus.coloured_text(-1, batch=1, colour=False)
    source, target = text.split(" | ")
    s = int(plus.source_attention_mask[1].sum())
    t = int(plus.target_attention_mask[1].sum())
    assert [tok for tok, _, _ in _plain_values(source)] == plus.source_str_tokens[1][:s]
    parsed = _plain_values(target)
    assert [tok for tok, _, _ in parsed] == plus.target_str_tokens[1][:t]
    assert parsed[-1][2] and not any(m for _, _, m in _plain_values(source))
    S = plus.source_tokens.shape[1]
    row = plus.rollout[1, -1, t - 1]
    assert [v for _, v, _ in parsed] == [_g(v) for v in row[S : S + t]]
    html = plus.coloured_text(0, html=True)
    assert "<b>source</b>" in html and "<b>target prefix</b>" in html


def test_alti_logit_text_shades_scores_and_one_heads_share() -> None:
    logit = alti_logit(bridge("gpt2-preLN", torch.float64), TEXTS, "the")
    text = logit.coloured_text(batch=1, colour=False)
    n = int(logit.attention_mask[1].sum())
    parsed = _plain_values(text)
    assert [v for _, v, _ in parsed] == [_g(v) for v in logit.scores[1, :n]]
    assert [m for _, _, m in parsed].index(True) == int(logit.position[1])
    one = _plain_values(logit.coloured_text(layer=1, head=0, colour=False))
    assert [v for _, v, _ in one] == [_g(v) for v in logit.head(1, 0)[0, :7]]
    # signed scores: negative ones are shaded blue
    coloured = logit.coloured_text(colour=True)
    negative = [i for i, v in enumerate(logit.scores[0, :7].tolist()) if v < 0]
    backgrounds = [c for c in ANSI.findall(coloured) if c.startswith("48;2;")]
    for i in negative:
        r, _, b = (int(x) for x in backgrounds[i].split(";")[2:5])
        assert b >= r
    with pytest.raises(InputError, match="both layer and head"):
        logit.coloured_text(layer=1)


def test_coloured_text_of_a_last_row_result(plain) -> None:
    last = alti(bridge("gpt2-preLN", torch.float64), TEXTS, rows="last")
    assert _plain_values(last.coloured_text(colour=False)) == _plain_values(
        plain.coloured_text(colour=False)
    )
    with pytest.raises(InputError, match='rows="last"'):
        last.coloured_text(2)
    # the report shows the one rollout row per sequence
    import json

    page = last.to_html()
    start = page.index('id="alti-data">') + len('id="alti-data">')
    view = json.loads(page[start : page.index("</script>", start)])["sections"][0]
    rollout = view["sequences"][1]["views"][0]
    assert rollout["rows"] == ["dog"] and rollout["diag"] == 4 and len(rollout["data"][-1]) == 1
    pytest.importorskip("pandas", reason="pandas is an optional dependency")
    frame, full = last.to_dataframe(), plain.to_dataframe()
    assert len(frame) == len(full)
    computed = frame.rollout.notna()
    assert (frame.rollout[computed] - full.rollout[computed]).abs().max() < 1e-12
    assert computed.sum() == sum(last.n_layers * int(m.sum()) for m in last.attention_mask)
