/* alti_lens report: renders the JSON document in #alti-data. No dependencies, no network.
 * Token strings only ever reach the page through textContent, never as markup.
 * State can be set from the URL hash, e.g. #s0-view=contributions&s0-layer=1&s0-row=3 (layer: the
 * model's layer number)
 * (section 0: view, layer, query row; also -seq, -sub (head), -scale=row, and -layer with -head
 * for ALTI-Logit; -pos (a real token's index, negative from the last) and -threshold for a
 * FlowGraph). */
(function () {
  "use strict";

  // Colour scales (ColorBrewer "Oranges", and "RdBu" for signed values).
  var SEQ = [[255, 245, 235], [253, 208, 162], [253, 141, 60], [217, 72, 1], [127, 39, 4]];
  var NEG = [[33, 102, 172], [103, 169, 207], [209, 229, 240], [255, 255, 255]];
  var POS = [[255, 255, 255], [253, 219, 199], [239, 138, 98], [178, 24, 43]];

  function ramp(stops, t) {
    t = Math.max(0, Math.min(1, t));
    var x = t * (stops.length - 1);
    var i = Math.min(Math.floor(x), stops.length - 2);
    var f = x - i;
    return stops[i].map(function (a, k) { return Math.round(a + (stops[i + 1][k] - a) * f); });
  }
  function colour(v, peak, diverging) {
    if (!(peak > 0)) peak = 1;
    if (v === null || v === undefined || isNaN(v)) return [235, 235, 235];
    if (diverging) {
      var t = Math.max(-1, Math.min(1, v / peak));
      return t >= 0 ? ramp(POS, t) : ramp(NEG, 1 + t);
    }
    return ramp(SEQ, v / peak);
  }
  function rgb(c) { return "rgb(" + c[0] + "," + c[1] + "," + c[2] + ")"; }
  function isDark(c) { return (c[0] * 299 + c[1] * 587 + c[2] * 114) / 1000 < 140; }
  function fmt(v) {
    if (v === null || v === undefined) return "n/a";
    if (v === 0) return "0";
    var a = Math.abs(v);
    return a >= 1e-3 && a < 1e5 ? String(Number(v.toPrecision(4))) : v.toExponential(3);
  }
  // Whitespace made visible, so " cat" and "cat" and "\n" can be told apart.
  function show(tok) {
    var s = String(tok).replace(/\n/g, "\u21b5").replace(/\t/g, "\u21e5").replace(/\r/g, "\u240d");
    if (s === "") return "\u2205";
    if (s.trim() !== "") return s;
    // whitespace only: spaces as open boxes, other blanks by their code point
    return Array.from(s).map(function (ch) {
      return ch === " " ? "\u2423" : "U+" + ch.codePointAt(0).toString(16).toUpperCase().padStart(4, "0");
    }).join("");
  }
  function short(tok, n) {
    var s = show(tok);
    return s.length > n ? s.slice(0, n - 1) + "\u2026" : s;
  }
  function el(tag, attrs, kids) {
    var e = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "text") e.textContent = attrs[k];
        else if (k === "class") e.className = attrs[k];
        else e.setAttribute(k, attrs[k]);
      });
    }
    (kids || []).forEach(function (kid) { if (kid) e.appendChild(kid); });
    return e;
  }
  function peakOf(rows, diverging) {
    var p = 0;
    rows.forEach(function (row) {
      row.forEach(function (v) { var a = diverging ? Math.abs(v) : v; if (a > p) p = a; });
    });
    return p > 0 ? p : 1;
  }
  function hashParams() {
    var out = {};
    location.hash.replace(/^#/, "").split("&").forEach(function (kv) {
      if (!kv) return;
      var i = kv.indexOf("=");
      var k = decodeURIComponent(i < 0 ? kv : kv.slice(0, i));
      out[k] = i < 0 ? "" : decodeURIComponent(kv.slice(i + 1));
    });
    return out;
  }
  function intParam(value, n, fallback) {
    var i = parseInt(value, 10);
    if (isNaN(i)) return fallback;
    if (i < 0) i += n;
    return Math.max(0, Math.min(n - 1, i));
  }

  /* ---------- small widgets ---------- */

  function legend(parent) {
    var box = el("div", { class: "legend" });
    var lo = el("span", { class: "num" });
    var cv = el("canvas", { width: "180", height: "12" });
    var hi = el("span", { class: "num" });
    var note = el("span");
    box.appendChild(lo); box.appendChild(cv); box.appendChild(hi); box.appendChild(note);
    parent.appendChild(box);
    return function (peak, diverging, text, top) {
      var ctx = cv.getContext("2d");
      for (var x = 0; x < 180; x++) {
        var t = x / 179;
        ctx.fillStyle = rgb(diverging ? colour(2 * t - 1, 1, true) : colour(t, 1, false));
        ctx.fillRect(x, 0, 1, 12);
      }
      lo.textContent = diverging ? fmt(-peak) : "0";
      hi.textContent = top || fmt(peak);
      note.textContent = text || "";
    };
  }

  function segmented(parent, names, onPick) {
    var box = el("span", { class: "seg", role: "group" });
    var buttons = names.map(function (name, i) {
      var b = el("button", { type: "button", text: name });
      b.addEventListener("click", function () { onPick(i); });
      box.appendChild(b);
      return b;
    });
    parent.appendChild(box);
    return function (on) { buttons.forEach(function (b, i) { b.className = i === on ? "on" : ""; }); };
  }

  function slider(parent, label, onMove) {
    var wrap = el("label", { text: label + " " });
    var input = el("input", { type: "range", min: "0", max: "0", step: "1", value: "0" });
    var value = el("span", { class: "value num" });
    wrap.appendChild(input); wrap.appendChild(document.createTextNode(" ")); wrap.appendChild(value);
    input.addEventListener("input", function () { onMove(parseInt(input.value, 10)); });
    parent.appendChild(wrap);
    return {
      set: function (i, labels) {
        wrap.style.display = labels.length > 1 ? "" : "none";
        input.max = String(labels.length - 1);
        input.value = String(i);
        // indices are 0-based, as in TransformerLens (blocks.0 ...): show the range, not "i / n"
        value.textContent = String(labels[i]) + " (of " + String(labels[0]) + "\u2013" + String(labels[labels.length - 1]) + ")";
      },
    };
  }

  function select(parent, label, names, onPick) {
    var wrap = el("label", { text: label + " " });
    var s = el("select");
    names.forEach(function (name, i) { s.appendChild(el("option", { value: String(i), text: name })); });
    s.addEventListener("change", function () { onPick(parseInt(s.value, 10)); });
    wrap.appendChild(s);
    parent.appendChild(wrap);
    wrap.style.display = names.length > 1 ? "" : "none";
    return function (i) { s.value = String(i); };
  }

  // A row of values over tokens, shaded by value; `groups` insert labels (source / target).
  function tokenRow(parent, labels, values, opts) {
    var box = el("div", { class: "tokens" });
    var peak = peakOf([values], opts.diverging);
    var groups = opts.groups || [];
    labels.forEach(function (tok, j) {
      groups.forEach(function (g) { if (g[1] === j) box.appendChild(el("span", { class: "group", text: g[0] + ":" })); });
      var c = colour(values[j], peak, opts.diverging);
      var span = el("span", {
        class: "tok" + (j === opts.mark ? " mark" : ""),
        title: "position " + j + ": " + fmt(values[j]),
        "data-value": String(values[j]),
        "data-col": String(j),
      });
      span.textContent = show(tok);
      span.style.background = rgb(c);
      span.style.color = isDark(c) ? "#fff" : "#111";
      box.appendChild(span);
    });
    parent.appendChild(box);
    return box;
  }

  function topList(parent, labels, values, k, diverging) {
    // signed values: the largest in size, either sign
    var size = function (v) { return diverging ? Math.abs(v) : v; };
    var order = values.map(function (v, j) { return j; });
    order.sort(function (a, b) { return size(values[b]) - size(values[a]); });
    var peak = peakOf([values], true);
    var ol = el("ol", { class: "top" });
    order.slice(0, k).forEach(function (j) {
      var v = values[j];
      var bar = el("span", { class: "bar" + (v < 0 ? " neg" : diverging ? " pos" : "") });
      bar.style.width = Math.max(1, Math.round(70 * Math.abs(v) / peak)) + "px";
      ol.appendChild(el("li", { "data-col": String(j), "data-value": String(v) }, [
        bar, el("code", { text: show(labels[j]) }),
        el("span", { class: "num", text: " (" + j + ")  " + fmt(v) }),
      ]));
    });
    parent.appendChild(ol);
    return ol;
  }

  /* ---------- heatmap on a canvas: hover shows values, click selects a row ---------- */

  function Heatmap(parent, onClick) {
    var wrap = el("div", { class: "hm-wrap" });
    var canvas = el("canvas", { class: "hm", tabindex: "0", "aria-label": "heatmap; arrow keys move the selected row" });
    var hover = el("div", { class: "hm-hover" });
    var sel = el("div", { class: "hm-sel" });
    var tip = el("div", { class: "tip" });
    tip.style.display = "none";
    [canvas, hover, sel, tip].forEach(function (e) { wrap.appendChild(e); });
    parent.appendChild(wrap);
    var g = null; // geometry and data of the last drawing

    this.draw = function (m) {
      var R = m.rows.length, C = m.cols.length;
      var ctx = canvas.getContext("2d");
      // leave room beside the figure for the row panel when the page is wide enough
      var page = (document.getElementById("alti-root") || document.body).clientWidth - 44;
      var width = Math.max(320, Math.min(page > 1000 ? page - 400 : page, 1000));
      var cell = Math.floor((width - 140) / Math.max(C, 1));
      cell = Math.max(1, Math.min(34, cell, Math.floor(1400 / Math.max(R, 1))));
      var fs = Math.max(8, Math.min(12, cell - 2));
      var step = Math.max(1, Math.ceil((fs + 2) / cell));
      ctx.font = fs + "px system-ui, sans-serif";
      var widest = function (labels) {
        return labels.reduce(function (w, s) { return Math.max(w, ctx.measureText(short(s, 16)).width); }, 0);
      };
      var groupBand = m.groups && m.groups.length > 1 ? 18 : 0;
      var left = Math.ceil(widest(m.rows)) + 12;
      var top = Math.ceil(widest(m.cols)) + 12 + groupBand;
      var W = left + C * cell + 8, H = top + R * cell + 6;
      var dpr = window.devicePixelRatio || 1;
      canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
      canvas.style.width = W + "px"; canvas.style.height = H + "px";
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, W, H);
      var gap = cell >= 10 ? 1 : 0;
      var showValues = cell >= 30;
      for (var r = 0; r < R; r++) {
        for (var c = 0; c < C; c++) {
          var v = m.matrix[r][c];
          var col = colour(v, m.rowPeaks ? m.rowPeaks[r] : m.peak, m.diverging);
          ctx.fillStyle = rgb(col);
          ctx.fillRect(left + c * cell, top + r * cell, cell - gap, cell - gap);
          if (showValues && Math.abs(v) >= 0.005) {
            ctx.fillStyle = isDark(col) ? "#fff" : "#333";
            ctx.font = "10px system-ui, sans-serif";
            ctx.textAlign = "center"; ctx.textBaseline = "middle";
            var txt = Math.abs(v) < 1 ? v.toFixed(2).replace(/^(-?)0\./, "$1.") : v.toPrecision(2);
            ctx.fillText(txt, left + c * cell + (cell - gap) / 2, top + r * cell + (cell - gap) / 2);
          }
        }
      }
      ctx.font = fs + "px system-ui, sans-serif";
      ctx.fillStyle = "#1d2330";
      ctx.textAlign = "right"; ctx.textBaseline = "middle";
      for (r = 0; r < R; r += step) ctx.fillText(short(m.rows[r], 16), left - 6, top + r * cell + cell / 2);
      ctx.save();
      ctx.textAlign = "left";
      for (c = 0; c < C; c += step) {
        ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
        ctx.translate(left + c * cell + cell / 2, top - 6);
        ctx.rotate(-Math.PI / 2);
        ctx.fillText(short(m.cols[c], 16), 0, 0);
      }
      ctx.restore();
      ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
      if (groupBand) {
        m.groups.forEach(function (grp, i) {
          var x0 = left + grp[1] * cell, x1 = left + grp[2] * cell;
          ctx.fillStyle = "#5b6475"; ctx.textAlign = "center"; ctx.textBaseline = "top";
          ctx.font = "600 11px system-ui, sans-serif";
          ctx.fillText(grp[0], (x0 + x1) / 2, 2);
          ctx.fillRect(x0 + 2, 15, Math.max(1, x1 - x0 - 4), 1.5);
          if (i > 0) { ctx.fillStyle = "#1d2330"; ctx.fillRect(x0 - 1, top, 1.5, R * cell); }
        });
      }
      g = { m: m, left: left, top: top, cell: cell, R: R, C: C };
      wrap.setAttribute("data-cells", String(R * C));
      // the grid's geometry, for tests that simulate the pointer
      wrap.setAttribute("data-grid", [left, top, cell].join(","));
      parent.style.maxWidth = Math.max(W, 460) + "px";
      hover.style.display = "none";
      this.select(m.selected, m.selectedCol);
    };

    // outline a row, or with `c` one cell
    this.select = function (r, c) {
      if (!g || r === null || r === undefined || r < 0 || r >= g.R) { sel.style.display = "none"; return; }
      var one = c !== null && c !== undefined && c >= 0;
      sel.style.display = "block";
      sel.style.left = (g.left + (one ? c * g.cell : 0) - 2) + "px";
      sel.style.top = (g.top + r * g.cell - 2) + "px";
      sel.style.width = ((one ? 1 : g.C) * g.cell + 3) + "px"; sel.style.height = (g.cell + 3) + "px";
    };

    function cellAt(ev) {
      if (!g) return null;
      var box = canvas.getBoundingClientRect();
      var x = ev.clientX - box.left, y = ev.clientY - box.top;
      var r = Math.floor((y - g.top) / g.cell), c = Math.floor((x - g.left) / g.cell);
      if (r < 0 || r >= g.R) return null;
      return { r: r, c: x < g.left ? -1 : c >= g.C ? -1 : c, x: x, y: y };
    }
    canvas.addEventListener("mousemove", function (ev) {
      var at = cellAt(ev);
      if (!at || at.c < 0) { hover.style.display = "none"; tip.style.display = "none"; return; }
      var m = g.m;
      hover.style.display = "block";
      hover.style.left = (g.left + at.c * g.cell - 1) + "px"; hover.style.top = (g.top + at.r * g.cell - 1) + "px";
      hover.style.width = (g.cell + 1) + "px"; hover.style.height = (g.cell + 1) + "px";
      tip.textContent = m.rowTitle + " " + at.r + ": \u201c" + show(m.rows[at.r]) + "\u201d\n" +
        m.colTitle + " " + at.c + ": \u201c" + show(m.cols[at.c]) + "\u201d\n" +
        m.what + ": " + fmt(m.matrix[at.r][at.c]);
      tip.style.display = "block";
      var tx = at.x + 14, ty = at.y + 14;
      if (tx + tip.offsetWidth > wrap.clientWidth) tx = Math.max(0, at.x - tip.offsetWidth - 10);
      tip.style.left = tx + "px"; tip.style.top = ty + "px";
    });
    canvas.addEventListener("mouseleave", function () { hover.style.display = "none"; tip.style.display = "none"; });
    canvas.addEventListener("click", function (ev) {
      var at = cellAt(ev);
      if (at) onClick(at.r, at.c);
    });
    canvas.addEventListener("keydown", function (ev) {
      if (!g || (ev.key !== "ArrowUp" && ev.key !== "ArrowDown")) return;
      ev.preventDefault();
      var r = g.m.selected === null || g.m.selected === undefined ? 0 : g.m.selected;
      r = Math.max(0, Math.min(g.R - 1, r + (ev.key === "ArrowUp" ? -1 : 1)));
      onClick(r, g.m.selectedCol === null || g.m.selectedCol === undefined ? -1 : g.m.selectedCol);
    });
  }

  /* ---------- sections ---------- */

  function header(root, sec) {
    root.appendChild(el("h2", { text: sec.title }));
    var info = el("div", { class: "info" });
    (sec.info || []).forEach(function (kv) {
      info.appendChild(el("span", {}, [document.createTextNode(kv[0] + ": "), el("b", { text: String(kv[1]) })]));
    });
    root.appendChild(info);
  }

  function MatrixSection(root, sec, id, params) {
    header(root, sec);
    var p = function (k) { return params["s" + id + "-" + k]; };
    var st = { seq: intParam(p("seq"), sec.sequences.length, 0) };
    var seq = sec.sequences[st.seq];
    var names = seq.views.map(function (v) { return v.name; });
    var vi = names.indexOf(p("view"));
    st.view = vi >= 0 ? vi : intParam(p("view"), names.length, 0);
    st.layer = p("layer");
    st.sub = p("sub");
    st.row = p("row");
    st.scale = p("scale") === "row" ? 1 : 0;

    var controls = el("div", { class: "controls" });
    root.appendChild(controls);
    var setSeq = select(controls, "sequence", sec.sequences.map(function (s) { return s.label; }), function (i) {
      st.seq = i; st.row = undefined; update();
    });
    var viewBox = el("label", { text: "show " });
    controls.appendChild(viewBox);
    var setView = segmented(viewBox, names, function (i) { st.view = i; st.row = undefined; update(); });
    var layerSlider = slider(controls, "layer", function (i) { st.layer = i; update(); });
    var scaleBox = el("label", { text: "colour scale " });
    controls.appendChild(scaleBox);
    var setScale = segmented(scaleBox, ["matrix", "each row"], function (i) { st.scale = i; update(); });
    var subSlider = slider(controls, "head", function (i) { st.sub = i; update(); });

    var layout = el("div", { class: "layout" });
    root.appendChild(layout);
    var figure = el("div", { class: "figure" });
    var title = el("h3");
    figure.appendChild(title);
    var explain = el("p", { class: "explain" });
    figure.appendChild(explain);
    layout.appendChild(figure);
    var heat = new Heatmap(figure, function (r) { st.row = r; update(); });
    var setLegend = legend(figure);
    var caption = el("div", { class: "caption" });
    figure.appendChild(caption);
    var panel = el("div", { class: "panel" });
    layout.appendChild(panel);
    var barsBox = el("div");
    root.appendChild(barsBox);

    function update() {
      seq = sec.sequences[st.seq];
      var view = seq.views[Math.min(st.view, seq.views.length - 1)];
      setSeq(st.seq);
      setView(st.view);
      if (typeof st.layer === "string") {  // from the URL: a model layer number
        var at = view.layers.indexOf(parseInt(st.layer, 10));
        if (at >= 0) st.layer = at;
      }
      st.layer = intParam(st.layer, view.layers.length, view.layers.length - 1);
      layerSlider.set(st.layer, view.layers);
      var M = view.data[st.layer];
      if (view.sub) {
        st.sub = intParam(st.sub, view.sub.length, 0);
        subSlider.set(st.sub, view.sub);
        M = M[st.sub];
      } else {
        subSlider.set(0, [0]);
      }
      st.row = intParam(st.row, view.rows.length, view.rows.length - 1);
      var what = (view.sub ? "head " + view.sub[st.sub] + ", " : view.name + ", ") + "layer " + view.layers[st.layer];
      title.textContent = what;
      explain.textContent = view.explain || "";
      var peak = peakOf(M, !!view.diverging);
      setScale(st.scale);
      var rowPeaks = st.scale ? M.map(function (row) { return peakOf([row], !!view.diverging); }) : null;
      heat.draw({
        matrix: M, rows: view.rows, cols: view.cols, groups: view.groups, peak: peak, rowPeaks: rowPeaks,
        diverging: !!view.diverging, rowTitle: view.rowTitle, colTitle: view.colTitle,
        what: what, selected: st.row,
      });
      var missing = M.some(function (row) { return row.some(function (v) { return v === null; }); });
      var grey = missing ? " \u00b7 grey: not computed" : "";
      if (st.scale) setLegend(1, !!view.diverging, "colour: 0 to each row\u2019s largest value" + grey, "row max");
      else setLegend(peak, !!view.diverging, "colour: 0 to the largest value shown" + grey);
      caption.textContent = "rows: " + view.rowTitle + " \u00b7 columns: " + view.colTitle +
        (view.note ? " \u00b7 " + view.note : "") + " \u00b7 click a row to inspect it";

      panel.textContent = "";
      panel.setAttribute("data-row", String(st.row));
      panel.setAttribute("data-layer", String(view.layers[st.layer]));
      panel.setAttribute("data-view", view.name);
      panel.appendChild(el("h3", {
        text: view.rowTitle + " " + st.row + ": \u201c" + show(view.rows[st.row]) + "\u201d",
      }));
      panel.appendChild(el("div", { class: "caption", text: what + " (shaded by this row\u2019s largest value)" }));
      var mark = view.diag === null || view.diag === undefined ? -1 : view.diag + st.row;
      tokenRow(panel, view.cols, M[st.row], { groups: view.groups, mark: mark, diverging: !!view.diverging });
      panel.appendChild(el("h3", { text: "largest contributions" }));
      topList(panel, view.cols, M[st.row], 5, !!view.diverging);

      root.setAttribute("data-view", view.name);
      root.setAttribute("data-layer", String(view.layers[st.layer]));
      root.setAttribute("data-row", String(st.row));
      root.setAttribute("data-scale", st.scale ? "row" : "matrix");
      drawBars(view);
    }

    function drawBars(view) {
      barsBox.textContent = "";
      if (!seq.bars) return;
      var b = seq.bars;
      barsBox.appendChild(el("h3", { text: b.title }));
      if (b.explain) barsBox.appendChild(el("p", { class: "explain", text: b.explain }));
      var key = el("div", { class: "key" });
      key.appendChild(el("span", {}, [el("i", { style: "background: var(--source)" }), document.createTextNode("source")]));
      key.appendChild(el("span", {}, [el("i", { style: "background: var(--target)" }), document.createTextNode("target prefix")]));
      barsBox.appendChild(key);
      var box = el("div", { class: "bars" });
      var rowsAreSteps = view.rowsAreSteps;
      b.labels.forEach(function (tok, t) {
        var v = b.values[t];
        var stack = el("div", { class: "stack" });
        var src = el("div", { class: "src" }); src.style.height = (100 * v) + "%";
        var tgt = el("div", { class: "tgt" }); tgt.style.height = (100 * (1 - v)) + "%";
        stack.appendChild(src); stack.appendChild(tgt);
        var col = el("div", {
          class: "col" + (rowsAreSteps && t === st.row ? " on" : ""),
          title: "step " + t + " \u201c" + show(tok) + "\u201d: source " + fmt(v) + ", target prefix " + fmt(1 - v),
          "data-value": String(v),
        }, [stack, el("span", { class: "lab", text: short(tok, 12) })]);
        col.addEventListener("click", function () {
          if (!rowsAreSteps) st.view = 0;
          st.row = t; update();
        });
        box.appendChild(col);
      });
      barsBox.appendChild(box);
      barsBox.appendChild(el("div", { class: "caption", text: b.note }));
    }

    update();
  }

  function LogitSection(root, sec, id, params) {
    header(root, sec);
    var p = function (k) { return params["s" + id + "-" + k]; };
    var st = { seq: intParam(p("seq"), sec.sequences.length, 0), layer: null, head: null };
    var controls = el("div", { class: "controls" });
    root.appendChild(controls);
    var setSeq = select(controls, "sequence", sec.sequences.map(function (s) { return s.label; }), function (i) {
      st.seq = i; st.layer = st.head = null; update();
    });
    var summary = el("span");
    controls.appendChild(summary);
    var layout = el("div", { class: "layout" });
    root.appendChild(layout);
    var left = el("div", { class: "panel" });
    var right = el("div", { class: "figure" });
    layout.appendChild(left); layout.appendChild(right);
    var heatTitle = el("h3", { text: "logit contribution of each head (logit units, summed over input tokens)" });
    right.appendChild(heatTitle);
    var headsExplain = el("p", { class: "explain" });
    right.appendChild(headsExplain);
    var heat = new Heatmap(right, function (r, c) {
      if (c < 0 || !sec.sequences[st.seq].headTokens) return;
      st.layer = r; st.head = c; update();
    });
    var setLegend = legend(right);
    right.appendChild(el("div", { class: "caption", text: "click a head to colour the tokens by its contribution alone" }));

    if (p("layer") !== undefined && p("head") !== undefined && sec.sequences[st.seq].headTokens) {
      var s0 = sec.sequences[st.seq];
      st.layer = intParam(p("layer"), s0.heads.rows.length, 0);
      st.head = intParam(p("head"), s0.heads.cols.length, 0);
    }

    function update() {
      var s = sec.sequences[st.seq];
      setSeq(st.seq);
      summary.textContent = s.summary;
      left.textContent = "";
      var one = st.layer !== null && st.head !== null;
      var values = one ? s.headTokens[st.layer][st.head] : s.scores;
      var what = one ? "logit contribution through layer " + st.layer + ", head " + st.head + " (logit units)"
        : "ALTI-Logit score per input token (logit units)";
      var h = el("h3", { text: what });
      if (one) {
        var back = el("button", { type: "button", class: "link", text: "all heads" });
        back.addEventListener("click", function () { st.layer = st.head = null; update(); });
        h.appendChild(back);
      }
      left.appendChild(h);
      var ex = s.explain || {};
      left.appendChild(el("p", { class: "explain", text: (one ? ex.head : ex.scores) || "" }));
      left.setAttribute("data-layer", one ? String(st.layer) : "all");
      left.setAttribute("data-head", one ? String(st.head) : "all");
      tokenRow(left, s.tokens, values, { mark: s.position, diverging: true });
      var lg = legend(left);
      lg(peakOf([values], true), true, "red raises the logit, blue lowers it; outlined: explained position");
      left.appendChild(el("h3", { text: "largest scores (either sign)" }));
      topList(left, s.tokens, values, 5, true);
      left.appendChild(el("h3", { text: "the logit, part by part (logit units)" }));
      left.appendChild(el("p", { class: "explain", text: ex.parts || "" }));
      var table = el("table", { class: "parts" });
      s.parts.forEach(function (kv, i) {
        table.appendChild(el("tr", { class: i === s.parts.length - 1 ? "total" : "" }, [
          el("td", { text: kv[0] }), el("td", { class: "num", text: fmt(kv[1]) }),
        ]));
      });
      left.appendChild(table);
      var peak = peakOf(s.heads.data, true);
      heat.draw({
        matrix: s.heads.data, rows: s.heads.rows, cols: s.heads.cols, groups: null, peak: peak,
        diverging: true, rowTitle: "layer", colTitle: "head", what: "logit contribution",
        selected: one ? st.layer : null, selectedCol: one ? st.head : null,
      });
      setLegend(peak, true, "logit units: red raises the logit, blue lowers it");
      headsExplain.textContent = ex.heads || "";
      root.setAttribute("data-layer", one ? String(st.layer) : "all");
    }
    update();
  }

  /*FLOW*/

  function main() {
    var data = JSON.parse(document.getElementById("alti-data").textContent);
    var params = hashParams();
    var main = document.getElementById("alti-root");
    var drawn = 0;
    data.sections.forEach(function (sec, i) {
      var root = el("section", { class: "alti", id: "s" + i, "data-kind": sec.kind });
      main.appendChild(root);
      if (sec.kind === "logit") LogitSection(root, sec, i, params);
      else if (sec.kind === "flow") FlowSection(root, sec, i, params);
      else MatrixSection(root, sec, i, params);
      drawn += 1;
    });
    document.body.setAttribute("data-sections", String(drawn));
    document.body.setAttribute("data-ready", "1");
  }

  main();
})();
