"""Accuracy of a checkpoint on a data set, in PyTorch or on any registered target (``evaluate``).

The data set is streamed in batches in index order (resformer_deploy.data.loader.DataLoader), so
memory is bounded by the batch size, never by the data set: per sample only its prediction
record is kept. The graph is exported and the target's flow prepared once (a fixed-point target:
calibrated and quantized once, on calibration data that is never the evaluation data), then every
batch runs through the target. Scores are the output averaged over the T steps, as the official
evaluation does (SpikingResformer main.py: ``output.mean(0)``); top-k is the first k classes of a
stable descending sort (ties: the lower class index first, as ``argmax``), k = min(5, classes).
For a target other than PyTorch the PyTorch model runs every batch too and each prediction is
compared with PyTorch's (agreement): by default in float64 beside a float target (the precision in
which the two are equal, so agreement is exact), in float32 beside a fixed-point target (PyTorch as
deployed; fixed point differs from either anyway, and float64 would double the work).
"""
import dataclasses
import math
import time
from dataclasses import dataclass
from itertools import chain
from typing import Callable, Optional

import torch

from resformer_deploy.errors import DeployError
from targets.base import PYTORCH_MODEL
from resformer_deploy.util.memory_budget import MemoryBudgetError, budget_bytes, duration, size

TOP_K = 5
TORCH = PYTORCH_MODEL  # the PyTorch model itself: a role under a reserved name, no registered target
RESULT_KEYS = ("checkpoint", "variant", "target", "target_options", "data", "preset", "calibration", "samples",
               "limit", "batch_size", "skipped", "top1", "top5", "top5_k", "per_class", "torch_top1",
               "torch_precision", "agreement_with_torch", "throughput", "seconds", "estimate", "target_info",
               "predictions")
PREDICTION_KEYS = ("index", "name", "label", "prediction", "top5", "torch_prediction")


def top_classes(scores: torch.Tensor, k: int) -> torch.Tensor:
    """[B, k] class indices by descending score; equal scores keep class order (stable sort)."""
    return torch.sort(scores, dim=-1, descending=True, stable=True).indices[:, :k]


class Tally:
    """Running counts of an evaluation: per-class counters and one small record per sample."""

    def __init__(self, classes, k: int):
        self.classes, self.k = list(classes), int(k)
        K = len(self.classes)
        self.n = self.top1 = self.topk = self.agree = self.torch_top1 = 0
        self.per_class_n, self.per_class_correct = [0] * K, [0] * K
        self.predictions = []

    def add(self, refs, y: torch.Tensor, scores: torch.Tensor, torch_scores: Optional[torch.Tensor] = None) -> None:
        top = top_classes(scores, self.k)
        pred = top[:, 0]
        torch_pred = top_classes(torch_scores, 1)[:, 0] if torch_scores is not None else None
        for i, ref in enumerate(refs):
            self.add_record({"index": int(ref.index), "name": ref.name, "label": int(y[i]),
                             "prediction": int(pred[i]), "top5": [int(c) for c in top[i]],
                             "torch_prediction": None if torch_pred is None else int(torch_pred[i])})

    def add_record(self, rec: dict) -> None:
        """One sample's record (PREDICTION_KEYS) into the counts: the counts are a function of the
        records alone, so a tally rebuilt from stored records equals the one that made them."""
        label, p, tp = rec["label"], rec["prediction"], rec["torch_prediction"]
        self.n += 1
        self.top1 += p == label
        self.topk += label in rec["top5"]
        self.per_class_n[label] += 1
        self.per_class_correct[label] += p == label
        if tp is not None:
            self.agree += tp == p
            self.torch_top1 += tp == label
        self.predictions.append(rec)

    def per_class(self) -> list:
        return [{"class": c, "name": name, "samples": n, "correct": k, "accuracy": k / n if n else None}
                for c, (name, n, k) in enumerate(zip(self.classes, self.per_class_n, self.per_class_correct))]

    def fraction(self, count: int) -> float:
        return count / self.n if self.n else float("nan")


@dataclass(frozen=True)
class EvaluationEstimate:
    """Cost of an evaluation before it runs: per batch (what memory holds at once) and in total."""
    target: str
    samples: int
    batch_size: int
    graph_bytes: int  # the exported graph's weights
    data_bytes: int  # one batch plus the loader's prefetched samples
    torch_bytes: int  # PyTorch forward of one batch
    torch_seconds: float  # per batch
    target_estimate: object  # targets.base.Estimate of one batch, or None (torch; no cost model)
    T: int = 0  # time steps, named when even one sample cannot fit (a smaller batch would not help)

    @property
    def batches(self) -> int:
        return math.ceil(self.samples / self.batch_size)

    @property
    def peak_bytes(self) -> int:
        run = self.target_estimate.peak_bytes if self.target_estimate else 0
        return self.graph_bytes + self.data_bytes + max(self.torch_bytes, run)

    @property
    def seconds(self) -> float:
        run = self.target_estimate.seconds if self.target_estimate else 0.0
        return self.batches * (self.torch_seconds + run)

    def _figures(self) -> str:
        te = self.target_estimate
        return (f"graph {size(self.graph_bytes)}, data {size(self.data_bytes)}, PyTorch batch {size(self.torch_bytes)}"
                + (f", {self.target} batch {size(te.peak_bytes)}: {te.basis}" if te else
                   "" if self.target == TORCH else f"; target '{self.target}' has no cost model: not included"))

    def line(self, rss_now: int) -> str:
        return (f"estimate: ~{duration(self.seconds)} for {self.samples:,} samples in {self.batches:,} batch(es) of "
                f"<= {self.batch_size}, peak ~{size(rss_now + self.peak_bytes)} ({size(rss_now)} now + "
                f"{self._figures()})")

    def check(self) -> None:
        budget = budget_bytes()
        if self.peak_bytes <= budget:
            return
        # the batch-dependent part shrinks with the batch; if one sample does not fit either, the
        # batch size is not the cause (e.g. T = 1e9 from a checkpoint's stored config)
        one = self.graph_bytes + (self.peak_bytes - self.graph_bytes) / max(1, self.batch_size)
        if self.graph_bytes > budget:
            advice = "the model's weights alone do not fit"
        elif one > budget and self.T:
            advice = f"even one sample needs about {size(one)} at T={self.T:,} time steps; use a smaller --T"
        else:
            advice = "use a smaller --batch-size"
        raise MemoryBudgetError(f"evaluate on target '{self.target}': batches of {self.batch_size} samples need "
                                f"about {size(self.peak_bytes)} > memory budget {size(budget)} "
                                f"({self._figures()}); {advice}")

    def to_json(self) -> dict:
        return {"seconds": self.seconds, "peak_bytes": self.peak_bytes, "batches": self.batches,
                "basis": self._figures()}


def torch_dtype(tgt, precision: str = "auto") -> torch.dtype:
    """The PyTorch model's precision in an evaluation on ``tgt`` (None: PyTorch alone, float32)."""
    if precision == "auto":
        precision = "float32" if tgt is None or tgt.capabilities.arithmetic == "fixed" else "float64"
    return {"float32": torch.float32, "float64": torch.float64}[precision]


def estimate_evaluation(graph, tgt, n: int, batch_size: int, T: int, sample_bytes: int, prefetch: int,
                        prepared=None, torch_runs: bool = True, **options) -> EvaluationEstimate:
    """The evaluation's cost from the graph (targets/reference.py graph_costs, PyTorch's forward
    factor of analysis/equivalence.py) and the target's own estimate of one batch. Before the flow
    a fixed-point target is sized from the plan alone (its quantized network has the plan's sizes).
    ``torch_runs`` False: the PyTorch scores are given (evaluate's ``torch_scores``), no forward."""
    from exporters.interpreter_costs import MAC_PER_S, SECONDS_PER_NODE_STEP, graph_costs
    from resformer_deploy.analysis.equivalence import TORCH_FORWARD_FACTOR, TORCH_SECONDS_PER_REFERENCE, estimate_run
    from resformer_deploy.flows import lava_plan
    from resformer_deploy.flows.artifacts import Prepared

    te, B = None, min(batch_size, n)
    if tgt is not None:
        if prepared is None and tgt.capabilities.needs_quantized_net:
            prepared = Prepared.sizing(lava_plan(graph, options.get("dssa", "fused")))
        te = estimate_run(tgt, graph, B, T, prepared=prepared, **options)
    c = graph_costs(graph)
    e = 4 if tgt is None else 8  # PyTorch float32 alone; float64 beside a target
    largest = max(c.values.values())
    forward = 1 if torch_runs or tgt is None else 0
    return EvaluationEstimate(
        target=TORCH if tgt is None else tgt.label, samples=n, batch_size=B, graph_bytes=int(c.weights * e),
        data_bytes=int(min(B + prefetch, n) * sample_bytes),  # never more samples than are read
        torch_bytes=forward * int(TORCH_FORWARD_FACTOR * largest * T * B * e),
        torch_seconds=forward * TORCH_SECONDS_PER_REFERENCE * T * (B * c.macs / MAC_PER_S[e]
                                                                   + len(c.values) * SECONDS_PER_NODE_STEP),
        target_estimate=te, T=int(T))


def _merge_info(total: dict, info: dict) -> None:
    """A batch's run info into the evaluation's: saturation events and steps summed, the rest as run."""
    for k, v in info.items():
        if k == "products":
            continue
        if k == "saturation":
            for node, kinds in v.items():
                d = total.setdefault("saturation", {}).setdefault(node, {})
                for kind, count in kinds.items():
                    d[kind] = d.get(kind, 0) + int(count)
        elif k == "steps":
            total[k] = total.get(k, 0) + v
        else:
            total[k] = v


@dataclass
class EvaluationSetup:
    """What every batch of an evaluation runs with, built once (export, the target's flow, a
    fixed-point target's quantization): the in-process run uses it as it is, a shard engine
    (resformer_deploy/engines) builds it on the driver and ships it once to each worker."""
    target: str  # "torch" or a registered target's name
    graph: object  # the exported NIR graph (None for torch)
    prepared: object  # the flow's artifacts (None for torch)
    opts: dict  # the target's options (dssa)
    classes: list
    k: int
    batch_size: int
    T: int
    estimate: object  # EvaluationEstimate
    torch_precision: str = "float32"  # of the PyTorch model (torch_dtype)
    t_export: float = 0.0
    t_prepare: float = 0.0

    @property
    def compared(self) -> bool:
        """Whether each prediction is compared with PyTorch's (every target but torch itself)."""
        return self.target != TORCH

    @property
    def dtype(self) -> torch.dtype:
        return getattr(torch, self.torch_precision)

    @property
    def quantized_net(self):
        return self.prepared.quantized_net if self.prepared is not None else None

    def shippable(self) -> "EvaluationSetup":
        """This setup without the flow's inputs that running needs no more (calibration inputs, the
        operand samples of the synaptic lowering's verification): what is sent to workers."""
        if self.prepared is None:
            return self
        from resformer_deploy.flows.artifacts import Prepared
        art = Prepared({k: v for k, v in self.prepared.items() if k not in FLOW_INPUTS_ONLY})
        art.log = list(getattr(self.prepared, "log", []))
        return dataclasses.replace(self, prepared=art)


FLOW_INPUTS_ONLY = ("calibration_inputs", "operand_samples")


@dataclass
class RangeResult:
    """What running some batches gave: per-sample records (index order), skipped samples, the
    target's run info merged over the batches, and time (wall, of which waiting for data)."""
    predictions: list
    skipped: list  # [name, reason]
    info: dict
    seconds: float
    load_seconds: float


def evaluation_estimate(graph, data, target: str, *, T: int, limit: Optional[int] = None, batch_size: int = 32,
                        dssa: str = "fused", workers: int = 2, torch_runs: bool = True,
                        lava_processes: str = "separate") -> EvaluationEstimate:
    """The estimate prepare_evaluation makes, for a job that evaluates after other work (demo's
    whole split) and sizes it before that work starts. ``graph``: the model exported in float64,
    as prepare_evaluation exports it beside a target."""
    from targets import get_target
    tgt = get_target(target)
    opts = tgt.run_options(dssa, lava_processes)
    loader = data.loader(batch_size, limit, workers)
    return estimate_evaluation(graph, tgt, len(loader), batch_size, T, data.sample_bytes, loader.prefetch,
                               torch_runs=torch_runs, **opts, record_spikes=False, dtype=torch.float64)


def prepare_evaluation(ck, data, target: str = TORCH, *, limit: Optional[int] = None, batch_size: int = 32,
                       dssa: str = "fused", calibration=None, calib_samples: int = 128, workers: int = 2,
                       torch_precision: str = "auto", say: Callable[[str], None] = lambda m: None,
                       torch_runs: bool = True, artifacts: Optional[dict] = None, sizing=None,
                       lava_processes: str = "separate"):
    """Export, estimate and prepare the target once: (setup, loader, first batch, iterator over the
    remaining batches, perf_counter when reading started). The flow is prepared with the first
    batch (a synaptic DSSA lowering is verified on it), so every engine prepares from the same
    samples. ``torch_precision``: of the PyTorch model (``torch_dtype``); ``torch_runs`` False:
    its scores are given (not estimated). ``artifacts``: the flow's artifacts made already (e.g. the
    drift ladder's plan and quantized network): its passes that make them do not run again.
    ``sizing``: the job's sizing step (api/sizing.py ``size_estimate``: the estimate said, refused
    before any batch is read when it does not fit); None: estimated (for the record), not sized.
    ``lava_processes``: targets.LAVA_PROCESSES (Target.run_options)."""
    from exporters.torch_to_nir import export_model
    from targets import get_target
    from resformer_deploy.flows import flow_options, prepare

    cfg, T = ck.config, int(ck.config.T)
    tgt = None if target == TORCH else get_target(target)
    if calibration is not None and (tgt is None or not tgt.capabilities.needs_quantized_net):
        raise DeployError(f"--calib-data: target '{target}' runs floating point; nothing is calibrated")
    opts = tgt.run_options(dssa, lava_processes) if tgt is not None else {}
    run_kw = dict(opts, record_spikes=False, dtype=torch.float64)
    loader = data.loader(batch_size, limit, workers)
    n = len(loader)
    t0 = time.perf_counter()
    # float64 beside a target (the equivalence proof's precision); PyTorch alone runs as deployed
    graph = export_model(ck.model, "float32" if tgt is None else "float64")
    t_export = time.perf_counter() - t0
    # before calibration and any batch: a fixed-point target is sized from its plan
    est = estimate_evaluation(graph, tgt, n, batch_size, T, data.sample_bytes, loader.prefetch,
                              torch_runs=torch_runs, **run_kw)
    if sizing is not None:
        sizing.size_estimate(est, say)
    if tgt is None:
        graph = None  # exported for the estimate only
    t_start = time.perf_counter()
    batches = iter(loader)
    first = next(batches, None)
    if first is None:
        raise DeployError(f"--data {data.source.describe()}: none of the {n} samples could be read "
                          f"({len(loader.bad)} skipped, e.g. {loader.bad[0][0] if loader.bad else '?'})")
    prepared, t_prepare = None, 0.0
    if tgt is not None:
        tp = time.perf_counter()
        # once for the whole evaluation; a synaptic DSSA lowering is verified on the first batch
        prepared = prepare(tgt, graph, samples=first.x.double(), T=T, calibration=calibration, artifacts=artifacts,
                           **flow_options(tgt, {**opts, "calib_samples": calib_samples}))
        t_prepare = time.perf_counter() - tp
        qn = prepared.quantized_net
        if qn is not None:
            say(f"quantized for Loihi 2 on {qn.calibration['source']}")
    classes = (data.source.classes if len(data.source.classes) == cfg.num_classes else
               [str(c) for c in range(cfg.num_classes)])
    setup = EvaluationSetup(target=target, graph=graph, prepared=prepared, opts=opts, classes=list(classes),
                            k=min(TOP_K, cfg.num_classes), batch_size=batch_size, T=T, estimate=est,
                            torch_precision=str(torch_dtype(tgt, torch_precision)).replace("torch.", ""),
                            t_export=t_export, t_prepare=t_prepare)
    return setup, loader, first, batches, t_start


def run_batches(setup: EvaluationSetup, model, loader, batches, update: Callable[[int], None] = lambda n: None,
                t_start: Optional[float] = None, torch_scores: Optional[torch.Tensor] = None) -> RangeResult:
    """Every batch of ``batches`` (from ``loader``) through the PyTorch model and the target;
    ``update(samples)`` after each batch (skipped ones included). Wall time from ``t_start``.
    ``torch_scores``: the PyTorch model's mean-over-T scores [N, K] of these data by sample index,
    already computed at ``setup.torch_precision`` (the model is then not run again)."""
    from targets import RunRequest, get_target
    from resformer_deploy.model.precision import model_in_dtype

    t_start = time.perf_counter() if t_start is None else t_start
    tgt = get_target(setup.target) if setup.compared else None
    run_kw = dict(setup.opts, record_spikes=False, dtype=torch.float64)
    tally, info = Tally(setup.classes, setup.k), {}
    with model_in_dtype(model, setup.dtype) as m, torch.no_grad():
        m.eval()
        seen_bad = 0
        for batch in batches:
            scores = (m(batch.x.to(setup.dtype)).mean(0) if torch_scores is None else
                      torch_scores[[int(r.index) for r in batch.refs]])
            if tgt is None:
                tally.add(batch.refs, batch.y, scores)
            else:
                res = tgt.run(RunRequest.of(setup.graph, batch.x.double(), setup.T, prepared=setup.prepared,
                                            **run_kw))
                _merge_info(info, res.stats.to_json())
                tally.add(batch.refs, batch.y, res.output.mean(0), scores)
            update(len(batch.y) + len(loader.bad) - seen_bad)
            seen_bad = len(loader.bad)
    return RangeResult(tally.predictions, [[name, why] for name, why in loader.bad], info,
                       time.perf_counter() - t_start, loader.load_seconds)


def evaluate_range(setup: EvaluationSetup, model, data, start: int, stop: int, workers: int = 1,
                   update: Callable[[int], None] = lambda n: None) -> RangeResult:
    """Samples ``start`` .. ``stop - 1`` of ``data`` with a prepared setup (one shard): batches of
    ``setup.batch_size`` from ``start``, so a shard that starts at a multiple of the batch size
    runs exactly the batches the in-process evaluation runs there."""
    from resformer_deploy.data.loader import DataLoader

    loader = DataLoader(data.source, data.preprocessor, batch_size=setup.batch_size, limit=stop - start,
                        start=start, skip_bad=data.skip_bad, workers=workers)
    return run_batches(setup, model, loader, iter(loader), update)


def merge_ranges(setup: EvaluationSetup, parts) -> tuple:
    """(tally, skipped, info) of results in index order, rebuilt from their per-sample records
    alone: equal to one run over the whole range, however it was split."""
    tally, skipped, info = Tally(setup.classes, setup.k), [], {}
    for part in parts:
        for rec in part.predictions:
            tally.add_record(rec)
        skipped += part.skipped
        _merge_info(info, part.info)
    return tally, skipped, info


def evaluation_record(setup: EvaluationSetup, ck, data, tally: Tally, skipped: list, info: dict, *,
                      checkpoint: str, limit: Optional[int], wall: float, load_seconds: float,
                      busy_seconds: Optional[float] = None) -> dict:
    """The JSON record (keys RESULT_KEYS). ``busy_seconds``: the time the data waits are a share of
    (default ``wall``; a sharded run: the workers' summed shard time)."""
    qn, compared = setup.quantized_net, setup.compared
    busy = wall if busy_seconds is None else busy_seconds
    return {
        "checkpoint": str(checkpoint), "variant": ck.variant, "target": setup.target, "target_options": setup.opts,
        "data": {k_: v for k_, v in data.to_json().items() if k_ != "preprocessing"},
        "preset": data.preprocessor.to_json(), "calibration": None if qn is None else qn.calibration,
        "samples": tally.n, "limit": limit, "batch_size": setup.batch_size,
        "skipped": [{"name": name, "reason": why} for name, why in skipped],
        "top1": tally.fraction(tally.top1), "top5": tally.fraction(tally.topk), "top5_k": setup.k,
        "per_class": _per_class(tally, data.source),
        "torch_top1": tally.fraction(tally.torch_top1) if compared else None,
        "torch_precision": setup.torch_precision,
        "agreement_with_torch": tally.fraction(tally.agree) if compared else None,
        "throughput": {"samples_per_second": tally.n / wall if wall > 0 else None, "wall_seconds": wall,
                       "data_wait_seconds": load_seconds,
                       "loading_share": load_seconds / busy if busy > 0 else None},
        "seconds": {"export": setup.t_export, "prepare": setup.t_prepare, "evaluate": wall},
        "estimate": setup.estimate.to_json(), "target_info": info, "predictions": tally.predictions,
    }


def _per_class(tally: Tally, source) -> list:
    """Per-class accuracy, under the WNID and the class name for ImageNet WordNet-ID folders."""
    mapping = getattr(source, "class_mapping", None)
    return tally.per_class() if mapping is None else mapping.per_class(tally.per_class())


def evaluate(ck, data, target: str = TORCH, *, checkpoint: str = "", limit: Optional[int] = None,
             batch_size: int = 32, dssa: str = "fused", calibration=None, calib_samples: int = 128,
             workers: int = 2, torch_precision: str = "auto", say: Callable[[str], None] = lambda m: None,
             bar=None, torch_scores: Optional[torch.Tensor] = None, artifacts: Optional[dict] = None,
             sizing=None, lava_processes: str = "separate") -> dict:
    """Evaluate ``ck`` (a loaded checkpoint) on ``data`` (analysis.data_inputs.ModelData) on
    ``target`` ("torch" or a registered target), in this process; returns the JSON record (keys
    RESULT_KEYS). ``calibration``: flows.fixed_point.CalibrationData for a fixed-point target (None:
    the flow's choice). ``say``: lines for the user (estimate, calibration); ``bar(total, label,
    unit)``: a progress context manager (util/progress.Progress). ``torch_precision``: of the
    PyTorch model (``torch_dtype``). ``torch_scores``: the PyTorch scores of every sample of
    ``data`` [N, K], at that precision, computed already (run_batches). ``artifacts``: the flow's
    artifacts made already; ``sizing``: the job's sizing step (prepare_evaluation)."""
    from resformer_deploy.analysis.equivalence import _NoBar

    if torch_scores is not None and tuple(torch_scores.shape) != (len(data.source), ck.config.num_classes):
        raise DeployError(f"torch_scores: shape {tuple(torch_scores.shape)}, expected "
                          f"{(len(data.source), ck.config.num_classes)} (samples of {data.source.describe()}, classes)")
    bar = bar or _NoBar
    setup, loader, first, rest, t_start = prepare_evaluation(
        ck, data, target, limit=limit, batch_size=batch_size, dssa=dssa, calibration=calibration,
        calib_samples=calib_samples, workers=workers, torch_precision=torch_precision, say=say,
        torch_runs=torch_scores is None, artifacts=artifacts, sizing=sizing, lava_processes=lava_processes)
    with bar(len(loader), f"evaluate ({target})", "samples") as b:
        part = run_batches(setup, ck.model, loader, chain([first], rest), b.update, t_start, torch_scores)
    wall = part.seconds - setup.t_prepare
    tally, skipped, info = merge_ranges(setup, [part])
    return evaluation_record(setup, ck, data, tally, skipped, info, checkpoint=checkpoint, limit=limit, wall=wall,
                             load_seconds=part.load_seconds)
