"""Typed reports (equivalence, drift ladder, operations, deployment) and the HTML page they make."""
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from resformer_deploy.analysis.compare import Comparison, FirstDivergence, LayerComparison, RootDivergence
from resformer_deploy.analysis.drift import (FIXED_POINT, FIXED_POINT_CHECK, FLOAT, PYTORCH, DriftLadder,
                                             EmulatorMatch, Evaluation, Rung)
from resformer_deploy.analysis.equivalence import EquivalenceReport
from resformer_deploy.analysis.operations import LayerOps, energy_report
from resformer_deploy.fixed_point.network import QuantizationSection, QuantLayer, ScaleGroup
from resformer_deploy.hardware.loihi2.core_plan import CorePlan
from resformer_deploy.reporting.deploy import CoreMapping, DeploymentReport, EnergySection, Timing
from targets.artifact import CalibrationMeta
from tests.hardware.test_core_plan import _layer as core_layer
from resformer_deploy.util.serialize import to_jsonable

REPO = Path(__file__).resolve().parents[2]
EVIL = "<script>alert(1)</script>"


def layer(node="l0", mismatches=0, compared=100, ties=0):
    return LayerComparison(node=node, torch_module="m." + node, shape=[4], compared=compared,
                           identical_pct=100.0 * (1 - mismatches / compared), mismatches=mismatches,
                           near_threshold_mismatches=ties, first_mismatch_step=0 if mismatches else None,
                           torch_rate=0.25, target_rate=0.25)


def compared_rung(name, role, target, node="l0", mismatches=0, samples=2, accuracy=0.5, **extra):
    fd = FirstDivergence(node, "m." + node, 0, mismatches, 0, mismatches) if mismatches else None
    return Rung(name, role, target, samples, 0.1, accuracy=accuracy, prediction_agreement_with_torch=1.0,
                min_layer_identical_pct=100.0 - mismatches, total_mismatches=mismatches, first_divergence=fd,
                layers=[layer(node, mismatches)], **extra)


def small_ladder(node="l0", order=None, fixed_accuracy=0.5, calibration_source="digits training split"):
    rungs = {PYTORCH: Rung("PyTorch float64", PYTORCH, "torch", 2, 0.1, accuracy=0.5),
             FLOAT: compared_rung("float Lava", FLOAT, "lava-cpu", node),
             FIXED_POINT_CHECK: compared_rung("fixed-point Lava", FIXED_POINT_CHECK, "loihi2-sim", node, mismatches=1,
                                              emulator_match=EmulatorMatch(0, 400, 0.0, True)),
             FIXED_POINT: compared_rung("emulator", FIXED_POINT, "loihi2-emu", node, mismatches=1,
                                        accuracy=fixed_accuracy, saturation_events=0)}
    row = QuantLayer(node, "LIF", 3, weight_exp=-2, weight_rel_rms_error=0.01, mantissa_utilization=0.5, synapses=8,
                     dv=4096, vth=64, bias_exp=0, threshold_rel_error=0.0, decay_error=0.0, calibrated_max_membrane=1.0)
    return DriftLadder(Evaluation("digits held-out split", 2), "fused",
                       CalibrationMeta.of({"source": calibration_source, "margin": 1.0, "samples": 2}),
                       [rungs[r] for r in (order or rungs)],
                       QuantizationSection([ScaleGroup([node], [node], 8.0, 3, node, 1.0)], [row], 0),
                       {node: {"wrap": 1}})


def small_report(node=EVIL, **ladder_kw):
    counts = {node: LayerOps("conv", 10.0), "classifier": LayerOps("classifier_mac", 4.0)}
    plan = CorePlan("fused", [core_layer(layer=node, node=node)], [], [], [], [], {})
    mapping = CoreMapping(plan, [f"{node}: fan-in 5000 > 4096"], [], {"message": "needs <lava-loihi>"},
                          [f"{node}: FusedSpikeMatMul has no stock Lava process model"])
    return DeploymentReport(f"ckpt/{node}.pt", "digits", 4, "test machine", Timing(17, 4),
                            small_ladder(node, **ladder_kw),
                            EnergySection(2, counts, counts, energy_report(counts, 2), energy_report(counts, 2)),
                            mapping, 1.0)


# ---------------------------------------------------------------- typed reports check themselves
def test_rungs_say_their_role_and_readers_find_them_by_it():
    lad = small_ladder(order=[FIXED_POINT, FIXED_POINT_CHECK, PYTORCH, FLOAT], fixed_accuracy=0.4)
    assert lad.rungs[-1].role == FLOAT  # the emulator is not last here, and nothing may assume it is
    assert lad.fixed_point.target == "loihi2-emu" and lad.reference.target == "torch"
    assert lad.accuracy_drop_pp == pytest.approx(10.0) and lad.accuracy_goal_met is False
    assert lad.emulator_bit_exact_vs_lava is True
    assert lad.failures() == ["fused: fixed-point accuracy drop 10.00 pp > 1 pp"]
    from resformer_deploy.reporting.drift import ladder_text
    text = ladder_text(lad)
    assert "PyTorch 50.00% -> fixed point 40.00%" in text and "BIT-EXACT" in text
    j = to_jsonable(lad)
    assert [r["role"] for r in j["rungs"]] == [FIXED_POINT, FIXED_POINT_CHECK, PYTORCH, FLOAT]
    assert "runs" not in j and j["accuracy_drop_pp"] == pytest.approx(10.0)
    assert j["rungs"][0]["layers"][0]["node"] == lad.rungs[0].layers[0].node == "l0"


def test_several_float_and_check_rungs_are_each_judged_and_reported_by_role():
    """Rungs of plug-in targets: two float and two check rungs, none where the built-ins stand."""
    from resformer_deploy.reporting.drift import ladder_text
    from resformer_deploy.reporting.html import render_html
    lad = small_ladder()
    lad.rungs = [compared_rung("float PyTorch", FLOAT, "fake-float", mismatches=2),
                 lad.fixed_point,
                 compared_rung("fixed-point emulator", FIXED_POINT_CHECK, "fake-twin", mismatches=1,
                               emulator_match=EmulatorMatch(3, 400, 0.5, False)),
                 lad.reference, lad.find(FLOAT), lad.find(FIXED_POINT_CHECK)]
    lad.__post_init__()  # the derived figures, from the new rungs
    assert [r.target for r in lad.with_role(FLOAT)] == ["fake-float", "lava-cpu"]
    assert [r.target for r in lad.with_role(FIXED_POINT_CHECK)] == ["fake-twin", "loihi2-sim"]
    assert lad.emulator_bit_exact_vs_lava is False  # one check rung is not
    assert lad.failures() == [
        "fused: float PyTorch (fake-float) differs from PyTorch",
        "fused: emulator (loihi2-emu) is not bit-exact with fixed-point emulator (fake-twin)"]
    text = ladder_text(lad)
    assert ("loihi2-emu vs fake-twin (fixed-point emulator) on 2 samples: 3 of 400 spikes differ, logits max |diff| "
            "0.5 -> NOT bit-exact") in text
    assert "loihi2-emu vs loihi2-sim (fixed-point Lava) on 2 samples: 0 of 400 spikes differ" in text
    assert "emulator (loihi2-emu), per LIF layer spike agreement with PyTorch" in text
    page = render_html(small_report("l0"), {})
    assert page.count("fixed-point rung (loihi2-emu) bit-exact with") == 1
    rep = small_report("l0")
    rep.ladder.rungs, rep.ladder.quantization = lad.rungs, lad.quantization
    page = render_html(rep, {})
    assert "bit-exact with fixed-point emulator (fake-twin) on 2\nsamples: <b>NO</b>" in page
    assert "bit-exact with fixed-point Lava (loihi2-sim) on 2\nsamples: yes" in page
    assert page.count("<td>fake-float</td>") == 1  # its row in the ladder table


def test_inconsistent_reports_are_refused():
    with pytest.raises(ValueError, match="rung role 'emulator'"):
        Rung("x", "emulator", "loihi2-emu", 2, 0.0)
    with pytest.raises(ValueError, match="comparison with PyTorch"):
        Rung("x", FIXED_POINT, "loihi2-emu", 2, 0.0)  # a fixed-point rung without its comparison
    with pytest.raises(ValueError, match="one PyTorch and one fixed-point rung"):
        DriftLadder(Evaluation("x", 2), "fused", {}, [Rung("t", PYTORCH, "torch", 2, 0.0)], {}, {})
    two = small_ladder()
    with pytest.raises(ValueError, match="one PyTorch and one fixed-point rung"):
        DriftLadder(two.evaluation, "fused", {}, two.rungs + [two.fixed_point], {}, {})
    with pytest.raises(ValueError, match="mismatches of 10"):
        layer(mismatches=11, compared=10)
    with pytest.raises(ValueError, match="operation kind"):
        LayerOps("residual", 1.0)
    with pytest.raises(ValueError, match="bit-exact with differing spikes"):
        EmulatorMatch(3, 10, 0.0, True)
    with pytest.raises(TypeError, match="not subscriptable"):  # fields are read by attribute only
        small_ladder()["rungs"]


def comparison(mismatches=0, ties=0, agreement=1.0):
    roots = [RootDivergence(0, "l0", 0, mismatches, ties)] if mismatches else []
    fd = FirstDivergence("l0", "m.l0", 0, mismatches, ties, mismatches) if mismatches else None
    return Comparison(roots, 2 - len(roots), len(roots), all(r.ties == r.mismatches for r in roots), 0.0, 1.0, 2, 4,
                      0.0, 0.0, agreement, [1, 2], [1, 2], 100.0, mismatches, ties, fd,
                      [layer("l0", mismatches, ties=ties)])


def test_equivalence_report_earns_its_verdict_and_keeps_the_keys_readers_use():
    ok = EquivalenceReport.of(comparison(), target="reference", precision="float64", nir_bytes=10)
    assert (ok.verdict, ok.passed) == ("exact", True)
    tie32 = EquivalenceReport.of(comparison(1, 1), target="reference", precision="float32")
    assert tie32.verdict == "rounding" and tie32.root_divergences[0].ties == 1
    tie64 = EquivalenceReport.of(comparison(1, 1), target="reference", precision="float64")
    assert tie64.verdict == "fail" and not tie64.passed  # float64 must be exact
    real = EquivalenceReport.of(comparison(1, 0), target="reference", precision="float32")
    assert real.verdict == "fail"
    j = json.loads(json.dumps(to_jsonable(ok)))
    for k in ("verdict", "passed", "root_divergences", "layers", "first_divergence", "prediction_agreement",
              "predictions_target", "target_info", "target_options", "seconds", "samples", "precision"):
        assert k in j, k
    with pytest.raises(ValueError, match="sample counts"):
        Comparison([], 1, 0, True, 0.0, 1.0, 2, 4, 0.0, 0.0, 1.0, [1, 2], [1, 2], 100.0, 0, 0, None, [])


def test_verify_model_restores_the_models_dtype_when_the_target_fails(monkeypatch):
    from resformer_deploy.analysis import equivalence
    from resformer_deploy.model.resformer import build_model
    from resformer_deploy.model.calibration import randomize_state
    m = randomize_state(build_model("tiny"), seed=0).eval()

    broken = equivalence.get_target("reference")  # the real target, whose run fails half-way

    def crash(*a, **k):
        raise RuntimeError("target crashed")
    monkeypatch.setattr(broken, "run", crash)
    monkeypatch.setattr(equivalence, "get_target", lambda name: broken)
    x = torch.rand(1, m.config.in_channels, m.config.img_size, m.config.img_size)
    with pytest.raises(RuntimeError, match="target crashed"):
        equivalence.verify_model(m, x, precision="float64")
    assert {p.dtype for p in m.parameters()} == {torch.float32}
    m.double()
    with pytest.raises(RuntimeError):
        equivalence.verify_model(m, x, precision="float32")
    assert {p.dtype for p in m.parameters()} == {torch.float64}  # back to what it was, not to float32


def test_one_accuracy_and_one_digits_shape_test():
    from resformer_deploy.data.digits import is_digits_input
    from resformer_deploy.training.loop import accuracy
    y = torch.tensor([0, 1, 1, 2])
    scores = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 1]])
    assert accuracy(scores, y) == accuracy([0, 1, 0, 2], y) == 0.75 and accuracy(scores, None) is None
    with pytest.raises(ValueError, match="predictions for"):
        accuracy([0, 1], y)
    assert is_digits_input((1, 8, 8)) and is_digits_input(torch.tensor([1, 8, 8]))
    assert not is_digits_input((3, 8, 8)) and not is_digits_input((1, 16, 16))


# ---------------------------------------------------------------- the HTML page
SECTIONS = ("<h1>resformer-deploy report: ", "<h2>Summary</h2>", "<h2>Drift ladder</h2>", "<h3>Spike agreement</h3>",
            "<h3>Firing rates</h3>", "<h3>Synaptic operations</h3>", "<h3>Resources</h3>",
            "<h2>Operations and energy per image</h2>", "<h2>Loihi 2 resource plan</h2>", "<h3>Design-rule check</h3>",
            "<h2>Quantization</h2>", "Run-time saturation events (24-bit)")
FIGURES = ("spike_agreement.png", "firing_rates.png", "synaptic_ops.png", "cores_per_layer.png")


def test_report_page_escapes_every_value_and_has_every_section():
    from resformer_deploy.reporting.html import render_html
    rep = small_report(EVIL, fixed_accuracy=0.4, calibration_source="<i>train</i>")
    page = render_html(rep, {name: b"\x89PNG fake" for name in FIGURES})
    assert "<script" not in page and "<i>train</i>" not in page and "<lava-loihi>" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8  # title, tables, DRC, groups, saturation
    assert "&lt;i&gt;train&lt;/i&gt;" in page and "needs &lt;lava-loihi&gt;" in page
    for s in SECTIONS:
        assert s in page, s
    assert page.count("src='data:image/png;base64,") == 4
    # markup the template itself writes is kept
    assert "<b>NOT met</b>" in page and "goal &le; 1 pp" in page
    assert ("1 process(es) need more than Lava's stock fixed_pt models (and so the chip's own):</p>\n<ul><li>"
            "&lt;script&gt;alert(1)&lt;/script&gt;: FusedSpikeMatMul has no stock Lava process model</li></ul>") in page
    assert "fixed-point rung (loihi2-emu) bit-exact with fixed-point Lava (loihi2-sim) on 2\nsamples: yes" in page
    assert page.startswith("<!doctype html>") and page.endswith("</html>\n")


def test_report_files_from_a_typed_report(tmp_path):
    from resformer_deploy.reporting.html import write_report_files
    paths = write_report_files(tmp_path / "rep", small_report("layers_0_0_act"))
    assert sorted(p.name for p in paths) == sorted(FIGURES + ("report.html", "report.json"))
    j = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [r["role"] for r in j["ladder"]["rungs"]] == [PYTORCH, FLOAT, FIXED_POINT_CHECK, FIXED_POINT]
    assert j["energy"]["torch_counts"]["classifier"] == {"kind": "classifier_mac", "ops": 4.0}
    assert j["timing"]["pipeline_latency_steps"] == 17
    assert "data:image/png;base64," in (tmp_path / "rep" / "report.html").read_text()


def test_template_ships_in_the_wheel_and_renders_from_it(tmp_path):
    """The page renders from an installed wheel, not only from the source tree (package data)."""
    src = tmp_path / "src"
    for top in ("resformer_deploy", "exporters", "targets"):
        shutil.copytree(REPO / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist")], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("*.whl"))
    assert "resformer_deploy/reporting/templates/report.html.j2" in zipfile.ZipFile(wheel).namelist()
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from resformer_deploy.reporting import html; "
            "assert html.__file__.startswith(sys.argv[1]), html.__file__; "
            "t = html._environment().get_template('report.html.j2'); print(t.filename)")
    r = subprocess.run([sys.executable, "-c", code, str(wheel)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(wheel))
