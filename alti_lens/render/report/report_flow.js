/* alti_lens report: the FlowGraph section, inserted into report.js (at its FLOW marker, inside
 * its closure) only in pages that show one. */
  /* ---------- information-flow routes (FlowGraph): the route drawn as SVG ---------- */

  var KINDS = { "attention head": "#3182bd", residual: "#8c8c8c", mlp: "#e6550d", neuron: "#756bb1" };
  var SINK = "#c51b8a";

  // One sequence's edges, indexed by layer and query position (built once per sequence).
  function flowIndex(seq) {
    if (seq.index) return seq.index;
    seq.index = seq.layers.map(function (layer) {
      var att = seq.tokens.map(function () { return []; });
      for (var a = 0; a < layer.att.length; a += 4) att[layer.att[a]].push([layer.att[a + 1], layer.att[a + 2], layer.att[a + 3]]);
      var neu = seq.tokens.map(function () { return []; });
      var n = layer.neu || [];
      for (var b = 0; b < n.length; b += 3) neu[n[b]].push([n[b + 1], n[b + 2]]);
      return { att: att, neu: neu, res: layer.res, mlp: layer.mlp, mlpres: layer.mlpres };
    });
    return seq.index;
  }

  function depthOf(stage, layer) { return 2 * layer + (stage === "resid_mid" ? 1 : stage === "resid_post" ? 2 : 0); }

  // The route as FlowGraph.routes computes it: from the sink, every incoming edge whose weight is
  // at least `t`, following its source down. Positions are indices of the real tokens; node ids
  // use the padded positions, as in Python ("resid_pre.3.5").
  function flowRoute(sec, seq, sink, t) {
    var L = sec.nLayers, index = flowIndex(seq);
    var nodes = {}, edges = [];
    function node(stage, layer, q) {
      var id = stage + "." + layer + "." + seq.positions[q];
      if (!nodes[id]) nodes[id] = { id: id, stage: stage, layer: layer, q: q, depth: depthOf(stage, layer) };
      return nodes[id];
    }
    function after(layer, q) { return layer === L - 1 ? node("resid_post", layer, q) : node("resid_pre", layer + 1, q); }
    function add(source, target, key, attrs) { attrs.source = source; attrs.target = target; attrs.key = key; edges.push(attrs); }
    function ok(w) { return w !== null && w !== undefined && w >= t; }
    function mlpEdge(layer, q, source, target) {
      var w = index[layer].mlp[q];
      if (!ok(w)) return;
      add(source, target, "mlp", { kind: "mlp", layer: layer, weight: w });
      index[layer].neu[q].forEach(function (kw) {
        if (ok(kw[1])) add(source, target, "L" + layer + "N" + kw[0], { kind: "neuron", layer: layer, neuron: kw[0], weight: kw[1], mlpWeight: w });
      });
    }
    function attention(layer, q, target, withMlp) {
      var source = node("resid_pre", layer, q);
      index[layer].att[q].forEach(function (hkw) {
        if (ok(hkw[2])) add(node("resid_pre", layer, hkw[1]), target, "L" + layer + "H" + hkw[0], { kind: "attention head", layer: layer, head: hkw[0], weight: hkw[2] });
      });
      if (ok(index[layer].res[q])) add(source, target, "residual", { kind: "residual", layer: layer, weight: index[layer].res[q] });
      if (withMlp) mlpEdge(layer, q, source, target);
    }
    function incoming(n) {
      if (n.stage === "resid_mid") { attention(n.layer, n.q, n, false); return; }
      var layer = n.stage === "resid_post" ? n.layer : n.layer - 1;
      if (layer < 0) return;  // the embeddings
      var step = sec.steps[layer];
      if (step === "attention+mlp") {
        var source = node("resid_mid", layer, n.q);
        mlpEdge(layer, n.q, source, n);
        if (ok(index[layer].mlpres[n.q])) add(source, n, "residual", { kind: "residual", layer: layer, weight: index[layer].mlpres[n.q] });
      } else {
        attention(layer, n.q, n, step === "parallel");
      }
    }
    var top = after(L - 1, sink);
    var frontier = [top], seen = {};
    seen[top.id] = true;
    while (frontier.length) {
      var before = edges.length;
      incoming(frontier.pop());
      for (var e = before; e < edges.length; e++) {
        var s = edges[e].source;
        if (!seen[s.id]) { seen[s.id] = true; frontier.push(s); }
      }
    }
    var used = {};
    used[top.id] = top;
    edges.forEach(function (e) { used[e.source.id] = e.source; used[e.target.id] = e.target; });
    return { sink: top, nodes: Object.keys(used).map(function (k) { return used[k]; }), edges: edges };
  }

  // Sideways bulge of each edge, in columns, as alti_lens/render/flow.py draws it: the MLP to the
  // right of the residual, its neurons fanned to the left, several heads between two states fanned
  // out, a head's edge to its own position bent left.
  function bulges(route) {
    var groups = {};
    route.edges.forEach(function (e) {
      if (e.kind === "mlp") e.bulge = 0.32;
      else if (e.kind === "residual") e.bulge = 0;
      else {
        var g = (e.kind === "neuron" ? "n:" : "h:") + e.source.id + ">" + e.target.id;
        (groups[g] = groups[g] || []).push(e);
      }
    });
    Object.keys(groups).forEach(function (g) {
      var list = groups[g], k = list.length;
      list.forEach(function (e, i) {
        if (e.kind === "neuron") e.bulge = -0.14 - 0.28 * (i + 1) / (k + 1);
        else e.bulge = (e.source.q === e.target.q ? -0.22 : 0) + 0.08 * (i - (k - 1) / 2);
      });
    });
  }

  function rowName(sec, depth) {
    var L = sec.nLayers;
    if (depth === 0) return "embeddings";
    var layer = Math.floor((depth - 1) / 2), step = sec.steps[layer];
    var name = depth % 2 === 1 ? "L" + layer + " +attn"
      : "L" + layer + (step === "attention+mlp" ? " +mlp" : step === "parallel" ? " +attn+mlp" : " +attn");
    return depth === 2 * L ? name + " (output)" : name;
  }

  function edgeText(sec, seq, e) {
    var what = e.kind + " \u00b7 layer " + e.layer + (e.kind === "attention head" ? " \u00b7 head " + e.head : "") +
      (e.kind === "neuron" ? " \u00b7 neuron " + e.neuron : "");
    var weight = "weight: " + fmt(e.weight) + (e.kind === "neuron" ? " of the MLP\u2019s part (" + fmt(e.mlpWeight) + ")" : "");
    var at = function (n) { return "position " + seq.positions[n.q] + " \u201c" + show(seq.tokens[n.q]) + "\u201d, " + rowName(sec, n.depth); };
    return [what, weight, "from: " + at(e.source), "to: " + at(e.target)].join("\n");
  }

  function nodeText(sec, seq, route, n) {
    var into = route.edges.filter(function (e) { return e.target === n; });
    var out = route.edges.filter(function (e) { return e.source === n; });
    var total = into.reduce(function (s, e) { return s + (e.kind === "neuron" ? 0 : e.weight); }, 0);
    return ["position " + seq.positions[n.q] + " \u201c" + show(seq.tokens[n.q]) + "\u201d \u00b7 " + rowName(sec, n.depth),
      "node " + n.id + (n === route.sink ? " (sink)" : ""),
      "in the route: " + into.length + " edges in (shares " + fmt(total) + "), " + out.length + " out"].join("\n");
  }

  function FlowFigure(parent, onToken) {
    // the row labels stay put on the left while a long sequence scrolls sideways
    var wrap = el("div", { class: "flow-wrap" });
    var holder = el("div");
    holder.innerHTML = "<svg class=\"flow-rows\"></svg><svg class=\"flow\" role=\"img\"></svg>";  // SVG namespace
    var rowsSvg = holder.firstChild, svg = holder.lastChild;
    var ns = svg.namespaceURI;
    var scroller = el("div", { class: "flow-scroll" });
    var tip = el("div", { class: "tip" });
    tip.style.display = "none";
    scroller.appendChild(svg);
    wrap.appendChild(rowsSvg); wrap.appendChild(scroller); wrap.appendChild(tip);
    parent.appendChild(wrap);
    var shownSink = null;  // the sink last scrolled to
    var items = [];  // the tooltip of each drawn element, by its data-item (made on hover)
    function add(tag, attrs, parentNode) {
      var e = document.createElementNS(ns, tag);
      Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
      (parentNode || svg).appendChild(e);
      return e;
    }
    function text(x, y, s, attrs, parentNode) {
      var e = add("text", Object.assign({ x: x, y: y }, attrs || {}), parentNode);
      e.textContent = s;
      return e;
    }

    this.draw = function (sec, seq, route, highlight) {
      [svg, rowsSvg].forEach(function (s) { while (s.firstChild) s.removeChild(s.firstChild); });
      items = [];
      var n = seq.tokens.length, rows = 2 * sec.nLayers + 1;
      var page = (document.getElementById("alti-root") || document.body).clientWidth - 60;
      var left = 14, top = 14, labels = 96, gutter = 118;
      var cw = Math.max(22, Math.min(64, Math.floor((Math.max(page, 480) - gutter - 150) / Math.max(n, 1))));
      var rh = Math.max(24, Math.min(46, Math.floor(620 / rows)));
      var W = left + n * cw + 12, H = top + (rows - 1) * rh + 14 + labels;
      svg.setAttribute("width", W); svg.setAttribute("height", H);
      svg.setAttribute("viewBox", "0 0 " + W + " " + H);
      rowsSvg.setAttribute("width", gutter); rowsSvg.setAttribute("height", H);
      var X = function (q) { return left + q * cw + cw / 2; };
      var Y = function (d) { return top + (rows - 1 - d) * rh; };
      var grid = add("g", { class: "grid" });
      for (var d = 0; d < rows; d++) {
        if (d % 2 === 1 && sec.steps[(d - 1) / 2] !== "attention+mlp") continue;  // no such state
        add("line", { x1: 0, x2: W - 8, y1: Y(d), y2: Y(d) }, grid);
        text(gutter - 6, Y(d) + 4, rowName(sec, d), { class: "row", "text-anchor": "end" }, rowsSvg);
      }
      seq.tokens.forEach(function (tok, q) {
        var t = text(X(q) + 4, Y(0) + 14, short(tok, 14), {
          class: "col" + (q === route.sink.q ? " on" : ""), "text-anchor": "end",
          transform: "rotate(-90 " + (X(q) + 4) + " " + (Y(0) + 14) + ")", "data-q": q,
        });
        t.addEventListener("click", function () { onToken(q); });
        var hint = document.createElementNS(ns, "title");
        hint.textContent = "position " + seq.positions[q] + ": click to draw its route";
        t.appendChild(hint);
      });
      bulges(route);
      var order = route.edges.slice().sort(function (a, b) { return a.weight - b.weight; });
      var edgesBox = add("g", { class: "edges" });
      order.forEach(function (e) {
        var x0 = X(e.source.q), y0 = Y(e.source.depth), x1 = X(e.target.q), y1 = Y(e.target.depth);
        var cx = (x0 + x1) / 2 + e.bulge * cw, cy = (y0 + y1) / 2;
        var w = Math.max(0, Math.min(1, e.weight));
        var dim = highlight && e.key !== highlight;
        add("path", {
          class: "edge", d: "M" + x0 + " " + y0 + " Q" + cx + " " + cy + " " + x1 + " " + y1,
          stroke: KINDS[e.kind] || "#333", "stroke-width": (1 + 4 * w).toFixed(2),
          "stroke-opacity": (dim ? 0.07 : 0.3 + 0.7 * w).toFixed(3), fill: "none",
          "data-item": items.length, "data-kind": e.kind, "data-key": e.key, "data-weight": e.weight,
          "data-source": e.source.id, "data-target": e.target.id,
        }, edgesBox);
        items.push(function () { return edgeText(sec, seq, e); });
      });
      var nodesBox = add("g", { class: "nodes" });
      route.nodes.forEach(function (v) {
        var sink = v === route.sink;
        add("circle", {
          class: "node" + (sink ? " sink" : ""), cx: X(v.q), cy: Y(v.depth), r: sink ? 7 : 3.5,
          fill: sink ? "#fff" : "#1d2330", stroke: sink ? SINK : "none", "stroke-width": sink ? 2.5 : 0,
          "data-item": items.length, "data-node": v.id,
        }, nodesBox);
        items.push(function () { return nodeText(sec, seq, route, v); });
      });
      tip.style.display = "none";
      // a long sequence scrolls sideways: bring a new sink into view (near the right edge)
      var at = seq.label + "|" + route.sink.id;
      if (at !== shownSink) scroller.scrollLeft = Math.max(0, X(route.sink.q) - 0.75 * scroller.clientWidth);
      shownSink = at;
    };

    function hide() { tip.style.display = "none"; }
    svg.addEventListener("mouseover", function (ev) {
      var i = ev.target.getAttribute && ev.target.getAttribute("data-item");
      if (i === null || i === undefined || !items[i]) { hide(); return; }
      tip.textContent = items[i]();
      tip.style.display = "block";
      var box = wrap.getBoundingClientRect();
      var x = ev.clientX - box.left + 14, y = ev.clientY - box.top + 14;
      if (x + tip.offsetWidth > wrap.clientWidth) x = Math.max(0, x - tip.offsetWidth - 28);
      tip.style.left = x + "px"; tip.style.top = y + "px";
    });
    svg.addEventListener("mouseleave", hide);
  }

  function FlowSection(root, sec, id, params) {
    header(root, sec);
    var p = function (k) { return params["s" + id + "-" + k]; };
    var st = { seq: intParam(p("seq"), sec.sequences.length, 0), highlight: null,
      pos: p("pos") !== undefined ? p("pos") : sec.position };
    var ti = sec.thresholds.indexOf(parseFloat(p("threshold")));
    st.t = ti >= 0 ? ti : Math.max(0, sec.thresholds.indexOf(sec.threshold));

    var controls = el("div", { class: "controls" });
    root.appendChild(controls);
    var setSeq = select(controls, "sequence", sec.sequences.map(function (s) { return s.label; }), function (i) {
      st.seq = i; st.pos = undefined; st.highlight = null; update();
    });
    var posWrap = el("label", { text: "token " });
    var posSelect = el("select", { class: "position" });
    posWrap.appendChild(posSelect);
    controls.appendChild(posWrap);
    posSelect.addEventListener("change", function () { st.pos = parseInt(posSelect.value, 10); update(); });
    var tSlider = slider(controls, "threshold", function (i) { st.t = i; update(); });

    var figure = el("div", { class: "figure" });
    root.appendChild(figure);
    var title = el("h3");
    figure.appendChild(title);
    figure.appendChild(el("p", { class: "explain", text: sec.explain.route }));
    var key = el("div", { class: "key" });
    Object.keys(KINDS).forEach(function (kind) {
      if (kind === "neuron" && !sec.neurons) return;
      key.appendChild(el("span", {}, [el("i", { style: "background: " + KINDS[kind] }), document.createTextNode(kind)]));
    });
    key.appendChild(el("span", {}, [el("i", { class: "ring", style: "border-color: " + SINK }), document.createTextNode("sink (the route\u2019s prediction)")]));
    figure.appendChild(key);
    var drawing = new FlowFigure(figure, function (q) { st.pos = q; update(); });
    var caption = el("div", { class: "caption" });
    figure.appendChild(caption);

    var layout = el("div", { class: "layout" });
    root.appendChild(layout);
    var gridBox = el("div", { class: "figure" });
    layout.appendChild(gridBox);
    gridBox.appendChild(el("h3", { text: "attention heads in this route (sum of their edges\u2019 shares)" }));
    gridBox.appendChild(el("p", { class: "explain", text: sec.explain.heads }));
    var heat = new Heatmap(gridBox, function (r, c) {
      if (c < 0) return;
      var k = "L" + r + "H" + c;
      st.highlight = st.highlight === k ? null : k; update();
    });
    var setLegend = legend(gridBox);
    gridBox.appendChild(el("div", { class: "caption", text: "click a head to highlight its edges (again: all)" }));
    var panel = el("div", { class: "panel" });
    layout.appendChild(panel);

    function summary(route) {
      var heads = [], byName = {};
      for (var l = 0; l < sec.nLayers; l++) { heads.push([]); for (var h = 0; h < sec.nHeads; h++) heads[l].push(0); }
      route.edges.forEach(function (e) {
        if (e.kind === "attention head") heads[e.layer][e.head] += e.weight;
        if (e.kind === "attention head" || e.kind === "mlp") {
          var name = e.kind === "mlp" ? "MLP " + e.layer : "L" + e.layer + " head " + e.head;
          byName[name] = (byName[name] || 0) + e.weight;
        }
      });
      return { heads: heads, top: Object.keys(byName).map(function (k) { return [k, byName[k]]; })
        .sort(function (a, b) { return b[1] - a[1]; }) };
    }

    function update() {
      var seq = sec.sequences[st.seq], n = seq.tokens.length;
      setSeq(st.seq);
      st.pos = intParam(st.pos, n, n - 1);
      posSelect.textContent = "";
      seq.tokens.forEach(function (tok, q) {
        posSelect.appendChild(el("option", { value: String(q), text: seq.positions[q] + ": " + short(tok, 24) }));
      });
      posSelect.value = String(st.pos);
      tSlider.set(st.t, sec.thresholds);
      var t = sec.thresholds[st.t];
      var route = flowRoute(sec, seq, st.pos, t);
      title.textContent = "route of position " + seq.positions[st.pos] + " \u201c" + show(seq.tokens[st.pos]) +
        "\u201d, threshold " + t;
      drawing.draw(sec, seq, route, st.highlight);
      caption.textContent = route.edges.length + " edges, " + route.nodes.length + " nodes \u00b7 hover an edge or a node for its values \u00b7 click a token to draw its route";
      var s = summary(route);
      var peak = peakOf(s.heads, false);
      heat.draw({
        matrix: s.heads, rows: s.heads.map(function (_, l) { return "layer " + l; }),
        cols: s.heads[0].map(function (_, h) { return "head " + h; }), groups: null, peak: peak,
        diverging: false, rowTitle: "layer", colTitle: "head", what: "share in the route",
        selected: null,
      });
      setLegend(peak, false, "colour: 0 to the largest head");
      panel.textContent = "";
      panel.appendChild(el("h3", { text: "largest components in this route" }));
      var ol = el("ol", { class: "top" });
      var top = s.top.length ? s.top[0][1] : 1;
      s.top.slice(0, 8).forEach(function (kv) {
        var bar = el("span", { class: "bar" + (kv[0].indexOf("MLP") === 0 ? "" : " head") });
        bar.style.width = Math.max(1, Math.round(70 * kv[1] / top)) + "px";
        ol.appendChild(el("li", { "data-value": String(kv[1]) }, [bar, el("code", { text: kv[0] }), el("span", { class: "num", text: "  " + fmt(kv[1]) })]));
      });
      panel.appendChild(ol);
      root.setAttribute("data-seq", String(st.seq));
      root.setAttribute("data-position", String(seq.positions[st.pos]));
      root.setAttribute("data-threshold", String(t));
      root.setAttribute("data-edges", String(route.edges.length));
      root.setAttribute("data-nodes", String(route.nodes.length));
      root.setAttribute("data-highlight", st.highlight || "");
    }
    update();
  }
