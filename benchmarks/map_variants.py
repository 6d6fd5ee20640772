"""Loihi 2 resource mapping of every official variant (random calibrated weights) and the digits model.

    .venv/bin/python benchmarks/map_variants.py [--json-out benchmarks/map_variants.json]

Each model is exported to NIR and mapped with both DSSA lowerings (resformer_deploy.hardware.loihi2);
the table lists neuro cores, chips, neurons, logical synapses, memory, embedded-core programs
and the number of design-rule violations. Weights are random (the mapping depends on shapes
only; firing-rate buffers are set so the export is valid). No downloads.
"""
import _bench  # this checkout first on sys.path
import argparse
import json
import time
from pathlib import Path

from exporters.torch_to_nir import export_model
from resformer_deploy.reporting.tables import machine_description
from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.hardware.loihi2 import map_to_loihi2, run_drc
from resformer_deploy.model.calibration import random_buffers
from resformer_deploy.model.resformer import build_model
from resformer_deploy.model.variants import OFFICIAL

REPO = Path(__file__).resolve().parents[1]


def models(names):
    for name in names:
        if name == "digits":
            ck = load_checkpoint(REPO / "examples" / "digits" / "digits_resformer.pt")
            yield "digits (shipped)", ck.model
        else:
            yield name, random_buffers(build_model(name))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default=",".join(OFFICIAL + ("digits",)))
    ap.add_argument("--json-out", default=str(REPO / "benchmarks" / "map_variants.json"))
    args = ap.parse_args()
    rows = []
    for name, model in models(args.variants.split(",")):
        cfg = model.config
        graph = export_model(model)
        for dssa in ("fused", "synaptic"):
            t0 = time.perf_counter()
            plan = map_to_loihi2(graph, dssa)
            violations, _ = run_drc(plan)
            t = plan.totals
            rows.append({"variant": name, "img_size": cfg.img_size, "T": cfg.T, "dssa": dssa,
                         "neuro_cores": t.neuro_cores, "chips": t.chips,
                         "chips_for_neuro_cores": t.chips_for_neuro_cores, "neurons": t.neurons,
                         "synapses": t.synapses, "memory_MiB": round(t.memory_bytes / 2 ** 20, 2),
                         "embedded_programs": t.embedded_programs, "drc_violations": len(violations),
                         "violations": violations, "warnings": plan.warnings,
                         "map_s": round(time.perf_counter() - t0, 2)})
            print(json.dumps({k: v for k, v in rows[-1].items() if k not in ("violations", "warnings")}),
                  flush=True)
    _bench.write_and_print(
        {"machine": machine_description(), "results": rows}, args.json_out,
        ["variant", "input, T", "DSSA", "neuro cores", "chips", "neurons", "synapses", "memory MiB",
         "embedded programs", "DRC violations", "map s"],
        lambda r: [r["variant"], f"{r['img_size']}, T={r['T']}", r["dssa"], f"{r['neuro_cores']:,}", r["chips"],
                   f"{r['neurons']:,}", f"{r['synapses']:,}", f"{r['memory_MiB']:,}", r["embedded_programs"],
                   r["drc_violations"], r["map_s"]])


if __name__ == "__main__":
    main()
