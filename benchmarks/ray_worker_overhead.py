"""Per-worker overhead of `evaluate --engine ray` on ti @224 (issue 28 item 4): 2 Ray workers of one
thread each against one single-threaded in-process evaluation, in the same run, with Ray's
start-up, the workers' set-up and Ray's stop stated apart.

    .venv/bin/python benchmarks/ray_worker_overhead.py [--samples 16] [--batch-size 4] [--shard-size 4]
        [--calib-samples 16] [--ti-checkpoint PATH] [--workdir DIR] [--ray-malloc both|kept|default]
        [--ray-only] [--json-out benchmarks/ray_worker_overhead.json]

ti @224 with random weights (an official-layout checkpoint made by benchmarks/fullsize_models.py,
as benchmarks/ray_evaluate.py does), N(0, 1) images (preset none), target loihi2-emu. The setup is
prepared once here (export, calibration on other random images, quantization) and the same code a
Ray worker runs, analysis.evaluation.evaluate_range over all samples, is timed in this process
twice: (a) with PyTorch on one thread (``torch.set_num_threads(1)``: the "1 thread" baseline of
benchmarks/ray_evaluate.py) and (b) with every thread pool on one thread (PyTorch's, OpenMP's and
numpy's OpenBLAS through threadpoolctl): what a Ray worker of one CPU gets, since Ray starts it
with OMP_NUM_THREADS=1 (checked: OpenBLAS and OpenMP report 1 thread there, 2 in a plain process
on this machine). Each run records wall seconds, CPU seconds of the process and of its main thread:
CPU/wall above 1 means a "single-threaded" run used more than one core. The Ray run
(engines/ray_engine.evaluate_on_ray, local instance, 2 workers; run first, while this process
holds no setup), whose shard records carry each
worker's CPU and main-thread CPU seconds and main-thread page faults per shard. Results must be identical.
``--ray-malloc both`` (the default) runs Ray twice: workers as the engine runs them (they keep the
memory they free: util.malloc.keep_freed_memory) and with glibc's own malloc settings
(RESFORMER_DEPLOY_RAY_MALLOC=default), the overhead found in issue 28 (stop 36).

Beside the workers, each Ray run records the CPU time of every process of the local instance, per
thread and per phase (benchmarks/ray_processes.py: Ray's daemons, the engine's watchdog, the driver,
the workers' main and other threads, the machine's steal time; ``ray_processes`` and, per sample of
the shard phase, ``shard_phase_cpu_per_sample_s`` in the JSON): what takes CPU from the two workers
on a 2-core node. ``--ray-only`` stops after the Ray run(s).

Two controls isolate Ray from the rest: (c) the same in-process run on the setup as a worker
receives it (cloudpickle dumps + loads, as shipped: ray_engine._run_on_ray), and (d) two plain
processes at once (no Ray), each with every pool on one thread, each loading the shipped setup
from a file and evaluating half of the samples (a worker's warm-up first): the concurrency of two
Ray workers on the two cores without Ray; (e) as (d), the processes keeping the memory they free
as a Ray worker does.
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import torch

from ray_processes import RayCpu, anon_huge_pages_mib, phases

REPO = Path(__file__).resolve().parents[1]
TARGET = "loihi2-emu"


def thread_faults() -> int:
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def timed_range(setup, ck, md, n, *, all_pools: bool) -> dict:
    """evaluate_range over samples 0..n-1 in this process, one PyTorch thread (and, with
    ``all_pools``, every native thread pool limited to one thread)."""
    from contextlib import nullcontext
    from threadpoolctl import threadpool_info, threadpool_limits
    from resformer_deploy.analysis.evaluation import evaluate_range
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1) if all_pools else nullcontext():
            pools = {i["internal_api"]: i["num_threads"] for i in threadpool_info()}
            c0, t0, w0, f0 = time.process_time(), time.thread_time(), time.perf_counter(), thread_faults()
            part = evaluate_range(setup, ck.model, md, 0, n, workers=1)  # as a Ray worker (DECODE_THREADS)
            wall, cpu, main = time.perf_counter() - w0, time.process_time() - c0, time.thread_time() - t0
            faults = thread_faults() - f0
    finally:
        torch.set_num_threads(before)
    return {"thread_pools": dict(pools, torch=1), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "main_thread_cpu_s": round(main, 2), "cpu_per_wall": round(cpu / wall, 3),
            "per_sample_s": round(wall / n, 3), "cpu_per_sample_s": round(cpu / n, 3),
            "main_thread_cpu_per_sample_s": round(main / n, 3), "main_thread_page_faults_per_sample": round(faults / n),
            "predictions": part.predictions, "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def child(payload: str, start: int, stop: int, out: str, keep: bool) -> None:
    """Controls (d), (e): one plain process evaluating samples start..stop-1 as a Ray worker would
    (``keep``: keeping the memory it frees, as a Ray worker does)."""
    import ray.cloudpickle as cloudpickle
    from threadpoolctl import threadpool_limits
    from resformer_deploy.analysis.evaluation import evaluate_range
    from resformer_deploy.engines.ray_engine import ShardWorker, reopen_data
    from resformer_deploy.util.malloc import keep_freed_memory
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        w = ShardWorker.__new__(ShardWorker)  # not an actor: its set-up and warm-up, without Ray
        w.ck, w.setup, recipe = cloudpickle.loads(Path(payload).read_bytes())
        w.data = reopen_data(recipe, w.ck)
        kept = keep and keep_freed_memory()  # where ShardWorker.load calls it
        w._warm_up()
        c0, t0, w0, f0 = time.process_time(), time.thread_time(), time.perf_counter(), thread_faults()
        part = evaluate_range(w.setup, w.ck.model, w.data, start, stop, workers=1)
        wall, cpu, main = time.perf_counter() - w0, time.process_time() - c0, time.thread_time() - t0
        faults = thread_faults() - f0
    n = stop - start
    Path(out).write_text(json.dumps({"samples": n, "freed_memory_kept": kept, "anon_huge_pages_mib": anon_huge_pages_mib(),
                                     "main_thread_page_faults_per_sample": round(faults / n), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                                     "main_thread_cpu_s": round(main, 2), "per_sample_s": round(wall / n, 3),
                                     "cpu_per_sample_s": round(cpu / n, 3),
                                     "main_thread_cpu_per_sample_s": round(main / n, 3),
                                     "cpu_per_wall": round(cpu / wall, 3), "predictions": part.predictions}))


def two_plain_processes(ck, setup, md, n, workdir: Path, keep: bool) -> dict:
    """Control (d) (or (e), ``keep``): two plain processes at once, each with half of the samples."""
    import subprocess
    import sys
    import ray.cloudpickle as cloudpickle
    from resformer_deploy.engines.ray_engine import data_recipe
    payload = workdir / "payload.pkl"
    payload.write_bytes(cloudpickle.dumps((ck, setup.shippable(), data_recipe(md))))
    half = n // 2
    outs = [workdir / f"child-{i}.json" for i in range(2)]
    try:
        procs = [subprocess.Popen([sys.executable, __file__, "--child", str(payload), str(a), str(b), str(o),
                                   "keep" if keep else "default"])
                 for (a, b), o in zip(((0, half), (half, n)), outs)]
        for q in procs:
            assert q.wait() == 0, "a control process failed"
        parts = [json.loads(o.read_text()) for o in outs]
    finally:
        payload.unlink()
        for o in outs:
            o.unlink(missing_ok=True)
    return {"processes": parts, "predictions": [p for part in parts for p in part.pop("predictions")],
            "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def shard_phase_cpu(processes: dict, n: int) -> dict:
    """CPU seconds per sample of the shard phase: Ray's daemons (every process of the instance but
    the workers and the driver), the workers' main threads and other threads, the driver, and the
    machine's steal time."""
    sh = processes["phases"].get("shards")
    if not sh:
        return {}
    out = {"ray_daemons": sh["ray_daemons_cpu_s"], **sh["by_kind"], "steal": sh["steal_s"]}
    return {k: round(v / n, 4) for k, v in out.items()}


def ray_run(ck, md, cal, args, out_dir, malloc: str) -> dict:
    """One evaluate_on_ray run on a local instance of 2 workers; ``malloc`` "default": its workers
    keep glibc's malloc settings (the local instance's processes take this process's environment)."""
    from resformer_deploy.api import sizing  # said and refused before any batch, as `evaluate` is
    from resformer_deploy.engines.ray_engine import MALLOC_ENV, evaluate_on_ray
    old = os.environ.pop(MALLOC_ENV, None)
    if malloc == "default":
        os.environ[MALLOC_ENV] = "default"
    account = RayCpu()
    account.start()
    t0 = time.perf_counter()
    try:
        with phases(account):
            rep = evaluate_on_ray(ck, md, TARGET, checkpoint=str(args.ti_checkpoint), limit=args.samples,
                                  batch_size=args.batch_size, shard_size=args.shard_size, calibration=cal,
                                  calib_samples=args.calib_samples, workers=2, out_dir=str(out_dir),
                                  say=lambda m: print(m, flush=True), sizing=sizing)
    finally:
        os.environ.pop(MALLOC_ENV, None)
        if old is not None:
            os.environ[MALLOC_ENV] = old
        account.finish()
    total = time.perf_counter() - t0
    processes = account.report()
    e = rep["engine"]
    workers = {}
    for f in sorted((Path(out_dir) / "shards").glob("shard-*.json")):
        r = json.loads(f.read_text())
        w = workers.setdefault(r["worker"]["worker"], {"samples": 0, "busy_s": 0.0, "cpu_s": 0.0,
                                                       "main_thread_cpu_s": 0.0, "main_thread_page_faults": 0})
        w["freed_memory_kept"] = r["worker"]["freed_memory_kept"]
        w["main_thread_page_faults"] += r["worker"]["main_thread_page_faults"]
        w["samples"] += len(r["predictions"])
        w["busy_s"] += r["seconds"]
        w["cpu_s"] += r["worker"]["cpu_seconds"]
        w["main_thread_cpu_s"] += r["worker"]["main_thread_cpu_seconds"]
    for w in workers.values():
        n = w["samples"]
        w.update({k: round(v, 2) for k, v in w.items() if isinstance(v, float)},
                 per_sample_s=round(w["busy_s"] / n, 3), cpu_per_sample_s=round(w["cpu_s"] / n, 3),
                 main_thread_cpu_per_sample_s=round(w["main_thread_cpu_s"] / n, 3),
                 main_thread_page_faults_per_sample=round(w.pop("main_thread_page_faults") / n),
                 cpu_per_wall=round(w["cpu_s"] / w["busy_s"], 3))
    s = e["seconds"]
    return {"workers": e["workers"], "shards": e["shards"], "shipped_bytes": e["shipped_bytes"],
            "prepare_s": round(rep["seconds"]["prepare"], 2), "ray_start_s": round(s["ray_start"], 2),
            "workers_ready_s": round(s["workers_ready"], 2), "shards_s": round(s["shards"], 2),
            "ray_stop_s": round(s["ray_stop"], 2), "total_s": round(total, 2), "per_worker": workers,
            "shard_phase_cpu_per_sample_s": shard_phase_cpu(processes, len(rep["predictions"])),
            "ray_processes": processes,
            "predictions": rep["predictions"], "load_average_after": [round(x, 2) for x in os.getloadavg()]}


def main():
    import sys
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        return child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6] == "keep")
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--shard-size", type=int, default=4)
    ap.add_argument("--calib-samples", type=int, default=16)
    ap.add_argument("--ti-checkpoint")
    ap.add_argument("--workdir")
    ap.add_argument("--ray-malloc", choices=("both", "kept", "default"), default="both",
                    help="Ray workers as the engine runs them (kept), with glibc's malloc settings (default), or both")
    ap.add_argument("--ray-only", action="store_true",
                    help="only the Ray run(s), with their processes' CPU (no in-process runs, no controls)")
    ap.add_argument("--json-out", default=str(REPO / "benchmarks" / "ray_worker_overhead.json"))
    args = ap.parse_args()

    from ray_evaluate import machine, random_npz
    from resformer_deploy.analysis.data_inputs import DataArgs, calibration_data, open_data
    from resformer_deploy.analysis.evaluation import prepare_evaluation
    from resformer_deploy.api import sizing  # refused before any batch, as `evaluate` is
    from resformer_deploy.model.checkpoint import load_checkpoint
    from resformer_deploy.reporting.tables import write_json

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ray-overhead-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "target": TARGET,
              "samples": args.samples, "batch_size": args.batch_size, "shard_size": args.shard_size,
              "calib_samples": args.calib_samples, "default_torch_threads": torch.get_num_threads(),
              "cores_available": len(os.sched_getaffinity(0))}
    if args.ti_checkpoint is None:
        from fullsize_models import generate
        args.ti_checkpoint = generate(workdir, "ti")["path"]
    ck = load_checkpoint(args.ti_checkpoint)
    cfg = ck.config
    data = random_npz(workdir / "ti-eval.npz", cfg, args.samples, 0)
    calib = random_npz(workdir / "ti-calib.npz", cfg, args.calib_samples, 1)
    md = open_data(data, cfg, ck.variant, preset="none")
    cal = calibration_data(DataArgs(data=data, calib_data=calib, preset="none"), cfg, ck.variant,
                           args.calib_samples, md)
    result["model"] = f"ti @{cfg.img_size}, T={cfg.T}, random weights ({args.ti_checkpoint})"
    # Ray first, while this process holds no setup: the workers' memory (~2.5 GB each on ti) is the peak
    malloc = ("kept", "default") if args.ray_malloc == "both" else (args.ray_malloc,)
    rays = {}
    for m in malloc:
        rays[m] = ray_run(ck, md, cal, args, tempfile.mkdtemp(prefix="shards-", dir=workdir), m)
        print(json.dumps({k: v for k, v in rays[m].items() if k not in ("predictions", "ray_processes")}), flush=True)
    if args.ray_only:
        names = {"kept": "ray", "default": "ray_default_malloc"}
        for m, r in rays.items():
            r.pop("predictions")
            result[names[m]] = r
        result["machine"]["load_average_after"] = list(os.getloadavg())
        write_json(args.json_out, result)
        print(f"wrote {args.json_out}")
        return
    t0 = time.perf_counter()
    setup, _, _, rest, _ = prepare_evaluation(ck, md, TARGET, limit=args.samples, batch_size=args.batch_size,
                                              calibration=cal, calib_samples=args.calib_samples, sizing=sizing)
    rest.close()
    result["in_process_prepare_s"] = round(time.perf_counter() - t0, 2)
    runs = {"torch_1_thread": timed_range(setup, ck, md, args.samples, all_pools=False),
            "all_pools_1_thread": timed_range(setup, ck, md, args.samples, all_pools=True)}
    print(json.dumps({k: {kk: vv for kk, vv in r.items() if kk != "predictions"} for k, r in runs.items()}), flush=True)
    import ray.cloudpickle as cloudpickle
    from resformer_deploy.engines.ray_engine import data_recipe
    ck2, setup2, _ = cloudpickle.loads(cloudpickle.dumps((ck, setup.shippable(), data_recipe(md))))
    runs["all_pools_1_thread_shipped_setup"] = timed_range(setup2, ck2, md, args.samples, all_pools=True)
    del ck2, setup2
    plain = {"two_plain_processes": two_plain_processes(ck, setup, md, args.samples, workdir, keep=False),
             "two_plain_processes_kept": two_plain_processes(ck, setup, md, args.samples, workdir, keep=True)}
    keys = ("index", "prediction", "top5", "torch_prediction")
    strip = lambda preds: [{k: p[k] for k in keys} for p in preds]  # noqa: E731
    first = next(iter(rays.values()))
    result["identical_predictions"] = all(strip(r["predictions"]) == strip(first["predictions"])
                                          for r in (*runs.values(), *plain.values(), *rays.values()))
    for r in (*runs.values(), *rays.values(), *plain.values()):
        r.pop("predictions")
    result.update(runs)
    result.update(plain)
    names = {"kept": "ray", "default": "ray_default_malloc"}
    for m, r in rays.items():
        result[names[m]] = r
        # wall: in-process seconds over the Ray shard phase's; CPU (load-robust): in-process main-thread
        # CPU per sample over the Ray workers' mean
        speed = {name: round(x["wall_s"] / r["shards_s"], 3) for name, x in runs.items()}
        ray_cpu = sum(w["main_thread_cpu_per_sample_s"] for w in r["per_worker"].values()) / len(r["per_worker"])
        r["speed_up_2_workers"] = {"vs_" + k: v for k, v in speed.items()}
        r["efficiency"] = {"vs_" + k: round(v / 2, 3) for k, v in speed.items()}
        r["cpu_efficiency"] = {"vs_" + k: round(x["main_thread_cpu_per_sample_s"] / ray_cpu, 3)
                               for k, x in runs.items()}
    result["machine"]["load_average_after"] = list(os.getloadavg())
    write_json(args.json_out, result)
    print(json.dumps({k: result[k] for k in ("identical_predictions",)}))
    print(json.dumps({k: {kk: vv for kk, vv in result[k].items() if kk != "per_worker"}
                      for k in (*runs, *(names[m] for m in rays))}, indent=1))
    print(json.dumps(plain, indent=1))
    print(json.dumps({names[m]: r["per_worker"] for m, r in rays.items()}, indent=1))
    print(f"wrote {args.json_out}")


if __name__ == "__main__":
    main()
