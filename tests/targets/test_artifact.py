"""The deployment artifact (targets/artifact.py): what the writer stores is the quantized network
(read back with lava-dl's own NetDict and with our reader), netx's own hdf5.Network runs a slice
written by the same code bit for bit, and the loader alone (torch and the project's PyTorch side
blocked) rebuilds a network that plain fixed_pt Lava runs bit-exactly like the emulator."""
import dataclasses
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from exporters.torch_to_nir import export_model
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.fixed_point import formats as F
from resformer_deploy.fixed_point.network import LifQ
from resformer_deploy.flows import prepare
from resformer_deploy.lava.conv import conv2d
from targets.artifact import (FORMAT, FORMAT_VERSION, ArtifactError, CalibrationMeta, artifact_meta, read_artifact,
                              write_artifact, write_netx_slice)
from resformer_deploy.lava.host_partition import host_inputs
from resformer_deploy.fixed_point.emulator import LavaSemantics
from targets.reference import CompiledGraph
from tests.conftest import DIGITS_CKPT, REPO

T = 4
META_KEYS = {"checkpoint_sha256", "source", "variant", "img_size", "T", "preset", "calibration_source", "dssa",
             "toolchain", "input_encoding", "readout", "created_utc"}


@pytest.fixture(scope="module")
def digits_net(ck, tmp_path_factory):
    """The digits model quantized for the synaptic lowering with conv-fed biases on netx's grid, its
    artifact, 2 held-out samples and the emulator's integer run of them."""
    import torch
    g = export_model(ck.model)
    q = prepare("loihi2", g, dssa="synaptic", quantize=True, netx_bias_grid=True)["quantized_net"]
    path = tmp_path_factory.mktemp("artifact") / "digits.h5"
    written = write_artifact(path, q, g, artifact_meta(g, q, str(DIGITS_CKPT), "digits"))
    split = load_digits_split()
    x = split.x_test[:2]
    vals = q.quantize_inputs(host_inputs(q.plan, CompiledGraph(g, torch.float64), x, T))
    emu = LavaSemantics(q.plan, q).run(vals, T)
    return dict(graph=g, q=q, path=path, written=written, x=x.numpy(), y=split.y_test[:2].numpy(), vals=vals, emu=emu)


def test_netdict_reads_every_layer_group_as_the_quantized_network(digits_net):
    from lava.lib.dl.netx.utils import NetDict
    q, plan = digits_net["q"], digits_net["q"].plan
    net = NetDict(str(digits_net["path"]))
    layers = net["layer"]
    assert len(layers) == digits_net["written"]["layers"] == len(plan.neuro) - digits_net["written"]["netx_layers"]
    preds = {n: [a for a, b in plan.graph.edges if b == n] for n in plan.graph.nodes}
    # every LIF fed by one convolution alone (no delay) is one netx conv layer with it: its bias
    # is on netx's 2^6 grid (netx fixes bias_exp 6)
    pairs = {n: preds[n][0] for n in q.lif if len(preds[n]) == 1 and preds[n][0] in q.syn
             and plan.synapses[preds[n][0]].kind == "conv" and not plan.edge_delay.get((preds[n][0], n))}
    assert len(pairs) >= 5 and digits_net["written"]["netx_layers"] == len(pairs)
    assert all(q.lif[n].bias_exp == 6 for n in pairs)
    seen = {}
    for i in range(len(layers)):
        g = layers[i]
        name = g.f.attrs["name"]
        kind = g["type"]
        seen[name] = kind
        assert tuple(g["shape"]) == tuple(plan.shapes[name]), name
        if kind in ("x-conv", "conv"):
            sname = g.f.attrs["synapse"] if kind == "conv" else name
            assert np.array_equal(g["weight"], q.syn[sname].mant)
            assert (int(g["wgtExp"]) if kind == "x-conv" else "wgtExp" in g.f) == q.syn[sname].exp  # conv: none, 0
            for k in ("stride", "padding", "dilation"):
                assert tuple(g[k]) == tuple(getattr(plan.synapses[sname], k))
            assert int(g["groups"]) == plan.synapses[sname].groups
        if kind in ("x-lif", "conv"):
            lq = q.lif[name]
            n = g["neuron"]
            assert (n["type"], int(n["iDecay"]), int(n["vDecay"]), int(n["vThMant"])) == ("CUBA", 4096, lq.dv, lq.vth)
            if kind == "x-lif":
                assert np.array_equal(g.f["bias_mant"][()], lq.bias_mant) and int(g.f["bias_exp"][()]) == lq.bias_exp
            else:  # netx: per-channel mantissas of 2^6 (C,), or none when all zero
                C = plan.shapes[name][0]
                want = (lq.bias_eff >> 6).reshape(C, -1)[:, 0]
                got = np.asarray(g.f["bias"][()]) if "bias" in g.f else np.zeros(C, np.int64)
                assert np.array_equal(got, want) and np.array_equal(lq.bias_eff, np.repeat(want, lq.bias_eff.size // C) << 6)
        elif kind == "x-product":
            mm = plan.graph.nodes[name]
            assert np.array_equal(g.f["lhs_rows"][()], mm.lhs_rows) and np.array_equal(g.f["lhsBias"][()],
                                                                                      q.lhs_bias[mm.lhs])
    kinds = {n: ("conv" if n in pairs else "x-conv" if n in q.syn else "x-lif" if n in q.lif else
                 "x-product" if type(plan.graph.nodes[n]).__name__ == "SpikeMatMul" else "x-junction")
             for n in plan.neuro if n not in pairs.values()}
    assert seen == kinds  # every node once: a netx conv group holds its LIF and its synapse
    meta = net.f["meta"].attrs
    assert set(meta) == META_KEYS and net.f.attrs["format"] == FORMAT and net.f.attrs["format_version"] == 1
    assert meta["T"] == T and meta["dssa"] == "synaptic" and meta["variant"] == "digits" and meta["img_size"] == 8
    import hashlib
    assert meta["checkpoint_sha256"] == hashlib.sha256(DIGITS_CKPT.read_bytes()).hexdigest()
    assert json.loads(meta["toolchain"])["lava-nc"] == "0.10.0"


def test_reader_gives_back_the_quantized_network_and_a_numpy_stem(digits_net):
    q, plan = digits_net["q"], digits_net["q"].plan
    a = read_artifact(digits_net["path"])
    r = a.quant
    assert set(r.syn) == set(q.syn) and set(r.lif) == set(q.lif) and a.plan.neuro == plan.neuro
    for n, s in q.syn.items():
        assert np.array_equal(r.syn[n].mant, s.mant) and r.syn[n].exp == s.exp
    for n, lq in q.lif.items():
        got = r.lif[n]
        assert (got.dv, got.vth) == (lq.dv, lq.vth) and np.array_equal(got.bias_eff, lq.bias_eff)
    assert {k: v.tolist() for k, v in r.lhs_bias.items()} == {k: v.tolist() for k, v in q.lhs_bias.items()}
    assert r.lhs_bias_exp == q.lhs_bias_exp and r.scale == q.scale
    assert (a.plan.latency, a.plan.edge_delay, a.plan.inputs, a.plan.outputs) == (
        plan.latency, {e: d for e, d in plan.edge_delay.items() if d}, plan.inputs, plan.outputs)
    (h,) = plan.inputs
    assert np.array_equal(a.chip_inputs(digits_net["x"]), digits_net["vals"][h])  # numpy stem == torch stem
    (o,) = plan.outputs
    logits = a.scores(np.swapaxes(digits_net["emu"].outputs[o], 0, 1))
    assert list(logits.mean(0).argmax(-1)) == list(digits_net["y"])


def _lif_oracle(spikes_in, mant, spec, lq):
    """Lava's fixed-point conv -> LIF, straight: one sample at a time from v = 0, int64."""
    N = spikes_in.shape[0]
    out = np.zeros((N, T, int(np.prod(spec.out_shape))), dtype=bool)
    for k in range(N):
        v = np.zeros(out.shape[-1], dtype=np.int64)
        for f in range(T):
            a = conv2d(spikes_in[k, f][None], mant, spec.stride, spec.padding, spec.dilation, spec.groups)
            _, v, s, _, _ = F.lif_step(v, np.rint(a).astype(np.int64).reshape(-1), lq.dv, lq.bias_eff, lq.vth)
            v = np.where(s, 0, v)
            out[k, f] = s
    return out


def test_netx_network_runs_a_slice_written_by_the_same_code(digits_net, tmp_path):
    """up_1 (conv) -> conv_0_0 (LIF) of the first FFN as one netx conv group: netx's own
    hdf5.Network on stock fixed_pt Lava gives the emulator's spikes of that layer, and so does a
    straight oracle of Lava's conv -> LIF. The model's own bias is on netx's 2^6 grid (netx fixes
    bias_exp 6); a bias off it is refused."""
    from lava.lib.dl.netx import hdf5
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source
    q, plan, emu = digits_net["q"], digits_net["q"].plan, digits_net["emu"]
    src, syn, lif = "layers_0_1_up_0", "layers_0_1_up_1", "layers_0_1_conv_0_0"
    C, H, W = plan.shapes[src]
    N = 2
    s_in = emu.spikes[src].swapaxes(0, 1).reshape(N, T, C, H, W).astype(np.int64)
    want = emu.spikes[lif].swapaxes(0, 1)
    assert np.array_equal(_lif_oracle(s_in, q.syn[syn].mant, plan.synapses[syn], q.lif[lif]), want)
    lq = q.lif[lif]
    assert lq.bias_exp == 6 and np.any(lq.bias_mant)  # the model's own bias, on netx's grid
    off_grid = LifQ(lif, lq.dv, lq.vth, np.ones_like(lq.bias_mant), 0, 0, 0.0, 0.0)  # bias 1: not a multiple of 64
    with pytest.raises(ArtifactError, match="cannot compute this pair exactly"):
        write_netx_slice(tmp_path / "bad.net", dataclasses.replace(q, lif={**q.lif, lif: off_grid}), [(syn, lif)])
    write_netx_slice(tmp_path / "slice.net", q, [(syn, lif)])
    d = plan.latency[lif] - plan.latency[src]  # the same stock Conv -> LIFReset hop as in our network
    net = hdf5.Network(net_config=str(tmp_path / "slice.net"), input_shape=(W, H, C), reset_interval=T,
                       reset_offset=(1 + d) % T - 1)  # netx adds 1 (hardware time starts at 1)
    steps = N * T + d
    data = np.zeros((W, H, C, steps))
    data[..., :N * T] = s_in.reshape(N * T, C, H, W).transpose(3, 2, 1, 0)
    source, sink = Source(data=data), Sink(shape=net.out.shape, buffer=steps)
    source.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=Loihi2SimCfg(select_tag="fixed_pt"))
        rec = sink.data.get()
    finally:
        net.stop()
    Co, Ho, Wo = plan.shapes[lif]
    got = rec[..., d:d + N * T].transpose(3, 2, 1, 0).reshape(N, T, -1)
    assert want.sum() > 100 and np.array_equal(got > 0, want)  # netx's own network == our emulator


RUNNER = textwrap.dedent("""
    import importlib.abc, json, sys
    sys.path.insert(0, sys.argv[1])
    BLOCKED = ("torch", "resformer_deploy.model", "exporters.torch_to_nir", "exporters.nir_io", "exporters.fold_bn",
               "exporters.norse_adapter", "targets.reference", "resformer_deploy.lava.host_partition", "lava.lib.dl")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ImportError(f"blocked: {name}")

    sys.meta_path.insert(0, Block())
    import numpy as np
    from targets.artifact import read_artifact
    from targets.artifact.network import run_artifact, run_config

    art, x_path, out_path = sys.argv[2:5]
    a = read_artifact(art)
    cfg = run_config()
    assert cfg.select_tag == "fixed_pt" and not cfg.exception_proc_model_map  # stock models only
    lifs = [n for n in a.plan.neuro if n in a.quant.lif]
    taps = (lifs[0], lifs[len(lifs) // 2], lifs[-1])  # a few: every sink is one more process
    logits, out, spikes = run_artifact(a, np.load(x_path), cfg=cfg, taps=taps)
    np.savez(out_path, __out__=out, __logits__=logits, **spikes)
    print(json.dumps({"blocked_loaded": sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".")
                                                                         for b in BLOCKED))}))
""")


def test_artifact_alone_runs_on_stock_fixed_point_lava_bit_exact_with_the_emulator(digits_net, tmp_path):
    """File -> loader in a fresh interpreter where torch, the model, the torch->NIR exporter, the NIR
    file reader, the reference interpreter and lava-dl cannot be imported -> plain
    Loihi2SimCfg(select_tag='fixed_pt') (no exception map) -> the emulator's integers and spikes."""
    np.save(tmp_path / "x.npy", digits_net["x"])
    r = subprocess.run([sys.executable, "-I", "-c", RUNNER, str(REPO), str(digits_net["path"]), str(tmp_path / "x.npy"),
                        str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"blocked_loaded": []}
    got, emu, q = np.load(tmp_path / "out.npz"), digits_net["emu"], digits_net["q"]
    (o,) = q.plan.outputs
    assert np.array_equal(got["__out__"], emu.outputs[o].swapaxes(0, 1))
    taps = [n for n in got.files if n in q.lif]
    assert len(taps) == 3
    for n in taps:
        assert np.array_equal(got[n] > 0, emu.spikes[n].swapaxes(0, 1)), n
    assert min(int(emu.spikes[n].sum()) for n in taps) > 10
    assert list(got["__logits__"].mean(0).argmax(-1)) == list(digits_net["y"])


def _bytes_with(path, tmp_path, edit):
    import h5py
    import shutil
    p = tmp_path / "edited.h5"
    shutil.copy(path, p)
    with h5py.File(p, "r+") as f:
        edit(f)
    return p


def _calibration(f, edit):
    cal = json.loads(f["quant"].attrs["calibration"])
    edit(cal)
    f["quant"].attrs["calibration"] = json.dumps(cal)


def test_the_calibration_is_a_typed_record_written_as_before(digits_net, tmp_path):
    import h5py
    q = digits_net["q"]
    with h5py.File(digits_net["path"], "r") as f:  # the attribute the writer of format 1 wrote, byte for byte
        assert f["quant"].attrs["calibration"] == json.dumps(q.calibration, default=str)
    a = read_artifact(digits_net["path"])
    c = a.calibration
    assert isinstance(c, CalibrationMeta) and c.version == FORMAT_VERSION == 1
    assert (c.source, c.samples, c.margin, c.netx_bias_grid) == (q.calibration["source"], q.calibration["samples"],
                                                                q.calibration["margin"], True)
    assert list(c.to_json()) == list(q.calibration) and a.quant.calibration == c.to_json()
    # a file written before netx_bias_grid was recorded still loads; the key is then None
    older = _bytes_with(digits_net["path"], tmp_path, lambda f: _calibration(f, lambda d: d.pop("netx_bias_grid")))
    assert read_artifact(older).calibration.netx_bias_grid is None
    assert CalibrationMeta.of({}).source is None  # a network quantized without our flow states nothing


@pytest.mark.parametrize("case", ["missing", "text", "truncated", "corrupt", "foreign", "newer", "no_layer", "bad_type",
                                  "bad_calibration"])
def test_unreadable_artifacts_are_one_line_errors(digits_net, tmp_path, case):
    import h5py
    src = digits_net["path"]
    data = src.read_bytes()
    p = tmp_path / "a.h5"
    expect = {"missing": "no such file", "text": "not an HDF5 file", "truncated": "corrupt or truncated HDF5",
              "corrupt": "corrupt or truncated HDF5", "foreign": "not a resformer-deploy artifact",
              "newer": f"format version {FORMAT_VERSION + 1} is newer", "no_layer": "have no layer group",
              "bad_type": "unknown layer type 'pool'",
              "bad_calibration": "quant: calibration key 'samples' is str, not int"}[case]
    if case == "text":
        p.write_text("hello\n")
    elif case == "truncated":
        p.write_bytes(data[: len(data) // 2])
    elif case == "corrupt":
        p.write_bytes(data[:8] + bytes(len(data) - 8))
    elif case == "foreign":
        with h5py.File(p, "w") as f:
            f.create_dataset("x", data=np.arange(3))
    elif case == "newer":
        p = _bytes_with(src, tmp_path, lambda f: f.attrs.modify("format_version", FORMAT_VERSION + 1))
    elif case == "no_layer":
        p = _bytes_with(src, tmp_path, lambda f: f["layer"].pop(str(len(f["layer"]) - 1)))
    elif case == "bad_type":
        def edit(f):
            del f["layer/0/type"]
            f["layer/0"].create_dataset("type", data=np.bytes_("pool"))
        p = _bytes_with(src, tmp_path, edit)
    elif case == "bad_calibration":
        p = _bytes_with(src, tmp_path, lambda f: _calibration(f, lambda d: d.update(samples="many")))
    with pytest.raises(ArtifactError) as e:
        read_artifact(p)
    msg = str(e.value)
    assert expect in msg and "\n" not in msg and str(p) in msg
