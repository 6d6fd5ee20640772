"""NIR graph (our deployment-normal form) -> Lava process graph for Loihi2SimCfg.

Mapping (neuromorphic partition; every Lava port is 1-D, row-major flatten of (C,H,W)):
* Conv2d / Affine / Linear -> stock ``Sparse`` (unrolled connectivity, graded input). Lava
  synapses hold no bias: each synapse's bias travels as a constant offset of its output and
  is added where the value is consumed (neuron ``bias_mant``, the fused product's operand,
  or the host readout).
* LIF (v' = v + k((v_leak - v) + I), threshold th, reset 0) -> stock ``LIFReset`` in the
  equivalent non-decay-input form  u = a_in,  w' = (1-k) w + u + bias  with w = v/k and
  threshold th/k (``>=`` realised as ``>`` the next float below). ``reset_interval = T`` and
  ``reset_offset`` = the neuron's first-input step: samples stream back to back, and biased
  neurons do not integrate their bias while the pipeline fills.
* Scale(1) residual junction -> stock ``GradedVec`` (vth 0: exact graded relay; float model
  in targets.lava_processes.graded_float).
* SpikeMatMul -> ``FusedSpikeMatMul`` (custom; fast simulation) or the synaptic-primitive
  lowering (resformer_deploy.passes.dssa_lowering).
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
import scipy.sparse as sp

from exporters.graph_check import check_graph, topological_order
from exporters.nir_ext import SpikeMatMul
from resformer_deploy.errors import DeployError, summarize
from resformer_deploy.passes.delay_balance import balance_delays

LAVA_NEURO = (nir.Conv2d, nir.Affine, nir.Linear, nir.LIF, nir.Scale, SpikeMatMul)
MSG_BITS = 24  # graded payloads (Loihi 2 graded spikes carry up to 24 bits here)
# Simulating unrolls every synapse (scipy CSR, ~12 B each, several copies while building):
# beyond this the CPU simulator and the emulator would exhaust memory instead of running.
MAX_SIMULATED_SYNAPSES = 60_000_000


class LavaMappingError(DeployError):
    """The graph holds nodes or shapes the Lava backend cannot place."""


def conv_matrix(node: nir.Conv2d, in_shape, out_shape) -> sp.csr_matrix:
    """Unrolled (out x in) sparse connectivity of a (grouped) convolution, exact weights."""
    w = np.asarray(node.weight, dtype=np.float64)
    cout, cin_g, kh, kw = w.shape
    Cin, H, W = in_shape
    _, Ho, Wo = out_shape
    g = int(node.groups)
    st = np.broadcast_to(np.asarray(node.stride), (2,))
    pad = np.broadcast_to(np.asarray(node.padding), (2,))
    dil = np.broadcast_to(np.asarray(node.dilation), (2,))
    co, oy, ox, ci, ky, kx = np.meshgrid(np.arange(cout), np.arange(Ho), np.arange(Wo), np.arange(cin_g),
                                         np.arange(kh), np.arange(kw), indexing="ij")
    iy = oy * st[0] - pad[0] + ky * dil[0]
    ix = ox * st[1] - pad[1] + kx * dil[1]
    cabs = (co // (cout // g)) * cin_g + ci
    ok = (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    vals = w[co, ci, ky, kx][ok]
    rows = ((co * Ho + oy) * Wo + ox)[ok]
    cols = ((cabs * H + iy) * W + ix)[ok]
    m = sp.csr_matrix((vals, (rows, cols)), shape=(cout * Ho * Wo, Cin * H * W))
    m.eliminate_zeros()
    return m


def synapse_matrix(node, in_shape, out_shape):
    if isinstance(node, nir.Conv2d):
        m = conv_matrix(node, in_shape, out_shape)
        bias = np.repeat(np.asarray(node.bias, dtype=np.float64), int(np.prod(out_shape[1:])))
        return m, bias
    w = np.asarray(node.weight, dtype=np.float64)
    bias = np.asarray(node.bias, dtype=np.float64) if isinstance(node, nir.Affine) else np.zeros(w.shape[0])
    return sp.csr_matrix(w), bias


def unrolled_synapses(node, in_shape, out_shape) -> int:
    """Synapse count of a node's unrolled matrix, computed without building it (padding ignored:
    an upper bound for padded convolutions)."""
    if isinstance(node, nir.Conv2d):
        cout, cin_g, kh, kw = np.asarray(node.weight).shape
        return int(cout * int(np.prod(out_shape[1:])) * cin_g * kh * kw)
    if isinstance(node, (nir.Affine, nir.Linear)):
        return int(np.asarray(node.weight).size)
    return 0


def check_simulable(plan, limit: int = MAX_SIMULATED_SYNAPSES) -> int:
    """Refuse, with the numbers, a plan whose unrolled synapses would not fit the simulators."""
    g = plan.graph
    total = sum(unrolled_synapses(g.nodes[n], plan.shapes[a], plan.shapes[n])
                for n in plan.neuro for a, b in g.edges if b == n and isinstance(g.nodes[n], SYNAPSE_NODES))
    if total > limit:
        raise LavaMappingError(f"simulating this network unrolls {total:,} synapses (> {limit:,}): too large for "
                               f"the CPU simulators (Lava, emulator); use a smaller image size or variant, or "
                               f"`compile --target loihi2` for the core plan")
    return total


SYNAPSE_NODES = (nir.Conv2d, nir.Affine, nir.Linear)


@dataclass
class LavaPlan:
    """Everything decided before any Lava process exists (checked, printable, testable)."""
    graph: nir.NIRGraph
    shapes: Dict[str, tuple]
    neuro: List[str]
    host_pre: List[str]
    host_post: List[str]
    inputs: Dict[str, List[str]]  # host node -> neuromorphic consumers
    outputs: List[str]  # neuromorphic nodes read by the host
    latency: Dict[str, int]
    edge_delay: Dict[Tuple[str, str], int]
    bias: Dict[str, np.ndarray] = field(default_factory=dict)  # constant offset of each node's Lava output
    lif: Dict[str, dict] = field(default_factory=dict)
    ge: bool = True
    dssa: str = "fused"

    @property
    def total_latency(self) -> int:
        return max(self.latency[n] for n in self.neuro) if self.neuro else 0


def plan_lava(graph: nir.NIRGraph, dssa: str = "fused") -> LavaPlan:
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
    for n in neuro:
        node = graph.nodes[n]
        if isinstance(node, (nir.Input, nir.Output)):  # the graph's interfaces: where the host feeds/reads
            bad.append(f"{n}: {type(node).__name__} has metadata partition 'neuromorphic' (graph inputs and "
                       f"outputs belong to the host partition)")
        elif not isinstance(node, LAVA_NEURO):
            bad.append(f"{n}: {type(node).__name__} has no Lava mapping on the neuromorphic partition (node "
                       f"metadata 'partition': 'host' runs it on the host, if it is before or after the chip)")
        elif isinstance(node, nir.Scale) and not np.all(np.asarray(node.scale) == 1):
            bad.append(f"{n}: Scale other than 1 (only residual junctions are mapped)")
        elif isinstance(node, nir.LIF):
            for f, want in (("r", 1.0), ("v_reset", 0.0)):
                if not np.all(np.asarray(getattr(node, f)) == want):
                    bad.append(f"{n}: LIF {f} must be {want} everywhere")
            for f in ("tau", "v_threshold", "v_leak"):
                a = np.asarray(getattr(node, f))
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
    tm = balance_delays(graph, neuro, product_hops=PRODUCT_HOPS if dssa == "synaptic" else 0)
    plan = LavaPlan(graph, shapes, neuro, host_pre, host_post, inputs, outputs, tm.latency, tm.edge_delay,
                    ge=str(graph.metadata.get("discretisation", {}).get("threshold_test", ">")) == ">=", dssa=dssa)
    dt = float(graph.metadata.get("discretisation", {}).get("dt", 1e-3))
    for n in neuro:  # constant offsets (synapse biases) carried along the graph
        node = graph.nodes[n]
        size = int(np.prod(shapes[n]))
        # offset of this node's summed input (host inputs already include their biases)
        in_bias = lambda: sum((plan.bias[p] for p in preds[n] if p in neuro), np.zeros(size))  # noqa: E731
        if isinstance(node, (nir.Conv2d, nir.Affine, nir.Linear)):
            b_in = plan.bias.get(preds[n][0])
            if b_in is not None and np.any(b_in):  # a biased real value feeds this synapse
                m, b = synapse_matrix(node, shapes[preds[n][0]], shapes[n])
                plan.bias[n] = b + m @ b_in
            elif isinstance(node, nir.Conv2d):
                plan.bias[n] = np.repeat(np.asarray(node.bias, dtype=np.float64), int(np.prod(shapes[n][1:])))
            elif isinstance(node, nir.Affine):
                plan.bias[n] = np.asarray(node.bias, dtype=np.float64)
            else:
                plan.bias[n] = np.zeros(size)
        elif isinstance(node, nir.Scale):
            plan.bias[n] = in_bias()
        elif isinstance(node, nir.LIF):
            k = float(np.float64(dt / np.asarray(node.tau).flat[0]))
            th = float(np.asarray(node.v_threshold).flat[0]) / k
            plan.lif[n] = {"k": k, "vth": float(np.nextafter(th, -np.inf)) if plan.ge else th,
                           "bias": in_bias() + float(np.asarray(node.v_leak).flat[0])}
            plan.bias[n] = np.zeros(size)
        elif isinstance(node, SpikeMatMul):
            if np.any(plan.bias.get(node.rhs, 0.0)):
                raise LavaMappingError(f"{n}: spike operand '{node.rhs}' carries a bias (not spikes)")
            plan.bias[n] = np.zeros(size)
    return plan
