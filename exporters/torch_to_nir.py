"""SpikingResformer (PyTorch) -> NIR graph in deployment-normal form.

* BatchNorm folded into every convolution (which therefore gets a bias);
  DSSA's c1/c2 folded into the y1/y2 channels of its patch convolution.
* LIF as NIR ``LIF`` with per-neuron arrays (float64) under the discretisation
  recorded in the graph metadata: forward Euler with step ``dt``,
  v[t] = v[t-1] + dt/tau * (v_leak - v[t-1] + r*I[t]); spike if v[t] >= v_threshold;
  then v = v_reset. LIF: tau = 2*dt, r = 1 (decay_input), v_leak = 0, v_th = 1, v_reset = 0.
  PLIF: tau = dt / sigmoid(w).
* The real-valued residual stream: inbound edges are summed; each residual add
  is a ``Scale(1)`` junction so that fan-in does not grow with depth.
* DSSA's two products: ``resformer_deploy.SpikeMatMul`` extension nodes naming
  their operands.
* Host partition (metadata ``partition: host``): the stem conv (real image in),
  the stem max-pool (extension node), global average pool, flatten, classifier.
  The mean over T is outside the graph, as it is outside the PyTorch model.
"""
import json
from typing import Dict, List, Tuple

import nir
import numpy as np
import torch

from resformer_deploy.errors import DeployError
from resformer_deploy.model.resformer import DSSA, GWFFN, DownsampleLayer, SpikingResformer
from resformer_deploy.model.neurons import LIF as TorchLIF, PLIF as TorchPLIF
from exporters.fold_bn import dssa_channel_scales, fold_conv_bn, to_numpy

from exporters.nir_ext import MaxPool2d, SpikeMatMul

DT = 1e-3
FORMAT = "resformer-deploy-nir"
FORMAT_VERSION = 1
DISCRETISATION = {
    "dt": DT,
    "integration": "forward-euler: v[t] = v[t-1] + dt/tau*(v_leak - v[t-1] + r*I[t])",
    "threshold_test": ">=",
    "reset": "hard: v = v_reset after a spike",
    "state_init": "v = 0 at the start of every sample",
    "edges": "instantaneous; inbound edges of a node are summed",
}


def node_name(path: str) -> str:
    return path.replace(".", "_")


class GraphBuilder:
    def __init__(self):
        self.nodes: Dict[str, nir.NIRNode] = {}
        self.edges: List[Tuple[str, str]] = []
        self.shapes: Dict[str, tuple] = {}

    def add(self, name, node, shape, inputs=(), partition="neuromorphic", **meta):
        if name in self.nodes:
            raise ValueError(f"duplicate node {name}")
        node.metadata = {"partition": partition, **meta}
        self.nodes[name] = node
        self.shapes[name] = tuple(int(s) for s in shape)
        for src in inputs:
            self.edges.append((src, name))
        return name


def lif_node(module, shape, dtype=np.float32) -> nir.LIF:
    if isinstance(module, TorchPLIF):
        # the sigmoid in the export's precision, as the model computes it in that precision: a
        # float32 decay in a float64 graph is off by ~1e-8, enough to flip near-threshold spikes
        w = module.w.detach().to(torch.float64 if np.dtype(dtype) == np.float64 else torch.float32)
        k = float(torch.sigmoid(w))
        tau_val = DT / k
    elif isinstance(module, TorchLIF):
        tau_val = DT * module.tau
    else:
        raise DeployError(f"unsupported neuron module {type(module).__name__}")

    def full(v):
        return np.full(shape, v, dtype=np.float64)

    return nir.LIF(tau=full(tau_val), r=full(1.0), v_leak=full(0.0), v_threshold=full(module.v_threshold),
                   v_reset=full(module.v_reset))


def conv_node(conv, bn, in_shape, extra_scale=None, dtype=np.float32):
    w, b = fold_conv_bn(conv.weight, bn.bn)
    if extra_scale is not None:
        w = w * extra_scale.reshape(-1, 1, 1, 1)
        b = b * extra_scale
    node = nir.Conv2d(input_shape=tuple(in_shape[1:]), weight=to_numpy(w, dtype), stride=tuple(conv.stride),
                      padding=tuple(conv.padding), dilation=tuple(conv.dilation), groups=conv.groups,
                      bias=to_numpy(b, dtype))
    node.input_type = {"input": np.array(in_shape)}  # nir 1.0.8 declares Cin/groups here
    return node, tuple(int(v) for v in node.output_type["output"])


class Exporter:
    def __init__(self, model: SpikingResformer, dtype=np.float32):
        self.model = model
        self.dtype = dtype
        self.g = GraphBuilder()

    def lif(self, path, module, src):
        shape = self.g.shapes[src]
        return self.g.add(node_name(path), lif_node(module, shape, self.dtype), shape, [src], torch_module=path,
                          role="neuron")

    def conv(self, path, conv, bn_path, bn, src, partition="neuromorphic", extra_scale=None, role="synapse"):
        node, out = conv_node(conv, bn, self.g.shapes[src], extra_scale, self.dtype)
        return self.g.add(node_name(path), node, out, [src], partition=partition, torch_module=path,
                          folded=bn_path, role=role)

    def junction(self, name, a, b):
        shape = self.g.shapes[a]
        if self.g.shapes[b] != shape:
            raise DeployError(f"residual {name}: shapes {shape} and {self.g.shapes[b]} differ")
        return self.g.add(name, nir.Scale(scale=np.ones(shape, dtype=self.dtype)), shape, [a, b],
                          role="residual_add")

    def dssa(self, p, m: DSSA, x):
        g = self.g
        C, H, W = g.shapes[x]
        h, d = m.num_heads, m.dim // m.num_heads
        s = self.lif(f"{p}.activation_in", m.activation_in, x)
        y = self.conv(f"{p}.W", m.W, f"{p}.norm", m.norm, s, extra_scale=dssa_channel_scales(m),
                      role="synapse:dssa_patch_embed(c1,c2 folded)")
        _, Hp, Wp = g.shapes[y]
        Np, N = Hp * Wp, H * W
        if Np != m.lenth:
            raise DeployError(f"{p}: {Hp}x{Wp} patches but lenth {m.lenth} (model built for another size)")
        heads = np.arange(h)[:, None]
        y1_rows = heads * 2 * d + np.arange(d)[None]
        y2_rows = y1_rows + d
        s_rows = heads * d + np.arange(d)[None]
        mm1 = SpikeMatMul(lhs=y, rhs=s, lhs_shape=np.array([2 * C, Hp, Wp]), rhs_shape=np.array([C, H, W]),
                          lhs_view=np.array([2 * C, Np]), rhs_view=np.array([C, N]), lhs_rows=y1_rows,
                          rhs_rows=s_rows, transpose_lhs=True, output_shape=np.array([h, Np, N]))
        a_in = g.add(node_name(f"{p}.matmul1"), mm1, (h, Np, N), [y, s], torch_module=f"{p}.matmul1",
                     role="dssa_product:attention")
        a = self.lif(f"{p}.activation_attn", m.activation_attn, a_in)
        mm2 = SpikeMatMul(lhs=y, rhs=a, lhs_shape=np.array([2 * C, Hp, Wp]), rhs_shape=np.array([h, Np, N]),
                          lhs_view=np.array([2 * C, Np]), rhs_view=np.array([h * Np, N]), lhs_rows=y2_rows,
                          rhs_rows=heads * Np + np.arange(Np)[None], transpose_lhs=False,
                          output_shape=np.array([C, H, W]))
        o_in = g.add(node_name(f"{p}.matmul2"), mm2, (C, H, W), [y, a], torch_module=f"{p}.matmul2",
                     role="dssa_product:value")
        o = self.lif(f"{p}.activation_out", m.activation_out, o_in)
        proj = self.conv(f"{p}.Wproj", m.Wproj, f"{p}.norm_proj", m.norm_proj, o)
        return self.junction(node_name(f"{p}.add"), proj, x)

    def gwffn(self, p, m: GWFFN, x):
        if len(m.conv) != 1:
            raise DeployError(f"{p}: GWFFN with {len(m.conv)} convs (official models have 1)")
        u = self.conv(f"{p}.up.1", m.up[1], f"{p}.up.2", m.up[2], self.lif(f"{p}.up.0", m.up[0], x))
        c = self.conv(f"{p}.conv.0.1", m.conv[0][1], f"{p}.conv.0.2", m.conv[0][2],
                      self.lif(f"{p}.conv.0.0", m.conv[0][0], u))
        z = self.junction(node_name(f"{p}.inner_add"), c, u)
        o = self.conv(f"{p}.down.1", m.down[1], f"{p}.down.2", m.down[2], self.lif(f"{p}.down.0", m.down[0], z))
        return self.junction(node_name(f"{p}.add"), o, x)

    def export(self) -> nir.NIRGraph:
        m, cfg, g = self.model, self.model.config, self.g
        m.check_calibrated()
        x = g.add("input", nir.Input(input_type=np.array([cfg.in_channels, cfg.img_size, cfg.img_size])),
                  (cfg.in_channels, cfg.img_size, cfg.img_size), partition="host", role="input")
        x = self.conv("prologue.0", m.prologue[0], "prologue.1", m.prologue[1], x, partition="host",
                      role="stem (real-valued input: MACs)")
        if cfg.stem == "imagenet":
            mp = m.prologue[2]
            node = MaxPool2d(input_shape=np.array(g.shapes[x]), kernel_size=np.array(mp.kernel_size),
                             stride=np.array(mp.stride), padding=np.array(mp.padding))
            x = g.add("prologue_2", node, node.output_type["output"], [x], partition="host",
                      torch_module="prologue.2", role="stem max-pool")
        for i, stage in enumerate(m.layers):
            for j, block in enumerate(stage):
                p = f"layers.{i}.{j}"
                if isinstance(block, DownsampleLayer):
                    x = self.conv(f"{p}.conv", block.conv, f"{p}.norm", block.norm,
                                  self.lif(f"{p}.activation", block.activation, x), role="synapse:downsample")
                elif isinstance(block, DSSA):
                    x = self.dssa(p, block, x)
                elif isinstance(block, GWFFN):
                    x = self.gwffn(p, block, x)
                else:
                    raise DeployError(f"{p}: unsupported block {type(block).__name__}")
        C, H, W = g.shapes[x]
        pool = nir.AvgPool2d(kernel_size=np.array([H, W]), stride=np.array([H, W]), padding=np.array([0, 0]))
        pool.input_type, pool.output_type = {"input": np.array([C, H, W])}, {"output": np.array([C, 1, 1])}
        x = g.add("avgpool", pool, (C, 1, 1), [x], partition="host", torch_module="avgpool", role="head")
        x = g.add("flatten", nir.Flatten(input_type={"input": np.array([C, 1, 1])}, start_dim=0, end_dim=-1),
                  (C,), [x], partition="host", role="head")
        x = g.add("classifier", nir.Linear(weight=to_numpy(m.classifier.weight, self.dtype)), (cfg.num_classes,), [x],
                  partition="host", torch_module="classifier", role="head (real-valued input: MACs)")
        g.add("output", nir.Output(output_type=np.array([cfg.num_classes])), (cfg.num_classes,), [x],
              partition="host", role="output: per-step logits")
        meta = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "nir_version": nir.version,
            "model": "SpikingResformer", "variant": cfg.name, "config": json.dumps(cfg.to_dict()),
            "time_steps": cfg.T, "weight_dtype": self.dtype.name,
            "input_encoding": "static image [C,H,W] repeated at every step; DVS frames fed one per step",
            "readout": "output = per-step logits [K]; prediction = argmax of the mean over the T steps (host)",
            "discretisation": dict(DISCRETISATION),
        }
        graph = nir.NIRGraph(nodes=g.nodes, edges=g.edges, metadata=meta, type_check=False)
        return graph


def export_model(model: SpikingResformer, dtype: str = "float32") -> nir.NIRGraph:
    """Deployment-normal NIR graph of ``model`` (eval-mode BN statistics and DSSA buffers).

    ``dtype`` is the storage type of weights and biases (folding is always done in float64);
    float64 graphs serve exact equivalence checks."""
    if not isinstance(model, SpikingResformer):
        raise DeployError(f"can only export SpikingResformer models, got {type(model).__name__}")
    if dtype not in ("float32", "float64"):
        raise DeployError(f"weight dtype must be float32 or float64, got {dtype}")
    return Exporter(model, np.dtype(dtype)).export()
