"""Latency, throughput and energy of a Loihi 2 core plan, from the activity the emulator measures.

Model (per time step; every layer's work is spread evenly over its cores):
* a core's work = synaptic ops x t_syn + neuron updates x t_neuron + spikes sent x t_spike, with the
  per-operation times of Loihi 1 (anchors.PER_OP; Loihi 2 has no published table);
* time per step = k_time x (the slowest core's work) + a per-step floor (the barrier and whatever else
  a step costs when nothing runs);
* latency per sample = (pipeline latency + T) steps; throughput with pipelining = one sample per T steps;
* dynamic energy per sample = k_energy x (synaptic ops x E_syn + neuron updates x E_neuron + spikes x
  (E_within_tile + E_tile_hop)) + a per-step floor x chips x T; static energy per sample = static
  power per chip x chips x T steps;
* chip-to-chip traffic: layers fill chips in plan order (128 cores each); of the spikes a layer sends
  to the next layer, the share reaching that layer's cores on other chips is counted (chip_crossings;
  no published energy or latency per chip crossing, so they are counted, not costed).
Calibration (``calibrate``) on the measured end-to-end results: time and dynamic energy are each an
affine fit, measured = k x modelled + floor, through two anchors: the busy PilotNet SNN run
(anchors.PILOTNET_SNN: pins k) and the near-empty two-neuron runs (anchors.PAIR_LIF: pin the floor;
one chip, so the energy floor is per chip, an assumption for more chips, and the time floor is one
chip's, multi-chip barriers having no published figure). Leave-one-out: without PilotNet, k is the
uncalibrated 1 (Loihi 1's constants); without the two-neuron runs, the floor is Loihi 1's barrier
(time) or 0 (energy); each term's error bar is the error on the anchor left out. The static power per
chip is the geometric mean of the idle measurements (``fit_scale``). An estimate's error bar combines
its parts': a sum takes the share-weighted mean of its terms' errors, a product (1 + a)(1 + b) - 1.
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
class Affine:
    """measured = k x modelled + floor, through a busy anchor (pins k) and a near-empty one (pins the
    floor); each term's leave-one-out relative error (the anchor left out, predicted without it)."""
    k: float
    floor: float
    floor_unit: str
    work_anchor: str
    floor_anchor: str
    k_loo_rel_error: float
    floor_loo_rel_error: float

    def __call__(self, modelled: float, floors: float = 1.0) -> "Figure":
        """The calibrated value of ``modelled`` work plus ``floors`` floors, with its error bar."""
        a, b = self.k * modelled, self.floor * floors
        if a + b == 0:
            return Figure(0.0, self.k_loo_rel_error)
        return Figure(a + b, (a * self.k_loo_rel_error + b * self.floor_loo_rel_error) / (a + b))

    def to_json(self) -> dict:
        return {"k": self.k, "floor": self.floor, "floor_unit": self.floor_unit,
                "anchors": {"k": self.work_anchor, "floor": self.floor_anchor},
                "loo_rel_error": {"k": self.k_loo_rel_error, "floor": self.floor_loo_rel_error}}


def fit_affine(work: tuple, floor: tuple, floor_unit: str, k_prior: float = 1.0,
               floor_prior: float = 0.0) -> Affine:
    """``work`` / ``floor``: (anchor, measured, modelled) of the busy and the near-empty anchor. Solved
    exactly (two anchors, two constants). Leave-one-out: without the busy anchor, k = ``k_prior`` and the
    floor what the near-empty anchor then leaves; without the near-empty one, floor = ``floor_prior``
    and k what the busy anchor then leaves."""
    (wn, wm, wp), (fn, fm, fp) = work, floor
    if not (wm > 0 and fm > 0 and wp > fp >= 0):
        raise EstimateError(f"calibration anchors {wn} (measured {wm:g}, modelled {wp:g}) and {fn} (measured "
                            f"{fm:g}, modelled {fp:g}): need positive measurements and more modelled work on {wn}")
    k = (wm - fm) / (wp - fp)
    fl = fm - k * fp
    if k <= 0 or fl < 0:
        raise EstimateError(f"calibration anchors {wn} and {fn} give k={k:g}, floor={fl:g} {floor_unit}: "
                            f"the near-empty anchor costs more than the busy one")
    k_err = abs((k_prior * wp + (fm - k_prior * fp)) / wm - 1.0)
    f_err = abs(((wm - floor_prior) / wp * fp + floor_prior) / fm - 1.0)
    return Affine(k, fl, floor_unit, wn, fn, k_err, f_err)


@dataclass
class Calibration:
    time: Affine  # seconds per step
    energy: Affine  # joules; floor per chip per step
    static_power_W: Scale  # per chip

    def to_json(self) -> dict:
        return {"step_time": self.time.to_json(), "dynamic_energy": self.energy.to_json(),
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


def _product(*errs) -> Optional[float]:
    """Relative error of a product of calibrated factors (None if any is None)."""
    if any(e is None for e in errs):
        return None
    return math.prod(1.0 + e for e in errs) - 1.0


def _sum(*figs: "Figure") -> "Figure":
    """A sum of estimates; its error the share-weighted mean of theirs (None if any is None)."""
    v = sum(f.value for f in figs)
    if any(f.rel_error is None for f in figs):
        return Figure(v, None)
    return Figure(v, sum(f.value * f.rel_error for f in figs) / v)  # type: ignore[operator]


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
    slow = max(work, key=work.get)  # type: ignore[arg-type]
    step = cal.time(work[slow])
    dyn = cal.energy(dynamic_energy_J(acts, T), chips * T)
    static_v = cal.static_power_W.value * chips * T * step.value
    static = Figure(static_v, _product(cal.static_power_W.loo_rel_error, step.rel_error))
    et = step.rel_error
    return Estimate(
        T, chips, pipeline_latency_steps, slow, step,
        Figure((pipeline_latency_steps + T) * step.value, et), Figure(1.0 / (T * step.value), et), dyn,
        static, _sum(dyn, static), chip_crossings(acts), float(embedded_macs), cal,
        ["per-operation costs are Loihi 1's (Davies et al. 2018); the scales k carry Loihi 2's difference",
         "per-step floors of time and energy from a near-empty one-chip run (Balafrej et al. 2025); the energy "
         "floor counted per chip, the time floor as one chip's (no published multi-chip barrier)",
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


def pilotnet_anchors(pilotnet_plan) -> Dict[str, tuple]:
    """The PilotNet SNN run as calibration anchors: (name, measured, modelled) of one step's time (the
    slowest core's Loihi 1 work) and one sample's dynamic energy (Loihi 1 per-operation energy)."""
    acts = pilotnet_activity(pilotnet_plan)
    T = int(A.PILOTNET_SNN["steps_per_sample"].value)
    step = 1.0 / (A.PILOTNET_SNN["throughput_fps"].value * T)
    return {"time": ("pilotnet_snn", step, max(core_work_s(a, T) for a in acts)),
            "energy": ("pilotnet_snn", A.PILOTNET_SNN["dynamic_energy"].value, dynamic_energy_J(acts, T))}


def calibrate(pilotnet_plan, pair_plan) -> Calibration:
    """``pilotnet_plan``: pilotnet.pilotnet_plan(); ``pair_plan``: pilotnet.pair_plan(). The PilotNet run
    pins the scales, the two-neuron runs the per-step floors (the PilotNet run is 1 chip and 16 steps
    per sample: its energy floor is 16 floors). The SDNN run is I/O-bound and its dynamic energy
    negative: it calibrates the static power only."""
    p, q = pilotnet_anchors(pilotnet_plan), pair_anchors(pair_plan)
    T = A.PILOTNET_SNN["steps_per_sample"].value
    time = fit_affine(p["time"], q["time"], "s per step", floor_prior=OP["barrier_sync_time"])
    # energy: per sample of T steps on one chip = k x ops + T floors; the pair anchor is one step
    wn, wm, wp = p["energy"]
    e = fit_affine((wn, wm / T, wp / T), q["energy"], "J per chip per step")
    static = fit_scale({"pilotnet_snn": (A.PILOTNET_SNN["static_power"].value, 1.0),
                        "pilotnet_sdnn": (A.PILOTNET_SDNN["static_power"].value, 1.0),
                        "pair_lif": (pair_static_power_W(), 1.0)})
    return Calibration(time, e, static)


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


def _pair_rows(plan) -> Dict[int, dict]:
    """Per firing rate: measured and Loihi 1-modelled time and dynamic energy of one step."""
    out = {}
    for hz, d in A.PAIR_LIF.items():
        acts = pair_activity(plan, hz)
        out[hz] = {"time": (d["total_time"].value / A.PAIR_STEPS_PER_RUN, max(core_work_s(a, 1) for a in acts)),
                   "energy": (d["dynamic_energy"].value / A.PAIR_STEPS_PER_RUN, dynamic_energy_J(acts, 1))}
    return out


def pair_anchors(plan) -> Dict[str, tuple]:
    """The two-neuron runs as one anchor per quantity: the means over the three firing rates (their
    times agree to 0.05 %; their energies, 26.7-32.6 nJ per step, lie within one run's spread)."""
    rows = _pair_rows(plan).values()
    return {q: ("pair_lif", sum(r[q][0] for r in rows) / len(rows), sum(r[q][1] for r in rows) / len(rows))
            for q in ("time", "energy")}


def pair_check(pair_plan, cal: Calibration) -> dict:
    """The calibrated model on each firing rate of the two-neuron runs (in sample: their mean pins the
    floors), and the error on them of a model without floors (the leave-one-out term of the floors)."""
    rows = {}
    for hz, r in _pair_rows(pair_plan).items():
        (tm, tw), (em, ew) = r["time"], r["energy"]
        t, e = cal.time(tw), cal.energy(ew)
        rows[hz] = {"step_time_s": tm, "model_step_time_s": t.value, "step_time_rel_error": t.value / tm - 1,
                    "dynamic_energy_per_step_J": em, "model_dynamic_energy_per_step_J": e.value,
                    "dynamic_energy_rel_error": e.value / em - 1}
    # |error| on their mean of the model calibrated without them (floors: Loihi 1's barrier, no energy)
    return {"per_rate": rows, "without_them_rel_error": {"step_time": cal.time.floor_loo_rel_error,
                                                         "dynamic_energy": cal.energy.floor_loo_rel_error}}
