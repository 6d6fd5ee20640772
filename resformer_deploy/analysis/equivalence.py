"""End-to-end verification: checkpoint -> NIR file -> target run -> layer-by-layer comparison."""
import dataclasses
import tempfile
import time
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

import torch

from exporters.nir_io import read_nir, write_nir
from exporters.torch_to_nir import export_model
from targets import get_target

from resformer_deploy.flows import flow_options, prepare

from resformer_deploy.data.digits import is_digits_input, load_digits_split
from resformer_deploy.errors import DeployError
from resformer_deploy.model.precision import model_in_dtype
from resformer_deploy.model.summary import check_recording
from resformer_deploy.util.memory_budget import check_bytes
from resformer_deploy.util.records import require
from resformer_deploy.analysis.compare import Comparison, compare_run, record_torch

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


def verification_inputs(model, samples: int, seed: int = 0):
    """Inputs for a model: digits split for digits-shaped models; DVS frames for PLIF (dvsg)."""
    cfg = model.config
    check_recording(model, samples)  # verify and ops record every neuron, step and sample
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


def verify_model(model, x, target: str = "reference", precision: str = "float64", form: str = "extension",
                 workdir=None, progress=None, **target_options) -> EquivalenceReport:
    dtype = {"float64": torch.float64, "float32": torch.float32}[precision]
    with model_in_dtype(model, dtype) as m:  # the caller's model comes back as it was, also on error
        return _verify(m.eval(), x.to(dtype), target, precision, dtype, form, workdir, progress, target_options)


def _verify(m, xs, target, precision, dtype, form, workdir, progress, target_options) -> EquivalenceReport:
    t0 = time.time()
    rec = record_torch(m, xs)
    t_torch = time.time() - t0
    t0 = time.time()
    graph = lower(export_model(m, precision), form)
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        path = Path(d) / "model.nir"
        write_nir(graph, path)  # verify what a user gets: the file read back from disk
        size = path.stat().st_size
        graph = read_nir(path)
    t_export = time.time() - t0
    info = {}
    tgt = get_target(target)
    # the target's flow prepares the graph (its lowering verified on these inputs' operands)
    prepared = prepare(tgt, graph, samples=xs, T=m.config.T, **flow_options(tgt, target_options))
    if progress is not None and hasattr(progress, "reset"):  # a Progress bar: total known only now
        progress.reset(tgt.steps(graph, xs.shape[0], m.config.T, prepared=prepared, **target_options))
        progress = progress.update
    # a target's membranes widen the near-threshold test (compare_run); PyTorch's alone suffice
    result = tgt.run(graph, xs, m.config.T, record_membranes=tgt.capabilities.records_membranes, dtype=dtype,
                     progress=progress, info=info, prepared=prepared, **target_options)
    return EquivalenceReport.of(
        compare_run(graph, rec, result), target=target, precision=precision, form=form, nir_bytes=size,
        target_options=target_options, target_info=info,
        seconds={"torch": t_torch, "export_write_read": t_export, "target": result.seconds})


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
