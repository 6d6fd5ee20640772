"""The reference target: the NIR interpreter (exporters/interpreter.py, whose semantics every
other target is checked against) as a target, and its cost model."""
import time
from dataclasses import dataclass
from typing import Dict

import nir
import numpy as np
import torch

from exporters.graph_check import check_graph, topological_order
from exporters.interpreter import CompiledGraph, interpret, last_uses  # noqa: F401 (CompiledGraph: re-exported)
from exporters.nir_ext import SpikeMatMul
from resformer_deploy.errors import DeployError, summarize

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
        return Estimate(seconds, int(peak), f"per sample-step {_si(c.macs)}MAC, {_si(c.values_total)} values, "
                                            f"{_si(c.neurons)} neurons; float{8 * e} at {rate / 1e9:.1f} GMAC/s "
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


# ------------------------------------------------------------------------------------ cost model
# Measured on this project's 2-core machine (torch 2.3.1) with the ti variant at 224x224, 8 samples,
# T = 4 (`resformer-deploy verify --target reference`, its JSON seconds.target; 4.03 GMAC per
# sample-step): float32 8.3 s, float64 29.5 s for the 32 sample-steps. Elementwise work is folded in.
MAC_PER_S = {4: 15e9, 8: 4.4e9}  # by element size
SECONDS_PER_NODE_STEP = 1e-4  # Python dispatch per node and step (dominates tiny graphs)
# Same model and samples, peak RSS of run() alone above the caller's (/tmp script, resource.ru_maxrss):
# float64 1.18 GiB for 0.63 GiB of LIF state and 0.16 GiB of a step's live values; float32 0.80 GiB
# for 0.32 and 0.08 GiB: the ops' temporaries (convolution buffers, the LIF update's h, where and
# spike tensors) are 3.5x (float64) and 6.2x (float32) a step's live values.
WORKING_SET_FACTOR = {4: 6.5, 8: 3.5}


def _si(n: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n:.0f} "


@dataclass(frozen=True)
class GraphCosts:
    """Sizes of one sample and one step of a graph, for cost models (counts, not bytes)."""
    weights: int  # parameters of every node
    weight_dtypes: Dict[str, int]  # numpy dtype name -> parameters stored in it
    input_values: int
    output_values: int
    neurons: int  # LIF/IF neurons
    values: Dict[str, int]  # node -> output values
    values_total: int
    peak_live_values: int  # most values alive at once in a step, freeing after the last consumer
    macs: int  # multiply-accumulates of Conv2d, Linear/Affine and SpikeMatMul


def graph_costs(graph) -> GraphCosts:
    shapes, problems = check_graph(graph)
    if problems:
        raise DeployError(f"graph cannot be interpreted: {len(problems)} problem(s): {summarize(problems, 5)}")
    order, _ = topological_order(graph)
    preds = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
    size = {n: int(np.prod(shapes[n])) for n in order}
    macs = 0
    dtypes: Dict[str, int] = {}
    for name in order:
        node = graph.nodes[name]
        for f in ("weight", "bias", "scale", "threshold", "tau", "r", "v_leak", "v_threshold", "v_reset"):
            a = getattr(node, f, None)
            if a is not None and not isinstance(a, str):
                a = np.asarray(a)
                dtypes[a.dtype.name] = dtypes.get(a.dtype.name, 0) + int(a.size)
        if isinstance(node, nir.Conv2d):
            w = np.asarray(node.weight)
            macs += size[name] * int(np.prod(w.shape[1:]))
        elif isinstance(node, (nir.Affine, nir.Linear)):
            macs += size[name] * int(np.asarray(node.weight).shape[-1])
        elif isinstance(node, SpikeMatMul):
            macs += size[name] * node.product_dims()[1]
    last = last_uses(graph, order, preds)
    live = peak = 0
    frees: Dict[int, int] = {}
    for n, i in last.items():
        frees[i] = frees.get(i, 0) + size[n]
    for i, name in enumerate(order):
        live += size[name]
        peak = max(peak, live)
        live -= frees.get(i, 0)
    inp = next(n for n, v in graph.nodes.items() if isinstance(v, nir.Input))
    out = next(n for n, v in graph.nodes.items() if isinstance(v, nir.Output))
    neurons = sum(size[n] for n in order if isinstance(graph.nodes[n], (nir.LIF, nir.IF)))
    return GraphCosts(sum(dtypes.values()), dtypes, size[inp], size[out], neurons, size, sum(size.values()), peak, macs)
