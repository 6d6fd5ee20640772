"""The Lava plan's typed parts (resformer_deploy.lava.specs): LifParams and SynapseSpec check
themselves and name their node; a convolution's spec computes what torch computes, never unrolled,
and the plan's constant offsets pass through it as through the unrolled matrix (the oracle)."""
import pickle

import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from resformer_deploy.lava.plan import plan_lava
from resformer_deploy.lava.specs import LavaMappingError, LifParams, SynapseSpec
from resformer_deploy.passes.unroll_dense import window_matrix


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


GEOMETRIES = [({}, (5, 5)), ({"stride": 2, "padding": 2, "dilation": 2}, (4, 4)), ({"padding": 1}, (7, 7)),
              ({"stride": (2, 1), "padding": (1, 0)}, (4, 5))]


def _oracle(spec):
    """The unrolled connectivity (passes.unroll_dense.window_matrix): test oracle only."""
    return window_matrix(spec.weight, spec.in_shape, spec.out_shape, spec.stride, spec.padding, spec.dilation,
                         spec.groups)


@pytest.mark.parametrize("geo,out_hw", GEOMETRIES)
def test_conv_spec_computes_what_torch_computes_and_counts_the_unrolled_synapses(geo, out_hw):
    rng = np.random.RandomState(1)
    node = _conv(rng, **geo)
    node.weight[0, 1, 2, 0] = node.weight[3, 0, 1, 1] = 0.0  # zero weights make no synapse
    spec = SynapseSpec.from_node("conv", node, (4, 7, 7), (6, *out_hw))
    x = rng.randn(3, 4, 7, 7)
    st, pad = (tuple(np.broadcast_to(np.asarray(geo.get(f, d)), (2,))) for f, d in (("stride", 1), ("padding", 0)))
    want = F.conv2d(torch.from_numpy(x), torch.from_numpy(node.weight), torch.from_numpy(node.bias), st, pad,
                    geo.get("dilation", 1), 2).reshape(3, -1).numpy()
    y = spec.apply(x.reshape(3, -1))
    assert y.shape == (3, spec.n_out) and spec.kind == "conv"
    np.testing.assert_allclose(y + spec.output_bias(), want, rtol=1e-12, atol=1e-12)
    assert spec.synapse_count() == _oracle(spec).nnz  # exact, padding and zero weights included


def test_a_convolution_is_never_unrolled_by_its_spec():
    spec = SynapseSpec.from_node("cv", _conv(np.random.RandomState(0)), (4, 7, 7), (6, 5, 5))
    with pytest.raises(LavaMappingError, match=r"^cv: a convolution's synapse has no matrix here .* 2,700 synapses"):
        spec.matrix()
    with pytest.raises(LavaMappingError, match=r"^cv: synapse input of shape \(2, 195\), needs \(N, 196\)"):
        spec.apply(np.zeros((2, 195)))


def _biased_convs(geo, out_hw):
    """host input -> conv a (biased) -> conv b (biased, grouped) -> LIF: a's bias image reaches b's
    output through b's kernel, borders (padding) included."""
    rng = np.random.RandomState(3)
    a = nir.Conv2d(input_shape=(7, 7), weight=rng.randn(4, 2, 3, 3), bias=rng.randn(4), stride=1, padding=1,
                   dilation=1, groups=1)
    b = _conv(rng, **geo)
    shape_b = (6, *out_hw)
    n = int(np.prod(shape_b))
    nodes = {"input": nir.Input({"input": np.array([2, 7, 7])}, metadata={"partition": "host"}), "a": a, "b": b,
             "lif": nir.LIF(np.full(shape_b, 0.01), np.ones(shape_b), np.zeros(shape_b), np.ones(shape_b),
                            np.zeros(shape_b)),
             "output": nir.Output({"output": np.array(shape_b)}, metadata={"partition": "host"})}
    for k in ("a", "b", "lif"):
        nodes[k].metadata = {"partition": "neuromorphic"}
    g = nir.NIRGraph(nodes, [("input", "a"), ("a", "b"), ("b", "lif"), ("lif", "output")], metadata={},
                     type_check=False)
    return g, n


@pytest.mark.parametrize("geo,out_hw", GEOMETRIES)
def test_plan_carries_a_bias_through_a_convolution_as_the_unrolled_matrix_would(geo, out_hw):
    g, n = _biased_convs(geo, out_hw)
    plan = plan_lava(g)
    a, b = plan.synapses["a"], plan.synapses["b"]
    want = b.output_bias() + _oracle(b) @ a.output_bias()
    assert plan.bias["b"].shape == (n,) and np.any(_oracle(b) @ a.output_bias())
    np.testing.assert_allclose(plan.bias["b"], want, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(plan.lif["lif"].bias, plan.bias["b"])  # and the neuron integrates it


def test_dense_spec_and_its_bias():
    w = np.arange(6.0).reshape(2, 3)
    lin = SynapseSpec.from_node("lin", nir.Linear(weight=w), (3,), (2,))
    aff = SynapseSpec.from_node("aff", nir.Affine(weight=w, bias=np.array([1.0, -1.0])), (3,), (2,))
    assert lin.kind == aff.kind == "dense" and lin.synapse_count() == 5  # the zero weight is no synapse
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
