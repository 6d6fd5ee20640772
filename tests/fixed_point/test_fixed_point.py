"""Loihi 2 fixed point: number formats, the quantization pass, the emulator against Lava."""
import dataclasses
import json
import os

import nir
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from click.testing import CliRunner

from exporters.torch_to_nir import export_model
from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.cli.main import main
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.errors import DeployError
from resformer_deploy.flows.artifacts import Prepared
from resformer_deploy.flows.fixed_point import calibrate_and_quantize, calibration_inputs
from resformer_deploy.fixed_point.quantize import scale_groups
from resformer_deploy.fixed_point import formats as F
from targets import get_target
from resformer_deploy.fixed_point.emulator import LavaSemantics
from resformer_deploy.lava.host_partition import host_inputs
from targets.reference import CompiledGraph
from targets.base import RunRequest
from tests.conftest import DIGITS_CKPT
from tests.support.lava_util import descendants


# ---------------------------------------------------------------- number formats
def _lava_weight_processing(mant):
    """What Lava's bit-accurate Sparse does to weights before use (clip, then truncate)."""
    from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights
    m = sp.csr_matrix(mant.reshape(1, -1).astype(np.int32))
    mode = determine_sign_mode(m)
    return truncate_weights(clip_weights(m, mode, num_bits=8), mode, 8).toarray().ravel()


@pytest.mark.parametrize("seed,scale,sign", [(0, 1.0, 0), (1, 1e3, 0), (2, 1e-3, 0), (3, 50.0, 1), (4, 7.0, -1)])
def test_weight_mantissas_fit_and_survive_lavas_weight_processing(seed, scale, sign):
    w = np.random.RandomState(seed).randn(400) * scale
    if sign:
        w = np.abs(w) * sign
    mant, exp, sat = F.quantize_weights(w)
    assert sat == 0 and F.WEIGHT_EXP_RANGE[0] <= exp <= F.WEIGHT_EXP_RANGE[1]
    if sign == 0:
        assert np.all(mant % 2 == 0) and mant.min() >= -256 and mant.max() <= 254
    else:
        assert np.abs(mant).max() <= 255
    # the exponent is the smallest that fits: one less would overflow the mantissa
    top = 254 if sign == 0 else 255
    if exp > F.WEIGHT_EXP_RANGE[0]:
        assert np.abs(w).max() / 2.0 ** (exp - 1) > top
    step = 2.0 ** exp * (2 if sign == 0 else 1)
    assert np.abs(mant * 2.0 ** exp - w).max() <= step / 2 + 1e-9
    nz = mant != 0
    np.testing.assert_array_equal(_lava_weight_processing(mant[nz]), mant[nz])  # Lava keeps them exactly


def test_weight_saturation_is_counted():
    w = np.array([1.0, -3.0, 2.0 ** 20])  # beyond 254 * 2^7
    mant, exp, sat = F.quantize_weights(w)
    assert exp == F.WEIGHT_EXP_RANGE[1] and sat == 1 and mant.max() == 254


def test_bias_split_ranges_and_saturation():
    b = np.array([0.0, 5.0, -4096.0, 4095.0, 100000.0, -300000.0])
    mant, exp, sat = F.split_bias(b)
    assert mant.min() >= -4096 and mant.max() <= 4095 and 0 <= exp <= 7 and sat == 0
    assert np.abs((mant << exp) - b).max() <= 2 ** exp / 2
    _, exp2, sat2 = F.split_bias(np.array([4095.0 * 2 ** 9]))
    assert exp2 == 7 and sat2 == 1


def test_bias_split_on_netx_grid():
    """min_exp 6 (netx's fixed bias_exp): mantissas of 2^6, rounded to the nearest; a bias too large
    for exponent 6 still takes exponent 7."""
    b = np.array([0.0, 31.0, 33.0, -97.0, 64.0 * 4095])
    mant, exp, sat = F.split_bias(b, F.NETX_BIAS_EXP)
    assert exp == 6 and mant.tolist() == [0, 0, 1, -2, 4095] and sat == 0
    _, exp7, _ = F.split_bias(np.array([64.0 * 4096 * 1.5]), F.NETX_BIAS_EXP)
    assert exp7 == 7


def test_lif_step_hand_computed():
    # du = 4095 -> u = a << 6; v decays by (4096 - dv) / 4096 rounded toward zero
    u, v, s, wr, sat = F.lif_step(np.array([-3, 3, 100]), np.array([0, 0, 1]), 2048, np.array([0, 0, 0]), 1)
    assert v.tolist() == [-1, 1, 50 + 64] and u.tolist() == [0, 0, 64] and s.tolist() == [False, False, True]
    # threshold: v > vth << 6 (strict)
    _, v, s, _, _ = F.lif_step(np.array([0, 0]), np.array([1, 1]), 0, np.array([0, 1]), 1)
    assert v.tolist() == [64, 65] and s.tolist() == [False, True]
    # u wraps beyond 24 bits (2^17 << 6 = 2^23 is still kept), v saturates at +-(2^23 - 1)
    a = np.array([2 ** 17, 2 ** 17 + 1])
    u, v, s, wr, sat = F.lif_step(np.array([0, 0]), a, 0, np.array([0, 0]), 10 ** 5)
    assert u.tolist() == [2 ** 23, 2 ** 23 + 64 - 2 ** 24] and wr == 1
    _, v, _, _, sat = F.lif_step(np.array([2 ** 23 - 10]), np.array([1]), 0, np.array([0]), 10 ** 5)
    assert v.tolist() == [2 ** 23 - 1] and sat == 1


# ---------------------------------------------------------------- quantization pass on the shipped model
@pytest.fixture(scope="module")
def digits_graph():
    m = load_checkpoint(DIGITS_CKPT).model.double().eval()
    return m, export_model(m, "float64")


@pytest.fixture(scope="module")
def quant(digits_graph):
    m, g = digits_graph
    xc, src = calibration_inputs((1, 8, 8), 128)
    return calibrate_and_quantize(g, xc.double(), m.config.T, source=src)


def test_calibration_uses_the_training_split_only():
    split = load_digits_split()
    xc, src = calibration_inputs((1, 8, 8), 64)
    assert "training" in src and torch.equal(xc, split.x_train[:64])


def test_quantized_parameters_fit_loihi2_formats(quant):
    plan = quant.plan
    for n, s in quant.syn.items():
        m = s.values
        assert F.WEIGHT_EXP_RANGE[0] <= s.exp <= F.WEIGHT_EXP_RANGE[1], n
        mixed = m.min() < 0 < m.max()
        assert (np.all(m % 2 == 0) and m.min() >= -256 and m.max() <= 254) if mixed else np.abs(m).max() <= 255, n
    for n, q in quant.lif.items():
        assert 0 < q.vth <= F.VTH_MAX and 0 <= q.dv < 4096 and 0 <= q.bias_exp <= 7, n
        assert q.bias_mant.min() >= -4096 and q.bias_mant.max() <= 4095, n
        k = plan.lif[n].k
        assert abs(q.dv / 4096 - k) < 1 / 4096  # tau = 2: exactly 2048
    assert quant.saturation_total() == 0


def test_biases_are_finest_by_default_and_on_netx_grid_when_asked(quant, digits_graph):
    """Default: every LIF bias within half a unit of 64 S b at its smallest exponent. netx_bias_grid:
    a LIF fed by one convolution alone has bias 64 round(S b) (netx's bias_exp 6), the rest as before."""
    plan, g = quant.plan, quant.plan.graph
    for n, q in quant.lif.items():
        want = plan.lif[n].bias * quant.scale[n] * 64
        assert np.abs(q.bias_eff - want).max() <= 2 ** q.bias_exp / 2, n
        assert q.bias_exp == 0 or np.abs(want).max() > 4095 * 2 ** (q.bias_exp - 1), n  # no coarser than needed
    m, graph = digits_graph
    xc, src = calibration_inputs((1, 8, 8), 32)
    qx = calibrate_and_quantize(graph, xc.double(), m.config.T, source=src, netx_bias_grid=True)
    assert qx.calibration["netx_bias_grid"] is True and quant.calibration["netx_bias_grid"] is False
    conv_fed = 0
    for n, q in qx.lif.items():
        preds = [a for a, b in g.edges if b == n]
        want = qx.plan.lif[n].bias * qx.scale[n] * 64
        if len(preds) == 1 and preds[0] in plan.synapses and plan.synapses[preds[0]].kind == "conv" \
                and not plan.edge_delay.get((preds[0], n)):
            conv_fed += 1
            assert q.bias_exp == 6 and np.array_equal(q.bias_eff, np.round(want / 64).astype(np.int64) * 64), n
        else:
            assert np.abs(q.bias_eff - want).max() <= 2 ** q.bias_exp / 2, n
    assert conv_fed >= 5


def test_scale_groups_share_units_where_integers_are_added(quant):
    g = quant.plan.graph
    groups = scale_groups(quant.plan)
    for n in quant.plan.neuro:
        node = g.nodes[n]
        preds = [a for a, b in g.edges if b == n]
        if isinstance(node, nir.Scale):  # residual junction: all summands in one unit
            assert len({quant.scale[p] for p in preds} | {quant.scale[n]}) == 1, n
        if isinstance(node, nir.LIF):
            assert quant.scale[n] == quant.scale[preds[0]], n
    assert sum(len(v) for v in groups.values()) == len(set().union(*groups.values()))
    for grp in quant.groups:  # powers of two, and each states what limited it
        assert np.log2(grp.scale) == grp.log2_scale and grp.limited_by


def test_scales_keep_calibrated_state_inside_24_bits(quant, digits_graph):
    m, g = digits_graph
    host = CompiledGraph(g, torch.float64)
    xc, _ = calibration_inputs((1, 8, 8), 128)
    stats = LavaSemantics(quant.plan).run(host_inputs(quant.plan, host, xc.double(), m.config.T), m.config.T,
                                          record_spikes=False, stats=True)
    for n in quant.lif:
        S = quant.scale[n]
        assert 64 * S * stats.max_membrane[n] * 2 < 2 ** 23, n  # margin 2 on the membrane
        assert 64 * S * stats.max_abs[n] * 2 < 2 ** 23, n  # and on the current u = a_in << 6


def test_float_emulator_reproduces_the_pytorch_model(digits_graph):
    """The emulator's float mode (Lava arithmetic, no quantization) is the model: spikes identical."""
    from resformer_deploy.analysis.compare import compare_run, record_torch
    from resformer_deploy.lava.plan import plan_lava
    from resformer_deploy.lava.host_partition import host_readout
    m, g = digits_graph
    x = load_digits_split().x_test[:16].double()
    plan = plan_lava(g)
    host = CompiledGraph(g, torch.float64)
    run = LavaSemantics(plan).run(host_inputs(plan, host, x, m.config.T), m.config.T)
    res = type("R", (), {})()
    res.spikes = {n: torch.from_numpy(s).reshape(m.config.T, 16, *plan.shapes[n]) for n, s in run.spikes.items()}
    res.membranes = {}
    res.output = host_readout(plan, host, run.outputs, m.config.T, 16)
    rep = compare_run(g, record_torch(m, x), res)
    assert rep.total_mismatches == 0 and rep.logits_max_rel_diff < 1e-12 and len(rep.layers) == 20


def test_fixed_point_accuracy_on_the_full_held_out_split(quant, digits_graph):
    m, g = digits_graph
    split = load_digits_split()
    res = get_target("loihi2-emu").run(RunRequest.of(g, split.x_test.double(), m.config.T, quant=quant))
    with torch.no_grad():
        ref = m(split.x_test.double()).mean(0).argmax(-1)
    acc_fixed = float((res.output.mean(0).argmax(-1) == split.y_test).float().mean())
    acc_torch = float((ref == split.y_test).float().mean())
    assert len(split.y_test) == 359 and acc_fixed >= acc_torch - 0.01
    assert res.stats.saturation == {}


def test_saturation_is_counted_per_layer_when_scales_are_too_large(digits_graph):
    """The 8-bit exponent-0 kernels now keep the scales far below the 24-bit bounds (even a 0.05
    margin or 64x the inputs saturate nothing), so the input stream's scale is raised 2^10-fold
    by hand: the layers that read it must wrap and saturate, and say so."""
    m, g = digits_graph
    xc, _ = calibration_inputs((1, 8, 8), 32)
    q = calibrate_and_quantize(g, xc.double(), m.config.T)
    q = dataclasses.replace(q, scale={n: s * (2.0 ** 10 if n in q.plan.inputs else 1.0) for n, s in q.scale.items()})
    res = get_target("loihi2-emu").run(RunRequest.of(g, load_digits_split().x_test[:16].double(), m.config.T, quant=q))
    sat = res.stats.saturation
    assert sat and all(n in q.plan.neuro for n in sat)
    kinds = {k for v in sat.values() for k in v}
    assert kinds <= {"u_wrap", "v_saturation", "graded_overflow"} and kinds & {"u_wrap", "v_saturation"}


# ---------------------------------------------------------------- emulator == Lava fixed point
@pytest.mark.parametrize("dssa,stock", [("fused", False), ("synaptic", True)])
def test_emulator_is_bit_exact_with_lava_fixed_point(digits_graph, dssa, stock):
    """Synaptic: on plain Loihi2SimCfg(select_tag='fixed_pt'), Lava's stock models only (no exception
    map), as hardware would run it. Fused: its FusedSpikeMatMul has no stock model (our fast Conv too)."""
    m, g = digits_graph
    xc, _ = calibration_inputs((1, 8, 8), 128)
    q = calibrate_and_quantize(g, xc.double(), m.config.T, dssa=dssa)
    assert all(s.exp == 0 for s in q.syn.values() if s.kind == "conv")
    samples = 2 if stock else 3  # the stock Conv loops over channel pairs in Python: slower
    x = load_digits_split().x_test[:samples].double()
    before = set(descendants(os.getpid()))
    lava = get_target("loihi2-sim").run(RunRequest.of(g, x, m.config.T, quant=q, dssa=dssa, stock_models=stock))
    emu = get_target("loihi2-emu").run(RunRequest.of(g, x, m.config.T, quant=q))
    assert set(descendants(os.getpid())) <= before  # no Lava process left behind
    assert lava.stats.processes > 20 and set(lava.spikes) == set(emu.spikes) and len(lava.spikes) == 20
    for n in lava.spikes:
        assert torch.equal(lava.spikes[n], emu.spikes[n]), n
    assert lava.spikes["layers_2_2_down_0"].any()  # deep layers do spike
    assert torch.equal(lava.output, emu.output.to(lava.output.dtype))


def test_fixed_point_targets_refuse_missing_quantization_and_hardware_is_explained(digits_graph):
    m, g = digits_graph
    x = load_digits_split().x_test[:1]
    for t in ("loihi2-sim", "loihi2-emu"):
        with pytest.raises(DeployError, match="quantized network"):
            get_target(t).run(RunRequest.of(g, x, m.config.T))
    with pytest.raises(DeployError, match="lava-loihi"):
        get_target("loihi2")
    with pytest.raises(DeployError, match="floating point"):
        get_target("lava-cpu").run(RunRequest.of(g, x, m.config.T, quant=object()))
    # Lava has no stock floating_pt models for GradedVec / ProdNeuron: stock-only is fixed point only
    with pytest.raises(DeployError, match="^target 'lava-cpu' has no option 'stock_models'"):
        get_target("lava-cpu").run(RunRequest.of(g, x, m.config.T, stock_models=True))


def test_fixed_point_targets_are_sized_from_the_plan_before_calibration(quant, digits_graph):
    from resformer_deploy.lava.plan import plan_lava
    m, g = digits_graph
    plan_only = Prepared.sizing(plan_lava(g, "fused"))
    for t in ("loihi2-sim", "loihi2-emu"):
        tgt = get_target(t)
        # a quantized network has its plan's sizes: the same estimate before calibration as after
        before = tgt.estimate(RunRequest.sizing(g, 7, m.config.T, prepared=plan_only))
        assert before == tgt.estimate(RunRequest.sizing(g, 7, m.config.T, quant=quant)), t
    with pytest.raises(DeployError, match="quantized network"):  # neither plan nor network: still refused
        get_target("loihi2-emu").estimate(RunRequest.sizing(g, 7, m.config.T, prepared=Prepared()))


def test_drift_ladder_refuses_a_rung_that_cannot_fit_before_recording_pytorch(digits_graph, monkeypatch):
    from resformer_deploy.analysis import drift
    from resformer_deploy.api import sizing
    from resformer_deploy.util.memory_budget import ENV, MemoryBudgetError
    m, _ = digits_graph
    ran = []
    monkeypatch.setattr(drift, "record_torch", lambda *a, **k: ran.append("torch"))
    # 4 MB: the ladder's records of the 359 held-out digits fit (~0.2 MB), the emulator's run of them does not
    monkeypatch.setenv(ENV, str(4_000_000))
    with pytest.raises(MemoryBudgetError, match=r"drift ladder: 1 rung\(s\) do not fit the memory budget 3.8 MiB: "
                                                r"loihi2-emu on 359 samples needs about [\d.]+ MiB \(.*\) beside "
                                                r"the ladder's [\d.]+ [KMG]iB"):
        drift.drift_ladder(m, eval_samples=0, lava=False, targets=["loihi2-emu"], sizing=sizing)
    assert ran == []


def test_verify_loihi2_sim_cli_reports_the_drift_ladder(tmp_path):
    out = tmp_path / "drift.json"
    r = CliRunner().invoke(main, ["verify", str(DIGITS_CKPT), "--target", "loihi2-sim", "--dssa", "fused",
                                  "--eval-samples", "60", "--lava-samples", "2", "--calib-samples", "64",
                                  "--json-out", str(out)])
    assert r.exit_code == 0, r.output
    assert "drift ladder" in r.output and "BIT-EXACT" in r.output
    rep = json.loads(out.read_text())["ladders"][0]
    assert [(x["role"], x["target"]) for x in rep["rungs"]] == [
        ("pytorch", "torch"), ("float", "lava-cpu"), ("fixed-point-check", "loihi2-sim"),
        ("fixed-point", "loihi2-emu")]
    rung = {x["role"]: x for x in rep["rungs"]}  # readers find rungs by role
    assert rung["float"]["total_mismatches"] == 0 and rep["emulator_bit_exact_vs_lava"] is True
    assert rung["fixed-point"]["samples"] == 60 and len(rung["fixed-point"]["layers"]) == 20
    # the PyTorch rung's accuracy, recomputed from the model on the same 60 held-out samples
    from resformer_deploy.training.loop import predict
    split = load_digits_split()
    pred = predict(load_checkpoint(DIGITS_CKPT).model.double(), split.x_test[:60].double()).argmax(-1)
    assert rung["pytorch"]["accuracy"] == float((pred == split.y_test[:60]).double().mean())
    assert rep["accuracy_drop_pp"] == pytest.approx(100 * (rung["pytorch"]["accuracy"]
                                                           - rung["fixed-point"]["accuracy"]))


def test_verify_on_hardware_target_fails_with_one_line():
    r = CliRunner().invoke(main, ["verify", str(DIGITS_CKPT), "--target", "loihi2"])
    assert r.exit_code == 2 and "lava-loihi" in r.output and len(r.output.strip().splitlines()) == 1


def lad_nodes(ckpt):
    """(name, NIR node type) of the checkpoint's exported graph."""
    return [(n, type(node).__name__) for n, node in export_model(load_checkpoint(ckpt).model).nodes.items()]


def test_report_command_writes_json_html_and_figures(tmp_path):
    out = tmp_path / "rep"
    r = CliRunner().invoke(main, ["report", str(DIGITS_CKPT), "-o", str(out), "--lava-samples", "1",
                                  "--eval-samples", "40", "--calib-samples", "64"])
    assert r.exit_code == 0, r.output
    names = sorted(p.name for p in out.iterdir())
    assert names == ["cores_per_layer.png", "firing_rates.png", "loihi2_time_per_layer.png", "report.html",
                     "report.json", "spike_agreement.png", "synaptic_ops.png"]  # nothing half-written left behind
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 10_000
    rep = json.loads((out / "report.json").read_text())
    lad, m, e = rep["ladder"], rep["mapping"], rep["energy"]
    assert [x["target"] for x in lad["rungs"]] == ["torch", "lava-cpu", "loihi2-sim", "loihi2-emu"]
    fixed = next(x for x in lad["rungs"] if x["role"] == "fixed-point")
    assert lad["emulator_bit_exact_vs_lava"] is True and fixed["samples"] == 40 and fixed["target"] == "loihi2-emu"
    from tests.hardware.test_mapping import recounted_cores
    assert m["totals"]["neuro_cores"] == recounted_cores(m["layers"]) == 34 and m["violations"] == []
    assert m["drc_skipped"] == []  # the quantized network feeds the number-format checks
    products = sorted(n for n, d in lad_nodes(DIGITS_CKPT) if d == "SpikeMatMul")
    assert len(products) == 6 and sorted(f.split(":")[0] for f in m["stock_models"]) == products  # fused: no stock model
    assert m["hardware_runtime"]["lava_loihi_installed"] is False
    assert rep["timing"]["pipeline_latency_steps"] == 17 and rep["timing"]["steps_per_sample"] == 4  # cf. lava tests
    assert e["samples"] == 40 and e["torch"]["sops"] > 0 and e["fixed"]["sops"] > 0
    # fixed-point and float spikes differ a little, so their operation counts are close, not equal
    assert abs(e["fixed"]["sops"] - e["torch"]["sops"]) / e["torch"]["sops"] < 0.05
    page = (out / "report.html").read_text()
    for needle in ("Drift ladder", "Operations and energy", "Loihi 2 resource plan", "Design-rule check",
                   "Quantization", "data:image/png;base64,", "lava-loihi"):
        assert needle in page, needle


def test_compile_with_quantization_runs_the_number_format_checks(tmp_path):
    r = CliRunner().invoke(main, ["compile", str(DIGITS_CKPT), "--target", "loihi2", "-o", str(tmp_path),
                                  "--quantize", "--calib-samples", "32", "--json"])
    assert r.exit_code == 0, r.output
    plan = json.loads((tmp_path / "loihi2_plan.json").read_text())
    assert plan["drc_skipped"] == [] and plan["violations"] == []


def test_convolutions_are_quantized_on_their_kernels(quant):
    """Each kernel weight once, exponent 0 (Lava's stock Conv models ignore weight_exp): mantissa =
    round(W S_out / S_in) (to even values for mixed signs), recomputed here from the plan's float
    kernel; the group's scale is the largest power of two that keeps it in 8 bits or a tighter bound."""
    plan, g = quant.plan, quant.plan.graph
    convs = [n for n in quant.syn if plan.synapses[n].kind == "conv"]
    assert len(convs) == 17
    binding = 0
    for n in convs:
        s, spec = quant.syn[n], plan.synapses[n]
        src = next(a for a, b in g.edges if b == n)
        s_in = 1.0 if isinstance(g.nodes[src], nir.LIF) else quant.scale[src]
        target = np.asarray(spec.weight, dtype=np.float64) * quant.scale[n] / s_in
        mixed = target.min() < 0 < target.max()
        step = 2 if mixed else 1
        assert s.kind == "conv" and s.mant.shape == spec.weight.shape and s.mant.dtype == np.int64, n
        assert s.exp == 0, n
        np.testing.assert_array_equal(s.mant, np.round(target / step) * step, err_msg=n)
        top = 254 if mixed else 255
        assert np.abs(target).max() <= top, n  # fits 8 bits with no exponent
        grp = next(gr for gr in quant.groups if n in gr.members)
        if grp.limited_by == f"{n}: conv weight mantissa (8 bit, weight_exp 0)":
            assert np.abs(target).max() * 2 > top, n  # twice the scale would not fit
            binding += 1
        assert s.synapses == spec.synapse_count() and s.saturated == 0, n
        row = next(r for r in quant.layers if r.node == n)
        assert row.synapses == s.synapses and row.weight_exp == s.exp, n
    assert binding >= 5  # the 8-bit kernels are what set most groups' scales now


def test_plif_dvs_model_quantizes_without_clipping_and_reports_decay_error():
    """A small dvsg-style model (PLIF: per-layer learned decays, DVS frames): the scale of each group
    also respects its weights (8-bit mantissas, exponent 0), so nothing is clipped; decays that 12 bits cannot hold
    exactly are reported."""
    from resformer_deploy.model.resformer import build_model
    from resformer_deploy.model.calibration import randomize_state
    m = randomize_state(build_model("dvsg", planes=(8, 16, 32), num_heads=(1, 1, 2), img_size=16, T=4), seed=2)
    m = m.double().eval()
    g = export_model(m, "float64")
    xc, _ = calibration_inputs((3, 16, 16), 8, dvs_steps=4)
    q = calibrate_and_quantize(g, xc.double(), 4)
    assert q.saturation_total() == 0
    for n, s in q.syn.items():
        assert s.saturated == 0 and s.exp <= F.WEIGHT_EXP_RANGE[1], n
    errs = [lif.decay_error for lif in q.lif.values()]
    assert max(errs) > 0 and max(errs) <= 0.5 / 4096  # PLIF decays: rounded to the nearest 1/4096
    x = torch.poisson(torch.full((4, 4, 3, 16, 16), 0.5), generator=torch.Generator().manual_seed(5))
    res = get_target("loihi2-emu").run(RunRequest.of(g, x.double(), 4, quant=q))
    assert res.stats.saturation == {}
