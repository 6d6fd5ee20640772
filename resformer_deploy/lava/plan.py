"""NIR graph (our deployment-normal form) -> Lava process graph for Loihi2SimCfg.

Mapping (neuromorphic partition; every Lava port is 1-D, row-major flatten of (C,H,W)):
* Conv2d -> stock weight-shared ``Conv`` (lava/proc/conv/process.py: the kernel once, ports in
  Lava's XYC layout, graded input), never unrolled; Affine / Linear -> stock ``Sparse``
  (lava/proc/sparse/process.py). Lava synapses hold no bias: each synapse's bias travels as a
  constant offset of its output and is added where the value is consumed (neuron
  ``bias_mant``, the fused product's operand, or the host readout).
* LIF (v' = v + k((v_leak - v) + I), threshold th, reset 0) -> stock ``LIFReset`` in the
  equivalent non-decay-input form  u = a_in,  w' = (1-k) w + u + bias  with w = v/k and
  threshold th/k (``>=`` realised as ``>`` the next float below). ``reset_interval = T`` and
  ``reset_offset`` = the neuron's first-input step: samples stream back to back, and biased
  neurons do not integrate their bias while the pipeline fills.
* Scale(1) residual junction -> stock ``GradedVec`` (vth 0: exact graded relay; float model
  in targets.lava_processes.graded_float).
* SpikeMatMul -> ``FusedSpikeMatMul`` (custom; fast simulation) or the synaptic-primitive
  lowering (resformer_deploy.passes.dssa_lowering: sized from shapes, refused up front where it
  does not fit the memory budget).
* Path delays from resformer_deploy.passes.delay_balance: stock identity ``Sparse`` (1 step)
  or ``DelaySparse`` (d steps).
* Host partition (stem, max-pool, head) runs in numpy/torch around the Lava run: its output
  enters through a stock ``RingBuffer`` source, the stream leaving the chip is recorded by a
  ``Probe`` and finished on the host.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import nir
import numpy as np

from exporters.graph_check import check_graph, topological_order
from exporters.nir_ext import SpikeMatMul
from resformer_deploy.errors import summarize
from resformer_deploy.lava.specs import SYNAPSE_NODES, LavaMappingError, LifParams, SynapseSpec
from resformer_deploy.passes.delay_balance import balance_delays

LAVA_NEURO = (nir.Conv2d, nir.Affine, nir.Linear, nir.LIF, nir.Scale, SpikeMatMul)
MSG_BITS = 24  # graded payloads (Loihi 2 graded spikes carry up to 24 bits here)


@dataclass
class LavaPlan:
    """Everything decided before any Lava process exists (checked, printable, testable)."""
    graph: nir.NIRGraph = field(metadata={"json": False})
    shapes: Dict[str, tuple]
    neuro: List[str]
    host_pre: List[str]
    host_post: List[str]
    inputs: Dict[str, List[str]]  # host node -> neuromorphic consumers
    outputs: List[str]  # neuromorphic nodes read by the host
    latency: Dict[str, int]
    edge_delay: Dict[Tuple[str, str], int]
    bias: Dict[str, np.ndarray] = field(default_factory=dict)  # constant offset of each node's Lava output
    lif: Dict[str, LifParams] = field(default_factory=dict)
    synapses: Dict[str, SynapseSpec] = field(default_factory=dict)  # every neuromorphic synapse node
    ge: bool = True
    dssa: str = "fused"

    @property
    def values_per_step(self) -> int:
        """Values every neuromorphic node produces in one step of one sample (activation memory)."""
        return sum(int(np.prod(self.shapes[n])) for n in self.neuro)

    @property
    def kernel_weights(self) -> int:
        """Stored synapse weights (a convolution's kernel once, not its unrolled synapses)."""
        return sum(int(spec.weight.size) for spec in self.synapses.values())

    @property
    def total_latency(self) -> int:
        return max(self.latency[n] for n in self.neuro) if self.neuro else 0


def _stored(a) -> np.ndarray:
    """The values ``a`` stores: one element of a zero-stride view (the shape-only graph's parameters,
    hardware/loihi2/shape_graph.py), so checking them costs nothing per neuron."""
    a = np.asarray(a)
    return a.flat[:1] if a.size and not any(a.strides) else a


def plan_lava(graph: nir.NIRGraph, dssa: str = "fused", timing=None, offsets: bool = True) -> LavaPlan:
    """``timing``: the balance-delays pass's result (flows pass it in); None computes it here.
    ``offsets=False`` leaves ``bias`` and ``lif`` empty (and their checks undone): the fused core plan
    reads neither, and their per-neuron float64 arrays are most of a large plan's memory."""
    if dssa not in ("fused", "synaptic"):
        raise LavaMappingError(f"unknown DSSA lowering '{dssa}' (fused or synaptic)")
    shapes, problems = check_graph(graph)
    if problems:
        raise LavaMappingError(f"graph is invalid: {summarize(problems, 6)}")
    order, _ = topological_order(graph)
    part = {n: (graph.nodes[n].metadata or {}).get("partition", "neuromorphic") for n in order}
    preds = {n: [a for a, b in graph.edges if b == n] for n in graph.nodes}
    neuro = [n for n in order if part[n] == "neuromorphic"]
    bad = []
    synapses = {}
    for n in neuro:
        node = graph.nodes[n]
        if isinstance(node, SYNAPSE_NODES):
            try:
                synapses[n] = SynapseSpec.from_node(n, node, shapes[preds[n][0]], shapes[n])
            except LavaMappingError as e:
                bad.append(str(e))
        if isinstance(node, (nir.Input, nir.Output)):  # the graph's interfaces: where the host feeds/reads
            bad.append(f"{n}: {type(node).__name__} has metadata partition 'neuromorphic' (graph inputs and "
                       f"outputs belong to the host partition)")
        elif not isinstance(node, LAVA_NEURO):
            bad.append(f"{n}: {type(node).__name__} has no Lava mapping on the neuromorphic partition (node "
                       f"metadata 'partition': 'host' runs it on the host, if it is before or after the chip)")
        elif isinstance(node, nir.Scale) and not np.all(_stored(node.scale) == 1):
            bad.append(f"{n}: Scale other than 1 (only residual junctions are mapped)")
        elif isinstance(node, nir.LIF):
            for f, want in (("r", 1.0), ("v_reset", 0.0)):
                if not np.all(_stored(getattr(node, f)) == want):
                    bad.append(f"{n}: LIF {f} must be {want} everywhere")
            for f in ("tau", "v_threshold", "v_leak"):
                a = _stored(getattr(node, f))
                if a.size and not np.all(a == a.flat[0]):
                    bad.append(f"{n}: LIF {f} must be uniform per layer (Lava LIF holds one value)")
    # host nodes downstream of the chip: everything host that depends on a neuromorphic node
    downstream = set()
    for n in order:
        if part[n] == "host" and any(p in neuro or p in downstream for p in preds[n]):
            downstream.add(n)
    host_pre = [n for n in order if part[n] == "host" and n not in downstream]
    host_post = [n for n in order if n in downstream]
    for n in host_pre:
        for p in preds[n]:
            if p in neuro:
                bad.append(f"{n}: host node between neuromorphic nodes")
    if bad:
        raise LavaMappingError(f"{len(bad)} node(s) cannot be mapped to Lava: {summarize(bad, 8)}")
    inputs = {h: [b for a, b in graph.edges if a == h and b in neuro] for h in host_pre}
    inputs = {h: c for h, c in inputs.items() if c}
    outputs = sorted({a for a, b in graph.edges if a in neuro and b in host_post})
    from resformer_deploy.passes.dssa_lowering import PRODUCT_HOPS
    hops = PRODUCT_HOPS if dssa == "synaptic" else 0
    tm = timing if timing is not None else balance_delays(graph, neuro, product_hops=hops)
    if tm.product_hops != hops or set(tm.latency) != set(neuro):
        raise LavaMappingError(f"the timing given was balanced for another DSSA lowering or node set "
                               f"(product hops {tm.product_hops}, plan needs {hops})")
    plan = LavaPlan(graph, shapes, neuro, host_pre, host_post, inputs, outputs, tm.latency, tm.edge_delay,
                    synapses=synapses, dssa=dssa,
                    ge=str(graph.metadata.get("discretisation", {}).get("threshold_test", ">")) == ">=")
    if not offsets:
        return plan
    dt = float(graph.metadata.get("discretisation", {}).get("dt", 1e-3))
    for n in neuro:  # constant offsets (synapse biases) carried along the graph
        node = graph.nodes[n]
        size = int(np.prod(shapes[n]))
        # offset of this node's summed input (host inputs already include their biases)
        in_bias = lambda: sum((plan.bias[p] for p in preds[n] if p in neuro), np.zeros(size))  # noqa: E731
        if n in plan.synapses:
            spec, b_in = plan.synapses[n], plan.bias.get(preds[n][0])
            plan.bias[n] = spec.output_bias()
            if b_in is not None and np.any(b_in):  # a biased real value feeds this synapse: its offset,
                # passed through the synapse (a convolution of the offset image, never unrolled)
                plan.bias[n] = plan.bias[n] + spec.apply(b_in[None])[0]
        elif isinstance(node, nir.Scale):
            plan.bias[n] = in_bias()
        elif isinstance(node, nir.LIF):
            k = float(np.float64(dt / np.asarray(node.tau).flat[0]))
            th = float(np.asarray(node.v_threshold).flat[0]) / k
            try:
                plan.lif[n] = LifParams(n, size, k, float(np.nextafter(th, -np.inf)) if plan.ge else th,
                                        in_bias() + float(np.asarray(node.v_leak).flat[0]))
            except LavaMappingError as e:
                bad.append(str(e))
            plan.bias[n] = np.zeros(size)
        elif isinstance(node, SpikeMatMul):
            if np.any(plan.bias.get(node.rhs, 0.0)):
                raise LavaMappingError(f"{n}: spike operand '{node.rhs}' carries a bias (not spikes)")
            plan.bias[n] = np.zeros(size)
    if bad:
        raise LavaMappingError(f"{len(bad)} node(s) cannot be mapped to Lava: {summarize(bad, 8)}")
    return plan
