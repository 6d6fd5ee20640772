"""NIR -> Lava: delay balancing, mapping errors, DSSA lowerings, equivalence on Loihi2SimCfg."""
import time

import nir
import numpy as np
import pytest
import torch

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.lava.plan import LavaMappingError, plan_lava
from exporters.torch_to_nir import export_model
from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.model.config import ResformerConfig
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.errors import DeployError
from resformer_deploy.model.resformer import build_model
from resformer_deploy.passes.dssa_lowering import exact_product, lower_product, verify_lowering
from resformer_deploy.analysis.equivalence import verify_model
from targets import get_target
from targets.base import RunRequest
from resformer_deploy.model.calibration import randomize_state
from tests.conftest import DIGITS_CKPT
from tests.support.lava_util import descendants


@pytest.fixture(scope="module")
def digits():
    return load_checkpoint(DIGITS_CKPT).model


def test_latencies_and_delays_of_the_digits_graph(digits):
    g = export_model(digits)
    plan = plan_lava(g, "fused")
    lat, dl = plan.latency, plan.edge_delay
    assert lat["layers_0_0_activation_in"] == 0 and lat["layers_0_0_W"] == 1
    assert lat["layers_0_0_matmul1"] == 1 and dl[("layers_0_0_activation_in", "layers_0_0_matmul1")] == 1
    assert dl[("layers_0_0_W", "layers_0_0_matmul2")] == 0  # y and attention spikes arrive together
    assert lat["layers_0_0_add"] == 2 and dl[("prologue_0", "layers_0_0_add")] == 2  # stream waits for branch
    assert lat["layers_0_1_inner_add"] == lat["layers_0_1_up_1"] + 1
    assert plan.total_latency == 17
    assert plan_lava(g, "synaptic").total_latency == 17 + 2 * 6  # every product is on the critical path
    # every junction's inputs are aligned
    for n, node in g.nodes.items():
        if n in plan.neuro and isinstance(node, (nir.Scale, SpikeMatMul)):
            arr = {a: lat.get(a, 0) + dl[(a, n)] for a, b in g.edges if b == n}
            assert len(set(arr.values())) == 1, (n, arr)


def test_bias_reaches_the_right_neurons(digits):
    g = export_model(digits)
    plan = plan_lava(g)
    # activation_out's input is the fused product (no bias); up_0 reads stream = stem (host) + Wproj
    assert np.all(plan.lif["layers_0_0_activation_out"].bias == 0)
    wproj_bias = np.repeat(g.nodes["layers_0_0_Wproj"].bias.astype(np.float64), 64)
    np.testing.assert_array_equal(plan.lif["layers_0_1_up_0"].bias, wproj_bias)
    assert plan.lif["layers_0_0_activation_in"].vth == np.nextafter(2.0, 0)  # >= 1 at k = 1/2


def test_unmappable_graph_lists_every_problem_before_any_process(digits):
    g = export_model(digits)
    nodes = dict(g.nodes)
    lif = nodes["layers_0_1_up_0"]
    tau = np.array(lif.tau)
    tau.flat[0] *= 2
    nodes["layers_0_1_up_0"] = nir.LIF(tau=tau, r=lif.r, v_leak=lif.v_leak, v_threshold=lif.v_threshold,
                                       v_reset=lif.v_reset + 0.5, metadata=dict(lif.metadata))
    thr = nir.Threshold(threshold=np.ones((16, 8, 8)))
    thr.metadata = {"partition": "neuromorphic"}
    nodes["layers_0_0_add"] = thr
    bad = nir.NIRGraph(nodes=nodes, edges=list(g.edges), metadata=dict(g.metadata), type_check=False)
    before = set(descendants())
    with pytest.raises(LavaMappingError) as e:
        get_target("lava-cpu").run(RunRequest.of(bad, torch.zeros(1, 1, 8, 8), 4))
    msg = str(e.value)
    assert "3 node(s) cannot be mapped" in msg
    assert "layers_0_0_add: Threshold has no Lava mapping" in msg
    assert "layers_0_1_up_0: LIF v_reset must be 0.0" in msg and "layers_0_1_up_0: LIF tau must be uniform" in msg
    assert set(descendants()) == before


def test_synaptic_lowering_costs_and_self_verification(digits):
    g = export_model(digits)
    plan = plan_lava(g)
    mm = g.nodes["layers_1_1_matmul1"]
    low = lower_product("layers_1_1_matmul1", mm, plan.bias[mm.lhs])
    c = low.cost["synaptic"]
    assert c["product_neurons"] == 2 * 4 * 16 * 16  # heads x Np x N x d
    assert c["synapses"] == low.sel_lhs.nnz + low.sel_rhs.nnz + low.reduce.nnz + low.bias_term.nnz
    assert low.cost["fused"]["processes"] == 1 and c["latency_steps"] == 2
    rng = np.random.RandomState(1)
    lhs0 = rng.randn(3, low.sel_lhs.shape[1])
    rhs = (rng.rand(3, low.sel_rhs.shape[1]) < 0.3).astype(float)
    np.testing.assert_allclose(low.evaluate(lhs0, rhs), exact_product(mm, lhs0 + low.lhs_bias, rhs), atol=1e-12)
    v = verify_lowering(low, mm, recorded=[(lhs0, rhs)])
    assert v["max_rel_error_random"] < 1e-12 and v["recorded_cases"] == 1
    low.reduce = low.reduce.tolil()
    low.reduce[0, 0] = 0.5  # a wrong synapse
    low.reduce = low.reduce.tocsr()
    with pytest.raises(DeployError, match="differs from the exact product.*refusing"):
        verify_lowering(low, mm)
    with pytest.raises(DeployError, match="not binary"):
        verify_lowering(lower_product("x", mm, plan.bias[mm.lhs]), mm, recorded=[(lhs0, rhs * 0.5)])


@pytest.mark.parametrize("dssa", ["fused", "synaptic"])
def test_lava_reproduces_pytorch_on_digits(digits, dssa):
    split = load_digits_split()
    x = split.x_test[:5]
    before = set(descendants())
    rep = verify_model(digits, x, target="lava-cpu", precision="float64", dssa=dssa)
    assert rep.total_mismatches == 0 and rep.prediction_agreement == 1.0
    assert rep.logits_max_rel_diff < 1e-12 and len(rep.layers) == 20
    assert rep.target_info["processes"] == (86 if dssa == "fused" else 119)
    from targets.lava_worker import wiring  # the cost model's counts, from the plan alone
    w = wiring(plan_lava(export_model(digits), dssa), 5, digits.config.T)
    assert (w["processes"], w["process_kinds"]) == (86 if dssa == "fused" else 119, rep.target_info["process_kinds"])
    assert rep.target_info["channel_bytes"] == 8 * w["channel_values"]
    if dssa == "synaptic":
        products = rep.target_info["products"]
        assert len(products) == 6 and all(p["verification"]["recorded_cases"] == 1 for p in products.values())
    time.sleep(0.5)
    assert set(descendants()) <= before  # runtime stopped, no orphan processes


@pytest.mark.float32_rounding
def test_lava_float32_deployment_file(digits):
    rep = verify_model(digits, load_digits_split().x_test[:4], target="lava-cpu", precision="float32")
    # float32 graph vs float32 PyTorch round differently (folded BN): only tie-rooted divergence holds
    assert rep.verdict in ("exact", "rounding") and rep.roots_all_ties
    assert rep.identical_samples_prediction_agreement == 1.0 and len(rep.layers) == 20


def test_small_cifar_style_model_end_to_end():
    cfg = ResformerConfig(planes=(8, 16, 32), num_heads=(1, 2, 2), blocks=(1, 1, 1), stem="conv3x3",
                          in_channels=3, num_classes=10, img_size=16, T=3, group_size=8, name="cifar-small")
    m = randomize_state(build_model(cfg), seed=4, bias_mean=0.3)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    rep = verify_model(m, x, target="lava-cpu", precision="float64", dssa="fused")
    assert rep.total_mismatches == 0 and rep.logits_max_rel_diff < 1e-12
    assert sum(r.torch_rate > 0.01 for r in rep.layers) >= 12


def test_interrupt_stops_the_runtime(digits):
    g = export_model(digits)
    before = set(descendants())
    calls = []

    def progress(k):
        calls.append(k)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get_target("lava-cpu").run(RunRequest.of(g, load_digits_split().x_test[:3], 4, progress=progress))
    assert calls  # the run had started
    time.sleep(1.0)
    assert set(descendants()) <= before


def test_stalled_run_is_killed_retried_and_reported(digits):
    from targets.lava_cpu import LavaRunError
    g = export_model(digits)
    before = set(descendants())
    t0 = time.time()
    with pytest.raises(LavaRunError, match="stalled twice"):
        # 0.3 s without a simulated step counts as a stall: worker start-up alone exceeds it
        get_target("lava-cpu").run(RunRequest.of(g, load_digits_split().x_test[:2], 4, stall_timeout=0.3))
    assert time.time() - t0 < 30
    time.sleep(0.5)
    assert set(descendants()) <= before  # both attempts' process groups were killed


@pytest.mark.parametrize("name", ["ti", "l", "cifar", "dvsg"])
def test_planner_handles_every_variant(name):
    g = export_model(randomize_state(build_model(name), seed=0).eval())
    for dssa, extra in (("fused", 0), ("synaptic", 2)):
        plan = plan_lava(g, dssa)
        assert len(plan.lif) == 38 and plan.outputs == ["layers_2_6_add"]
        # critical path: 2 downsample hops; per DSSA W and Wproj (+2 per product when synaptic);
        # per GWFFN up, grouped conv and down
        assert plan.total_latency == 2 + 6 * (2 + 2 * extra) + 6 * 3
