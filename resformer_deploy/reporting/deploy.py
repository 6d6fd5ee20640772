"""Everything an engineer wants before booking Loihi 2 time, in one report (``report`` command):
the drift ladder (accuracy and spike agreement, float and fixed point), operations and energy
(PyTorch and fixed-point spikes), and the Loihi 2 core plan with its design-rule check."""
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

import torch

from resformer_deploy.analysis.drift import DriftLadder, drift_ladder
from resformer_deploy.analysis.equivalence import torch_record_batch
from resformer_deploy.hardware.loihi2.core_plan import CorePlan
from resformer_deploy.analysis.operations import EnergyReport, LayerOps, count_graph, count_torch, energy_report
from resformer_deploy.model.precision import model_in_dtype
from resformer_deploy.util.records import Record, is_count, require
from resformer_deploy.reporting.tables import machine_description


@dataclass
class Timing(Record):
    pipeline_latency_steps: int  # from the first input to its first output on the Loihi 2 pipeline
    steps_per_sample: int
    note: str = "samples stream back to back: one result every T steps after the pipeline has filled"

    def __post_init__(self):
        require(is_count(self.pipeline_latency_steps) and is_count(self.steps_per_sample) and self.steps_per_sample,
                f"latency {self.pipeline_latency_steps}, {self.steps_per_sample} steps per sample")


@dataclass
class EnergySection(Record):
    """Operations per layer from PyTorch's and from the fixed-point emulator's spikes, and their energy."""
    samples: int
    torch_counts: Dict[str, LayerOps]
    fixed_counts: Dict[str, LayerOps]
    torch: EnergyReport
    fixed: EnergyReport

    def __post_init__(self):
        require(is_count(self.samples) and self.samples > 0, f"{self.samples} samples")


@dataclass
class CoreMapping:
    """The report's mapping onto Loihi 2 cores: the core ``plan`` (CoreLayer rows, PlanTotals),
    the design rules it breaks (``violations``) or that were not checked (``skipped``), the
    ``hardware`` it could run on here (targets.loihi2_hardware.hardware_runtime) and the
    processes Lava's stock (and the chip's) models would not run (``stock_models``).
    ``to_json``: the plan's JSON form with its design-rule check, then ``stock_models``."""
    plan: CorePlan
    violations: List[str]
    skipped: List[str]
    hardware: Dict[str, Any]
    stock_models: List[str]

    def to_json(self) -> dict:
        data = self.plan.to_json(list(self.violations), list(self.skipped), self.hardware)
        data["stock_models"] = list(self.stock_models)
        return data


@dataclass
class DeploymentReport(Record):
    checkpoint: str
    variant: str
    T: int
    machine: str
    timing: Timing
    ladder: DriftLadder
    energy: EnergySection
    mapping: CoreMapping
    seconds: float
    loihi2_estimate: Optional[dict] = None  # latency / throughput / energy and systems (analysis/loihi2_cost.py)

    def __post_init__(self):
        require(self.energy.samples == self.ladder.fixed_point.samples,
                "operations are counted on the fixed-point rung's samples")
        require(self.timing.steps_per_sample == self.T, f"T={self.T}, {self.timing.steps_per_sample} steps/sample")


def mapping_target() -> str:
    """The target whose flow maps a network onto Loihi 2 cores, chosen by capability (a hardware
    target that supports mapping: its flow runs here even where the chip itself is absent)."""
    from targets import names_with
    names = names_with(supports_mapping=True, executes="hardware") or names_with(supports_mapping=True)
    if not names:
        from resformer_deploy.errors import DeployError
        raise DeployError("the deployment report maps onto Loihi 2 cores: no registered target supports mapping")
    return names[0]


def build_report(ck, checkpoint: str, dssa: str = "fused", lava_samples: int = 10, eval_samples: int = 0,
                 calib_samples: int = 128, say=lambda m: None, inputs=None, calibration=None,
                 on_quantized=None, sizing=None) -> DeploymentReport:
    """``inputs`` / ``calibration``: the evaluation set and the calibration data (``--data``,
    ``--calib-data``; analysis.drift.drift_ladder), else the built-in ones; the report says which.
    ``on_quantized(quantized_net)``: handed the ladder's quantized network, for a caller that runs
    it again (demo's whole split) instead of quantizing a second time. ``sizing``: the job's sizing
    step, handed to the drift ladder (analysis.drift.drift_ladder)."""
    from resformer_deploy.flows import prepare
    from targets.loihi2_hardware import hardware_runtime

    t0 = time.time()
    ladder = drift_ladder(ck.model, eval_samples, lava_samples, calib_samples, dssa, progress=say,
                          lava=lava_samples > 0, keep_runs=True, inputs=inputs, calibration=calibration,
                          sizing=sizing)
    runs = ladder.runs
    if on_quantized is not None:
        on_quantized(runs.quant)
    say("counting operations")
    x, T, N = runs.x, ck.config.T, runs.x.shape[0]
    # in chunks: dvsg's 48 ladder samples in one float64 forward took >13 GiB beside the ladder's records
    with model_in_dtype(ck.model, torch.float64) as m:
        ct = count_torch(m, x, batch=torch_record_batch(runs.graph, T, 8))
    cf = count_graph(runs.graph, runs.emulator.spikes, T, N)
    energy = EnergySection(N, ct, cf, energy_report(ct, N), energy_report(cf, N))
    say("mapping onto Loihi 2 cores")
    # the mapping target's flow (a core plan) on the ladder's plan and quantized network: both are
    # supplied, so only the mapping and the design-rule check (number formats included) run
    mapped = prepare(mapping_target(), runs.graph, artifacts={"lava_plan": runs.quant.plan, "quantized_net": runs.quant},
                     quantize=True)
    violations, skipped = mapped.drc
    mapping = CoreMapping(mapped.core_plan, list(violations), list(skipped), hardware_runtime(),
                          list(mapped.stock_models or []))
    say("estimating Loihi 2 latency, throughput and energy from the emulator's activity")
    from resformer_deploy.analysis.loihi2_cost import estimate_from_spikes, section_json
    est = estimate_from_spikes(mapped.core_plan, runs.graph, runs.emulator.spikes, T, N,
                               runs.quant.plan.total_latency)
    cost, _ = section_json(mapped.core_plan, *est, N, ladder.evaluation.source, violations)
    ladder.runs = None  # the report holds numbers only (the runs' spikes can be large)
    return DeploymentReport(str(checkpoint), ck.variant, T, machine_description(),
                            Timing(runs.quant.plan.total_latency, T), ladder, energy, mapping, time.time() - t0,
                            loihi2_estimate=cost)
