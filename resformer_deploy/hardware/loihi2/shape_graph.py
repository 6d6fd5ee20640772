"""The model's NIR graph with its per-neuron parameters left out: what the core planner needs at any size.

The core plan (partition.py) reads layer shapes, kernel shapes, strides, groups and the DSSA operand
views, never a neuron's parameter values. The full export (exporters/torch_to_nir.py) stores five
float64 arrays per LIF neuron and one per junction neuron; the DSSA attention layer has
heads x Np x N neurons, so those arrays grow with the fourth power of the image size (cifar @128
needs more than 10 GiB). Here every per-neuron parameter is a read-only zero-stride view of one
scalar (``np.broadcast_to``): the same graph, node for node and edge for edge, with the same
shapes and convolution weights (those do not grow with the image size), in bounded memory.
``tests/hardware/test_shape_graph.py`` and ``benchmarks/loihi2_estimate.py --parts systems`` check
that its plan equals the exported graph's plan (totals, per-layer split, DRC findings).
"""
import nir
import numpy as np

from exporters.torch_to_nir import Exporter, lif_node, node_name
from resformer_deploy.errors import DeployError
from resformer_deploy.model.resformer import SpikingResformer


def _scalar_view(value: float, shape) -> np.ndarray:
    """``value`` at every element of ``shape`` without storing it per element."""
    return np.broadcast_to(np.float64(value), tuple(int(s) for s in shape))


class _ShapeExporter(Exporter):
    """The exporter with LIF and junction parameters as scalar views (same nodes, edges, metadata)."""

    def lif(self, path, module, src):
        shape = self.g.shapes[src]
        one = lif_node(module, (1,), self.dtype)  # the exporter's own per-layer values, on one neuron
        node = nir.LIF(**{f: _scalar_view(getattr(one, f)[0], shape)
                          for f in ("tau", "r", "v_leak", "v_threshold", "v_reset")})
        return self.g.add(node_name(path), node, shape, [src], torch_module=path, role="neuron")

    def junction(self, name, a, b):
        shape = self.g.shapes[a]
        if self.g.shapes[b] != shape:
            raise DeployError(f"residual {name}: shapes {shape} and {self.g.shapes[b]} differ")
        return self.g.add(name, nir.Scale(scale=_scalar_view(1.0, shape)), shape, [a, b], role="residual_add")


def shape_graph(model: SpikingResformer) -> nir.NIRGraph:
    """``export_model(model)``'s graph with per-neuron parameters as scalar views (for planning only:
    the views are read-only, so no pass can write through them)."""
    if not isinstance(model, SpikingResformer):
        raise DeployError(f"can only export SpikingResformer models, got {type(model).__name__}")
    return _ShapeExporter(model, np.dtype("float32")).export()


def neuron_lower_bound(graph: nir.NIRGraph) -> int:
    """Neurons of the graph's on-chip LIF and junction nodes: each is a layer of the core plan, so the
    plan has at least this many neurons. Every layer's extent grows with the image size (convolution
    output sizes do), so this bound does too: once it exceeds a system's neurons, so does every larger size."""
    return sum(int(np.prod(n.output_type["output"])) for n in graph.nodes.values()
               if isinstance(n, (nir.LIF, nir.Scale)) and (n.metadata or {}).get("partition") == "neuromorphic")
