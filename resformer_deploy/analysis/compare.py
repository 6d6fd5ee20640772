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
from typing import Dict, List, Optional

import nir
import numpy as np
import torch

from exporters.graph_check import topological_order

from resformer_deploy.model.neurons import LIF, PLIF
from resformer_deploy.util.records import Record, is_count, is_fraction, require

TIE_TOL = 1e-4


@dataclass
class LayerComparison(Record):
    """One LIF layer's spikes, target against PyTorch, over all steps and samples."""
    node: str
    torch_module: str
    shape: List[int]
    compared: int
    identical_pct: float
    mismatches: int
    near_threshold_mismatches: int
    first_mismatch_step: Optional[int]
    torch_rate: float
    target_rate: float

    def __post_init__(self):
        require(is_count(self.compared) and is_count(self.mismatches) and self.mismatches <= self.compared,
                f"{self.node}: {self.mismatches} mismatches of {self.compared} compared spikes")
        require(0 <= self.near_threshold_mismatches <= self.mismatches,
                f"{self.node}: {self.near_threshold_mismatches} ties of {self.mismatches} mismatches")
        require((self.first_mismatch_step is None) == (self.mismatches == 0),
                f"{self.node}: first mismatch step {self.first_mismatch_step} with {self.mismatches} mismatches")
        require(0.0 <= self.identical_pct <= 100.0, f"{self.node}: identical {self.identical_pct}%")
        require(is_fraction(self.torch_rate) and is_fraction(self.target_rate), f"{self.node}: rates outside [0, 1]")


@dataclass
class FirstDivergence(Record):
    """The earliest layer (graph order) with a mismatch, at its first divergent step."""
    node: str
    torch_module: str
    step: int
    mismatches: int
    near_threshold: int
    layer_mismatches_all_steps: int

    def __post_init__(self):
        require(is_count(self.step) and 0 < self.mismatches <= self.layer_mismatches_all_steps
                and 0 <= self.near_threshold <= self.mismatches, f"inconsistent first divergence at {self.node}")


@dataclass
class RootDivergence(Record):
    """A diverged sample's first (step, layer in topological order) with a mismatch."""
    sample: int
    node: str
    step: int
    mismatches: int
    ties: int

    def __post_init__(self):
        require(is_count(self.sample) and is_count(self.step) and 0 <= self.ties <= self.mismatches
                and self.mismatches > 0, f"inconsistent root divergence of sample {self.sample} at {self.node}")


@dataclass
class Comparison(Record):
    """A target's run against the PyTorch model: per layer, per sample (roots), logits, classes."""
    root_divergences: List[RootDivergence]
    samples_identical: int
    samples_diverged: int
    roots_all_ties: bool
    # samples whose spikes all match: only the host readout's rounding differs
    identical_samples_logits_max_rel_diff: float
    identical_samples_prediction_agreement: float
    samples: int
    time_steps: int
    logits_max_abs_diff: float
    logits_max_rel_diff: float
    prediction_agreement: float
    predictions_torch: List[int]
    predictions_target: List[int]
    min_layer_identical_pct: float
    total_mismatches: int
    total_near_threshold: int
    first_divergence: Optional[FirstDivergence]
    layers: List[LayerComparison]

    def __post_init__(self):
        require(self.samples_identical + self.samples_diverged == self.samples == len(self.predictions_torch)
                == len(self.predictions_target), "sample counts disagree")
        require(len(self.root_divergences) == self.samples_diverged, "one root per diverged sample")
        require(is_fraction(self.prediction_agreement) and is_fraction(self.identical_samples_prediction_agreement),
                "agreements outside [0, 1]")
        require(self.total_mismatches == sum(r.mismatches for r in self.layers)
                and self.total_near_threshold == sum(r.near_threshold_mismatches for r in self.layers),
                "totals disagree with the layers")
        require((self.first_divergence is None) == (self.total_mismatches == 0),
                "a first divergence exactly when some spike differs")


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


def compare_run(graph: nir.NIRGraph, rec: TorchRecord, result, tie_tol: float = TIE_TOL) -> Comparison:
    layers: List[LayerComparison] = []
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
        layers.append(LayerComparison(
            node=name, torch_module=path, shape=list(a.shape[2:]), compared=int(a.numel()),
            identical_pct=100.0 * (1 - n_diff / a.numel()), mismatches=n_diff, near_threshold_mismatches=ties,
            first_mismatch_step=step, torch_rate=float(a.float().mean()), target_rate=float(b.float().mean())))
        compared.append((name, diff, near))
        if n_diff and first is None:
            # only the first divergent step: later steps of the same layer also carry the
            # flipped neurons' different membrane state (propagation, not rounding)
            at = diff[step]
            first = FirstDivergence(node=name, torch_module=path, step=step, mismatches=int(at.sum()),
                                    near_threshold=int((at & near[step]).sum()), layer_mismatches_all_steps=n_diff)
    ref, out = rec.logits, result.output.to(rec.logits.dtype)
    scale = float(ref.abs().max()) or 1.0
    pred_ref, pred_out = ref.mean(0).argmax(-1), out.mean(0).argmax(-1)
    roots = sample_roots(compared, int(ref.shape[1]))
    diverged = {r.sample for r in roots}
    same = torch.tensor([b not in diverged for b in range(ref.shape[1])], dtype=torch.bool)
    agree = pred_ref == pred_out
    return Comparison(
        root_divergences=roots, samples_identical=int(same.sum()), samples_diverged=len(roots),
        roots_all_ties=all(r.ties == r.mismatches for r in roots),
        identical_samples_logits_max_rel_diff=float((ref - out)[:, same].abs().max()) / scale
        if bool(same.any()) else 0.0,
        identical_samples_prediction_agreement=float(agree[same].float().mean()) if bool(same.any()) else 1.0,
        samples=int(ref.shape[1]), time_steps=int(ref.shape[0]),
        logits_max_abs_diff=float((ref - out).abs().max()), logits_max_rel_diff=float((ref - out).abs().max()) / scale,
        prediction_agreement=float(agree.float().mean()),
        predictions_torch=pred_ref.tolist(), predictions_target=pred_out.tolist(),
        min_layer_identical_pct=min((r.identical_pct for r in layers), default=100.0),
        total_mismatches=sum(r.mismatches for r in layers),
        total_near_threshold=sum(r.near_threshold_mismatches for r in layers),
        first_divergence=first, layers=layers)


def sample_roots(compared, n_samples: int) -> List[RootDivergence]:
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
        roots.append(RootDivergence(sample=b, node=name, step=t, mismatches=int(at.sum()),
                                    ties=int((at & near[t, b]).sum())))
    return roots
