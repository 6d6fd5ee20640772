"""Map a model's neuromorphic partition onto a mapping target's cores (Loihi 2) and check the
design rules; optionally quantize first, so the number formats are checked too and the network
can be written as the deployable artifact (api.deploy).

    >>> from resformer_deploy import api
    >>> net = api.load_graph("examples/digits/digits_resformer.pt")
    >>> result = api.compile(net, api.CompileOptions(quantize=True))
    >>> result.totals.neuro_cores, result.violations
    (34, ())
"""
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Tuple, TypeVar

from resformer_deploy.errors import DeployError, InternalError
from resformer_deploy.hardware.loihi2.core_plan import CoreLayer, CorePlan, PlanTotals

PLAN_NAME = "loihi2_plan.json"  # the plan's file in a compile output directory


@dataclass(frozen=True)
class ModelGraph:
    """A model as a NIR graph, from a checkpoint (``checkpoint`` set: the loaded one) or a NIR file.
    ``config``/``variant`` of a NIR file are read from the graph when first asked (only data and
    calibration need them), so a graph that is no image classifier can still be compiled."""
    path: str
    graph: object  # nir.NIRGraph
    checkpoint: object = None  # model.checkpoint.LoadedCheckpoint, None for a NIR file

    @cached_property
    def _model(self) -> tuple:
        ck: Any = self.checkpoint
        if ck is not None:
            return ck.config, ck.variant
        from resformer_deploy.analysis.data_inputs import graph_model
        return graph_model(self.graph, self.path)

    @property
    def config(self):  # model.config.ResformerConfig
        return self._model[0]

    @property
    def variant(self) -> str:
        return self._model[1]


def is_nir(path: str) -> bool:
    """``path`` holds a NIR graph (by its suffix, else by the HDF5 signature), not a checkpoint."""
    if path.lower().endswith((".nir", ".h5", ".hdf5")):
        return True
    try:
        with open(path, "rb") as f:
            return f.read(8) == b"\x89HDF\r\n\x1a\n"
    except OSError:
        return False


def load_graph(path: str, load: Optional[Callable] = None) -> ModelGraph:
    """The NIR graph of a checkpoint (exported) or of a NIR file (read). ``load(path)``: how a
    checkpoint is loaded (default: model.checkpoint.load_checkpoint, weights only)."""
    if not Path(path).exists():
        raise DeployError(f"{path}: no such file")
    if is_nir(path):
        from exporters.nir_io import read_nir
        return ModelGraph(path, read_nir(path))
    from exporters.torch_to_nir import export_model
    from resformer_deploy.model.checkpoint import load_checkpoint
    ck = (load or load_checkpoint)(path)
    return ModelGraph(path, export_model(ck.model), ck)


def mapping_target(target: Optional[str] = None) -> str:
    """``target`` if the registry has it and it supports mapping, else refused in one line;
    None: the first registered target that supports mapping (chosen by capability)."""
    from targets import broken_targets, names_with
    mappable = names_with(supports_mapping=True)  # the registry's list, not one kept here
    if target is None:
        if not mappable:
            raise DeployError("no registered target supports mapping (`resformer-deploy targets`)")
        return mappable[0]
    if target in broken_targets():  # a plug-in that failed to load: its own one-line reason
        raise DeployError(broken_targets()[target])
    if target not in mappable:
        raise DeployError(f"unknown compile target '{target}' (targets that support mapping: "
                          f"{', '.join(mappable) or 'none'})")
    return target


@dataclass(frozen=True)
class CompileOptions:
    """``target``: a target that supports mapping (None: chosen by capability); ``quantize``:
    calibrate and quantize first (simulates the network: small models only)."""
    target: Optional[str] = None
    dssa: str = "fused"
    quantize: bool = False
    calib_samples: int = 128
    netx_bias_grid: bool = False

    def check(self) -> None:
        if self.netx_bias_grid and not self.quantize:
            raise DeployError("--netx-bias-grid chooses how the network is quantized: add --quantize")


@dataclass(frozen=True)
class StockModelFindings:
    """The processes Lava's stock models (and so the chip's own) would not run as planned;
    ``checked_quantized``: the number formats were checked too (compile --quantize)."""
    checked_quantized: bool
    findings: Tuple[str, ...]

    def to_json(self) -> dict:
        return {"checked_quantized": self.checked_quantized, "findings": list(self.findings)}


@dataclass(frozen=True)
class PlanRecord:
    """loihi2_plan.json, typed: the core plan (``plan.layers``, ``plan.totals``: CoreLayer and
    PlanTotals records), its design-rule ``violations`` and ``skipped`` rules, the ``hardware``
    it could run on here, the model file it was compiled from (``input``), the stock-model
    findings and, quantized, the calibration and the Loihi 2 ``estimate``. ``to_json``: the
    file's content, key for key and in order."""
    plan: CorePlan
    violations: Tuple[str, ...]
    skipped: Tuple[str, ...]
    hardware: Mapping[str, Any]  # targets.loihi2_hardware.hardware_runtime
    input: str
    stock_models: StockModelFindings
    quantized: bool = False
    calibration: Optional[dict] = None  # fixed_point QuantNet.calibration (quantized only)
    estimate: Optional[dict] = None  # analysis.loihi2_cost.cost_section (quantized only)

    def to_json(self) -> dict:
        data = self.plan.to_json(list(self.violations), list(self.skipped), dict(self.hardware))
        data["input"] = self.input
        if self.estimate is not None:
            data["loihi2_estimate"] = self.estimate
        if self.quantized:
            data["calibration"] = self.calibration
        data["stock_models"] = self.stock_models.to_json()
        return data


@dataclass(frozen=True)
class CompileResult:
    """The core plan and its design-rule check: ``record`` (PlanRecord, what loihi2_plan.json
    holds), read through the properties below. ``violations``: design rules broken (the plan is
    still made); ``skipped``: rules not checked, and why; ``stock_models``: processes Lava's stock
    models (and so the chip's) would not run as planned; ``estimate`` / ``estimate_lines``: the
    Loihi 2 latency, throughput and energy measured on the calibration data (quantized only);
    ``plan_json``: the loihi2_plan.json content; ``artifacts``: the flow's artifacts (the
    quantized network for api.write_artifact)."""
    target: str
    dssa: str
    record: PlanRecord
    estimate_lines: Tuple[str, ...]
    artifacts: object = None

    @property
    def quantized(self) -> bool:
        return self.record.quantized

    @property
    def plan(self) -> CorePlan:
        return self.record.plan

    @property
    def violations(self) -> Tuple[str, ...]:
        return self.record.violations

    @property
    def skipped(self) -> Tuple[str, ...]:
        return self.record.skipped

    @property
    def stock_models(self) -> Tuple[str, ...]:
        return self.record.stock_models.findings

    @property
    def hardware(self) -> Mapping[str, Any]:
        return self.record.hardware

    @property
    def calibration(self) -> Optional[dict]:
        return self.record.calibration

    @property
    def estimate(self) -> Optional[dict]:
        return self.record.estimate

    @property
    def totals(self) -> PlanTotals:
        return self.plan.totals

    @property
    def layers(self) -> List[CoreLayer]:
        return self.plan.layers

    @property
    def plan_json(self) -> dict:
        return self.record.to_json()


def compile(net: ModelGraph, options: CompileOptions = CompileOptions(), *, calibration=None,
            say: Callable[[str], None] = lambda m: None) -> CompileResult:
    """Map ``net`` (api.load_graph) onto ``options.target``'s cores and check the design rules.
    ``calibration``: flows.fixed_point.CalibrationData for ``quantize`` (None: the flow's choice;
    refused without ``quantize``); ``say``: what was quantized on."""
    from targets.loihi2_hardware import hardware_runtime
    from resformer_deploy.flows import prepare

    o = options
    target = mapping_target(o.target)
    if calibration is not None and not o.quantize:
        raise DeployError(f"--calib-data {calibration.source}: compile quantizes only with --quantize; nothing is "
                          f"calibrated")
    o.check()
    # the target's flow: plan, [calibrate and quantize: the number-format rules need the quantized
    # network, calibrated on non-evaluation data,] map onto cores, design-rule check
    prepared = prepare(target, net.graph, dssa=o.dssa, quantize=o.quantize,
                       calib_samples=o.calib_samples if o.quantize else None, calibration=calibration,
                       netx_bias_grid=o.netx_bias_grid if o.quantize else None)
    calib = made(prepared.quantized_net, "quantized_net", target).calibration if o.quantize else None
    if calib is not None:
        say(f"quantized on {calib['source']}")
    plan = made(prepared.core_plan, "core_plan", target)
    violations, skipped = made(prepared.drc, "drc", target)
    stock = made(prepared.stock_models, "stock_models", target)
    est_json: Optional[dict] = None
    est_lines: List[str] = []
    if o.quantize:  # Loihi 2 latency, throughput, energy and systems, from the emulator's activity on real samples
        from resformer_deploy.analysis.loihi2_cost import ESTIMATE_SAMPLES, cost_section
        from resformer_deploy.flows.fixed_point import graph_time_steps
        ci = made(prepared.calibration_inputs, "calibration_inputs", target)
        est_json, est_lines = cost_section(net.graph, prepared, graph_time_steps(net.graph), ci.x[:ESTIMATE_SAMPLES],
                                           ci.source, violations)
    record = PlanRecord(plan, tuple(violations), tuple(skipped), hardware_runtime(), net.path,
                        StockModelFindings(bool(o.quantize), tuple(stock)), o.quantize, calib, est_json)
    return CompileResult(target, o.dssa, record, tuple(est_lines), prepared)


T = TypeVar("T")


def made(artifact: Optional[T], name: str, target: str) -> T:
    """A flow artifact the job needs; its absence is a bug of the target's flow, not a user error."""
    if artifact is None:
        raise InternalError(f"the flow of target '{target}' made no {name}")
    return artifact
