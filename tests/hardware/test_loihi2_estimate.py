"""Loihi 2 cost estimate (hardware/loihi2/estimate.py, activity.py, pilotnet.py): every figure recomputed
here by hand from the model's stated formulas and the published anchors."""
import math

import nir
import numpy as np
import pytest
import torch

from resformer_deploy.hardware.loihi2 import anchors as A
from resformer_deploy.analysis.loihi2_cost import activity_from_run
from resformer_deploy.hardware.loihi2.estimate import (OP, Affine, Calibration, EstimateError, LayerActivity, Scale,
                                                       calibrate, chip_crossings, core_work_s, dynamic_energy_J,
                                                       estimate, fit_affine, fit_scale, pair_check, pilotnet_activity)
from resformer_deploy.hardware.loihi2.partition import map_to_loihi2
from resformer_deploy.hardware.loihi2.pilotnet import compare_with_intel, pair_plan, pilotnet_plan


@pytest.fixture(scope="module")
def pilot():
    return pilotnet_plan()


@pytest.fixture(scope="module")
def cal(pilot):
    return calibrate(pilot, pair_plan())


# the two-neuron runs (anchors.PAIR_LIF) by hand: per step, the mean over 25/50/100 Hz of the measured
# time and dynamic energy, and of the Loihi 1 work of the slowest core (the destination: r synaptic ops,
# 1 neuron update, r spikes) and energy (2 updates, r synaptic ops, 2r spikes within a tile and a hop)
PAIR_T = (11.637382776475679 + 11.639218619837314 + 11.643384501700206) / 3 / 1e7
PAIR_E = (0.26722025399517835 + 0.3167534986598539 + 0.325827752621702) / 3 / 1e7
PAIR_R = (0.025 + 0.05 + 0.1) / 3
PAIR_W = PAIR_R * 3.5e-9 + 8.4e-9 + PAIR_R * 2.1e-9
PAIR_OPS = 2 * 81e-12 + PAIR_R * 23.6e-12 + 2 * PAIR_R * (1.7e-12 + 4.0e-12)


def test_fit_affine_through_two_anchors_and_leave_one_out():
    f = fit_affine(("w", 10.0, 4.0), ("f", 3.0, 1.0), "s")
    # 10 = 4k + b, 3 = k + b
    assert f.k == pytest.approx(7 / 3) and f.floor == pytest.approx(2 / 3)
    # without w: k = 1, b = 3 - 1 = 2 predicts w as 6 (-40 %); without f: b = 0, k = 10/4 predicts f as 2.5
    assert f.k_loo_rel_error == pytest.approx(0.4) and f.floor_loo_rel_error == pytest.approx(1 / 6)
    # 2 units of work and 3 floors: 14/3 + 2, its error the share-weighted mean of the terms'
    y = f(2.0, 3.0)
    assert y.value == pytest.approx(20 / 3)
    assert y.rel_error == pytest.approx((14 / 3 * 0.4 + 2 * (1 / 6)) / (20 / 3))
    with pytest.raises(EstimateError, match="w and f give k=-"):
        fit_affine(("w", 1.0, 4.0), ("f", 3.0, 1.0), "s")
    with pytest.raises(EstimateError, match="more modelled work on w"):
        fit_affine(("w", 10.0, 1.0), ("f", 3.0, 1.0), "s")


def test_fit_scale_geometric_mean_and_leave_one_out():
    s = fit_scale({"a": (2.0, 1.0), "b": (8.0, 1.0)})
    assert s.value == pytest.approx(4.0)
    # leaving a out predicts a with b's ratio 8 (8/2 - 1 = 3); leaving b out: 2/8 - 1 = -0.75
    assert s.loo_rel_error == pytest.approx(3.0)
    one = fit_scale({"a": (1.0, 2.0)}, prior=1.0)  # uncalibrated: predicts 2 for a measured 1
    assert one.value == pytest.approx(0.5) and one.loo_rel_error == pytest.approx(1.0)
    assert fit_scale({"a": (1.0, 2.0)}).loo_rel_error is None
    with pytest.raises(EstimateError, match="non-positive.*a"):
        fit_scale({"a": (-1.0, 2.0)})
    with pytest.raises(EstimateError, match="no calibration anchors"):
        fit_scale({})


def test_core_work_and_energy_by_hand():
    a = LayerActivity("x", cores=4, neurons=100, synops=8000.0, spikes_out=40.0)
    T = 2
    want = (8000 / 2 * 3.5e-9 + 100 * 8.4e-9 + 40 / 2 * 2.1e-9) / 4  # Davies 2018 times
    assert core_work_s(a, T) == pytest.approx(want)
    e = 8000 * 23.6e-12 + 100 * T * 81e-12 + 40 * (1.7e-12 + 4.0e-12)
    assert dynamic_energy_J([a], T) == pytest.approx(e)
    with pytest.raises(EstimateError, match="x: 0 cores"):
        LayerActivity("x", 0, 1, 0.0, 0.0)


def test_chip_crossings_counts_spikes_into_the_next_chip():
    acts = [LayerActivity("a", 128, 10, 0, 7.0), LayerActivity("b", 10, 10, 0, 5.0),
            LayerActivity("c", 100, 10, 0, 3.0)]
    # a fills chip 0; b sits on chip 1 (all of a's 7 spikes cross); b -> c (cores 138..237, chip 1): none
    assert chip_crossings(acts) == 7.0
    assert chip_crossings(acts[1:]) == 0.0
    # a source on chip 0 only, a consumer with 28 of its 100 cores on chip 0 (cores 100..127): 72 % cross
    two = [LayerActivity("a", 100, 10, 0, 50.0), LayerActivity("b", 100, 10, 0, 0.0)]
    assert chip_crossings(two) == pytest.approx(50.0 * 0.72)


def test_calibration_reproduces_the_published_pilotnet_run(pilot, cal):
    acts = pilotnet_activity(pilot)
    est = estimate(acts, 16, 1, 0, cal)
    # two anchors, two constants: both runs are reproduced exactly
    assert est.throughput_per_s.value == pytest.approx(408.91)
    assert est.dynamic_energy_J.value == pytest.approx(1.093544e-3)
    step, w = 1 / (408.91 * 16), max(core_work_s(a, 16) for a in acts)
    assert cal.time.k == pytest.approx((step - PAIR_T) / (w - PAIR_W))
    assert cal.time.floor == pytest.approx(PAIR_T - cal.time.k * PAIR_W)
    e16 = dynamic_energy_J(acts, 16)
    assert cal.energy.k == pytest.approx((1.093544e-3 / 16 - PAIR_E) / (e16 / 16 - PAIR_OPS))
    assert cal.energy.floor == pytest.approx(PAIR_E - cal.energy.k * PAIR_OPS)
    assert 1.15e-6 < cal.time.floor < 1.17e-6 and 2.9e-8 < cal.energy.floor < 3.1e-8
    # leave-one-out: without PilotNet, Loihi 1's constants (k = 1) over the pair's floor; without the pair,
    # Loihi 1's barrier (time) or no floor (energy) under PilotNet's k
    assert cal.time.k_loo_rel_error == pytest.approx(abs((w + PAIR_T - PAIR_W) / step - 1))
    k0 = (step - 299e-9) / w
    assert cal.time.floor_loo_rel_error == pytest.approx(abs((k0 * PAIR_W + 299e-9) / PAIR_T - 1))
    assert cal.energy.k_loo_rel_error == pytest.approx(abs((e16 / 16 + PAIR_E - PAIR_OPS) / (1.093544e-3 / 16) - 1))
    assert cal.energy.floor_loo_rel_error == pytest.approx(abs(1.093544e-3 / e16 * PAIR_OPS / PAIR_E - 1))
    # static power per chip: geometric mean of the three idle measurements (the two-neuron runs: the mean of
    # their three rates); LOO: the SDNN's 0.281775 W predicted from the other two is the worst
    pair = (0.21460215555555556 + 0.21259630952380953 + 0.2142557777777778) / 3
    assert cal.static_power_W.value == pytest.approx((0.232078 * 0.281775 * pair) ** (1 / 3))
    assert cal.static_power_W.loo_rel_error == pytest.approx(1 - math.sqrt(0.232078 * pair) / 0.281775)
    assert est.static_energy_J.value == pytest.approx(cal.static_power_W.value / 408.91)  # P x time per sample
    # error bars: time is k's work plus one floor, shares weighted; static a product; total a weighted sum
    kw = cal.time.k * w
    et = (kw * cal.time.k_loo_rel_error + cal.time.floor * cal.time.floor_loo_rel_error) / step
    assert est.step_time_s.rel_error == pytest.approx(et) and est.throughput_per_s.rel_error == pytest.approx(et)
    es = (1 + cal.static_power_W.loo_rel_error) * (1 + et) - 1
    assert est.static_energy_J.rel_error == pytest.approx(es)
    d, s = est.dynamic_energy_J, est.static_energy_J.value
    assert est.total_energy_J.rel_error == pytest.approx((d.value * d.rel_error + s * es) / (d.value + s))
    j = est.to_json()
    assert set(j) == {"T", "chips", "pipeline_latency_steps", "slowest_layer", "step_time_s", "latency_s",
                      "throughput_per_s", "dynamic_energy_J", "static_energy_J", "total_energy_J",
                      "chip_crossing_spikes_per_sample", "embedded_macs_per_sample", "calibration", "notes"}
    assert set(j["calibration"]) == {"step_time", "dynamic_energy", "static_power_per_chip_W"}
    assert set(j["calibration"]["step_time"]) == {"k", "floor", "floor_unit", "anchors", "loo_rel_error"}
    assert "±" in est.lines()[1]


def test_pilotnet_activity_uses_the_recorded_spikes(pilot):
    acts = {a.layer: a for a in pilotnet_activity(pilot)}
    rows = {r.layer: r for r in pilot.layers}
    # conv0's inputs: the input layer's 843085 spikes over 24 steps, scaled to 16; each reaches
    # synapses / 39600 conv0 synapses on average
    assert acts["conv0"].synops == pytest.approx(843085 * 16 / 24 * rows["conv0"].synapses / (3 * 66 * 200))
    assert acts["input"].synops == 0 and acts["fc3"].spikes_out == 0


def test_planner_against_intels_compiler(pilot):
    rows, total = compare_with_intel(pilot)
    assert [r["layer"] for r in rows] == list(A.PILOTNET_INTEL_CORES)
    neurons = {"input": 3 * 66 * 200, "conv0": 24 * 32 * 99, "conv1": 36 * 15 * 49, "conv2": 48 * 7 * 24,
               "conv3": 64 * 4 * 22, "conv4": 64 * 2 * 20, "fc0": 100, "fc1": 50, "fc2": 10, "fc3": 1}
    assert {r["layer"]: r["neurons"] for r in rows} == neurons
    assert total["intel_cores"] == 74 == int(A.PILOTNET_SNN["neuro_cores"].value)
    assert total["rel_error"] == pytest.approx(total["cores"] / 74 - 1)
    # the state of the planner (recorded in benchmarks/RESULTS.md): 83 cores vs Intel's 74 (+12 %)
    assert total["cores"] == 83 and total["sdnn_cores"] == 62
    same = {r["layer"] for r in rows if r["cores"] == r["intel_cores"]}
    assert same == {"conv3", "conv4", "fc1", "fc2", "fc3"}


def _lif(shape):
    return nir.LIF(*(np.full(shape, v) for v in (0.01, 1.0, 0.0, 1.0, 0.0)))


def test_activity_from_run_attributes_conv_ops_to_the_consumer():
    w = np.ones((3, 2, 3, 3))
    nodes = {"in": nir.Input({"input": np.array([2, 5, 5])}, metadata={"partition": "host"}),
             "l0": _lif((2, 5, 5)),
             "c": nir.Conv2d(input_shape=(5, 5), weight=w, stride=1, padding=1, dilation=1, groups=1,
                             bias=np.zeros(3)),
             "l1": _lif((3, 5, 5)), "out": nir.Output({"output": np.array([3, 5, 5])}, metadata={"partition": "host"})}
    g = nir.NIRGraph(nodes, [("in", "l0"), ("l0", "c"), ("c", "l1"), ("l1", "out")], metadata={})
    plan = map_to_loihi2(g)
    T, N = 3, 2
    rng = np.random.default_rng(1)
    s0 = torch.from_numpy(rng.random((T, N, 2, 5, 5)) < 0.3)
    s1 = torch.from_numpy(rng.random((T, N, 3, 5, 5)) < 0.2)
    acts, macs = activity_from_run(plan, g, {"l0": s0, "l1": s1}, T, N)
    by = {a.layer: a for a in acts}
    # by hand: an input at (y, x) reaches every output channel at each in-bounds 3x3 neighbour
    fan = np.zeros((5, 5))
    for y in range(5):
        for x in range(5):
            fan[y, x] = 3 * sum(1 for dy in (-1, 0, 1) for dx in (-1, 0, 1) if 0 <= y + dy < 5 and 0 <= x + dx < 5)
    want = float((s0.numpy().sum(axis=(0, 1)) * fan[None]).sum()) / N
    assert by["l1"].synops == pytest.approx(want)
    assert by["l0"].synops == 0 and macs == 0
    assert by["l1"].spikes_out == pytest.approx(float(s1.sum()) / N)
    with pytest.raises(EstimateError, match="0 samples"):
        activity_from_run(plan, g, {"l0": s0, "l1": s1}, T, 0)


def test_estimate_refuses_bad_input():
    cal = Calibration(Affine(1.0, 1e-6, "s per step", "a", "b", 0.5, 0.25),
                      Affine(1.0, 2e-8, "J per chip per step", "a", "b", 0.1, 1.0), Scale(0.25, ["a"], None))
    with pytest.raises(EstimateError, match="no neuro-core layers"):
        estimate([], 4, 1, 0, cal)
    with pytest.raises(EstimateError, match="T=0"):
        estimate([LayerActivity("a", 1, 10, 0, 0)], 0, 1, 0, cal)
    e = estimate([LayerActivity("a", 1, 10, 0, 0)], 4, 3, 2, cal)
    work = 10 * OP["neuron_update_time"]
    step = work + 1e-6
    assert e.step_time_s.value == pytest.approx(step) and e.latency_s.value == pytest.approx(6 * step)
    assert e.step_time_s.rel_error == pytest.approx((work * 0.5 + 1e-6 * 0.25) / step)
    # 10 neurons x 4 steps of updates, and a floor per chip (3) per step (4)
    ops = 40 * 81e-12
    assert e.dynamic_energy_J.value == pytest.approx(ops + 12 * 2e-8)
    assert e.dynamic_energy_J.rel_error == pytest.approx((ops * 0.1 + 12 * 2e-8) / (ops + 12 * 2e-8))
    assert e.static_energy_J.value == pytest.approx(0.25 * 3 * 4 * step)
    assert e.static_energy_J.rel_error is None and e.total_energy_J.rel_error is None  # static: no bar
    assert "error n/a" in e.lines()[4]


def test_systems_fit_and_refusals_name_the_resource():
    from resformer_deploy.hardware.loihi2.systems import fit_table, largest_fitting, refusals, system_chips
    assert system_chips() == {"Oheo Gulch": 1, "Kapoho Point": 8, "Hala Point": 1152}
    # ti @224 fused (benchmarks/map_variants.json): 20,131 cores, 12 programs -> 158 chips
    t = {"neuro_cores": 20131, "embedded_programs": 12, "neurons": 15574944, "synapses": 4370465184}
    rows = {r["system"]: r for r in fit_table(t)}
    assert [rows[s]["fits"] for s in ("Oheo Gulch", "Kapoho Point", "Hala Point")] == [False, False, True]
    assert rows["Kapoho Point"]["refused_by"][0] == "neuro cores: needs 20,131 > 1,024 (128 per chip x 8)"
    assert any(r.startswith("synapses: needs 4,370,465,184 > 960,000,000") for r in rows["Kapoho Point"]["refused_by"])
    assert refusals({"neuro_cores": 1, "embedded_programs": 4, "neurons": 1, "synapses": 1}, 1) == [
        "embedded-core programs: needs 4 > 3 (3 per chip x 1)"]
    assert refusals(t, 1152, ["x: bad"]) == ["design rule: x: bad"]
    # largest size: cores grow as size^2 / 4 here; 1 chip holds 128 cores -> size 22 (121) fits, 24 (144) not
    tot = lambda s: ({"neuro_cores": s * s // 4, "embedded_programs": 0, "neurons": 1, "synapses": 1}, [])  # noqa
    sizes = list(range(2, 40, 2))
    assert largest_fitting(sizes, tot, 1) == 22
    assert largest_fitting(sizes, lambda s: None if s > 10 else tot(s), 1) == 10
    assert largest_fitting([100, 200], tot, 1) is None


def test_compile_quantize_prints_and_writes_the_estimate(tmp_path):
    import json
    from pathlib import Path
    from click.testing import CliRunner
    from resformer_deploy.cli.main import main
    ck = Path(__file__).resolve().parents[2] / "examples" / "digits" / "digits_resformer.pt"
    r = CliRunner().invoke(main, ["compile", str(ck), "-o", str(tmp_path), "--quantize", "--calib-samples", "8"])
    assert r.exit_code == 0, r.output
    assert "Loihi 2 estimate (" in r.output and "systems: Oheo Gulch (1 chip(s))" in r.output
    d = json.loads((tmp_path / "loihi2_plan.json").read_text())["loihi2_estimate"]
    assert set(d) == {"kind", "samples", "samples_source", "T", "chips", "pipeline_latency_steps", "slowest_layer",
                      "step_time_s", "latency_s", "throughput_per_s", "dynamic_energy_J", "static_energy_J",
                      "total_energy_J", "chip_crossing_spikes_per_sample", "embedded_macs_per_sample", "calibration",
                      "notes", "paper_convention_energy_J", "systems", "anchors", "layers"}
    assert d["samples"] == 8 and d["T"] == 4 and d["kind"] == "estimate"
    step = d["step_time_s"]["value"]
    floor = d["calibration"]["step_time"]["floor"]
    assert d["throughput_per_s"]["value"] == pytest.approx(1 / (4 * step))
    assert d["latency_s"]["value"] == pytest.approx((d["pipeline_latency_steps"] + 4) * step)
    cal = d["calibration"]
    assert d["static_energy_J"]["value"] == pytest.approx(
        cal["static_power_per_chip_W"]["value"] * d["chips"] * 4 * step)
    assert [s["system"] for s in d["systems"]] == ["Oheo Gulch", "Kapoho Point", "Hala Point"]
    assert d["anchors"]["per_operation"]["synaptic_op_energy"]["confidence"] == "published-loihi1"
    slow = max(d["layers"], key=lambda r: r["core_time_per_step_s"])
    assert slow["layer"] == d["slowest_layer"]
    assert step == pytest.approx(slow["core_time_per_step_s"] + floor)
    assert 1.15e-6 < floor < 1.17e-6  # the two-neuron runs' step (anchors.PAIR_LIF)


def test_report_has_the_estimate_section_table_and_figure(pilot, cal, tmp_path):
    import json
    from resformer_deploy.analysis.loihi2_cost import section_json
    from resformer_deploy.reporting.html import figures, render_html, write_report_files
    from tests.reporting.test_reports import small_report
    est = estimate(pilotnet_activity(pilot), 16, 1, 10, cal)
    cost, lines = section_json(pilot, est, pilotnet_activity(pilot), 0.5, 1, "<b>gts</b>", ["x: bad"])
    rep = small_report("layers_0_0_act")
    rep.loihi2_estimate = cost
    rep.mapping.stock_models = []  # the page's stock-model section reads it
    pngs = figures(rep)
    assert "loihi2_time_per_layer.png" in pngs
    page = render_html(rep, pngs)
    assert "<h2>Loihi 2 latency, throughput and energy (estimate)</h2>" in page and "<h3>Systems</h3>" in page
    assert "&lt;b&gt;gts&lt;/b&gt;" in page  # escaped like every value
    err = est.throughput_per_s.rel_error
    assert f"<td>{est.throughput_per_s.value:.4g} samples/s</td><td>±{err * 100:.0f}%</td>" in page
    assert "<td>0.5 mJ</td>" in page  # the paper convention beside it
    assert "design rule: x: bad" in page
    paths = write_report_files(tmp_path / "rep", rep)
    assert "loihi2_time_per_layer.png" in {p.name for p in paths}
    j = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert j["loihi2_estimate"]["throughput_per_s"]["value"] == pytest.approx(est.throughput_per_s.value)
    assert "  paper convention (0.9 pJ/AC, 45 nm, same spikes): 0.5 mJ per inference" in lines


def test_two_neuron_runs_by_hand(cal):
    """Balafrej et al. 2025's Oheo Gulch runs (anchors.PAIR_LIF): 1-neuron source at 25 Hz (0.025 spikes per
    1 ms step), one 1x1 synapse, 1-neuron destination; 10^7 steps took 11.637 s and 0.267 J dynamic."""
    plan = pair_plan()
    assert [(r.layer, r.neurons, r.cores, r.synapses) for r in plan.layers] == [("src", 1, 1, 1), ("dest", 1, 1, 1)]
    chk = pair_check(plan, cal)
    got = chk["per_rate"][25]
    # slowest core: the destination (0.025 synaptic ops + 1 neuron update + 0.025 spikes) in Loihi 1 time
    slow = 0.025 * 3.5e-9 + 8.4e-9 + 0.025 * 2.1e-9
    assert got["model_step_time_s"] == pytest.approx(cal.time.k * slow + cal.time.floor)
    assert got["step_time_s"] == pytest.approx(11.637382776475679 / 1e7)
    # both neurons update every step; 0.025 synaptic ops; 0.05 spikes each within a tile and one tile hop
    e = 2 * 81e-12 + 0.025 * 23.6e-12 + 0.05 * (1.7e-12 + 4.0e-12)
    assert got["model_dynamic_energy_per_step_J"] == pytest.approx(cal.energy.k * e + cal.energy.floor)
    assert got["dynamic_energy_per_step_J"] == pytest.approx(0.26722025399517835 / 1e7)
    # their mean pins the floors: each rate's time within 0.05 %, energy within the runs' spread (+-20 nJ)
    for r in chk["per_rate"].values():
        assert abs(r["step_time_rel_error"]) < 5e-4 and abs(r["dynamic_energy_rel_error"]) < 0.15
    # without them (a model with Loihi 1's barrier and no energy floor) a quarter of the time, 0.5 % of the energy
    assert 0.7 < chk["without_them_rel_error"]["step_time"] < 0.75
    assert chk["without_them_rel_error"]["dynamic_energy"] > 0.99
