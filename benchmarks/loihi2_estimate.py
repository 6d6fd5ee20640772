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
  size (multiples of 16) of each that fits each system, and the shipped models. Planned from the
  shape-only graph (hardware/loihi2/shape_graph.py; checked against the exported graph's plan on every
  size whose neuron bound is at most --compare-neurons), each size in a child process under --mem-gib
  of address space. Per system, every size below the first whose neuron lower bound exceeds the
  system's neurons (certain refusal there and above: the bound grows with the size) is scanned from the
  top down to the first that fits; a size whose core lower bound (hardware/loihi2/core_bound.py) exceeds
  the system's neuro cores is refused for certain without planning (no plan with a clean design-rule
  check has fewer cores; checked against every planned size); sizes above the answer are each listed with
  their refusal, or as not planned (bound above --budget-neurons, or the child ran out of memory): then
  the answer is not exact. --reuse takes the planned sizes of an earlier run's JSON instead of replanning.
* pilotnet also shows the calibrated model on each rate of Balafrej et al. 2025's two-neuron runs, which
  pin the per-step floors (anchors.PAIR_LIF, estimate.pair_check).
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
from resformer_deploy.hardware.loihi2.estimate import calibrate, pair_check
from resformer_deploy.hardware.loihi2.pilotnet import compare_with_intel, pair_plan, pilotnet_plan
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
    pair = pair_plan()
    cal = calibrate(plan, pair)
    out = {"layers": rows, "total": total, "calibration": cal.to_json(), "pair_lif_check": pair_check(pair, cal)}
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


def recompute(prev: dict, cal) -> dict:
    """An earlier run's estimate (its JSON ``estimate``) under the calibration ``cal``, from its recorded
    activity: per layer cores, synaptic ops and spikes; each layer's neurons solved from its recorded
    core time (k x core_work_s, with the earlier k: exact to rounding, checked to be whole numbers)."""
    from resformer_deploy.hardware.loihi2.estimate import OP, LayerActivity, estimate
    T, k_old = prev["T"], prev["calibration"]["k_time"]["value"]
    acts = []
    for r in prev["layers"]:
        rest = (r["core_time_per_step_s"] / k_old * r["cores"] - r["synops_per_sample"] / T * OP["synaptic_op_time"]
                - r["spikes_out_per_sample"] / T * OP["spike_within_tile_time"])
        n = rest / OP["neuron_update_time"]
        if abs(n - round(n)) > 1e-3 * max(1.0, n):
            raise SystemExit(f"{r['layer']}: {n} neurons from its recorded core time: not a whole number")
        acts.append(LayerActivity(r["layer"], r["cores"], round(n), r["synops_per_sample"], r["spikes_out_per_sample"]))
    est = estimate(acts, T, prev["chips"], prev["pipeline_latency_steps"], cal, prev["embedded_macs_per_sample"])
    if abs(est.chip_crossing_spikes - prev["chip_crossing_spikes_per_sample"]) > 1e-6 * (1 + est.chip_crossing_spikes):
        raise SystemExit("chip crossings differ from the earlier run's: not the same activity")
    k = cal.time.k
    layers = [{**r, "core_time_per_step_s": r["core_time_per_step_s"] / k_old * k} for r in prev["layers"]]
    return {**prev, **est.to_json(), "layers": layers, "recomputed_from": "earlier run's activity, this calibration"}


def part_recompute(path: str, names):
    from resformer_deploy.hardware.loihi2.estimate import calibrate
    prev = json.loads(Path(path).read_text())
    cal = calibrate(pilotnet_plan(), pair_plan())
    out = {}
    for name in names:
        src = prev["ti224"] if name == "ti224" else prev["trained"][name]
        out[name] = {**src, "estimate": recompute(src["estimate"], cal)}
        print(name, "\n".join(est_lines(out[name]["estimate"])), flush=True)
    return out


def est_lines(d: dict):
    f = lambda x, u, s: f"{x['value'] * s:.3g} {u} (±{x['rel_error'] * 100:.0f}%)"  # noqa: E731
    return [f"  time per step {f(d['step_time_s'], 'us', 1e6)}, latency {f(d['latency_s'], 'ms', 1e3)}, "
            f"throughput {f(d['throughput_per_s'], '/s', 1)}",
            f"  dynamic {f(d['dynamic_energy_J'], 'mJ', 1e3)}, static {f(d['static_energy_J'], 'mJ', 1e3)}, "
            f"total {f(d['total_energy_J'], 'mJ', 1e3)}"]


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


def probe(name, img_size, compare_neurons, budget_neurons, plan_cores, reuse=None):
    """Plan of variant ``name`` at ``img_size`` (random weights) from its shape-only graph, as JSON: totals,
    design-rule violations, the neuron lower bound and the core lower bound (core_bound.py). Not planned
    (``planned`` false) when the core bound exceeds ``plan_cores`` (refused on every system for certain)
    or the neuron bound exceeds ``budget_neurons``. ``reuse``: an earlier run's probe of this size (same
    planner), kept instead of planning again. A planned size checks the core bound against its plan
    (total, and per layer where the plan's design-rule check is clean); when the neuron bound is at most
    ``compare_neurons`` the exported graph is planned too and the two plans' JSON compared."""
    from exporters.torch_to_nir import export_model
    from resformer_deploy.hardware.loihi2 import map_to_loihi2, run_drc
    from resformer_deploy.hardware.loihi2.core_bound import core_lower_bound
    from resformer_deploy.hardware.loihi2.shape_graph import neuron_lower_bound, shape_graph
    from resformer_deploy.lava.plan import plan_lava
    from resformer_deploy.model.calibration import random_buffers
    from resformer_deploy.model.resformer import build_model
    t0 = time.perf_counter()
    model = random_buffers(build_model(name, img_size=img_size))
    g = shape_graph(model)
    bound = core_lower_bound(g)
    out = {"neuron_lower_bound": neuron_lower_bound(g), "core_lower_bound": bound.total,
           "bound_s": round(time.perf_counter() - t0, 1), "planned": False}
    if reuse is not None:
        out.update({k: reuse[k] for k in ("planned", "totals", "violations", "plan_s", "equals_exported_plan",
                                          "peak_rss_GiB") if k in reuse}, reused=True)
        out["core_bound_holds"] = bound.total <= reuse["totals"]["neuro_cores"] or bool(reuse["violations"])
        out["core_bound_equals_plan"] = bound.total == reuse["totals"]["neuro_cores"]
        return out
    if bound.total > plan_cores or out["neuron_lower_bound"] > budget_neurons:
        return out
    t0 = time.perf_counter()
    plan = map_to_loihi2(plan_lava(g, "fused", offsets=False))  # the fused plan reads no offsets
    drc = run_drc(plan)
    out.update(planned=True, totals=dict(vars(plan.totals)), violations=drc[0], plan_s=round(time.perf_counter() - t0, 1))
    clean = [r for r in plan.layers if not any(v.startswith(r.layer + ":") for v in drc[0])]
    out["core_bound_holds"] = (all(bound.layers[r.layer] <= r.cores for r in clean)
                               and (bound.total <= plan.totals.neuro_cores or bool(drc[0])))
    out["core_bound_equals_plan"] = bound.total == plan.totals.neuro_cores
    if out["neuron_lower_bound"] <= compare_neurons:
        del g
        full = map_to_loihi2(export_model(model), "fused")
        out["equals_exported_plan"] = plan.to_json(*drc) == full.to_json(*run_drc(full))
    import resource
    out["peak_rss_GiB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20, 2)
    return out


def _limit_memory(gib):
    import resource
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (int(gib * 2 ** 30),) * 2)


def _probe_child(name, img_size, args, log):
    """``probe`` in a child process under an address-space cap (a child that fails is logged; None)."""
    reuse = _reusable(args.reuse, name, img_size)
    r = subprocess.run([sys.executable, __file__, "--probe", f"{name}:{img_size}", "--compare-neurons",
                        str(args.compare_neurons), "--budget-neurons", str(args.budget_neurons),
                        "--plan-cores", str(args.plan_cores)] + (["--reuse-plan", json.dumps(reuse)] if reuse else []),
                       capture_output=True, text=True, preexec_fn=_limit_memory(args.mem_gib), timeout=3600)
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or ["killed"])[-1][:100]
        log.append(f"{name} @{img_size}: not measured ({why})")
        print("  " + log[-1], flush=True)
        return None
    d = json.loads(r.stdout.strip().splitlines()[-1])
    print(f"  {name} @{img_size}: " + json.dumps({k: d.get(k) for k in (
        "neuron_lower_bound", "core_lower_bound", "bound_s", "planned", "reused", "plan_s", "peak_rss_GiB",
        "equals_exported_plan", "core_bound_holds")})
          + (f" cores {d['totals']['neuro_cores']:,}" if d["planned"] else ""), flush=True)
    return d


def _reusable(path, name, img_size):
    """The planned probe of ``name`` @``img_size`` in an earlier run's JSON (its "systems" part), or None."""
    if not path:
        return None
    d = json.loads(Path(path).read_text())["systems"]["per_size"].get(name, {}).get(str(img_size))
    return d if d and d.get("planned") else None


def bounds(name, sizes, stop):
    """Neuron lower bound (shape_graph.neuron_lower_bound) of variant ``name`` at each of ``sizes``
    (ascending) up to the first above ``stop``; no planning."""
    from resformer_deploy.hardware.loihi2.shape_graph import neuron_lower_bound, shape_graph
    from resformer_deploy.model.calibration import random_buffers
    from resformer_deploy.model.resformer import build_model
    out = {}
    for z in sizes:
        out[z] = neuron_lower_bound(shape_graph(random_buffers(build_model(name, img_size=z))))
        if out[z] > stop:
            break
    return out


def _bounds_child(name, sizes, stop, args):
    r = subprocess.run([sys.executable, __file__, "--bounds", f"{name}:{stop}:{','.join(map(str, sizes))}"],
                       capture_output=True, text=True, preexec_fn=_limit_memory(args.mem_gib), timeout=3600, check=True)
    got = {int(k): v for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items()}
    vals = [got[z] for z in sizes if z in got]
    if not all(a < b for a, b in zip(vals, vals[1:])):  # the certainty argument needs a growing bound
        raise SystemExit(f"{name}: neuron lower bound does not grow with the size: {got}")
    return got


def part_systems(variants, args):
    """Per variant and system: every multiple of 16 up to the first size whose neuron lower bound exceeds
    the system's neurons (that size and all larger are refused: the bound grows with the size), scanned
    from the top down to the first size that fits. No monotonicity of cores or design rules is assumed:
    every size above the answer is planned and its refusal recorded, or listed as not planned."""
    from resformer_deploy.hardware.loihi2 import limits as L
    from resformer_deploy.hardware.loihi2.systems import fit_table, refusals, system_chips
    from resformer_deploy.model.variants import get_config
    out = {"native": {}, "largest_img_size": {}, "per_size": {}, "neuron_lower_bounds": {}, "trained": {},
           "not_measured": [],
           "memory_cap_GiB": args.mem_gib, "budget_neurons": args.budget_neurons,
           "compare_neurons": args.compare_neurons}
    for v in variants:
        cache = {}

        def at(size, v=v, cache=cache):
            if size not in cache:
                cache[size] = _probe_child(v, size, args, out["not_measured"])
            return cache[size]
        most = max(system_chips().values()) * L.MAX_NEURONS_PER_CHIP
        bounds = _bounds_child(v, list(range(16, args.max_size + 1, 16)), most, args)
        all_sizes = sorted(bounds)
        out["neuron_lower_bounds"][v] = bounds
        native = get_config(v).img_size
        got = at(native)
        if got and got["planned"]:
            out["native"][v] = {"img_size": native, "chips": got["totals"]["chips"],
                                "neuro_cores": got["totals"]["neuro_cores"],
                                "systems": fit_table(got["totals"], got["violations"])}
        out["largest_img_size"][v] = {}
        for system, chips in system_chips().items():
            cap = chips * L.MAX_NEURONS_PER_CHIP
            sizes = [z for z in all_sizes if bounds[z] <= cap]
            beyond = [z for z in all_sizes if bounds[z] > cap]
            certain_from = beyond[0] if beyond else None  # a suffix of all_sizes: the bound grows
            answer, above = None, []
            cores = chips * L.NEURO_CORES_PER_CHIP
            for size in reversed(sizes):
                d = at(size)
                if d is None:
                    above.append({"size": size, "refused_by": None, "why": "not measured (child failed)"})
                    continue
                if not d["planned"] and d["core_lower_bound"] > cores:  # a clean plan has at least that many
                    above.append({"size": size, "by_core_bound": True, "refused_by": [
                        f"neuro cores: needs at least {d['core_lower_bound']:,} (core lower bound) > {cores:,} "
                        f"({L.NEURO_CORES_PER_CHIP} per chip x {chips:,}), or a design rule"]})
                    continue
                if not d["planned"]:
                    above.append({"size": size, "refused_by": None, "why": "not planned (neuron bound "
                                  f"{bounds[size]:,} > budget {args.budget_neurons:,})"})
                    continue
                why = refusals(d["totals"], chips, d["violations"])
                if not why:
                    answer = size
                    break
                above.append({"size": size, "refused_by": why})
            out["largest_img_size"][v][system] = {
                "largest": answer, "exact": certain_from is not None and all(a["refused_by"] for a in above),
                "refused_from_by_neuron_bound": certain_from,
                "refused_by_core_bound": sorted(a["size"] for a in above if a.get("by_core_bound")),
                "sizes_above": sorted(above, key=lambda a: a["size"])}
            print(v, system, json.dumps({k: out["largest_img_size"][v][system][k]
                                         for k in ("largest", "exact", "refused_from_by_neuron_bound")}), flush=True)
        out["per_size"][v] = {z: d for z, d in sorted(cache.items())}
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
    ap.add_argument("--mem-gib", type=float, default=10.0, help="address-space cap of each systems probe")
    ap.add_argument("--budget-neurons", type=int, default=1_300_000_000,
                    help="plan a size only when its neuron lower bound is at most this (memory: ~5 B/neuron)")
    ap.add_argument("--plan-cores", type=int, default=147_456,
                    help="plan a size only when its core lower bound is at most this (Hala Point's neuro cores)")
    ap.add_argument("--reuse", default=None, help="an earlier run's JSON: its planned sizes are kept, not replanned")
    ap.add_argument("--reuse-plan", default=None, help=argparse.SUPPRESS)  # a probe's JSON, run by the systems part
    ap.add_argument("--compare-neurons", type=int, default=40_000_000,
                    help="also plan the exported graph and compare, when the neuron bound is at most this")
    ap.add_argument("--bounds", default=None, help=argparse.SUPPRESS)  # VARIANT:S1,S2,..., run by the systems part
    ap.add_argument("--probe", default=None, help=argparse.SUPPRESS)  # VARIANT:SIZE, run by the systems part
    ap.add_argument("--recompute", default=None, metavar="JSON",
                    help="re-derive the trained and ti224 estimates of an earlier run's JSON (its recorded activity) "
                         "under the current calibration, instead of running them (part 'recompute', --trained names)")
    ap.add_argument("--json-out", default=str(REPO / "benchmarks" / "loihi2_estimate.json"))
    args = ap.parse_args()
    if args.bounds:
        name, stop, sizes = args.bounds.split(":")
        print(json.dumps(bounds(name, [int(z) for z in sizes.split(",")], int(stop))))
        return
    if args.probe:
        name, size = args.probe.split(":")
        print(json.dumps(probe(name, int(size), args.compare_neurons, args.budget_neurons, args.plan_cores,
                               json.loads(args.reuse_plan) if args.reuse_plan else None), default=str))
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
        res["systems"] = part_systems(args.variants.split(","), args)
    if "recompute" in parts:
        res["recomputed"] = part_recompute(args.recompute, args.trained.split(","))
    Path(args.json_out).write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
