"""The interactive HTML report run in a real headless Chromium: the page's script, URL state,
hover and click, error reporting, a screenshot.

The browser tests skip when `chromium` is not on PATH, unless ALTI_LENS_REQUIRE_BROWSER=1 (CI),
where they fail instead.
"""

import dataclasses
import html
import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from conftest import EVIL, assert_report_close, bridge, report_data

from alti_lens import alti
from alti_lens.report import build_report, write_report

TEXTS = ["the cat sat on the mat", "a big red dog"]


# ---------------------------------------------------------------- headless Chromium


def _browser() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("ALTI_LENS_REQUIRE_BROWSER") == "1":
            pytest.fail("ALTI_LENS_REQUIRE_BROWSER=1 but chromium is not on PATH")
        pytest.skip("chromium is not installed")
    return path


def _chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    command = [
        _browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--enable-logging=stderr", "--v=0", f"--user-data-dir={profile}",
        *args, url,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    # console messages and uncaught exceptions of the page
    console = [
        line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line
    ]  # fmt: skip
    assert console == [], console
    return done


def _dom(tmp_path: Path, page: Path, fragment: str = "") -> str:
    dom = _chromium(tmp_path, page.as_uri() + fragment, "--dump-dom").stdout
    assert 'data-ready="1"' in dom, dom[:2000]  # the script ran to the end
    assert ' data-errors="' not in dom  # and window.onerror saw nothing
    return dom


def _attrs(tag: str) -> dict[str, str]:
    return dict(re.findall(r'([\w-]+)="([^"]*)"', tag))


def _panel(dom: str, section: int) -> tuple[dict[str, str], list[float]]:
    """The row panel of one section: its attributes and the values of its coloured tokens."""
    part = dom[dom.index(f'id="s{section}"') :]
    start = part.index('<div class="panel"')
    tag = part[start : part.index(">", start)]
    body = part[start : part.index("</ol>", start)]
    values = [
        float(v) for v in re.findall(r'<span class="tok[^"]*"[^>]*data-value="([^"]*)"', body)
    ]
    return _attrs(tag), values


@pytest.fixture(scope="module")
def report(tmp_path_factory, decoder, translator, logit) -> Path:
    path = tmp_path_factory.mktemp("report") / "report.html"
    tokens = [*EVIL, "x"][: len(decoder.str_tokens[0])]
    evil = dataclasses.replace(decoder, str_tokens=[tokens, decoder.str_tokens[1]])
    return write_report(path, [("decoder", evil), ("translator", translator), ("logit", logit)])


def test_browser_runs_the_page_and_shows_the_default_row(tmp_path, report, decoder) -> None:
    dom = _dom(tmp_path, report)
    assert 'data-sections="3"' in dom
    n = int(decoder.attention_mask[0].sum())
    cells = [int(c) for c in re.findall(r'data-cells="(\d+)"', dom)]
    assert cells[0] == n * n
    attrs, values = _panel(dom, 0)
    assert (attrs["data-view"], attrs["data-row"], attrs["data-layer"]) == (
        "rollout",
        str(n - 1),
        "2",
    )
    assert_report_close(values, decoder.rollout[0, -1, n - 1, :n])
    # the hostile tokens are shown as text, not parsed as markup
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in dom and "&lt;s&gt;" in dom
    assert ">U+2028</span>" in dom  # an invisible token is named


def test_browser_selection_from_the_url(tmp_path, report, decoder, translator, logit) -> None:
    fragment = (
        "#s0-view=contributions&s0-layer=1&s0-row=3&s0-seq=1&s0-scale=row"
        "&s1-view=cross-attention&s1-row=1&s2-layer=2&s2-head=1"
    )
    dom = _dom(tmp_path, report, fragment)
    assert re.search(r'id="s0"[^>]*data-scale="row"', dom)
    attrs, values = _panel(dom, 0)
    assert (attrs["data-view"], attrs["data-row"], attrs["data-layer"]) == (
        "contributions",
        "3",
        "1",
    )
    n = int(decoder.attention_mask[1].sum())
    assert_report_close(values, decoder.contributions[1, 1, 3, :n])
    attrs, values = _panel(dom, 1)
    assert (attrs["data-view"], attrs["data-row"]) == ("cross-attention", "1")
    s = int(translator.source_attention_mask[0].sum())
    S = translator.source_tokens.shape[1]
    expected = translator.cross_contributions[0, -1, 1, [*range(s), S]]
    assert_report_close(values, expected)
    part = dom[dom.index('id="s2"') :]
    tag = part[part.index('<div class="panel"') :]
    assert _attrs(tag[: tag.index(">")])["data-head"] == "1"
    shown = [float(v) for v in re.findall(r'class="tok[^"]*"[^>]*data-value="([^"]*)"', tag)]
    assert_report_close(shown[:7], logit.head(2, 1)[0, :7], atol=1e-9)


# Moves the pointer over cell (2, 1) of the first heatmap, notes the tooltip, clicks, notes the
# selected row, then presses the down arrow.
POINTER = """<script>
(function () {
  var wrap = document.querySelector(".hm-wrap"), canvas = wrap.querySelector("canvas");
  var g = wrap.getAttribute("data-grid").split(",").map(Number);
  var box = canvas.getBoundingClientRect();
  var at = { clientX: box.left + g[0] + 1.5 * g[2], clientY: box.top + g[1] + 2.5 * g[2],
             bubbles: true };
  canvas.dispatchEvent(new MouseEvent("mousemove", at));
  document.body.setAttribute("data-tip", wrap.querySelector(".tip").textContent);
  canvas.dispatchEvent(new MouseEvent("click", at));
  var panel = document.querySelector(".panel");
  document.body.setAttribute("data-clicked", panel.getAttribute("data-row"));
  canvas.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowDown", bubbles: true }));
})();
</script>"""


def test_browser_hover_and_click(tmp_path, decoder) -> None:
    page = decoder.to_html(batch=0).replace("</body>", POINTER + "</body>")
    path = tmp_path / "pointer.html"
    path.write_text(page, encoding="utf-8")
    dom = _dom(tmp_path, path)
    tip = re.search(r'data-tip="([^"]*)"', dom)
    assert tip is not None
    value = float(decoder.rollout[0, -1, 2, 1])
    assert tip[1].splitlines() == [
        "query token 2: \u201ccat\u201d",
        "source token 1: \u201cthe\u201d",
        f"rollout, layer 2: {float(f'{value:.4g}'):g}",
    ]
    assert 'data-clicked="2"' in dom  # the click selected the row
    attrs, values = _panel(dom, 0)
    assert attrs["data-row"] == "3"  # and the down arrow the next one
    assert_report_close(values, decoder.rollout[0, -1, 3, :7])


def test_browser_reports_script_errors(tmp_path, decoder) -> None:
    """The error catcher works: a page whose script fails is noticed (so the checks above can
    fail)."""
    page = decoder.to_html().replace('"sections":[', '"sections":[{"kind":"matrix"},', 1)
    path = tmp_path / "broken.html"
    path.write_text(page, encoding="utf-8")
    with pytest.raises(AssertionError):
        _dom(tmp_path, path)
    done = subprocess.run(
        [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         f"--user-data-dir={tmp_path / 'p'}", path.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ' data-errors="' in done.stdout and 'data-ready="1"' not in done.stdout


def test_browser_screenshot_is_not_blank(tmp_path, report) -> None:
    png = tmp_path / "report.png"
    _chromium(tmp_path, report.as_uri(), f"--screenshot={png}", "--window-size=1280,1600")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000
    try:
        from PIL import Image
    except ImportError:  # the size check above stands in for the pixel check
        return
    image = Image.open(png).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 200  # text, heatmaps and bars, not a blank page
    oranges = sum(count for count, (r, g, b) in colours if r > 200 and 60 < g < 160 and b < 80)
    assert oranges > 500  # the heatmap's colour scale is drawn


# Writes the bounding boxes of the ALTI+ chart's bars, and of their orange (source) parts, into
# the body's attributes as JSON.
BARS = """<script>
(function () {
  function boxes(selector) {
    return Array.prototype.map.call(document.querySelectorAll(selector), function (e) {
      var r = e.getBoundingClientRect();
      return [r.top, r.bottom, r.height];
    });
  }
  document.body.setAttribute("data-stacks", JSON.stringify(boxes(".bars .stack")));
  document.body.setAttribute("data-sources", JSON.stringify(boxes(".bars .stack .src")));
})();
</script>"""

# Labels from one character to far more than a bar's label can show; whitespace-only, markup.
LABELS = ["a", "a-very-long-decoder-token-label", "\n", "mm", "<s>", "translation", " ", "x" * 40]


def test_browser_bars_share_one_baseline(tmp_path, translator) -> None:
    """Every stacked bar of the per-step chart ends on the same line whatever its label's length,
    so the source shares can be compared by eye, and each orange part is its share of the bar."""
    t = int(translator.target_attention_mask[1].sum())
    tokens = [*LABELS, *LABELS][:t]
    rows = [translator.target_str_tokens[0], tokens + translator.target_str_tokens[1][t:]]
    result = dataclasses.replace(translator, target_str_tokens=rows)
    page = result.to_html(batch=1).replace("</body>", BARS + "</body>")
    path = tmp_path / "bars.html"
    path.write_text(page, encoding="utf-8")
    dom = _dom(tmp_path, path)
    stacks = json.loads(html.unescape(re.search(r'data-stacks="([^"]*)"', dom)[1]))
    sources = json.loads(html.unescape(re.search(r'data-sources="([^"]*)"', dom)[1]))
    assert len(stacks) == len(sources) == t
    bottoms = [bottom for _, bottom, _ in stacks]
    assert max(bottoms) - min(bottoms) <= 1, bottoms
    tops = [top for top, _, _ in stacks]
    assert max(tops) - min(tops) <= 1, tops
    # the orange part sits on the bar's bottom and its height is the source share
    inner = stacks[0][2] - 2  # the 1px border on either side
    for (_, bottom, _), (_, src_bottom, height), v in zip(
        stacks, sources, translator.source_contribution[1, :t].tolist(), strict=True
    ):
        assert abs(src_bottom - (bottom - 1)) <= 1
        assert height == pytest.approx(inner * v, abs=1.0)


# Shows every view of each matrix section in turn, and one head of the logit section, noting the
# sentences that say what the numbers of the figures shown mean.
SENTENCES = """<script>
(function () {
  var seen = {};
  document.querySelectorAll("section.alti").forEach(function (sec) {
    var shown = [];
    var note = function () {
      shown.push(Array.prototype.map.call(sec.querySelectorAll(".explain"), function (p) {
        return p.textContent;
      }));
    };
    if (sec.getAttribute("data-kind") === "logit") {
      note();
      var wrap = sec.querySelector(".hm-wrap"), canvas = wrap.querySelector("canvas");
      var g = wrap.getAttribute("data-grid").split(",").map(Number);
      var box = canvas.getBoundingClientRect();
      canvas.dispatchEvent(new MouseEvent("click", { clientX: box.left + g[0] + 1.5 * g[2],
        clientY: box.top + g[1] + 0.5 * g[2], bubbles: true }));
      note();
    } else {
      sec.querySelector(".controls .seg").querySelectorAll("button").forEach(function (b) {
        b.click(); note();
      });
    }
    seen[sec.id] = shown;
  });
  document.body.setAttribute("data-sentences", JSON.stringify(seen));
})();
</script>"""


def test_every_figure_says_what_its_numbers_mean(tmp_path, decoder, translator, logit) -> None:
    model = bridge("gpt2-preLN")
    heads, last = alti(model, TEXTS, per_head=True), alti(model, TEXTS, rows="last")
    items = [("heads", heads), ("last", last), ("translator", translator), ("logit", logit)]
    page = build_report(items, batch=0)
    data = report_data(page)
    expected = {}
    for i, sec in enumerate(data["sections"]):
        seq = sec["sequences"][0]
        if sec["kind"] == "logit":
            e = seq["explain"]
            expected[f"s{i}"] = [
                [e["scores"], e["parts"], e["heads"]],
                [e["head"], e["parts"], e["heads"]],
            ]
            assert "logit units" in e["scores"] and "logit units" in e["heads"]
            # the grid's cells add up to the token scores (its sentence says so)
            total = sum(sum(row) for row in seq["heads"]["data"])
            assert total == pytest.approx(
                dict(seq["parts"])["input tokens (sum of scores)"], abs=1e-3
            )
            assert (
                "difference between \u201cthe\u201d (id 3) and \u201ca\u201d (id 4)" in e["scores"]
            )
        else:
            bars = [seq["bars"]["explain"]] if "bars" in seq else []
            expected[f"s{i}"] = [[v["explain"], *bars] for v in seq["views"]]
            for view in seq["views"]:  # shares: every matrix row sums to 1
                assert "sums to 1 (100%)" in view["explain"], view["name"]
    names = [[v["name"] for v in s["sequences"][0]["views"]] for s in data["sections"][:2]]
    assert names == [["rollout", "contributions", "heads"], ["rollout", "contributions"]]
    assert data["sections"][1]["sequences"][0]["views"][0]["explain"].startswith("The row shows")
    path = tmp_path / "sentences.html"
    path.write_text(page.replace("</body>", SENTENCES + "</body>"), encoding="utf-8")
    dom = _dom(tmp_path, path)
    shown = json.loads(html.unescape(re.search(r'data-sentences="([^"]*)"', dom)[1]))
    assert shown == expected
    sentences = {text for views in shown.values() for texts in views for text in texts}
    assert len(sentences) == 3 + 1 + 5 + 4  # one of its own for each kind of figure
    assert all(text.endswith(".") and len(text) > 80 for text in sentences)
    # titles say what is shown: the head grid holds logit amounts, not shares
    logit_part = dom[dom.index('id="s3"') :]
    titles = re.findall(r"<h3>([^<]*)", logit_part)
    assert "logit contribution of each head (logit units, summed over input tokens)" in titles
    assert not any("share" in title for title in titles), titles
    bars_title = (
        "source and target-prefix shares of each decoder step (after the last decoder layer)"
    )
    assert bars_title in re.findall(r"<h3>([^<]*)", dom[dom.index('id="s2"') :])


def test_large_reports_keep_the_last_layers(tmp_path, decoder) -> None:
    n0, n1 = (int(m.sum()) for m in decoder.attention_mask)
    per_layer = 2 * (n0 * n0 + n1 * n1)
    with pytest.warns(UserWarning, match="shows the last 2 of 3 layers"):
        page = decoder.to_html(max_values=2 * per_layer + 1)
    assert report_data(page)["sections"][0]["sequences"][0]["views"][0]["layers"] == [1, 2]
    if shutil.which("chromium") or os.environ.get("ALTI_LENS_REQUIRE_BROWSER") == "1":
        path = tmp_path / "two.html"
        path.write_text(page, encoding="utf-8")
        attrs, values = _panel(_dom(tmp_path, path, "#s0-layer=1&s0-row=2"), 0)
        assert attrs["data-layer"] == "1"  # the URL names the model's layer, not the slider's
        assert_report_close(values, decoder.rollout[0, 1, 2, :7])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = decoder.to_html(batch=1)
    assert len(report_data(one)["sections"][0]["sequences"]) == 1
    assert len(one) < 40_000
