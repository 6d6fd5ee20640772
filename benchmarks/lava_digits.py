"""Lava (both DSSA lowerings) vs PyTorch on the shipped digits model, same machine, same run.

    .venv/bin/python benchmarks/lava_digits.py [--samples 50] [--json-out benchmarks/lava_digits.json]

Per sample wall time: PyTorch one sample at a time (what a streaming deployment does) and
batched; Lava streams all samples through one runtime (build + compile + run + stop, all
included, divided by the number of samples). Memory: peak PSS summed over this process and
all its descendants (sampled every 0.1 s; PSS does not double-count shared pages). OS
processes: peak number of descendants during the run. Lava is run twice per lowering: as a
deployment (only the output stream is tapped) and with a probe on every LIF layer (what
`verify` uses). Each also runs merged (lava-cpu's ``merge`` option: every Lava process model in one
OS process, targets/lava_processes/cluster.py). CPU: user + sys seconds of this process (PyTorch) or
of the calling thread plus the Lava worker and its processes (reaped children), per sample: less
inflated by a loaded machine than the wall time.
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import json
import os
import resource
import time
from pathlib import Path

import torch

from exporters.torch_to_nir import export_model
from resformer_deploy.reporting.tables import machine_description
from resformer_deploy.model.checkpoint import load_checkpoint
from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.util.processes import PeakSampler as Sampler
from targets import RunRequest, get_target

CKPT = Path(__file__).resolve().parents[1] / "examples" / "digits" / "digits_resformer.pt"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--json-out", default="")
    ap.add_argument("--runs", default="", help="comma-separated row names to run (default: all)")
    args = ap.parse_args()
    model = load_checkpoint(CKPT).model
    x = load_digits_split().x_test[: args.samples]
    N, T = len(x), model.config.T
    rows = {}
    with torch.no_grad():
        model(x[:1])  # warm-up
        s = Sampler()
        s.start()
        c0 = cpu(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        for i in range(N):
            model(x[i:i + 1])
        t_single = (time.perf_counter() - t0) / N
        cpu_single = (cpu(resource.RUSAGE_SELF) - c0) / N
        t0 = time.perf_counter()
        model(x)
        t_batch = (time.perf_counter() - t0) / N
        s.stop_flag = True
        s.join()
    rows["pytorch"] = {"s_per_sample": t_single, "cpu_s_per_sample": cpu_single, "s_per_sample_batched": t_batch,
                       "peak_pss_MB": s.peak_kb / 1024, "os_processes": 1 + s.peak_procs}
    graph = export_model(model)
    wanted = set(filter(None, args.runs.split(",")))
    for merge in (False, True):
        for dssa, record in (("fused", False), ("fused", True), ("synaptic", False), ("synaptic", True)):
            name = f"lava-{dssa}" + (" + per-layer probes" if record else "") + (" (merged)" if merge else "")
            if wanted and name not in wanted:
                continue
            rows[name] = lava_row(graph, x, T, dssa, record, merge)
    base = rows["pytorch"]["s_per_sample"]
    for k, r in rows.items():
        r["ratio_vs_pytorch_single"] = r["s_per_sample"] / base
        r["cpu_ratio_vs_pytorch_single"] = r["cpu_s_per_sample"] / rows["pytorch"]["cpu_s_per_sample"]
    res = {"machine": machine_description(), "samples": N, "T": T, "load_average": os.getloadavg(),
           "results": rows, "max_rss_main_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(res, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=2) + "\n")
    print("| run | s/sample | x PyTorch (1 sample at a time) | CPU s/sample | CPU x PyTorch | peak PSS MB | "
          "OS processes | Lava processes | latency |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k, r in rows.items():
        print(f"| {k} | {r['s_per_sample']:.4f} | {r['ratio_vs_pytorch_single']:.1f} | {r['cpu_s_per_sample']:.4f} | "
              f"{r['cpu_ratio_vs_pytorch_single']:.1f} | {r['peak_pss_MB']:.0f} | {r['os_processes']} | "
              f"{r.get('lava_processes', '')} | {r.get('latency_steps', '')} |")


def cpu(who) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def lava_row(graph, x, T, dssa, record, merge) -> dict:
    N = len(x)
    s = Sampler()
    s.start()
    # the calling thread's CPU (host stem, planning, readout) and the reaped worker's with its Lava
    # processes; not the whole process's: the PSS sampler's thread reads every process's smaps
    c0 = cpu(resource.RUSAGE_CHILDREN) + time.thread_time()
    t0 = time.perf_counter()
    run = get_target("lava-cpu").run(RunRequest.of(graph, x, T, dssa=dssa, record_spikes=record, merge=merge))
    wall = time.perf_counter() - t0
    cpu_s = cpu(resource.RUSAGE_CHILDREN) + time.thread_time() - c0
    info = run.stats.to_json()
    s.stop_flag = True
    s.join()
    return {"s_per_sample": wall / N, "wall_s": wall, "cpu_s_per_sample": cpu_s / N, "build_s": info["build_s"],
            "run_s": info["run_s"], "lava_compile_s": info["lava_compile_s"], "lava_start_s": info["lava_start_s"],
            "lava_steps_s": info["lava_steps_s"], "peak_pss_MB": s.peak_kb / 1024, "os_processes": 1 + s.peak_procs,
            "lava_processes": info["processes"], "latency_steps": info["latency"], "steps": info["steps"]}


if __name__ == "__main__":
    main()
