"""Loihi 2 latency / throughput / energy estimates and the systems each model fits (issue 29).

    .venv/bin/python benchmarks/loihi2_estimate.py --parts pilotnet,trained,ti224,systems \
        [--lava-dl /work/.mirror/lava-nc+lava-dl/repo] [--json-out benchmarks/loihi2_estimate.json]

Parts:
* pilotnet: the project's planner on lava-dl's PilotNet SNN (rebuilt from its shapes) against Intel's
  per-core table, and the calibration on the published run; with --lava-dl (a local git copy of
  lava-nc/lava-dl, read with `git show`, nothing downloaded) the recorded spike totals in
  hardware/loihi2/anchors.py are recomputed from netx's ground-truth files;
* trained: `compile --quantize` on the shipped digits, cifar and dvsg models (cifar / dvsg calibrated on
  the generated sets, --calib-split train), reading the estimate from loihi2_plan.json;
* ti224: the official ti variant at 224 px (random calibrated weights: no checkpoint is downloaded),
  quantized on random N(0,1) images and run by the emulator on a few of them;
* systems: which systems the official variants fit at native size (fused DSSA), the largest image
  size (multiples of 16) of each that fits each system, and the shipped
  models. Each size is mapped in a child process under --mem-gib of address space (this machine is
  shared); a size whose export needs more is listed as not measured and treated as not fitting.
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from resformer_deploy.hardware.loihi2 import anchors as A
from resformer_deploy.hardware.loihi2.estimate import calibrate
from resformer_deploy.hardware.loihi2.pilotnet import compare_with_intel, pilotnet_plan
from resformer_deploy.reporting.tables import machine_description

REPO = Path(__file__).resolve().parents[1]
DATA = Path("/tmp/resformer_data")
TRAINED = {"digits": ("examples/digits/digits_resformer.pt", []),
           "cifar": ("examples/cifar_digits/cifar_digits_resformer.pt",
                     ["--calib-data", str(DATA / "cifar_digits"), "--calib-split", "train"]),
           "dvsg": ("examples/dvs_digits/dvs_digits_resformer.pt",
                    ["--calib-data", str(DATA / "dvs_digits"), "--calib-split", "train"])}
GTS_FILES = {"input": "input.npy", "conv0": "conv-0.npy", "conv1": "conv-1.npy", "conv2": "conv-2.npy",
             "conv3": "conv-3.npy", "conv4": "conv-4.npy", "fc0": "fc-0.npy", "fc1": "fc-1.npy", "fc2": "fc-2.npy"}


def part_pilotnet(lava_dl):
    plan = pilotnet_plan()
    rows, total = compare_with_intel(plan)
    out = {"layers": rows, "total": total, "calibration": calibrate(plan).to_json()}
    if lava_dl:
        got = {}
        for layer, f in GTS_FILES.items():
            blob = subprocess.run(["git", "-C", lava_dl, "show", f"HEAD:tests/lava/lib/dl/netx/gts/pilotnet_lif/{f}"],
                                  capture_output=True, check=True).stdout
            a = np.load(io.BytesIO(blob))
            got[layer] = int(a.sum())
            assert a.shape[-1] == A.PILOTNET_GTS_STEPS, (f, a.shape)
        out["gts_spikes_recomputed"] = got
        out["gts_spikes_match_anchors"] = got == A.PILOTNET_GTS_SPIKES
    return out


def part_trained(names):
    out = {}
    for name in names:
        ck, extra = TRAINED[name]
        with tempfile.TemporaryDirectory(prefix="l2est-") as d:
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "resformer_deploy.cli.main", "compile", str(REPO / ck), "-o", d,
                                "--quantize", *extra], capture_output=True, text=True)
            wall = time.perf_counter() - t0
            plan = json.loads((Path(d) / "loihi2_plan.json").read_text()) if (Path(d) / "loihi2_plan.json").exists() \
                else None
        est = (plan or {}).get("loihi2_estimate")
        out[name] = {"exit_code": r.returncode, "wall_s": round(wall, 1), "totals": (plan or {}).get("totals"),
                     "estimate": {k: v for k, v in (est or {}).items() if k != "anchors"},
                     "stderr_tail": r.stderr.strip().splitlines()[-3:] if r.returncode else []}
        print(name, json.dumps({k: out[name][k] for k in ("exit_code", "wall_s")}),
              "\n".join(ln for ln in r.stdout.splitlines() if ln.startswith("  ") or ln.startswith("Loihi 2 est")),
              flush=True)
    return out


def part_ti224(calib_samples, run_samples):
    from exporters.torch_to_nir import export_model
    from resformer_deploy.flows import prepare
    from resformer_deploy.analysis.loihi2_cost import cost_section
    from resformer_deploy.model.calibration import random_buffers
    from resformer_deploy.model.resformer import build_model
    t0 = time.perf_counter()
    model = random_buffers(build_model("ti"))
    g = export_model(model)
    p = prepare("loihi2", g, dssa="fused", quantize=True, calib_samples=calib_samples)
    ci = p["calibration_inputs"]
    d, lines = cost_section(g, p, model.config.T, ci.x[:run_samples], ci.source, p["drc"][0])
    print("\n".join(lines), flush=True)
    d.pop("anchors")
    return {"wall_s": round(time.perf_counter() - t0, 1), "totals": p["core_plan"].totals.to_json()
            if hasattr(p["core_plan"].totals, "to_json") else dict(vars(p["core_plan"].totals)), "estimate": d}


def probe(name, img_size):
    """Plan totals and design-rule violations of variant ``name`` at ``img_size`` (random weights), as JSON."""
    from exporters.torch_to_nir import export_model
    from resformer_deploy.hardware.loihi2 import map_to_loihi2, run_drc
    from resformer_deploy.model.calibration import random_buffers
    from resformer_deploy.model.resformer import build_model
    plan = map_to_loihi2(export_model(random_buffers(build_model(name, img_size=img_size))), "fused")
    return {"totals": plan.totals.to_json() if hasattr(plan.totals, "to_json") else dict(vars(plan.totals)),
            "violations": run_drc(plan)[0]}


def _limit_memory(gib):
    import resource
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (int(gib * 2 ** 30),) * 2)


def _totals(name, img_size, mem_gib, log):
    """``probe`` in a child process under an address-space cap (a size whose export needs more is not
    measured: the search then treats it as not fitting, and says so)."""
    r = subprocess.run([sys.executable, __file__, "--probe", f"{name}:{img_size}"], capture_output=True, text=True,
                       preexec_fn=_limit_memory(mem_gib), timeout=1800)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["killed"])[-1][:100]
        log.append(f"{name} @{img_size}: not measured ({why})")
        print("  " + log[-1], flush=True)
        return None
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return d["totals"], d["violations"]


def part_systems(variants, max_size, mem_gib):
    from resformer_deploy.hardware.loihi2.systems import fit_table, largest_fitting, system_chips
    from resformer_deploy.model.variants import get_config
    out = {"native": {}, "largest_img_size": {}, "trained": {}, "not_measured": [], "memory_cap_GiB": mem_gib}
    for v in variants:
        native = get_config(v).img_size
        cache = {}

        def at(size, v=v, cache=cache):
            if size not in cache:
                cache[size] = _totals(v, size, mem_gib, out["not_measured"])
            return cache[size]
        got = at(native)
        if got is None:
            continue
        out["native"][v] = {"img_size": native, "chips": got[0]["chips"], "neuro_cores": got[0]["neuro_cores"],
                            "systems": fit_table(got[0], got[1])}
        sizes = list(range(16, max_size + 1, 16))
        out["largest_img_size"][v] = {s: largest_fitting(sizes, at, c) for s, c in system_chips().items()}
        print(v, json.dumps(out["native"][v]["chips"]), json.dumps(out["largest_img_size"][v]), flush=True)
    from exporters.torch_to_nir import export_model
    from resformer_deploy.hardware.loihi2 import map_to_loihi2, run_drc
    from resformer_deploy.model.checkpoint import load_checkpoint
    for name, (ck, _) in TRAINED.items():
        plan = map_to_loihi2(export_model(load_checkpoint(REPO / ck).model), "fused")
        out["trained"][name] = {"chips": plan.totals.chips, "neuro_cores": plan.totals.neuro_cores,
                                "systems": fit_table(plan.totals, run_drc(plan)[0])}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="pilotnet,trained,ti224,systems")
    ap.add_argument("--lava-dl", default=None, help="local git copy of lava-nc/lava-dl (for the spike recount)")
    ap.add_argument("--trained", default="digits,cifar,dvsg")
    ap.add_argument("--variants", default="ti,s,m,l,cifar,dvsg")
    ap.add_argument("--max-size", type=int, default=1024)
    ap.add_argument("--ti-calib-samples", type=int, default=4)
    ap.add_argument("--ti-run-samples", type=int, default=2)
    ap.add_argument("--mem-gib", type=float, default=6.0, help="address-space cap of each systems probe")
    ap.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # VARIANT:SIZE, run by the systems part
    ap.add_argument("--json-out", default=str(REPO / "benchmarks" / "loihi2_estimate.json"))
    args = ap.parse_args()
    if args.probe:
        name, size = args.probe.split(":")
        print(json.dumps(probe(name, int(size)), default=str))
        return
    parts = args.parts.split(",")
    res = {"benchmark": "loihi2_estimate", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "machine": machine_description(), "argv": sys.argv}
    if "pilotnet" in parts:
        res["pilotnet"] = part_pilotnet(args.lava_dl)
        print(json.dumps(res["pilotnet"]["total"]), flush=True)
    if "trained" in parts:
        res["trained"] = part_trained(args.trained.split(","))
    if "ti224" in parts:
        res["ti224"] = part_ti224(args.ti_calib_samples, args.ti_run_samples)
    if "systems" in parts:
        res["systems"] = part_systems(args.variants.split(","), args.max_size, args.mem_gib)
    Path(args.json_out).write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
