"""Synaptic operations per layer and kind, and energy in the paper's convention (`ops`): counted
from a target's run and from an independent reference, which must agree exactly.

    >>> from resformer_deploy import api
    >>> from targets import names_with
    >>> ck = api.load("examples/digits/digits_resformer.pt")
    >>> r = api.ops(ck, api.OpsOptions(target=names_with(engine="pytorch")[0], samples=2))
    >>> r.agree, r.reference
    (True, 'PyTorch')
"""
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

from resformer_deploy.api.options import DataOptions, Messages

if TYPE_CHECKING:  # imports torch: only for the type checker
    from resformer_deploy.analysis.operations import EnergyReport, LayerOps

__all__ = ["LayerOpsComparison", "OpsOptions", "OpsResult", "ops"]

COUNT_REL_TOL = 1e-9  # counts are integers summed in float64: any larger difference is a real one


@dataclass(frozen=True)
class OpsOptions:
    """``target``: the registered target whose spikes are counted; ``samples`` inputs (the first of
    ``data.data``, else the digits held-out split or random inputs); stem and classifier MACs
    (4.6 pJ each) are left out of the energy unless included, as in the paper."""
    target: str
    samples: int = 16
    include_stem: bool = False
    include_classifier: bool = False
    data: DataOptions = field(default_factory=DataOptions)


@dataclass(frozen=True)
class LayerOpsComparison:
    """One layer's operations (totals over the samples) from the reference and from the target."""
    layer: str
    kind: str  # analysis.operations.KINDS
    reference_ops: float
    target_ops: float  # nan: the target's run has no such layer
    rel_diff: float  # |target - reference| / max(1, |reference|)


@dataclass(frozen=True)
class OpsResult:
    target: str
    samples: int
    inputs: str  # what the samples are
    T: int
    reference: str  # who counted the reference: "PyTorch", a bit-exact twin, "PyTorch (replayed)"
    layers: List[LayerOpsComparison]
    reference_counts: Dict[str, "LayerOps"]  # per layer
    target_counts: Dict[str, "LayerOps"]
    energy: "EnergyReport"  # of the target's counts, per image
    max_rel_diff: float
    replayed: bool  # fixed point without a twin: PyTorch's counter replayed the target's spikes
    float_rel_diff: Optional[float]  # replayed: how far the float model's own spikes' counts are
    calibration: Optional[dict]  # what calibrated the quantized network (None: nothing quantized)
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (sample, reason) --skip-bad left out

    @property
    def agree(self) -> bool:
        return self.max_rel_diff <= COUNT_REL_TOL


def _run(tgt, name: str, graph, x, T: int, prepared, bars, **keywords):
    from targets import RunRequest
    n = int(x.shape[0])
    with bars(tgt.steps(RunRequest.sizing(graph, n, T, prepared=prepared)), f"{name} run", unit="steps") as bar:
        return tgt.run(RunRequest.of(graph, x, T, prepared=prepared, progress=bar.update, **keywords))


def ops(ck, options: OpsOptions, messages: Messages = Messages()) -> OpsResult:
    """Count ``ck``'s operations (api.load) on ``options.target``: sized before any work (refused
    when it cannot fit), the reference counted in float64 by PyTorch, the target run through its
    flow, both compared layer by layer."""
    import torch
    from exporters.torch_to_nir import export_model
    from targets import capabilities_of, get_target
    from resformer_deploy.analysis.equivalence import torch_record_batch, verification_inputs
    from resformer_deploy.analysis.operations import (count_graph, count_torch, energy_report, max_rel_diff,
                                                      replay_counts)
    from resformer_deploy.api.data import open_data
    from resformer_deploy.api.sizing import size_run
    from resformer_deploy.flows import prepare
    from resformer_deploy.model.precision import model_in_dtype

    target, samples, T = options.target, options.samples, ck.config.T
    tgt = get_target(target)
    md, cal = open_data(options.data, ck, 128, tgt.capabilities.needs_quantized_net,
                        f"target '{target}' runs floating point", messages.say)
    x, source = verification_inputs(ck.model, samples, data=md)
    x = x.double()
    # counted in float64 on both sides: float32 spikes near threshold flip between two differently
    # ordered computations (a count difference that is only rounding); float64 is exact here
    graph = export_model(ck.model, "float64")
    what = f"ops: {samples:,} samples"
    est = size_run(tgt, graph, samples, T, what, say=messages.say, dtype=torch.float64)  # before any work
    with model_in_dtype(ck.model, torch.float64) as m64:
        ct = count_torch(m64, x, batch=torch_record_batch(graph, T, 8))
    caps, ref_name = tgt.capabilities, "PyTorch"
    # the target's flow with its default options (fixed point: quantized on 128 calibration samples)
    prepared = prepare(tgt, graph, samples=x, T=T, calibration=cal)
    if est is None:  # a cost model that needs the flow's artifacts
        size_run(tgt, graph, samples, T, what, prepared=prepared, say=messages.say, dtype=torch.float64)
    # counts must agree exactly with an independent count: PyTorch's for float targets; a fixed-point
    # target's spikes differ from the float model's, so its bit-exact twin's (same prepared network)
    # or, without a twin, PyTorch's counter replaying the target's own spikes
    replayed = caps.arithmetic == "fixed" and caps.bit_exact_twin is None
    if caps.bit_exact_twin:
        twin = caps.bit_exact_twin
        emu = _run(get_target(twin), twin, graph, x, T, prepared, messages.bars)
        ct_torch, ct = ct, count_graph(graph, emu.spikes, T, samples)
        for k in ct:
            ct[k].torch_ops = ct_torch[k].ops if k in ct_torch else None
        ref_name = "emulator" if capabilities_of(twin).engine == "numpy" else twin
    res = _run(tgt, target, graph, x, T, prepared, messages.bars, dtype=torch.float64)
    cg = count_graph(graph, res.spikes, T, samples)
    if replayed:
        ct = replay_counts(ck.model, graph, x, res.spikes, ct)
        ref_name = "PyTorch (replayed)"
    layers = []
    for path, v in ct.items():
        g = cg[path].ops if path in cg else float("nan")
        layers.append(LayerOpsComparison(path, v.kind, v.ops, g, abs(g - v.ops) / max(1.0, abs(v.ops))))
    worst = max([0.0] + [c.rel_diff for c in layers])
    qn = prepared.quantized_net
    return OpsResult(target, samples, source, T, ref_name, layers, ct, cg,
                     energy_report(cg, samples, options.include_stem, options.include_classifier), worst, replayed,
                     max_rel_diff({k: v.torch_ops for k, v in ct.items()}, cg) if replayed else None,
                     None if qn is None else qn.calibration, [(n, why) for n, why in (md.bad if md else [])])
