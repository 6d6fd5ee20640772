"""`evaluate --engine ray` against the in-process engine: the same emulator evaluation (loihi2-emu)
of the same N samples, local Ray with 2 workers vs one process, in the same run; and the wall time
of ti @224 on the 50,000 ImageNet validation images projected against the number of 2-core nodes
from a measured per-sample cost.

    .venv/bin/python benchmarks/ray_evaluate.py [--samples 1438] [--batch-size 32] [--shard-size 128]
        [--workers 2] [--ti-samples 4] [--ti-checkpoint PATH] [--workdir DIR]
        [--json-out benchmarks/ray_evaluate.json]
    .venv/bin/python benchmarks/ray_evaluate.py --from-overhead benchmarks/ray_worker_overhead_idle_epyc.json
        --shard-size 8 [--transfer-gbps 1.0] --json-out benchmarks/ray_projection_epyc.json

``--model digits`` (default): the digits model (examples/digits), evaluated on the digits training
split (1,438 samples; calibrated on the held-out split, never the evaluation samples); at ~3 ms a
sample the Ray per-shard costs weigh. ``--model ti``: ti @224 (random weights, as below) on
--samples random images, calibrated on --calib-samples others: the workload of the projection. Both engines prepare once (export,
calibration, quantization: ``seconds.prepare``, not part of the speed-up); the speed-up is the
in-process evaluation's wall time over the Ray shard phase's (from the first shard dispatched to
the last result). Ray's own costs are stated apart: ``ray.init`` of the local instance, the workers'
set-up (process start, imports, the setup fetched once per worker) and ``ray.shutdown``. The
in-process run is measured with PyTorch's default threads and with one thread (on a shared 2-core
machine two spinning OpenMP threads can slow it many times over); the speed-up is against the
faster of the two. Results must be identical (predictions, accuracy, agreement, saturation counts).

ti @224 (``--ti-samples K``, 0 to skip): an official-layout checkpoint made by
benchmarks/fullsize_models.py (random weights; or ``--ti-checkpoint``), K random N(0, 1) images
(npz, preset none), the in-process loihi2-emu evaluation (emulator + the float32 PyTorch model
beside it, as ``evaluate`` runs them): per-sample cost = evaluation wall / K. ``project`` turns it
into the wall time of 50,000 images on 1..64 nodes of 2 cores (2 workers per node, the parallel
efficiency measured on digits, shards of --shard-size, Ray start-up and worker set-up measured here).
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import json
import math
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import torch

REPO = Path(__file__).resolve().parents[1]
DIGITS_CKPT = REPO / "examples" / "digits" / "digits_resformer.pt"
TARGET = "loihi2-emu"
IMAGENET_VAL = 50_000
NODES = (1, 2, 4, 8, 16, 32, 64)
CORES_PER_NODE = 2
SAME = ("samples", "skipped", "top1", "top5", "per_class", "torch_top1", "agreement_with_torch", "target_info",
        "predictions")


def machine() -> dict:
    from resformer_deploy.reporting.tables import cpu_model, machine_description
    cpu = cpu_model()
    import ray
    return {"description": machine_description(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2 ** 30, 1), "python": platform.python_version(),
            "torch": torch.__version__, "ray": ray.__version__, "load_average": list(os.getloadavg())}


def normalized(rep: dict) -> dict:
    from resformer_deploy.reporting.tables import json_bytes
    return json.loads(json_bytes(rep))


def in_process(ck, md, cal, args, threads, ckpt) -> dict:
    from resformer_deploy.analysis.evaluation import evaluate
    from resformer_deploy.api import sizing  # refused before any batch, as `evaluate` is
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        c0 = psutil.Process().cpu_times()
        t0 = time.perf_counter()
        rep = evaluate(ck, md, TARGET, checkpoint=str(ckpt), limit=args.samples, batch_size=args.batch_size,
                       calibration=cal, calib_samples=args.calib_samples, sizing=sizing)
        total = time.perf_counter() - t0
        c1 = psutil.Process().cpu_times()
    finally:
        torch.set_num_threads(before)
    return {"threads": threads, "evaluate_s": rep["throughput"]["wall_seconds"], "prepare_s": rep["seconds"]["prepare"],
            "total_s": total, "cpu_s": round(c1.user + c1.system - c0.user - c0.system, 2), "per_sample_s": rep["throughput"]["wall_seconds"] / rep["samples"], "rep": rep}


class CpuAccount(threading.Thread):
    """CPU seconds (user + system) of every process on the machine but this one, sampled every
    0.5 s while the Ray run lasts, by kind: Ray's workers (``ray::`` processes), Ray's own
    daemons (raylet, gcs_server, agents, monitors: what a plain process does not have), others.
    Where the Ray workers' shard time goes when they are slower than a plain process."""

    def __init__(self):
        super().__init__(daemon=True)
        self.last, self.stop = {}, threading.Event()
        self.me = os.getpid()

    @staticmethod
    def kind(p: psutil.Process) -> str:
        cmd = " ".join(p.cmdline()) or p.name()
        if p.name().startswith("ray::") or cmd.startswith("ray::"):
            return "ray_workers"
        if "ray" in cmd and any(k in cmd for k in ("raylet", "gcs_server", "dashboard", "log_monitor",
                                                    "monitor.py", "runtime_env", "agent", "plasma")):
            return "ray_daemons"
        return "other"

    def poll(self) -> None:
        for p in psutil.process_iter():
            try:
                if p.pid == self.me:
                    continue
                t = p.cpu_times()
                self.last[p.pid] = (self.last.get(p.pid, (None,))[0] or self.kind(p), t.user + t.system)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                pass

    def run(self) -> None:
        self.poll()
        self.start_cpu = {pid: cpu for pid, (_, cpu) in self.last.items()}
        while not self.stop.wait(0.5):
            self.poll()

    def result(self) -> dict:
        self.stop.set()
        self.join()
        out = {}
        for pid, (kind, cpu) in self.last.items():
            out[kind] = out.get(kind, 0.0) + cpu - self.start_cpu.get(pid, 0.0)
        return {k: round(v, 2) for k, v in sorted(out.items())}


def on_ray(ck, md, cal, args, out_dir, ckpt) -> dict:
    from resformer_deploy.api import sizing  # refused before any batch, as `evaluate` is
    from resformer_deploy.engines.ray_engine import evaluate_on_ray
    cpu = CpuAccount()
    cpu.start()
    t0 = time.perf_counter()
    rep = evaluate_on_ray(ck, md, TARGET, checkpoint=str(ckpt), limit=args.samples, batch_size=args.batch_size,
                          shard_size=args.shard_size, calibration=cal, calib_samples=args.calib_samples,
                          workers=args.workers, out_dir=str(out_dir), sizing=sizing)
    total = time.perf_counter() - t0
    driver = psutil.Process().cpu_times()
    cpu_s = cpu.result()
    e = rep["engine"]
    return {"workers": e["workers"], "shards": e["shards"], "shard_size": e["shard_size"],
            "ray_start_s": e["seconds"]["ray_start"], "workers_ready_s": e["seconds"]["workers_ready"],
            "shards_s": e["seconds"]["shards"], "ray_stop_s": e["seconds"]["ray_stop"],
            "prepare_s": rep["seconds"]["prepare"], "total_s": total, "shipped_bytes": e["shipped_bytes"],
            "per_worker": e["per_worker"], "per_node": e["per_node"],
            "cpu_seconds_other_processes": cpu_s, "driver_cpu_seconds_cumulative": round(driver.user + driver.system, 2),
            "rep": rep}


def ti_checkpoint(args, workdir: Path) -> str:
    if args.ti_checkpoint is None:
        from fullsize_models import generate
        args.ti_checkpoint = generate(workdir, "ti")["path"]
    return args.ti_checkpoint


def random_npz(path: Path, cfg, n: int, seed: int) -> str:
    """``n`` N(0, 1) images of the model's input size (preset none), labels 0, 1, ... cyclic."""
    from resformer_deploy.data.writers import write_npz
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((n, cfg.in_channels, cfg.img_size, cfg.img_size), generator=g).numpy()
    return write_npz(str(path), x.astype(np.float32), np.arange(n) % cfg.num_classes)


def ti_per_sample(args, workdir: Path) -> dict:
    """In-process loihi2-emu evaluation of ``--ti-samples`` random images on ti @224."""
    from resformer_deploy.analysis.data_inputs import open_data
    from resformer_deploy.analysis.evaluation import evaluate
    from resformer_deploy.api import sizing  # refused before any batch, as `evaluate` is
    from resformer_deploy.model.checkpoint import load_checkpoint
    ckpt = ti_checkpoint(args, workdir)
    ck = load_checkpoint(ckpt)
    cfg = ck.config
    npz = random_npz(workdir / "ti-inputs.npz", cfg, args.ti_samples, 0)
    md = open_data(npz, cfg, ck.variant, preset="none")
    t0 = time.perf_counter()
    rep = evaluate(ck, md, TARGET, checkpoint=str(ckpt), batch_size=args.ti_samples, calib_samples=args.ti_calib,
                   sizing=sizing)
    wall = rep["throughput"]["wall_seconds"]
    return {"checkpoint": str(ckpt), "variant": ck.variant, "img_size": cfg.img_size, "T": cfg.T,
            "samples": rep["samples"], "calib_samples": args.ti_calib, "prepare_s": rep["seconds"]["prepare"],
            "evaluate_s": wall, "per_sample_s": wall / rep["samples"], "total_s": time.perf_counter() - t0,
            "peak_estimate_bytes": rep["estimate"]["peak_bytes"], "basis": "measured"}


def project(per_sample_s: float, nodes, *, samples: int = IMAGENET_VAL, cores_per_node: int = CORES_PER_NODE,
            shard_size: int = 128, efficiency: float = 1.0, ray_start_s: float = 0.0, workers_ready_s: float = 0.0,
            prepare_s: float = 0.0, ray_stop_s: float = 0.0, transfer_s_per_node: float = 0.0) -> list:
    """Projected wall time of ``samples`` on each node count: one worker per core (the emulator is
    single-threaded numpy), shards of ``shard_size`` handed out as workers free up (the last round
    may be partial), each worker at ``efficiency`` of one in-process core (the measured speed-up
    over the worker count), plus the one-off costs: preparing on the driver (calibration,
    quantization), Ray's start, the workers' set-up, the set-up's transfer from the driver's node to
    each other node (``transfer_s_per_node`` each, one node after another: the worst case, added in
    full) and Ray's stop."""
    shards = math.ceil(samples / shard_size)
    out = []
    for n in nodes:
        workers = n * cores_per_node
        rounds = math.ceil(shards / workers)
        run = rounds * shard_size * per_sample_s / efficiency
        transfer = (n - 1) * transfer_s_per_node
        total = prepare_s + ray_start_s + workers_ready_s + transfer + run + ray_stop_s
        out.append({"nodes": n, "workers": workers, "shards_per_worker": rounds, "run_s": round(run, 1),
                    "transfer_s": round(transfer, 1), "total_s": round(total, 1), "total_h": round(total / 3600, 2)})
    return out


def overhead_figures(path) -> dict:
    """The per-worker figure and Ray's one-off costs from benchmarks/ray_worker_overhead.py's JSON (one
    run, or ``{"runs": [...]}``), workers keeping freed memory as the engine runs them: seconds per
    sample of one worker with every worker of its node busy = the Ray shard phase's wall time (first
    dispatch to last result: Ray's daemons, the driver's round trips and the workers' sharing of the
    node included) x workers / samples, pooled over the runs; start, set-up, stop and prepare: means."""
    d = json.loads(Path(path).read_text())
    runs = d.get("runs", [d])
    rays = [r["ray"] for r in runs]
    busy = sum(r["shards_s"] * r["workers"] for r in rays)
    n = sum(run["samples"] for run in runs)
    mean = lambda k: sum(r[k] for r in rays) / len(rays)  # noqa: E731
    return {"source": str(path), "runs": len(runs), "samples": n, "workers_per_node": rays[0]["workers"],
            "per_worker_s_per_sample": round(busy / n, 4),
            "per_run_s_per_sample": [round(r["shards_s"] * r["workers"] / run["samples"], 3)
                                     for r, run in zip(rays, runs)],
            "ray_start_s": round(mean("ray_start_s"), 2), "workers_ready_s": round(mean("workers_ready_s"), 2),
            "ray_stop_s": round(mean("ray_stop_s"), 2), "prepare_s": round(mean("prepare_s"), 2),
            "shipped_bytes": rays[0]["shipped_bytes"]}


def projection_from_overhead(path, shard_size: int, transfer_bytes_per_s: float) -> dict:
    """The 50,000-image projection from ray_worker_overhead runs (``overhead_figures``), with the
    set-up's transfer to each further node an assumption: ``shipped_bytes`` at ``transfer_bytes_per_s``."""
    f = overhead_figures(path)
    per_node = f["shipped_bytes"] / transfer_bytes_per_s
    return {"samples": IMAGENET_VAL, "cores_per_node": CORES_PER_NODE, "shard_size": shard_size, "measured": f,
            "assumption": {"setup_transfer_bytes_per_node": f["shipped_bytes"],
                           "transfer_bytes_per_s": transfer_bytes_per_s, "transfer_s_per_node": round(per_node, 2),
                           "how": "the driver on one of the nodes; every other node fetches the set-up from the driver's "
                                  "node once (its workers share it through the node's object store), nodes one "
                                  "after another (worst case), added in full; the data set is on every node"},
            "rows": project(f["per_worker_s_per_sample"], NODES, shard_size=shard_size,
                            ray_start_s=f["ray_start_s"], workers_ready_s=f["workers_ready_s"],
                            prepare_s=f["prepare_s"], ray_stop_s=f["ray_stop_s"], transfer_s_per_node=per_node)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("digits", "ti"), default="digits",
                    help="the speed-up workload: the digits model on its training split, or ti @224 on "
                         "--samples random images (calibrated on --calib-samples others)")
    ap.add_argument("--samples", type=int, default=1438)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--shard-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--calib-samples", type=int, default=128)
    ap.add_argument("--ti-samples", type=int, default=4, help="0: skip the ti @224 measurement")
    ap.add_argument("--ti-calib", type=int, default=16, help="ti calibration samples (once, on the driver)")
    ap.add_argument("--ti-checkpoint", help="an official-layout ti checkpoint (default: made in --workdir)")
    ap.add_argument("--ti-per-sample", type=float, help="use this ti per-sample cost (s) instead of measuring")
    ap.add_argument("--from-overhead", metavar="JSON",
                    help="only the projection, from benchmarks/ray_worker_overhead.py's JSON (its Ray runs' per-worker "
                         "figure and one-off costs); written to --json-out")
    ap.add_argument("--transfer-gbps", type=float, default=1.0,
                    help="with --from-overhead: assumed GB/s of the set-up's transfer to each further node")
    ap.add_argument("--workdir")
    ap.add_argument("--json-out", default=str(REPO / "benchmarks" / "ray_evaluate.json"))
    args = ap.parse_args()
    if args.from_overhead:
        out = projection_from_overhead(args.from_overhead, args.shard_size, args.transfer_gbps * 1e9)
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
        print(json.dumps(out["measured"]))
        for r in out["rows"]:
            print(r)
        print(f"wrote {args.json_out}")
        return

    from resformer_deploy.analysis.data_inputs import DataArgs, calibration_data, open_data
    from resformer_deploy.model.checkpoint import load_checkpoint
    from resformer_deploy.reporting.tables import write_json

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ray-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.model == "digits":
        ckpt, data, calib = DIGITS_CKPT, ("digits", "train"), ("digits", "test")
        result = {"model": str(DIGITS_CKPT.relative_to(REPO)), "data": "digits train split",
                  "calibration": "digits test split"}
    else:
        ckpt = ti_checkpoint(args, workdir)
        cfg = load_checkpoint(ckpt).config
        data = (random_npz(workdir / "ti-eval.npz", cfg, args.samples, 0), "test")
        calib = (random_npz(workdir / "ti-calib.npz", cfg, args.calib_samples, 1), "test")
        result = {"model": f"ti @224 ({ckpt})", "data": f"{args.samples} random N(0, 1) images",
                  "calibration": f"{args.calib_samples} other random images"}
    result.update({"machine": machine(), "target": TARGET, "samples": args.samples, "batch_size": args.batch_size,
                   "shard_size": args.shard_size, "started": time.strftime("%Y-%m-%d %H:%M:%S")})
    ck = load_checkpoint(ckpt)
    preset = "auto" if args.model == "digits" else "none"
    md = open_data(data[0], ck.config, ck.variant, split=data[1], preset=preset)
    cal = calibration_data(DataArgs(data=data[0], split=data[1], calib_data=calib[0], calib_split=calib[1],
                                    preset=preset), ck.config, ck.variant, args.calib_samples, md)
    default_threads = torch.get_num_threads()
    runs = {f"in_process_{t}_threads": in_process(ck, md, cal, args, t, ckpt) for t in sorted({default_threads, 1})}
    ray_run = on_ray(ck, md, cal, args, tempfile.mkdtemp(prefix="shards-", dir=workdir), ckpt)  # a fresh run
    best = min(runs.values(), key=lambda r: r["evaluate_s"])
    same = all(normalized(r["rep"])[k] == normalized(ray_run["rep"])[k] for r in runs.values() for k in SAME)
    for r in (*runs.values(), ray_run):
        r.pop("rep")
    result.update(runs)
    result["ray"] = ray_run
    speed = best["evaluate_s"] / ray_run["shards_s"]
    result["speed_up"] = {
        "shards_vs_in_process": round(speed, 3),
        "with_worker_setup": round(best["evaluate_s"] / (ray_run["workers_ready_s"] + ray_run["shards_s"]), 3),
        "end_to_end_with_ray_start_stop": round(best["evaluate_s"] / sum(
            ray_run[k] for k in ("ray_start_s", "workers_ready_s", "shards_s", "ray_stop_s")), 3),
        "baseline": f"in process, {best['threads']} thread(s)", "goal": 1.7, "met": speed >= 1.7,
        "identical_results": same}
    efficiency = min(1.0, speed / ray_run["workers"])
    if args.model == "ti":  # the projection from the Ray workers' own cost (a node's cores all busy)
        per_worker = [w["seconds"] / w["samples"] for w in ray_run["per_worker"] if w["samples"]]
        ti = {"per_sample_s": sum(per_worker) / len(per_worker), "basis": "measured: Ray worker on ti, 2 per node",
              "prepare_s": ray_run["prepare_s"]}
        efficiency = 1.0
    elif args.ti_per_sample:
        ti = {"per_sample_s": args.ti_per_sample, "basis": "given (--ti-per-sample)", "prepare_s": 0.0}
    elif args.ti_samples:
        ti = ti_per_sample(args, workdir)
    else:
        ti = None
    result["ti224"] = ti
    if ti:
        result["projection"] = {
            "samples": IMAGENET_VAL, "cores_per_node": CORES_PER_NODE, "parallel_efficiency": round(efficiency, 3),
            "shard_size": args.shard_size, "ray_start_s": round(ray_run["ray_start_s"], 1),
            "workers_ready_s": round(ray_run["workers_ready_s"], 1), "prepare_s": round(ti["prepare_s"], 1),
            "rows": project(ti["per_sample_s"], NODES, shard_size=args.shard_size, efficiency=efficiency,
                            ray_start_s=ray_run["ray_start_s"], workers_ready_s=ray_run["workers_ready_s"],
                            prepare_s=ti["prepare_s"])}
    result["machine"]["load_average_after"] = list(os.getloadavg())
    write_json(args.json_out, result)
    print(json.dumps({k: result[k] for k in ("speed_up", "ti224")}, indent=1))
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
