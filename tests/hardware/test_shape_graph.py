"""The shape-only graph (hardware/loihi2/shape_graph.py) plans exactly as the exported graph does: same
plan JSON (totals, every layer's split, chunk, limits and utilisation, programs, delays) and the same
design-rule findings, on small sizes of several variants; its per-neuron parameters are not stored."""
import nir
import numpy as np
import pytest

from exporters.torch_to_nir import export_model
from resformer_deploy.hardware.loihi2 import map_to_loihi2, run_drc
from resformer_deploy.hardware.loihi2.shape_graph import neuron_lower_bound, shape_graph
from resformer_deploy.model.calibration import random_buffers
from resformer_deploy.model.resformer import build_model


# m @32 has a design-rule finding (layers_2_1_add: 4,224 fan-in axons > 4,096), so findings are compared too
@pytest.mark.parametrize("variant,size,findings", [("cifar", 32, 0), ("dvsg", 32, 0), ("m", 32, 1), ("ti", 32, 0)])
def test_shape_graph_plans_as_the_exported_graph(variant, size, findings):
    model = random_buffers(build_model(variant, img_size=size))
    full, shape = export_model(model), shape_graph(model)
    assert list(shape.nodes) == list(full.nodes) and shape.edges == full.edges
    for name, node in full.nodes.items():
        assert type(shape.nodes[name]) is type(node)
        if isinstance(node, (nir.LIF, nir.Scale)):  # every parameter: the exporter's value at every neuron
            for f in ("tau", "r", "v_leak", "v_threshold", "v_reset") if isinstance(node, nir.LIF) else ("scale",):
                np.testing.assert_array_equal(getattr(shape.nodes[name], f), getattr(node, f), err_msg=f"{name}.{f}")
    plans = {k: map_to_loihi2(g, "fused") for k, g in (("full", full), ("shape", shape))}
    drc = {k: run_drc(p) for k, p in plans.items()}
    assert len(drc["full"][0]) == findings
    assert plans["shape"].to_json(*drc["shape"]) == plans["full"].to_json(*drc["full"])
    assert [r.cores for r in plans["shape"].layers] == [r.cores for r in plans["full"].layers]


def test_shape_graph_stores_no_per_neuron_parameters():
    g = shape_graph(random_buffers(build_model("cifar", img_size=32)))
    lifs = [n for n in g.nodes.values() if isinstance(n, nir.LIF)]
    junctions = [n for n in g.nodes.values() if isinstance(n, nir.Scale)]
    assert lifs and junctions
    for n in lifs + junctions:
        for a in ([n.tau, n.r, n.v_leak, n.v_threshold, n.v_reset] if isinstance(n, nir.LIF) else [n.scale]):
            assert a.size > 1 and all(s == 0 for s in a.strides) and not a.flags.writeable


def test_neuron_lower_bound_counts_on_chip_lif_and_junction_neurons():
    model = random_buffers(build_model("cifar", img_size=32))
    g = export_model(model)
    # by hand from the exported graph's own per-neuron arrays
    want = sum(n.tau.size if isinstance(n, nir.LIF) else n.scale.size for n in g.nodes.values()
               if isinstance(n, (nir.LIF, nir.Scale)) and n.metadata["partition"] == "neuromorphic")
    assert neuron_lower_bound(shape_graph(model)) == want
    plan = map_to_loihi2(g, "fused")
    assert want <= plan.totals.neurons  # every LIF and junction is a layer of the plan (relays come on top)
    assert neuron_lower_bound(shape_graph(random_buffers(build_model("cifar", img_size=48)))) > want
