"""CLI: export, inspect and verify."""
import json

import pytest
import torch

from resformer_deploy.model.checkpoint import save_checkpoint
from resformer_deploy.model.resformer import build_model
from resformer_deploy.model.calibration import randomize_state
from tests.cli.test_cli import assert_one_line_error, run


def test_export_inspect_digits(digits_ckpt, tmp_path):
    out = tmp_path / "d.nir"
    r = run("export", str(digits_ckpt), "-o", str(out))
    assert r.exit_code == 0, r.stderr
    assert "wrote" in r.output and "6 extension nodes" in r.output and out.exists()
    r = run("inspect", str(out))
    assert r.exit_code == 0, r.stderr
    assert "ext:SpikeMatMul" in r.output and "threshold test '>='" in r.output
    j = json.loads(run("inspect", str(out), "--json").output)
    assert j["types"]["LIF"] == 20 and j["types"]["resformer_deploy.SpikeMatMul"] == 6
    assert j["params_host"] == 16 * 1 * 9 + 16 + 640  # stem conv + folded bias + classifier
    assert j["problems"] == []


@pytest.mark.float32_rounding  # make test's float32 re-runs repeat this, not the export above
def test_verify_digits(digits_ckpt, tmp_path):
    r = run("verify", str(digits_ckpt), "--samples", "30", "--json-out", str(tmp_path / "v.json"))
    assert r.exit_code == 0, r.stderr
    assert "[float64] PASS" in r.output and "[float32] PASS" in r.output
    # both runs estimated before the first starts; a progress bar per phase (stderr, not a TTY: lines)
    assert r.output.index("estimate [float32]: ~") < r.output.index("[float64] per-layer")
    for bar in ("PyTorch record (float64): done, 20/20 layers", "reference run + comparison (float32): done, 4/4"):
        assert bar in r.stderr
    rep = json.loads((tmp_path / "v.json").read_text())
    assert [x["precision"] for x in rep["reports"]] == ["float64", "float32"]
    assert all(x["samples"] == 30 for x in rep["reports"])


def test_export_standard_form_for_tiny_and_refusal_for_digits(digits_ckpt, tmp_path):
    m = randomize_state(build_model("tiny"), seed=0, bias_mean=0.8).eval()
    save_checkpoint(tmp_path / "tiny.pt", m)
    r = run("export", str(tmp_path / "tiny.pt"), "-o", str(tmp_path / "t.nir"), "--form", "standard")
    assert r.exit_code == 0, r.stderr
    assert "0 extension nodes" in r.output, r.output
    import nir
    assert len(nir.read(tmp_path / "t.nir").nodes) > 0
    r = run("export", str(digits_ckpt), "-o", str(tmp_path / "d.nir"), "--form", "standard")
    assert_one_line_error(r, "standard lowering failed", "layers_0_0_matmul1")
    assert not (tmp_path / "d.nir").exists()


def test_inspect_and_verify_errors(tmp_path, digits_ckpt):
    (tmp_path / "x.nir").write_text("not hdf5")
    assert_one_line_error(run("inspect", str(tmp_path / "x.nir")), "x.nir", "not a readable HDF5/NIR file")
    assert_one_line_error(run("verify", str(digits_ckpt), "--target", "nope"), "unknown target 'nope'")
    assert_one_line_error(run("verify", str(digits_ckpt), "--samples", "1000"), "only 359 held-out digits")


def test_simulate_on_lava(digits_ckpt, tmp_path):
    nir_file = tmp_path / "d.nir"
    assert run("export", str(digits_ckpt), "-o", str(nir_file)).exit_code == 0
    r = run("simulate", str(nir_file), "--target", "lava-cpu", "--samples", "4", "--json-out", str(tmp_path / "s.json"))
    assert r.exit_code == 0, r.stderr
    j = json.loads((tmp_path / "s.json").read_text())
    from resformer_deploy.data.digits import load_digits_split
    from resformer_deploy.model.checkpoint import load_checkpoint
    with torch.no_grad():
        want = load_checkpoint(digits_ckpt).model(load_digits_split().x_test[:4]).mean(0).argmax(-1)
    assert j["predictions"] == want.tolist()  # Lava predicts what PyTorch predicts
    assert j["info"]["processes"] == 66 and j["info"]["latency"] == 17  # no per-layer probes
    assert "accuracy" in r.output and "processes" in r.output


def test_verify_on_lava_command(digits_ckpt):
    r = run("verify", str(digits_ckpt), "--target", "lava-cpu", "--samples", "3", "--precision", "float64",
            "--dssa", "fused")
    assert r.exit_code == 0, r.stderr
    assert "[float64, fused DSSA] PASS" in r.output and "86 Lava processes, pipeline latency 17 steps" in r.output
