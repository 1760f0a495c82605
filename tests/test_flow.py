"""`flow_graph` (spec §8): invariants on every block kind in float32 and float64, the exactness
check on the MLP step, bad input, routes, tables, importance, saving; and a hand-built model whose
route is known."""

import functools
import itertools
import math
import warnings

import models
import networkx as nx
import pytest
import torch
from conftest import between_runs, bridge, encdec, hook_count

from alti_lens import (
    FlowGraph,
    InputError,
    InputIndexError,
    ReconstructionError,
    UnsupportedModelError,
    alti,
    flow_graph,
)
from alti_lens.inputs import tolerance

TEXTS = ["the cat sat on the mat and it was very small", "a big red dog ran", "the tree"]
DTYPES = [torch.float32, torch.float64]
DTYPE_IDS = ["float32", "float64"]
STEPS = {"neox-parallel": "parallel", "gptj-parallel": "parallel", "native-attn-only": "attention"}
ENCODERS = {"bert-postLN"}
SEQUENTIAL = [name for name in models.BRIDGE_BUILDERS if name not in STEPS]


def step_of(name: str) -> str:
    return STEPS.get(name, "attention+mlp")


def quiet_flow(model, inputs, **options) -> FlowGraph:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return flow_graph(model, inputs, **options)


@functools.cache
def graph_of(name: str, dtype: torch.dtype = torch.float64, neurons: bool = True) -> FlowGraph:
    return quiet_flow(bridge(name, dtype), TEXTS, neurons=neurons)


@pytest.fixture(params=DTYPES, ids=DTYPE_IDS)
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    return request.param


# --- every node's incoming weights sum to 1; zeros where the spec puts them -----------------------


def test_weights_are_shares(kind: str, dtype: torch.dtype) -> None:
    graph = graph_of(kind, dtype)
    assert graph.steps == [step_of(kind)] * graph.n_layers
    atol = between_runs(graph)
    for b in range(len(TEXTS)):
        real = graph.attention_mask[b].bool()
        heads = graph.attention[b][:, :, real][..., real]  # [L, H, n_real, n_real]
        assert (heads >= 0).all() and (graph.attention_residual[b] >= 0).all()
        attention_step = heads.sum(dim=(1, 3)) + graph.attention_residual[b][:, real]
        if step_of(kind) == "parallel":
            attention_step = attention_step + graph.mlp[b][:, real]
        torch.testing.assert_close(
            attention_step, torch.ones_like(attention_step), rtol=0, atol=atol
        )
        if step_of(kind) == "attention+mlp":
            mlp_step = graph.mlp[b][:, real] + graph.mlp_residual[b][:, real]
            assert (graph.mlp[b] >= 0).all() and (graph.mlp_residual[b] >= 0).all()
            torch.testing.assert_close(mlp_step, torch.ones_like(mlp_step), rtol=0, atol=atol)
        if graph.neurons is not None:
            shares = graph.neurons[b][:, real].sum(-1)
            assert (graph.neurons[b] >= 0).all()
            torch.testing.assert_close(shares, torch.ones_like(shares), rtol=0, atol=atol)
        if kind not in ENCODERS:  # causal: no head part from a later source
            assert (heads.triu(diagonal=1) == 0).all()


def test_padding_and_nan(kind: str, dtype: torch.dtype) -> None:
    """Padded positions: exact zeros; NaN exactly where a step does not exist (spec §8)."""
    graph = graph_of(kind, dtype)
    pad = ~graph.attention_mask.bool()
    assert pad.any()
    assert not graph.attention.isnan().any() and not graph.attention_residual.isnan().any()
    for b in range(len(TEXTS)):
        assert (graph.attention[b][:, :, pad[b]] == 0).all()
        assert (graph.attention[b][..., pad[b]] == 0).all()
        assert (graph.attention_residual[b][:, pad[b]] == 0).all()
    no_mlp = step_of(kind) == "attention"
    no_mlp_residual = step_of(kind) != "attention+mlp"
    assert bool(graph.mlp.isnan().all()) if no_mlp else not graph.mlp.isnan().any()
    assert (
        bool(graph.mlp_residual.isnan().all())
        if no_mlp_residual
        else not graph.mlp_residual.isnan().any()
    )
    for field in (graph.mlp, graph.mlp_residual):
        if not field.isnan().any():
            assert (field.permute(0, 2, 1)[pad] == 0).all()
    if no_mlp:
        assert graph.neurons is None
    else:
        assert graph.neurons is not None and not graph.neurons.isnan().any()
        assert (graph.neurons.permute(0, 2, 1, 3)[pad] == 0).all()


def test_padded_batch_equals_single_runs(kind: str, dtype: torch.dtype) -> None:
    batch = graph_of(kind, dtype)
    for b, text in enumerate(TEXTS):
        one = quiet_flow(bridge(kind, dtype), text, neurons=True)
        k = one.tokens.shape[1]
        assert torch.equal(batch.tokens[b, :k], one.tokens[0])
        atol = between_runs(batch, one)
        pairs = [
            (batch.attention[b, :, :, :k, :k], one.attention[0]),
            (batch.attention_residual[b, :, :k], one.attention_residual[0]),
            (batch.mlp[b, :, :k], one.mlp[0]),
            (batch.mlp_residual[b, :, :k], one.mlp_residual[0]),
        ]
        if one.neurons is not None:
            assert batch.neurons is not None
            pairs.append((batch.neurons[b, :, :k], one.neurons[0]))
        for got, expected in pairs:
            torch.testing.assert_close(got, expected, rtol=0, atol=atol, equal_nan=True)


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_attention_step_is_alti_per_head(name: str, dtype: torch.dtype) -> None:
    graph = graph_of(name, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heads = alti(bridge(name, dtype), TEXTS, per_head=True)
    assert heads.head_contributions is not None and heads.residual_contribution is not None
    atol = between_runs(graph, heads)
    torch.testing.assert_close(graph.attention, heads.head_contributions, rtol=0, atol=atol)
    torch.testing.assert_close(
        graph.attention_residual, heads.residual_contribution, rtol=0, atol=atol
    )


@pytest.mark.parametrize("name", ["neox-parallel", "gptj-parallel"])
def test_parallel_attention_step_is_not_alti_per_head(name: str) -> None:
    """Parallel blocks: the one step's state includes the MLP output (spec §8), ALTI's virtual
    output does not, so the head weights differ."""
    graph = graph_of(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        heads = alti(bridge(name, torch.float64), TEXTS, per_head=True)
    assert heads.head_contributions is not None
    assert float((graph.attention - heads.head_contributions).abs().max()) > 1e-3


def _state_scale(model, graph: FlowGraph, layer: int) -> float:
    """max|y| over the states a layer's steps are checked against (real positions)."""
    with torch.no_grad():
        _, cache = model.run_with_cache(graph.tokens.to(model.cfg.device))
    real = graph.attention_mask.bool()
    names = ("hook_resid_mid", "hook_resid_post", "ln1.hook_out", "ln2.hook_out", "hook_mlp_out")
    keys = [f"blocks.{layer}.{n}" for n in names if f"blocks.{layer}.{n}" in cache]
    return max(float(cache[k][real].abs().max()) for k in keys)


def test_reconstruction_error_is_recorded(kind: str, dtype: torch.dtype) -> None:
    graph = graph_of(kind, dtype)
    model = bridge(kind, dtype)
    errors = graph.reconstruction_error
    assert errors.shape == (len(TEXTS), graph.n_layers)
    assert torch.isfinite(errors).all() and (errors >= 0).all()
    names = [graph.metadata[k] for k in ("model_precision", "dtype")]
    rtol, atol = tolerance([getattr(torch, n) for n in names] + [dtype])
    for layer in range(graph.n_layers):
        limit = atol + rtol * _state_scale(model, graph, layer)
        assert float(errors[:, layer].max()) <= limit, (layer, errors[:, layer], limit)


# --- the exactness check catches a broken MLP step, and leaves the model clean -------------------


@pytest.mark.parametrize(
    "name, hook, neurons, step",
    [
        # the block's output edited: the MLP step's parts no longer add up to it
        ("gpt2-preLN", "blocks.1.hook_resid_post", False, "MLP step"),
        ("bert-postLN", "blocks.1.ln2.hook_out", False, "MLP step"),
        ("gemma2-sandwich", "blocks.1.hook_resid_post", False, "MLP step"),
        # the MLP's output edited after its projection: its neurons no longer add up to it
        ("gpt2-preLN", "blocks.1.hook_mlp_out", True, "MLP neurons"),
        ("llama-RMS-rotary-GQA", "blocks.1.mlp.hook_out", True, "MLP neurons"),
        ("bert-postLN", "blocks.1.hook_mlp_out", True, "MLP neurons"),
        ("neox-parallel", "blocks.1.hook_mlp_out", True, "MLP neurons"),
        # a parallel block's output edited: its one step misses it
        ("neox-parallel", "blocks.1.hook_resid_post", False, "attention step"),
    ],
)  # fmt: skip
def test_broken_mlp_step_is_caught(name: str, hook: str, neurons: bool, step: str) -> None:
    model = bridge(name)
    before = hook_count(model)
    point = model.hook_dict[hook]
    # a scaling, not a constant shift: LayerNorm's centring would hide a constant
    point.add_hook(lambda t, hook: t * 1.5)
    try:
        with_user_hook = hook_count(model)
        with pytest.raises(ReconstructionError, match=f"{step} of layer 1") as info:
            quiet_flow(model, TEXTS, neurons=neurons)
        assert info.value.layer == 1 and info.value.error > info.value.tolerance
        assert hook_count(model) == with_user_hook
        unchecked = quiet_flow(model, TEXTS, neurons=neurons, check=False)
        assert unchecked.reconstruction_error.isnan().all()
    finally:
        point.remove_hooks()
    assert hook_count(model) == before
    quiet_flow(model, TEXTS, neurons=neurons)  # clean again


def test_edited_activations_the_mlp_consumes_stay_exact() -> None:
    """An edit of `mlp.hook_post` feeds the output projection: the model computed with it, so
    the graph is still an exact decomposition of what it did (no false alarm)."""
    model = bridge("gpt2-preLN", torch.float64)
    point = model.hook_dict["blocks.1.mlp.hook_post"]
    point.add_hook(lambda t, hook: t * 1.5)
    try:
        edited = quiet_flow(model, TEXTS, neurons=True)
    finally:
        point.remove_hooks()
    clean = graph_of("gpt2-preLN")
    assert float((edited.neurons[:, 1] - clean.neurons[:, 1]).abs().max()) > 1e-3
    torch.testing.assert_close(edited.attention[:, :2], clean.attention[:, :2], rtol=0, atol=0)


def test_no_hooks_left_behind(kind: str) -> None:
    model = bridge(kind)
    before = hook_count(model)
    quiet_flow(model, TEXTS, neurons=True)
    assert hook_count(model) == before


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("measure", ["attention", "attention_rollout"])
def test_measure_without_vectors_is_refused(measure: str) -> None:
    with pytest.raises(InputError, match="measure"):
        flow_graph(bridge("gpt2-preLN"), TEXTS, measure=measure)


def test_unknown_measure_and_neurons_are_refused() -> None:
    with pytest.raises(InputError, match="measure"):
        flow_graph(bridge("gpt2-preLN"), TEXTS, measure="l3")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="neurons"):
        flow_graph(bridge("gpt2-preLN"), TEXTS, neurons="yes")  # type: ignore[arg-type]


def test_encoder_decoder_is_refused() -> None:
    model = encdec("marian-postLN")
    before = hook_count(model)
    with pytest.raises(UnsupportedModelError, match="encoder-decoder"):
        flow_graph(model, "le chat")
    assert hook_count(model) == before


@pytest.mark.parametrize("threshold", [-0.1, 1.5, math.nan])
def test_threshold_out_of_range_is_refused(threshold) -> None:
    graph = graph_of("gpt2-preLN")
    with pytest.raises(InputError, match="threshold"):
        graph.routes(-1, threshold)
    with pytest.raises(InputError, match="threshold"):
        graph.to_dataframe(-1, threshold)
    with pytest.raises(InputError, match="min_weight"):
        graph.to_networkx(0, min_weight=threshold)


def test_position_and_batch_index_out_of_range_are_refused() -> None:
    graph = graph_of("gpt2-preLN")
    short = int(graph.attention_mask[2].sum())
    graph.routes(short - 1, batch_index=2)
    for position in (short, -short - 1):  # past the sequence's real tokens
        with pytest.raises(InputIndexError, match="position"):
            graph.routes(position, batch_index=2)
    with pytest.raises(InputIndexError, match="batch_index"):
        graph.routes(-1, batch_index=len(TEXTS))
    with pytest.raises(InputIndexError, match="batch_index"):
        graph.to_networkx(batch_index=-len(TEXTS) - 1)


# --- routes: against the weights, independently of results/routes.py ---------------------------


def _expected_route(graph: FlowGraph, b: int, position: int, threshold: float) -> set:
    """`(source, target, key, weight)` of every edge of the route, by the definition (spec §8)."""
    L, real = graph.n_layers, graph.attention_mask[b].nonzero().flatten().tolist()

    def after(layer: int, i: int) -> str:
        return f"resid_post.{layer}.{i}" if layer == L - 1 else f"resid_pre.{layer + 1}.{i}"

    def incoming(node: str) -> list[tuple[str, str, float]]:
        stage, layer, i = node.split(".")[0], int(node.split(".")[1]), int(node.split(".")[2])
        step_layer = layer if stage != "resid_pre" else layer - 1
        if step_layer < 0:
            return []
        step = graph.steps[step_layer]
        if stage != "resid_mid" and step == "attention+mlp":
            mid = f"resid_mid.{step_layer}.{i}"
            edges = [(mid, "mlp", float(graph.mlp[b, step_layer, i]))]
            edges.append((mid, "residual", float(graph.mlp_residual[b, step_layer, i])))
        else:
            pre = f"resid_pre.{step_layer}.{i}"
            edges = [(pre, "residual", float(graph.attention_residual[b, step_layer, i]))]
            edges += [
                (f"resid_pre.{step_layer}.{j}", f"L{step_layer}H{h}",
                 float(graph.attention[b, step_layer, h, i, j]))
                for h in range(graph.n_heads) for j in real
            ]  # fmt: skip
            if step == "parallel":
                edges.append((pre, "mlp", float(graph.mlp[b, step_layer, i])))
        out = [(s, k, w) for s, k, w in edges if w >= threshold]
        if graph.neurons is not None and any(k == "mlp" for _, k, _ in out):
            mlp_source = next(s for s, k, _ in out if k == "mlp")
            shares = graph.neurons[b, step_layer, i]
            out += [
                (mlp_source, f"L{step_layer}N{k}", float(shares[k]))
                for k in range(len(shares)) if float(shares[k]) >= threshold
            ]  # fmt: skip
        return out

    sink = after(L - 1, position)
    edges, frontier, seen = set(), [sink], {sink}
    while frontier:
        node = frontier.pop()
        for source, key, w in incoming(node):
            edges.add((source, node, key, w))
            if source not in seen:
                seen.add(source)
                frontier.append(source)
    return edges


def _edges(route: nx.MultiDiGraph) -> set:
    return {(s, t, k, d["weight"]) for s, t, k, d in route.edges(keys=True, data=True)}


@pytest.mark.parametrize("name", ["gpt2-preLN", "neox-parallel", "native-attn-only", "bert-postLN"])
@pytest.mark.parametrize("b", [0, 2])
def test_routes(name: str, b: int) -> None:
    graph = graph_of(name)
    last = int(graph.attention_mask[b].nonzero().max())
    routes = {t: graph.routes(-1, t, b) for t in (0.0, 0.04, 0.1, 0.3)}
    for threshold, route in routes.items():
        sink = route.graph["sink"]
        assert sink == f"resid_post.{graph.n_layers - 1}.{last}"
        assert route.graph["steps"] == graph.steps and route.graph["n_layers"] == graph.n_layers
        assert _edges(route) == _expected_route(graph, b, last, threshold)
        assert all(d["weight"] >= threshold for _, _, d in route.edges(data=True))
        assert all(nx.has_path(route, node, sink) for node in route.nodes)
        for node, attrs in route.nodes(data=True):
            stage, layer, position = node.split(".")
            assert attrs["stage"] == stage and attrs["layer"] == int(layer)
            assert attrs["position"] == int(position) and graph.attention_mask[b, int(position)]
            assert attrs["token"] == graph.str_tokens[b][int(position)]
    # threshold 0: every edge with a non-zero weight that leads to the sink is in the route
    full = graph.to_networkx(b)
    sink = routes[0.0].graph["sink"]
    feeding = nx.ancestors(full, sink) | {sink}
    nonzero = {e for e in _edges(full) if e[3] > 0 and e[1] in feeding}
    assert nonzero <= _edges(routes[0.0])
    # a higher threshold keeps a subgraph
    thresholds = sorted(routes)
    for low, high in itertools.pairwise(thresholds):
        assert _edges(routes[high]) <= _edges(routes[low])
        assert set(routes[high].nodes) <= set(routes[low].nodes)


@pytest.mark.parametrize("name", ["gpt2-preLN", "neox-parallel", "native-attn-only"])
def test_to_networkx(name: str) -> None:
    """The whole graph: every edge of every real row, none from padded positions."""
    graph = graph_of(name)
    b = 2
    real = graph.attention_mask[b].nonzero().flatten().tolist()
    n, L, H = len(real), graph.n_layers, graph.n_heads
    d_mlp = 0 if graph.neurons is None else graph.neurons.shape[-1]
    full = graph.to_networkx(b)
    per_row = {"attention+mlp": H * n + 1 + 2 + d_mlp, "parallel": H * n + 2 + d_mlp}
    assert full.number_of_edges() == L * n * per_row.get(graph.steps[0], H * n + 1)
    assert {d["position"] for _, d in full.nodes(data=True)} == set(real)
    pruned = graph.to_networkx(b, min_weight=0.1)
    assert all(d["weight"] >= 0.1 for _, _, d in pruned.edges(data=True))
    # a neuron edge comes with its MLP edge only (spec §8: "each kept MLP edge also gets ...")
    kept = {e for e in _edges(full) if e[3] >= 0.1}
    mlp_edges = {(s, t) for s, t, k, _ in kept if k == "mlp"}
    assert _edges(pruned) == {e for e in kept if "N" not in e[2] or e[:2] in mlp_edges}


COLUMNS = [
    "source", "target", "key", "kind", "layer", "head", "neuron", "weight", "source_stage",
    "target_stage", "source_position", "target_position", "source_token", "target_token",
]  # fmt: skip


def test_to_dataframe() -> None:
    graph = graph_of("gpt2-preLN")
    route = graph.routes(-1, 0.04, 1)
    table = graph.to_dataframe(-1, 0.04, 1)
    assert list(table.columns) == COLUMNS
    assert len(table) == route.number_of_edges() > 0
    rows = {(r.source, r.target, r.key, r.weight) for r in table.itertuples()}
    assert rows == _edges(route)
    assert set(table["kind"]) <= {"attention head", "residual", "mlp", "neuron"}
    heads = table[table["kind"] == "attention head"]
    assert (heads["key"] == [f"L{r.layer}H{r.head}" for r in heads.itertuples()]).all()
    assert table["neuron"].notna().sum() == (table["kind"] == "neuron").sum()


# --- a hand-written FlowGraph: routes, table and importance by hand -----------------------------


def hand_graph(neurons: bool = False) -> FlowGraph:
    """One layer, two heads, two positions; sequence 1 keeps everything on the residual."""
    attention = torch.zeros(2, 1, 2, 2, 2, dtype=torch.float64)
    attention[0, 0, 0, 0, 0] = 0.3  # row 0: head 0 on itself, residual 0.7
    attention[0, 0, 0, 1, 0], attention[0, 0, 0, 1, 1] = 0.5, 0.08  # row 1: head 0
    attention[0, 0, 1, 1, 1] = 0.02  # head 1, below 0.04
    residual = torch.tensor([[[0.7, 0.4]], [[1.0, 1.0]]], dtype=torch.float64)
    mlp = torch.tensor([[[0.6, 0.3]], [[0.0, 0.0]]], dtype=torch.float64)
    shares = torch.zeros(2, 1, 2, 3, dtype=torch.float64)
    shares[0, 0, :] = torch.tensor([0.9, 0.1, 0.0], dtype=torch.float64)
    return FlowGraph(
        attention=attention,
        attention_residual=residual,
        mlp=mlp,
        mlp_residual=1 - mlp,
        tokens=torch.tensor([[0, 5], [0, 6]]),
        str_tokens=[["<bos>", "cat"], ["<bos>", "dog"]],
        attention_mask=torch.ones(2, 2, dtype=torch.long),
        reconstruction_error=torch.zeros(2, 1, dtype=torch.float64),
        metadata={"steps": ["attention+mlp"]},
        neurons=shares if neurons else None,
    )


def test_hand_built_route_and_importance() -> None:
    graph = hand_graph()
    expected = {
        ("resid_mid.0.1", "resid_post.0.1", "mlp", 0.3),
        ("resid_mid.0.1", "resid_post.0.1", "residual", 0.7),
        ("resid_pre.0.0", "resid_mid.0.1", "L0H0", 0.5),
        ("resid_pre.0.1", "resid_mid.0.1", "L0H0", 0.08),
        ("resid_pre.0.1", "resid_mid.0.1", "residual", 0.4),
    }
    route = graph.routes(-1, 0.04)
    assert _edges(route) == expected and route.graph["sink"] == "resid_post.0.1"
    assert route.nodes["resid_pre.0.0"]["token"] == "<bos>"
    assert len(graph.to_dataframe(-1, 0.04)) == 5
    assert _edges(graph.routes(-1, 0.04, 1)) == {
        ("resid_mid.0.1", "resid_post.0.1", "residual", 0.0 + 1.0),
        ("resid_pre.0.1", "resid_mid.0.1", "residual", 1.0),
    }
    importance = graph.importance(-1, 0.04)
    assert importance["heads"].shape == (1, 2) and importance["mlp"].shape == (1,)
    torch.testing.assert_close(
        importance["heads"], torch.tensor([[(0.5 + 0.08) / 2, 0.0]]).double()
    )
    torch.testing.assert_close(importance["mlp"], torch.tensor([0.3 / 2]).double())
    torch.testing.assert_close(importance["frequency_heads"], torch.tensor([[0.5, 0.0]]).double())
    torch.testing.assert_close(importance["frequency_mlp"], torch.tensor([0.5]).double())
    # from position 0: head 0 on itself (0.3) and the MLP (0.6) in sequence 0
    first = graph.importance(0, 0.04)
    torch.testing.assert_close(first["heads"], torch.tensor([[0.3 / 2, 0.0]]).double())
    torch.testing.assert_close(first["mlp"], torch.tensor([0.6 / 2]).double())


def test_hand_built_neurons() -> None:
    route = hand_graph(neurons=True).routes(-1, 0.04)
    neurons = {
        (s, t, k, d["weight"], d["mlp_weight"])
        for s, t, k, d in route.edges(keys=True, data=True)
        if d["kind"] == "neuron"
    }
    assert neurons == {
        ("resid_mid.0.1", "resid_post.0.1", "L0N0", 0.9, 0.3),
        ("resid_mid.0.1", "resid_post.0.1", "L0N1", 0.1, 0.3),
    }
    table = hand_graph(neurons=True).to_dataframe(-1, 0.04)
    assert len(table) == 7 and sorted(table["neuron"].dropna().tolist()) == [0, 1]


# --- saving -------------------------------------------------------------------------------------


def _assert_same(a: FlowGraph, b: FlowGraph) -> None:
    for field in ("attention", "attention_residual", "mlp", "mlp_residual",
                  "reconstruction_error", "tokens", "attention_mask"):  # fmt: skip
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype, field
        torch.testing.assert_close(x, y, rtol=0, atol=0, equal_nan=True)
    assert (a.neurons is None) == (b.neurons is None)
    if a.neurons is not None:
        assert torch.equal(a.neurons, b.neurons)
    assert a.str_tokens == b.str_tokens and a.steps == b.steps
    assert a.metadata == b.metadata


@pytest.mark.parametrize(
    "name, neurons", [("gpt2-preLN", True), ("gpt2-preLN", False), ("neox-parallel", True),
                      ("native-attn-only", True)],
)  # fmt: skip
def test_save_load_round_trip(tmp_path, name: str, neurons: bool) -> None:
    graph = graph_of(name, torch.float64, neurons)
    path = graph.save(tmp_path / "flow.safetensors")
    loaded = FlowGraph.load(path)
    assert isinstance(loaded, FlowGraph)
    _assert_same(graph, loaded)
    assert _edges(loaded.routes(-1, 0.04, 1)) == _edges(graph.routes(-1, 0.04, 1))


def test_save_load_hand_built(tmp_path) -> None:
    for neurons in (False, True):
        graph = hand_graph(neurons)
        _assert_same(graph, FlowGraph.load(graph.save(tmp_path / f"{neurons}.safetensors")))


# --- a hand-built model whose route is known ------------------------------------------------------


def test_previous_token_model_route() -> None:
    """`models.previous_token_model`: layer 0's one head copies the previous token into an output
    subspace, layer 1 writes nothing. At the last position `t` the state after layer 0 is
    `e_tok(t) + e_pos(t) + e_out(tok(t−1))` (L1 norm 3): the residual `x_t` scores 3 − 1 = 2,
    the head's part from `t − 1` (`e_out`) 3 − 2 = 1, every other source 0. So the route is the
    residual (2/3) and head L0H0 from the previous token's embedding (1/3), then layer 1's
    residual (1)."""
    model = models.previous_token_model()
    tokens = torch.tensor([[3, 1, 4, 1, 5, 2]])
    with torch.no_grad():  # the model does what it is built for
        assert model(tokens)[0, -1].argmax() == tokens[0, -2]
    graph = quiet_flow(model, tokens)
    t = tokens.shape[1] - 1
    route = graph.routes(-1, 0.04)
    edges = {(s, tg, k): d["weight"] for s, tg, k, d in route.edges(keys=True, data=True)}
    assert set(edges) == {
        (f"resid_pre.1.{t}", f"resid_post.1.{t}", "residual"),
        (f"resid_pre.0.{t}", f"resid_pre.1.{t}", "residual"),
        (f"resid_pre.0.{t - 1}", f"resid_pre.1.{t}", "L0H0"),
    }
    assert math.isclose(edges[(f"resid_pre.1.{t}", f"resid_post.1.{t}", "residual")], 1.0)
    assert math.isclose(edges[(f"resid_pre.0.{t}", f"resid_pre.1.{t}", "residual")], 2 / 3)
    assert math.isclose(edges[(f"resid_pre.0.{t - 1}", f"resid_pre.1.{t}", "L0H0")], 1 / 3)
    # every position i > 0 reads exactly its previous token through the head
    head = graph.attention[0, 0, 0]
    for i in range(1, t + 1):
        assert math.isclose(float(head[i, i - 1]), 1 / 3, rel_tol=1e-12)
        assert float(head[i].sum() - head[i, i - 1]) <= 1e-12
    assert graph.steps == ["attention", "attention"] and graph.mlp.isnan().all()
    importance = graph.importance(-1, 0.04)
    torch.testing.assert_close(importance["heads"], torch.tensor([[1 / 3], [0.0]]).double())


def test_previous_token_model_without_its_head() -> None:
    """Zero the copying head's output: the route from the last position is the residual alone
    (and the model no longer predicts the previous token)."""
    model = models.previous_token_model()
    with torch.no_grad():
        model.blocks[0].attn.o.original_component.weight.zero_()
    graph = quiet_flow(model, torch.tensor([[3, 1, 4, 1, 5, 2]]))
    route = graph.routes(-1, 0.04)
    assert {k for _, _, k in route.edges(keys=True)} == {"residual"}
    assert route.number_of_nodes() == 3
