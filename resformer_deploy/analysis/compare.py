"""Layer-by-layer comparison of a target's run against the PyTorch model.

Spikes of every LIF layer are compared element by element (all steps, all
samples). A mismatch counts as a *near-threshold tie* when the membrane value
that decided it lies within ``tie_tol`` of the threshold in either run: float
rounding (e.g. folded BatchNorm) can legitimately flip such a spike. The first
divergence is the earliest layer (in graph order) and step with a mismatch.

Root divergences, per sample: the first (step, layer in topological order) with a
mismatch. Everything that point depends on (earlier layers of the same step, every
layer of earlier steps, the same input) matched, so the two runs differ there only by
how their arithmetic rounded. Rounding moves a membrane by a few ulps times the number
of summed terms (float32: ~1e-7 relative per operation), far below ``tie_tol``; a root
mismatch farther from the threshold is a real difference. Later mismatches of the
sample are consequences of the root (different spikes propagate) and are not judged.
"""
from dataclasses import dataclass, field
from typing import Dict, List

import nir
import numpy as np
import torch

from exporters.graph_check import topological_order

from resformer_deploy.model.neurons import LIF, PLIF

TIE_TOL = 1e-4


@dataclass
class TorchRecord:
    logits: torch.Tensor  # [T, B, K]
    spikes: Dict[str, torch.Tensor] = field(default_factory=dict)  # module path -> bool [T, B, ...]
    membranes: Dict[str, torch.Tensor] = field(default_factory=dict)  # module path -> pre-reset v

    def head(self, n: int) -> "TorchRecord":
        """The record of the first n samples (every tensor is [T, B, ...])."""
        return TorchRecord(self.logits[:, :n], {k: v[:, :n] for k, v in self.spikes.items()},
                           {k: v[:, :n] for k, v in self.membranes.items()})


def _membrane(module, x_seq):
    k = module.decay()
    v = torch.zeros_like(x_seq[0])
    hs = []
    for t in range(x_seq.shape[0]):
        h = v + (x_seq[t] - v) * k
        v = torch.where(h >= module.v_threshold, torch.zeros_like(h), h)
        hs.append(h)
    return torch.stack(hs)


@torch.no_grad()
def record_torch(model, x: torch.Tensor, membranes: bool = True) -> TorchRecord:
    rec = TorchRecord(logits=None)
    hooks = []
    for path, mod in model.named_modules():
        if isinstance(mod, (LIF, PLIF)):
            def hook(m, inp, out, path=path):
                rec.spikes[path] = out.bool()
                if membranes:
                    rec.membranes[path] = _membrane(m, inp[0])
            hooks.append(mod.register_forward_hook(hook))
    try:
        model.eval()
        rec.logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    return rec


def compare_run(graph: nir.NIRGraph, rec: TorchRecord, result, tie_tol: float = TIE_TOL) -> dict:
    layers: List[dict] = []
    first = None
    order, _ = topological_order(graph)
    compared = []  # (name, diff, near) in topological order, for the per-sample roots
    for name in [n for n in order if n in result.spikes]:
        spikes = result.spikes[name]
        path = graph.nodes[name].metadata.get("torch_module")
        if path not in rec.spikes:
            continue
        a, b = rec.spikes[path], spikes
        if a.shape != b.shape and a.shape[:2] == b.shape[:2] and a[0, 0].numel() == b[0, 0].numel():
            a = a.reshape(b.shape)  # dense 1-D form of the same layer (row-major flatten)
            if path in rec.membranes:
                rec.membranes[path] = rec.membranes[path].reshape(b.shape)
        if a.shape != b.shape:
            raise ValueError(f"{name}: target spikes {tuple(b.shape)} vs PyTorch {tuple(a.shape)}")
        diff = a != b
        n_diff = int(diff.sum())
        ties = 0
        th = float(np.asarray(graph.nodes[name].v_threshold).flat[0])
        near = torch.zeros_like(diff)
        if n_diff:
            if name in result.membranes:
                near |= (result.membranes[name] - th).abs() <= tie_tol
            if path in rec.membranes:
                near |= (rec.membranes[path] - th).abs() <= tie_tol
            ties = int((diff & near).sum())
        step = int(diff.flatten(1).any(1).nonzero()[0]) if n_diff else None
        row = {"node": name, "torch_module": path, "shape": list(a.shape[2:]), "compared": int(a.numel()),
               "identical_pct": 100.0 * (1 - n_diff / a.numel()), "mismatches": n_diff,
               "near_threshold_mismatches": ties, "first_mismatch_step": step,
               "torch_rate": float(a.float().mean()), "target_rate": float(b.float().mean())}
        layers.append(row)
        compared.append((name, diff, near))
        if n_diff and first is None:
            # only the first divergent step: later steps of the same layer also carry the
            # flipped neurons' different membrane state (propagation, not rounding)
            at = diff[step]
            first = {"node": name, "torch_module": path, "step": step, "mismatches": int(at.sum()),
                     "near_threshold": int((at & near[step]).sum()), "layer_mismatches_all_steps": n_diff}
    ref, out = rec.logits, result.output.to(rec.logits.dtype)
    scale = float(ref.abs().max()) or 1.0
    pred_ref, pred_out = ref.mean(0).argmax(-1), out.mean(0).argmax(-1)
    roots = sample_roots(compared, int(ref.shape[1]))
    diverged = {r["sample"] for r in roots}
    same = torch.tensor([b not in diverged for b in range(ref.shape[1])], dtype=torch.bool)
    agree = pred_ref == pred_out
    return {
        "root_divergences": roots,
        "samples_identical": int(same.sum()),
        "samples_diverged": len(roots),
        "roots_all_ties": all(r["ties"] == r["mismatches"] for r in roots),
        # samples whose spikes all match: only the host readout's rounding differs
        "identical_samples_logits_max_rel_diff": float((ref - out)[:, same].abs().max()) / scale
        if bool(same.any()) else 0.0,
        "identical_samples_prediction_agreement": float(agree[same].float().mean()) if bool(same.any()) else 1.0,
        "samples": int(ref.shape[1]), "time_steps": int(ref.shape[0]),
        "logits_max_abs_diff": float((ref - out).abs().max()),
        "logits_max_rel_diff": float((ref - out).abs().max()) / scale,
        "prediction_agreement": float((pred_ref == pred_out).float().mean()),
        "predictions_torch": pred_ref.tolist(), "predictions_target": pred_out.tolist(),
        "min_layer_identical_pct": min((r["identical_pct"] for r in layers), default=100.0),
        "total_mismatches": sum(r["mismatches"] for r in layers),
        "total_near_threshold": sum(r["near_threshold_mismatches"] for r in layers),
        "first_divergence": first, "layers": layers,
    }


def sample_roots(compared, n_samples: int) -> List[dict]:
    """Per diverged sample, its root: the first (step, layer) in (step, topological order)
    with a mismatch, with how many of the mismatches there are near-threshold ties."""
    if not compared:
        return []
    # any[l, t, b]: layer l has a mismatch at step t for sample b
    any_ = torch.stack([d.flatten(2).any(2) for _, d, _ in compared])
    L, T, _ = any_.shape
    flat = any_.permute(2, 1, 0).reshape(n_samples, T * L)  # index t*L + l: step-major order
    roots = []
    for b in flat.any(1).nonzero().flatten().tolist():
        idx = int(flat[b].nonzero()[0])
        t, li = divmod(idx, L)
        name, diff, near = compared[li]
        at = diff[t, b]
        roots.append({"sample": b, "node": name, "step": t, "mismatches": int(at.sum()),
                      "ties": int((at & near[t, b]).sum())})
    return roots
