"""The whole pipeline on a shipped trained model (or a checkpoint trained the same way): PyTorch
accuracy on its held-out split, NIR export, float Lava against PyTorch (each DSSA lowering), the
fixed-point drift ladder, core plan, energy and report, and the whole split streamed through the
fixed-point target. Targets are chosen by capability (analysis.drift.choose_rungs).

The shipped models and the held-out split each runs on: api/demo_split.py.

    >>> from resformer_deploy import api
    >>> result = api.demo(api.DemoOptions(lava_samples=0, fixed_point=False, out_dir="demo"))
    >>> result.torch.samples, round(result.torch.accuracy, 4)
    (359, 0.9861)
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union, cast

from resformer_deploy.api.demo_split import DEMO_MODELS, DemoSplit, demo_split
from resformer_deploy.api.options import Messages
from resformer_deploy.errors import DeployError

if TYPE_CHECKING:  # imports torch: only for the type checker
    from resformer_deploy.analysis.drift import DriftLadder
    from resformer_deploy.reporting.deploy import CoreMapping


@dataclass(frozen=True)
class DemoOptions:
    """``model``: one of DEMO_MODELS; ``checkpoint``: a trained checkpoint instead of its shipped
    one. None: the model's default (``batch_size``, ``lava_samples``: float Lava samples, 0: none;
    ``dssa``: "fused", "synaptic" or "both"; ``eval_samples``: the ladder's fixed-point rung, 0:
    the whole split; ``data_dir``: OUT_DIR/data). ``whole_split``: when the ladder runs fewer
    held-out samples, stream the whole split through the fixed-point target."""
    model: str = "digits"
    checkpoint: Optional[str] = None
    batch_size: Optional[int] = None
    lava_samples: Optional[int] = None
    dssa: Optional[str] = None
    eval_samples: Optional[int] = None
    calib_samples: int = 128
    out_dir: str = "build/demo"
    data_dir: Optional[str] = None
    fixed_point: bool = True
    whole_split: bool = True

    def resolved(self) -> "DemoRun":
        """Every None filled in from the model's defaults."""
        if self.model not in DEMO_MODELS:
            raise DeployError(f"demo model '{self.model}' (one of {', '.join(DEMO_MODELS)})")
        spec = DEMO_MODELS[self.model]
        return DemoRun(self.model, self.checkpoint or str(spec.checkpoint), self.batch_size or spec.batch_size,
                       spec.lava_samples if self.lava_samples is None else self.lava_samples, self.dssa or spec.dssa,
                       spec.ladder_samples if self.eval_samples is None else self.eval_samples, self.calib_samples,
                       self.out_dir, self.data_dir or str(Path(self.out_dir) / "data"), self.fixed_point,
                       self.whole_split)


@dataclass(frozen=True)
class DemoRun:
    """DemoOptions with every default filled in (DemoOptions.resolved)."""
    model: str
    checkpoint: str
    batch_size: int
    lava_samples: int
    dssa: str
    eval_samples: int
    calib_samples: int
    out_dir: str
    data_dir: str
    fixed_point: bool
    whole_split: bool

    @property
    def nir_path(self) -> Path:
        return Path(self.out_dir) / f"{Path(self.checkpoint).stem}.nir"

    def resolved(self) -> "DemoRun":
        return self


@dataclass(frozen=True)
class DemoSetup:
    """The model and held-out split the demo runs (shown before any work)."""
    checkpoint: str
    variant: str
    config: object  # model.config.ResformerConfig
    data: str


@dataclass(frozen=True)
class ClassResult:
    index: int
    samples: int
    accuracy: float  # correct / samples, exact; nan without samples


@dataclass(frozen=True)
class TorchAccuracy:
    """PyTorch on the whole held-out split (float32): accuracy, the one recorded at training (None:
    not recorded), per class, and every prediction."""
    samples: int
    accuracy: float
    recorded_accuracy: Optional[float]
    per_class: Tuple[ClassResult, ...]
    predictions: List[int]


@dataclass(frozen=True)
class LavaStart:
    nir_path: Path
    nir_bytes: int
    samples: int
    target: str
    lowerings: Tuple[str, ...]


@dataclass(frozen=True)
class LavaRun:
    """Float Lava against PyTorch on the same first held-out samples, one DSSA lowering;
    ``report``: analysis.equivalence's verification record (layers, divergences)."""
    dssa: str
    samples: int
    accuracy: float
    torch_accuracy: float
    prediction_agreement: float
    min_layer_identical_pct: float
    processes: object
    latency: object
    seconds_per_sample: float
    report: Any = field(repr=False)  # analysis.equivalence.EquivalenceReport


@dataclass(frozen=True)
class FixedPointStart:
    calibration: str
    samples: int  # on the fixed-point-check target
    check_target: str
    ladder_samples: int  # on the fixed-point target
    whole: bool  # the ladder runs the whole split


@dataclass(frozen=True)
class FixedPointResult:
    """The deployment report's numbers: the drift ladder (analysis.drift.DriftLadder), the Loihi 2
    core plan with its design-rule check (``mapping``), energy per image, where the report went."""
    ladder: "DriftLadder"
    mapping: "CoreMapping"
    energy: dict  # PyTorch's and fixed point's analysis.operations.EnergyReport (EnergySection's names)
    report_paths: Tuple[Path, ...]


@dataclass(frozen=True)
class WholeSplitStart:
    samples: int
    target: str


@dataclass(frozen=True)
class WholeSplit:
    """The whole held-out split through the fixed-point target beside PyTorch float32."""
    target: str
    samples: int
    top1: float
    torch_top1: float
    agreement_with_torch: float
    samples_per_second: Optional[float]
    record: dict = field(repr=False)  # evaluation's record, without the per-sample predictions


@dataclass(frozen=True)
class DemoResult:
    setup: DemoSetup
    torch: TorchAccuracy
    lava: Tuple[LavaRun, ...]
    fixed_point: Optional[FixedPointResult]
    whole_split: Optional[WholeSplit]
    torch_version: str

    def to_json(self) -> dict:
        """The record `demo --json-out` writes."""
        t = self.torch
        out: Dict[str, Any] = {"checkpoint": self.setup.checkpoint, "variant": self.setup.variant, "data": self.setup.data,
               "samples": t.samples, "accuracy": t.accuracy, "recorded_accuracy": t.recorded_accuracy,
               "per_class": [{"class": c.index, "samples": c.samples, "accuracy": c.accuracy} for c in t.per_class],
               "predictions": t.predictions, "torch_version": self.torch_version}
        if self.lava:
            out["lava"] = [r.report for r in self.lava]
        if self.fixed_point is not None:
            fp = self.fixed_point
            out["fixed_point"] = {"ladder": fp.ladder, "mapping": fp.mapping, "energy": fp.energy}
            if self.whole_split is not None:
                out["fixed_point"]["whole_split"] = self.whole_split.record
        return out


def rung_targets(lava: bool) -> dict:
    """The registered target of each drift-ladder role (chosen by capability)."""
    from resformer_deploy.analysis.drift import choose_rungs
    return {c.role: c.target for c in reversed(choose_rungs(subset=lava))}  # the first of a role wins


def demo(options: Union[DemoOptions, DemoRun] = DemoOptions(), messages: Messages = Messages(),
         show: Callable[[object], None] = lambda stage: None) -> DemoResult:
    """Run the demo; each stage's typed result is handed to ``show`` as soon as it is known
    (DemoSetup, TorchAccuracy, LavaStart, each verification record, LavaRun..., FixedPointStart,
    FixedPointResult, WholeSplitStart, WholeSplit); the preflight's lines and the phases go to
    ``messages.note``, data and evaluation lines to ``messages.say``. The whole run is sized
    before any work (refused with the figures when it does not fit)."""
    import torch
    from resformer_deploy.model.checkpoint import load_checkpoint

    o = options.resolved()
    ck = load_checkpoint(o.checkpoint, unsafe_option=None)  # demo has no --unsafe-load: weights only

    def check(n_test, what):
        bad = [f"{opt} {n} exceeds the {n_test} held-out samples of {what}"
               for opt, n in (("--lava-samples", o.lava_samples), ("--eval-samples", o.eval_samples)) if n > n_test]
        if bad:
            raise DeployError("; ".join(bad))

    split = demo_split(ck, o.checkpoint, o.data_dir, o.calib_samples, check=check, say=messages.say)
    n_test = len(split.y)
    check(n_test, split.source)
    show(DemoSetup(o.checkpoint, ck.variant, ck.config, split.source))
    roles = rung_targets(o.lava_samples > 0)
    runs_whole_split = o.fixed_point and o.whole_split and split.data is not None and 0 < o.eval_samples < n_test
    if o.fixed_point:  # every later stage sized now, not after minutes of PyTorch and Lava
        _preflight(ck, split, min(o.lava_samples, n_test), o.eval_samples or n_test, o.batch_size,
                   runs_whole_split, roles, lambda m: messages.note(f"  preflight: {m}"))
    logits, acc = _torch_accuracy(ck, split, o.batch_size, ck.evaluation.test_accuracy if ck.evaluation else None,
                                  messages.bars)
    show(acc)
    n = min(o.lava_samples, n_test)
    lava = _lava(ck, split, o, n, acc, roles, messages, show) if o.lava_samples > 0 else ()
    fixed = whole = None
    if o.fixed_point:
        quantized: List[Any] = []  # the ladder's quantized network: the whole split runs it (same calibration, same network)
        fixed = _fixed_point(ck, o, split, n, roles, messages, show, quantized.append)
        if runs_whole_split:
            show(WholeSplitStart(len(split.y), _fixed_role(roles)))
            whole = whole_split(ck, o.checkpoint, split, o.calib_samples, o.batch_size, logits, quantized[0],
                                target=_fixed_role(roles), messages=messages)
            show(whole)
    return DemoResult(DemoSetup(o.checkpoint, ck.variant, ck.config, split.source), acc, tuple(lava), fixed, whole,
                      torch.__version__)


def _fixed_role(roles: dict) -> str:
    from resformer_deploy.analysis.drift import FIXED_POINT
    return roles[FIXED_POINT]


def _torch_accuracy(ck, split: DemoSplit, batch_size: int, recorded, bars):
    from resformer_deploy.training.loop import predict  # looked up now (tests replace predict)
    n_test = len(split.y)
    with bars(n_test, "PyTorch evaluation") as bar:
        logits = predict(ck.model, split.x, batch_size=batch_size, progress=bar.update)
    pred = logits.argmax(-1)
    right = pred == split.y
    per_class = []
    for k in range(ck.config.num_classes):  # exact fractions (counted), not rounded for printing
        n, correct = int((split.y == k).sum()), int(right[split.y == k].sum())
        per_class.append(ClassResult(k, n, correct / n if n else float("nan")))
    return logits, TorchAccuracy(len(pred), _accuracy(pred, split.y), recorded, tuple(per_class), pred.tolist())


def _accuracy(pred, y) -> float:
    """training.loop.accuracy of predictions with labels (never None: the demo's splits have labels)."""
    from resformer_deploy.training.loop import accuracy
    return cast(float, accuracy(pred, y))


def _preflight(ck, split: DemoSplit, lava_samples: int, eval_samples: int, batch_size: int, whole_split: bool,
               roles: dict, say) -> None:
    """The drift ladder's rungs and the whole split's streamed evaluation sized from the plan and
    refused, with the figures, before any work (api.sizing.size_rungs, size_evaluation)."""
    import torch
    from exporters.torch_to_nir import export_model
    from resformer_deploy.analysis.drift import choose_rungs
    from resformer_deploy.api import sizing
    from resformer_deploy.model.precision import model_in_dtype

    with model_in_dtype(ck.model, torch.float64) as m:
        graph = export_model(m.eval(), "float64")
    sizing.size_rungs(choose_rungs(subset=lava_samples > 0), graph, eval_samples, lava_samples, ck.config.T,
                      "fused", 8, say)
    if whole_split:
        sizing.size_evaluation(graph, split.data, _fixed_role(roles), T=ck.config.T, batch_size=batch_size,
                               torch_runs=False, say=lambda m: say(f"whole split: {m}"))


def _lava(ck, split: DemoSplit, o: DemoRun, n: int, acc: TorchAccuracy, roles: dict, messages: Messages,
          show) -> List[LavaRun]:
    """NIR export, then float Lava against PyTorch on the first ``n`` samples, each lowering."""
    import torch
    from exporters.nir_io import write_nir
    from exporters.torch_to_nir import export_model
    from resformer_deploy.analysis.drift import FLOAT
    from resformer_deploy.api.verify import run_checks

    write_nir(export_model(ck.model), o.nir_path)
    lowerings = ("fused", "synaptic") if o.dssa == "both" else (o.dssa,)
    target = roles[FLOAT]
    show(LavaStart(o.nir_path, o.nir_path.stat().st_size, n, target, lowerings))
    x, y, pred = split.x[:n], split.y[:n], torch.tensor(acc.predictions[:n])
    reports = run_checks(ck, x, target, ["float32"], "extension", lowerings, messages,
                         on_check=lambda rep, precision, lowering: show(rep))
    out = []
    for low, rep in zip(lowerings, reports):
        ti = rep.target_info
        out.append(LavaRun(low, n, _accuracy(torch.tensor(rep.predictions_target), y), _accuracy(pred, y),
                           rep.prediction_agreement, rep.min_layer_identical_pct, ti["processes"],
                           ti["latency"], rep.seconds["target"] / n, rep))
    show(tuple(out))
    return out


def _fixed_point(ck, o: DemoRun, split: DemoSplit, n: int, roles: dict, messages: Messages, show,
                 on_quantized=None) -> FixedPointResult:
    from resformer_deploy.analysis.drift import FIXED_POINT_CHECK
    from resformer_deploy.api import sizing
    from resformer_deploy.reporting.deploy import build_report
    from resformer_deploy.reporting.html import write_report_files

    ne = o.eval_samples or len(split.y)
    inputs: Optional[tuple] = (split.x[:ne], split.y[:ne], split.source) if split.given else None
    cal = (split.calibration.source if split.calibration is not None else
           f"{o.calib_samples} samples of the digits training split")
    show(FixedPointStart(cal, n, roles.get(FIXED_POINT_CHECK, ""), ne, ne == len(split.y)))
    rep: Any = build_report(ck, o.checkpoint, "fused", n, o.eval_samples, o.calib_samples, inputs=inputs,
                       calibration=split.calibration, say=lambda m: messages.note(f"  {m} ..."),
                       on_quantized=on_quantized, sizing=sizing)
    paths = write_report_files(Path(o.out_dir) / "report", rep)
    energy = rep.energy  # reporting.deploy.EnergySection: the JSON keeps its two energy reports
    result = FixedPointResult(rep.ladder, rep.mapping, dict(torch=energy.torch, fixed=energy.fixed), tuple(paths))
    show(result)
    return result


def whole_split(ck, checkpoint, split: DemoSplit, calib_samples: int, batch_size: int, logits, quantized=None,
                target: Optional[str] = None, messages: Messages = Messages()) -> WholeSplit:
    """The whole held-out split through the fixed-point target (None: chosen by capability),
    streamed (no per-neuron records), beside the PyTorch model: accuracy and agreement where the
    ladder ran a subset. ``logits``: the float32 PyTorch scores of the split computed at the
    start (not computed again); ``quantized``: the ladder's quantized network, run as it is (dvsg:
    quantizing again took 145 s), else the split's calibration is quantized here."""
    from resformer_deploy.analysis.evaluation import evaluate
    from resformer_deploy.api import sizing

    target = target or _fixed_role(rung_targets(False))
    ev = evaluate(ck, split.data, target, checkpoint=checkpoint, batch_size=batch_size,
                  calibration=split.calibration, calib_samples=calib_samples, say=messages.say, bar=messages.bars,
                  torch_scores=logits, artifacts=None if quantized is None else
                  {"lava_plan": quantized.plan, "quantized_net": quantized}, sizing=sizing)
    rec = {k: ev[k] for k in ("target", "samples", "top1", "torch_top1", "agreement_with_torch", "throughput",
                              "seconds", "target_info")}
    return WholeSplit(ev["target"], ev["samples"], ev["top1"], ev["torch_top1"], ev["agreement_with_torch"],
                      ev["throughput"]["samples_per_second"], rec)
