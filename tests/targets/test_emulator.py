"""The loihi2-emu emulator (targets/loihi2_emulator.py) computes convolutions as weight-shared
convolutions on batches, integers in float32/float64 where bounds prove it exact. Checked against
independent references: float mode against the PyTorch model (spikes equal); fixed mode against a
straightforward int64 re-computation that uses the unrolled matrix (passes/unroll_dense.window_matrix,
a test oracle only), Lava's LIF arithmetic (fixed_point/formats.lif_step) and the product's
definition (passes/dssa_lowering.exact_product) on hand-made layers and on small models of the
official topologies."""

import nir
import numpy as np
import pytest
import torch

from exporters.nir_ext import SpikeMatMul
from exporters.torch_to_nir import export_model
from resformer_deploy.analysis.compare import compare_run, record_torch
from resformer_deploy.fixed_point import formats as F
from resformer_deploy.fixed_point.network import LifQ, QuantNet, SynQ
from resformer_deploy.fixed_point.quantize import quantize_synapse
from resformer_deploy.flows.artifacts import Prepared
from resformer_deploy.flows.fixed_point import calibrate_and_quantize
from resformer_deploy.lava.plan import plan_lava
from resformer_deploy.lava.specs import SynapseSpec
from resformer_deploy.passes.dssa_lowering import exact_product
from resformer_deploy.passes.unroll_dense import window_matrix
from targets import get_target
from resformer_deploy.lava.host_partition import host_inputs, host_readout
from resformer_deploy.fixed_point.emulator import InexactError, LavaSemantics, exact_dtype
from targets.reference import CompiledGraph
from targets.base import RunRequest
from tests.support.small_models import small_inputs, small_model


# ---------------------------------------------------------------- the independent re-computation
def _int_matrix(spec, mant):
    """The unrolled int64 connectivity of a synapse's mantissas (the oracle's form)."""
    if spec.kind == "dense":
        return mant.tocsr().astype(np.int64)
    m = window_matrix(np.asarray(mant, dtype=np.float64), spec.in_shape, spec.out_shape, spec.stride, spec.padding,
                      spec.dilation, spec.groups)
    return m.astype(np.int64)


def oracle(plan, q, host_values, T):
    """Lava's stock fixed-point arithmetic, straight: int64 everywhere, one synapse = one sparse
    matrix product, then for Sparse << / >> exp, for Conv the stock model's own 24-bit wrap
    (lava.proc.conv.utils.signed_clamp), LIF = formats.lif_step, products = their definition on
    the integers. -> (spikes {LIF: bool [T, N, size]}, outputs {node: int64 [T, N, size]}, event counts)."""
    from lava.proc.conv.utils import signed_clamp
    g = plan.graph
    preds = {n: [a for a, b in g.edges if b == n] for n in plan.neuro}
    mats = {n: _int_matrix(plan.synapses[n], q.syn[n].mant) for n in plan.synapses}
    state, spikes, outs, events = {}, {}, {}, {}

    def count(n, kind, c):
        if c:
            events.setdefault(n, {}).setdefault(kind, 0)
            events[n][kind] += int(c)

    for t in range(T):
        val = {h: np.asarray(v[:, t], dtype=np.int64) for h, v in host_values.items()}
        for n in plan.neuro:
            node = g.nodes[n]
            if n in plan.synapses and plan.synapses[n].kind == "conv":  # stock Conv: no exponent, wraps
                acc = np.asarray(mats[n] @ val[preds[n][0]].T).T
                out = signed_clamp(acc, bits=24)
                count(n, "conv_wrap", (out != acc).sum())
            elif n in plan.synapses:
                out = F.shift(np.asarray(mats[n] @ val[preds[n][0]].T).T, q.syn[n].exp)
            elif isinstance(node, nir.Scale):
                out = sum(val[p] for p in preds[n])
            elif isinstance(node, SpikeMatMul):
                out = exact_product(node, val[node.lhs] + q.lhs_bias[node.lhs], val[node.rhs])
            else:
                a = sum(val[p] for p in preds[n])
                lq = q.lif[n]
                _, v, s, wrapped, sat = F.lif_step(state.get(n, np.zeros_like(a)), a, lq.dv, lq.bias_eff, lq.vth)
                count(n, "u_wrap", wrapped)
                count(n, "v_saturation", sat)
                state[n] = np.where(s, 0, v)
                spikes.setdefault(n, []).append(s)
                val[n] = s.astype(np.int64)
                continue
            count(n, "graded_overflow", (np.abs(out) >= F.STATE_MAX).sum())
            val[n] = out
        for o in plan.outputs:
            outs.setdefault(o, []).append(val[o])
    return {n: np.stack(v) for n, v in spikes.items()}, {n: np.stack(v) for n, v in outs.items()}, events


def assert_same(run, ref_spikes, ref_outs, ref_events):
    assert set(run.spikes) == set(ref_spikes)
    for n, s in ref_spikes.items():
        np.testing.assert_array_equal(run.spikes[n], s, err_msg=n)
    for n, o in ref_outs.items():
        np.testing.assert_array_equal(run.outputs[n], o, err_msg=n)
    assert run.saturation == ref_events


# ---------------------------------------------------------------- hand-made layers, every arithmetic path
def _lif(shape, tau):
    return nir.LIF(np.full(shape, tau), np.ones(shape), np.zeros(shape), np.ones(shape), np.zeros(shape))


def _hand_graph():
    """host input (graded) -> c1 (3x3, pad 1) -> l1 (dv 2048) -> c2 (3x2, stride (2,1), 2 groups) and
    c2b (the same window, 1 group) -> junction -> l2 (dv 1365: float64 decay) -> c3 (pointwise) -> host."""
    rng = np.random.RandomState(0)
    nodes = {
        "input": nir.Input({"input": np.array([3, 9, 9])}, metadata={"partition": "host"}),
        "c1": nir.Conv2d((9, 9), rng.randn(4, 3, 3, 3), 1, 1, 1, 1, np.zeros(4)),
        "l1": _lif((4, 9, 9), 2e-3),
        "c2": nir.Conv2d((9, 9), rng.randn(6, 2, 3, 2), (2, 1), (1, 0), 1, 2, np.zeros(6)),
        "c2b": nir.Conv2d((9, 9), rng.randn(6, 4, 3, 2), (2, 1), (1, 0), 1, 1, np.zeros(6)),
        "add": nir.Scale(np.ones((6, 5, 8))),
        "l2": _lif((6, 5, 8), 3e-3),
        "c3": nir.Conv2d((5, 8), rng.randn(5, 6, 1, 1), 1, 0, 1, 1, np.zeros(5)),
        "output": nir.Output({"output": np.array([5, 5, 8])}, metadata={"partition": "host"}),
    }
    for k, v in nodes.items():
        if k not in ("input", "output"):
            v.metadata = {"partition": "neuromorphic"}
    edges = [("input", "c1"), ("c1", "l1"), ("l1", "c2"), ("l1", "c2b"), ("c2", "add"), ("c2b", "add"),
             ("add", "l2"), ("l2", "c3"), ("c3", "output")]
    return nir.NIRGraph(nodes, edges, metadata={}, type_check=False)  # NIR 1.0.8 mistypes non-square kernels


CONVS = ("c1", "c2", "c2b", "c3")


def _hand_quant(plan, vth=(40, 300), bias_mant=(-50, 900)):
    rng = np.random.RandomState(1)
    q = QuantNet(plan, scale={})
    for n in CONVS:  # exponent 0: the stock Conv models ignore any other
        spec = plan.synapses[n]
        mant = 2 * rng.randint(-128, 128, size=spec.weight.shape).astype(np.int64)  # mixed sign: even
        q.syn[n] = SynQ(n, "conv", mant, 0, 0, 0.0, 0.0, spec.synapse_count())
    for (n, th, b) in zip(("l1", "l2"), vth, bias_mant):
        size = plan.lif[n].size
        dv = int(round(plan.lif[n].k * 4096))
        q.lif[n] = LifQ(n, dv, th, rng.randint(-abs(b), abs(b) + 1, size).astype(np.int64), 2, 0, 0.0, 0.0)
    return q


@pytest.fixture(scope="module")
def hand():
    plan = plan_lava(_hand_graph())
    return plan, _hand_quant(plan)


@pytest.mark.parametrize("x_max,c1_dtype", [(60, "float32"), (2 ** 13, "float64")])
def test_fixed_point_layers_equal_the_integer_recomputation(hand, x_max, c1_dtype):
    """Graded input of small and large magnitude (float32 and float64 accumulation of c1), spike
    inputs, a strided grouped kernel, a junction, a non-power-of-two decay; at 2^13 c1's sums
    pass 24 bits and wrap as the stock Conv wraps them, and the current u wraps, as the counts show."""
    plan, q = hand
    T, N = 4, 5
    x = np.random.RandomState(2).randint(-x_max, x_max + 1, size=(N, T, 3 * 81)).astype(np.int64)
    run = LavaSemantics(plan, q).run({"input": x}, T)
    ref = oracle(plan, q, {"input": x}, T)
    assert_same(run, *ref)
    assert run.dtypes["c1"] == c1_dtype and run.dtypes["c2"] == run.dtypes["c3"] == "float32"  # spikes in
    rates = [s.mean() for s in ref[0].values()]
    assert min(rates) > 0.02 and max(rates) < 0.98, rates  # both layers spike, and not always
    if x_max > 2 ** 12:
        assert ref[2]["c1"]["conv_wrap"] > 0 and ref[2]["l1"]["u_wrap"] > 0
    else:
        assert ref[2] == {}


def test_membrane_saturation_is_counted_as_lava_does(hand):
    plan, _ = hand
    q = _hand_quant(plan, vth=(2 ** 17 - 1, 2 ** 17 - 1), bias_mant=(4095, 4095))  # v climbs, hardly spikes
    x = np.random.RandomState(3).randint(0, 2 ** 10, size=(3, 6, 3 * 81)).astype(np.int64)
    run = LavaSemantics(plan, q).run({"input": x}, 6)
    ref = oracle(plan, q, {"input": x}, 6)
    assert_same(run, *ref)
    assert ref[2]["l1"]["v_saturation"] > 0


def test_the_float32_decay_equals_lavas_for_every_decay_and_the_whole_state_range():
    """_LifFixed keeps v in float32 and splits a decay that is not a power of two (v c reaches 2^35):
    against Lava's LIF arithmetic (formats.lif_step, int64) for every dv and states from
    -(2^23 - 1) to 2^23 - 1 (the saturated ends, values near multiples of 4096 and random ones),
    with inputs, biases and spikes (reset to 0) in play."""
    from types import SimpleNamespace
    from resformer_deploy.fixed_point.emulator import _LifFixed
    rng = np.random.RandomState(7)
    vmax = F.STATE_MAX - 1
    near = np.arange(-2048, 2049)[:, None] * 4096 + np.array([-4095, -1, 0, 1, 4095])
    v0 = np.unique(np.concatenate([[-vmax, vmax, -vmax + 1, vmax - 1, 0], near.ravel(),
                                   rng.randint(-vmax, vmax + 1, 2000)]))
    v0 = v0[np.abs(v0) <= vmax]
    a = rng.randint(-2 ** 16, 2 ** 16, v0.size)
    bias = rng.randint(-2 ** 18, 2 ** 18, v0.size)
    for dv in range(F.DECAY_UNITY):
        q = SimpleNamespace(node="l", dv=dv, vth=2 ** 15, bias_eff=bias)
        lif = _LifFixed(q, v0.size)
        w, _, s, wrapped, sat = lif.step(torch.from_numpy(v0.astype(np.float32)), float(vmax), torch.from_numpy(
            a.astype(np.float32)), float(2 ** 16))
        _, v_ref, s_ref, wrapped_ref, sat_ref = F.lif_step(v0, a, dv, bias, q.vth)
        np.testing.assert_array_equal(w.numpy(), np.where(s_ref, 0, v_ref), err_msg=f"dv {dv}")
        np.testing.assert_array_equal(s.numpy(), s_ref, err_msg=f"dv {dv}")
        assert (wrapped, sat) == (wrapped_ref, sat_ref)


def test_samples_run_in_chunks_give_the_same_result(hand):
    plan, q = hand
    x = np.random.RandomState(4).randint(-99, 100, size=(7, 3, 3 * 81)).astype(np.int64)
    whole = LavaSemantics(plan, q).run({"input": x}, 3)
    calls = []
    parts = LavaSemantics(plan, q).run({"input": x}, 3, batch=3, progress=calls.append)
    assert len(calls) == 3 * 3  # ceil(7 / 3) chunks x 3 steps
    for n in whole.spikes:
        np.testing.assert_array_equal(whole.spikes[n], parts.spikes[n])
    np.testing.assert_array_equal(whole.outputs["c3"], parts.outputs["c3"])


def test_the_exactness_guard_refuses_sums_beyond_float64_integers(hand):
    plan, q = hand
    assert exact_dtype(2.0 ** 24 - 1, "a") == torch.float32 and exact_dtype(2.0 ** 24, "a") == torch.float64
    with pytest.raises(InexactError, match=r"^b: integer partial sums up to 9\.01e\+15 exceed 2\^53"):
        exact_dtype(2.0 ** 53, "b")
    # c1: 27 taps of |mantissa| <= 256; inputs of 2^46 give partial sums up to ~2^57
    x = np.full((1, 1, 3 * 81), 2 ** 46, dtype=np.int64)
    with pytest.raises(InexactError, match=r"^c1: integer partial sums up to .* exceed 2\^53"):
        LavaSemantics(plan, q).run({"input": x}, 1)
    # exact, but beyond the int32 the stock Conv model casts its float64 sum to (undefined there)
    x = np.full((1, 1, 3 * 81), 2 ** 30, dtype=np.int64)
    with pytest.raises(InexactError, match=r"^c1: convolution sums up to .* exceed int32"):
        LavaSemantics(plan, q).run({"input": x}, 1)


@pytest.mark.parametrize("transpose,consecutive", [(True, True), (False, True), (True, False), (False, False)])
def test_products_follow_the_nodes_definition(transpose, consecutive):
    """The emulator's batched product against the node's definition (exact_product) on integers:
    groups of consecutive rows (DSSA's heads, taken as views) and rows in any order."""
    from resformer_deploy.fixed_point.emulator import _matmul_groups
    rng = np.random.RandomState(6)
    G, r = 2, 3
    k = r if transpose else 5  # contraction length: L_g is (rows x 5) transposed, or not
    if consecutive:
        rows_l, rows_r = np.arange(1, 1 + G * r).reshape(G, r), np.arange(G * k).reshape(G, k)
    else:
        rows_l, rows_r = rng.permutation(8)[:G * r].reshape(G, r), rng.permutation(10)[:G * k].reshape(G, k)
    mm = SpikeMatMul(lhs="a", rhs="b", lhs_shape=np.array([8 * 5]), rhs_shape=np.array([10 * 6]),
                     lhs_view=np.array([8, 5]), rhs_view=np.array([10, 6]), lhs_rows=rows_l, rhs_rows=rows_r,
                     transpose_lhs=transpose, output_shape=np.array([G * (5 if transpose else r) * 6]))
    lhs = rng.randint(-2 ** 20, 2 ** 20, size=(4, 40)).astype(np.int64)
    rhs = (rng.rand(4, 60) < 0.4).astype(np.int64)
    got = _matmul_groups(mm, torch.from_numpy(lhs).double(), torch.from_numpy(rhs).double())
    np.testing.assert_array_equal(got.numpy(), exact_product(mm, lhs, rhs))


# ---------------------------------------------------------------- quantization of kernels
def test_a_kernel_is_quantized_once_per_weight_even_for_mixed_signs():
    rng = np.random.RandomState(5)
    w = rng.randn(3, 2, 3, 3)
    w[0, 0, 0, 0] = 9.0  # the largest weight sits on a tap that only ever meets padding (5x5 input, stride 4)
    spec = SynapseSpec("k", "conv", (2, 5, 5), (3, 2, 2), w, np.zeros(3), stride=4, padding=1)
    s = quantize_synapse(spec, 7.5)
    target = w * 7.5
    assert s.exp == 0  # the stock Conv models ignore weight_exp: the mantissas are the integer weights
    np.testing.assert_array_equal(s.mant, np.round(target / 2) * 2)
    assert s.kind == "conv" and s.synapses == spec.synapse_count() < w.size * 4
    pos = quantize_synapse(SynapseSpec("p", "conv", (2, 5, 5), (3, 2, 2), np.abs(w), np.zeros(3), stride=4,
                                       padding=1), 7.5)
    np.testing.assert_array_equal(pos.mant, np.round(np.abs(target)))  # one sign: odd allowed
    assert pos.exp == 0 and np.any(pos.mant % 2)
    # a gain beyond 8 bits (9 x 40 = 360) is clipped and counted, never shifted (the quantizer's
    # scale limits keep it from happening)
    big = quantize_synapse(spec, 40.0)
    want = np.round(w * 40.0 / 2) * 2
    assert big.exp == 0 and big.saturated == int(((want > 254) | (want < -256)).sum()) >= 1
    np.testing.assert_array_equal(big.mant, np.clip(want, -256, 254))


# ---------------------------------------------------------------- small official-topology models
@pytest.fixture(scope="module", params=["cifar16", "dvsg16"])
def small(request):
    m = small_model(request.param).double()
    g = export_model(m, "float64")
    return request.param, m, g


def test_float_mode_reproduces_the_pytorch_model(small):
    name, m, g = small
    T, x = m.config.T, small_inputs(m, 3, seed=9).double()
    plan = plan_lava(g)
    host = CompiledGraph(g, torch.float64)
    run = LavaSemantics(plan).run(host_inputs(plan, host, x, T), T)
    res = type("R", (), {})()
    res.spikes = {n: torch.from_numpy(s).reshape(T, 3, *plan.shapes[n]) for n, s in run.spikes.items()}
    res.membranes = {}
    res.output = host_readout(plan, host, run.outputs, T, 3)
    rep = compare_run(g, record_torch(m, x), res)
    assert rep.total_mismatches == 0 and len(rep.layers) == len(plan.lif) and rep.logits_max_rel_diff < 1e-9
    assert sum(s.sum() for s in run.spikes.values()) > 0


def test_fixed_mode_equals_the_integer_recomputation(small):
    """The whole network (convolutions, DSSA products, junctions, LIF and PLIF decays) against the
    int64 re-computation, on inputs other than the calibration ones."""
    name, m, g = small
    T = m.config.T
    q = calibrate_and_quantize(g, small_inputs(m, 4, seed=1).double(), T)
    x = small_inputs(m, 3, seed=9).double()
    host = CompiledGraph(g, torch.float64)
    vals = q.quantize_inputs(host_inputs(q.plan, host, x, T))
    run = LavaSemantics(q.plan, q).run(vals, T)
    ref = oracle(q.plan, q, vals, T)
    assert_same(run, *ref)
    assert any(isinstance(q.plan.graph.nodes[n], SpikeMatMul) for n in q.plan.neuro)
    lifs = [n for n in ref[0]]
    assert sum(ref[0][n].any() for n in lifs) == len(lifs)  # every layer spikes
    kinds = {s.kind for s in q.syn.values()}
    assert kinds == {"conv"} and set(run.dtypes.values()) <= {"float32", "float64"}
    from resformer_deploy.analysis.equivalence import estimate_run
    tgt = get_target("loihi2-emu")
    est = estimate_run(tgt, g, 3, T, Prepared(quantized_net=q), dtype=torch.float64, record_spikes=True)
    recorded = sum(p.size for p in q.plan.lif.values()) * 3 * T
    assert est.seconds > 0 and est.peak_bytes >= recorded
    assert est.peak_bytes - tgt.estimate(RunRequest.sizing(g, 3, T, quant=q, record_spikes=False)).peak_bytes == recorded
