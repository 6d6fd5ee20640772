"""The Loihi 2 cost of a deployment, measured: per-core activity of a core plan from a recorded run, the
estimate it gives (hardware/loihi2/estimate.py) and the systems the plan fits (hardware/loihi2/systems.py),
as the JSON and lines of `compile --quantize` and `report`.

Activity: a convolution's synaptic operations happen on the cores holding its synapses: its relay layer
(``<conv>:relay``) if the plan has one, else the neuron layer it feeds. A fused DSSA product runs
on an embedded core (its MACs are returned apart); a synaptic-DSSA product on its product layer.
Counts are per sample (the run's totals / samples), so they follow the official counting
convention (analysis.operations, every in-bounds kernel tap).
Not counted: residual identity synapses into junctions and the graded messages of relay and
junction layers (their payload traffic is not recorded as spikes).
"""
from typing import Dict, List, Tuple

import nir

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.errors import InternalError
from resformer_deploy.hardware.loihi2.estimate import EstimateError, LayerActivity

ESTIMATE_SAMPLES = 16  # samples the emulator runs for the activity (bounded: compile stays quick)


def cost_section(graph, prepared, T: int, x, source: str, violations=(), calibration=None) -> Tuple[dict, List[str]]:
    """(JSON, printed lines) for the prepared (quantized, mapped) network run by the emulator on ``x``."""
    est, acts, paper_mJ = measure_and_estimate(graph, prepared, x, T, calibration)
    return section_json(prepared.core_plan, est, acts, paper_mJ, int(x.shape[0]), source, violations)


def section_json(plan, est, acts, paper_energy_mJ: float, samples: int, source: str,
                 violations=()) -> Tuple[dict, List[str]]:
    """(JSON, printed lines) of an estimate (estimate_from_spikes) for ``plan``."""
    from resformer_deploy.hardware.loihi2.anchors import anchors_json
    from resformer_deploy.hardware.loihi2.estimate import core_work_s
    from resformer_deploy.hardware.loihi2.systems import fit_table
    systems = fit_table(plan.totals, list(violations))
    k = est.calibration.time.k
    layers = [{"layer": a.layer, "cores": a.cores, "synops_per_sample": a.synops, "spikes_out_per_sample": a.spikes_out,
               "core_time_per_step_s": k * core_work_s(a, est.T)} for a in acts]
    d = {"kind": "estimate", "samples": samples, "samples_source": source, **est.to_json(), "layers": layers,
         "paper_convention_energy_J": paper_energy_mJ * 1e-3,
         "systems": systems, "anchors": anchors_json()}
    lines = est.lines() + [f"  measured on {samples} sample(s): {source}"]
    lines.append(f"  paper convention (0.9 pJ/AC, 45 nm, same spikes): {paper_energy_mJ:.4g} mJ per inference")
    lines.append("  systems: " + "; ".join(
        f"{r['system']} ({r['chips']:,} chip(s)) " + ("fits" if r["fits"] else f"refused: {r['refused_by'][0]}")
        for r in systems))
    return d, lines


def activity_from_run(plan, graph: nir.NIRGraph, spikes: Dict, T: int, n_samples: int,
                      counts=None) -> Tuple[List[LayerActivity], float]:
    """(activity per plan layer, embedded-core MACs) per sample, from the LIF spike records
    ``spikes`` ({node: [T, N, ...]}) of ``n_samples`` samples (``counts``: their count_graph, if made)."""
    from resformer_deploy.analysis.compare import count_true
    from resformer_deploy.analysis.operations import count_graph
    if n_samples < 1:
        raise EstimateError(f"{n_samples} samples")
    counts = counts if counts is not None else count_graph(graph, spikes, T, n_samples)
    rows = {r.layer: r for r in plan.layers}
    succ: Dict[str, List[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    synops = {name: 0.0 for name in rows}
    embedded = 0.0
    for n, node in graph.nodes.items():
        path = (node.metadata or {}).get("torch_module", n)
        on_chip = (node.metadata or {}).get("partition", "neuromorphic") == "neuromorphic"
        c = counts.get(path) if on_chip and isinstance(node, (nir.Conv2d, SpikeMatMul)) else None
        if c is None:  # not a synapse node, or on the host (e.g. the stem)
            continue
        if isinstance(node, SpikeMatMul):
            if f"{n}:prod" in rows:
                synops[f"{n}:prod"] += c.ops / n_samples
            else:
                embedded += c.ops / n_samples
            continue
        # synaptic DSSA: a convolution feeding a product only lands on the product's operand relay
        held_by = [f"{n}:relay", *succ.get(n, []), *(f"{s}:relay" for s in succ.get(n, []))]
        dest = next((h for h in held_by if h in rows), None)
        if dest is None:
            # the mapper placed every convolution's synapses: a miss is a mapper/cost mismatch, a bug
            raise InternalError(f"{n}: no plan layer holds this convolution's synapses")
        synops[dest] += c.ops / n_samples
    acts = []
    for name, r in rows.items():
        out = count_true(spikes, r.node) / n_samples if r.kind == "lif" and r.node in spikes else 0.0
        acts.append(LayerActivity(name, r.cores, r.neurons, synops[name], out))
    return acts, embedded


def estimate_from_spikes(plan, graph, spikes, T: int, n_samples: int, pipeline_latency_steps: int, calibration=None):
    """(Estimate, activity per layer, paper-convention energy in mJ per sample) of ``plan`` from a run's LIF
    spike records; ``calibration``: a Calibration to reuse (else calibrated on the PilotNet run here)."""
    from resformer_deploy.analysis.operations import count_graph, energy_report
    from resformer_deploy.hardware.loihi2.estimate import calibrate, estimate
    from resformer_deploy.hardware.loihi2.pilotnet import pair_plan, pilotnet_plan
    counts = count_graph(graph, spikes, T, n_samples)
    acts, macs = activity_from_run(plan, graph, spikes, T, n_samples, counts)
    cal = calibration or calibrate(pilotnet_plan(), pair_plan())
    est = estimate(acts, T, plan.totals.chips, pipeline_latency_steps, cal, macs)
    return est, acts, energy_report(counts, n_samples).energy_mJ


def bit_exact_emulator() -> str:
    """The fixed-point target other fixed-point targets declare as their bit-exact twin (the
    batched emulator), chosen by capability."""
    from targets import capabilities_of, names_with
    fixed = names_with(arithmetic="fixed")
    twins = sorted({capabilities_of(n).bit_exact_twin for n in fixed} & set(fixed))
    if not twins:
        raise InternalError(f"no fixed-point target is another's bit-exact twin (fixed point: {', '.join(fixed)})")
    return twins[0]


def measure_and_estimate(graph, prepared, x, T: int, calibration=None):
    """``estimate_from_spikes`` of the fixed-point emulator's (``bit_exact_emulator``) run of the
    prepared (quantized, mapped) network on the samples ``x``."""
    from targets import RunRequest, get_target
    # the prepared network fixes the DSSA
    run = get_target(bit_exact_emulator()).run(RunRequest.of(graph, x, T, prepared=prepared))
    return estimate_from_spikes(prepared.core_plan, graph, run.spikes, T, x.shape[0],
                                int(prepared.quantized_net.plan.total_latency), calibration)
