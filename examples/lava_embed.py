"""Embed the deployed SpikingResformer in your own Lava loop.

The chip part of the model is one hierarchical Lava process (targets.lava_network.ResformerNetwork)
with an input port ``inp`` and an output port ``out``; the host parts before and after it (the
stem, the classifier head) are plain functions (resformer_deploy.lava.host_partition.stem / head). Here the
network is fed from a stock ``Injector`` and read by a stock ``Extractor`` (lava.proc.io), one
frame per time step, from an ordinary Python loop, and the classes are checked against PyTorch.
The network runs all its steps in one non-blocking run; the loop feeds and reads it step by step
(the injector's model waits for each frame, the extractor's receive for each output).

    python examples/lava_embed.py [--fixed] [--dssa fused|synaptic] [--samples 3] [--timeout 300]

Exit status 0 when every sample's class equals PyTorch's, 1 otherwise, 3 when the Lava run has not
finished after --timeout seconds (its processes are then killed and its shared memory removed).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.proc.io.extractor import Extractor  # noqa: E402
from lava.proc.io.injector import Injector  # noqa: E402

from exporters.torch_to_nir import export_model  # noqa: E402
from resformer_deploy.data.digits import load_digits_split  # noqa: E402
from resformer_deploy.flows import prepare  # noqa: E402
from resformer_deploy.model.checkpoint import load_checkpoint  # noqa: E402
from resformer_deploy.lava.host_partition import head, stem  # noqa: E402
from targets.lava_cleanup import RunWatchdog  # noqa: E402
from targets.lava_network import build_network, run_config  # noqa: E402
from targets.reference import CompiledGraph  # noqa: E402

CHECKPOINT = Path(__file__).resolve().parent / "digits" / "digits_resformer.pt"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixed", action="store_true", help="Loihi 2 fixed point (default: float)")
    ap.add_argument("--dssa", choices=("fused", "synaptic"), default="fused")
    ap.add_argument("--samples", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds the Lava run may take before it is killed (default 300)")
    args = ap.parse_args(argv)

    # --- once, on the PyTorch side: the model, its NIR graph, the Lava plan (and quantization) ---
    model = load_checkpoint(CHECKPOINT).model.double().eval()
    T = model.config.T
    x = load_digits_split().x_test[: args.samples].double()
    graph = export_model(model)
    art = prepare("loihi2-sim" if args.fixed else "lava-cpu", graph, samples=x, T=T, dssa=args.dssa)
    quant = art.get("quantized_net")
    plan = quant.plan if quant is not None else art["lava_plan"]
    host = CompiledGraph(graph, torch.float64)
    frames = stem(plan, host, x, T, quant)  # [N, T, size]: what the network's inp receives
    with torch.no_grad():
        expected = model(x).mean(0).argmax(-1).tolist()  # logits [T, N, K]

    # --- the Lava side: the network between your own source and sink ---
    net = build_network(plan, T, quant=quant, lowerings=art.get("product_lowerings"))
    injector = Injector(shape=net.inp.shape, buffer_size=T)
    extractor = Extractor(shape=net.out.shape, buffer_size=T + net.out_delay + 1)
    injector.out_port.connect(net.inp)
    net.out.connect(extractor.in_port)
    print(f"network: {net.process_count} processes {net.process_kinds}, inp {net.inp.shape}, out "
          f"{net.out.shape}, output delay {net.out_delay} steps, {'fixed' if quant is not None else 'float'} "
          f"point, DSSA {args.dssa}")

    cfg = run_config(fixed=quant is not None)
    # Samples stream back to back: frame f of sample k goes in at step k*T + f + 1 and its output
    # comes out net.out_delay steps later; after the last frame, zeros flush the pipeline.
    silence = np.zeros(net.inp.shape, dtype=frames.dtype)
    received = []
    steps = frames.shape[0] * T + net.out_delay
    # A stuck Lava run would wait forever: the watchdog kills it after --timeout s and names the step.
    with RunWatchdog(args.timeout, "lava_embed") as watchdog:
        net.create_runtime(run_cfg=cfg)  # compiles and starts the processes; the injector needs it
        try:
            # One run of all steps, not one run per step: each run is a pause/run handshake with
            # every process through Lava's runtime service.
            net.run(condition=RunSteps(num_steps=steps, blocking=False), run_cfg=cfg)
            for step in range(steps):
                watchdog.where = f"step {step + 1} of {steps}"
                k, f = divmod(step, T)
                injector.send(frames[k, f] if k < frames.shape[0] else silence)
                received.append(extractor.receive())
            watchdog.where = "the end of the run"
            net.wait()
        finally:
            watchdog.where = "stop"
            net.stop()
    out = np.stack(received[net.out_delay:]).reshape(frames.shape[0], T, -1)  # [N, T, size]
    got = head(plan, host, out, quant).mean(0).argmax(-1).tolist()
    labels = load_digits_split().y_test[: args.samples].tolist()
    print(f"Lava classes {got}, PyTorch classes {expected}, labels {labels}")
    return 0 if got == expected else 1


if __name__ == "__main__":
    sys.exit(main())
