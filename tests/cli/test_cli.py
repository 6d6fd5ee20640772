"""The click CLI: help, info (text and JSON), demo, and one-line errors with non-zero exit."""
import json
import shutil
import subprocess
import sys

import torch
from click.testing import CliRunner

from resformer_deploy.cli.main import main
from resformer_deploy.model.resformer import build_model
from resformer_deploy.model.calibration import randomize_state


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_help_lists_commands():
    r = run("--help")
    assert r.exit_code == 0
    assert "info" in r.output and "demo" in r.output


def test_console_script_is_installed():
    exe = shutil.which("resformer-deploy") or str((__import__("pathlib").Path(sys.executable).parent
                                                 / "resformer-deploy"))
    p = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert p.returncode == 0 and "resformer-deploy" in p.stdout


def test_info_on_shipped_checkpoint(digits_ckpt):
    r = run("info", str(digits_ckpt))
    assert r.exit_code == 0, r.stderr
    assert "digits (config checkpoint)" in r.output
    assert "161,296 excluding BatchNorm" in r.output
    assert "1x8x8, T=4" in r.output
    assert "layers.2.1" in r.output  # firing-rate table lists every DSSA
    j = json.loads(run("info", str(digits_ckpt), "--json").output)
    assert j["variant"] == "digits" and j["params_ex_bn"] == 161_296 and j["calibrated"]
    assert [r["layer"] for r in j["firing_rates"]] == ["layers.0.0", "layers.1.1", "layers.2.1"]
    assert j["config"]["T"] == 4 and j["config"]["img_size"] == 8


def test_info_on_official_layout_reports_official_count(tmp_path):
    p = tmp_path / "ti.pth"
    torch.save({"model": randomize_state(build_model("ti")).state_dict(), "epoch": 311}, p)
    j = json.loads(run("info", str(p), "--json").output)
    assert j["variant"] == "ti" and j["config_source"] == "inferred"
    assert j["params_ex_bn"] == j["official_params_ex_bn"] == 11_141_312
    assert j["state_dict_keys"] == 211 and j["state_dict_buffers"] == 111


def assert_one_line_error(r, *fragments):
    assert r.exit_code == 2, (r.exit_code, r.output, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr + r.output
    for f in fragments:
        assert f in lines[0]


def test_errors_are_one_line(tmp_path):
    assert_one_line_error(run("info", str(tmp_path / "nope.pth")), "checkpoint file not found", "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_text("garbage")
    assert_one_line_error(run("info", str(bad)), "bad.pth", "not a readable PyTorch checkpoint")
    sd = build_model("cifar").state_dict()
    del sd["layers.1.1.W.weight"]
    p = tmp_path / "miss.pth"
    torch.save(sd, p)
    assert_one_line_error(run("info", str(p), "--variant", "cifar"), "missing key(s): layers.1.1.W.weight")
    assert_one_line_error(run("info", str(p), "--variant", "huge"), "unknown variant 'huge'")


def test_demo_reports_accuracy_and_writes_json(digits_ckpt, tmp_path):
    out = tmp_path / "demo.json"
    r = run("demo", "--json-out", str(out), "--out-dir", str(tmp_path / "build"), "--lava-samples", "6")
    assert r.exit_code == 0, r.stderr
    assert "held-out accuracy (PyTorch)" in r.output and "Lava vs PyTorch on the same samples" in r.output
    j = json.loads(out.read_text())
    assert j["samples"] == 359 and j["accuracy"] >= 0.90
    assert len(j["predictions"]) == 359
    assert (tmp_path / "build" / "digits_resformer.nir").exists()
    assert [rep["target_options"]["dssa"] for rep in j["lava"]] == ["fused", "synaptic"]
    assert all(rep["passed"] and rep["samples"] == 6 for rep in j["lava"])


def test_demo_with_missing_checkpoint(tmp_path):
    assert_one_line_error(run("demo", "--checkpoint", str(tmp_path / "x.pt")), "checkpoint file not found")
