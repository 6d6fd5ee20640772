"""Our process models for Lava's stock Conv (targets/lava_processes/conv.py) against independent
references: Lava's own stock Conv models (float; fixed point, which ignores weight_exp and wraps
its sums to 24 bits: ours must compute the same bits, on random kernels and on the quantized
digits model's convolutions), torch conv2d, and an exact integer re-computation through the
unrolled matrix (passes/unroll_dense.window_matrix, a test oracle only) wrapped by Lava's own
signed_clamp; then end to end on small official-topology models against PyTorch.

The Lava networks run in one child interpreter (``lava_runs``), as the lava-cpu target runs
them in its worker: this test process has torch loaded, and Lava forks its processes."""
import os
import pickle
import sys
import tempfile

import numpy as np
import pytest

from tests.support import lava_util
from targets.base import RunRequest


# one input shape (C, H, W) for every layer of a run (a run compiles one connected graph: one
# source feeding every layer); kernel (Cout, Cin/g, kh, kw), stride, padding, dilation, groups
SHAPE = (6, 7, 9)
LAYERS = [
    dict(kernel=(4, 6, 3, 3), stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1),
    dict(kernel=(6, 2, 3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=3),  # grouped, mixed
    dict(kernel=(6, 1, 3, 3), stride=(2, 2), padding=(0, 1), dilation=(2, 1), groups=6),  # depthwise
    dict(kernel=(8, 3, 1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=2),  # pointwise
    dict(kernel=(3, 6, 2, 4), stride=(1, 3), padding=(2, 0), dilation=(1, 1), groups=1),  # wide kernel
]
STEPS = 4


def _kernels(rng, fixed):
    """Float kernels, or mixed-sign 8-bit mantissas: even, as Lava's Sparse keeps them
    (lava/utils/weightutils.py truncate_weights drops the LSB of mixed-sign weights)."""
    if fixed:
        return [2 * rng.randint(-128, 128, size=layer["kernel"]).astype(np.int64) for layer in LAYERS]
    return [rng.randn(*layer["kernel"]) for layer in LAYERS]


def _run_network(job, workdir):
    """In the child: one source -> every layer (stock/our Conv, or stock Sparse with the unrolled
    matrix) -> one Probe each; returns [steps, Cout, H', W'] per layer."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.conv.process import Conv
    from lava.proc.io.source import RingBuffer
    from lava.proc.sparse.process import Sparse

    from resformer_deploy.lava.conv import out_hw, to_lava_weight
    from resformer_deploy.passes.unroll_dense import window_matrix
    from targets.lava_cpu import read_probe
    from targets.lava_processes.conv import PyConvModelFixedExact, PyConvModelFloatFast
    from targets.lava_processes.probe import Probe

    fixed, impl, x = job["fixed"], job["impl"], job["x"]
    shape, layers = job.get("shape", SHAPE), job.get("layers", LAYERS)
    c, h, w = shape
    src = RingBuffer(data=x.reshape(STEPS, -1).T.astype(np.int32 if fixed else np.float64))
    outs = []
    for i, (layer, kernel) in enumerate(zip(layers, job["kernels"])):
        exp = 0
        out_shape = (kernel.shape[0],) + out_hw((h, w), kernel.shape[2:], layer["stride"], layer["padding"],
                                                layer["dilation"])
        if impl == "sparse":
            m = window_matrix(kernel.astype(np.float64), shape, out_shape, layer["stride"], layer["padding"],
                              layer["dilation"], layer["groups"])
            syn = Sparse(weights=m.astype(np.int32) if fixed else m, weight_exp=exp, num_message_bits=24)
            src.s_out.connect(syn.s_in)
            port = syn.a_out
        else:
            xy = lambda v: (v[1], v[0])  # noqa: E731  Lava takes (X, Y) = (cols, rows)
            conv = Conv(weight=to_lava_weight(kernel), input_shape=(w, h, c), padding=xy(layer["padding"]),
                        stride=xy(layer["stride"]), dilation=xy(layer["dilation"]), groups=layer["groups"],
                        weight_exp=exp, num_message_bits=24)
            src.s_out.reshape((c, h, w)).transpose((2, 1, 0)).connect(conv.s_in)
            port = conv.a_out.transpose((2, 1, 0)).flatten()
        path = os.path.join(workdir, f"{impl}{i}.npy")
        probe = Probe(shape=(int(np.prod(out_shape)),), num_steps=STEPS, path=path)
        port.connect(probe.a_in)
        outs.append((path, out_shape))
    ours = {Conv: PyConvModelFixedExact if fixed else PyConvModelFloatFast} if impl == "ours" else {}
    cfg = Loihi2SimCfg(select_tag="fixed_pt" if fixed else "floating_pt", exception_proc_model_map=ours)
    try:
        src.run(condition=RunSteps(num_steps=STEPS), run_cfg=cfg, compile_config={"pypy_channel_size": 1})
    finally:
        src.stop()
    return [read_probe(p, s, spikes=False) for p, s in outs]


def _child():
    """Entry point of the child interpreter: jobs (pickle) on stdin, results on stdout."""
    from targets.lava_cleanup import SHM_LOG, track_shared_memory
    jobs = pickle.load(sys.stdin.buffer)
    with tempfile.TemporaryDirectory() as d:
        track_shared_memory(d)  # every segment Lava creates here is logged
        results = [_run_network(job, d) for job in jobs]
        with open(os.path.join(d, SHM_LOG)) as f:
            made = f.read().split()
    left = [n for n in made if os.path.exists(os.path.join("/dev/shm", n))]
    sys.stdout.buffer.write(pickle.dumps((results, len(made), left)))


def lava_runs(jobs):
    return lava_util.run_child("tests.targets.test_lava_conv", jobs)


def exact_fixed(kernels, x, layers=LAYERS, in_shape=SHAPE):
    """Exact integers: the unrolled matrix in int64 (scipy) -> (sums, the sums as Lava's own
    signed_clamp(x, 24) wraps them)."""
    from lava.proc.conv.utils import signed_clamp
    from resformer_deploy.lava.conv import out_hw
    from resformer_deploy.passes.unroll_dense import window_matrix
    out, wrapped = [], []
    for layer, k in zip(layers, kernels):
        shape = (k.shape[0],) + out_hw(in_shape[1:], k.shape[2:], layer["stride"], layer["padding"],
                                       layer["dilation"])
        m = window_matrix(k.astype(np.float64), in_shape, shape, layer["stride"], layer["padding"],
                          layer["dilation"], layer["groups"]).astype(np.int64)
        acc = (m @ x.reshape(STEPS, -1).astype(np.int64).T).T.reshape(STEPS, *shape)
        out.append(acc)
        wrapped.append(signed_clamp(acc, bits=24))
    return out, wrapped


def delayed(rec):
    """Lava synapses send the previous step's result first: step t's record is input t - 1."""
    assert not np.any(rec[0])
    return rec[1:]


def _digits_conv_jobs():
    """The quantized digits model's convolutions (fixed_point/quantize.py: exponent 0), grouped by
    input shape (one run compiles one source's graph), each fed random spikes."""
    import torch
    from exporters.torch_to_nir import export_model
    from resformer_deploy.flows.fixed_point import calibrate_and_quantize, calibration_inputs
    from resformer_deploy.model.checkpoint import load_checkpoint
    from tests.conftest import DIGITS_CKPT
    m = load_checkpoint(DIGITS_CKPT).model.double().eval()
    xc, _ = calibration_inputs((1, 8, 8), 32)
    with torch.no_grad():
        q = calibrate_and_quantize(export_model(m, "float64"), xc.double(), m.config.T, dssa="synaptic")
    by_shape = {}
    for n, syn in q.syn.items():
        spec = q.plan.synapses[n]
        if spec.kind == "conv":
            assert syn.exp == 0, n
            by_shape.setdefault(tuple(spec.in_shape), []).append((
                dict(kernel=syn.mant.shape, stride=spec.stride, padding=spec.padding, dilation=spec.dilation,
                     groups=spec.groups), syn.mant))
    rng = np.random.RandomState(5)
    return [dict(fixed=True, shape=shape, layers=[layer for layer, _ in convs], kernels=[k for _, k in convs],
                 x=(rng.rand(STEPS, *shape) < 0.3).astype(np.int64)) for shape, convs in by_shape.items()]


@pytest.fixture(scope="module")
def runs():
    rng = np.random.RandomState(11)
    xf = rng.randn(STEPS, *SHAPE)
    kf = _kernels(rng, fixed=False)
    xg = rng.randint(-(1 << 11), 1 << 11, size=(STEPS,) + SHAPE)  # graded: float64 sums, < 2^23
    xs = (rng.rand(STEPS, *SHAPE) < 0.3).astype(np.int64)  # spikes: float32 sums
    xw = rng.randint(-(1 << 16), 1 << 16, size=(STEPS,) + SHAPE)  # sums beyond 24 bits
    kq = _kernels(rng, fixed=True)
    jobs = {
        "float stock": dict(fixed=False, impl="stock", x=xf, kernels=kf),
        "float ours": dict(fixed=False, impl="ours", x=xf, kernels=kf),
    }
    for name, x in (("fixed", xg), ("spikes", xs), ("wide", xw)):
        for impl in ("stock", "ours"):
            jobs[f"{name} {impl}"] = dict(fixed=True, impl=impl, x=x, kernels=kq)
    for i, job in enumerate(_digits_conv_jobs()):
        for impl in ("stock", "ours"):
            jobs[f"digits{i} {impl}"] = dict(job, impl=impl)
    results, made, left = lava_runs(list(jobs.values()))
    assert made >= len(jobs) * 2 and not left, f"Lava left {len(left)} of {made} shared memory segments"
    return jobs, dict(zip(jobs, results))


def test_float_model_equals_stock_float_model_and_torch(runs):
    import torch
    jobs, res = runs
    x = torch.from_numpy(jobs["float ours"]["x"])
    for i, (layer, k) in enumerate(zip(LAYERS, jobs["float ours"]["kernels"])):
        ref = torch.nn.functional.conv2d(x, torch.from_numpy(k), stride=layer["stride"], padding=layer["padding"],
                                         dilation=layer["dilation"], groups=layer["groups"]).numpy()[:-1]
        ours, stock = delayed(res["float ours"][i]), delayed(res["float stock"][i])
        assert ours.shape == ref.shape == stock.shape, (i, ours.shape, ref.shape)
        np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-12 * np.abs(ref).max(), err_msg=f"layer {i}")
        np.testing.assert_allclose(ours, stock, rtol=0, atol=1e-12 * np.abs(ref).max(), err_msg=f"layer {i}")
        assert np.abs(ref).max() > 1  # a real signal, not zeros


@pytest.mark.parametrize("inputs", ["fixed", "spikes"])
def test_fixed_model_equals_stock_fixed_model(runs, inputs):
    jobs, res = runs
    exact, _ = exact_fixed(jobs[f"{inputs} ours"]["kernels"], jobs[f"{inputs} ours"]["x"])
    for i in range(len(LAYERS)):
        ours, stock = delayed(res[f"{inputs} ours"][i]), delayed(res[f"{inputs} stock"][i])
        assert np.abs(exact[i]).max() < 1 << 23  # no 24-bit wrap in this run
        np.testing.assert_array_equal(ours, stock, err_msg=f"layer {i}")
        np.testing.assert_array_equal(ours, exact[i][:-1], err_msg=f"layer {i}")
        assert np.count_nonzero(ours) > ours.size // 4  # values, not a silent layer


def test_fixed_model_wraps_at_24_bits_as_stock_does(runs):
    jobs, res = runs
    exact, wrapped_ref = exact_fixed(jobs["wide ours"]["kernels"], jobs["wide ours"]["x"])
    wrapped = 0
    for i in range(len(LAYERS)):
        ours, stock = delayed(res["wide ours"][i]), delayed(res["wide stock"][i])
        np.testing.assert_array_equal(ours, stock, err_msg=f"layer {i}")
        np.testing.assert_array_equal(ours, wrapped_ref[i][:-1], err_msg=f"layer {i}")
        wrapped += int((np.abs(exact[i][:-1]) >= 1 << 23).sum())
    assert wrapped > 100  # the wrap was exercised


def test_fixed_model_equals_stock_on_the_quantized_digits_convolutions(runs):
    """The optional fast model computes the stock model's bits on every convolution of the
    quantized digits network (all 17, spike inputs)."""
    jobs, res = runs
    names = sorted({k.rsplit(" ", 1)[0] for k in jobs if k.startswith("digits")})
    convs = 0
    for name in names:
        job = jobs[f"{name} ours"]
        _, ref = exact_fixed(job["kernels"], job["x"], job["layers"], job["shape"])
        for i in range(len(job["layers"])):
            ours, stock = delayed(res[f"{name} ours"][i]), delayed(res[f"{name} stock"][i])
            np.testing.assert_array_equal(ours, stock, err_msg=f"{name} layer {i}")
            np.testing.assert_array_equal(ours, ref[i][:-1], err_msg=f"{name} layer {i}")
            assert np.count_nonzero(ours) > 0
            convs += 1
    assert convs == 17


def _fixed_model(kernel, weight_exp=0):
    from resformer_deploy.lava.conv import to_lava_weight
    from targets.lava_processes.conv import PyConvModelFixedExact
    m = PyConvModelFixedExact({})
    for var, v in dict(weight=to_lava_weight(kernel), stride=[1, 1], padding=[0, 0], dilation=[1, 1], groups=[1],
                       num_message_bits=[24], weight_exp=[weight_exp], num_weight_bits=[8]).items():
        setattr(m, var, np.asarray(v))
    return m


def test_fixed_model_refuses_what_the_stock_model_would_not_compute():
    """A nonzero weight_exp (stock ignores it) and sums beyond int32 (stock's cast is undefined)."""
    k = np.array([[[[255, 254, 253]]]], dtype=np.int64)  # (1, 1, 1, 3)
    with pytest.raises(ValueError, match="weight_exp -1: Lava's stock Conv models ignore weight_exp"):
        _fixed_model(k, -1)._setup()
    m = _fixed_model(k)
    m._setup()
    x = np.array([[[1 << 22, 1 << 22, 1 << 22]]], dtype=np.int64)  # sum 762 * 2^22 > 2^31
    with pytest.raises(ValueError, match="sums beyond int32"):
        m._compute(x)
    x = np.array([[[1 << 15, 1 << 14, 3]]], dtype=np.int64)  # 764 * 2^14 + 759: past 2^23, wraps
    want = 255 * (1 << 15) + 254 * (1 << 14) + 253 * 3
    assert want >= 1 << 23 and int(m._compute(x)[0, 0, 0]) == want - (1 << 24)


@pytest.mark.parametrize("name", ["cifar16", "dvsg16"])
def test_small_official_topology_on_lava_conv_equals_pytorch(name):
    from resformer_deploy.analysis.equivalence import verify_model
    from tests.support.small_models import small_inputs, small_model
    m = small_model(name)
    rep = verify_model(m, small_inputs(m, 2, seed=7), target="lava-cpu", precision="float64")
    assert rep.target_info["process_kinds"]["Conv"] == 32  # every Conv2d of the topology
    assert len(rep.layers) == 38 and rep.total_mismatches == 0, rep.layers
    assert rep.prediction_agreement == 1.0 and rep.logits_max_rel_diff < 1e-12
    assert sum(r.torch_rate > 0.01 for r in rep.layers) >= 20  # the layers do fire
    info = rep.target_info
    # the cost model's counts (targets.lava_worker.wiring, from the plan alone) are what was built
    from exporters.torch_to_nir import export_model
    from targets import get_target
    from targets.lava_worker import wiring
    graph = export_model(m, "float64")
    w = wiring(get_target("lava-cpu").plan(graph, "fused"), 2, m.config.T)
    est = get_target("lava-cpu").estimate(RunRequest.sizing(graph, 2, m.config.T))
    assert est.basis.startswith(f"{info['processes']} Lava processes, {info['steps']} steps")
    assert est.peak_bytes > info["shm_bytes"] + info["processes"] * 2**20
    assert (w["processes"], w["process_kinds"]) == (info["processes"], info["process_kinds"])
    assert info["channel_slots"] == 1 and info["channel_bytes"] == 8 * w["channel_values"]
    # ... and what Lava allocated: /dev/shm segments of the run, measured (+ its management channels)
    assert 0 <= info["shm_bytes"] - info["channel_bytes"] < 0.01 * info["channel_bytes"]


def test_small_official_topology_fixed_point_on_lava_conv_equals_emulator():
    """loihi2-sim (our fixed-point Conv model) spike for spike with loihi2-emu, every LIF layer."""
    import torch
    from exporters.torch_to_nir import export_model
    from resformer_deploy.flows.fixed_point import calibrate_and_quantize
    from targets import get_target
    from tests.support.small_models import small_inputs, small_model
    m = small_model("cifar16")
    g = export_model(m, "float64")
    q = calibrate_and_quantize(g, small_inputs(m, 8, seed=3).double(), m.config.T)
    assert all(s.kind == "conv" for s in q.syn.values())
    x = small_inputs(m, 2, seed=7).double()
    lava = get_target("loihi2-sim").run(RunRequest.of(g, x, m.config.T, quant=q))
    info = lava.stats
    emu = get_target("loihi2-emu").run(RunRequest.of(g, x, m.config.T, quant=q))
    assert info.process_kinds["Conv"] == 32 and len(lava.spikes) == 38 and set(lava.spikes) == set(emu.spikes)
    assert 0 <= info.shm_bytes - info.channel_bytes < 0.01 * info.channel_bytes  # int32 channels
    for n in lava.spikes:
        assert torch.equal(lava.spikes[n], emu.spikes[n]), n
    assert sum(float(s.double().mean()) > 0.01 for s in lava.spikes.values()) >= 20
    assert torch.equal(lava.output, emu.output.to(lava.output.dtype))
