"""`deploy` (resformer_deploy/cli/deploy.py) and `compile --quantize` write the deployable artifact
(targets/artifact): the file read back is the network the flow quantized; `deploy` is the first
command of --help; without lava-loihi nothing runs and the command says why in one line."""
import h5py
import numpy as np
from click.testing import CliRunner

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
    r = CliRunner().invoke(main, ["deploy", str(DIGITS_CKPT), "-o", str(out), "--calib-samples", "16"])
    assert r.exit_code == 0, r.output + r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith(f"wrote {out}: 52 layer groups (0 in lava-dl netx schema; x-conv 17, x-junction 9, "
                               f"x-lif 20, x-product 6)")
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
    assert r.stdout.startswith(f"{out}: digits @8, T=4, DSSA synaptic, 52 layer groups (0 in netx schema)")


def test_compile_quantize_writes_the_artifact_beside_the_plan(tmp_path):
    r = CliRunner().invoke(main, ["compile", str(DIGITS_CKPT), "--quantize", "--dssa", "synaptic", "--calib-samples",
                                  "16", "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output + r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loihi2_network.h5", "loihi2_plan.json"]
    assert f"wrote {tmp_path / 'loihi2_network.h5'}: 52 layer groups" in r.stdout
    art = read_artifact(tmp_path / "loihi2_network.h5")
    assert all(s.exp == 0 for s in art.quant.syn.values() if s.kind == "conv")
    assert np.all([lq.vth > 0 for lq in art.quant.lif.values()])
    r = CliRunner().invoke(main, ["compile", str(DIGITS_CKPT), "-o", str(tmp_path / "plain")])
    assert r.exit_code == 0 and sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["loihi2_plan.json"]
