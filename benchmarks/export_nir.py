"""Export time and file size of every variant (random weights, BN statistics and firing rates).

    .venv/bin/python benchmarks/export_nir.py [--repeat 3] [--json-out benchmarks/export_nir.json]

Times: export (BN/scale folding, graph construction, in memory) and the atomic HDF5 write,
best of --repeat runs; the file is read back once and checked.
"""
import _bench  # this checkout first on sys.path
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from exporters.nir_io import read_nir, write_nir
from exporters.torch_to_nir import export_model
from resformer_deploy.analysis.nir_summary import graph_summary
from resformer_deploy.reporting.tables import machine_description
from resformer_deploy.model.calibration import random_buffers
from resformer_deploy.model.resformer import build_model
from resformer_deploy.model.variants import VARIANTS


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--json-out", default="")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.variants.split(","):
            model = random_buffers(build_model(name))
            cfg = model.config
            best_export = best_write = float("inf")
            cold = None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                graph = export_model(model)
                t1 = time.perf_counter()
                write_nir(graph, Path(d) / f"{name}.nir")
                t2 = time.perf_counter()
                best_export, best_write = min(best_export, t1 - t0), min(best_write, t2 - t1)
                cold = cold if cold is not None else t2 - t0  # first run: allocations, page faults
            size = (Path(d) / f"{name}.nir").stat().st_size
            t0 = time.perf_counter()
            read_nir(Path(d) / f"{name}.nir")
            t_read = time.perf_counter() - t0
            s = graph_summary(graph)
            rows.append({"variant": name, "img_size": cfg.img_size, "T": cfg.T, "nodes": s["nodes"],
                         "params": s["params"], "neurons_per_step": s["neurons"],
                         "export_s": round(best_export, 3), "write_s": round(best_write, 3),
                         "total_s": round(best_export + best_write, 3), "cold_total_s": round(cold, 3),
                         "read_s": round(t_read, 3),
                         "file_MB": round(size / 1e6, 2)})
            print(json.dumps(rows[-1]), flush=True)
    _bench.write_and_print(
        {"machine": machine_description(), "repeat": args.repeat, "results": rows}, args.json_out,
        ["variant", "input", "nodes", "parameters", "neurons/step", "export s", "write s", "total s (warm)",
         "total s (cold, 1st run)", "read s", "file MB"],
        lambda r: [r["variant"], f"{r['img_size']}, T={r['T']}", r["nodes"], f"{r['params']:,}",
                   f"{r['neurons_per_step']:,}", r["export_s"], r["write_s"], r["total_s"], r["cold_total_s"],
                   r["read_s"], r["file_MB"]])


if __name__ == "__main__":
    main()
