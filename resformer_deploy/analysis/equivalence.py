"""End-to-end verification: checkpoint -> NIR file -> target run -> layer-by-layer comparison."""
import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Optional

import torch

from exporters.nir_io import read_nir, write_nir
from exporters.torch_to_nir import export_model
from targets import DEFAULT_TARGET, get_target

from resformer_deploy.flows import flow_options, prepare

from resformer_deploy.data.digits import is_digits_input, load_digits_split
from resformer_deploy.errors import DeployError
from resformer_deploy.model.precision import model_in_dtype
from resformer_deploy.model.summary import PACKED_RECORD_BYTES_PER_NEURON_STEP, check_recording
from resformer_deploy.util.memory_budget import MemoryBudgetError, budget_bytes, check_bytes, duration, size
from resformer_deploy.util.records import require
from resformer_deploy.analysis.compare import Comparison, SpikeComparer, compare_run, lif_modules, record_torch
from targets.base import Estimate, RunRequest

LOGIT_REL_TOL = 1e-4


@dataclass
class EquivalenceReport(Comparison):
    """A verification: the comparison, what was run, and the verdict it earns (see ``verdict``)."""
    target: str = ""
    precision: str = "float64"
    form: str = "extension"
    nir_bytes: int = 0
    target_options: dict = field(default_factory=dict)
    target_info: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)  # torch, export_write_read, target
    verdict: str = field(init=False)
    passed: bool = field(init=False)

    def __post_init__(self):
        super().__post_init__()
        require(self.precision in ("float64", "float32"), f"precision '{self.precision}'")
        self.verdict = verdict(self, self.precision)
        self.passed = self.verdict != "fail"

    @classmethod
    def of(cls, comparison: Comparison, **run) -> "EquivalenceReport":
        return cls(**{f.name: getattr(comparison, f.name) for f in dataclasses.fields(comparison)}, **run)


def inputs_for(in_shape, samples: int, seed: int = 0, dvs_steps: int = 0):
    """(x, labels or None, description): held-out digits for [1, 8, 8] inputs, seeded random
    images otherwise (non-negative event-count frames [B, T, ...] when ``dvs_steps``)."""
    in_shape = tuple(int(v) for v in in_shape)
    if samples < 1:  # slicing would silently give a different number (x[:-1])
        raise DeployError(f"samples must be >= 1, got {samples}")
    if is_digits_input(in_shape):
        split = load_digits_split()
        if samples > len(split.y_test):
            raise DeployError(f"only {len(split.y_test)} held-out digits samples, {samples} requested")
        return split.x_test[:samples], split.y_test[:samples], "digits held-out split"
    n = samples * max(dvs_steps, 1) * prod(in_shape)
    # float32 inputs plus the float64 copy the targets run on: 12 bytes per value
    check_bytes(12 * n, f"inputs: {samples:,} samples of {'x'.join(map(str, in_shape))}"
                        f"{f' x {dvs_steps} frames' if dvs_steps else ''} are {n:,} values")
    g = torch.Generator().manual_seed(seed)
    if dvs_steps:
        return (torch.poisson(torch.full((samples, dvs_steps, *in_shape), 0.5), generator=g), None,
                "random DVS frames")
    return torch.randn(samples, *in_shape, generator=g), None, f"random N(0,1) images (seed {seed})"


def verification_inputs(model, samples: int, seed: int = 0, packed: bool = False, data=None):
    """Inputs for a model: the first ``samples`` of ``data`` (analysis.data_inputs.ModelData, the
    user's --data) if given, else the digits split for digits-shaped models, DVS frames for PLIF
    (dvsg), random images otherwise. ``packed``: the caller keeps only verify's packed PyTorch
    record (else whole records, as ops)."""
    cfg = model.config
    if packed:
        check_recording(model, samples, PACKED_RECORD_BYTES_PER_NEURON_STEP,
                        "the packed PyTorch record (spikes and near-threshold masks)")
    else:  # ops records every neuron, step and sample
        check_recording(model, samples)
    if data is not None:
        return data.take(samples, "--samples")[0], data.describe()
    x, _, source = inputs_for((cfg.in_channels, cfg.img_size, cfg.img_size), samples, seed,
                              dvs_steps=cfg.T if cfg.neuron == "plif" else 0)
    return x, source


FORM_FLOWS = {"dense": ("dense-form", "dense_form"), "standard": ("standard-form", "standard_form")}


def lower(graph, form: str):
    """The graph in ``form``: 'extension' as exported, else through its flow (flows.FORM_FLOWS)."""
    if form == "extension":
        return graph
    if form not in FORM_FLOWS:
        raise DeployError(f"unknown graph form '{form}' (extension, {', '.join(FORM_FLOWS)})")
    from resformer_deploy.flows import run_flow
    flow, artifact = FORM_FLOWS[form]
    return run_flow(flow, {"nir_graph": graph})[artifact]


# ------------------------------------------------------------------------------ cost and budget
# The PyTorch model runs all T steps of a layer at once ([T, B, ...]); measured with the ti variant
# at 224x224, 8 samples, float64 (/usr/bin/time -v of record_torch alone): peak RSS rose by 6.9x the
# largest node's values x T x B x element size (plain forward), 7.4x with the record's hooks.
TORCH_FORWARD_FACTOR = 7.5
TORCH_SECONDS_PER_REFERENCE = 0.8  # same machine and run: record_torch took 0.75x the reference's run
# the comparison of one layer's step: PyTorch spikes and near mask unpacked, the target's, diff,
# near, |v - threshold| (element size) and per-sample sums: bytes per compared value beyond e
COMPARE_BYTES_PER_VALUE = 6


# a PyTorch record's forward runs in chunks of samples whose activations take at most this
TORCH_CHUNK_BYTES = 2 * 2 ** 30


def torch_forward_bytes(graph, T: int, n: int, element_bytes: int) -> int:
    """Peak memory a PyTorch forward (with the record's hooks) adds for n samples at once."""
    from exporters.interpreter_costs import graph_costs
    c = graph_costs(graph)
    return int(TORCH_FORWARD_FACTOR * max(c.values.values()) * T * n * element_bytes)


def packed_record_bytes(costs, T: int, n: int, element_bytes: int) -> int:
    """The packed PyTorch record of n samples (analysis/compare.py TorchRecord): spikes and
    near-threshold masks, 1 bit each per neuron, sample and step, and the logits of every step;
    ``costs``: targets.reference.graph_costs of the graph."""
    return int(2 * ((costs.neurons * n + 7) // 8) * T + T * n * costs.output_values * element_bytes)


def torch_record_batch(graph, T: int, element_bytes: int) -> int:
    """Samples per forward of record_torch so the forward stays within TORCH_CHUNK_BYTES."""
    return max(1, TORCH_CHUNK_BYTES // max(torch_forward_bytes(graph, T, 1, element_bytes), 1))


@dataclass(frozen=True)
class VerificationEstimate:
    """What a verification will cost, by phase (bytes it adds to the process; seconds)."""
    target: str
    tag: str  # precision (and options) of the run
    torch_bytes: int  # PyTorch forward with the record's hooks
    record_bytes: int  # the packed PyTorch record kept for the comparison
    graph_bytes: int  # the graph read back from the NIR file
    target_estimate: Optional[Estimate]  # the target's own (None: it has no cost model)
    compare_bytes: int
    seconds: float
    streamed: bool  # spikes compared as the target makes them (no whole-run spike record)

    @property
    def torch_phase_bytes(self) -> int:
        return self.torch_bytes + self.record_bytes

    @property
    def target_phase_bytes(self) -> int:
        run = self.target_estimate.peak_bytes if self.target_estimate else 0
        return self.record_bytes + self.graph_bytes + run + self.compare_bytes

    @property
    def peak_bytes(self) -> int:
        """Peak added memory: the PyTorch phase (forward + record), or the target phase (record,
        graph read back, the target's run, the comparison)."""
        return max(self.torch_phase_bytes, self.target_phase_bytes)

    def _figures(self) -> str:
        te = self.target_estimate
        return (f"PyTorch phase {size(self.torch_phase_bytes)}, target phase {size(self.target_phase_bytes)} "
                f"(record {size(self.record_bytes)}, graph {size(self.graph_bytes)}, "
                + (f"run {size(te.peak_bytes)}" if te else "run: no cost model, not included")
                + f", comparison {size(self.compare_bytes)}{', streamed' if self.streamed else ''})")

    def line(self, rss_now: int) -> str:
        te = self.target_estimate
        return (f"estimate [{self.tag}]: ~{duration(self.seconds)}, peak ~{size(rss_now + self.peak_bytes)} "
                f"({size(rss_now)} now + {self._figures()}; "
                + (f"target '{self.target}': {te.basis})" if te else
                   f"target '{self.target}' has no cost model: its time and memory are not included)"))

    def check(self, advice=None) -> None:
        """Refuse, with the figures, a verification that does not fit the memory budget;
        ``advice()``: an option that would help (analysis/sizing.py), asked only on refusal."""
        budget = budget_bytes()
        if self.peak_bytes > budget:
            raise MemoryBudgetError(
                f"verify on target '{self.target}' [{self.tag}] needs about {size(self.peak_bytes)} > memory "
                f"budget {size(budget)}: {self._figures()}; " + (advice() if advice else "use fewer --samples"))


def estimate_run(tgt, graph, n: int, T: int, prepared=None, **options) -> Optional[Estimate]:
    """tgt.estimate of a run of n samples with the run's keywords ``options`` (RunRequest fields,
    e.g. dtype, and the target's own options). None before the flow (``prepared`` None) for a
    target that needs the flow's quantized network: ask again after it."""
    if prepared is None and tgt.capabilities.needs_quantized_net:
        return None
    return tgt.estimate(RunRequest.sizing(graph, n, T, prepared=prepared, **options))


def run_estimate_line(tgt, est: Optional[Estimate]) -> str:
    """The line a command prints before a target run."""
    if est is None:
        return f"estimate: none (target '{tgt.label}' has no cost model)"
    rss = rss_bytes()
    return (f"estimate: ~{duration(est.seconds)}, peak ~{size(rss + est.peak_bytes)} ({size(rss)} now + "
            f"{size(est.peak_bytes)}; {est.basis})")


def check_run_estimate(tgt, est: Optional[Estimate], what: str, advice=None) -> None:
    """Refuse, with the figures, a run whose estimated peak does not fit the memory budget;
    ``advice()``: an option that would help (analysis/sizing.py), asked only on refusal."""
    if est is not None and est.peak_bytes > budget_bytes():
        raise MemoryBudgetError(f"{what} on target '{tgt.label}' needs about {size(est.peak_bytes)} > memory "
                                f"budget {size(budget_bytes())} ({est.basis})" + (f"; {advice()}" if advice else ""))


def streams(tgt) -> bool:
    """The target hands over each layer's spikes per step (option ``on_spikes``): compare as they come."""
    return "on_spikes" in tgt.capabilities.options


def estimate_verification(model, n_samples: int, graph, tgt, dtype, tag: str = "", prepared=None,
                          **target_options) -> VerificationEstimate:
    """The cost of verify_model on n_samples: PyTorch record, the target's run (Target.estimate),
    the comparison. Sizes from the graph (targets/reference.py graph_costs)."""
    from exporters.interpreter_costs import MAC_PER_S, graph_costs
    c = graph_costs(graph)
    T, B = int(model.config.T), int(n_samples)
    e = torch.empty((), dtype=dtype).element_size()
    largest_lif = max((c.values[n] for n in c.values if type(graph.nodes[n]).__name__ in ("LIF", "IF")), default=0)
    stream = streams(tgt)
    record = packed_record_bytes(c, T, B, e)
    graph_bytes = c.weights * e
    options = dict(target_options, dtype=dtype, record_spikes=not stream,
                   record_membranes=tgt.capabilities.records_membranes and not stream)
    if stream:
        options["on_spikes"] = lambda *a: None
    te = estimate_run(tgt, graph, B, T, prepared, **options)
    torch_s = TORCH_SECONDS_PER_REFERENCE * T * B * c.macs / MAC_PER_S.get(e, min(MAC_PER_S.values()))
    return VerificationEstimate(
        target=tgt.label, tag=tag or str(dtype).replace("torch.", ""),
        torch_bytes=torch_forward_bytes(graph, T, B, e), record_bytes=record,
        graph_bytes=int(graph_bytes), target_estimate=te,
        compare_bytes=int(B * largest_lif * (e + COMPARE_BYTES_PER_VALUE)),
        seconds=torch_s + (te.seconds if te else 0.0), streamed=stream)


DTYPES = {"float64": torch.float64, "float32": torch.float32}


def verify_model(model, x, target: str = DEFAULT_TARGET, precision: str = "float64", form: str = "extension",
                 workdir=None, bars=None, say=None, sizing=None, **target_options) -> EquivalenceReport:
    """Verify ``model`` on ``target`` with inputs x: estimate (``sizing``, the job's sizing step
    api/sizing.py, refuses it before any run when it does not fit the memory budget; None: not
    sized here), record PyTorch (packed spikes and near-threshold masks), export and read back,
    run the target and compare layer by layer. ``bars(total, label, unit)``: a context manager
    with ``update(n)`` (util/progress.Progress) for each phase; ``say(line)``: the estimate."""
    dtype = DTYPES[precision]
    with model_in_dtype(model, dtype) as m:  # the caller's model comes back as it was, also on error
        return _verify(m.eval(), x.to(dtype), target, precision, dtype, form, workdir, bars, say or (lambda line: None),
                       sizing, target_options)


class _NoBar:
    def __init__(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int = 1):
        pass


def _verify(m, xs, target, precision, dtype, form, workdir, bars, say, sizing, target_options) -> EquivalenceReport:
    bars = bars or _NoBar
    tgt = get_target(target)
    T = m.config.T
    t0 = time.time()
    graph = lower(export_model(m, precision), form)
    t_export = time.time() - t0
    tag = precision + (f", {target_options['dssa']} DSSA" if target_options.get("dssa") else "")
    est = estimate_verification(m, xs.shape[0], graph, tgt, dtype, tag, **target_options)
    if sizing is not None:
        sizing.size_estimate(est, say)
    t0 = time.time()
    with bars(len(lif_modules(m)), f"PyTorch record ({tag})", "layers") as bar:
        rec = record_torch(m, xs, progress=bar.update)
    t_torch = time.time() - t0
    t0 = time.time()
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        path = Path(d) / "model.nir"
        write_nir(graph, path)  # verify what a user gets: the file read back from disk
        nir_bytes = path.stat().st_size
        del graph  # the exported graph: only the one read back is run
        graph = read_nir(path)
    t_export += time.time() - t0
    # the target's flow prepares the graph (its lowering verified on these inputs' operands)
    prepared = prepare(tgt, graph, samples=xs, T=T, **flow_options(tgt, target_options))
    if est.target_estimate is None:  # a cost model that needs the flow's artifacts: check it now
        est = estimate_verification(m, xs.shape[0], graph, tgt, dtype, tag, prepared=prepared, **target_options)
        if est.target_estimate is not None and sizing is not None:
            sizing.size_estimate(est, say)
    steps = tgt.steps(RunRequest.sizing(graph, xs.shape[0], T, prepared=prepared, **target_options))
    if streams(tgt):  # compared as produced: the run keeps no spike or membrane record
        comparer = SpikeComparer(graph, rec)
        with bars(steps, f"{target} run + comparison ({tag})", "steps") as bar:
            result = tgt.run(RunRequest.of(graph, xs, T, record_spikes=False, dtype=dtype, progress=bar.update,
                                           prepared=prepared, on_spikes=comparer.add, **target_options))
        comparison = comparer.finish(result.output)
    else:
        # a target's membranes widen the near-threshold test (compare_run); PyTorch's alone suffice
        with bars(steps, f"{target} run ({tag})", "steps") as bar:
            result = tgt.run(RunRequest.of(graph, xs, T, record_membranes=tgt.capabilities.records_membranes,
                                           dtype=dtype, progress=bar.update, prepared=prepared, **target_options))
        with bars(len(result.spikes), f"comparison ({tag})", "layers") as bar:
            comparison = compare_run(graph, rec, result, progress=bar.update)
    return EquivalenceReport.of(
        comparison, target=target, precision=precision, form=form, nir_bytes=nir_bytes,
        target_options=target_options, target_info=result.stats.to_json(),
        seconds={"torch": t_torch, "export_write_read": t_export, "target": result.seconds})


def rss_bytes() -> int:
    import psutil
    return int(psutil.Process().memory_info().rss)


def verdict(report: Comparison, precision: str) -> str:
    """'exact': same spikes everywhere, same classes, logits within LOGIT_REL_TOL.
    'rounding' (float32 only): every sample that diverges does so first at near-threshold
    ties (see analysis/compare.py: what differs there is only rounding, which depends on the
    CPU's kernels), and every sample that does not diverge has the same class and logits within
    LOGIT_REL_TOL. Diverged samples may then differ in class: that is what rounding does to
    a spiking network, and no CPU-independent promise can be made about it.
    'fail': anything else. float64 must be exact: its rounding is 2^29 times finer."""
    if (report.total_mismatches == 0 and report.prediction_agreement == 1.0
            and report.logits_max_rel_diff <= LOGIT_REL_TOL):
        return "exact"
    if (precision == "float32" and report.roots_all_ties
            and report.identical_samples_prediction_agreement == 1.0
            and report.identical_samples_logits_max_rel_diff <= LOGIT_REL_TOL):
        return "rounding"
    return "fail"
