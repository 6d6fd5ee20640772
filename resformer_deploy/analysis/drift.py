"""The drift ladder: PyTorch float -> float Lava -> fixed-point Lava, measured rung by rung.

Rungs, in this order (each but the first compared with the PyTorch model, per LIF layer, with
the first divergence); each says its role, and readers find rungs by role, never by position:
1. ``reference``: PyTorch float64 on the evaluation set (0: the full held-out digits split):
   accuracy.
2. ``float``: float Lava (lava-cpu) on the first ``lava_samples``: must be exact.
3. ``fixed-point-check``: fixed-point Lava (loihi2-sim, Loihi2SimCfg fixed_pt) on the first
   ``lava_samples``: the same comparison, plus bit-exactness against the emulator on those
   samples, which is what lets rung 4 stand for Lava on the whole set.
4. ``fixed-point``: the bit-accurate emulator (loihi2-emu) on the whole evaluation set:
   accuracy, prediction agreement, per-layer spike agreement, saturation counts.
Rungs 2 and 3 are left out without Lava (``lava=False`` or ``lava_samples=0``).
Calibration (quantization scales) uses the training split, never the evaluation data.
"""
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import torch

from exporters.nir_io import read_nir, write_nir
from exporters.torch_to_nir import export_model
from targets import get_target

from resformer_deploy.data.digits import is_digits_input, load_digits_split
from resformer_deploy.errors import DeployError
from resformer_deploy.flows import prepare
from resformer_deploy.fixed_point.quantize import MARGIN
from resformer_deploy.model.precision import model_in_dtype
from resformer_deploy.training.loop import accuracy
from resformer_deploy.util.records import Record, is_count, is_fraction, require
from resformer_deploy.analysis.equivalence import inputs_for
from resformer_deploy.analysis.compare import Comparison, FirstDivergence, LayerComparison, compare_run, record_torch

MAX_ACCURACY_DROP_PP = 1.0
REFERENCE, FLOAT, FIXED_POINT_CHECK, FIXED_POINT = "reference", "float", "fixed-point-check", "fixed-point"
ROLES = (REFERENCE, FLOAT, FIXED_POINT_CHECK, FIXED_POINT)  # drift_ladder's order; readers go by role


@dataclass
class EmulatorMatch(Record):
    """The emulator against fixed-point Lava on the same samples (samples are independent)."""
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
    target: str  # "torch" or a registered target name
    samples: int
    seconds: float
    accuracy: Optional[float] = None  # None without labels
    # against PyTorch (every role but the reference)
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
        compared = self.role != REFERENCE
        require((self.layers is not None) == compared and (self.total_mismatches is not None) == compared,
                f"{self.rung}: a comparison with PyTorch exactly when the rung is not the reference")
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
    calibration: dict
    rungs: List[Rung]
    quantization: dict  # groups, layers, weights_or_biases_clipped
    saturation: dict  # node -> {event kind: count}, fixed point at run time
    goal_max_drop_pp: float = MAX_ACCURACY_DROP_PP
    # derived from the rungs (__post_init__)
    accuracy_drop_pp: Optional[float] = field(init=False)
    accuracy_goal_met: Optional[bool] = field(init=False)
    emulator_bit_exact_vs_lava: Optional[bool] = field(init=False)
    runs: Optional[LadderRuns] = field(default=None, repr=False, compare=False, metadata={"json": False})

    def __post_init__(self):
        roles = [r.role for r in self.rungs]
        require(len(set(roles)) == len(roles) and REFERENCE in roles and FIXED_POINT in roles,
                f"rungs {roles}: want a reference and a fixed-point rung, and each role at most once")
        acc_t, acc_f = self.reference.accuracy, self.fixed_point.accuracy
        self.accuracy_drop_pp = None if acc_t is None else 100.0 * (acc_t - acc_f)
        self.accuracy_goal_met = None if acc_t is None else self.accuracy_drop_pp <= self.goal_max_drop_pp
        check = self.find(FIXED_POINT_CHECK)
        self.emulator_bit_exact_vs_lava = None if check is None else check.emulator_match.bit_exact

    def find(self, role: str) -> Optional[Rung]:
        """The rung playing ``role``, or None when the ladder has none (no Lava run)."""
        require(role in ROLES, f"rung role '{role}' (known: {', '.join(ROLES)})")
        return next((r for r in self.rungs if r.role == role), None)

    @property
    def reference(self) -> Rung:
        return self.find(REFERENCE)

    @property
    def fixed_point(self) -> Rung:
        return self.find(FIXED_POINT)

    def failures(self) -> List[str]:
        """What makes the fixed-point verification fail (empty: it passes)."""
        bad = []
        flt = self.find(FLOAT)
        if flt is not None and flt.total_mismatches:
            bad.append(f"{self.dssa}: float Lava differs from PyTorch")
        if self.emulator_bit_exact_vs_lava is False:
            bad.append(f"{self.dssa}: emulator is not bit-exact with fixed-point Lava")
        if self.accuracy_goal_met is False:
            bad.append(f"{self.dssa}: fixed-point accuracy drop {self.accuracy_drop_pp:.2f} pp > "
                       f"{self.goal_max_drop_pp:g} pp")
        return bad


def drift_ladder(model, eval_samples: int = 0, lava_samples: int = 10, calib_samples: int = 128,
                 dssa: str = "fused", margin: float = MARGIN, seed: int = 0, progress=None, lava: bool = True,
                 keep_runs: bool = False) -> DriftLadder:
    """``eval_samples`` 0: the full held-out digits split (random inputs: 32). ``keep_runs``: keep
    the objects behind the numbers in ``DriftLadder.runs`` (not written to JSON)."""
    with model_in_dtype(model, torch.float64) as m:
        return _ladder(m.eval(), eval_samples, lava_samples, calib_samples, dssa, margin, seed, progress, lava,
                       keep_runs)


def _ladder(m, eval_samples, lava_samples, calib_samples, dssa, margin, seed, progress, lava, keep_runs):
    cfg = m.config
    in_shape = (cfg.in_channels, cfg.img_size, cfg.img_size)
    dvs = cfg.T if cfg.neuron == "plif" else 0
    n_eval = eval_samples or (len(load_digits_split().y_test) if is_digits_input(in_shape) else 32)
    x, y, source = inputs_for(in_shape, n_eval, seed, dvs_steps=dvs)
    if lava_samples > n_eval:
        raise DeployError(f"--lava-samples {lava_samples} exceeds the {n_eval} evaluation samples")
    x = x.double()
    say = progress or (lambda msg: None)
    t0 = time.time()
    rec = record_torch(m, x)
    t_torch = time.time() - t0
    with tempfile.TemporaryDirectory() as d:  # what a user deploys: the file read back
        path = Path(d) / "model.nir"
        write_nir(export_model(m, "float64"), path)
        graph = read_nir(path)
    say(f"calibrating on {calib_samples} samples")
    lava_rungs = bool(lava and lava_samples)
    xs = x[:lava_samples] if lava_rungs else None
    # one quantization (loihi2-sim's flow) for the emulator and fixed-point Lava; with Lava rungs it
    # also lowers the products for fixed-point Lava (dssa synaptic), verified on the Lava samples
    fixed = prepare("loihi2-sim", graph, samples=xs, T=cfg.T, dssa=dssa, margin=margin, calib_samples=calib_samples,
                    lower_products=lava_rungs)
    qn = fixed["quantized_net"]
    rungs = [Rung("PyTorch float64", REFERENCE, "torch", n_eval, t_torch, accuracy=accuracy(rec.logits.mean(0), y))]
    say(f"fixed-point emulator on {n_eval} samples")
    t0 = time.time()
    info = {}
    emu = get_target("loihi2-emu").run(graph, x, cfg.T, prepared=fixed, info=info)
    t_emu = time.time() - t0
    saturation = info.get("saturation", {})
    emu_rung = Rung.compared("fixed-point emulator (bit-accurate)", FIXED_POINT, "loihi2-emu",
                             compare_run(graph, rec, emu), y, t_emu,
                             saturation_events=sum(sum(v.values()) for v in saturation.values()))
    if lava_rungs:
        rec_s = rec.head(lava_samples)
        for name, role, target in (("float Lava", FLOAT, "lava-cpu"), ("fixed-point Lava", FIXED_POINT_CHECK,
                                                                        "loihi2-sim")):
            say(f"{name} ({target}, Loihi2SimCfg) on {lava_samples} samples")
            t0 = time.time()
            tinfo = {}
            prepared = fixed if role == FIXED_POINT_CHECK else prepare(target, graph, samples=xs, T=cfg.T, dssa=dssa)
            res = get_target(target).run(graph, xs, cfg.T, dssa=dssa, prepared=prepared, info=tinfo)
            extra = {"processes": tinfo.get("processes"), "pipeline_latency": tinfo.get("latency")}
            if role == FIXED_POINT_CHECK:  # the emulator's run of the same samples (samples are independent)
                e_out = emu.output[:, :lava_samples]
                mism = sum(int((emu.spikes[n][:, :lava_samples] != res.spikes[n]).sum()) for n in res.spikes)
                extra["emulator_match"] = EmulatorMatch(
                    spike_mismatches=mism, compared_spikes=sum(int(s.numel()) for s in res.spikes.values()),
                    logits_max_abs_diff=float((e_out - res.output).abs().max()),
                    bit_exact=mism == 0 and bool(torch.equal(e_out, res.output.to(e_out.dtype))))
            rungs.append(Rung.compared(name, role, target, compare_run(graph, rec_s, res), y, time.time() - t0,
                                       **extra))
    rungs.append(emu_rung)
    return DriftLadder(
        evaluation=Evaluation(source, n_eval), dssa=dssa, calibration=qn.calibration, rungs=rungs,
        quantization=qn.quantization_report(),
        saturation=saturation, runs=LadderRuns(graph, qn, x, y, emu) if keep_runs else None)
