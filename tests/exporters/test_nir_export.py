"""torch -> NIR export: deployment-normal form, file round trip, extension nodes, errors."""
import h5py
import nir
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from exporters.graph_check import check_graph
from exporters.nir_ext import MaxPool2d, SpikeMatMul
from exporters.nir_io import NIRFileError, read_nir, write_nir
from exporters.torch_to_nir import export_model
from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.errors import CalibrationError
from resformer_deploy.model.resformer import build_model
from resformer_deploy.model.calibration import randomize_state
from targets.base import RunRequest


@pytest.fixture(scope="module")
def digits_graph(tmp_path_factory):
    from tests.conftest import DIGITS_CKPT
    ck = load_checkpoint(DIGITS_CKPT)
    path = tmp_path_factory.mktemp("nir") / "digits.nir"
    write_nir(export_model(ck.model), path)
    return ck.model, read_nir(path)


@pytest.mark.parametrize("name", ["ti", "s", "m", "l", "cifar", "dvsg", "digits"])
def test_every_variant_exports_a_valid_graph(name):
    m = randomize_state(build_model(name), seed=0).eval()
    g = export_model(m)
    _, problems = check_graph(g)
    assert problems == []
    types = [type(v).__name__ for v in g.nodes.values()]
    n_blocks = sum(m.config.blocks)
    assert types.count("LIF") == 6 * n_blocks + len(m.config.planes) - 1  # 6 per DSSA+GWFFN, 1 per downsample
    assert types.count("SpikeMatMul") == 2 * n_blocks
    assert types.count("Conv2d") == 1 + 5 * n_blocks + len(m.config.planes) - 1
    assert types.count("Scale") == 3 * n_blocks  # residual junctions
    assert ("MaxPool2d" in types) == (m.config.stem == "imagenet")
    host = {n for n, v in g.nodes.items() if v.metadata["partition"] == "host"}
    assert {"input", "prologue_0", "avgpool", "flatten", "classifier", "output"} <= host
    assert all(g.nodes[n].metadata["partition"] == "neuromorphic" for n in g.nodes
               if isinstance(g.nodes[n], (nir.LIF, SpikeMatMul)))


def test_discretisation_is_recorded_and_lif_parameters_are_explicit(digits_graph):
    model, g = digits_graph
    d = g.metadata["discretisation"]
    assert d["threshold_test"] == ">=" and d["dt"] == 1e-3 and "hard" in d["reset"]
    lif = g.nodes["layers_0_0_activation_in"]
    assert lif.tau.shape == (16, 8, 8)
    assert np.all(d["dt"] / lif.tau == 0.5)  # decay_input LIF with tau = 2 steps
    assert np.all(lif.r == 1) and np.all(lif.v_leak == 0) and np.all(lif.v_threshold == 1) and np.all(lif.v_reset == 0)
    assert g.metadata["time_steps"] == 4 and g.metadata["variant"] == "digits"


def test_plif_leak_survives_the_file_exactly(tmp_path):
    m = randomize_state(build_model("dvsg", img_size=32), seed=3).eval()
    write_nir(export_model(m), tmp_path / "d.nir")
    g = read_nir(tmp_path / "d.nir")
    k = np.float32(1e-3 / g.nodes["layers_1_0_activation"].tau)  # what the interpreter uses
    assert np.all(k == m.layers[1][0].activation.w.detach().sigmoid().numpy())


def test_bn_and_attention_scales_are_folded(digits_graph):
    model, g = digits_graph
    dssa = model.layers[1][1]
    conv = g.nodes["layers_1_1_W"]
    s = (torch.rand(3, 32, 4, 4) > 0.7).double()
    with torch.no_grad():
        y = dssa.norm.bn.double()(F.conv2d(s, dssa.W.weight.double(), stride=2))
    dssa.norm.bn.float()
    got = F.conv2d(s, torch.as_tensor(conv.weight).double(), torch.as_tensor(conv.bias).double(), stride=2)
    c1, c2 = (c.double().flatten() for c in dssa.scales())
    d = 16
    scale = torch.cat([c1[0].repeat(d), c2[0].repeat(d), c1[1].repeat(d), c2[1].repeat(d)])  # per-head interleave
    torch.testing.assert_close(got, y * scale.reshape(1, -1, 1, 1), rtol=1e-6, atol=1e-6)
    mm1, mm2 = g.nodes["layers_1_1_matmul1"], g.nodes["layers_1_1_matmul2"]
    assert (mm1.lhs, mm1.rhs, mm2.lhs, mm2.rhs) == ("layers_1_1_W", "layers_1_1_activation_in",
                                                    "layers_1_1_W", "layers_1_1_activation_attn")
    assert mm1.lhs_rows.tolist() == [list(range(0, 16)), list(range(32, 48))]  # y1 of head 0, 1
    assert mm2.lhs_rows.tolist() == [list(range(16, 32)), list(range(48, 64))]  # y2
    assert mm1.transpose_lhs and not mm2.transpose_lhs


def test_uncalibrated_model_is_refused():
    with pytest.raises(CalibrationError):
        export_model(build_model("digits").eval())


def test_stock_nir_read_refuses_extension_nodes(tmp_path, digits_graph):
    _, g = digits_graph
    write_nir(g, tmp_path / "x.nir")
    with pytest.raises(AssertionError):
        nir.read(tmp_path / "x.nir")  # fails loudly instead of misreading SpikeMatMul
    with h5py.File(tmp_path / "x.nir") as f:
        assert f["node/nodes/layers_0_0_matmul1/type"][()] == b"resformer_deploy.SpikeMatMul"


def test_grouped_conv_round_trip(tmp_path):
    w = np.random.RandomState(0).randn(8, 2, 3, 3).astype(np.float32)  # 4 groups of 2 channels
    conv = nir.Conv2d(input_shape=(5, 5), weight=w, stride=1, padding=1, dilation=1, groups=4,
                      bias=np.zeros(8, np.float32))
    g = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([8, 5, 5])), "conv": conv,
                            "output": nir.Output(output_type=np.array([8, 5, 5]))},
                     edges=[("input", "conv"), ("conv", "output")], type_check=False)
    write_nir(g, tmp_path / "g.nir")
    with pytest.raises(ValueError, match="type mismatch"):
        nir.read(tmp_path / "g.nir")  # the NIR 1.0.8 bug: declares Cin/groups input channels
    g2 = read_nir(tmp_path / "g.nir")
    assert g2.nodes["conv"].groups == 4 and list(g2.nodes["conv"].input_type["input"]) == [8, 5, 5]
    from targets import get_target
    x = torch.randn(2, 8, 5, 5)
    out = get_target("reference").run(RunRequest.of(g2, x, T=1)).output[0]
    torch.testing.assert_close(out, F.conv2d(x, torch.as_tensor(w), padding=1, groups=4))


def test_max_pool_stem_is_a_host_extension_node():
    g = export_model(randomize_state(build_model("ti"), seed=0).eval())
    mp = g.nodes["prologue_2"]
    assert isinstance(mp, MaxPool2d) and mp.metadata["partition"] == "host"
    assert list(mp.output_type["output"]) == [64, 56, 56]


def test_constant_arrays_cost_no_space_and_read_back(tmp_path):
    m = randomize_state(build_model("cifar"), seed=0).eval()
    g = export_model(m)
    write_nir(g, tmp_path / "c.nir")
    weights = sum(np.asarray(v.weight).nbytes + np.asarray(v.bias).nbytes for v in g.nodes.values()
                  if isinstance(v, nir.Conv2d))
    size = (tmp_path / "c.nir").stat().st_size
    assert size < weights * 1.1  # per-neuron LIF constants add (almost) nothing
    g2 = read_nir(tmp_path / "c.nir")
    assert np.array_equal(g2.nodes["layers_0_0_activation_attn"].tau, g.nodes["layers_0_0_activation_attn"].tau)


def test_read_errors_are_clear(tmp_path):
    (tmp_path / "text.nir").write_text("hello")
    with pytest.raises(NIRFileError, match="text.nir: not a readable HDF5/NIR file"):
        read_nir(tmp_path / "text.nir")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(NIRFileError, match="without a '/node' group"):
        read_nir(tmp_path / "other.h5")
    with pytest.raises(NIRFileError, match="NIR file not found"):
        read_nir(tmp_path / "missing.nir")


def test_truncated_file(tmp_path, digits_graph):
    _, g = digits_graph
    write_nir(g, tmp_path / "full.nir")
    data = (tmp_path / "full.nir").read_bytes()
    (tmp_path / "cut.nir").write_bytes(data[: len(data) // 3])
    with pytest.raises(NIRFileError, match="cut.nir"):
        read_nir(tmp_path / "cut.nir")


def test_foreign_graph_with_unsupported_nodes_lists_all(tmp_path):
    n = 3
    g = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([n])),
        "cuba": nir.CubaLIF(tau_syn=np.ones(n), tau_mem=np.ones(n), r=np.ones(n), v_leak=np.zeros(n),
                            v_threshold=np.ones(n)),
        "li": nir.LI(tau=np.ones(n), r=np.ones(n), v_leak=np.zeros(n)),
        "output": nir.Output(output_type=np.array([n]))},
        edges=[("input", "cuba"), ("cuba", "li"), ("li", "output")])
    nir.write(tmp_path / "foreign.nir", g)
    with pytest.raises(NIRFileError) as e:
        read_nir(tmp_path / "foreign.nir")
    msg = str(e.value)
    assert "2 problem(s)" in msg and "cuba: unsupported node type CubaLIF" in msg and "li: unsupported node type LI" in msg


def test_shape_errors_are_all_reported():
    n = nir.NIRGraph(nodes={
        "input": nir.Input(input_type=np.array([4])),
        "a": nir.Affine(weight=np.zeros((3, 5)), bias=np.zeros(3)),
        "b": nir.LIF(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
        "output": nir.Output(output_type=np.array([3]))},
        edges=[("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")], type_check=False)
    _, problems = check_graph(n)
    assert any(p.startswith("a (Affine): expects input shape (5,)") for p in problems)
    assert any(p.startswith("b (LIF): expects input shape (2,)") for p in problems)


def test_write_is_atomic(tmp_path, digits_graph):
    _, g = digits_graph
    target = tmp_path / "out.nir"
    write_nir(g, target)
    before = target.read_bytes()
    bad = nir.NIRGraph(nodes=dict(g.nodes), edges=list(g.edges), metadata={"bad": object()}, type_check=False)
    with pytest.raises(Exception):
        write_nir(bad, target)
    assert target.read_bytes() == before  # old file untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nir"]  # no temp file left


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_plif_decay_is_exported_in_the_graph_precision(dtype):
    """dt/tau of each PLIF node is the model's sigmoid(w) computed in the export's precision (a float32
    decay in a float64 graph is ~1e-8 off and flips near-threshold spikes over T=16 steps)."""
    import math
    from exporters.torch_to_nir import DT, export_model
    from resformer_deploy.model.neurons import PLIF
    from tests.support.small_models import small_model
    m = small_model("dvsg16")
    g = export_model(m, dtype)
    mods = dict(m.named_modules())
    plif = [(n, node) for n, node in g.nodes.items() if isinstance(mods.get((node.metadata or {}).get("torch_module")), PLIF)]
    assert len(plif) == sum(isinstance(v, PLIF) for v in mods.values()) > 0
    for n, node in plif:
        w = float(mods[node.metadata["torch_module"]].w)
        k64 = 1.0 / (1.0 + math.exp(-w))
        k = DT / float(np.unique(node.tau)[0])
        if dtype == "float64":
            assert abs(k - k64) <= 4e-16, n
        else:  # float32 sigmoid of the float32 parameter, as the float32 model computes it
            k32 = float(torch.sigmoid(torch.tensor(w, dtype=torch.float32)))
            assert abs(k - k32) <= 4e-16 and abs(k32 - k64) > 1e-12, n
