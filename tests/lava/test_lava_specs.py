"""The Lava plan's typed parts (resformer_deploy.lava.specs): LifParams and SynapseSpec check
themselves and name their node; a convolution's spec unrolls to exactly what torch computes."""
import pickle

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from resformer_deploy.lava.plan import plan_lava
from resformer_deploy.lava.specs import LavaMappingError, LifParams, SynapseSpec


@pytest.mark.parametrize("k", [0.0, -0.5, 1.5, float("nan"), "0.5"])
def test_lif_decay_outside_0_1_is_refused_naming_the_node(k):
    with pytest.raises(LavaMappingError, match=r"^lif7: LIF decay k = dt/tau"):
        LifParams("lif7", 3, k, 1.0, np.zeros(3))


def test_lif_threshold_and_bias_are_checked():
    LifParams("ok", 3, 1.0, 2.0, [0.0, 1.0, 2.0])  # k = 1 (tau = dt) is a valid leak
    with pytest.raises(LavaMappingError, match="^a: LIF threshold inf must be a finite number"):
        LifParams("a", 3, 0.5, float("inf"), np.zeros(3))
    with pytest.raises(LavaMappingError, match=r"^b: LIF bias of shape \(4,\), the layer has 3 neurons"):
        LifParams("b", 3, 0.5, 1.0, np.zeros(4))
    with pytest.raises(LavaMappingError, match="^c: LIF bias holds non-finite"):
        LifParams("c", 2, 0.5, 1.0, np.array([0.0, np.nan]))


def _conv(rng, cin=4, cout=6, k=3, groups=2, **geo):
    return nir.Conv2d(input_shape=(7, 7), weight=rng.randn(cout, cin // groups, k, k), bias=rng.randn(cout),
                      groups=groups, stride=geo.get("stride", 1), padding=geo.get("padding", 0),
                      dilation=geo.get("dilation", 1))


@pytest.mark.parametrize("geo,out_hw", [({}, (5, 5)), ({"stride": 2, "padding": 2, "dilation": 2}, (4, 4)),
                                        ({"padding": 1}, (7, 7)), ({"stride": (2, 1), "padding": (1, 0)}, (4, 5))])
def test_conv_spec_unrolls_to_what_torch_computes(geo, out_hw):
    rng = np.random.RandomState(1)
    node = _conv(rng, **geo)
    spec = SynapseSpec.from_node("conv", node, (4, 7, 7), (6, *out_hw))
    x = rng.randn(3, 4, 7, 7)
    st, pad = (tuple(np.broadcast_to(np.asarray(geo.get(f, d)), (2,))) for f, d in (("stride", 1), ("padding", 0)))
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(node.weight), torch.from_numpy(node.bias), st, pad,
                    geo.get("dilation", 1), 2).reshape(3, -1).numpy()
    m = spec.matrix()
    assert m.shape == (spec.n_out, spec.n_in) and spec.kind == "conv"
    np.testing.assert_allclose((m @ x.reshape(3, -1).T).T + spec.output_bias(), want, rtol=1e-12, atol=1e-12)
    assert spec.synapse_count() >= m.nnz and (m.nnz == spec.synapse_count()) == (not np.any(pad))


def test_dense_spec_and_its_bias():
    w = np.arange(6.0).reshape(2, 3)
    lin = SynapseSpec.from_node("lin", nir.Linear(weight=w), (3,), (2,))
    aff = SynapseSpec.from_node("aff", nir.Affine(weight=w, bias=np.array([1.0, -1.0])), (3,), (2,))
    assert lin.kind == aff.kind == "dense" and lin.synapse_count() == 6
    np.testing.assert_array_equal(lin.matrix().toarray(), w)
    np.testing.assert_array_equal(lin.output_bias(), [0.0, 0.0])
    np.testing.assert_array_equal(aff.output_bias(), [1.0, -1.0])


def test_wrong_synapse_shapes_are_refused_naming_the_node():
    rng = np.random.RandomState(0)
    with pytest.raises(LavaMappingError, match=r"^fc: dense weight of shape \(2, 3\), the node maps 4 inputs"):
        SynapseSpec("fc", "dense", (4,), (2,), np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(LavaMappingError, match="^fc: bias has 3 values, needs 2"):
        SynapseSpec("fc", "dense", (3,), (2,), np.zeros((2, 3)), np.zeros(3))
    with pytest.raises(LavaMappingError, match="^fc: dense synapses have no stride"):
        SynapseSpec("fc", "dense", (3,), (2,), np.zeros((2, 3)), np.zeros(2), stride=(2, 2))
    with pytest.raises(LavaMappingError, match=r"^cv: convolution of \(4, 7, 7\) gives \(6, 5, 5\), the plan says"):
        SynapseSpec.from_node("cv", _conv(rng), (4, 7, 7), (6, 7, 7))
    with pytest.raises(LavaMappingError, match="^cv: kernel .* with 3 group"):
        SynapseSpec.from_node("cv", _conv(rng, cin=6, cout=6, groups=3), (4, 7, 7), (6, 5, 5))
    with pytest.raises(LavaMappingError, match="^cv: synapse kind 'sparse'"):
        SynapseSpec("cv", "sparse", (3,), (2,), np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(LavaMappingError, match="^cv: stride"):
        SynapseSpec("cv", "conv", (4, 7, 7), (6, 5, 5), rng.randn(6, 2, 3, 3), np.zeros(6), stride=0, groups=2)


def _toy(tau, partition_out="host"):
    w = np.random.RandomState(0).randn(4, 3)
    nodes = {"input": nir.Input({"input": np.array([3])}, metadata={"partition": "host"}),
             "fc": nir.Affine(w, np.ones(4)),
             "lif": nir.LIF(np.full(4, tau), np.ones(4), np.zeros(4), np.ones(4), np.zeros(4)),
             "output": nir.Output({"output": np.array([4])}, metadata={"partition": partition_out})}
    return nir.NIRGraph(nodes, [("input", "fc"), ("fc", "lif"), ("lif", "output")], metadata={})


def test_the_plan_holds_one_spec_per_synapse_and_typed_lif_parameters():
    plan = plan_lava(_toy(0.01))
    assert set(plan.synapses) == {"fc"} and plan.synapses["fc"].kind == "dense"
    p = plan.lif["lif"]
    assert isinstance(p, LifParams) and p.k == pytest.approx(0.1) and p.bias.shape == (4,)
    np.testing.assert_array_equal(plan.bias["fc"], np.ones(4))
    again = pickle.loads(pickle.dumps(plan))  # the Lava worker receives the plan pickled
    q = again.lif["lif"]
    assert (q.node, q.k, q.vth) == (p.node, p.k, p.vth) and np.array_equal(q.bias, p.bias)
    np.testing.assert_array_equal(again.synapses["fc"].matrix().toarray(), plan.synapses["fc"].matrix().toarray())


def test_a_decay_above_one_is_listed_with_every_other_problem():
    with pytest.raises(LavaMappingError, match=r"1 node\(s\) cannot be mapped to Lava: lif: LIF decay k = dt/tau = 2"):
        plan_lava(_toy(5e-4))
