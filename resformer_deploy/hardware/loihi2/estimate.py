"""Latency, throughput and energy of a Loihi 2 core plan, from the activity the emulator measures.

Model (per time step; every layer's work is spread evenly over its cores):
* a core's work = synaptic ops x t_syn + neuron updates x t_neuron + spikes sent x t_spike, with the
  per-operation times of Loihi 1 (anchors.PER_OP; Loihi 2 has no published table);
* time per step = k_time x (the slowest core's work) + one barrier synchronisation;
* latency per sample = (pipeline latency + T) steps; throughput with pipelining = one sample per T steps;
* dynamic energy per sample = k_energy x (synaptic ops x E_syn + neuron updates x E_neuron + spikes x
  (E_within_tile + E_tile_hop)); static energy per sample = static power per chip x chips x T steps;
* chip-to-chip traffic: layers fill chips in plan order (128 cores each); of the spikes a layer sends
  to the next layer, the share reaching that layer's cores on other chips is counted (chip_crossings;
  no published energy or latency per chip crossing, so they are counted, not costed).
The free constants k_time, k_energy and the static power per chip are calibrated on the measured
end-to-end results (anchors.PILOTNET_*): a scale is the geometric mean of measured / modelled over its
anchors, and its error bar is the largest leave-one-out relative error (with a single anchor: the error
of the uncalibrated Loihi 1 constants on it).
Embedded-core (fused DSSA) work is reported as MACs only: no published Lakemont cost.
"""
import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from resformer_deploy.errors import DeployError, InternalError
from resformer_deploy.hardware.loihi2 import anchors as A
from resformer_deploy.hardware.loihi2 import limits as L

OP = {k: a.value for k, a in A.PER_OP.items()}


class EstimateError(DeployError):
    """Activity or calibration input that contradicts the plan (names, counts)."""


@dataclass
class LayerActivity:
    """One plan layer's work per sample (summed over the sample's T steps)."""
    layer: str
    cores: int
    neurons: int
    synops: float
    spikes_out: float

    def __post_init__(self):
        if self.cores < 1 or self.neurons < 1 or self.synops < 0 or self.spikes_out < 0:
            raise EstimateError(f"{self.layer}: {self.cores} cores, {self.neurons} neurons, {self.synops} synaptic "
                                f"ops, {self.spikes_out} spikes")


def core_work_s(a: LayerActivity, T: int) -> float:
    """Seconds of Loihi 1 work on one of the layer's cores per step (the layer's even share)."""
    return (a.synops / T * OP["synaptic_op_time"] + a.neurons * OP["neuron_update_time"]
            + a.spikes_out / T * OP["spike_within_tile_time"]) / a.cores


def dynamic_energy_J(acts: Sequence[LayerActivity], T: int) -> float:
    """Loihi 1 per-operation energy of one sample (before k_energy)."""
    syn = sum(a.synops for a in acts)
    upd = sum(a.neurons for a in acts) * T
    spk = sum(a.spikes_out for a in acts)
    return (syn * OP["synaptic_op_energy"] + upd * OP["neuron_update_energy"]
            + spk * (OP["spike_within_tile_energy"] + OP["tile_hop_energy"]))


def _per_chip(start: int, cores: int) -> Dict[int, int]:
    out: Dict[int, int] = {}
    for c in range(start, start + cores):
        out[c // L.NEURO_CORES_PER_CHIP] = out.get(c // L.NEURO_CORES_PER_CHIP, 0) + 1
    return out


def chip_crossings(acts: Sequence[LayerActivity]) -> float:
    """Spikes per sample that cross a chip boundary, if each layer's spikes go to the next layer in plan
    order (layers fill chips in plan order, NEURO_CORES_PER_CHIP cores each) and a spike from any of
    the source's cores reaches any of the consumer's cores alike: the crossing fraction is
    1 - sum over chips of (source's share of cores there) x (consumer's share there)."""
    starts, used = [], 0
    for a in acts:
        starts.append(used)
        used += a.cores
    total = 0.0
    for i, a in enumerate(acts[:-1]):
        b = acts[i + 1]
        src, dst = _per_chip(starts[i], a.cores), _per_chip(starts[i + 1], b.cores)
        same = sum(n / a.cores * dst.get(chip, 0) / b.cores for chip, n in src.items())
        total += a.spikes_out * (1.0 - same)
    return total


@dataclass
class Scale:
    """A calibrated constant: value, the anchors it rests on, its leave-one-out relative error."""
    value: float
    anchors: List[str]
    loo_rel_error: Optional[float]
    ratios: List[float] = field(default_factory=list)  # measured / modelled per anchor

    def to_json(self) -> dict:
        return {"value": self.value, "anchors": self.anchors, "loo_rel_error": self.loo_rel_error,
                "ratios": self.ratios}


def fit_scale(pairs: Dict[str, tuple], prior: Optional[float] = None) -> Scale:
    """``pairs``: anchor -> (measured, modelled). The scale is the geometric mean of measured / modelled.
    Leave-one-out: each anchor predicted with the scale of the others (with one anchor: with ``prior``,
    the uncalibrated value); the error is the largest |predicted / measured - 1| (None: nothing to
    predict with)."""
    if not pairs:
        raise EstimateError("no calibration anchors")
    bad = [k for k, (m, p) in pairs.items() if not (m > 0 and p > 0)]
    if bad:
        raise EstimateError(f"calibration anchors with non-positive values: {', '.join(bad)}")
    r = {k: m / p for k, (m, p) in pairs.items()}
    logs = {k: math.log(v) for k, v in r.items()}
    value = math.exp(sum(logs.values()) / len(logs))
    errs = []
    for k in r:
        rest = [v for j, v in logs.items() if j != k]
        s = math.exp(sum(rest) / len(rest)) if rest else prior
        if s is not None:
            errs.append(abs(s / r[k] - 1.0))  # (s * modelled) / measured - 1
    return Scale(value, sorted(pairs), max(errs) if errs else None, [r[k] for k in sorted(pairs)])


@dataclass
class Calibration:
    k_time: Scale
    k_energy: Scale
    static_power_W: Scale  # per chip

    def to_json(self) -> dict:
        return {"k_time": self.k_time.to_json(), "k_energy": self.k_energy.to_json(),
                "static_power_per_chip_W": self.static_power_W.to_json()}


@dataclass
class Figure:
    """An estimate and its relative error bar (None: not estimable from the anchors)."""
    value: float
    rel_error: Optional[float]

    def text(self, unit: str, scale: float = 1.0, fmt: str = ".3g") -> str:
        v = format(self.value * scale, fmt)
        return f"{v} {unit} " + ("(error n/a)" if self.rel_error is None else f"(±{self.rel_error * 100:.0f}%)")

    def to_json(self) -> dict:
        return {"value": self.value, "rel_error": self.rel_error}


def _comb(*errs) -> Optional[float]:
    """Relative error of a product/sum of calibrated terms: the largest part's (None if any is None)."""
    return None if any(e is None for e in errs) else max(errs)


@dataclass
class Estimate:
    T: int
    chips: int
    pipeline_latency_steps: int
    slowest_layer: str
    step_time_s: Figure
    latency_s: Figure
    throughput_per_s: Figure
    dynamic_energy_J: Figure
    static_energy_J: Figure
    total_energy_J: Figure
    chip_crossing_spikes: float
    embedded_macs: float
    calibration: Calibration
    notes: List[str]

    def to_json(self) -> dict:
        f = ("step_time_s", "latency_s", "throughput_per_s", "dynamic_energy_J", "static_energy_J", "total_energy_J")
        return {"T": self.T, "chips": self.chips, "pipeline_latency_steps": self.pipeline_latency_steps,
                "slowest_layer": self.slowest_layer, **{k: getattr(self, k).to_json() for k in f},
                "chip_crossing_spikes_per_sample": self.chip_crossing_spikes,
                "embedded_macs_per_sample": self.embedded_macs, "calibration": self.calibration.to_json(),
                "notes": self.notes}

    def lines(self) -> List[str]:
        return [f"Loihi 2 estimate ({self.chips} chip(s), T={self.T}; slowest layer {self.slowest_layer}):",
                f"  time per step {self.step_time_s.text('us', 1e6)}",
                f"  latency per sample {self.latency_s.text('ms', 1e3)} ({self.pipeline_latency_steps} + {self.T} "
                f"steps)",
                f"  throughput {self.throughput_per_s.text('samples/s')} (pipelined)",
                f"  energy per inference: dynamic {self.dynamic_energy_J.text('mJ', 1e3)}, static "
                f"{self.static_energy_J.text('mJ', 1e3)}, total {self.total_energy_J.text('mJ', 1e3)}",
                f"  chip-to-chip spikes per sample {self.chip_crossing_spikes:,.0f}; embedded-core MACs per sample "
                f"{self.embedded_macs:,.0f} (not costed)"]


def estimate(acts: Sequence[LayerActivity], T: int, chips: int, pipeline_latency_steps: int,
             cal: Calibration, embedded_macs: float = 0.0) -> Estimate:
    if not acts:
        raise EstimateError("no neuro-core layers to estimate")
    if T < 1 or chips < 1 or pipeline_latency_steps < 0:
        raise EstimateError(f"T={T}, {chips} chips, pipeline latency {pipeline_latency_steps} steps")
    work = {a.layer: core_work_s(a, T) for a in acts}
    slow = max(work, key=work.get)
    et, ee, es = cal.k_time.loo_rel_error, cal.k_energy.loo_rel_error, cal.static_power_W.loo_rel_error
    step = cal.k_time.value * work[slow] + OP["barrier_sync_time"]
    dyn = cal.k_energy.value * dynamic_energy_J(acts, T)
    static = cal.static_power_W.value * chips * T * step
    e_static = _comb(es, et)
    return Estimate(
        T, chips, pipeline_latency_steps, slow, Figure(step, et),
        Figure((pipeline_latency_steps + T) * step, et), Figure(1.0 / (T * step), et), Figure(dyn, ee),
        Figure(static, e_static), Figure(dyn + static, _comb(ee, e_static)), chip_crossings(acts),
        float(embedded_macs), cal,
        ["per-operation costs are Loihi 1's (Davies et al. 2018); k_time and k_energy carry Loihi 2's difference",
         "each layer's work is spread evenly over its cores; time uses the mean step, not the busiest",
         "chip crossings are counted, not costed (no published chip-to-chip energy or latency)"])


# ---- calibration on the published PilotNet SNN run ----------------------------------------------

def pilotnet_activity(plan) -> List[LayerActivity]:
    """The PilotNet SNN benchmark's activity per sample (16 steps) on ``plan``'s cores: the recorded
    spikes of netx's ground truth (anchors.PILOTNET_GTS_SPIKES, 24 steps) scaled to 16 steps; synaptic
    ops = the spikes into each layer x its exact mean fan-out (from the plan's synapse count / source
    neurons)."""
    T = int(A.PILOTNET_SNN["steps_per_sample"].value)
    per = T / A.PILOTNET_GTS_STEPS
    rows = {r.layer: r for r in plan.layers}
    names = [n for n, *_ in A.PILOTNET_LAYERS]
    missing = [n for n in names if n not in rows]
    if missing:
        raise InternalError(f"PilotNet plan lacks layers {missing}")  # pilotnet_plan() builds it from the anchors
    acts = []
    for i, n in enumerate(names):
        r = rows[n]
        src = names[i - 1] if i else None
        # synapses into n / neurons of its source = mean fan-out of a source neuron
        syn = 0.0 if src is None else A.PILOTNET_GTS_SPIKES[src] * per * r.synapses / rows[src].neurons
        acts.append(LayerActivity(n, r.cores, r.neurons, syn, A.PILOTNET_GTS_SPIKES.get(n, 0) * per))
    return acts


def calibrate(pilotnet_plan) -> Calibration:
    acts = pilotnet_activity(pilotnet_plan)
    T = int(A.PILOTNET_SNN["steps_per_sample"].value)
    step_measured = 1.0 / (A.PILOTNET_SNN["throughput_fps"].value * T)
    slow = max(core_work_s(a, T) for a in acts)
    # one usable anchor each (the SDNN run is I/O-bound and its dynamic energy negative): leaving it out
    # leaves the published Loihi 1 constants (scale 1), whose error is the error bar
    k_time = fit_scale({"pilotnet_snn": (step_measured - OP["barrier_sync_time"], slow)}, prior=1.0)
    k_energy = fit_scale({"pilotnet_snn": (A.PILOTNET_SNN["dynamic_energy"].value, dynamic_energy_J(acts, T))},
                         prior=1.0)
    static = fit_scale({"pilotnet_snn": (A.PILOTNET_SNN["static_power"].value, 1.0),
                        "pilotnet_sdnn": (A.PILOTNET_SDNN["static_power"].value, 1.0),
                        "pair_lif": (pair_static_power_W(), 1.0)})
    return Calibration(k_time, k_energy, static)


# ---- the two-neuron Oheo Gulch runs (anchors.PAIR_LIF) ------------------------------------------

def pair_static_power_W() -> float:
    """Static power of the two-neuron runs' chip: the mean over the three firing rates (one board)."""
    return sum(d["static_power"].value for d in A.PAIR_LIF.values()) / len(A.PAIR_LIF)


def pair_activity(plan, hz: int) -> List[LayerActivity]:
    """One step of the two-neuron network on ``plan`` (pilotnet.pair_plan): the source neuron spikes
    hz x 1 ms times per step (driven by its bias: no synaptic ops), each spike is one synaptic op into
    the destination neuron, which then spikes once (du = dv = 4095, weight 128 > vth 64)."""
    rows = {r.layer: r for r in plan.layers}
    rate = hz * 1e-3
    return [LayerActivity("src", rows["src"].cores, rows["src"].neurons, 0.0, rate),
            LayerActivity("dest", rows["dest"].cores, rows["dest"].neurons,
                          rate * rows["dest"].synapses / rows["src"].neurons, rate)]


def pair_check(pair_plan, cal: Calibration) -> dict:
    """The PilotNet-calibrated model on the two-neuron runs (out of sample): per firing rate the measured
    and modelled time and dynamic energy per step; and what folding these runs into k_time / k_energy
    (one scale each, geometric mean) would give, with its leave-one-out error."""
    rows, t_pairs, e_pairs = {}, {}, {}
    for hz, d in A.PAIR_LIF.items():
        acts = pair_activity(pair_plan, hz)
        slow = max(core_work_s(a, 1) for a in acts)
        t_meas = d["total_time"].value / A.PAIR_STEPS_PER_RUN
        e_meas = d["dynamic_energy"].value / A.PAIR_STEPS_PER_RUN
        t_mod = cal.k_time.value * slow + OP["barrier_sync_time"]
        e_mod = cal.k_energy.value * dynamic_energy_J(acts, 1)
        rows[hz] = {"step_time_s": t_meas, "model_step_time_s": t_mod, "step_time_rel_error": t_mod / t_meas - 1,
                    "dynamic_energy_per_step_J": e_meas, "model_dynamic_energy_per_step_J": e_mod,
                    "dynamic_energy_rel_error": e_mod / e_meas - 1}
        t_pairs[f"pair_lif_{hz}Hz"] = (t_meas - OP["barrier_sync_time"], slow)
        e_pairs[f"pair_lif_{hz}Hz"] = (e_meas, dynamic_energy_J(acts, 1))
    first = f"pair_lif_{min(A.PAIR_LIF)}Hz"  # one rate stands for the runs (they agree within their spread)
    # PilotNet's own ratio (measured / modelled) is the calibrated scale itself
    folded = {"k_time": fit_scale({"pilotnet_snn": (cal.k_time.value, 1.0), "pair_lif": t_pairs[first]}),
              "k_energy": fit_scale({"pilotnet_snn": (cal.k_energy.value, 1.0), "pair_lif": e_pairs[first]})}
    return {"per_rate": rows, "if_folded_into_scales": {k: v.to_json() for k, v in folded.items()}}
