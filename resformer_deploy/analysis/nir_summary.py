"""Node table and totals for a NIR graph (`resformer-deploy inspect`)."""
from collections import Counter

import nir
import numpy as np

from exporters.graph_check import check_graph, topological_order
from exporters.nir_ext import EXTENSION_NODES

_PARAM_FIELDS = ("weight", "bias", "scale", "tau", "r", "v_leak", "v_threshold", "v_reset", "threshold")


def node_params(node) -> int:
    if isinstance(node, (nir.LIF, nir.IF, nir.Threshold, nir.Scale)):
        return 0  # per-neuron constants, counted as neurons below
    return int(sum(np.asarray(getattr(node, f)).size for f in _PARAM_FIELDS
                   if getattr(node, f, None) is not None))


def type_name(node) -> str:
    return getattr(node, "type_name", "") or type(node).__name__


def graph_summary(graph: nir.NIRGraph) -> dict:
    shapes, problems = check_graph(graph)
    order, _ = topological_order(graph)
    rows = []
    for name in order:
        node = graph.nodes[name]
        meta = node.metadata or {}
        neurons = int(np.prod(shapes.get(name, (0,)))) if isinstance(node, (nir.LIF, nir.IF)) else 0
        rows.append({"node": name, "type": type_name(node), "shape": list(shapes.get(name, [])),
                     "params": node_params(node), "neurons": neurons,
                     "partition": meta.get("partition", "unknown"), "role": meta.get("role", ""),
                     "fan_in": sum(1 for a, b in graph.edges if b == name)})
    by_part = Counter(r["partition"] for r in rows)
    meta = dict(graph.metadata)
    return {
        "nodes": len(graph.nodes), "edges": len(graph.edges),
        "types": dict(Counter(r["type"] for r in rows)),
        "extension_nodes": sorted(r["node"] for r in rows if r["type"] in EXTENSION_NODES),
        "params": sum(r["params"] for r in rows),
        "params_neuromorphic": sum(r["params"] for r in rows if r["partition"] == "neuromorphic"),
        "params_host": sum(r["params"] for r in rows if r["partition"] == "host"),
        "neurons": sum(r["neurons"] for r in rows),
        "partition_nodes": dict(by_part),
        "problems": problems, "metadata": meta, "table": rows,
    }
