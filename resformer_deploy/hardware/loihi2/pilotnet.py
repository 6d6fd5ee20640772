"""lava-dl's PilotNet SNN (netx tutorial network.net) rebuilt from its published shapes as a NIR graph,
mapped by the project's planner and compared with Intel's compiler (the notebooks' per-core table).

The shapes are the ones the benchmark notebook prints (anchors.PILOTNET_LAYERS); weights are random
(the planner reads shapes only). netx's input layer is a neuron layer driven by a bias (the frame),
so here the host feeds it through identity synapses. The dense layers become convolutions whose
kernel covers the whole input (the same synapses), because the neuro partition has no Flatten.
The graph is built without NIR's type check: nir 1.0 infers a non-square kernel's output width from
the kernel height (a (2, 20) kernel on 2 x 20 gives width 19); the planner computes shapes itself.
"""
from typing import Dict, List, Tuple

import nir
import numpy as np

from resformer_deploy.hardware.loihi2 import anchors as A


def _lif(shape):
    return nir.LIF(*(np.full(shape, v, dtype=np.float64) for v in (0.01, 1.0, 0.0, 1.0, 0.0)))


def pilotnet_graph(seed: int = 0, layers=A.PILOTNET_LAYERS) -> nir.NIRGraph:
    """``layers``: (name, kind, shape, kernel, stride, padding) rows as anchors.PILOTNET_LAYERS (the first
    an ``input`` layer); PAIR_LAYERS rebuilds the two-neuron network of anchors.PAIR_LIF the same way."""
    rng = np.random.default_rng(seed)
    first = layers[0][2]
    nodes = {"frame": nir.Input({"input": np.array(first)}, metadata={"partition": "host"})}
    edges, prev, prev_shape = [], "frame", first
    for name, kind, shape, k, stride, pad in layers:
        if kind == "input":
            edges.append((prev, name))
        else:
            if kind == "dense":  # a convolution covering the whole input: the dense layer's synapses
                shape, (k_h, k_w), stride, pad = (shape[0], 1, 1), prev_shape[1:], (1, 1), (0, 0)
            else:
                k_h = k_w = k
            w = rng.standard_normal((shape[0], prev_shape[0], k_h, k_w))
            nodes[f"{name}_syn"] = nir.Conv2d(input_shape=prev_shape[1:], weight=w, stride=stride, padding=pad,
                                              dilation=1, groups=1, bias=np.zeros(shape[0]))
            edges += [(prev, f"{name}_syn"), (f"{name}_syn", name)]
        nodes[name] = _lif(shape)
        prev, prev_shape = name, shape
    nodes["steer"] = nir.Output({"output": np.array(prev_shape)}, metadata={"partition": "host"})
    edges.append((prev, "steer"))
    return nir.NIRGraph(nodes, edges, metadata={}, type_check=False)


def pilotnet_plan():
    from resformer_deploy.hardware.loihi2.partition import map_to_loihi2
    return map_to_loihi2(pilotnet_graph())


def pair_plan():
    """The two-neuron network of anchors.PAIR_LIF, mapped by the project's planner."""
    from resformer_deploy.hardware.loihi2.partition import map_to_loihi2
    return map_to_loihi2(pilotnet_graph(layers=A.PAIR_LAYERS))


def compare_with_intel(plan) -> Tuple[List[Dict], Dict]:
    """Per layer: our cores and Intel's, and the totals with the relative error of ours."""
    rows = {r.layer: r for r in plan.layers}
    out = []
    for name, (cores, per_core) in A.PILOTNET_INTEL_CORES.items():
        r = rows[name]
        out.append({"layer": name, "neurons": r.neurons, "cores": r.cores, "intel_cores": cores,
                    "max_core_neurons": r.max_core_neurons, "intel_neurons_per_core": per_core,
                    "limiting": r.limiting})
    ours, intel = sum(o["cores"] for o in out), sum(o["intel_cores"] for o in out)
    sdnn_ours = ours - rows["input"].cores
    total = {"cores": ours, "intel_cores": intel, "rel_error": ours / intel - 1.0,
             "sdnn_cores": sdnn_ours, "sdnn_intel_cores": int(A.PILOTNET_SDNN["neuro_cores"].value),
             "sdnn_rel_error": sdnn_ours / A.PILOTNET_SDNN["neuro_cores"].value - 1.0,
             "mean_abs_layer_rel_error": float(np.mean([abs(o["cores"] / o["intel_cores"] - 1) for o in out]))}
    return out, total
