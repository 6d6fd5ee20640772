"""The drift ladder: PyTorch float -> float targets -> fixed-point targets, measured rung by rung.

Every rung but PyTorch's is a registered target (targets.registry), and its role comes from
its capabilities (targets.base.Capabilities), never from its name, so a plug-in target takes a
rung like a built-in one. Each rung but PyTorch's is compared with the PyTorch model, per LIF
layer, with the first divergence; readers find rungs by role, never by position or name:
* ``pytorch`` (one): PyTorch float64 on the evaluation set (0: the full held-out digits split).
* ``float`` (any number): a float-arithmetic target on the first ``lava_samples``: must be exact.
* ``fixed-point-check`` (any number): a fixed-arithmetic target whose ``bit_exact_twin`` is the
  fixed-point rung's target, on the first ``lava_samples``: the same comparison, plus
  bit-exactness against the fixed-point rung on those samples, which is what lets that rung
  stand for this one on the whole set.
* ``fixed-point`` (one): a fixed-arithmetic target on the whole evaluation set: accuracy,
  prediction agreement, per-layer spike agreement, saturation counts.
The rungs are named (``targets=``) or chosen by capability (``rungs_by_capability``); the subset
rungs are left out without Lava samples (``lava=False`` or ``lava_samples=0``). All fixed-point
rungs run the one quantized network, calibrated on the training split (or the caller's
calibration data, ``--calib-data``), never the evaluation data.
"""
import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from exporters.nir_io import read_nir, write_nir
from exporters.torch_to_nir import export_model
from targets.artifact import CalibrationMeta
from targets import PYTORCH_MODEL, RunRequest, RunResult, capabilities_of, get_target, target_class, target_names

from resformer_deploy.data.digits import is_digits_input, load_digits_split
from resformer_deploy.errors import DeployError
from resformer_deploy.flows import flow_of, flow_options, prepare
from resformer_deploy.fixed_point.network import QuantizationSection
from resformer_deploy.fixed_point.quantize import MARGIN
from resformer_deploy.model.precision import model_in_dtype
from resformer_deploy.training.loop import accuracy
from resformer_deploy.util.records import Record, is_count, is_fraction, require
from resformer_deploy.analysis.equivalence import inputs_for, torch_record_batch
from resformer_deploy.analysis.compare import (Comparison, FirstDivergence, LayerComparison, PackedMasks, compare_run,
                                               record_torch)

MAX_ACCURACY_DROP_PP = 1.0
# roles; PYTORCH is the PyTorch model itself (targets.PYTORCH_MODEL), the one every other rung is compared with
PYTORCH, FLOAT, FIXED_POINT_CHECK, FIXED_POINT = "pytorch", "float", "fixed-point-check", "fixed-point"
ROLES = (PYTORCH, FLOAT, FIXED_POINT_CHECK, FIXED_POINT)  # drift_ladder's order; readers go by role
SUBSET_ROLES = (FLOAT, FIXED_POINT_CHECK)  # run on the first lava_samples only
# how a rung's shown name says what executes it (targets.base.ENGINES)
ENGINE_LABEL = {"pytorch": "PyTorch", "lava": "Lava", "numpy": "emulator", "chip": "Loihi 2 chip"}


@dataclass(frozen=True)
class RungChoice:
    """A registered target chosen as a rung, and the role its capabilities give it."""
    role: str  # one of ROLES but PYTORCH (PyTorch itself, no registered target)
    target: str
    label: str  # the rung's shown name

    def __post_init__(self):
        require(self.role in ROLES and self.role != PYTORCH, f"{self.target}: rung role '{self.role}'")


def _twins_of(name: str, among: Sequence[str]) -> List[str]:
    """The targets of ``among`` that declare ``name`` their bit-exact twin."""
    return [t for t in among if t != name and capabilities_of(t).bit_exact_twin == name]


def _label(arithmetic: str, engine: str, bit_accurate: bool) -> str:
    return (f"{'float' if arithmetic == 'float' else 'fixed-point'} {ENGINE_LABEL.get(engine, engine)}"
            + (" (bit-accurate)" if bit_accurate else ""))


def assign_roles(names: Sequence[str]) -> List[RungChoice]:
    """Roles of the named targets, from their capabilities (order: float, check, fixed point).

    Float targets are ``float`` rungs. Of the fixed-point targets, the one the others declare as
    their ``bit_exact_twin`` (or the only one) is the ``fixed-point`` rung; every other must be
    its twin (a ``fixed-point-check`` rung): without that, no rung would stand for it on the
    whole set."""
    names = list(names)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DeployError(f"drift ladder: target(s) {', '.join(dup)} named twice")
    caps = {n: capabilities_of(n) for n in names}  # unknown or broken: its one-line DeployError
    fixed = [n for n in names if caps[n].arithmetic == "fixed"]
    if not fixed:
        raise DeployError(f"drift ladder: no fixed-point target among {', '.join(names) or 'the rungs'} (a ladder "
                          f"ends in fixed point; fixed-point targets: {', '.join(_fixed_targets()) or 'none'})")
    heads = [n for n in fixed if _twins_of(n, fixed)] if len(fixed) > 1 else fixed
    if len(heads) != 1:
        raise DeployError(f"drift ladder: fixed-point targets {', '.join(fixed)}: exactly one must be the "
                          f"bit-exact twin (Capabilities.bit_exact_twin) of the others, to run the whole "
                          f"evaluation set for them; found {len(heads)}")
    (head,) = heads
    strays = [n for n in fixed if n != head and caps[n].bit_exact_twin != head]
    if strays:
        raise DeployError(f"drift ladder: fixed-point target(s) {', '.join(strays)} are not bit-exact twins of "
                          f"{head} (the fixed-point rung), so no rung stands for them on the whole set")
    everyone = target_names()
    choices = [RungChoice(FLOAT, n, _label("float", caps[n].engine, False)) for n in names
               if caps[n].arithmetic == "float"]
    choices += [RungChoice(FIXED_POINT_CHECK, n, _label("fixed", caps[n].engine, False)) for n in fixed if n != head]
    choices.append(RungChoice(FIXED_POINT, head, _label("fixed", caps[head].engine, bool(_twins_of(head, everyone)))))
    labels = [c.label for c in choices]  # two rungs of one kind and engine: tell them apart by target
    return [RungChoice(c.role, c.target, f"{c.label} [{c.target}]") if labels.count(c.label) > 1 else c
            for c in choices]


def _available(name: str) -> bool:
    cls = target_class(name)
    return not (callable(getattr(cls, "unavailable", None)) and cls.unavailable())


def _fixed_targets() -> List[str]:
    return [n for n in target_names() if capabilities_of(n).arithmetic == "fixed"]


def rungs_by_capability(anchor: Optional[str] = None, subset: bool = True) -> List[str]:
    """The targets of a ladder, chosen by capability among the usable registered targets.

    ``anchor`` (a fixed-point target, e.g. the one ``verify --target`` names): with a bit-exact
    twin, the twin is the fixed-point rung and the anchor its check; without, the anchor alone.
    No anchor: the fixed-point rung is the one target other fixed-point targets declare as
    their twin (or the only fixed-point target), its checks are those targets. Float rungs
    (``subset`` only, with a check): the float targets on a check rung's engine, which
    separates the engine's own drift from quantization's. ``subset`` False: no subset rungs."""
    usable = [n for n in target_names() if _available(n)]
    if anchor is not None:
        caps = capabilities_of(anchor)
        if caps.arithmetic != "fixed":
            raise DeployError(f"drift ladder: target '{anchor}' is not fixed point (arithmetic {caps.arithmetic})")
        head, checks = (caps.bit_exact_twin, [anchor]) if caps.bit_exact_twin else (anchor, [])
    else:
        fixed = [n for n in usable if capabilities_of(n).arithmetic == "fixed"]
        heads = sorted({capabilities_of(n).bit_exact_twin for n in fixed} & set(fixed)) or fixed
        if len(heads) != 1:
            raise DeployError(f"drift ladder: cannot choose the fixed-point rung among {', '.join(heads) or 'none'} "
                              f"by capability; name the rungs (--targets)")
        (head,) = heads
        checks = _twins_of(head, fixed)
    if not subset:
        return [head]
    engines = {capabilities_of(n).engine for n in checks}
    floats = [n for n in usable if capabilities_of(n).arithmetic == "float" and capabilities_of(n).engine in engines]
    return floats + checks + [head]


@dataclass
class EmulatorMatch(Record):
    """A fixed-point-check rung against the fixed-point rung's run of the same samples (samples
    are independent). The name is the JSON's: first made for loihi2-sim against the emulator."""
    spike_mismatches: int
    compared_spikes: int
    logits_max_abs_diff: float
    bit_exact: bool

    def __post_init__(self):
        require(is_count(self.spike_mismatches) and self.spike_mismatches <= self.compared_spikes,
                f"{self.spike_mismatches} of {self.compared_spikes} spikes differ")
        require(not self.bit_exact or self.spike_mismatches == 0, "bit-exact with differing spikes")


@dataclass
class Rung(Record):
    """One rung: a target's run of (a prefix of) the evaluation set, and what it plays (``role``)."""
    rung: str  # shown name
    role: str  # one of ROLES
    target: str  # targets.PYTORCH_MODEL or a registered target name
    samples: int
    seconds: float
    accuracy: Optional[float] = None  # None without labels
    # against PyTorch (every role but PyTorch's)
    prediction_agreement_with_torch: Optional[float] = None
    min_layer_identical_pct: Optional[float] = None
    total_mismatches: Optional[int] = None
    first_divergence: Optional[FirstDivergence] = None
    layers: Optional[List[LayerComparison]] = None
    processes: Optional[int] = None  # Lava rungs: processes and pipeline latency (steps)
    pipeline_latency: Optional[int] = None
    emulator_match: Optional[EmulatorMatch] = None  # fixed-point-check
    saturation_events: Optional[int] = None  # fixed-point: 24-bit wraps/clips at run time

    def __post_init__(self):
        require(self.role in ROLES, f"rung role '{self.role}' (known: {', '.join(ROLES)})")
        require(is_count(self.samples) and self.samples > 0 and is_fraction(self.accuracy),
                f"{self.rung}: {self.samples} samples, accuracy {self.accuracy}")
        compared = self.role != PYTORCH
        require((self.layers is not None) == compared and (self.total_mismatches is not None) == compared,
                f"{self.rung}: a comparison with PyTorch exactly when the rung is not PyTorch's")
        require((self.emulator_match is not None) == (self.role == FIXED_POINT_CHECK),
                f"{self.rung}: the emulator match belongs to the fixed-point Lava rung")

    @classmethod
    def compared(cls, name: str, role: str, target: str, rep: Comparison, y, seconds: float, **extra) -> "Rung":
        """A rung from its comparison with PyTorch; ``y``: the evaluation labels (or None)."""
        return cls(name, role, target, rep.samples, seconds,
                   accuracy=None if y is None else accuracy(rep.predictions_target, y[:rep.samples]),
                   prediction_agreement_with_torch=rep.prediction_agreement,
                   min_layer_identical_pct=rep.min_layer_identical_pct, total_mismatches=rep.total_mismatches,
                   first_divergence=rep.first_divergence, layers=rep.layers, **extra)


@dataclass
class Evaluation(Record):
    source: str
    samples: int


@dataclass
class LadderRuns:
    """The objects behind a ladder's numbers, for further reports (deployment report): the graph
    read back from its file, the quantized network, the inputs, labels and the emulator's run."""
    graph: object
    quant: object
    x: torch.Tensor
    y: Optional[torch.Tensor]
    emulator: object


@dataclass
class DriftLadder(Record):
    evaluation: Evaluation
    dssa: str
    calibration: CalibrationMeta  # how the fixed-point rungs' network was calibrated
    rungs: List[Rung]
    quantization: QuantizationSection
    saturation: Dict[str, Dict[str, int]]  # node -> {event kind: count}, fixed point at run time
    goal_max_drop_pp: float = MAX_ACCURACY_DROP_PP
    # derived from the rungs (__post_init__)
    accuracy_drop_pp: Optional[float] = field(init=False)
    accuracy_goal_met: Optional[bool] = field(init=False)
    emulator_bit_exact_vs_lava: Optional[bool] = field(init=False)
    runs: Optional[LadderRuns] = field(default=None, repr=False, compare=False, metadata={"json": False})

    def __post_init__(self):
        roles = [r.role for r in self.rungs]
        require(roles.count(PYTORCH) == 1 and roles.count(FIXED_POINT) == 1,
                f"rungs {roles}: want one PyTorch and one fixed-point rung")
        acc_t, acc_f = self.pytorch.accuracy, self.fixed_point.accuracy
        self.accuracy_drop_pp = None if acc_t is None else 100.0 * (acc_t - acc_f)
        self.accuracy_goal_met = None if acc_t is None else self.accuracy_drop_pp <= self.goal_max_drop_pp
        checks = self.with_role(FIXED_POINT_CHECK)
        self.emulator_bit_exact_vs_lava = all(r.emulator_match.bit_exact for r in checks) if checks else None

    def with_role(self, role: str) -> List[Rung]:
        """Every rung playing ``role``, in ladder order (empty: none, e.g. no Lava run)."""
        require(role in ROLES, f"rung role '{role}' (known: {', '.join(ROLES)})")
        return [r for r in self.rungs if r.role == role]

    def find(self, role: str) -> Optional[Rung]:
        """The first rung playing ``role``, or None when the ladder has none."""
        return next(iter(self.with_role(role)), None)

    @property
    def pytorch(self) -> Rung:
        """The PyTorch model's rung, the one every other is compared with."""
        return self.find(PYTORCH)

    reference = pytorch  # its former name (callers of the API)

    @property
    def fixed_point(self) -> Rung:
        return self.find(FIXED_POINT)

    def failures(self) -> List[str]:
        """What makes the fixed-point verification fail (empty: it passes)."""
        bad = [f"{self.dssa}: {r.rung} ({r.target}) differs from PyTorch"
               for r in self.with_role(FLOAT) if r.total_mismatches]
        fixed = self.fixed_point
        bad += [f"{self.dssa}: {fixed.rung} ({fixed.target}) is not bit-exact with {r.rung} ({r.target})"
                for r in self.with_role(FIXED_POINT_CHECK) if not r.emulator_match.bit_exact]
        if self.accuracy_goal_met is False:
            bad.append(f"{self.dssa}: fixed-point accuracy drop {self.accuracy_drop_pp:.2f} pp > "
                       f"{self.goal_max_drop_pp:g} pp")
        return bad


def choose_rungs(targets: Optional[Sequence[str]] = None, subset: bool = True) -> List[RungChoice]:
    """The ladder's rungs: the named targets, or (None) the ones chosen by capability; ``subset``
    False: there are no samples for the float and check rungs, so naming one is an error."""
    choices = assign_roles(rungs_by_capability(subset=subset) if targets is None else targets)
    named = [c.target for c in choices if c.role in SUBSET_ROLES]
    if named and not subset:
        raise DeployError(f"rung(s) {', '.join(named)} run on the first --lava-samples, and there are none "
                          f"(--lava-samples 0)")
    return choices


def drift_ladder(model, eval_samples: int = 0, lava_samples: int = 10, calib_samples: int = 128,
                 dssa: str = "fused", margin: float = MARGIN, seed: int = 0, progress=None, lava: bool = True,
                 keep_runs: bool = False, targets: Optional[Sequence[str]] = None, inputs=None,
                 calibration=None, sizing=None) -> DriftLadder:
    """``eval_samples`` 0: the full held-out digits split (random inputs: 32). ``targets``: the
    rungs' targets (roles from ``assign_roles``); None: chosen by capability
    (``rungs_by_capability``). ``lava`` False (or ``lava_samples`` 0): no subset rungs. ``keep_runs``:
    keep the objects behind the numbers in ``DriftLadder.runs`` (not written to JSON).
    ``inputs``: the evaluation set (x, labels or None, description) instead of the built-in one
    (``eval_samples`` is then ignored); ``calibration``: flows.fixed_point.CalibrationData to
    quantize on (never the evaluation samples) instead of the flow's choice. ``sizing``: the job's
    sizing step (api/sizing.py: ``size_rungs`` before the PyTorch record, ``size_run`` before each
    rung's run); None: not sized here (the caller sized it)."""
    choices = choose_rungs(targets, subset=bool(lava and lava_samples))
    with model_in_dtype(model, torch.float64) as m:
        return _ladder(m.eval(), eval_samples, lava_samples, calib_samples, dssa, margin, seed, progress, choices,
                       keep_runs, inputs, calibration, sizing)


def _run_options(target: str, dssa: str) -> dict:
    """The ladder's run options a target takes: the DSSA lowering, if it lowers products."""
    return {"dssa": dssa} if "dssa" in capabilities_of(target).options else {}


def rung_sizes(choices, graph, n_eval: int, lava_samples: int, T: int, dssa: str, element_bytes: int, cache=None):
    """[(rung, samples, its run's Estimate, bytes the ladder holds beside it)] of every rung with a
    cost model, sized from the plan alone (a fixed-point rung's network has its plan's sizes),
    beside what the ladder holds when it runs: the packed PyTorch record, the record's forward
    chunk (TORCH_CHUNK_BYTES, a bound on the pages not yet returned to the system; dvsg, 48
    samples: 3.2 GiB sized, ~2.3 GiB measured) and, for the rungs on the first samples, the
    fixed-point rung's spike record (1 B per neuron). ``cache``: the graph's costs and plans, kept
    between calls on one graph."""
    from resformer_deploy.analysis.equivalence import (TORCH_CHUNK_BYTES, estimate_run, packed_record_bytes,
                                                       torch_forward_bytes)
    from resformer_deploy.flows import lava_plan
    from resformer_deploy.flows.artifacts import Prepared
    from exporters.interpreter_costs import graph_costs
    cache = {} if cache is None else cache
    if "costs" not in cache:
        cache["costs"] = graph_costs(graph)
    c, plans = cache["costs"], cache.setdefault("plans", {})
    held = (packed_record_bytes(c, T, n_eval, element_bytes)
            + min(TORCH_CHUNK_BYTES, torch_forward_bytes(graph, T, n_eval, element_bytes)))
    out = []
    for ch in choices:
        opts = _run_options(ch.target, dssa)
        key = opts.get("dssa", "fused")
        if key not in plans:  # one plan per lowering (not setdefault: it would plan on every call)
            plans[key] = lava_plan(graph, key)
        n = n_eval if ch.role == FIXED_POINT else lava_samples
        beside = held + (c.neurons * n_eval * T if ch.role in SUBSET_ROLES else 0)
        est = estimate_run(get_target(ch.target), graph, n, T, prepared=Prepared.sizing(plans[key]), **opts)
        if est is not None:
            out.append((ch, n, est, beside))
    return out


def ladder_advice(roles, n_eval: int, lava_samples: int, dssa: str) -> str:
    """The options that shrink the rungs that do not fit (``roles``)."""
    from resformer_deploy.util.memory_budget import ENV
    opts = []
    if roles & set(SUBSET_ROLES) and lava_samples:
        opts.append(f"a smaller --lava-samples (now {lava_samples}; 0 runs the fixed-point rung only)")
    if n_eval > 1:
        opts.append(f"a smaller --eval-samples (now {n_eval})")
    if dssa == "synaptic":
        opts.append("--dssa fused")
    return "use " + (" or ".join(opts) if opts else f"a smaller --T, or set {ENV} (bytes) if more memory is free")


def default_eval_count(in_shape) -> int:
    """The ladder's evaluation samples when none are given: the held-out digits split, else 32
    random inputs."""
    return len(load_digits_split().y_test) if is_digits_input(in_shape) else 32


def _read_back(m):
    """The float64 graph a user deploys: exported, written to a NIR file and read back."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model.nir"
        write_nir(export_model(m, "float64"), path)
        return read_nir(path)


def fit_ladder(model, lowerings: Sequence[str], n_eval: int, lava_samples: int, asked: set, say,
               targets: Optional[Sequence[str]] = None, lava: bool = True) -> tuple:
    """(lowerings, n_eval, lava_samples) of drift ladders that fit the memory budget: what the
    user did not ask for (``asked`` holds those given of "dssa", "eval", "lava") is lowered, each
    change told by ``say``: a lowering of ``--dssa both`` that does not fit even on the fewest
    samples is left out; then the evaluation samples, then the Lava samples, are lowered to the
    most that fit. What was asked for stays (api.sizing.size_rungs refuses it, with advice)."""
    from resformer_deploy.model.summary import LADDER_RECORD_BYTES_PER_NEURON_STEP, neurons_per_step
    from resformer_deploy.util.memory_budget import budget_bytes, size
    from resformer_deploy.analysis.sizing import largest_that_fits

    choices = choose_rungs(targets, subset=bool(lava and lava_samples))
    T, budget = int(model.config.T), budget_bytes()
    per_sample_record = neurons_per_step(model) * T * LADDER_RECORD_BYTES_PER_NEURON_STEP
    if per_sample_record > budget:  # not even one sample's records: the caller's check refuses it
        return list(lowerings), n_eval, lava_samples
    with model_in_dtype(model, torch.float64) as m:
        graph = _read_back(m.eval())
    cache = {}

    def need(e: int, lv: int, dssa: str) -> int:
        sizes = rung_sizes(choices, graph, e, lv, T, dssa, 8, cache)
        return max([est.peak_bytes + beside for _, _, est, beside in sizes] + [int(per_sample_record * e)])

    def fits(e: int, lv: int, lows) -> bool:
        return all(need(e, min(lv, e), d) <= budget for d in lows)

    lows = list(lowerings)
    lava_floor = lava_samples if "lava" in asked else min(1, lava_samples)
    if len(lows) > 1 and "dssa" not in asked:
        e0 = n_eval if "eval" in asked else 1
        keep = [d for d in lows if fits(e0, lava_floor, [d])]
        if keep and len(keep) < len(lows):
            for d in (d for d in lows if d not in keep):
                worst = need(e0, min(lava_floor, e0), d)
                say(f"note: the default --dssa both: the {d} ladder needs about {size(worst)} on {e0} sample(s) > "
                    f"memory budget {size(budget)}; running --dssa {', '.join(keep)} only")
            lows = keep
    if "eval" not in asked and not fits(n_eval, lava_floor, lows):
        most = largest_that_fits(lambda e: fits(e, lava_floor, lows), n_eval - 1)
        if most:
            say(f"note: the default {n_eval} evaluation samples do not fit the memory budget {size(budget)}: "
                f"running {most}, the most that fit")
            n_eval = most
    if "lava" not in asked and lava_samples:
        if lava_samples > n_eval:  # a default beyond the evaluation samples: all of them
            say(f"note: the default --lava-samples {lava_samples} exceeds the {n_eval} evaluation samples: "
                f"running {n_eval}")
            lava_samples = n_eval
        if not fits(n_eval, lava_samples, lows):
            most = largest_that_fits(lambda lv: fits(n_eval, lv, lows), lava_samples - 1)
            if most:
                say(f"note: the default --lava-samples {lava_samples} does not fit the memory budget "
                    f"{size(budget)}: running {most}, the most that fit")
                lava_samples = most
    return lows, n_eval, lava_samples


# a chunk's spike records as bool (1 B per value) before they are packed: dvsg (104 MB per sample) runs 5 at a time
RECORD_CHUNK_BYTES = 2 ** 29


def run_packed(target: str, graph, x, T: int, **request) -> RunResult:
    """``target``'s run of ``x`` with spike records, in chunks of samples whose records are packed
    as soon as each chunk is done (PackedMasks, 1 bit per value): dvsg's 48 ladder samples hold
    0.58 GiB of spikes instead of 4.7 GiB as bool. Samples are independent, so the output, spikes
    and saturation counts are those of one run over ``x``. ``request``: RunRequest.of's keywords."""
    from exporters.interpreter_costs import graph_costs
    step = max(1, RECORD_CHUNK_BYTES // max(graph_costs(graph).neurons * T, 1))
    tgt, outputs, spikes, saturation, dtypes = get_target(target), [], [], {}, {}
    stats = None
    for lo in range(0, len(x), step):
        res = tgt.run(RunRequest.of(graph, x[lo:lo + step], T, **request))
        packed = PackedMasks()
        for name in list(res.spikes):  # popped: each layer's bool record freed once packed
            packed.put(name, res.spikes.pop(name))
        outputs.append(res.output)
        spikes.append(packed)
        stats = res.stats
        for node, kinds in (res.stats.saturation or {}).items():
            into = saturation.setdefault(node, {})
            for kind, count in kinds.items():
                into[kind] = into.get(kind, 0) + count
        for node, used in (res.stats.exact_dtypes or {}).items():  # "a/b": the dtypes a node ran in
            dtypes[node] = "/".join(sorted(set(dtypes.get(node, "").split("/") + used.split("/")) - {""}))
        del res
    stats = dataclasses.replace(stats, saturation=saturation if stats.saturation is not None else None,
                                exact_dtypes=dtypes if stats.exact_dtypes is not None else None)
    return RunResult(output=torch.cat(outputs, dim=1), spikes=PackedMasks.concat(spikes), stats=stats)


def _ladder(m, eval_samples, lava_samples, calib_samples, dssa, margin, seed, progress, choices, keep_runs,
            inputs=None, calibration=None, sizing=None):
    cfg = m.config
    in_shape = (cfg.in_channels, cfg.img_size, cfg.img_size)
    dvs = cfg.T if cfg.neuron == "plif" else 0
    if inputs is not None:
        eval_samples = len(inputs[0])
    n_eval = eval_samples or default_eval_count(in_shape)
    subset = [c for c in choices if c.role in SUBSET_ROLES]
    (head,) = [c for c in choices if c.role == FIXED_POINT]
    checks = [c for c in subset if c.role == FIXED_POINT_CHECK]
    for c in checks:  # the bit-exact comparison needs one quantized network for both
        if flow_of(c.target).name != flow_of(head.target).name:
            raise DeployError(f"drift ladder: {c.target} is prepared by flow '{flow_of(c.target).name}', the "
                              f"fixed-point rung {head.target} by '{flow_of(head.target).name}': a bit-exact "
                              f"check needs both to run one quantized network")
    x, y, source = inputs if inputs is not None else inputs_for(in_shape, n_eval, seed, dvs_steps=dvs)
    if subset and lava_samples > n_eval:
        raise DeployError(f"--lava-samples {lava_samples} exceeds the {n_eval} evaluation samples")
    x = x.double()
    say = progress or (lambda msg: None)
    graph = _read_back(m)
    if sizing is not None:
        sizing.size_rungs(choices, graph, n_eval, lava_samples if subset else 0, cfg.T, dssa, x.element_size(),
                          say)

    def size_run(name, n, prepared, opts):
        if sizing is not None:
            sizing.size_run(get_target(name), graph, n, cfg.T, f"drift ladder: {n} samples", prepared=prepared,
                            say=say, **opts)
    chunk = torch_record_batch(graph, cfg.T, x.element_size())
    say(f"PyTorch float64: {len(x)} samples ({min(chunk, len(x))} at a time), recording every LIF layer")
    t0 = time.time()
    rec = record_torch(m, x, batch=chunk)
    t_torch = time.time() - t0
    say(f"calibrating on {calibration.source if calibration is not None else f'{calib_samples} samples'}")
    xs = x[:lava_samples] if subset else None
    # one quantization (the fixed-point rung's flow) for every fixed-point rung; with check rungs it
    # also lowers the products for them (dssa synaptic), verified on the subset's samples
    fixed = prepare(head.target, graph, samples=xs, T=cfg.T, dssa=dssa, margin=margin, calib_samples=calib_samples,
                    lower_products=bool(checks), calibration=calibration)
    qn = fixed.quantized_net
    rungs = [Rung("PyTorch float64", PYTORCH, PYTORCH_MODEL, n_eval, t_torch, accuracy=accuracy(rec.logits.mean(0), y))]
    say(f"{head.target}: {head.label}, {n_eval} samples")
    size_run(head.target, n_eval, fixed, _run_options(head.target, dssa))
    t0 = time.time()
    emu = run_packed(head.target, graph, x, cfg.T, prepared=fixed, **_run_options(head.target, dssa))
    t_emu = time.time() - t0
    saturation = emu.stats.saturation or {}
    emu_rung = Rung.compared(head.label, FIXED_POINT, head.target, compare_run(graph, rec, emu), y, t_emu,
                             saturation_events=sum(sum(v.values()) for v in saturation.values()))
    rec_s = rec.head(lava_samples) if subset else None  # a copy: the whole record is let go before Lava starts
    del rec
    if subset:
        emu_spikes = emu.spikes.head(lava_samples)
        for c in subset:
            say(f"{c.target}: {c.label}, {lava_samples} samples")
            t0 = time.time()
            opts = _run_options(c.target, dssa)
            prepared = fixed if c.role == FIXED_POINT_CHECK else prepare(
                c.target, graph, samples=xs, T=cfg.T, **flow_options(c.target, opts))
            size_run(c.target, lava_samples, prepared, opts)
            res = get_target(c.target).run(RunRequest.of(graph, xs, cfg.T, prepared=prepared, **opts))
            extra = {"processes": res.stats.processes, "pipeline_latency": res.stats.latency}
            if c.role == FIXED_POINT_CHECK:  # the fixed-point rung's run of the same samples (samples are independent)
                e_out = emu.output[:, :lava_samples]
                both = [n for n in res.spikes if n in emu_spikes]  # bit-exact only if both record the same layers
                mism = sum(int((emu_spikes[n] != res.spikes[n]).sum()) for n in both)
                extra["emulator_match"] = EmulatorMatch(
                    spike_mismatches=mism, compared_spikes=sum(int(res.spikes[n].numel()) for n in both),
                    logits_max_abs_diff=float((e_out - res.output).abs().max()),
                    bit_exact=mism == 0 and set(res.spikes) == set(emu.spikes)
                    and bool(torch.equal(e_out, res.output.to(e_out.dtype))))
            rungs.append(Rung.compared(c.label, c.role, c.target, compare_run(graph, rec_s, res), y, time.time() - t0,
                                       **extra))
    rungs.append(emu_rung)
    return DriftLadder(
        evaluation=Evaluation(source, n_eval), dssa=dssa, calibration=CalibrationMeta.of(qn.calibration), rungs=rungs,
        quantization=qn.quantization_report(),
        saturation=saturation, runs=LadderRuns(graph, qn, x, y, emu) if keep_runs else None)
