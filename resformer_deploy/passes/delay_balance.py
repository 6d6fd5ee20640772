"""Pass: give every node of a graph a latency under Lava timing and balance merging paths.

Requires: a graph accepted by exporters.graph_check (neuromorphic nodes in topological order).
Timing model (lava-nc 0.10, verified): a synapse process (Dense/Sparse/Conv) delivers at step
t+1 what it received at t; neurons, graded relays and port-to-port connections add nothing.
Ensures:  ``latency[n]`` = step offset at which node n's output for input frame 0 appears
          (the Input's frame 0 is at offset 0); every node whose inputs arrive with different
          latencies gets per-edge delays ``edge_delay[(src, dst)] = latency[dst] - latency[src]
          - hop(dst)`` so that all its inputs line up. For SpikeMatMul the two operands are
          aligned the same way. A biased neuron must reset at its own latency (first real
          input), otherwise it integrates its bias while the pipeline fills (measured
          on lava-nc 0.10 Sparse + LIFReset: tests/targets/test_lava_backend.py checks the alignment).
"""
from dataclasses import dataclass, field
from typing import Dict, Tuple

import nir

from exporters.graph_check import topological_order

SYNAPSES = (nir.Conv2d, nir.Affine, nir.Linear, nir.AvgPool2d, nir.SumPool2d)


def hop(node, product_hops: int = 0) -> int:
    from exporters.nir_ext import SpikeMatMul
    if isinstance(node, SpikeMatMul):
        return product_hops  # 0 fused (one process), 2 for the synaptic-primitive lowering
    return 1 if isinstance(node, SYNAPSES) else 0


@dataclass
class Timing:
    latency: Dict[str, int] = field(default_factory=dict)
    edge_delay: Dict[Tuple[str, str], int] = field(default_factory=dict)
    product_hops: int = 0  # the SpikeMatMul latency these numbers assume (0 fused, 2 synaptic)


def neuromorphic_nodes(graph: nir.NIRGraph):
    """The nodes Lava runs, in topological order: partition metadata 'neuromorphic' (the default
    for graphs without it), exactly as resformer_deploy.lava.plan.plan_lava selects them."""
    order, _ = topological_order(graph)
    return [n for n in order if (graph.nodes[n].metadata or {}).get("partition", "neuromorphic") == "neuromorphic"]


def balance_delays(graph: nir.NIRGraph, nodes=None, product_hops: int = 0) -> Timing:
    """``nodes``: restrict to this subset (e.g. the neuromorphic partition); sources outside it
    count as latency 0 inputs (host data injected at frame time)."""
    order, _ = topological_order(graph)
    keep = set(nodes) if nodes is not None else set(graph.nodes)
    preds = {n: [a for a, b in graph.edges if b == n] for n in graph.nodes}
    tm = Timing(product_hops=product_hops)
    for n in order:
        if n not in keep:
            continue
        node = graph.nodes[n]
        srcs = preds[n]
        arrive = {p: tm.latency.get(p, 0) if p in keep else 0 for p in srcs}
        base = max(arrive.values()) if arrive else 0
        tm.latency[n] = base + hop(node, product_hops)
        for p in srcs:
            tm.edge_delay[(p, n)] = base - arrive[p]
    return tm
