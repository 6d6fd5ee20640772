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

Memory: every figure above is a sum over (layer, step, sample) of mismatches and of mismatches
that are ties, so the comparison keeps only those counts (SpikeComparer). Of the PyTorch run it
keeps, per neuron, step and sample, the spike and whether the membrane lies within ``tie_tol`` of
the threshold, 1 bit each (TorchRecord); a target that hands over its spikes as it makes them
(``on_spikes``, targets/reference.py) keeps nothing of its run. ti @224, 8 samples, T = 4: 81 MiB
instead of the 2.7 GB of float64 membranes per run.
"""
from collections.abc import Mapping
from dataclasses import dataclass, field
from math import prod
from typing import Callable, Dict, List, Optional, Sequence, Tuple

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


class PackedMasks(Mapping):
    """Boolean records [T, B, *shape] per layer, stored 8 values per byte (``numpy.packbits`` along
    each sample's flattened values), so recording every neuron of a run costs 1 bit per value, not
    a byte (bool) or 8 (a float64 membrane). ``masks[k]`` unpacks a whole record (a bool tensor, as
    a dict of tensors would give); ``step(k, t)`` unpacks only step t, [B, *shape]."""

    def __init__(self, packed: Optional[Dict[str, Tuple[np.ndarray, tuple]]] = None):
        self._packed = dict(packed or {})  # key -> (uint8 [T, B, ceil(n / 8)], full shape)

    def put(self, key: str, mask: torch.Tensor) -> None:
        """Store a bool (or 0/1) tensor [T, B, *shape]."""
        shape = tuple(mask.shape)
        a = mask.detach().reshape(shape[0], shape[1], -1).to(torch.bool).numpy()
        self._packed[key] = (np.packbits(a, axis=-1), shape)

    def put_steps(self, key: str, steps, shape: tuple) -> None:
        """Store a record given one step at a time (bool [B, *shape[2:]] each): no [T, ...] tensor."""
        n = prod(shape[2:])
        packed = np.empty((shape[0], shape[1], (n + 7) // 8), dtype=np.uint8)
        for t, m in enumerate(steps):
            packed[t] = np.packbits(m.detach().reshape(shape[1], n).to(torch.bool).numpy(), axis=-1)
        self._packed[key] = (packed, tuple(shape))

    def shape(self, key: str) -> tuple:
        return self._packed[key][1]

    def step(self, key: str, t: int) -> torch.Tensor:
        packed, shape = self._packed[key]
        bits = np.unpackbits(packed[t], axis=-1, count=prod(shape[2:]))
        return torch.from_numpy(bits.view(np.bool_)).reshape(shape[1:])

    def count(self, key: str) -> int:
        """How many values are True (from the packed bytes; the pad bits are zero)."""
        return int(_POPCOUNT[self._packed[key][0]].sum(dtype=np.int64))

    def head(self, n: int) -> "PackedMasks":
        """The first n samples, copied (a view would keep the whole record alive)."""
        return PackedMasks({k: (np.ascontiguousarray(p[:, :n]), (s[0], min(n, s[1])) + s[2:])
                            for k, (p, s) in self._packed.items()})

    def nbytes(self) -> int:
        return sum(p.nbytes for p, _ in self._packed.values())

    @classmethod
    def concat(cls, parts: Sequence["PackedMasks"]) -> "PackedMasks":
        """Records of consecutive sample chunks joined along the sample axis (each sample's bits are
        packed on their own, so the bytes join unchanged)."""
        out = {}
        for key in parts[0]:
            shapes = [p._packed[key][1] for p in parts]
            out[key] = (np.concatenate([p._packed[key][0] for p in parts], axis=1),
                        (shapes[0][0], sum(s[1] for s in shapes)) + shapes[0][2:])
        return cls(out)

    def __getitem__(self, key: str) -> torch.Tensor:
        packed, shape = self._packed[key]
        bits = np.unpackbits(packed, axis=-1, count=prod(shape[2:]))
        return torch.from_numpy(bits.view(np.bool_)).reshape(shape)

    def __contains__(self, key) -> bool:
        return key in self._packed

    def __iter__(self):
        return iter(self._packed)

    def __len__(self) -> int:
        return len(self._packed)


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def count_true(masks: Mapping, key: str) -> int:
    """How many values of ``masks[key]`` are True: from the packed bytes, or by count_nonzero (a
    bool tensor's sum() first copies it to int64, 8 B per value: 6 GiB for dvsg's largest layer
    on 48 samples)."""
    return masks.count(key) if isinstance(masks, PackedMasks) else int(torch.count_nonzero(masks[key]))


@dataclass
class TorchRecord:
    """What verification keeps of the PyTorch run: per LIF module, its spikes and, instead of its
    membranes, the mask of near-threshold values (|v - v_threshold| <= tie_tol), both packed
    (1 bit per neuron, step and sample): all that the comparison and the verdict read. Full float
    membranes only when asked (record_torch(membranes=True))."""
    logits: torch.Tensor  # [T, B, K]
    spikes: Mapping = field(default_factory=PackedMasks)  # module path -> bool [T, B, ...]
    membranes: Dict[str, torch.Tensor] = field(default_factory=dict)  # module path -> pre-reset v
    near: Mapping = field(default_factory=PackedMasks)  # module path -> |v - v_threshold| <= tie_tol
    thresholds: Dict[str, float] = field(default_factory=dict)  # module path -> v_threshold of ``near``
    tie_tol: float = TIE_TOL

    def head(self, n: int) -> "TorchRecord":
        """The record of the first n samples (every record is [T, B, ...])."""
        return TorchRecord(self.logits[:, :n], _head(self.spikes, n), {k: v[:, :n] for k, v in self.membranes.items()},
                           _head(self.near, n), dict(self.thresholds), self.tie_tol)

    @classmethod
    def concat(cls, parts: Sequence["TorchRecord"]) -> "TorchRecord":
        """The records of consecutive sample chunks as one (the run is per sample: chunking changes
        nothing but the batch the forward saw)."""
        first = parts[0]
        return TorchRecord(torch.cat([p.logits for p in parts], dim=1), PackedMasks.concat([p.spikes for p in parts]),
                           {k: torch.cat([p.membranes[k] for p in parts], dim=1) for k in first.membranes},
                           PackedMasks.concat([p.near for p in parts]), dict(first.thresholds), first.tie_tol)

    def spike_step(self, path: str, t: int) -> torch.Tensor:
        return _step(self.spikes, path, t)

    def nbytes(self) -> int:
        return sum(_nbytes(m) for m in (self.spikes, self.near)) + sum(v.nbytes for v in self.membranes.values())


def _head(masks, n):
    return masks.head(n) if isinstance(masks, PackedMasks) else {k: v[:, :n] for k, v in masks.items()}


def _step(masks, key, t):
    return masks.step(key, t) if isinstance(masks, PackedMasks) else masks[key][t]


def _shape(masks, key):
    return masks.shape(key) if isinstance(masks, PackedMasks) else tuple(masks[key].shape)


def _nbytes(masks):
    return masks.nbytes() if isinstance(masks, PackedMasks) else sum(v.nbytes for v in masks.values())


def _membrane_steps(module, x_seq):
    """The module's pre-reset membrane h[t], one step at a time (the module's own update,
    resformer_deploy/model/neurons.py: h = v + (x - v) * k; hard reset to 0 where h >= v_threshold)."""
    k = module.decay()
    v = torch.zeros_like(x_seq[0])
    for t in range(x_seq.shape[0]):
        h = v + (x_seq[t] - v) * k
        v = torch.where(h >= module.v_threshold, torch.zeros_like(h), h)
        yield h


def _membrane(module, x_seq):
    return torch.stack(list(_membrane_steps(module, x_seq)))


def lif_modules(model) -> List[Tuple[str, torch.nn.Module]]:
    return [(p, m) for p, m in model.named_modules() if isinstance(m, (LIF, PLIF))]


@torch.no_grad()
def record_torch(model, x: torch.Tensor, membranes: bool = False, near: bool = True, tie_tol: float = TIE_TOL,
                 progress: Optional[Callable[[int], None]] = None, batch: Optional[int] = None) -> TorchRecord:
    """Run the model on x, keeping per LIF module its spikes and near-threshold mask (packed, see
    TorchRecord), and its float membranes only if ``membranes``. Each module's record is made in its
    forward hook, a step at a time, so no layer's membrane outlives the hook. ``progress(1)`` per
    LIF module run. ``batch``: samples per forward (None: all at once); the forward's activations
    grow with it, the packed record does not."""
    if batch is not None and 0 < batch < len(x):
        return TorchRecord.concat([record_torch(model, x[i:i + batch], membranes, near, tie_tol, progress)
                                   for i in range(0, len(x), batch)])
    rec = TorchRecord(logits=None, tie_tol=tie_tol)
    hooks = []
    for path, mod in lif_modules(model):
        def hook(m, inp, out, path=path):
            rec.spikes.put(path, out)
            if membranes:
                rec.membranes[path] = _membrane(m, inp[0])
            if near:
                th = float(m.v_threshold)
                rec.thresholds[path] = th
                rec.near.put_steps(path, ((h - th).abs() <= tie_tol for h in _membrane_steps(m, inp[0])),
                                   tuple(out.shape))
            if progress:
                progress(1)
        hooks.append(mod.register_forward_hook(hook))
    try:
        model.eval()
        rec.logits = model(x)
    finally:
        for h in hooks:
            h.remove()
    return rec


@dataclass
class _LayerCounts:
    """One layer's comparison so far: per (step, sample) mismatches and near-threshold ties."""
    path: str
    shape: tuple  # [T, B, *shape] as compared (the target's form)
    mismatches: torch.Tensor  # int64 [T, B]
    ties: torch.Tensor  # int64 [T, B]
    seen: torch.Tensor  # bool [T]: steps compared
    torch_spikes: int = 0
    target_spikes: int = 0


class SpikeComparer:
    """Compares a target's spikes with a TorchRecord one layer and step at a time, as a target
    produces them (``add``), keeping only counts per (layer, step, sample); ``finish`` makes the
    Comparison. A target that streams its spikes (targets/reference.py ``on_spikes``) then needs
    no whole-run record, and the result is the same as comparing whole records (compare_run)."""

    def __init__(self, graph: nir.NIRGraph, rec: TorchRecord, tie_tol: float = TIE_TOL):
        if len(rec.near) and tie_tol != rec.tie_tol:
            raise ValueError(f"the PyTorch record's near-threshold masks are for tie_tol {rec.tie_tol:g}, "
                             f"not {tie_tol:g}: record with record_torch(..., tie_tol={tie_tol:g})")
        order, _ = topological_order(graph)
        self.rank = {n: i for i, n in enumerate(order)}
        self.graph, self.rec, self.tie_tol = graph, rec, tie_tol
        self.T, self.B = int(rec.logits.shape[0]), int(rec.logits.shape[1])
        self.layers: Dict[str, _LayerCounts] = {}

    def path_of(self, name: str) -> Optional[str]:
        """The PyTorch module recorded for graph node ``name`` (None: not compared)."""
        node = self.graph.nodes.get(name)
        path = None if node is None else (node.metadata or {}).get("torch_module")
        return path if path in self.rec.spikes else None

    def add(self, name: str, t: int, spikes: torch.Tensor, membrane: Optional[torch.Tensor] = None) -> None:
        """Step t of LIF node ``name``: its spikes [B, *shape] (bool) and, if the target has it, its
        pre-reset membrane (widens the near-threshold test, as in either run it decides a spike)."""
        path = self.path_of(name)
        if path is None:
            return
        full_a, b = _shape(self.rec.spikes, path), spikes
        # the same shape, or the dense 1-D form of the same layer (row-major flatten)
        if not (0 <= t < self.T and b.dim() >= 1 and b.shape[0] == full_a[1]
                and b[0].numel() == prod(full_a[2:])):
            raise ValueError(f"{name}: target spikes {(max(self.T, t + 1),) + tuple(b.shape)} vs PyTorch {full_a}")
        a = self.rec.spike_step(path, t).reshape(b.shape)
        b = b if b.dtype == torch.bool else b != 0
        c = self.layers.get(name)
        if c is None:
            zeros = lambda *shape, dtype=torch.int64: torch.zeros(*shape, dtype=dtype)  # noqa: E731
            c = self.layers[name] = _LayerCounts(path, (self.T,) + tuple(b.shape), zeros(self.T, self.B),
                                                 zeros(self.T, self.B), zeros(self.T, dtype=torch.bool))
        if bool(c.seen[t]):
            raise ValueError(f"{name}: step {t} compared twice")
        c.seen[t] = True
        diff = a != b
        per_sample = diff.reshape(self.B, -1).sum(1)
        c.mismatches[t] = per_sample
        c.torch_spikes += int(a.sum())
        c.target_spikes += int(b.sum())
        if bool(per_sample.any()):
            near = torch.zeros_like(diff)
            th = float(np.asarray(self.graph.nodes[name].v_threshold).flat[0])
            if membrane is not None:
                near |= (membrane.reshape(b.shape) - th).abs() <= self.tie_tol
            if path in self.rec.membranes:
                near |= (self.rec.membranes[path][t].reshape(b.shape) - th).abs() <= self.tie_tol
            elif path in self.rec.near:
                if self.rec.thresholds.get(path, th) != th:
                    raise ValueError(f"{name}: graph v_threshold {th:g}, PyTorch {path} "
                                     f"{self.rec.thresholds[path]:g}: the near-threshold masks do not apply")
                near |= _step(self.rec.near, path, t).reshape(b.shape)
            c.ties[t] = (diff & near).reshape(self.B, -1).sum(1)

    def finish(self, output: torch.Tensor) -> Comparison:
        """The Comparison, from the counts and the target's output [T, B, K] (per-step logits)."""
        layers: List[LayerComparison] = []
        first = None
        counts = []  # (name, mismatches [T, B], ties [T, B]) in topological order, for the roots
        for name in sorted(self.layers, key=self.rank.__getitem__):
            c = self.layers[name]
            if not bool(c.seen.all()):
                missing = (~c.seen).nonzero().flatten().tolist()
                raise ValueError(f"{name}: the target gave no spikes for step(s) {missing} of {self.T}")
            numel = prod(c.shape)
            per_step = c.mismatches.sum(1)
            n_diff = int(per_step.sum())
            step = int(per_step.nonzero()[0]) if n_diff else None
            layers.append(LayerComparison(
                node=name, torch_module=c.path, shape=list(c.shape[2:]), compared=int(numel),
                identical_pct=100.0 * (1 - n_diff / numel), mismatches=n_diff,
                near_threshold_mismatches=int(c.ties.sum()), first_mismatch_step=step,
                torch_rate=c.torch_spikes / numel, target_rate=c.target_spikes / numel))
            counts.append((name, c.mismatches, c.ties))
            if n_diff and first is None:
                # only the first divergent step: later steps of the same layer also carry the
                # flipped neurons' different membrane state (propagation, not rounding)
                first = FirstDivergence(node=name, torch_module=c.path, step=step, mismatches=int(per_step[step]),
                                        near_threshold=int(c.ties[step].sum()), layer_mismatches_all_steps=n_diff)
        rec = self.rec
        ref, out = rec.logits, output.to(rec.logits.dtype)
        scale = float(ref.abs().max()) or 1.0
        pred_ref, pred_out = ref.mean(0).argmax(-1), out.mean(0).argmax(-1)
        roots = _roots(counts, int(ref.shape[1]))
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
            logits_max_abs_diff=float((ref - out).abs().max()),
            logits_max_rel_diff=float((ref - out).abs().max()) / scale,
            prediction_agreement=float(agree.float().mean()),
            predictions_torch=pred_ref.tolist(), predictions_target=pred_out.tolist(),
            min_layer_identical_pct=min((r.identical_pct for r in layers), default=100.0),
            total_mismatches=sum(r.mismatches for r in layers),
            total_near_threshold=sum(r.near_threshold_mismatches for r in layers),
            first_divergence=first, layers=layers)


def compare_run(graph: nir.NIRGraph, rec: TorchRecord, result, tie_tol: float = TIE_TOL,
                progress: Optional[Callable[[int], None]] = None) -> Comparison:
    """A finished run (RunResult: whole spike records) against the PyTorch record, one layer and
    step at a time (SpikeComparer); ``progress(1)`` per layer."""
    comparer = SpikeComparer(graph, rec, tie_tol)
    order, _ = topological_order(graph)
    for name in [n for n in order if n in result.spikes]:
        mem = result.membranes.get(name)
        path = comparer.path_of(name)
        if path is not None:
            a_shape, shape = _shape(rec.spikes, path), _shape(result.spikes, name)  # packed: a step at a time
            if shape[:2] != a_shape[:2]:
                raise ValueError(f"{name}: target spikes {shape} vs PyTorch {a_shape}")
            for t in range(shape[0]):
                comparer.add(name, t, _step(result.spikes, name, t), None if mem is None else mem[t])
        if progress:
            progress(1)
    return comparer.finish(result.output)


def _roots(counts, n_samples: int) -> List[RootDivergence]:
    """Per diverged sample, its root from per-layer counts [(name, mismatches [T, B], ties [T, B])]
    in topological order: the first (step, layer) in (step, topological order) with a mismatch."""
    if not counts:
        return []
    # any[l, t, b]: layer l has a mismatch at step t for sample b
    any_ = torch.stack([m > 0 for _, m, _ in counts])
    L, T, _ = any_.shape
    flat = any_.permute(2, 1, 0).reshape(n_samples, T * L)  # index t*L + l: step-major order
    roots = []
    for b in flat.any(1).nonzero().flatten().tolist():
        t, li = divmod(int(flat[b].nonzero()[0]), L)
        name, mism, ties = counts[li]
        roots.append(RootDivergence(sample=b, node=name, step=t, mismatches=int(mism[t, b]), ties=int(ties[t, b])))
    return roots


def sample_roots(compared, n_samples: int) -> List[RootDivergence]:
    """Per diverged sample, its root: the first (step, layer) in (step, topological order)
    with a mismatch, with how many of the mismatches there are near-threshold ties.
    ``compared``: [(name, diff, near)], whole masks [T, B, ...] in topological order."""
    return _roots([(name, diff.flatten(2).sum(2), (diff & near).flatten(2).sum(2)) for name, diff, near in compared],
                  n_samples)
