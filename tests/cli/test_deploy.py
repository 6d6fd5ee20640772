"""`deploy` (resformer_deploy/cli/deploy.py) and `compile --quantize` write the deployable artifact
(targets/artifact): the file read back is the network the flow quantized; `deploy` is the first
command of --help; without lava-loihi nothing runs and the command says why in one line."""
import json

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from exporters.torch_to_nir import export_model
from resformer_deploy.model.checkpoint import load_checkpoint

from resformer_deploy.cli.main import main
from targets.artifact import FORMAT, read_artifact
from tests.conftest import DIGITS_CKPT


def test_deploy_is_the_first_command_in_help():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    commands = r.output.split("Commands:")[1].split()
    assert commands[0] == "deploy"


def test_deploy_writes_the_artifact_and_reads_it_back(tmp_path):
    out = tmp_path / "sub" / "digits.h5"
    r = CliRunner().invoke(main, ["deploy", str(DIGITS_CKPT), "-o", str(out), "--calib-samples", "16",
                                  "--netx-bias-grid", "--data", "digits", "--simulate", "--samples", "1"])
    assert r.exit_code == 0, r.output + r.stderr
    lines = r.stdout.strip().splitlines()
    # 17 convolutions, 20 LIFs: the 5 LIFs fed by one convolution alone are netx conv groups with it
    # (--netx-bias-grid puts their biases on netx's 2^6 grid)
    assert lines[0].startswith(f"wrote {out}: 47 layer groups (5 in lava-dl netx schema; conv 5, x-conv 12, "
                               f"x-junction 9, x-lif 15, x-product 6)")
    # the file on stock-model Lava (in the worker) against the emulator: the first held-out digit is a 3
    assert lines[1].startswith("Lava stock models (Loihi2SimCfg fixed_pt, no exception map; 119 processes, ")
    assert lines[1].endswith("1/1 correct, classes [3]; vs loihi2-emu: 0 of 1,024 output values and 0 of 86,656 "
                             "spikes differ")
    assert lines[-1].startswith("Loihi 2: not run here: target loihi2 (real Loihi 2 hardware) needs Intel's")
    assert "quantized on digits training split (first 16 of 1438)" in r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["format"] == FORMAT and f["meta"].attrs["dssa"] == "synaptic"
        assert f["meta"].attrs["calibration_source"] == "digits training split (first 16 of 1438)"
    art = read_artifact(out)
    assert art.T == 4 and art.plan.dssa == "synaptic" and len(art.quant.syn) == 17
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["digits.h5", "sub"]  # no temporary left
    r = CliRunner().invoke(main, ["deploy", "--artifact", str(out)])
    assert r.exit_code == 0, r.output + r.stderr
    assert r.stdout.startswith(f"{out}: digits @8, T=4, DSSA synaptic, 47 layer groups (5 in netx schema)")


def test_compile_quantize_writes_the_artifact_beside_the_plan(tmp_path):
    r = CliRunner().invoke(main, ["compile", str(DIGITS_CKPT), "--quantize", "--dssa", "synaptic", "--calib-samples",
                                  "16", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output + r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loihi2_network.h5", "loihi2_plan.json"]
    # default: the finest biases, which netx's fixed bias_exp 6 cannot hold: extension groups only
    assert f"wrote {tmp_path / 'loihi2_network.h5'}: 52 layer groups (0 in lava-dl netx schema; x-conv 17, " \
           f"x-junction 9, x-lif 20, x-product 6)" in r.stdout
    assert "stock models: every process runs on Lava's stock fixed_pt models as planned\n" in r.stdout
    plan = json.loads((tmp_path / "loihi2_plan.json").read_text())
    assert plan["stock_models"] == {"checked_quantized": True, "findings": []}
    art = read_artifact(tmp_path / "loihi2_network.h5")
    assert all(s.exp == 0 for s in art.quant.syn.values() if s.kind == "conv")
    assert np.all([lq.vth > 0 for lq in art.quant.lif.values()])
    r = CliRunner().invoke(main, ["compile", str(DIGITS_CKPT), "-o", str(tmp_path / "plain")])
    assert r.exit_code == 0 and sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["loihi2_plan.json"]
    # fused (the default), not quantized: the 6 DSSA products have no stock model, named
    products = [n for n, node in export_model(load_checkpoint(DIGITS_CKPT).model).nodes.items()
                if type(node).__name__ == "SpikeMatMul"]
    found = json.loads((tmp_path / "plain" / "loihi2_plan.json").read_text())["stock_models"]
    assert found["checked_quantized"] is False and len(products) == 6
    assert sorted(f.split(":")[0] for f in found["findings"]) == sorted(products)
    assert all("FusedSpikeMatMul has no stock Lava process model" in f for f in found["findings"])
    assert ("stock models: 6 process(es) need more than Lava's stock models (number formats not checked: add "
            "--quantize):") in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--simulate"], "--simulate runs samples of --data: give --data (e.g. --data digits)"),
    (["--artifact", "x.h5", "--netx-bias-grid"],
     "--artifact x.h5: an artifact is quantized already; --netx-bias-grid applies when writing one from a MODEL"),
    (["--simulate", "--data", "digits", "--dssa", "fused"],
     "--simulate --dssa fused: the fused lowering's FusedSpikeMatMul processes have no stock Lava process model; "
     "use --dssa synaptic")])
def test_deploy_refuses_before_work(tmp_path, args, message):
    model = [] if "--artifact" in args else [str(DIGITS_CKPT), "-o", str(tmp_path / "d.h5")]
    r = CliRunner().invoke(main, ["deploy", *model, *args])
    assert r.exit_code == 2 and r.stderr.strip() == f"error: {message}"
    assert list(tmp_path.iterdir()) == []
