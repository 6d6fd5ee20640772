"""--data / --calib-data on verify, simulate, ops, compile --quantize and report: the data is used,
recorded in the JSON (inputs, calibration source), and --calib-data refused where nothing is quantized."""
import json

import numpy as np

from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.data.writers import write_npz
from tests.cli.test_cli import assert_one_line_error, run


def test_data_on_verify_simulate_ops(digits_ckpt, tmp_path):
    split = load_digits_split()
    npz = write_npz(str(tmp_path / "d.npz"), split.x_test[:6].numpy(), split.y_test[:6].numpy())
    r = run("verify", str(digits_ckpt), "--target", "reference", "--samples", "3", "--precision", "float64",
            "--data", npz, "--json-out", str(tmp_path / "v.json"))
    assert r.exit_code == 0, r.stderr
    v = json.loads((tmp_path / "v.json").read_text())
    assert v["inputs"].startswith(f"npz {npz}: 6 samples") and v["reports"][0]["samples"] == 3
    assert_one_line_error(run("verify", str(digits_ckpt), "--target", "reference", "--calib-data", "digits"),
                          "target 'reference' runs floating point; nothing is calibrated")
    nir_file = tmp_path / "d.nir"
    assert run("export", str(digits_ckpt), "-o", str(nir_file)).exit_code == 0
    r = run("simulate", str(nir_file), "--target", "reference", "--samples", "6", "--data", npz,
            "--json-out", str(tmp_path / "s.json"))
    assert r.exit_code == 0, r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["data"]["kind"] == "npz" and s["calibration"] is None
    assert s["accuracy"] == float(np.mean(np.array(s["predictions"]) == split.y_test[:6].numpy()))
    r = run("ops", str(digits_ckpt), "--samples", "2", "--data", "digits", "--split", "train",
            "--json-out", str(tmp_path / "o.json"))
    assert r.exit_code == 0, r.stderr
    assert json.loads((tmp_path / "o.json").read_text())["inputs"].startswith("digits (scikit-learn, train split)")


def test_calib_data_on_compile_and_report(digits_ckpt, tmp_path):
    r = run("compile", str(digits_ckpt), "-o", str(tmp_path / "plan"), "--quantize", "--calib-data", "digits",
            "--calib-samples", "16")
    assert r.exit_code == 0, r.stderr
    plan = json.loads((tmp_path / "plan" / "loihi2_plan.json").read_text())
    assert plan["calibration"]["data"]["split"] == "train" and plan["calibration"]["samples"] == 16
    assert_one_line_error(run("compile", str(digits_ckpt), "-o", str(tmp_path / "p2"), "--calib-data", "digits"),
                          "compile quantizes only with --quantize")
    r = run("report", str(digits_ckpt), "-o", str(tmp_path / "rep"), "--lava-samples", "0", "--eval-samples", "12",
            "--data", "digits", "--calib-data", "digits", "--calib-samples", "16")
    assert r.exit_code == 0, r.stderr
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    lad = rep["ladder"]
    assert lad["evaluation"]["samples"] == 12 and "test split" in lad["evaluation"]["source"]
    assert lad["calibration"]["data"]["split"] == "train" and "train split" in lad["calibration"]["source"]
    assert "train split" in (tmp_path / "rep" / "report.html").read_text()


def test_data_on_the_fixed_point_drift_ladder(digits_ckpt, tmp_path):
    out = tmp_path / "l.json"
    r = run("verify", str(digits_ckpt), "--target", "loihi2-emu", "--dssa", "fused", "--eval-samples", "10",
            "--data", "digits", "--calib-data", "digits", "--calib-samples", "16", "--json-out", str(out))
    assert r.exit_code == 0, r.stderr
    lad = json.loads(out.read_text())["ladders"][0]
    assert lad["evaluation"]["samples"] == 10 and lad["evaluation"]["source"].startswith("digits (scikit-learn, test")
    assert lad["calibration"]["samples"] == 16 and lad["calibration"]["data"]["split"] == "train"
    assert "quantization (calibration: digits (scikit-learn, train split)" in r.output
