"""Accuracy of a model on a data set, in PyTorch or on a registered target, in this process or
shard by shard on a Ray cluster (analysis/evaluation.py, engines/ray_engine.py).

    >>> from resformer_deploy import api
    >>> model = api.load("examples/digits/digits_resformer.pt")
    >>> data, _ = api.open_data(api.DataArgs(data="digits"), model)
    >>> result = api.evaluate(model, data, api.EvaluateOptions(batch_size=64))
    >>> round(result.top1, 4), result.samples
    (0.9861, 359)
"""
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Tuple

from resformer_deploy.engines import ENGINES
from resformer_deploy.engines.shards import SHARD_BATCHES
from resformer_deploy.errors import DeployError, InternalError

MAX_DECODE_THREADS = 64  # in process: decoding threads at most (more workers: the Ray engine)
DECODE_THREADS = 2  # in process, by default
RETRIES = 2  # Ray engine: times a dead worker's shard is retried, by default


@dataclass(frozen=True)
class EvaluateOptions:
    """How to evaluate. ``target``: a registered target, or None for the PyTorch model itself; ``workers``: decoding threads in process, Ray workers on the Ray engine (None: the
    engine's default); ``address`` ... ``retries``: the Ray engine only."""
    target: Optional[str] = None
    limit: Optional[int] = None
    batch_size: int = 32
    dssa: str = "fused"
    calib_samples: int = 128
    workers: Optional[int] = None
    torch_precision: str = "auto"
    engine: str = ENGINES[0]
    address: Optional[str] = None
    shard_size: Optional[int] = None
    out_dir: Optional[str] = None
    resume: bool = False
    retries: Optional[int] = None
    lava_processes: str = "separate"  # targets.LAVA_PROCESSES: "merged" for lava-cpu's one-process run

    @property
    def on_ray(self) -> bool:
        return self.engine != ENGINES[0]

    def check(self) -> None:
        """Options of the other engine, or that do not fit together: one error, before any work."""
        from resformer_deploy.engines.shards import check_shard_size
        if self.lava_processes != "separate" and target_name(self.target) == target_name(None):
            raise DeployError(f"--lava-processes {self.lava_processes}: the PyTorch model runs no Lava process "
                              f"(give a Lava --target, e.g. lava-cpu)")
        if not self.on_ray:
            given = [name for name, v in (("--address", self.address), ("--shard-size", self.shard_size),
                                          ("--out-dir", self.out_dir), ("--resume", self.resume),
                                          ("--retries", self.retries is not None)) if v]
            if given:
                raise DeployError(f"{', '.join(given)}: only with --engine ray")
            if self.workers is not None and self.workers > MAX_DECODE_THREADS:
                raise DeployError(f"--workers {self.workers}: at most {MAX_DECODE_THREADS} decoding threads in "
                                  f"process (more workers: --engine ray)")
            return
        if self.workers == 0:
            raise DeployError("--workers 0: --engine ray needs at least one worker")
        if self.resume and not self.out_dir:
            raise DeployError("--resume: needs --out-dir (where the finished shards are)")
        if self.shard_size is not None:
            check_shard_size(self.shard_size, self.batch_size)


@dataclass(frozen=True)
class ClassAccuracy:
    """Top-1 accuracy of one class (None: no sample of it); ``wnid`` for ImageNet WordNet-ID folders."""
    index: int
    name: str
    samples: int
    correct: int
    accuracy: Optional[float]
    wnid: Optional[str] = None

    def to_json(self) -> dict:  # the WNID beside the class index (data/imagenet_classes.py per_class)
        head = {"class": self.index} if self.wnid is None else {"class": self.index, "wnid": self.wnid}
        return {**head, "name": self.name, "samples": self.samples, "correct": self.correct,
                "accuracy": self.accuracy}


@dataclass(frozen=True)
class Throughput:
    samples_per_second: Optional[float]
    wall_seconds: float
    data_wait_seconds: float
    loading_share: Optional[float]  # of the busy time spent waiting for data

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Prediction:
    """One sample's record (analysis.evaluation.PREDICTION_KEYS); ``torch_prediction``: the
    PyTorch model's class beside a target (None on the PyTorch model itself)."""
    index: int
    name: str
    label: int
    prediction: int
    top5: Tuple[int, ...]
    torch_prediction: Optional[int]

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "top5": list(self.top5)}


@dataclass(frozen=True)
class StageSeconds:
    """Wall time of each stage: export to NIR, the target's flow, the evaluation itself."""
    export: float
    prepare: float
    evaluate: float

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EvaluationResult:
    """What ``evaluate`` measured, as the JSON record ``evaluate --json-out`` writes (``to_json``,
    also ``record``): the fields in the record's key order (analysis.evaluation.RESULT_KEYS, then
    ``engine`` on Ray). Fractions in [0, 1]; ``torch_top1`` / ``agreement_with_torch``: the PyTorch
    model beside a target (None on the PyTorch model itself). Parts that other modules describe
    (the data, its preset, the calibration, the estimate, the target's run statistics, the Ray
    engine's figures) stay their JSON form (mappings)."""
    checkpoint: str
    variant: str
    target: str
    target_options: Mapping[str, Any]
    data: Mapping[str, Any]  # analysis.data_inputs.ModelData.to_json without its preprocessing
    preset: Mapping[str, Any]  # the preprocessor's to_json (data/preprocess.py)
    calibration: Optional[Mapping[str, Any]]  # fixed_point QuantNet.calibration (None: no quantized network)
    samples: int
    limit: Optional[int]
    batch_size: int
    skipped: Tuple[Tuple[str, str], ...]  # (sample, reason) left out by skip_bad
    top1: float
    top5: float
    top5_k: int
    per_class: Tuple[ClassAccuracy, ...]
    torch_top1: Optional[float]
    torch_precision: str
    agreement_with_torch: Optional[float]
    throughput: Throughput
    seconds: StageSeconds
    estimate: Mapping[str, Any]  # analysis.evaluation.EvaluationEstimate.to_json
    target_info: Mapping[str, Any]  # the target's merged run statistics
    predictions: Tuple[Prediction, ...]
    engine: Optional[Mapping[str, Any]] = None  # the Ray engine's shards, times and workers

    @classmethod
    def from_record(cls, rep: dict) -> "EvaluationResult":
        """The record analysis.evaluation.evaluation_record (or the Ray engine) made, typed."""
        names = [f.name for f in dataclasses.fields(cls)]
        if set(rep) - set(names) or set(names[:-1]) - set(rep):
            raise InternalError(f"evaluation record with keys {sorted(rep)}, not {names}")
        tp, sec = rep["throughput"], rep["seconds"]
        typed = dict(
            skipped=tuple((s["name"], s["reason"]) for s in rep["skipped"]),
            per_class=tuple(ClassAccuracy(c["class"], c["name"], c["samples"], c["correct"], c["accuracy"],
                                          c.get("wnid")) for c in rep["per_class"]),
            throughput=Throughput(tp["samples_per_second"], tp["wall_seconds"], tp["data_wait_seconds"],
                                  tp["loading_share"]),
            seconds=StageSeconds(sec["export"], sec["prepare"], sec["evaluate"]),
            predictions=tuple(Prediction(p["index"], p["name"], p["label"], p["prediction"], tuple(p["top5"]),
                                         p["torch_prediction"]) for p in rep["predictions"]))
        return cls(**{**rep, **typed})

    def to_json(self) -> dict:
        """The record, key for key and in order."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out.update(skipped=[{"name": n, "reason": why} for n, why in self.skipped],
                   per_class=[c.to_json() for c in self.per_class], throughput=self.throughput.to_json(),
                   seconds=self.seconds.to_json(), predictions=[p.to_json() for p in self.predictions])
        if self.engine is None:
            del out["engine"]
        return out

    @property
    def record(self) -> dict:
        return self.to_json()


def target_name(target: Optional[str]) -> str:
    """The evaluation's target name: ``target``, or the PyTorch model's (analysis.evaluation.TORCH)."""
    from resformer_deploy.analysis.evaluation import TORCH
    return TORCH if target is None else target


def target_quantizes(target: Optional[str]) -> bool:
    """``target`` runs a quantized network (its data then calibrates one); an unknown target is
    refused here, before any work."""
    from targets import get_target
    name = target_name(target)
    return name != target_name(None) and get_target(name).capabilities.needs_quantized_net


def evaluate(model, data, options: EvaluateOptions = EvaluateOptions(), *, calibration=None, checkpoint: str = "",
             say: Callable[[str], None] = lambda m: None, warn: Callable[[str], None] = lambda m: None,
             bar=None) -> EvaluationResult:
    """Evaluate ``model`` (a loaded checkpoint, ``api.load``) on ``data`` (``api.open_data``) with
    ``options``; ``calibration``: the fixed-point target's calibration data (None: the flow's
    choice). ``say`` / ``warn``: lines for the user; ``bar(total, label, unit)``: a progress
    context manager. ``checkpoint``: the file's path, recorded (the Ray workers reload it). Sized
    by api.sizing once exported, before any batch is read (refused when it does not fit)."""
    from resformer_deploy.api import sizing

    o = options
    o.check()
    target = target_name(o.target)
    if o.on_ray:
        from resformer_deploy.engines.ray_engine import evaluate_on_ray
        rep = evaluate_on_ray(model, data, target, checkpoint=checkpoint, limit=o.limit, batch_size=o.batch_size,
                              shard_size=o.shard_size or SHARD_BATCHES * o.batch_size, dssa=o.dssa,
                              calibration=calibration, calib_samples=o.calib_samples,
                              torch_precision=o.torch_precision, workers=o.workers, address=o.address,
                              out_dir=o.out_dir, resume=o.resume, retries=RETRIES if o.retries is None else o.retries,
                              say=say, warn=warn, bar=bar, sizing=sizing, lava_processes=o.lava_processes)
    else:
        from resformer_deploy.analysis.evaluation import evaluate as evaluate_in_process
        rep = evaluate_in_process(model, data, target, checkpoint=checkpoint, limit=o.limit,
                                  batch_size=o.batch_size, dssa=o.dssa, calibration=calibration,
                                  calib_samples=o.calib_samples,
                                  workers=DECODE_THREADS if o.workers is None else o.workers,
                                  torch_precision=o.torch_precision, say=say, bar=bar, sizing=sizing,
                                  lava_processes=o.lava_processes)
    return EvaluationResult.from_record(rep)
