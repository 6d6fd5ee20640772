"""The public Lava network (targets/lava_network.py) embedded as a user would: stock RingBuffer
source into ``inp``, stock RingBuffer sinks on ``out`` and on every LIF layer's port, stepped
under its own run configuration; its spikes and output against independent runs (the reference
interpreter in float64, the loihi2-emu emulator bit for bit in fixed point), on 2 digits
samples; its structure against the cost model's counts (targets.lava_worker.wiring); and the
example script (examples/lava_embed.py) run as a user runs it.

The Lava networks run in a child interpreter with torch blocked (``sys.modules['torch'] =
None``): the network must need no torch (the artifact loader runs without it), and Lava forks
its processes from a process without torch's threads."""
import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.support import lava_util
from targets.base import RunRequest

REPO = Path(__file__).resolve().parents[2]
N_SAMPLES = 2


def _child():
    """In the child (torch blocked): build the network, connect stock I/O, run, return the
    records [size, steps] of the output and of every LIF layer, and facts about the network."""
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from targets.lava_network import build_network, frames_to_stream, run_config, stream_steps

    job = pickle.loads(sys.stdin.buffer.read())
    plan, quant, frames, T = job["plan"], job["quant"], job["frames"], job["T"]
    steps = stream_steps(plan, frames.shape[0], T)
    net = build_network(plan, T, quant=quant, lowerings=job["lowerings"])
    src = Source(data=frames_to_stream(frames, steps))
    src.s_out.connect(net.inp)
    sinks = {"out": Sink(shape=net.out.shape, buffer=steps)}
    net.out.connect(sinks["out"].a_in)
    for n in job["lifs"]:
        (port,) = net.ports_of(n)
        sinks[n] = Sink(shape=port.shape, buffer=steps)
        port.connect(sinks[n].a_in)
    net.run(condition=RunSteps(num_steps=steps), run_cfg=run_config(fixed=quant is not None))
    try:
        records = {k: s.data.get() for k, s in sinks.items()}
        subs = net.sub_processes()
        facts = {"kinds": net.process_kinds, "count": net.process_count, "names": sorted(subs),
                 "registered": len(net.procs.members), "parents": {p.parent_proc is net for p in subs.values()},
                 "inp": net.inp.shape, "out": net.out.shape, "out_delay": net.out_delay, "steps": steps,
                 "torch": "torch" in sys.modules and sys.modules["torch"] is not None}
    finally:
        net.stop()
    sys.stdout.buffer.write(pickle.dumps((records, facts)))


def run_child(job):
    return lava_util.run_child("tests.targets.test_lava_network", job, block_torch=True)


@pytest.fixture(scope="module")
def digits_graph():
    import torch
    from exporters.torch_to_nir import export_model
    from resformer_deploy.data.digits import load_digits_split
    from resformer_deploy.model.checkpoint import load_checkpoint
    from tests.conftest import DIGITS_CKPT
    model = load_checkpoint(DIGITS_CKPT).model
    x = load_digits_split().x_test[:N_SAMPLES].to(torch.float64)
    return export_model(model), x, model.config.T


# float with the fused product, fixed point with the synaptic lowering (stock processes but for
# Conv; fixed point with the fused product: tests/targets/test_lava_conv.py's loihi2-sim check)
@pytest.mark.parametrize("fixed, dssa", [(False, "fused"), (True, "synaptic")])
def test_embedded_network_equals_independent_runs(digits_graph, fixed, dssa):
    import nir
    import torch
    from resformer_deploy.flows import prepare
    from targets import get_target
    from resformer_deploy.lava.host_partition import head, stem
    from targets.lava_cpu import worker_plan
    from targets.lava_network import stream_to_frames
    from targets.lava_worker import wiring
    from targets.reference import CompiledGraph
    g, x, T = digits_graph
    twin = "loihi2-emu" if fixed else "reference"
    art = prepare(twin, g, samples=x, T=T, dssa=dssa) if fixed else prepare("lava-cpu", g, samples=x, T=T,
                                                                               dssa=dssa)
    quant = art.get("quantized_net")
    plan = quant.plan if fixed else art["lava_plan"]
    if fixed:
        want = get_target(twin).run(RunRequest.of(g, x, T, prepared=art))
    else:
        want = get_target(twin).run(RunRequest.of(g, x, T, dtype=torch.float64))
    host = CompiledGraph(g, torch.float64)
    frames = stem(plan, host, x, T, quant)
    assert frames.shape == (N_SAMPLES, T, int(np.prod(plan.shapes[plan_input(plan)])))
    assert frames.dtype == (np.int64 if fixed else np.float64)
    lifs = [n for n in plan.neuro if isinstance(g.nodes[n], nir.LIF)]
    slim = worker_plan(plan)  # what the worker and the artifact loader hand over: no per-neuron NIR arrays
    records, facts = run_child({"plan": slim, "quant": dataclasses.replace(quant, plan=slim) if fixed else None,
                                "lowerings": art.get("product_lowerings"), "frames": frames, "T": T,
                                "lifs": lifs})
    assert not facts["torch"]
    # every LIF layer's spikes, at its own latency, equal the independent run's (20 layers)
    assert len(lifs) == 20 and set(want.spikes) == set(lifs)
    for n in lifs:
        got = stream_to_frames(records[n], N_SAMPLES, T, plan.latency[n]).swapaxes(0, 1) != 0  # [T, N, size]
        ref = want.spikes[n].reshape(T, N_SAMPLES, -1).numpy()
        assert np.array_equal(got, ref), f"{n}: {(got != ref).sum()} spikes differ"
    assert any(records[n].any() for n in lifs)
    out = stream_to_frames(records["out"], N_SAMPLES, T, facts["out_delay"])
    logits = head(plan, host, out, quant)
    if fixed:  # integers all the way: the same dequantized stream, the same host head
        assert torch.equal(logits, want.output.to(torch.float64))
    else:
        torch.testing.assert_close(logits, want.output.to(torch.float64), rtol=1e-12, atol=1e-12)
    assert logits.mean(0).argmax(-1).tolist() == want.output.mean(0).argmax(-1).tolist()
    # structure: one sub-process per layer part, registered under the network; the cost model's counts
    w = wiring(plan, N_SAMPLES, T, record_spikes=False)["process_kinds"]
    w.pop("RingBuffer"), w.pop("Probe")
    assert facts["kinds"] == w and facts["count"] == sum(w.values()) == (64 if dssa == "fused" else 97)
    assert len(facts["names"]) == facts["count"] == facts["registered"] and facts["parents"] == {True}
    assert facts["inp"] == (16 * 8 * 8,) and facts["out"] == (64 * 2 * 2,)
    assert facts["out_delay"] == plan.latency[plan.outputs[0]] == (17 if dssa == "fused" else 29)
    assert facts["steps"] == N_SAMPLES * T + plan.total_latency


def plan_input(plan):
    (h,) = plan.inputs
    return h


def test_builder_refuses_what_it_cannot_build(digits_graph):
    from resformer_deploy.flows import lava_plan
    from resformer_deploy.lava.plan import LavaMappingError
    from targets.lava_network import build_network, frames_to_stream, stream_to_frames
    g, x, T = digits_graph
    plan = lava_plan(g, "synaptic")
    with pytest.raises(LavaMappingError, match=r"^synaptic DSSA lowering: no product lowering for layers_0_0_matmul1, "
                                               r"layers_0_0_matmul2, layers_1_1_matmul1, layers_1_1_matmul2, "
                                               r"layers_2_1_matmul1, layers_2_1_matmul2 \(resformer_deploy.passes.product_lowering"
                                               r".lower_products\)$"):
        build_network(plan, T)
    two = dataclasses.replace(lava_plan(g), inputs=dict(plan.inputs, extra=["layers_0_0_add"]))
    with pytest.raises(LavaMappingError, match=r"one input and one output stream; the plan has inputs "
                                               r"\['extra', 'prologue_0'\]"):
        build_network(two, T)
    with pytest.raises(LavaMappingError, match="a stream of 7 steps cannot hold 2 samples of 4 frames"):
        frames_to_stream(np.zeros((2, 4, 3)), 7)
    with pytest.raises(LavaMappingError, match=r"a record of 10 steps ends before the last frame's output "
                                               r"\(step 11\)"):
        stream_to_frames(np.zeros((3, 10)), 2, 4, 3)


def test_stream_helpers_round_trip():
    from targets.lava_network import frames_to_stream, stream_to_frames
    v = np.arange(2 * 3 * 5).reshape(2, 3, 5)
    data = frames_to_stream(v, 9)
    assert data.dtype == np.int32 and data.shape == (5, 9) and not data[:, 6:].any()
    assert data[4, 3] == v[1, 0, 4]  # sample 1, frame 0 enters at step 1*3 + 0 + 1: column 3
    rec = np.concatenate([np.zeros((5, 2)), data], axis=1)  # the same stream 2 steps later
    assert np.array_equal(stream_to_frames(rec, 2, 3, 2), v)
    assert frames_to_stream(v * 0.5, 6).dtype == np.float64


def test_example_embeds_the_network_in_a_user_loop():
    """examples/lava_embed.py as a user runs it: fixed point, synaptic DSSA (stock processes
    only, but for the Conv model), 2 samples through an Injector/Extractor loop. A stuck Lava run
    ends the example after --timeout s with its own message (RunWatchdog), shown here as the failure;
    the subprocess timeout above it is only a backstop."""
    done = subprocess.run([sys.executable, str(REPO / "examples" / "lava_embed.py"), "--fixed", "--dssa",
                           "synaptic", "--samples", "2", "--timeout", "300"], capture_output=True, text=True,
                          timeout=600, cwd=REPO)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("network: 97 processes") and "fixed point, DSSA synaptic" in lines[0]
    assert lines[-1] == "Lava classes [3, 7], PyTorch classes [3, 7], labels [3, 7]"
