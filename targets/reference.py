"""The reference target: the NIR interpreter (exporters/interpreter.py, whose semantics every
other target is checked against) as a target, sized by its cost model (exporters/interpreter_costs.py)."""
import time

import numpy as np
import torch

from exporters.interpreter import CompiledGraph, interpret  # noqa: F401 (CompiledGraph: re-exported)
from exporters.interpreter_costs import MAC_PER_S, SECONDS_PER_NODE_STEP, WORKING_SET_FACTOR, si_prefix, graph_costs

from targets.base import Capabilities, Estimate, RunRequest, RunResult, Target  # noqa: F401 (RunResult: re-exported)


class ReferenceTarget(Target):
    """Pure PyTorch execution of the graph; the yardstick for every other target.

    ``on_spikes(node, t, spikes [B, ...] bool, membrane [B, ...])`` (an option): called for every
    LIF node and step as soon as it is computed, so a caller can compare spikes while they are
    made (analysis/compare.py SpikeComparer) with ``record_spikes=False``: the run then keeps only
    each step's live values and the neuron states, not a [T, B, ...] record of every layer."""
    capabilities = Capabilities(arithmetic="float", flow="graph-check", engine="pytorch",
                                options=("record_nodes", "on_spikes"), records_membranes=True,
                                summary="NIR interpreter (PyTorch), any valid graph")

    def steps(self, request: RunRequest) -> int:
        self.refuse_unknown(request)
        self.quantized_net(request.prepared, request.quant)
        return request.T

    def estimate(self, request: RunRequest) -> Estimate:
        self.refuse_unknown(request)
        self.quantized_net(request.prepared, request.quant)
        T, record_spikes, record_membranes = request.T, request.record_spikes, request.record_membranes
        dtype = torch.float32 if request.dtype is None else request.dtype
        c = graph_costs(request.graph)
        e = torch.empty((), dtype=dtype).element_size()
        B = int(request.n_samples)
        np_dtype = torch.empty((), dtype=dtype).numpy().dtype
        # parameters in another dtype are copied (torch.as_tensor shares arrays of the same dtype)
        copied = sum(n for dt, n in c.weight_dtypes.items() if np.dtype(dt) != np_dtype)
        peak = (copied * e + B * c.input_values * e  # parameters and the input in dtype
                + B * c.neurons * e  # membrane state of every LIF node
                + B * c.peak_live_values * e * WORKING_SET_FACTOR.get(e, 6.5)  # a step's live values
                + T * B * c.output_values * e
                + (T * B * c.neurons if record_spikes else 0)
                + (T * B * c.neurons * e if record_membranes else 0)
                + T * B * sum(c.values[n] for n in request.option("record_nodes", ())) * e)
        rate = MAC_PER_S.get(e, min(MAC_PER_S.values()))
        seconds = T * B * c.macs / rate + T * len(c.values) * SECONDS_PER_NODE_STEP
        return Estimate(seconds, int(peak), f"per sample-step {si_prefix(c.macs)}MAC, {si_prefix(c.values_total)} values, "
                                            f"{si_prefix(c.neurons)} neurons; float{8 * e} at {rate / 1e9:.1f} GMAC/s "
                                            f"(measured)")

    def run(self, request: RunRequest) -> RunResult:
        self.refuse_unknown(request)
        self.quantized_net(request.prepared, request.quant)  # a float target: refuses a quantized network
        graph = request.graph
        dtype = torch.float32 if request.dtype is None else request.dtype
        cg = graph if isinstance(graph, CompiledGraph) else CompiledGraph(graph, dtype)
        t0 = time.time()
        output, spikes, membranes, values = interpret(
            cg, request.x, request.T, request.record_spikes, request.record_membranes,
            request.option("record_nodes", ()), request.option("on_spikes"), request.progress)
        return RunResult(output=output, spikes=spikes, membranes=membranes, seconds=time.time() - t0, values=values)
