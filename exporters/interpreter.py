"""The NIR interpreter: NIR graphs (ours and standard ones) run batched, step by step in PyTorch.

The semantics every other execution is checked against; the reference target runs it
(targets/reference.py), and passes and flows that need a float run of a graph (recording DSSA
operands, the host stem of a Lava run) use it directly.

Semantics (those recorded in our graph metadata; foreign files fall back to
NIR's reading with a strict ``>`` threshold test):
* every node computes from the sum of its inbound edges at the same step
  (edges are instantaneous), in topological order;
* LIF: v = v + dt/tau*((v_leak - v) + r*I); spike = v >= v_th (or >); v = v_reset where spiking;
  IF:  v = v + r*I, same threshold and reset;
* SpikeMatMul gathers its two named operands (see exporters.nir_ext).
"""
from typing import Callable, Dict, Optional, Tuple

import nir
import numpy as np
import torch
import torch.nn.functional as F

from exporters.graph_check import check_graph, topological_order
from exporters.nir_ext import MaxPool2d, SpikeMatMul
from resformer_deploy.errors import DeployError, summarize


def last_uses(graph, order, preds) -> Dict[str, int]:
    """Per node, the position in ``order`` of its last consumer within a step (its own position
    if none): a step's value can be freed once its last consumer has run."""
    pos = {n: i for i, n in enumerate(order)}
    last = dict(pos)
    for name in order:
        node = graph.nodes[name]
        uses = list(preds[name]) + ([node.lhs, node.rhs] if isinstance(node, SpikeMatMul) else [])
        for src in uses:
            last[src] = max(last[src], pos[name])
    return last


def _pair(v):
    a = np.broadcast_to(np.asarray(v).astype(np.int64), (2,))
    return int(a[0]), int(a[1])


class CompiledGraph:
    """The graph turned into a list of per-step closures (parameters as tensors)."""

    def __init__(self, graph: nir.NIRGraph, dtype=torch.float32):
        shapes, problems = check_graph(graph)
        if problems:
            raise DeployError(f"graph cannot be interpreted: {len(problems)} problem(s): {summarize(problems, 5)}")
        self.graph, self.shapes, self.dtype = graph, shapes, dtype
        disc = graph.metadata.get("discretisation", {}) if isinstance(graph.metadata, dict) else {}
        self.dt = float(disc.get("dt", graph.metadata.get("dt", 1e-3)))
        self.ge = str(disc.get("threshold_test", ">")) == ">="
        self.order, _ = topological_order(graph)
        self.preds = {n: [] for n in graph.nodes}
        for a, b in graph.edges:
            self.preds[b].append(a)
        self.input = next(n for n, v in graph.nodes.items() if isinstance(v, nir.Input))
        self.output = next(n for n, v in graph.nodes.items() if isinstance(v, nir.Output))
        self.neurons = [n for n in self.order if isinstance(graph.nodes[n], (nir.LIF, nir.IF))]
        self.ops = {n: self._compile(n, graph.nodes[n]) for n in self.order}
        self.last_use = last_uses(graph, self.order, self.preds)

    def inbound(self, name, values) -> torch.Tensor:
        """Sum of the node's inbound edges (edge order), as NIR edges are summed."""
        srcs = self.preds[name]
        inp = values[srcs[0]]
        for s in srcs[1:]:
            inp = inp + values[s]
        return inp

    def frames(self, x: torch.Tensor, T: int) -> Callable[[int], torch.Tensor]:
        """Input at step t: a static sample [B, *in] repeats, frames [B, T, *in] are fed one per step."""
        in_shape = self.shapes[self.input]
        if T < 1:
            raise DeployError(f"T = {T}: a run needs at least one time step")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise DeployError(f"input holds {int((~torch.isfinite(x)).sum()):,} NaN/inf value(s)")
        if x.dim() == len(in_shape) + 1:
            get = lambda t: x  # noqa: E731
        elif x.dim() == len(in_shape) + 2:
            if x.shape[1] < T:
                raise DeployError(f"input has {x.shape[1]} frames, T = {T}")
            get = lambda t: x[:, t]  # noqa: E731
        else:
            raise DeployError(f"input shape {tuple(x.shape)} does not fit graph input {in_shape}")
        if tuple(x.shape[-len(in_shape):]) != tuple(in_shape):
            raise DeployError(f"input shape {tuple(x.shape)} does not fit graph input {in_shape}")
        return get

    def t(self, a):
        return torch.as_tensor(np.asarray(a), dtype=self.dtype)

    def _compile(self, name, node) -> Callable:
        if isinstance(node, (nir.Input, nir.Output)):
            return lambda x: x
        if isinstance(node, nir.Conv2d):
            w, b = self.t(node.weight), self.t(node.bias) if node.bias is not None else None
            if isinstance(node.padding, str):
                pad = node.padding
            else:
                pad = _pair(node.padding)
            st, dil, g = _pair(node.stride), _pair(node.dilation), int(node.groups)
            return lambda x: F.conv2d(x, w, b, st, pad, dil, g)
        if isinstance(node, nir.AvgPool2d):
            k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
            return lambda x: F.avg_pool2d(x, k, s, p, count_include_pad=True)
        if isinstance(node, nir.SumPool2d):
            k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
            return lambda x: F.avg_pool2d(x, k, s, p, count_include_pad=True, divisor_override=1)
        if isinstance(node, MaxPool2d):
            k, s, p = _pair(node.kernel_size), _pair(node.stride), _pair(node.padding)
            return lambda x: F.max_pool2d(x, k, s, p)
        if isinstance(node, nir.Flatten):
            nd = len(self.shapes[self.preds[name][0]])
            s, e = node.start_dim % nd + 1, node.end_dim % nd + 1  # +1: batch dimension
            return lambda x: torch.flatten(x, s, e)
        if isinstance(node, nir.Affine):
            w, b = self.t(node.weight), self.t(node.bias)
            return lambda x: F.linear(x, w, b)
        if isinstance(node, nir.Linear):
            w = self.t(node.weight)
            return lambda x: F.linear(x, w)
        if isinstance(node, nir.Scale):
            s = self.t(node.scale)
            return lambda x: x * s
        if isinstance(node, nir.Threshold):
            th = self.t(node.threshold)
            return lambda x: (x > th).to(self.dtype)
        if isinstance(node, SpikeMatMul):
            return self._matmul(node)
        if isinstance(node, (nir.LIF, nir.IF)):
            return None  # stateful: handled in run()
        raise DeployError(f"{name}: no interpreter rule for {type(node).__name__}")

    def _matmul(self, node: SpikeMatMul):
        lrows, rrows = torch.as_tensor(node.lhs_rows), torch.as_tensor(node.rhs_rows)
        lview, rview = tuple(int(v) for v in node.lhs_view), tuple(int(v) for v in node.rhs_view)
        out_shape = tuple(int(v) for v in node.output_shape)

        def op(lhs, rhs):
            B = lhs.shape[0]
            L = lhs.reshape(B, *lview)[:, lrows]  # [B, G, k|m, cols]
            if node.transpose_lhs:
                L = L.transpose(-1, -2)
            R = rhs.reshape(B, *rview)[:, rrows]  # [B, G, k, n]
            return torch.matmul(L, R).reshape(B, *out_shape)
        return op

    def neuron_params(self, node):
        if isinstance(node, nir.LIF):
            k = self.t(self.dt / np.asarray(node.tau, dtype=np.float64))
            return dict(k=k, r=self.t(node.r), leak=self.t(node.v_leak), th=self.t(node.v_threshold),
                        reset=self.t(node.v_reset))
        return dict(k=None, r=self.t(node.r), leak=None, th=self.t(node.v_threshold),
                    reset=self.t(node.v_reset if node.v_reset is not None else np.zeros_like(node.v_threshold)))


def interpret(cg: CompiledGraph, x: torch.Tensor, T: int, record_spikes: bool = True, record_membranes: bool = False,
              record_nodes=(), on_spikes=None, progress: Optional[Callable[[int], None]] = None
              ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
    """(output [T, B, ...], spikes, membranes, values of ``record_nodes``) of ``T`` steps on ``x``.
    ``on_spikes(node, t, spikes, membrane)``: called for every LIF node and step as it is computed."""
    for n in record_nodes:
        if n not in cg.graph.nodes:
            raise DeployError(f"record_nodes: the graph has no node '{n}'")
    frames = cg.frames(x.to(cg.dtype), T)
    params = {n: cg.neuron_params(cg.graph.nodes[n]) for n in cg.neurons}
    state = {n: None for n in cg.neurons}
    spikes = {n: [] for n in cg.neurons} if record_spikes else {}
    membranes = {n: [] for n in cg.neurons} if record_membranes else {}
    outputs = []
    values = {n: [] for n in record_nodes}
    # values freed after their last consumer of the step (the output and recorded nodes stay)
    free_after: Dict[int, list] = {}
    for n, i in cg.last_use.items():
        if n != cg.output and n not in values:
            free_after.setdefault(i, []).append(n)
    with torch.no_grad():
        for t in range(T):
            val: Dict[str, torch.Tensor] = {}
            for i, name in enumerate(cg.order):
                node = cg.graph.nodes[name]
                if isinstance(node, nir.Input):
                    val[name] = frames(t)
                elif isinstance(node, SpikeMatMul):
                    val[name] = cg.ops[name](val[node.lhs], val[node.rhs])
                elif name in params:
                    inp = cg.inbound(name, val)
                    p = params[name]
                    v = state[name] if state[name] is not None else torch.zeros_like(inp)
                    if p["k"] is not None:
                        h = v + p["k"] * ((p["leak"] - v) + p["r"] * inp)
                    else:
                        h = v + p["r"] * inp
                    del inp, v
                    s_ = (h >= p["th"]) if cg.ge else (h > p["th"])
                    state[name] = torch.where(s_, p["reset"], h)
                    val[name] = s_.to(cg.dtype)
                    if record_spikes:
                        spikes[name].append(s_)
                    if record_membranes:
                        membranes[name].append(h)
                    if on_spikes is not None:
                        on_spikes(name, t, s_, h)
                    del h, s_
                else:
                    val[name] = cg.ops[name](cg.inbound(name, val))
                for n in free_after.get(i, ()):
                    val.pop(n, None)
            outputs.append(val[cg.output])
            for n in values:
                values[n].append(val[n])
            if progress:
                progress(1)
    return (torch.stack(outputs), {k: torch.stack(v) for k, v in spikes.items()},
            {k: torch.stack(v) for k, v in membranes.items()}, {k: torch.stack(v) for k, v in values.items()})
