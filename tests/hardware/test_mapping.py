"""Loihi 2 resource mapping (resformer_deploy.hardware.loihi2) and the `compile` command."""
import json

import nir
import numpy as np
import pytest
from click.testing import CliRunner

from exporters.nir_io import write_nir
from resformer_deploy.lava.plan import plan_lava
from exporters.torch_to_nir import export_model
from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.cli.main import main
from resformer_deploy.hardware.loihi2 import DRC_CHECKS, map_to_loihi2, run_drc
from resformer_deploy.hardware.loihi2 import limits as L
from resformer_deploy.hardware.loihi2.partition import Mapper, _chunks
from resformer_deploy.model.resformer import build_model
from resformer_deploy.model.calibration import randomize_state
from tests.conftest import DIGITS_CKPT
from tests.cli.test_cli import assert_one_line_error

TOTAL_KEYS = ("neuro_cores", "chips", "neurons", "synapses", "memory_bytes", "embedded_programs")


@pytest.fixture(scope="module")
def digits_graph():
    return export_model(load_checkpoint(DIGITS_CKPT).model)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def graph_counts(g):
    """(neurons, synapses) of the fused mapping, counted from the graph alone: every neuromorphic
    LIF and residual-junction neuron, with one synapse per nonzero of each synapse node's unrolled
    matrix feeding it and one per neuron for any other input (a spike or a product passed on);
    plus a relay neuron per element of each product's graded operand, fed by its own synapses."""
    from exporters.graph_check import check_graph
    from exporters.nir_ext import SpikeMatMul
    from resformer_deploy.passes.unroll_dense import conv_matrix
    shapes, _ = check_graph(g)
    preds = {}
    for a, b in g.edges:
        preds.setdefault(b, []).append(a)
    neuro = {n for n, node in g.nodes.items() if (node.metadata or {}).get("partition") == "neuromorphic"}
    size = lambda n: int(np.prod(shapes[n]))  # noqa: E731
    synapse_nodes = (nir.Conv2d, nir.Affine, nir.Linear)

    def nnz(n):
        node = g.nodes[n]
        if isinstance(node, nir.Conv2d):
            return conv_matrix(node, shapes[preds[n][0]], shapes[n]).nnz
        return int(np.count_nonzero(node.weight))
    neurons = synapses = 0
    for n in neuro:
        node = g.nodes[n]
        if isinstance(node, nir.LIF) or (isinstance(node, nir.Scale) and node.metadata.get("role") == "residual_add"):
            neurons += size(n)
            synapses += sum(nnz(p) if p in neuro and isinstance(g.nodes[p], synapse_nodes) else size(n)
                            for p in preds[n])
    for lhs in {g.nodes[n].lhs for n in neuro if isinstance(g.nodes[n], SpikeMatMul)}:
        neurons, synapses = neurons + size(lhs), synapses + nnz(lhs)
    return neurons, synapses


def recounted_cores(layers):
    """Cores of each layer recounted from its box and chunk sizes (ceil per axis)."""
    return sum(int(np.prod([-(-d // c) for d, c in zip(r["coords"], r["chunk"])])) for r in layers)


def toy_graph(layers, metadata=None):
    """input (host) -> [Affine] -> LIF ... ; layers: list of (name, kind, shape or weight)."""
    nodes, edges, prev = {}, [], "input"
    first = layers[0]
    in_shape = np.array(first[2].shape[1:] if first[1] == "affine" else first[2])
    nodes["input"] = nir.Input({"input": in_shape}, metadata={"partition": "host"})
    for name, kind, arg in layers:
        if kind == "affine":
            nodes[name] = nir.Affine(arg, np.zeros(arg.shape[0]))
            shape = (arg.shape[0],)
        else:
            shape = tuple(arg)
            nodes[name] = nir.LIF(np.full(shape, 0.01), np.ones(shape), np.zeros(shape), np.ones(shape),
                                  np.zeros(shape))
        edges.append((prev, name))
        prev = name
    nodes["output"] = nir.Output({"output": np.array(shape)}, metadata={"partition": "host"})
    edges.append((prev, "output"))
    return nir.NIRGraph(nodes, edges, metadata=metadata or {})


def test_every_core_of_the_digits_plan_respects_the_limits(digits_graph):
    for dssa in ("fused", "synaptic"):
        plan = map_to_loihi2(digits_graph, dssa)
        assert plan.layers
        for r in plan.layers:
            assert r.max_core_neurons <= L.MAX_NEURONS_PER_CORE
            assert r.max_core_memory <= L.CORE_MEMORY_BYTES
            assert r.max_fan_in <= L.MAX_FANIN_AXONS_PER_CORE
            assert r.max_fan_out_routes <= L.MAX_FANOUT_ROUTES_PER_CORE
            assert r.cores == int(np.prod(r.split)) >= 1
        violations, skipped = run_drc(plan)
        assert violations == []
        assert any("not quantized" in s for s in skipped)
        t = plan.totals
        assert t.neuro_cores == recounted_cores([{"coords": r.coords, "chunk": r.chunk} for r in plan.layers])
        assert t.chips >= -(-t.neuro_cores // L.NEURO_CORES_PER_CHIP)
    fused = map_to_loihi2(digits_graph, "fused").totals
    assert (fused.neurons, fused.synapses) == graph_counts(digits_graph) == (33312, 1746080)
    assert fused.neuro_cores == 34  # the figure the README and the reports quote
    tiny = export_model(randomize_state(build_model("tiny")).eval())
    t = map_to_loihi2(tiny, "fused").totals
    assert (t.neurons, t.synapses) == graph_counts(tiny)
    assert map_to_loihi2(digits_graph, "fused").totals.embedded_programs == 6
    assert map_to_loihi2(digits_graph, "synaptic").totals.embedded_programs == 0


@pytest.mark.parametrize("model", ["tiny", "digits"])
def test_analytic_conv_fan_in_synapses_and_fan_out_match_brute_force(model, digits_graph):
    """Every conv connection, several tilings: analytic per-core fan-in axons and synapse counts
    equal those of the unrolled connectivity matrix (passes.unroll_dense.conv_matrix of the NIR node: the
    mapper reads the plan's SynapseSpec, the oracle the graph); so do the per-source-neuron destination-core
    counts (fan-out)."""
    from resformer_deploy.passes.unroll_dense import conv_matrix
    g = digits_graph if model == "digits" else export_model(randomize_state(build_model("tiny")).eval())
    mp = Mapper(plan_lava(g, "fused"))
    mp.group()
    checked = 0
    for layer in mp.layers.values():
        for ci, conn in enumerate(layer.conns):
            if conn.kind != "conv":
                continue
            spec = mp.plan.synapses[conn.via]
            (pred,) = mp.preds[conn.via]
            assert conn.node is spec and spec.kind == "conv"
            m = conv_matrix(g.nodes[conn.via], mp.plan.shapes[pred], mp.plan.shapes[conn.via])
            C, H, W = layer.shape
            for sizes in [(C, H, W), (max(1, C // 2), max(1, H // 2), W), (max(1, C // 4), 1, max(1, W // 3)),
                          (1, 1, 1)]:
                ch = [_chunks(D, s) for D, s in zip(layer.shape, sizes)]
                fan, syn, _ = mp.terms(layer, conn, ch)
                full = lambda t: t[0][:, None, None] * t[1][None, :, None] * t[2][None, None, :]  # noqa: E731
                fan, syn = full(fan[0]), full(syn[0])
                dest = np.zeros(m.shape[1])
                idx = np.arange(C * H * W).reshape(C, H, W)
                for i, (c0, cn) in enumerate(zip(*ch[0])):
                    for j, (h0, hn) in enumerate(zip(*ch[1])):
                        for k, (w0, wn) in enumerate(zip(*ch[2])):
                            rows = idx[c0:c0 + cn, h0:h0 + hn, w0:w0 + wn].ravel()
                            sub = m[rows]
                            cols = np.unique(sub.indices)
                            assert fan[i, j, k] == len(cols), (layer.name, conn.via, sizes)
                            assert syn[i, j, k] == sub.nnz, (layer.name, conn.via, sizes)
                            dest[cols] += 1
                layer.chunks = sizes
                solo = Mapper(mp.plan)
                solo.layers = {layer.name: layer}
                for name in {conn.src}:
                    if name in mp.layers:
                        solo.layers[name] = mp.layers[name]
                        mp.layers[name].chunks = mp.layers[name].chunks or (1, 1, 1)
                keep = layer.conns
                layer.conns = [conn]
                try:
                    got = solo.fanout().get(conn.src)
                finally:
                    layer.conns = keep
                if conn.src in mp.layers and conn.src != layer.name:
                    np.testing.assert_array_equal(np.broadcast_to(got, dest.shape), dest)
                checked += 1
    assert checked >= (8 if model == "tiny" else 40)


def test_synapse_geometry_comes_from_the_lava_plan_not_the_nir_nodes(digits_graph):
    """The plan's SynapseSpecs are the one description: scrambling the graph's synapse nodes after
    planning changes nothing; a plan whose spec says stride 2 maps the strided convolution."""
    import copy
    from resformer_deploy.lava.specs import SynapseSpec
    reference = map_to_loihi2(plan_lava(digits_graph, "fused")).to_json()
    lp = plan_lava(copy.deepcopy(digits_graph), "fused")
    assert sum(s.kind == "conv" for s in lp.synapses.values()) == 17
    for n in lp.synapses:  # what the mapper must not read
        node = lp.graph.nodes[n]
        node.weight = np.full((1, 1, 1, 1), np.nan)
        if isinstance(node, nir.Conv2d):
            node.stride, node.padding, node.dilation, node.groups = 7, 5, 3, 11
    assert map_to_loihi2(lp).to_json() == reference
    # a one-conv network: the same kernel at stride 1 and 2, as the spec says
    w = np.ones((4, 2, 3, 3))
    nodes = {"input": nir.Input({"input": np.array([2, 8, 8])}, metadata={"partition": "host"}),
             "conv": nir.Conv2d((8, 8), w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(4)),
             "lif": nir.LIF(*(np.full((4, 8, 8), v) for v in (0.01, 1.0, 0.0, 1.0, 0.0))),
             "output": nir.Output({"output": np.array([4, 8, 8])}, metadata={"partition": "host"})}
    g = nir.NIRGraph(nodes, [("input", "conv"), ("conv", "lif"), ("lif", "output")], metadata={})
    lp = plan_lava(g)
    (row,) = map_to_loihi2(lp).layers
    assert row.synapses == conv_nnz(w, (2, 8, 8), (4, 8, 8), 1, 1)
    lp.synapses["conv"] = SynapseSpec("conv", "conv", (2, 16, 16), (4, 8, 8), w, np.zeros(4), 2, 1)
    lp.shapes["input"] = (2, 16, 16)
    (row2,) = map_to_loihi2(lp).layers
    assert row2.synapses == conv_nnz(w, (2, 16, 16), (4, 8, 8), 2, 1) != row.synapses


def conv_nnz(w, in_shape, out_shape, stride, padding):
    """Synapses of a convolution, counted from torch's conv2d of ones (an independent oracle):
    each output's count is the number of kernel taps inside the input, times the input channels."""
    import torch
    ones = torch.ones(1, *in_shape, dtype=torch.float64)
    k = torch.tensor(w != 0, dtype=torch.float64)
    out = torch.nn.functional.conv2d(ones, k, stride=stride, padding=padding)
    assert tuple(out.shape[1:]) == out_shape
    return int(out.sum())


def test_a_layer_above_8192_neurons_is_split():
    plan = map_to_loihi2(toy_graph([("big", "lif", (16, 32, 32))]))
    (row,) = plan.layers
    assert row.neurons == 16384 and row.cores >= 2
    assert row.max_core_neurons <= L.MAX_NEURONS_PER_CORE
    assert row.limiting in ("neurons", "memory", "fan_in")
    assert run_drc(plan)[0] == []


def test_unmappable_layers_are_all_listed_as_violations():
    rng = np.random.RandomState(0)
    g = toy_graph([("dense_a", "affine", rng.randn(10, 5000)), ("lif_a", "lif", (10,)),
                   ("dense_b", "affine", rng.randn(3, 10) + 5), ("lif_b", "lif", (3,))])
    # a single dense layer whose one neuron needs more than 4096 axons
    g2 = toy_graph([("dense_a", "affine", rng.randn(10, 5000)), ("lif_a", "lif", (10,))])
    plan = map_to_loihi2(g)
    violations, _ = run_drc(plan)
    assert any(v.startswith("lif_a: one neuron needs 5000 fan-in axons > 4096") for v in violations), violations
    assert map_to_loihi2(g2).layers[0].unmappable[0].metric == "fan_in"
    # several at once: two unmappable layers plus a delay beyond 62 steps
    g3 = toy_graph([("d1", "affine", rng.randn(8, 6000)), ("l1", "lif", (8,)),
                    ("d2", "affine", rng.randn(5000, 8)), ("l2", "lif", (5000,)),
                    ("d3", "affine", rng.randn(4, 5000)), ("l3", "lif", (4,))])
    lp = plan_lava(g3)
    lp.edge_delay[("l1", "d2")] = 70
    plan = map_to_loihi2(lp)
    violations, _ = run_drc(plan)
    assert any(v.startswith("l1: one neuron needs 6000") for v in violations)
    assert any(v.startswith("l3: one neuron needs 5000") for v in violations)
    assert any("l2: synaptic delay 70 steps" in v and "> 62" in v for v in violations)
    assert len(violations) >= 3


def test_delay_within_62_passes_and_check_list_is_exposed(digits_graph):
    lp = plan_lava(digits_graph, "fused")
    edge = next(e for e, d in lp.edge_delay.items() if d and not e[1].endswith("matmul1"))
    lp.edge_delay[edge] = 62
    assert run_drc(map_to_loihi2(lp))[0] == []
    lp.edge_delay[edge] = 63
    (v,) = run_drc(map_to_loihi2(lp))[0]
    assert "synaptic delay 63" in v
    assert len(DRC_CHECKS) >= 8 and all(callable(c) for c in DRC_CHECKS)
    quant = {"layers_0_0_W": {"weight_bits": 9, "graded_bits": 30, "weight_exp": 8, "clipped": 3},
             "layers_0_0_Wproj": {"weight_bits": 8, "graded_bits": 24, "weight_exp": -8, "clipped": 0}}
    violations, skipped = run_drc(map_to_loihi2(digits_graph), quant)
    assert skipped == [] and len(violations) == 4 and all(v.startswith("layers_0_0_W:") for v in violations)


def test_compile_cli_on_the_shipped_checkpoint(tmp_path, digits_ckpt, digits_graph):
    r = run("compile", digits_ckpt, "-o", tmp_path / "out")
    assert r.exit_code == 0, (r.output, r.stderr)
    assert "neuro cores" in r.output and "layers_0_0_activation_in" in r.output
    assert "lava-loihi" in r.output and "loihi2-sim" in r.output
    j = json.loads((tmp_path / "out" / "loihi2_plan.json").read_text())
    for k in ("target", "dssa", "totals", "layers", "limits", "violations", "drc_skipped", "hardware_runtime",
              "embedded_programs", "delays"):
        assert k in j, k
    assert j["violations"] == [] and j["dssa"] == "fused"
    assert j["hardware_runtime"]["lava_loihi_installed"] is False
    assert j["limits"]["max_fanin_axons_per_core"]["value"] == 4096
    assert "source" in j["limits"]["core_memory_bytes"]
    for k in TOTAL_KEYS:
        assert k in j["totals"]
    assert (j["totals"]["neurons"], j["totals"]["synapses"]) == graph_counts(digits_graph)
    assert j["totals"]["neuro_cores"] == recounted_cores(j["layers"])
    r = run("compile", digits_ckpt, "-o", tmp_path / "syn", "--dssa", "synaptic", "--json")
    assert r.exit_code == 0, r.stderr
    js = json.loads(r.output)
    assert js["dssa"] == "synaptic" and js["totals"]["embedded_programs"] == 0
    assert js["totals"]["neurons"] > j["totals"]["neurons"]


def test_compile_cli_on_a_nir_file(tmp_path, digits_ckpt):
    nir_path = tmp_path / "digits.nir"
    r = run("export", digits_ckpt, "-o", nir_path)
    assert r.exit_code == 0, r.stderr
    r = run("compile", nir_path, "-o", tmp_path / "out", "--json")
    assert r.exit_code == 0, r.stderr
    j = json.loads(r.output)
    assert j["model"]["variant"] == "digits" and j["totals"]["neuro_cores"] > 0


def test_compile_cli_unknown_target(tmp_path, digits_ckpt):
    assert_one_line_error(run("compile", digits_ckpt, "-o", tmp_path, "--target", "foo"), "foo", "loihi2")


def test_compile_cli_violations_exit_2_and_still_write_the_plan(tmp_path):
    rng = np.random.RandomState(1)
    g2 = toy_graph([("d1", "affine", rng.randn(8, 6000)), ("l1", "lif", (8,))])
    path = tmp_path / "bad.nir"
    write_nir(g2, path)
    r = run("compile", path, "-o", tmp_path / "out")
    assert_one_line_error(r, "1 design-rule violation(s)", "l1: one neuron needs 6000 fan-in axons")
    j = json.loads((tmp_path / "out" / "loihi2_plan.json").read_text())
    assert len(j["violations"]) == 1


def test_drc_number_facts_read_dense_and_conv_mantissas():
    """A dense synapse's mantissas are a CSR matrix, a convolution's its int64 kernel
    (fixed_point/network.py SynQ): both give the magnitude bits of their largest mantissa."""
    from types import SimpleNamespace as NS
    import scipy.sparse as sp
    from resformer_deploy.flows.loihi2_mapping import quant_for_drc
    row = lambda n: NS(node=n, kind="Conv2d", clipped=0, log2_scale=None, calibrated_max_abs=0.0)  # noqa: E731
    kernel = np.zeros((2, 1, 3, 3), np.int64)
    kernel[1, 0, 2, 1] = -200  # 8 magnitude bits
    qn = NS(layers=[row("conv"), row("fc"), row("empty")],
            syn={"conv": NS(mant=kernel, exp=-3), "fc": NS(mant=sp.csr_matrix(np.array([[0, 5], [-3, 0]])), exp=1),
                 "empty": NS(mant=sp.csr_matrix((2, 2), dtype=np.int64), exp=0)})
    facts = quant_for_drc(qn)
    assert facts["conv"] == {"clipped": 0, "weight_exp": -3, "weight_bits": 8}
    assert facts["fc"]["weight_bits"] == 3 and facts["empty"]["weight_bits"] == 0
