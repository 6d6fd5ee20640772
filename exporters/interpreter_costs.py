"""What the NIR interpreter (exporters/interpreter.py) costs on this machine: sizes of a graph's
sample and step (``graph_costs``) and measured rates. The reference target's estimate and the
analyses that size a PyTorch run (verify's record, evaluate) read them here."""
from dataclasses import dataclass
from typing import Dict

import nir
import numpy as np

from exporters.graph_check import check_graph, topological_order
from exporters.interpreter import last_uses
from exporters.nir_ext import SpikeMatMul
from resformer_deploy.errors import DeployError, summarize


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


def si_prefix(n: float) -> str:
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
