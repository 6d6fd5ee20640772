"""The Loihi 2 core plan (hardware.loihi2.partition's result) as typed, self-checking records.

One ``CoreLayer`` per neuron layer, one ``EmbeddedProgram`` per fused DSSA product, one
``DelayLine`` per path-balancing delay, and the plan's ``PlanTotals``, which the plan derives from
its layers and programs (so they cannot disagree). Like NIR's nodes (nir/ir/*.py) each checks its own
invariants when made and names its layer; the design-rule check (drc.py) then judges the figures
against the chip's limits. The JSON form (``CorePlan.to_json``; the ``report`` and
``compile --json`` read it) goes through resformer_deploy.util.serialize.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from resformer_deploy.errors import InternalError
from resformer_deploy.hardware.loihi2 import limits as L
from resformer_deploy.util.records import Record, is_count
from resformer_deploy.util.serialize import to_jsonable

METRICS = ("neurons", "memory", "fan_in", "routes")  # per-core resources a tiling must respect
DELAY_REALISATIONS = ("synaptic delay", "embedded buffer")


class CorePlanError(InternalError):
    """A core-plan record contradicts itself (a mapper bug, never a property of the network)."""


def _require(ok, where, msg):
    if not ok:
        raise CorePlanError(f"{where}: {msg}")


@dataclass
class Unmappable:
    """Even one neuron of the layer needs more of ``metric`` than one core has."""
    metric: str
    one_neuron_needs: int
    limit: int

    def __post_init__(self):
        _require(self.metric in METRICS, self.metric, f"not a per-core metric ({', '.join(METRICS)})")
        _require(self.one_neuron_needs >= self.limit > 0, self.metric,
                 f"one neuron needs {self.one_neuron_needs}, within the limit {self.limit}")


@dataclass
class InboundDelay:
    """A path-balancing delay realised on a layer's inbound synapses from ``src`` (``via``: the
    graph node those synapses realise)."""
    src: str
    via: str
    delay: int

    def __post_init__(self):
        _require(self.delay >= 1, self.via, f"delay {self.delay} steps (only delays of 1 or more are listed)")

    def to_json(self) -> dict:
        return {"from": self.src, "via": self.via, "delay": self.delay}


@dataclass
class DelayLine:
    """One delay of the whole plan: on a layer's synapses, or buffered by an embedded program."""
    layer: str
    src: str
    via: str
    delay: int
    realised: str  # one of DELAY_REALISATIONS

    def __post_init__(self):
        _require(self.realised in DELAY_REALISATIONS, self.layer, f"delay realised as '{self.realised}'")
        _require(self.delay >= 1, self.layer, f"delay {self.delay} steps on the input from {self.src}")

    def to_json(self) -> dict:
        return {"layer": self.layer, "from": self.src, "via": self.via, "delay": self.delay,
                "realised": self.realised}


@dataclass
class EmbeddedProgram:
    """A fused SpikeMatMul on an embedded (Lakemont) core: ``groups`` products of (m x k) by (k x n)."""
    product: str
    lhs_from: str
    rhs_from: str
    groups: int
    m: int
    k: int
    n: int
    macs_per_step: int
    buffered_delays: Dict[str, int]  # operand node -> steps the program buffers it
    operand_values: int

    def __post_init__(self):
        _require(min(self.groups, self.m, self.k, self.n) >= 1, self.product,
                 f"product dimensions {self.groups} x ({self.m}, {self.k}, {self.n})")
        _require(self.macs_per_step == self.groups * self.m * self.k * self.n, self.product,
                 f"{self.macs_per_step} MACs per step for {self.groups} x {self.m} x {self.k} x {self.n}")
        _require(all(d >= 0 for d in self.buffered_delays.values()), self.product, "negative buffered delay")


@dataclass
class CoreLayer:
    """One neuron layer tiled onto neuro cores (field order: the JSON's key order)."""
    layer: str
    kind: str  # lif | junction | relay | product
    node: str
    coords: List[int]  # 3-D box of the layer's neurons
    inputs: List[str]  # connection kinds into it
    neurons: int
    synapses: int
    memory_bytes: int
    synaptic_memory_bytes: int
    cores: int
    split: List[int]  # chunks per axis
    chunk: List[int]  # neurons per chunk per axis
    max_core_neurons: int
    max_core_memory: int
    max_fan_in: int
    max_fan_out_routes: int
    max_neuron_fan_out_cores: int
    utilisation: Dict[str, float]  # metric -> max per core / limit
    limiting: str
    unmappable: List[Unmappable]
    fan_in_upper_bound: bool
    delays: List[InboundDelay]

    def __post_init__(self):
        n = self.layer
        _require(self.kind in L.NEURON_STATE_BYTES, n, f"layer kind '{self.kind}'")
        _require(len(self.coords) == len(self.chunk) == len(self.split) == 3, n, "coords, chunk and split are 3-D")
        _require(self.neurons == int(np.prod(self.coords)) >= 1, n, f"{self.neurons} neurons in a {self.coords} box")
        _require(all(1 <= c <= d and s == math.ceil(d / c) for d, c, s in zip(self.coords, self.chunk, self.split)),
                 n, f"chunk {self.chunk} and split {self.split} do not tile {self.coords}")
        _require(self.cores == int(np.prod(self.split)), n, f"{self.cores} cores for a {self.split} split")
        _require(self.synaptic_memory_bytes == self.memory_bytes - self.neurons * L.NEURON_STATE_BYTES[self.kind],
                 n, "synaptic memory is not the memory beyond the neuron state")
        _require(set(self.utilisation) == set(METRICS), n, f"utilisation of {sorted(self.utilisation)}")
        _require(self.max_core_neurons <= self.neurons, n, f"a core holds {self.max_core_neurons} of "
                                                           f"{self.neurons} neurons")


@dataclass
class PlanTotals(Record):
    """The whole plan's resources (field order: the JSON's key order)."""
    neuro_cores: int
    chips: int  # enough for both the neuro cores and the embedded programs
    chips_for_neuro_cores: int
    chips_for_embedded_programs: int
    embedded_programs: int
    neurons: int
    synapses: int
    memory_bytes: int
    synaptic_memory_bytes: int
    layers: int
    embedded_macs_per_step: int

    def __post_init__(self):
        bad = [f"{k} = {v!r}" for k, v in vars(self).items() if not is_count(v)]
        _require(not bad, "plan totals", f"counts must be integers >= 0: {', '.join(bad)}")
        _require(self.chips_for_neuro_cores == math.ceil(self.neuro_cores / L.NEURO_CORES_PER_CHIP), "plan totals",
                 f"{self.chips_for_neuro_cores} chip(s) for {self.neuro_cores} neuro cores "
                 f"({L.NEURO_CORES_PER_CHIP} per chip)")
        _require(self.chips_for_embedded_programs
                 == math.ceil(self.embedded_programs / L.USABLE_EMBEDDED_CORES_PER_CHIP), "plan totals",
                 f"{self.chips_for_embedded_programs} chip(s) for {self.embedded_programs} embedded programs "
                 f"({L.USABLE_EMBEDDED_CORES_PER_CHIP} usable per chip)")
        _require(self.chips == L.chips_for(self.neuro_cores, self.embedded_programs), "plan totals",
                 f"{self.chips} chip(s) for {self.neuro_cores} neuro cores and {self.embedded_programs} programs")
        _require(self.synaptic_memory_bytes <= self.memory_bytes, "plan totals",
                 f"synaptic memory {self.synaptic_memory_bytes} B exceeds the memory {self.memory_bytes} B")
        _require(self.neuro_cores >= self.layers, "plan totals",
                 f"{self.neuro_cores} neuro cores for {self.layers} layers (each needs one at least)")

    @classmethod
    def of(cls, layers: List[CoreLayer], programs: List[EmbeddedProgram]) -> "PlanTotals":
        cores, progs = sum(r.cores for r in layers), len(programs)
        return cls(neuro_cores=cores, chips=L.chips_for(cores, progs),
                   chips_for_neuro_cores=math.ceil(cores / L.NEURO_CORES_PER_CHIP),
                   chips_for_embedded_programs=math.ceil(progs / L.USABLE_EMBEDDED_CORES_PER_CHIP),
                   embedded_programs=progs, neurons=sum(r.neurons for r in layers),
                   synapses=sum(r.synapses for r in layers), memory_bytes=sum(r.memory_bytes for r in layers),
                   synaptic_memory_bytes=sum(r.synaptic_memory_bytes for r in layers), layers=len(layers),
                   embedded_macs_per_step=sum(p.macs_per_step for p in programs))


@dataclass
class CorePlan:
    dssa: str  # the DSSA lowering mapped: fused (embedded programs) or synaptic
    layers: List[CoreLayer]
    programs: List[EmbeddedProgram]
    delays: List[DelayLine]
    problems: List[str]
    warnings: List[str]
    model: dict
    target: str = "loihi2"
    totals: PlanTotals = field(init=False)  # derived from the layers and programs

    def __post_init__(self):
        _require(self.dssa in ("fused", "synaptic"), "core plan", f"DSSA lowering '{self.dssa}'")
        _require(self.dssa == "fused" or not self.programs, "core plan",
                 f"{len(self.programs)} embedded programs in a synaptic-DSSA plan")
        names = [r.layer for r in self.layers]
        _require(len(set(names)) == len(names), "core plan", "layer names repeat")
        self.totals = PlanTotals.of(self.layers, self.programs)

    def to_json(self, violations: Optional[List[str]] = None, skipped: Optional[List[str]] = None,
                hardware: Optional[dict] = None) -> dict:
        d = {"target": self.target, "dssa": self.dssa, "model": self.model, "kind": "mapping estimate",
             "totals": self.totals, "layers": self.layers, "embedded_programs": self.programs,
             "delays": self.delays, "warnings": self.warnings, "limits": L.limits_json()}
        if violations is not None:
            d["violations"] = violations
            d["drc_skipped"] = skipped or []
        if hardware is not None:
            d["hardware_runtime"] = hardware
        return to_jsonable(d)
