"""api.load / api.inspect_checkpoint and api.export / api.inspect_nir (resformer_deploy/api/load.py,
export.py, inspect.py): the digits model's facts checked against the model itself, the NIR file
read back as HDF5, and equal to what `info --json` / `inspect --json` print."""
import dataclasses
import json
import os

import h5py
import pytest
from click.testing import CliRunner

from resformer_deploy import api
from resformer_deploy.cli.main import main
from resformer_deploy.errors import DeployError
from tests.conftest import DIGITS_CKPT


def test_option_and_result_fields_are_exactly_these():
    fields = lambda c: [f.name for f in dataclasses.fields(c)]  # noqa: E731
    assert fields(api.CheckpointOptions) == ["variant", "img_size", "T", "num_classes", "unsafe_load"]
    assert fields(api.CheckpointInfo) == ["checkpoint", "variant", "params_ex_bn", "official_params_ex_bn",
                                          "calibrated", "notes", "summary"]
    assert fields(api.ExportOptions) == ["dtype", "form", "compress"]
    assert fields(api.ExportResult) == ["path", "nodes", "edges", "params", "neurons", "extension_nodes", "bytes",
                                        "variant", "T", "img_size"]
    assert fields(api.NirSummary) == ["nodes", "edges", "types", "extension_nodes", "params", "params_neuromorphic",
                                      "params_host", "neurons", "partition_nodes", "problems", "metadata", "table"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        api.CheckpointOptions().T = 8


def test_load_of_a_bad_path_raises_deploy_error_naming_the_file(tmp_path):
    with pytest.raises(DeployError, match="checkpoint file not found.*nope.pth"):
        api.load(str(tmp_path / "nope.pth"))
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DeployError, match="bad.pth.*not a readable PyTorch checkpoint"):
        api.load(str(bad))
    with pytest.raises(DeployError, match="unknown variant 'huge'"):
        api.load(str(DIGITS_CKPT), api.CheckpointOptions(variant="huge"))


def test_inspect_checkpoint_counts_the_model_and_equals_info_json():
    ck = api.load(str(DIGITS_CKPT), api.CheckpointOptions(T=4))
    info = api.inspect_checkpoint(ck)
    assert (info.variant, ck.config.T, info.checkpoint) == ("digits", 4, str(DIGITS_CKPT))
    # independent count: every parameter outside BatchNorm layers
    import torch
    bn = {n for n, m in ck.model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    own = sum(p.numel() for n, p in ck.model.named_parameters() if n.rsplit(".", 1)[0] not in bn)
    assert info.params_ex_bn == own
    assert info.calibrated and info.matches_official is None  # no published count for digits
    printed = json.loads(CliRunner().invoke(main, ["info", str(DIGITS_CKPT), "--json"]).output)
    assert json.dumps(printed) == json.dumps(info.summary.to_json())  # the same keys, in order


def test_export_writes_what_it_reports_and_inspect_reads_it(tmp_path):
    out = tmp_path / "d.nir"
    r = api.export(api.load(str(DIGITS_CKPT)), str(out), api.ExportOptions(dtype="float64"))
    with h5py.File(out, "r") as f:  # read as plain HDF5 (NIR's layout), not by our reader
        n_nodes, n_edges = len(f["node/nodes"]), len(f["node/edges"])
        n_ext = sum(f[f"node/nodes/{k}/type"][()].decode().startswith("resformer_deploy.") for k in f["node/nodes"])
    assert (r.path, r.bytes) == (str(out), os.path.getsize(out))
    assert (r.nodes, r.edges, r.extension_nodes) == (n_nodes, n_edges, n_ext)
    assert (r.extension_nodes, r.variant, r.T, r.img_size) == (6, "digits", 4, 8)
    s = api.inspect_nir(str(out))
    assert (s.nodes, s.edges, s.params, s.neurons) == (r.nodes, r.edges, r.params, r.neurons)
    assert s.types["LIF"] == 20 and s.problems == []
    assert sum(s.types.values()) == n_nodes
    printed = json.loads(CliRunner().invoke(main, ["inspect", str(out), "--json"]).output)
    assert printed == json.loads(json.dumps(s.to_json(), default=str))


def test_inspect_nir_of_a_bad_file_names_it(tmp_path):
    (tmp_path / "x.nir").write_text("not hdf5")
    with pytest.raises(DeployError, match="x.nir.*not a readable HDF5/NIR file"):
        api.inspect_nir(str(tmp_path / "x.nir"))
