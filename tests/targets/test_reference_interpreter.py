"""The reference interpreter runs exported .nir files (read back from disk) like the PyTorch model."""
import pytest
import torch

from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.model.resformer import build_model
from resformer_deploy.errors import DeployError
from targets import get_target
from targets.base import RunRequest
from resformer_deploy.analysis.equivalence import verify_model
from resformer_deploy.model.calibration import randomize_state
from tests.conftest import DIGITS_CKPT


@pytest.mark.float32_rounding
def test_digits_model_full_split_float32():
    """float32 is not bit-identical across CPUs (folded BatchNorm rounds differently with each
    kernel), so only what holds everywhere is asserted: every sample that diverges does so first
    at a near-threshold tie (its inputs matched, so only rounding differs there), and a sample
    whose spikes all match has the same class and logits equal up to the readout's rounding."""
    ck = load_checkpoint(DIGITS_CKPT)
    split = load_digits_split()
    rep = verify_model(ck.model, split.x_test, precision="float32")
    assert rep.samples == 359 and len(rep.layers) == 20
    assert rep.verdict in ("exact", "rounding") and rep.passed
    assert rep.roots_all_ties
    assert rep.samples_identical + rep.samples_diverged == 359
    assert rep.identical_samples_prediction_agreement == 1.0
    assert rep.identical_samples_logits_max_rel_diff < 1e-4
    assert min(r.torch_rate for r in rep.layers) > 0.04  # every layer is active


def test_verdict_catches_a_real_difference():
    """A weight changed by 1 % in the graph is no rounding: its first mismatches lie far from the
    threshold, so float32 fails, naming the layer where it starts."""
    import numpy as np
    from exporters.torch_to_nir import export_model
    from resformer_deploy.analysis.equivalence import verdict
    from resformer_deploy.analysis.compare import compare_run, record_torch
    from targets import get_target
    ck = load_checkpoint(DIGITS_CKPT)
    x = load_digits_split().x_test[:16]
    rec = record_torch(ck.model.eval(), x)
    g = export_model(ck.model)
    conv = next(n for n, v in g.nodes.items() if type(v).__name__ == "Conv2d"
                and v.metadata.get("partition") != "host")
    g.nodes[conv].weight = (g.nodes[conv].weight * np.float32(1.01)).astype(np.float32)
    res = get_target("reference").run(RunRequest.of(g, x, ck.config.T, record_membranes=True))
    rep = compare_run(g, rec, res)
    assert rep.samples_diverged > 0 and not rep.roots_all_ties
    assert verdict(rep, "float32") == "fail" and verdict(rep, "float64") == "fail"


def test_sample_roots_order_is_step_then_topology():
    """Hand-made records: sample 0 flips in layer b at step 0 and in layer a at step 1 (root: b,
    step 0, a tie); sample 1 flips only in layer a at step 2 (root: a, step 2, not a tie)."""
    from resformer_deploy.analysis.compare import RootDivergence, sample_roots
    T, B, n = 3, 3, 4
    da, db = torch.zeros(T, B, n, dtype=torch.bool), torch.zeros(T, B, n, dtype=torch.bool)
    near_a, near_b = torch.zeros_like(da), torch.zeros_like(db)
    db[0, 0, 1] = near_b[0, 0, 1] = True
    da[1, 0, 2] = True
    da[2, 1, 0] = da[2, 1, 3] = True
    near_a[2, 1, 0] = True
    roots = sample_roots([("a", da, near_a), ("b", db, near_b)], B)
    assert roots == [RootDivergence(sample=0, node="b", step=0, mismatches=1, ties=1),
                     RootDivergence(sample=1, node="a", step=2, mismatches=2, ties=1)]


@pytest.fixture(scope="module")
def random_ti_224():
    """ti at 224x224 with random weights and two random images: the float64 check and the float32
    one are separate tests, so `make test`'s float32 re-runs (-m float32_rounding) repeat only the
    float32 one."""
    return (randomize_state(build_model("ti"), seed=1),
            torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0)))


def test_random_ti_224_is_exact_in_float64(random_ti_224):
    m, x = random_ti_224
    exact = verify_model(m, x, precision="float64")
    assert exact.total_mismatches == 0 and exact.first_divergence is None
    assert exact.logits_max_rel_diff < 1e-12 and exact.prediction_agreement == 1.0
    assert len(exact.layers) == 38
    active = [r for r in exact.layers if r.torch_rate > 0.01]
    assert len(active) >= 25  # the comparison exercises spiking attention and FFN layers


@pytest.mark.float32_rounding
def test_random_ti_224_float32_differs_only_by_ties(random_ti_224):
    m, x = random_ti_224
    f32 = verify_model(m, x, precision="float32")
    # float32 BN folding rounds differently; every sample's first divergence must be a tie
    assert f32.verdict in ("exact", "rounding") and f32.roots_all_ties
    assert f32.identical_samples_prediction_agreement == 1.0


@pytest.mark.parametrize("name,img,T", [("dvsg", 32, 4), ("cifar", 32, 2)])
def test_other_variants_float64_exact(name, img, T):
    m = randomize_state(build_model(name, img_size=img, T=T), seed=2)
    from resformer_deploy.analysis.equivalence import verification_inputs
    x, _ = verification_inputs(m, 2)
    rep = verify_model(m, x, precision="float64")
    assert rep.total_mismatches == 0 and rep.logits_max_rel_diff < 1e-12


def test_interpreter_input_errors():
    from exporters.torch_to_nir import export_model
    from resformer_deploy.errors import DeployError
    from targets import get_target
    m = randomize_state(build_model("digits"), seed=0).eval()
    g = export_model(m)
    with pytest.raises(DeployError, match="does not fit graph input"):
        get_target("reference").run(RunRequest.of(g, torch.zeros(2, 3, 8, 8), T=4))
    with pytest.raises(DeployError, match="unknown target 'loihi9'"):
        get_target("loihi9")


def _hand_graph():
    """Input 1x8x8 -> Conv2d 4x1x3x3 (pad 1) -> LIF 4x8x8 -> Flatten -> Affine 10x256 -> Output."""
    import nir
    import numpy as np
    rng = np.random.default_rng(0)
    one = np.ones((4, 8, 8), np.float32)
    nodes = {"x": nir.Input(input_type={"input": np.array([1, 8, 8])}),
             "conv": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
                                stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(4, np.float32)),
             "lif": nir.LIF(tau=2e-3 * one, r=one, v_leak=0 * one, v_threshold=one, v_reset=0 * one),
             "flat": nir.Flatten(input_type={"input": np.array([4, 8, 8])}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(weight=rng.normal(size=(10, 256)).astype(np.float32), bias=np.zeros(10, np.float32)),
             "y": nir.Output(output_type={"output": np.array([10])})}
    edges = [("x", "conv"), ("conv", "lif"), ("lif", "flat"), ("flat", "fc"), ("fc", "y")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_graph_costs_of_a_hand_built_graph():
    from exporters.interpreter_costs import graph_costs
    c = graph_costs(_hand_graph())
    assert c.macs == 4 * 8 * 8 * 9 + 10 * 256  # conv outputs x (Cin x kh x kw), affine out x in
    assert c.neurons == 256 and c.input_values == 64 and c.output_values == 10
    # live values, each freed after its last consumer: conv (256) + lif (256) is the most at once
    assert c.peak_live_values == 512 and c.values_total == 64 + 256 * 3 + 10 + 10
    assert c.weights == 36 + 4 + 5 * 256 + 2560 + 10 and c.weight_dtypes == {"float32": c.weights}


def test_reference_estimate_counts_what_the_run_keeps():
    """Recording spikes adds one byte per neuron, step and sample; membranes one value (8 B in
    float64); neurons counted here from a run's own spike record."""
    g = _hand_graph()
    ref = get_target("reference")
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    neurons = sum(s[0, 0].numel() for s in ref.run(RunRequest.of(g, x, 3)).spikes.values())
    est = {(s, mem): ref.estimate(RunRequest.sizing(g, 5, 3, dtype=torch.float64, record_spikes=s, record_membranes=mem))
           for s in (False, True) for mem in (False, True)}
    assert est[True, False].peak_bytes - est[False, False].peak_bytes == 3 * 5 * neurons
    assert est[False, True].peak_bytes - est[False, False].peak_bytes == 3 * 5 * neurons * 8
    assert est[False, False].seconds > 0 and "MAC" in est[False, False].basis
    with pytest.raises(DeployError, match="has no option 'batch'"):
        ref.estimate(RunRequest.sizing(g, 5, 3, batch=2))


def test_streamed_run_hands_over_every_layer_and_step_once_and_keeps_nothing():
    from exporters.torch_to_nir import export_model
    m = randomize_state(build_model("digits"), seed=0).eval()
    g = export_model(m)
    x = load_digits_split().x_test[:3]
    ref = get_target("reference")
    full = ref.run(RunRequest.of(g, x, 4, record_membranes=True))
    seen = {}

    def on_spikes(name, t, s, h):
        assert (name, t) not in seen
        seen[name, t] = (s.clone(), h.clone())
    streamed = ref.run(RunRequest.of(g, x, 4, record_spikes=False, on_spikes=on_spikes))
    assert set(seen) == {(n, t) for n in full.spikes for t in range(4)}
    for (n, t), (s, h) in seen.items():
        assert torch.equal(s, full.spikes[n][t]) and torch.equal(h, full.membranes[n][t])
    assert streamed.spikes == {} and streamed.membranes == {} and torch.equal(streamed.output, full.output)
