"""Shape inference and structural checks for NIR graphs that may hold our extension nodes.

NIR 1.0.8's own type checker cannot express two-operand nodes and mis-types
grouped convolutions, so graphs are checked here instead: every violation is
collected and reported together.
"""
from typing import Dict, List, Tuple

import nir
import numpy as np

from exporters.nir_ext import MaxPool2d, SpikeMatMul

SUPPORTED = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Scale, nir.Threshold, nir.Flatten,
             nir.Conv2d, nir.AvgPool2d, nir.SumPool2d, nir.LIF, nir.IF, SpikeMatMul, MaxPool2d)


def _conv_out(node: nir.Conv2d, in_shape):
    C, H, W = in_shape
    k = node.weight.shape[-2:]
    pad, st, dil = (np.broadcast_to(np.asarray(v), (2,)) for v in (node.padding, node.stride, node.dilation))
    out = [(s + 2 * p - d * (kk - 1) - 1) // t + 1 for s, p, d, kk, t in zip((H, W), pad, dil, k, st)]
    return (int(node.weight.shape[0]), *out)


def _pool_out(node, in_shape):
    C, H, W = in_shape
    k, st, pad = (np.broadcast_to(np.asarray(v), (2,)) for v in (node.kernel_size, node.stride, node.padding))
    return (C, *[(s + 2 * p - kk) // t + 1 for s, p, kk, t in zip((H, W), pad, k, st)])


def expected_input(node):
    """Input shape a node requires, or None when any shape of the right rank works."""
    if isinstance(node, (nir.LIF, nir.IF)):
        return tuple(node.v_threshold.shape)
    if isinstance(node, nir.Scale):
        return tuple(np.shape(node.scale))
    if isinstance(node, nir.Threshold):
        return tuple(np.shape(node.threshold))
    if isinstance(node, (nir.Affine, nir.Linear)):
        return (int(node.weight.shape[-1]),)
    if isinstance(node, MaxPool2d):
        return tuple(int(v) for v in node.input_shape)
    if isinstance(node, nir.Input):
        return None
    if isinstance(node, nir.Flatten) and node.input_type.get("input") is not None:
        return tuple(int(v) for v in node.input_type["input"])
    return None


def output_shape(node, in_shape):
    if isinstance(node, nir.Input):
        return tuple(int(v) for v in node.input_type["input"])
    if isinstance(node, nir.Conv2d):
        if len(in_shape) != 3:
            raise ValueError(f"Conv2d needs (C,H,W) input, got {in_shape}")
        cin = node.weight.shape[1] * node.groups
        if in_shape[0] != cin:
            raise ValueError(f"Conv2d expects {cin} input channels (groups {node.groups}), got {in_shape[0]}")
        return _conv_out(node, in_shape)
    if isinstance(node, (nir.AvgPool2d, nir.SumPool2d)):
        if len(in_shape) != 3:
            raise ValueError(f"pooling needs (C,H,W) input, got {in_shape}")
        return _pool_out(node, in_shape)
    if isinstance(node, MaxPool2d):
        return tuple(int(v) for v in node.output_type["output"])
    if isinstance(node, nir.Flatten):
        nd = len(in_shape)
        s, e = node.start_dim % nd, node.end_dim % nd
        return tuple(in_shape[:s]) + (int(np.prod(in_shape[s:e + 1])),) + tuple(in_shape[e + 1:])
    if isinstance(node, (nir.Affine, nir.Linear)):
        return (int(node.weight.shape[-2]),)
    if isinstance(node, SpikeMatMul):
        return tuple(int(v) for v in node.output_shape)
    return tuple(in_shape)  # elementwise: LIF, IF, Scale, Threshold, Output


def topological_order(graph: nir.NIRGraph) -> Tuple[List[str], List[str]]:
    """Kahn's algorithm; returns (order, nodes on cycles)."""
    indeg = {n: 0 for n in graph.nodes}
    succ: Dict[str, List[str]] = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        if a in succ and b in indeg:
            succ[a].append(b)
            indeg[b] += 1
    ready = [n for n in graph.nodes if indeg[n] == 0]
    order = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return order, [n for n in graph.nodes if n not in set(order)]


def back_edge(graph: nir.NIRGraph, nodes) -> Tuple[Tuple[str, str], List[str]]:
    """One edge that closes a cycle among ``nodes`` (those Kahn's algorithm could not order) and
    the cycle it closes, ``[a, ..., b, a]``. Kahn leaves every node downstream of a cycle
    unordered too, so naming the nodes alone points at no edge: an iterative depth-first search
    finds an edge to a node still on its stack (a back edge, which exists iff there is a cycle)."""
    nodes = set(nodes)
    succ: Dict[str, List[str]] = {n: [] for n in nodes}
    for a, b in graph.edges:
        if a in nodes and b in nodes:
            succ[a].append(b)
    state: Dict[str, int] = {}  # 1: on the stack, 2: done
    entries = {b for a, b in graph.edges if a not in nodes and b in nodes}
    # searched from where the ordered graph enters: the edge found then points back upstream
    for root in [n for n in graph.nodes if n in entries] + [n for n in graph.nodes if n in nodes]:
        if root in state:
            continue
        stack, path = [(root, iter(succ[root]))], [root]
        state[root] = 1
        while stack:
            n, it = stack[-1]
            m = next(it, None)
            if m is None:
                state[n] = 2
                stack.pop()
                path.pop()
            elif state.get(m) == 1:
                return (n, m), path[path.index(m):] + [m]
            elif m not in state:
                state[m] = 1
                stack.append((m, iter(succ[m])))
                path.append(m)
    raise ValueError("no cycle among the given nodes")


def check_graph(graph: nir.NIRGraph) -> Tuple[Dict[str, tuple], List[str]]:
    """Infer every node's output shape; return (shapes, violations)."""
    problems = []
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            problems.append(f"{name}: nested NIRGraph subgraphs are not supported")
        elif not isinstance(node, SUPPORTED):
            problems.append(f"{name}: unsupported node type {type(node).__name__}")
    for a, b in graph.edges:
        for end in (a, b):
            if end not in graph.nodes:
                problems.append(f"edge ({a} -> {b}) references missing node '{end}'")
    if problems:
        return {}, problems
    inputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(inputs) != 1:
        problems.append(f"graph must have exactly one Input node, found {len(inputs)}")
    outputs = [n for n, v in graph.nodes.items() if isinstance(v, nir.Output)]
    if len(outputs) != 1:  # targets read one output stream (the per-step logits)
        problems.append(f"graph must have exactly one Output node, found {len(outputs)}"
                        + (f" ({', '.join(sorted(outputs))})" if outputs else ""))
    order, cyclic = topological_order(graph)
    if cyclic:
        (a, b), cycle = back_edge(graph, cyclic)
        shown = cycle if len(cycle) <= 6 else cycle[:3] + ["..."] + cycle[-2:]
        problems.append(f"recurrent/cyclic connections are not supported: edge {a} -> {b} closes the cycle "
                        f"{' -> '.join(shown)} ({len(cycle) - 1} nodes; {len(cyclic)} nodes on or after "
                        f"cycles cannot be ordered)")
    preds: Dict[str, List[str]] = {n: [] for n in graph.nodes}
    for a, b in graph.edges:
        preds[b].append(a)
    shapes: Dict[str, tuple] = {}
    for name in order:
        node = graph.nodes[name]
        srcs = [p for p in preds[name] if p in shapes]
        if len(srcs) != len(preds[name]):
            continue  # an upstream problem was already reported
        try:
            if isinstance(node, nir.Input):
                if srcs:
                    raise ValueError("Input node has inbound edges")
                shapes[name] = output_shape(node, None)
                continue
            if not srcs:
                raise ValueError("no inbound edge (unreachable from the Input)")
            if isinstance(node, SpikeMatMul):
                if sorted(srcs) != sorted({node.lhs, node.rhs}) or len(srcs) != 2:
                    raise ValueError(f"operands must be exactly lhs '{node.lhs}' and rhs '{node.rhs}', "
                                     f"edges come from {srcs}")
                for side, src in (("lhs", node.lhs), ("rhs", node.rhs)):
                    want = tuple(int(v) for v in getattr(node, f"{side}_shape"))
                    if shapes[src] != want:
                        raise ValueError(f"{side} '{src}' has shape {shapes[src]}, node expects {want}")
                shapes[name] = output_shape(node, None)
                continue
            in_shapes = {shapes[s] for s in srcs}
            if len(in_shapes) != 1:
                raise ValueError(f"inbound edges have different shapes {sorted(in_shapes)} and cannot be summed")
            in_shape = in_shapes.pop()
            want = expected_input(node)
            if want is not None and want != in_shape:
                raise ValueError(f"expects input shape {want}, receives {in_shape}")
            shapes[name] = output_shape(node, in_shape)
        except ValueError as e:
            problems.append(f"{name} ({type(node).__name__}): {e}")
    return shapes, problems


# NIR's neuron equations (nir.ir.neuron docstrings): tau * dv/dt = (v_leak - v) + R * I for LIF,
# dv/dt = R * I for IF; a time constant must be positive, every other parameter finite.
_POSITIVE = {nir.LIF: ("tau",)}


def _constant_or_all(a: np.ndarray) -> np.ndarray:
    """A fill-value (all-strides-0) view is one value repeated: check that value only."""
    return np.asarray(a.flat[0]) if a.ndim and a.size and not any(a.strides) else a


def check_values(graph: nir.NIRGraph) -> List[str]:
    """Non-finite parameters (any node, any field) and non-physical neuron parameters, by node and field."""
    problems = []
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    disc = meta.get("discretisation") if isinstance(meta.get("discretisation"), dict) else {}
    for key, v, ok in (("time_steps", meta.get("time_steps", 1), lambda v: float(v) >= 1 and float(v) == int(v)),
                       ("discretisation dt", disc.get("dt", meta.get("dt", 1e-3)),
                        lambda v: np.isfinite(float(v)) and float(v) > 0)):
        try:
            good = bool(ok(v))
        except (TypeError, ValueError, OverflowError):
            good = False
        if not good:
            problems.append(f"graph metadata {key} = {v!r}: must be " + ("an integer >= 1" if key == "time_steps"
                                                                          else "a finite number > 0"))
    for name, node in graph.nodes.items():
        for f, v in vars(node).items():
            if f in ("input_type", "output_type", "metadata") or not isinstance(v, np.ndarray):
                continue
            if v.dtype.kind not in "fc" or not v.size:
                continue
            a = _constant_or_all(v)
            lo, hi = np.min(a), np.max(a)  # NaN propagates; no temporary the size of the array
            if not (np.isfinite(lo) and np.isfinite(hi)):
                n = v.size if a is not v else int(np.count_nonzero(~np.isfinite(v)))
                problems.append(f"{name} ({type(node).__name__}): {f} has {n:,} non-finite value(s) (NaN/inf)")
            elif f in _POSITIVE.get(type(node), ()) and lo <= 0:
                problems.append(f"{name} ({type(node).__name__}): {f} must be > 0 (min {lo:g}): a time constant")
    return problems
