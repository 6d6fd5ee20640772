"""Synaptic operation (SOP) counts and the paper's energy convention.

Convention (official repository xyshi2000/SpikingResformer, utils/utils.py ``SOPMonitor``,
used by main.py): per image, summed over the T steps; convolution/linear: conv(x_in, ones(W))
summed = accumulates triggered by input spikes; spike-driven matmul ('r' tagged):
rows(left) x nnz(right). Energy 0.9 pJ per accumulate (AC) and 4.6 pJ per multiply-accumulate
(MAC): 32-bit floating-point add and multiply + add at 45 nm (M. Horowitz, "Computing's energy
problem", ISSCC 2014), the figures spiking-transformer papers use. The stem convolution and the
classifier (real-valued inputs: MACs) are excluded unless asked for. Residual additions are not synaptic operations in
the paper; they are counted separately (one real addition per element per step).

Two independent routes, which must agree:
* ``count_torch``: forward hooks on the PyTorch model, exactly as the official SOPMonitor;
* ``count_graph``: from the spike records of a graph run (reference interpreter or Lava),
  using each synapse node's fan-out and each product's operand shapes. A convolution's fan-out
  comes from its kernel and geometry (``conv_fan_out``), never from its unrolled synapses; like
  SOPMonitor it counts every in-bounds kernel tap, an exactly-zero weight too (the unrolled
  matrix drops those: the ti @224 benchmark model has two, in layers.2.0.conv).
"""
from collections import defaultdict
from dataclasses import dataclass
from typing import Dict, Optional

import nir
import numpy as np
import torch
import torch.nn.functional as F

from exporters.nir_ext import SpikeMatMul

from resformer_deploy.util.records import Record, is_nonneg, require

E_AC_PJ = 0.9
E_MAC_PJ = 4.6
KINDS = ("conv", "dssa_product", "residual_add", "stem_mac", "classifier_mac")


@dataclass
class LayerOps(Record):
    """One layer's operations over a batch (totals: divide by the samples for per image)."""
    kind: str  # one of KINDS
    ops: float
    torch_ops: Optional[float] = None  # set where a graph count is listed next to PyTorch's

    def __post_init__(self):
        require(self.kind in KINDS, f"operation kind '{self.kind}' (known: {', '.join(KINDS)})")
        require(is_nonneg(self.ops), f"{self.ops} operations")

    def to_json(self) -> dict:  # torch_ops only where it was set (ops --target loihi2-sim)
        return {"kind": self.kind, "ops": self.ops, **({} if self.torch_ops is None else {"torch_ops": self.torch_ops})}


@dataclass
class EnergyConvention(Record):
    E_AC_pJ: float
    E_MAC_pJ: float
    include_stem: bool
    include_classifier: bool
    residual_adds: str = "reported, not part of the paper's SOPs"


@dataclass
class EnergyReport(Record):
    """Per-image operations by kind, the synaptic operations and the energy (mJ) they cost."""
    per_image: Dict[str, float]
    sops: float
    macs_included: float
    energy_mJ: float
    convention: EnergyConvention

    def __post_init__(self):
        require(set(self.per_image) == set(KINDS), f"kinds {sorted(self.per_image)}")
        require(all(is_nonneg(v) for v in self.per_image.values()) and is_nonneg(self.energy_mJ),
                "negative operation counts or energy")


def _kind_of_path(path: str) -> str:
    if path == "prologue.0":
        return "stem_mac"
    if path == "classifier":
        return "classifier_mac"
    if path.endswith("matmul1") or path.endswith("matmul2"):
        return "dssa_product"
    return "conv"


@torch.no_grad()
def count_torch(model, x, replay: Optional[Dict[str, torch.Tensor]] = None,
                batch: Optional[int] = None) -> Dict[str, LayerOps]:
    """Per layer (module path) totals over the batch; divide by the batch size for per image.

    ``batch``: samples per forward (the totals are sums of whole-number counts, so chunking changes
    nothing; it bounds the forward's activations, e.g. analysis.equivalence.torch_record_batch).

    ``replay``: spike records ``[T, B, *shape]`` by neuron module path (another engine's run, e.g.
    the fixed-point emulator's); every neuron's output is replaced by them, so the official
    counting convention is applied to exactly those spikes (an independent count of that run)."""
    from resformer_deploy.model.layers import SpikingMatmul
    from resformer_deploy.model.neurons import LIF, PLIF
    counts, hooks = {}, []

    def replay_hook(path):
        def h(mod, inp, out):
            return replay[path].reshape(out.shape).to(out.dtype)
        return h

    def conv_hook(path):
        def h(mod, inp, out):
            xin = inp[0].flatten(0, 1)
            if _kind_of_path(path) in ("stem_mac", "classifier_mac"):
                # real-valued input: every synapse performs a MAC every step, whatever the value
                # (the official hook would sum input values here, which is why the paper skips them)
                xin = torch.ones_like(xin)
            if isinstance(mod, torch.nn.Conv2d):
                ops = F.conv2d(xin, torch.ones_like(mod.weight), None, mod.stride, mod.padding, mod.dilation,
                               mod.groups).sum()
            else:
                ops = F.linear(xin, torch.ones_like(mod.weight)).sum()
            counts[path] = counts.get(path, 0.0) + float(ops)
        return h

    def mm_hook(path):
        def h(mod, inp, out):
            left, right = inp  # the binary operand's spikes trigger the accumulates (SOPMonitor.cal_sop_matmul)
            if mod.spike == "r":
                left = torch.ones_like(left)
            elif mod.spike == "l":
                right = torch.ones_like(right)
            counts[path] = counts.get(path, 0.0) + float((left @ right).sum())
        return h

    for path, mod in model.named_modules():
        if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
            hooks.append(mod.register_forward_hook(conv_hook(path)))
        elif isinstance(mod, SpikingMatmul):
            hooks.append(mod.register_forward_hook(mm_hook(path)))
        elif replay is not None and isinstance(mod, (LIF, PLIF)):
            if path not in replay:  # a neuron left running would mix two runs' spikes
                raise ValueError(f"replay has no spikes of neuron {path} ({len(replay)} given)")
            hooks.append(mod.register_forward_hook(replay_hook(path)))
    n = x.shape[0]
    step = n if not batch else max(1, int(batch))
    full = replay
    try:
        model.eval()
        for i in range(0, n, step):
            if full is not None:  # records are [T, B, ...]: the chunk's samples
                replay = {k: v[:, i:i + step] for k, v in full.items()}
            model(x[i:i + step])
    finally:
        for h in hooks:
            h.remove()
    return {p: LayerOps(_kind_of_path(p), v) for p, v in counts.items()}


def replay_counts(model, graph: nir.NIRGraph, x, spikes: Dict[str, torch.Tensor],
                  float_counts: Dict[str, LayerOps]) -> Dict[str, LayerOps]:
    """``count_torch`` (in float64) replaying a graph run's spike records (keyed by LIF node) at
    the neuron modules the nodes were exported from; each layer's ``torch_ops`` is the float
    model's own count from ``float_counts``."""
    from resformer_deploy.model.precision import model_in_dtype
    replay = {(node.metadata or {})["torch_module"]: spikes[n] for n, node in graph.nodes.items()
              if (node.metadata or {}).get("role") == "neuron"}
    from resformer_deploy.analysis.equivalence import torch_record_batch
    steps = next(iter(spikes.values())).shape[0]  # records are [T, B, ...]
    with model_in_dtype(model, torch.float64) as m64:
        counts = count_torch(m64, x.double(), replay=replay, batch=torch_record_batch(graph, steps, 8))
    for k, v in counts.items():
        v.torch_ops = float_counts[k].ops if k in float_counts else None
    return counts


def max_rel_diff(reference: Dict[str, Optional[float]], counts: Dict[str, LayerOps]) -> float:
    """Largest |count - reference| / max(1, |reference|) over the layers of ``reference``."""
    return max((abs(counts[k].ops - r) / max(1.0, abs(r)) if k in counts else float("inf")
                for k, r in reference.items() if r is not None), default=0.0)


def _hits(n_in: int, n_out: int, k: int, stride: int, padding: int, dilation: int) -> np.ndarray:
    """[k, n_in] along one axis: 1 where tap i of some output's window lands on input position p
    (p = o * stride - padding + i * dilation for an o in 0..n_out-1)."""
    o = (np.arange(n_in)[None, :] + padding - np.arange(k)[:, None] * dilation)  # o * stride
    return ((o % stride == 0) & (o >= 0) & (o // stride < n_out)).astype(np.float64)


def conv_fan_out(weight, in_shape, stride=1, padding=0, dilation=1, groups: int = 1) -> np.ndarray:
    """Synapses leaving each input of a convolution, [Cin, H, W] float64: the nonzero weights
    whose window puts that input under them. The count separates: input channel c of group g
    feeds, for each tap (i, j), the group's output channels whose weight there is nonzero,
    at every output position whose tap i (rows) and j (columns) lands on it. Equals the column
    counts of the unrolled matrix (passes.unroll_dense.window_matrix) without building it;
    memory is one input image. Exact: integers below Cout * kh * kw summed in float64."""
    from resformer_deploy.lava.conv import out_hw, pair
    nz = np.asarray(weight) != 0
    cout, cin_g, kh, kw = nz.shape
    g = int(groups)
    cin, h, w = (int(v) for v in in_shape)
    per_tap = nz.reshape(g, cout // g, cin_g, kh, kw).sum(axis=1).reshape(cin, kh, kw).astype(np.float64)
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    ho, wo = out_hw((h, w), (kh, kw), stride, padding, dilation)
    hy, hx = _hits(h, ho, kh, sh, ph, dh), _hits(w, wo, kw, sw, pw, dw)
    return np.einsum("cij,iy,jx->cyx", per_tap, hy, hx, optimize=True)


def count_graph(graph: nir.NIRGraph, spikes: Dict[str, torch.Tensor], T: int, n_samples: int) -> Dict[str, LayerOps]:
    """Counts from a graph run's LIF spike records ``[T, B, *shape]`` (all LIF nodes needed).
    Stem and classifier MACs: every input element of those real-valued layers, every step."""
    from exporters.graph_check import check_graph
    shapes, _ = check_graph(graph)
    preds = defaultdict(list)
    for a, b in graph.edges:
        preds[b].append(a)
    out = {}
    for n, node in graph.nodes.items():
        path = (node.metadata or {}).get("torch_module", n)
        kind = _kind_of_path(path)
        if isinstance(node, nir.Conv2d):
            src = preds[n][0]
            # every kernel tap counts, zero weights too: SOPMonitor convolves with ones_like(weight)
            taps = np.ones(np.shape(node.weight), dtype=bool)
            fan_out = torch.from_numpy(conv_fan_out(taps, shapes[src], node.stride, node.padding, node.dilation,
                                                    node.groups).reshape(-1))
            if kind == "stem_mac":
                ops = float(fan_out.sum()) * T * n_samples  # real input: every synapse every step
            else:  # spike counts per input (<= T * n_samples) times fan-out: exact in float64
                s = spikes[src].reshape(T, n_samples, -1)
                counts = sum(s[t].sum(0, dtype=torch.int64) for t in range(T))  # a step at a time, in integers
                ops = float((counts.double() * fan_out).sum())
            out[path] = LayerOps(kind, ops)
        elif isinstance(node, (nir.Linear, nir.Affine)) and kind == "classifier_mac":
            out[path] = LayerOps(kind, float(np.asarray(node.weight).size) * T * n_samples)
        elif isinstance(node, SpikeMatMul):
            m, k, n_ = node.product_dims()
            # bool spikes counted as integers a step at a time (a float64 copy of a whole record of
            # dvsg's 48 ladder samples took several GiB)
            r = spikes[node.rhs].reshape(T, n_samples, *node.rhs_view.tolist())
            nnz = sum(int(r[t][:, rows].sum()) for t in range(T) for rows in node.rhs_rows)
            out[path] = LayerOps(kind, m * nnz)
        elif isinstance(node, nir.Scale) and (node.metadata or {}).get("role") == "residual_add":
            out[n] = LayerOps("residual_add", float(np.prod(shapes[n])) * T * n_samples)
    return out


def energy_report(counts: Dict[str, LayerOps], n_samples: int, include_stem: bool = False,
                  include_classifier: bool = False) -> EnergyReport:
    """Per-image totals by kind and the energy in the paper's convention (mJ)."""
    by_kind = {k: 0.0 for k in KINDS}
    for v in counts.values():
        by_kind[v.kind] += v.ops / n_samples
    sops = by_kind["conv"] + by_kind["dssa_product"]
    macs = (by_kind["stem_mac"] if include_stem else 0.0) + (by_kind["classifier_mac"] if include_classifier else 0.0)
    return EnergyReport(by_kind, sops, macs, (E_AC_PJ * sops + E_MAC_PJ * macs) * 1e-9,
                        EnergyConvention(E_AC_PJ, E_MAC_PJ, include_stem, include_classifier))
