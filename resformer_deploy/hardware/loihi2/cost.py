"""The Loihi 2 cost section of `compile --quantize` and `report`: the estimate (estimate.py) from the
emulator's activity on real samples, and which systems the plan fits (systems.py), as JSON and lines."""
from typing import List, Tuple

ESTIMATE_SAMPLES = 16  # samples the emulator runs for the activity (bounded: compile stays quick)


def cost_section(graph, prepared, T: int, x, source: str, violations=(), calibration=None) -> Tuple[dict, List[str]]:
    """(JSON, printed lines) for the prepared (quantized, mapped) network run on the samples ``x``."""
    from resformer_deploy.hardware.loihi2.activity import measure_and_estimate
    from resformer_deploy.hardware.loihi2.anchors import anchors_json
    from resformer_deploy.hardware.loihi2.systems import fit_table
    est, paper_energy_mJ = measure_and_estimate(graph, prepared, x, T, calibration)
    plan = prepared["core_plan"]
    systems = fit_table(plan.totals, list(violations))
    d = {"kind": "estimate", "samples": int(x.shape[0]), "samples_source": source, **est.to_json(),
         "paper_convention_energy_J": paper_energy_mJ * 1e-3,
         "systems": systems, "anchors": anchors_json()}
    lines = est.lines() + [f"  measured on {x.shape[0]} sample(s): {source}"]
    lines.append(f"  paper convention (0.9 pJ/AC, 45 nm, same spikes): {paper_energy_mJ:.4g} mJ per inference")
    lines.append("  systems: " + "; ".join(
        f"{r['system']} ({r['chips']:,} chip(s)) " + ("fits" if r["fits"] else f"refused: {r['refused_by'][0]}")
        for r in systems))
    return d, lines
