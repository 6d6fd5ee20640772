"""Input validation beyond the one-line refusals of tests/bad_inputs: foreign NIR graphs run
correctly, casts are noted, the memory budget refuses without allocating, click errors are one
line for the console script too."""
import json
import subprocess
import sys
from pathlib import Path

import click
import h5py
import numpy as np
import psutil
import pytest
import torch
from click.testing import CliRunner

from exporters.graph_check import check_values
from exporters.nir_io import NIRFileError, read_nir
from resformer_deploy.cli.main import main
from resformer_deploy.errors import DeployError
from resformer_deploy.util.memory_budget import ENV, MemoryBudgetError
from resformer_deploy.analysis.equivalence import inputs_for
from targets import get_target
from targets.base import RunRequest
from tests.bad_inputs.cases_inputs import Opaque, _checkpoint, _edit_h5, foreign_graph, write_foreign
from tests.conftest import DIGITS_CKPT

MiB = 2 ** 20


def _rss():
    return psutil.Process().memory_info().rss


def numpy_lif(graph, x, T):
    """Input -> Affine -> LIF -> Output by hand: forward Euler with NIR's LIF equation
    tau dv/dt = (v_leak - v) + r I, dt = 1 ms (no dt in the file), spike if v > v_threshold
    (NIR's strict test), reset to v_reset."""
    fc, lif = graph.nodes["fc"], graph.nodes["spk"]
    current = x.numpy().astype(np.float64) @ fc.weight.T.astype(np.float64) + fc.bias
    v, out = np.zeros_like(current), []
    for _ in range(T):
        v = v + 1e-3 / lif.tau * ((lif.v_leak - v) + lif.r * current)
        s = v > lif.v_threshold
        v = np.where(s, lif.v_reset, v)
        out.append(s)
    return np.stack(out).astype(np.float64)


def test_foreign_graph_runs_on_reference_as_numpy_computes_it(tmp_path):
    path = write_foreign(tmp_path)  # input node 'x_in', not 'input'
    r = CliRunner().invoke(main, ["simulate", path, "--target", "reference", "--samples", "6",
                                  "--json-out", str(tmp_path / "r.json")])
    assert r.exit_code == 0, r.output + r.stderr
    assert "estimate: ~" in r.output and "GMAC/s" in r.output  # said before the run
    assert "reference simulation: done, 4/4 steps" in r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    graph = read_nir(path)
    x, _, _ = inputs_for((64,), 6, seed=0)  # what simulate feeds: random N(0,1), seed 0
    expect = numpy_lif(graph, x, 4)
    assert rep["predictions"] == expect.mean(0).argmax(-1).tolist() and rep["output_shape"] == [10]
    res = get_target("reference").run(RunRequest.of(graph, x.double(), 4, dtype=torch.float64))
    assert np.array_equal(res.output.numpy(), expect)
    assert 0 < expect.mean() < 1  # the comparison is not vacuous: some neurons fire, some do not


def test_foreign_graph_runs_on_lava_like_reference(tmp_path):
    """The Lava targets once blamed 'Input/Output has no Lava mapping': files without our
    `partition` metadata put every node, the interfaces too, on the chip. read_nir now gives
    Input/Output to the host."""
    graph = read_nir(write_foreign(tmp_path))
    assert {n: v.metadata["partition"] for n, v in graph.nodes.items()} == {
        "x_in": "host", "fc": "neuromorphic", "spk": "neuromorphic", "y_out": "host"}
    x = 2 * torch.randn(3, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ref = get_target("reference").run(RunRequest.of(graph, x, 4, dtype=torch.float64))
    lava = get_target("lava-cpu").run(RunRequest.of(graph, x, 4))
    assert torch.equal(lava.output.double(), ref.output)


def test_outputs_other_than_class_scores_run_without_predictions(tmp_path):
    # digits-shaped input, 3 outputs: runs, but no digits accuracy (10 classes needed)
    path = write_foreign(tmp_path, "three.nir", n_in=64, n_out=3, in_shape=[1, 8, 8], flatten=True)
    r = CliRunner().invoke(main, ["simulate", path, "--target", "reference", "--samples", "4",
                                  "--json-out", str(tmp_path / "a.json")])
    assert r.exit_code == 0, r.output + r.stderr
    rep = json.loads((tmp_path / "a.json").read_text())
    assert rep["accuracy"] is None and len(rep["predictions"]) == 4 and "not 10 class scores" in rep["inputs"]
    # a (C,H,W) output (a map, not scores): runs, no predictions
    import nir
    conv = {"x_in": nir.Input(input_type={"input": np.array([1, 4, 4])}),
            "conv": nir.Conv2d(input_shape=(4, 4), weight=np.ones((2, 1, 3, 3), np.float32), stride=1, padding=1,
                               dilation=1, groups=1, bias=np.zeros(2, np.float32)),
            "spk": nir.LIF(tau=np.full((2, 4, 4), 2e-3), r=np.ones((2, 4, 4)), v_leak=np.zeros((2, 4, 4)),
                           v_threshold=np.ones((2, 4, 4)), v_reset=np.zeros((2, 4, 4))),
            "y_out": nir.Output(output_type={"output": np.array([2, 4, 4])})}
    nir.write(tmp_path / "map.nir", nir.NIRGraph(nodes=conv, edges=[("x_in", "conv"), ("conv", "spk"),
                                                                     ("spk", "y_out")], type_check=False))
    r = CliRunner().invoke(main, ["simulate", str(tmp_path / "map.nir"), "--target", "reference", "--samples", "2",
                                  "--json-out", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output + r.stderr
    rep = json.loads((tmp_path / "m.json").read_text())
    assert rep["predictions"] is None and rep["output_shape"] == [2, 4, 4]
    assert "not class scores: no predictions" in r.output


def test_integer_tensors_are_noted_as_casts(tmp_path):
    path = _checkpoint(tmp_path, change={"prologue.1.bn.running_mean": lambda t: torch.arange(t.numel())})
    r = CliRunner().invoke(main, ["info", path])
    assert r.exit_code == 0, r.stderr
    assert "note: cast 1 integer/bool tensor(s) (int64) to float32: prologue.1.bn.running_mean" in r.stderr
    from resformer_deploy.model.checkpoint import load_checkpoint
    ck = load_checkpoint(path)
    assert torch.equal(ck.model.prologue[1].bn.running_mean, torch.arange(16, dtype=torch.float32))


def test_memory_budget_refuses_before_allocating(tmp_path):
    huge = _edit_h5(tmp_path, "node/nodes/fc/weight", fill_shape=(10 ** 6, 10 ** 6), name="huge.nir")  # 37 KB
    wrong = _edit_h5(tmp_path, "node/nodes/fc/weight", fill_shape=(10, 87_500_000), name="wrong.nir")  # 3.5 GB
    assert (tmp_path / "wrong.nir").stat().st_size < 100_000
    before = _rss()
    with pytest.raises(MemoryBudgetError, match=r"node 'fc' weight declares 1,000,000,000,000 elements \(3,725.3 GiB"):
        read_nir(huge)
    with pytest.raises(NIRFileError, match=r"expects input shape \(87500000,\)"):
        read_nir(wrong)  # within the budget: the shape check runs on a broadcast view of the fill value
    r = CliRunner().invoke(main, ["simulate", write_foreign(tmp_path), "--samples", str(10 ** 9)])
    assert r.exit_code == 2 and "memory budget" in r.stderr
    assert _rss() - before < 200 * MiB


def test_budget_rule_uses_available_memory_with_margin(tmp_path, monkeypatch):
    from resformer_deploy.util import memory_budget
    assert memory_budget.budget_bytes() <= 0.76 * psutil.virtual_memory().available
    path = write_foreign(tmp_path)
    monkeypatch.setenv(ENV, "1000")  # bytes: the 64x10 float32 weight (2,560 B) no longer fits
    with pytest.raises(MemoryBudgetError, match=r"node 'fc' weight declares 640 elements \(0.0 GiB\) > memory budget"):
        read_nir(path)


def test_fill_value_arrays_are_checked_as_views_and_returned_writable(tmp_path):
    path = write_foreign(tmp_path)
    with h5py.File(path, "r+") as f:  # a constant tau stored as a fill value, as write_nir stores them
        del f["node/nodes/spk/tau"]
        f["node/nodes/spk"].create_dataset("tau", shape=(10,), dtype=np.float32, fillvalue=2e-3, chunks=True)
    g = read_nir(path)
    assert g.nodes["spk"].tau.flags.writeable and np.all(g.nodes["spk"].tau == np.float32(2e-3))
    view = np.broadcast_to(np.float32(np.nan), (10 ** 7, 10 ** 5))  # 4 TB if it were allocated
    g.nodes["fc"].weight = view
    assert check_values(g) == ["fc (Affine): weight has 1,000,000,000,000 non-finite value(s) (NaN/inf)"]


def test_unsafe_load_is_suggested_only_where_it_exists(tmp_path):
    path = _checkpoint(tmp_path, obj={"args": Opaque()})
    info = CliRunner().invoke(main, ["info", path])
    demo = CliRunner().invoke(main, ["demo", "--checkpoint", path, "--out-dir", str(tmp_path / "d")])
    assert info.exit_code == demo.exit_code == 2
    assert "re-run with --unsafe-load" in info.stderr and "--unsafe-load" not in demo.stderr
    for data in (b"\x00" + bytes(range(256)) * 4, b"\x80\x04garbage"):  # random bytes; a broken pickle
        (tmp_path / "bad.pt").write_bytes(data)
        r = CliRunner().invoke(main, ["info", str(tmp_path / "bad.pt")])
        assert r.exit_code == 2 and "weights_only=False" not in r.stderr and "--unsafe-load" not in r.stderr, r.stderr


def test_group_main_help_version_and_console_script(tmp_path):
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0 and "Usage: resformer-deploy" in r.output
    r = CliRunner().invoke(main, ["verify", "--help"])
    assert r.exit_code == 0 and "--calib-samples INTEGER RANGE" in r.output
    r = CliRunner().invoke(main, ["--version"])
    assert r.exit_code == 0 and "version" in r.output
    with pytest.raises(click.BadParameter):  # non-standalone callers get click's exceptions, as click documents
        main.main(["info", str(DIGITS_CKPT), "--T", "0"], standalone_mode=False)
    script = [str(Path(sys.executable).parent / "resformer-deploy"), "ops", str(DIGITS_CKPT), "--samples", "-1"]
    p = subprocess.run(script, capture_output=True, text=True, cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        "error: resformer-deploy ops: Invalid value for '--samples': -1 is not in the range x>=1. "
        "(see 'resformer-deploy ops --help')"]


def test_library_calls_validate_too():
    with pytest.raises(DeployError, match="samples must be >= 1"):
        inputs_for((3, 4, 4), -1)
    with pytest.raises(DeployError, match="only 359 held-out digits samples"):
        inputs_for((1, 8, 8), 360)
    g = foreign_graph()
    with pytest.raises(DeployError, match="T = 0"):
        get_target("reference").run(RunRequest.of(g, torch.zeros(1, 64), 0))
    with pytest.raises(DeployError, match="1 NaN/inf"):
        get_target("reference").run(RunRequest.of(g, torch.tensor([[float("nan")] + [0.0] * 63]), 4))
