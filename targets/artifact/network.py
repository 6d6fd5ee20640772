"""The loaded network and its run configurations, torch-free.

The network is targets.lava_network's public ``ResformerNetwork`` (``build_network``, the only
construction path), made from the plan and quantized network the artifact holds. Its process and
sub-process model live in targets/lava_processes, a package without torch-side modules: Lava
finds a process's models by importing every module beside its definition
(lava/magma/compiler/compiler_graphs.py ``_find_proc_models``).
"""


def run_config(hardware: bool = False):
    """Lava's stock models for every layer process, select_tag fixed_pt, no exception map:
    Loihi2SimCfg, or with ``hardware`` Loihi2HwCfg (needs Intel's lava-loihi for its Nc models)."""
    from lava.magma.core.run_configs import Loihi2HwCfg, Loihi2SimCfg
    return Loihi2HwCfg(select_tag="fixed_pt") if hardware else Loihi2SimCfg(select_tag="fixed_pt")


def load_network(path):
    """The public Lava network rebuilt from an artifact file alone: no checkpoint, no NIR file, no
    torch. ``read_artifact(path)`` gives its host stem/head and metadata as well."""
    from targets.artifact.store import read_artifact
    return read_artifact(path).network()


def run_artifact(art, x, hardware: bool = False, cfg=None, taps=()):
    """Samples x (images [N, C, H, W] or frames [N, T, C, H, W], numpy) through a read artifact
    (targets.artifact.read_artifact): numpy stem, the network on Lava (stock models, streamed
    through stock RingBuffer source and sink), numpy head. -> (logits [T, N, K], the chip's
    integer output [N, T, size]); with ``taps`` (LIF layers) also {layer: spikes [N, T, size]}."""
    import numpy as np
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.sink import RingBuffer as Sink
    from lava.proc.io.source import RingBuffer as Source

    from targets.lava_network import frames_to_stream, stream_steps, stream_to_frames
    x = np.asarray(x)
    N, T = x.shape[0], art.T
    net = art.network()
    steps = stream_steps(art.plan, N, T)
    source, sink = Source(data=frames_to_stream(art.chip_inputs(x), steps)), Sink(shape=net.out.shape, buffer=steps)
    source.s_out.connect(net.inp)
    net.out.connect(sink.a_in)
    tap_sinks = {}
    for n in taps:  # one stock sink per tapped layer (each one more process)
        (port,) = net.ports_of(n)
        tap_sinks[n] = Sink(shape=port.shape, buffer=steps)
        port.connect(tap_sinks[n].a_in)
    try:
        net.run(condition=RunSteps(num_steps=steps), run_cfg=cfg or run_config(hardware))
        rec = sink.data.get()
        spikes = {n: stream_to_frames(s.data.get(), N, T, art.plan.latency[n]) > 0 for n, s in tap_sinks.items()}
    finally:
        try:
            net.stop()
        except Exception:  # a runtime that never started has nothing to stop
            pass
    out = stream_to_frames(rec, N, T, net.out_delay)
    return (art.scores(out), out, spikes) if taps else (art.scores(out), out)
