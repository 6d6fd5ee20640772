"""api.deploy (resformer_deploy/api/deploy.py): the artifact of the digits model written, its
typed figures equal to the file read back independently (h5py) and to `deploy --artifact`."""
import dataclasses

import h5py
import pytest
from click.testing import CliRunner

from resformer_deploy import api
from resformer_deploy.cli.main import main
from resformer_deploy.errors import DeployError
from tests.conftest import DIGITS_CKPT


def test_result_fields_are_exactly_these():
    assert [f.name for f in dataclasses.fields(api.DeployResult)] == [
        "path", "figures", "violations", "calibration", "artifact"]
    assert [f.name for f in dataclasses.fields(api.ArtifactFigures)] == [
        "layers", "netx_layers", "types", "bytes", "seconds"]


def test_the_artifact_figures_equal_the_file(tmp_path):
    out = tmp_path / "digits.h5"
    said = []
    res = api.deploy(api.load_graph(str(DIGITS_CKPT)), out, api.DeployOptions(calib_samples=16), say=said.append)
    assert said == ["quantized on digits training split (first 16 of 1438)"]
    assert res.calibration["source"] == "digits training split (first 16 of 1438)"
    fig = res.figures
    assert fig.bytes == out.stat().st_size
    assert sum(fig.types.values()) == fig.layers == 52  # as tests/cli/test_deploy.py counts them
    with h5py.File(out, "r") as f:
        assert f["meta"].attrs["dssa"] == "synaptic"
    r = CliRunner().invoke(main, ["deploy", "--artifact", str(out)])
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(f"{out}: digits @8, T=4, DSSA synaptic, {fig.layers} layer groups "
                               f"({fig.netx_layers} in netx schema)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.h5"]  # no temporary left


def test_simulating_without_data_is_refused_naming_the_option(tmp_path):
    with pytest.raises(DeployError, match="--simulate runs samples of --data"):
        api.simulate_artifact(object(), None)
