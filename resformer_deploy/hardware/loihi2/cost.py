"""The Loihi 2 cost section of `compile --quantize` and `report`: the estimate (estimate.py) from the
emulator's activity on real samples, and which systems the plan fits (systems.py), as JSON and lines."""
from typing import List, Tuple

ESTIMATE_SAMPLES = 16  # samples the emulator runs for the activity (bounded: compile stays quick)


def cost_section(graph, prepared, T: int, x, source: str, violations=(), calibration=None) -> Tuple[dict, List[str]]:
    """(JSON, printed lines) for the prepared (quantized, mapped) network run by the emulator on ``x``."""
    from resformer_deploy.hardware.loihi2.activity import measure_and_estimate
    est, acts, paper_mJ = measure_and_estimate(graph, prepared, x, T, calibration)
    return section_json(prepared["core_plan"], est, acts, paper_mJ, int(x.shape[0]), source, violations)


def section_json(plan, est, acts, paper_energy_mJ: float, samples: int, source: str,
                 violations=()) -> Tuple[dict, List[str]]:
    """(JSON, printed lines) of an estimate (activity.estimate_from_spikes) for ``plan``."""
    from resformer_deploy.hardware.loihi2.anchors import anchors_json
    from resformer_deploy.hardware.loihi2.estimate import core_work_s
    from resformer_deploy.hardware.loihi2.systems import fit_table
    systems = fit_table(plan.totals, list(violations))
    k = est.calibration.k_time.value
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
