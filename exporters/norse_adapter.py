"""Run a standard-node NIR graph in norse 1.1.0 (``norse.torch.from_nir``).

norse 1.1.0 / nirtorch 2.6 have documented bugs; we work around them on a copy
of the graph, never by patching norse:
* no Scale mapping: residual ``Scale(1)`` junctions are inlined (their inbound
  edges go straight to their consumers, where nirtorch sums them);
* ``Flatten`` dims are taken to include the batch: shift start/end by one;
* grouped Conv2d is built with in_channels = Cin/groups: expand to a dense conv
  (block-diagonal weights, exact);
* the spike test is ``v - v_th > 0`` where we need ``>=``: use the next float32
  below each threshold, which is the same test for float32 values;
* LIF ``tau`` is imported as ``tau_mem_inv = 1/tau`` with the ``dt`` passed to
  ``from_nir``: we pass the graph's dt;
* nirtorch 2.6's legacy GraphExecutor runs nodes in DFS preorder, which is not a
  topological order: where paths of different length reconverge, a node reads its
  other input from the *previous* step (stale cache). We replace the executor's
  ``execution_order`` on the returned instance with a topological order;
* its forward returns the last node of that order, not the Output: we read the
  Output's inputs from the state cache.
Norse has no mapping for our extension nodes, Threshold or average pooling;
such graphs are refused with the list of offending nodes.
"""
import copy

import nir
import numpy as np
import torch

from resformer_deploy.errors import DeployError, summarize

from exporters.graph_check import topological_order

NORSE_NODES = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.Conv2d, nir.LIF, nir.Flatten, nir.Scale)


def prepare_for_norse(graph: nir.NIRGraph) -> nir.NIRGraph:
    bad = [f"{n} ({type(v).__name__})" for n, v in graph.nodes.items() if not isinstance(v, NORSE_NODES)]
    bad += [f"{n} (Scale other than 1)" for n, v in graph.nodes.items()
            if isinstance(v, nir.Scale) and not np.all(np.asarray(v.scale) == 1)]
    if bad:
        raise DeployError(f"norse 1.1.0 cannot run {len(bad)} node(s): {summarize(bad, 6)}")
    ge = graph.metadata.get("discretisation", {}).get("threshold_test", ">") == ">="
    nodes, edges = {}, list(graph.edges)
    junctions = {n for n, v in graph.nodes.items() if isinstance(v, nir.Scale)}
    for j in junctions:
        ins = [a for a, b in edges if b == j]
        outs = [b for a, b in edges if a == j]
        edges = [(a, b) for a, b in edges if j not in (a, b)] + [(a, b) for a in ins for b in outs]
    for name, node in graph.nodes.items():
        if name in junctions:
            continue
        node = copy.copy(node)
        if isinstance(node, nir.Flatten):
            node = nir.Flatten(input_type=node.input_type, start_dim=node.start_dim + 1,
                               end_dim=node.end_dim if node.end_dim < 0 else node.end_dim + 1)
        elif isinstance(node, nir.Conv2d) and node.groups > 1:
            g, w = int(node.groups), np.asarray(node.weight)
            cout, cin_g = w.shape[:2]
            dense = np.zeros((cout, cin_g * g, *w.shape[2:]), dtype=w.dtype)
            per = cout // g
            for i in range(g):
                dense[i * per:(i + 1) * per, i * cin_g:(i + 1) * cin_g] = w[i * per:(i + 1) * per]
            node = nir.Conv2d(input_shape=node.input_shape, weight=dense, stride=node.stride,
                              padding=node.padding, dilation=node.dilation, groups=1, bias=node.bias)
        elif isinstance(node, nir.LIF) and ge:
            th = np.asarray(node.v_threshold, dtype=np.float32)
            node = nir.LIF(tau=node.tau, r=node.r, v_leak=node.v_leak, v_reset=node.v_reset,
                           v_threshold=np.nextafter(th, np.float32(-np.inf)).astype(np.float64))
        nodes[name] = node
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=dict(graph.metadata), type_check=False)


def run_norse(graph: nir.NIRGraph, x: torch.Tensor, T: int):
    """Returns (per-step output [T,B,...], {LIF node: spikes [T,B,...]})."""
    import norse.torch as norse_torch

    g = prepare_for_norse(graph)
    dt = float(graph.metadata.get("discretisation", {}).get("dt", 1e-3))
    net = norse_torch.from_nir(g, dt=dt)
    order, _ = topological_order(g)
    rank = {n: i for i, n in enumerate(order)}
    net.execution_order = sorted(net.execution_order, key=lambda node: rank[node.name])
    lif_nodes = [n for n, v in g.nodes.items() if isinstance(v, nir.LIF)]
    out_name = next(n for n, v in g.nodes.items() if isinstance(v, nir.Output))
    out_preds = [a for a, b in g.edges if b == out_name]
    state, outs = None, []
    spikes = {n: [] for n in lif_nodes}
    with torch.no_grad():
        for t in range(T):
            xt = x if x.dim() == len(graph.nodes["input"].input_type["input"]) + 1 else x[:, t]
            _, state = net(xt.float(), state)
            # nirtorch 2.6 returns whichever node its execution order ends with; read the
            # Output node's inputs from the state cache instead (summed, as edges are)
            outs.append(sum(state.cache[p] for p in out_preds))
            for n in lif_nodes:
                spikes[n].append(state.cache[n].bool())
    return torch.stack(outs), {n: torch.stack(v) for n, v in spikes.items()}
