"""Measured deployment of the shipped trained models at native resolution (examples/cifar_digits,
examples/dvs_digits): `resformer-deploy demo --model M` as a user runs it, measured by
benchmarks/fullsize.py ``measure`` (wall time, peak PSS of the process tree), then its JSON
summarised: PyTorch accuracy on the whole held-out split, Lava float vs PyTorch (both DSSA
lowerings), the drift ladder PyTorch float64 -> Lava float -> fixed-point Lava -> emulator on the
whole split, per-layer firing-rate drift (PyTorch vs emulator), operations and energy per image
in the paper's convention, the Loihi 2 core plan.

    .venv/bin/python benchmarks/trained_deploy.py [--models cifar,dvsg] [--lava-samples N]
        [--workdir DIR] [--json-out benchmarks/trained_deploy.json]
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAVA_SAMPLES = {"cifar": 4, "dvsg": 2}


def pct(x):
    return "" if x is None else f"{100 * x:.2f}%"


def rate_drift(ladder: dict) -> dict:
    """Per LIF layer: PyTorch's firing rate vs the fixed-point emulator's on the same samples."""
    (emu,) = [r for r in ladder["rungs"] if r["role"] == "fixed-point"]
    rows = [{"layer": lay["torch_module"], "torch_rate": lay["torch_rate"], "emulator_rate": lay["target_rate"],
             "abs_drift": abs(lay["target_rate"] - lay["torch_rate"]),
             "rel_drift": (abs(lay["target_rate"] - lay["torch_rate"]) / lay["torch_rate"]
                           if lay["torch_rate"] else None),
             "identical_pct": lay["identical_pct"]} for lay in emu["layers"]]
    worst = max(rows, key=lambda r: r["abs_drift"])
    rel = [r["rel_drift"] for r in rows if r["rel_drift"] is not None]
    return {"layers": rows, "worst_layer": worst["layer"], "max_abs_drift": worst["abs_drift"],
            "mean_abs_drift": sum(r["abs_drift"] for r in rows) / len(rows), "max_rel_drift": max(rel),
            "mean_rate_torch": sum(r["torch_rate"] for r in rows) / len(rows),
            "mean_rate_emulator": sum(r["emulator_rate"] for r in rows) / len(rows)}


def summarise(j: dict) -> dict:
    """Of a `demo --json-out` file, or of a `report` directory's report.json (no Lava float table)."""
    fp = j.get("fixed_point", j)
    lad = fp["ladder"]
    torch_rung = lad["rungs"][0]
    return {
        "pytorch_accuracy": j.get("accuracy", torch_rung["accuracy"]), "recorded_accuracy": j.get("recorded_accuracy"),
        "samples": j.get("samples", torch_rung["samples"]), "whole_split_emulator": fp.get("whole_split"),
        "lava_float": [{"dssa": r["target_options"]["dssa"], "samples": r["samples"], "verdict": r["verdict"],
                        "agreement": r["prediction_agreement"], "min_layer_identical_pct": r["min_layer_identical_pct"],
                        "mismatches": r["total_mismatches"], "processes": r["target_info"]["processes"],
                        "latency": r["target_info"]["latency"], "s_per_sample": r["seconds"]["target"] / r["samples"]}
                       for r in j.get("lava", [])],
        "ladder": [{k: r[k] for k in ("rung", "target", "samples", "accuracy", "prediction_agreement_with_torch",
                                      "min_layer_identical_pct", "total_mismatches", "seconds")} for r in lad["rungs"]],
        "accuracy_drop_pp": lad["accuracy_drop_pp"], "emulator_bit_exact_vs_lava": lad["emulator_bit_exact_vs_lava"],
        "saturations": sum(sum(v.values()) for v in lad["saturation"].values()),
        "firing_rates": rate_drift(lad),
        "energy": {k: {"sops_per_image": fp["energy"][k]["sops"], "uJ_per_image": fp["energy"][k]["energy_mJ"] * 1e3,
                       "per_image": fp["energy"][k]["per_image"]} for k in ("torch", "fixed")},
        "core_plan": {**fp["mapping"]["totals"], "violations": len(fp["mapping"]["violations"])},
    }


def markdown(results: dict) -> str:
    out = []
    for name, r in results["models"].items():
        s = r.get("summary")
        pss = "not measured" if r.get("peak_pss_GiB") is None else f"{r['peak_pss_GiB']:.2f} GiB"
        out.append(f"### {name}: `{r['command']}`\n\nwall {r['wall_s']:.0f} s, peak PSS {pss}, exit {r['exit_code']}"
                   + (f"; {r['note']}" if r.get("note") else ""))
        if not s:
            continue
        out.append(f"\nPyTorch on the held-out split: {pct(s['pytorch_accuracy'])} of {s['samples']} "
                   f"(recorded at training {pct(s['recorded_accuracy'])})\n")
        w = s.get("whole_split_emulator")
        if w:
            out.append(f"whole split streamed through loihi2-emu: {pct(w['top1'])} vs PyTorch float32 "
                       f"{pct(w['torch_top1'])}, same class {pct(w['agreement_with_torch'])} of {w['samples']}, "
                       f"{w['throughput']['samples_per_second']:.2f} samples/s\n")
        if s["lava_float"]:
            out.append("| Lava float DSSA | samples | verdict | same class | min layer identical | mismatches | "
                       "processes | s/sample |\n|---|---|---|---|---|---|---|---|")
        for lv in s["lava_float"]:
            out.append(f"| {lv['dssa']} | {lv['samples']} | {lv['verdict']} | {pct(lv['agreement'])} | "
                       f"{lv['min_layer_identical_pct']:.4f}% | {lv['mismatches']} | {lv['processes']} | "
                       f"{lv['s_per_sample']:.1f} |")
        out.append("\n| rung | target | samples | accuracy | same class as PyTorch | min layer identical | s |\n"
                   "|---|---|---|---|---|---|---|")
        for g in s["ladder"]:
            mli = g["min_layer_identical_pct"]
            out.append(f"| {g['rung']} | {g['target']} | {g['samples']} | {pct(g['accuracy'])} | "
                       f"{pct(g['prediction_agreement_with_torch'])} | {'' if mli is None else f'{mli:.2f}%'} | "
                       f"{g['seconds']:.1f} |")
        fr, e, c = s["firing_rates"], s["energy"], s["core_plan"]
        out.append(f"\naccuracy drop {s['accuracy_drop_pp']:+.2f} pp; emulator bit-exact with fixed-point Lava: "
                   f"{s['emulator_bit_exact_vs_lava']}; run-time saturations {s['saturations']}\n"
                   f"firing rates (PyTorch vs emulator, {len(fr['layers'])} LIF layers): mean "
                   f"{fr['mean_rate_torch']:.4f} vs {fr['mean_rate_emulator']:.4f}, mean |drift| "
                   f"{fr['mean_abs_drift']:.4f}, max |drift| {fr['max_abs_drift']:.4f} ({fr['worst_layer']}), max "
                   f"relative {100 * fr['max_rel_drift']:.1f}%\n"
                   f"energy per image (0.9 pJ/SOP, stem and classifier excluded): PyTorch-counted "
                   f"{e['torch']['sops_per_image']:,.0f} SOPs = {e['torch']['uJ_per_image']:.3f} uJ; fixed point "
                   f"{e['fixed']['sops_per_image']:,.0f} SOPs = {e['fixed']['uJ_per_image']:.3f} uJ\n"
                   f"Loihi 2 core plan: {c['neuro_cores']} neuro cores on {c['chips']} chip(s), "
                   f"{c['embedded_programs']} embedded-core programs, {c['neurons']:,} neurons, {c['synapses']:,} "
                   f"synapses, {c['violations']} design-rule violation(s)\n")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="cifar,dvsg")
    ap.add_argument("--lava-samples", type=int, help="default: cifar 4, dvsg 2")
    ap.add_argument("--timeout", type=float, default=0)
    ap.add_argument("--workdir")
    ap.add_argument("--json-out", default=str(REPO / "benchmarks" / "trained_deploy.json"))
    ap.add_argument("--add-report", action="append", default=[], metavar="NAME=DIR",
                    help="also summarise a `resformer-deploy report` directory already run (its command, wall "
                         "time and machine given in DIR/bench.json)")
    args = ap.parse_args()
    from fullsize import measure
    from resformer_deploy.reporting.tables import machine_description, write_json

    tmp = None if args.workdir else tempfile.TemporaryDirectory(prefix="trained_deploy_")
    work = Path(args.workdir or tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    results = {"date": datetime.date.today().isoformat(), "machine": machine_description(), "models": {}}
    if Path(args.json_out).is_file():  # models measured before are kept unless measured again
        results["models"] = json.loads(Path(args.json_out).read_text()).get("models", {})
    for item in args.add_report:
        name, d = item.split("=", 1)
        r = json.loads((Path(d) / "bench.json").read_text())
        r["summary"] = summarise(json.loads((Path(d) / "report.json").read_text()))
        results["models"][name] = r
    write_json(args.json_out, results)
    try:
        for name in [m.strip() for m in args.models.split(",") if m.strip() and args.models != "none"]:
            k = args.lava_samples if args.lava_samples is not None else LAVA_SAMPLES[name]
            out = work / f"{name}.json"
            opts = ["--model", name, "--lava-samples", str(k), "--out-dir", str(work / name), "--data-dir",
                    str(work / "data"), "--json-out", str(out)]
            argv = [sys.executable, "-m", "resformer_deploy.cli.main", "demo", *opts]
            r = measure(argv, name, work, args.timeout, " ".join(["resformer-deploy demo", *opts]))
            r = {k2: v for k2, v in r.items() if k2 != "memory_samples"}
            if r["exit_code"] == 0:
                r["summary"] = summarise(json.loads(out.read_text()))
            results["models"][name] = r
            write_json(args.json_out, results)
        print(markdown(results))
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
