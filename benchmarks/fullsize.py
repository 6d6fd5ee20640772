"""The official variants at native size on every simulator: the acceptance rows of the issue
"simulate the real models" (weight-shared convolution), measured as a user runs them.

    .venv/bin/python benchmarks/fullsize.py [--variants ti,cifar,dvsg] [--rows ROW,...]
        [--img-size N] [--T N] [--workdir DIR] [--json-out benchmarks/fullsize.json]

Checkpoints: official-layout files made by benchmarks/fullsize_models.py (random weights and BN
statistics, firing-rate buffers calibrated on random inputs) in --workdir (default: a temporary
directory, removed at the end). Every row is a subprocess, the CLI
(``python -m resformer_deploy.cli.main``, i.e. ``resformer-deploy``, run from this checkout) or,
where no command measures the figure, a worker of this script calling the library; each is
measured the same way: wall time; peak PSS summed over the process and all its descendants
(/proc/PID/smaps_rollup, as psutil ``memory_full_info().pss``; sampled every 0.2 s, or less often
when a round costs more than 50 ms, so that sampling takes at most ~20% of a core; PSS does not
double-count shared pages, Lava's shared-memory channels included); peak RSS of the main process; peak /dev/shm use above
the level at the start (the machine may be shared: other users' segments count too); peak
number of OS processes; exit code; and the command's JSON output (its --json-out). A failing
row is recorded with its exit code and the tail of its stderr, and the others still run.

Rows (--rows; default all), with the goal each is checked against:
  verify-lava     `verify --target lava-cpu --precision float64`: 0 mismatching spikes in every
                  LIF layer, same classes (ti 2 samples, cifar/dvsg 4)
  verify-sim      `verify --target loihi2-sim`: fixed-point Lava equal to the emulator spike for
                  spike in every layer, on the same samples (--lava-samples = --eval-samples)
  emu-throughput  loihi2-emu on ti, 16 samples batched, vs PyTorch float32 batched, same process:
                  emulator time <= 2x PyTorch (throughput ratio >= 0.5)
  lava-stream     `export` + `simulate --target lava-cpu`, ti, 4 samples streamed: <= 50x
                  PyTorch float32 per sample (one at a time, same inputs, measured by a worker)
  verify-ref      `verify --target reference`, ti, 8 samples: peak < 4 GiB
  ops             `ops --target reference` (PyTorch vs the NIR interpreter: must agree exactly)
                  and `ops --target loihi2-emu` (PyTorch's counter replaying the emulator's spikes vs
                  the emulator's count: must agree exactly)
and for every command: peak memory < 12 GiB. The ti rows (emu-throughput, lava-stream,
verify-ref, ops) run on ti; without ti in --variants they run on the variants given (a smoke
test of the row, marked "stand-in").
"""
import _bench  # noqa: F401  (this checkout first on sys.path)
import argparse
import datetime
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
GiB = 2 ** 30
ROWS = ("verify-lava", "verify-sim", "emu-throughput", "lava-stream", "verify-ref", "ops")
TI_ROWS = ("emu-throughput", "lava-stream", "verify-ref", "ops")
VERIFY_SAMPLES = {"ti": 2}  # acceptance: ti >= 2 samples, cifar/dvsg >= 4
DEFAULT_VERIFY_SAMPLES = 4
PEAK_GOAL_GiB = 12.0
REFERENCE_PEAK_GOAL_GiB = 4.0
THROUGHPUT_GOAL = 0.5  # loihi2-emu samples/s over PyTorch float32 samples/s, batched
STREAM_GOAL = 50.0  # lava-cpu s/sample over PyTorch float32 s/sample, one sample at a time
SAMPLE_PERIOD = 0.2
HEARTBEAT = 30.0


# ----------------------------------------------------------------------------- measurement

def _pss(p: psutil.Process) -> int:
    """PSS in bytes from /proc/PID/smaps_rollup (Linux >= 4.14; the kernel's sum over smaps, what
    psutil's memory_full_info().pss reads too, at half the cost), else psutil."""
    try:
        with open(f"/proc/{p.pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return p.memory_full_info().pss
    except (psutil.Error, AttributeError):
        return 0


def shm_used() -> int:
    try:
        return shutil.disk_usage("/dev/shm").used
    except OSError:
        return 0


def psm_segments() -> int:
    """Lava's shared-memory segments (psm_*) in /dev/shm, whoever made them."""
    try:
        return sum(1 for n in os.listdir("/dev/shm") if n.startswith("psm_"))
    except OSError:
        return 0


class TreeSampler(threading.Thread):
    """Peak PSS of ``pid`` + descendants, peak RSS of ``pid``, peak /dev/shm use and process count."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.stop_flag = pid, False
        self.peak_pss = self.peak_rss = self.peak_procs = self.last_pss = self.last_procs = 0
        self.shm_base = shm_used()
        self.peak_shm = self.samples = 0
        self.busy_s = 0.0  # time spent sampling (reading smaps of every process costs CPU too)

    def run(self):
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self.stop_flag:
            t0 = time.perf_counter()
            try:
                kids = root.children(recursive=True)
                rss = root.memory_info().rss
            except psutil.Error:
                break
            live = [k for k in kids if _alive(k)]
            total = _pss(root) + sum(_pss(k) for k in live)
            self.last_pss, self.last_procs = total, 1 + len(live)
            self.peak_pss = max(self.peak_pss, total)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_procs = max(self.peak_procs, 1 + len(live))
            self.peak_shm = max(self.peak_shm, shm_used() - self.shm_base)
            self.samples += 1
            cost = time.perf_counter() - t0
            self.busy_s += cost
            # with ~170 Lava processes a round costs ~0.1 s of CPU: keep sampling under ~20% of one
            # core on this 2-core machine (the figure competes with what it measures)
            time.sleep(max(SAMPLE_PERIOD, 4 * cost))


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _stop(proc: subprocess.Popen, grace: float = 120.0) -> None:
    """Stop our own child as Ctrl-C does (the CLI then stops Lava and removes its segments), and
    harder only if it does not exit in time."""
    for sig, wait in ((signal.SIGINT, grace), (signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass


def tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def measure(argv, label: str, logdir: Path, timeout: float, shown: str) -> dict:
    """Run ``argv`` (cwd: this checkout, which is first on PYTHONPATH), measured."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    safe = label.replace(" ", "_").replace("/", "_")
    out_path, err_path = logdir / f"{safe}.stdout", logdir / f"{safe}.stderr"
    print(f"[{label}] $ {shown}", flush=True)
    psm_before = psm_segments()
    t0 = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, cwd=str(REPO), env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        s = TreeSampler(proc.pid)
        s.start()
        timed_out, next_beat = False, t0 + HEARTBEAT
        try:
            while proc.poll() is None:
                time.sleep(0.1)
                now = time.perf_counter()
                if timeout and now - t0 > timeout:
                    timed_out = True
                    print(f"[{label}] timeout after {timeout:.0f} s: stopping it (SIGINT)", flush=True)
                    _stop(proc)
                    break
                if now >= next_beat:
                    next_beat = now + HEARTBEAT
                    print(f"[{label}]   {now - t0:.0f} s, PSS {s.last_pss / GiB:.2f} GiB (peak "
                          f"{s.peak_pss / GiB:.2f}), {s.last_procs} processes", flush=True)
        except BaseException:  # Ctrl-C of the benchmark: stop the child cleanly, then give up
            _stop(proc)
            raise
        finally:
            wall = time.perf_counter() - t0  # before the sampler's last round
            s.stop_flag = True
            s.join()
    rc = proc.returncode
    res = {"label": label, "command": shown, "argv": [str(a) for a in argv], "exit_code": rc,
           "timed_out": timed_out, "wall_s": round(wall, 2), "peak_pss_GiB": round(s.peak_pss / GiB, 3),
           "peak_rss_main_GiB": round(s.peak_rss / GiB, 3), "peak_shm_GiB": round(s.peak_shm / GiB, 3),
           "peak_processes": s.peak_procs, "psm_segments_before": psm_before, "psm_segments_after": psm_segments(),
           "memory_samples": s.samples, "sampling_busy_s": round(s.busy_s, 2),
           "stdout": str(out_path), "stderr": str(err_path)}
    text = tail(out_path, 10 ** 6) + tail(err_path, 10 ** 6)
    res["estimate_lines"] = [ln.strip() for ln in text.splitlines() if "estimat" in ln.lower()][:4]
    if rc != 0:
        res["stderr_tail"] = tail(err_path)
    print(f"[{label}] exit {rc} in {wall:.1f} s, peak PSS {res['peak_pss_GiB']:.2f} GiB, "
          f"{s.peak_procs} processes" + ("" if rc == 0 else f"\n{_indent(tail(err_path, 800))}"), flush=True)
    return res


def _indent(text: str) -> str:
    return "\n".join("    " + ln for ln in text.strip().splitlines())


def load_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- workers
# Rows no CLI command measures, run as `fullsize.py --worker KIND ARGS_JSON OUT_JSON` so their
# memory is measured like the commands' (the benchmark's own process stays out of the figures).

def worker(kind: str, args: dict, out: str) -> None:
    import torch
    from resformer_deploy.model.checkpoint import load_checkpoint
    res = {}
    if kind == "gen":
        from fullsize_models import generate
        res = generate(args["dir"], args["variant"], args.get("img_size"), args.get("T"))
    else:
        from resformer_deploy.analysis.equivalence import inputs_for
        ck = load_checkpoint(args["checkpoint"], img_size=args.get("img_size"), T=args.get("T"))
        model, cfg = ck.model.eval(), ck.config
        n = int(args["samples"])
        dvs = cfg.T if cfg.neuron == "plif" else 0
        # the inputs `simulate` / `verify` run on (seed 0)
        x, _, source = inputs_for((cfg.in_channels, cfg.img_size, cfg.img_size), n, 0, dvs_steps=dvs)
        res.update(variant=ck.variant, img_size=cfg.img_size, T=cfg.T, samples=n, inputs=source,
                   torch_threads=torch.get_num_threads())
        with torch.no_grad():
            model(x[:1])  # warm-up (allocator, oneDNN kernels)
            if kind == "torch-single":
                t0 = time.perf_counter()
                for i in range(n):
                    model(x[i:i + 1])
                res["torch_single_s_per_sample"] = (time.perf_counter() - t0) / n
            elif kind == "emu-throughput":
                times = []
                for _ in range(2):  # best of 2: the first full batch also pays for its allocations
                    t0 = time.perf_counter()
                    torch_pred = model(x).mean(0).argmax(-1)
                    times.append(time.perf_counter() - t0)
                res["torch_batched_s"], res["torch_batched_runs_s"] = min(times), times
        if kind == "emu-throughput":
            from exporters.torch_to_nir import export_model
            from resformer_deploy.flows import prepare
            from targets import RunRequest, get_target
            tgt = get_target("loihi2-emu")
            graph = export_model(model)
            t0 = time.perf_counter()
            prepared = prepare(tgt, graph, samples=x.double(), T=cfg.T, calib_samples=int(args["calib_samples"]))
            res["prepare_s"] = time.perf_counter() - t0  # calibration + quantization, once per model
            est = tgt.estimate(RunRequest.sizing(graph, n, cfg.T, prepared=prepared))
            if est is not None:
                res["estimate"] = {"seconds": est.seconds, "peak_GiB": est.peak_bytes / GiB, "basis": est.basis}
            t0 = time.perf_counter()
            run = tgt.run(RunRequest.of(graph, x.double(), cfg.T, record_spikes=False, prepared=prepared))
            res["emulator_batched_s"] = time.perf_counter() - t0
            res["saturation_events"] = sum(sum(v.values()) for v in (run.stats.saturation or {}).values())
            res["same_class_as_torch"] = float((run.output.mean(0).argmax(-1) == torch_pred).float().mean())
            res["throughput_ratio"] = res["torch_batched_s"] / res["emulator_batched_s"]
    Path(out).write_text(json.dumps(res, indent=2) + "\n")


# ----------------------------------------------------------------------------- rows

class Bench:
    def __init__(self, args, workdir: Path):
        self.a, self.dir = args, workdir
        self.logdir = workdir / "logs"
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.results = []

    def size_opts(self):
        o = []
        if self.a.img_size:
            o += ["--img-size", str(self.a.img_size)]
        if self.a.T:
            o += ["--T", str(self.a.T)]
        return o

    def cli(self, label, row, variant, args, json_out=None, checks=None, **extra):
        argv = [sys.executable, "-m", "resformer_deploy.cli.main"] + [str(a) for a in args]
        shown = "resformer-deploy " + " ".join(shlex.quote(str(a)) for a in args)
        if json_out:
            Path(json_out).unlink(missing_ok=True)  # a previous run's output must not pass for this one's
        r = measure(argv, label, self.logdir, self.a.timeout, shown)
        out = load_json(json_out) if json_out else None
        r.update(row=row, variant=variant, **extra)
        r["checks"] = run_checks(checks, out, r)  # verify writes its JSON before failing: checked too
        self.results.append(r)
        return r, out

    def work(self, label, row, variant, kind, wargs, checks=None, **extra):
        out_path = self.logdir / f"{label.replace(' ', '_')}.json"
        argv = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(wargs), str(out_path)]
        shown = f"(worker) {kind} {json.dumps(wargs)}"
        r = measure(argv, label, self.logdir, self.a.timeout, shown)
        out = load_json(out_path) if r["exit_code"] == 0 else None
        r.update(row=row, variant=variant, output=out, **extra)
        r["checks"] = run_checks(checks, out, r)
        self.results.append(r)
        return r, out

    def checkpoint(self, variant) -> Path:
        path = self.dir / f"{variant}.pth"
        if self.a.reuse and path.exists():
            print(f"[gen {variant}] reusing {path}", flush=True)
            return path
        self.work(f"gen {variant}", "gen", variant, "gen",
                  {"dir": str(self.dir), "variant": variant, "img_size": self.a.img_size, "T": self.a.T})
        return path

    def verify_samples(self, variant):
        return self.a.samples or VERIFY_SAMPLES.get(variant, DEFAULT_VERIFY_SAMPLES)

    # --- the rows

    def verify_lava(self, v, ck, stand_in):
        n, j = self.verify_samples(v), self.dir / f"verify-lava-{v}.json"
        self.cli(f"verify-lava {v}", "verify-lava", v,
                 ["verify", ck, "--target", "lava-cpu", "--precision", "float64", "--dssa", self.a.dssa,
                  "--samples", n, "--json-out", j] + self.size_opts(), j, check_verify, samples=n)

    def verify_sim(self, v, ck, stand_in):
        n, j = self.verify_samples(v), self.dir / f"verify-sim-{v}.json"
        self.cli(f"verify-sim {v}", "verify-sim", v,
                 ["verify", ck, "--target", "loihi2-sim", "--dssa", self.a.dssa, "--lava-samples", n,
                  "--eval-samples", n, "--calib-samples", self.a.calib_samples, "--json-out", j] + self.size_opts(),
                 j, check_ladder, samples=n)

    def emu_throughput(self, v, ck, stand_in):
        n = self.a.batch
        self.work(f"emu-throughput {v}", "emu-throughput", v, "emu-throughput",
                  {"checkpoint": str(ck), "samples": n, "img_size": self.a.img_size, "T": self.a.T,
                   "calib_samples": self.a.calib_samples}, check_throughput, samples=n, stand_in=stand_in)

    def lava_stream(self, v, ck, stand_in):
        n, nir_path = self.a.stream_samples, self.dir / f"{v}.nir"
        r, _ = self.cli(f"export {v}", "lava-stream", v, ["export", ck, "-o", nir_path] + self.size_opts(),
                        stand_in=stand_in, part="export")
        if r["exit_code"] != 0:
            return
        _, torch_out = self.work(f"torch-single {v}", "lava-stream", v, "torch-single",
                                 {"checkpoint": str(ck), "samples": n, "img_size": self.a.img_size, "T": self.a.T},
                                 stand_in=stand_in, part="pytorch")
        j = self.dir / f"lava-stream-{v}.json"
        per = (torch_out or {}).get("torch_single_s_per_sample")
        self.cli(f"lava-stream {v}", "lava-stream", v,
                 ["simulate", nir_path, "--target", "lava-cpu", "--dssa", self.a.dssa, "--samples", n,
                  "--json-out", j], j, lambda out, r: check_stream(out, r, per, n), samples=n, stand_in=stand_in,
                 part="lava")

    def verify_ref(self, v, ck, stand_in):
        n, j = self.a.ref_samples, self.dir / f"verify-ref-{v}.json"
        self.cli(f"verify-ref {v}", "verify-ref", v,
                 ["verify", ck, "--target", "reference", "--samples", n, "--json-out", j] + self.size_opts(),
                 j, check_reference, samples=n, stand_in=stand_in)

    def ops(self, v, ck, stand_in):
        n = self.a.ops_samples
        for target in ("reference", "loihi2-emu"):
            j = self.dir / f"ops-{target}-{v}.json"
            self.cli(f"ops {target} {v}", "ops", v,
                     ["ops", ck, "--target", target, "--samples", n, "--json-out", j] + self.size_opts(),
                     j, check_ops, samples=n, stand_in=stand_in, part=target)


# ----------------------------------------------------------------------------- checks (goals)

def run_checks(checks, out, r) -> dict:
    """The row's figures and verdict from a command's JSON; a JSON of another shape (the commands
    are changing) is reported, not fatal."""
    if checks is None or out is None:
        return {}
    try:
        return checks(out, r)
    except (KeyError, TypeError, ValueError, AttributeError, ZeroDivisionError) as e:
        return {"met": None, "check_error": f"{type(e).__name__}: {e}"}


def _passed(figures: dict, met) -> dict:
    return dict(figures, met=met)


def check_verify(out, r):
    reps = out.get("reports") or []
    if not reps:
        return _passed({"note": "no report in the JSON"}, False)
    rep = reps[0]
    layers = rep.get("layers") or []
    worst = max((layer.get("mismatches", 0) for layer in layers), default=None)
    ti = rep.get("target_info") or {}
    return _passed({"lif_layers": len(layers), "total_mismatches": rep.get("total_mismatches"),
                    "max_layer_mismatches": worst, "min_layer_identical_pct": rep.get("min_layer_identical_pct"),
                    "prediction_agreement": rep.get("prediction_agreement"),
                    "logits_max_rel_diff": rep.get("logits_max_rel_diff"), "verdict": rep.get("verdict"),
                    "target_s": (rep.get("seconds") or {}).get("target"), "lava_processes": ti.get("processes"),
                    "latency_steps": ti.get("latency")},
                   rep.get("total_mismatches") == 0 and rep.get("prediction_agreement") == 1.0 and bool(layers))


def check_ladder(out, r):
    lads = out.get("ladders") or []
    if not lads:
        return _passed({"note": "no ladder in the JSON"}, False)
    rungs = {g.get("role"): g for g in lads[0].get("rungs") or []}
    chk, flt, emu = rungs.get("fixed-point-check") or {}, rungs.get("float") or {}, rungs.get("fixed-point") or {}
    m = chk.get("emulator_match") or {}
    return _passed({"emulator_vs_lava_spike_mismatches": m.get("spike_mismatches"),
                    "compared_spikes": m.get("compared_spikes"), "bit_exact": m.get("bit_exact"),
                    "fixed_lava_layers": len(chk.get("layers") or []),
                    "fixed_lava_processes": chk.get("processes"), "fixed_lava_s": chk.get("seconds"),
                    "float_lava_mismatches_vs_torch": flt.get("total_mismatches"),
                    "emulator_s": emu.get("seconds"), "emulator_samples": emu.get("samples"),
                    "fixed_same_class_as_torch": emu.get("prediction_agreement_with_torch"),
                    "saturation_events": emu.get("saturation_events")},
                   m.get("spike_mismatches") == 0 and m.get("bit_exact") is True)


def check_throughput(out, r):
    return _passed({k: out.get(k) for k in ("torch_batched_s", "emulator_batched_s", "throughput_ratio", "prepare_s",
                                            "same_class_as_torch", "saturation_events", "estimate")},
                   out["throughput_ratio"] >= THROUGHPUT_GOAL)


def check_stream(out, r, torch_per_sample, n):
    if not torch_per_sample:
        return _passed({"note": "no PyTorch figure (its worker failed)"}, None)
    info = out.get("info") or {}
    run_per = out["seconds"] / n  # build + compile + run + stop of the Lava network, per sample
    cmd_per = r["wall_s"] / n  # the whole command (imports, read, plan, Lava), per sample
    return _passed({"torch_s_per_sample": torch_per_sample, "lava_run_s_per_sample": run_per,
                    "ratio_run": run_per / torch_per_sample, "command_s_per_sample": cmd_per,
                    "ratio_command": cmd_per / torch_per_sample, "lava_processes": info.get("processes"),
                    "latency_steps": info.get("latency"), "steps": info.get("steps")},
                   run_per / torch_per_sample <= STREAM_GOAL)


def check_reference(out, r):
    reps = out.get("reports") or []
    fig = {f"{rep.get('precision')}_verdict": rep.get("verdict") for rep in reps}
    fig["all_passed"] = bool(reps) and all(rep.get("passed") for rep in reps)
    return _passed(fig, fig["all_passed"] and (r["peak_pss_GiB"] < REFERENCE_PEAK_GOAL_GiB
                                               if r["variant"] == "ti" else True))


def check_ops(out, r):
    # every target's counts must equal an independent count: PyTorch's (the emulator's: PyTorch's
    # counter replaying the emulator's spikes, as the fixed-point spikes differ from the float model's)
    rep = out.get("report") or {}
    mrd = out.get("max_rel_diff")
    return _passed({"reference": out.get("reference"), "max_rel_diff": mrd,
                    "sops_per_image": rep.get("sops"),
                    "energy_uJ_per_image": None if rep.get("energy_mJ") is None else rep["energy_mJ"] * 1e3},
                   mrd is not None and mrd <= 1e-9)


# ----------------------------------------------------------------------------- report

ROW_GOALS = {
    "gen": "",
    "verify-lava": "0 mismatching spikes, same classes",
    "verify-sim": "fixed-point Lava == emulator, every spike",
    "emu-throughput": f"emulator >= {THROUGHPUT_GOAL}x PyTorch batched",
    "lava-stream": f"<= {STREAM_GOAL:g}x PyTorch per sample",
    "verify-ref": f"ti: peak < {REFERENCE_PEAK_GOAL_GiB:g} GiB",
    "ops": "counts equal to PyTorch's",
}


def key_figures(r) -> str:
    c = r.get("checks") or {}
    row = r["row"]

    def fmt(v, f="{:.3g}"):
        return "?" if v is None else f.format(v)

    if row == "gen":
        o = r.get("output") or {}
        return (f"{o.get('bytes', 0) / 1e6:.1f} MB, {o.get('img_size')}px T={o.get('T')}, seed {o.get('seed')}, "
                f"rates {fmt(o.get('rate_min'))}..{fmt(o.get('rate_max'))}" if o else "")
    if row == "verify-lava":
        return (f"{c.get('total_mismatches')} mismatches in {c.get('lif_layers')} layers, same class "
                f"{fmt(c.get('prediction_agreement'))}, {c.get('lava_processes')} Lava procs") if c else ""
    if row == "verify-sim":
        return (f"{c.get('emulator_vs_lava_spike_mismatches')} of {c.get('compared_spikes')} spikes differ, "
                f"bit-exact {c.get('bit_exact')}; float Lava {c.get('float_lava_mismatches_vs_torch')} "
                f"mismatches") if c else ""
    if row == "emu-throughput":
        return (f"PyTorch {fmt(c.get('torch_batched_s'))} s, emulator {fmt(c.get('emulator_batched_s'))} s, "
                f"ratio {fmt(c.get('throughput_ratio'))}") if c else ""
    if row == "lava-stream" and r.get("part") == "lava":
        return (f"{fmt(c.get('lava_run_s_per_sample'))} s/sample = {fmt(c.get('ratio_run'))}x PyTorch "
                f"({fmt(c.get('torch_s_per_sample'))} s); whole command {fmt(c.get('ratio_command'))}x; "
                f"{c.get('lava_processes')} Lava procs") if c else ""
    if row == "verify-ref":
        return ", ".join(f"{k} {v}" for k, v in c.items() if k != "met")
    if row == "ops":
        return (f"vs {c.get('reference')}: max rel. diff {fmt(c.get('max_rel_diff'), '{:.1e}')}, "
                f"{fmt(c.get('sops_per_image'), '{:,.0f}')} SOPs/image") if c else ""
    return ""


def markdown(results, workdir=None) -> str:
    lines = ["| row | variant | command | exit | wall s | peak PSS GiB | main RSS GiB | /dev/shm GiB | procs | "
             "figures | goal | met |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.get("checks") or {}
        met = c.get("met")
        mem_ok = r["peak_pss_GiB"] < PEAK_GOAL_GiB
        verdict = ("" if met is None else ("yes" if met else "NO")) if r["exit_code"] == 0 else (
            "FAIL (timeout)" if r.get("timed_out") else "FAIL")
        if not mem_ok:
            verdict += f" (peak >= {PEAK_GOAL_GiB:g} GiB)"
        cmd = r["command"].replace(str(workdir), "$W") if workdir else r["command"]
        if cmd.startswith("(worker)"):
            cmd = "fullsize.py worker " + cmd.split()[1]
        lines.append(f"| {r['row']}{' (stand-in)' if r.get('stand_in') else ''} | {r['variant']} | `{cmd}` | "
                     f"{r['exit_code']} | {r['wall_s']} | {r['peak_pss_GiB']} | {r['peak_rss_main_GiB']} | "
                     f"{r['peak_shm_GiB']} | {r['peak_processes']} | {key_figures(r)} | "
                     f"{ROW_GOALS.get(r['row'], '')} | {verdict} |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main

def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        return worker(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--variants", default="ti,cifar,dvsg")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"subset of {','.join(ROWS)}")
    ap.add_argument("--img-size", type=int, help="override the native image size (smoke runs)")
    ap.add_argument("--T", type=int, help="override the variant's T (smoke runs)")
    ap.add_argument("--workdir", help="checkpoints, NIR files, logs and command outputs (kept); default: a "
                                      "temporary directory, removed at the end")
    ap.add_argument("--reuse", action="store_true", help="reuse checkpoints already in --workdir")
    ap.add_argument("--json-out", default="")
    ap.add_argument("--samples", type=int, help="verify-lava/verify-sim samples (default: ti 2, others 4)")
    ap.add_argument("--batch", type=int, default=16, help="emu-throughput batch")
    ap.add_argument("--stream-samples", type=int, default=4, help="lava-stream samples")
    ap.add_argument("--ref-samples", type=int, default=8, help="verify-ref samples")
    ap.add_argument("--ops-samples", type=int, default=4, help="ops samples")
    ap.add_argument("--calib-samples", type=int, default=16,
                    help="fixed-point calibration samples (verify-sim, emu-throughput)")
    ap.add_argument("--dssa", default="fused", choices=("fused", "synaptic"), help="DSSA lowering of the Lava rows")
    ap.add_argument("--timeout", type=float, default=6 * 3600.0, help="per command, s (0: none)")
    args = ap.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    rows = [r for r in args.rows.split(",") if r]
    bad = [r for r in rows if r not in ROWS]
    if bad:
        ap.error(f"unknown row(s) {', '.join(bad)} (rows: {', '.join(ROWS)})")

    from resformer_deploy.reporting.tables import machine_description
    from resformer_deploy.util.memory_budget import budget_bytes
    started = datetime.datetime.now().astimezone()
    tmp = None if args.workdir else tempfile.mkdtemp(prefix="fullsize-")
    workdir = Path(args.workdir or tmp).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    bench = Bench(args, workdir)
    print(f"fullsize benchmark: variants {','.join(variants)}, rows {','.join(rows)}, workdir {workdir}", flush=True)
    try:
        for v in variants:
            ck = bench.checkpoint(v)
            if not ck.exists():
                print(f"[{v}] no checkpoint: skipping its rows", flush=True)
                continue
            for row in rows:
                if row in TI_ROWS and "ti" in variants and v != "ti":
                    continue  # acceptance rows of ti alone
                getattr(bench, row.replace("-", "_"))(v, ck, row in TI_ROWS and v != "ti")
    finally:
        res = {"benchmark": "fullsize", "date": started.isoformat(timespec="seconds"),
               "machine": machine_description(), "memory_budget_GiB": round(budget_bytes() / GiB, 2),
               "cpu_count": os.cpu_count(), "total_memory_GiB": round(psutil.virtual_memory().total / GiB, 2),
               "git_commit": _git_commit(), "argv": sys.argv, "variants": variants, "rows": rows,
               "img_size_override": args.img_size, "T_override": args.T, "dssa": args.dssa,
               "calib_samples": args.calib_samples,
               "goals": {"peak_GiB": PEAK_GOAL_GiB, "reference_peak_GiB_ti": REFERENCE_PEAK_GOAL_GiB,
                         "throughput_ratio": THROUGHPUT_GOAL, "stream_ratio": STREAM_GOAL},
               "workdir": None if tmp else str(workdir), "results": bench.results}
        for r in bench.results:
            r["peak_goal_met"] = r["peak_pss_GiB"] < PEAK_GOAL_GiB
            if tmp:  # the logs go with the directory: keep no paths to them
                r.pop("stdout", None), r.pop("stderr", None)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(res, indent=2) + "\n")
            print(f"wrote {args.json_out}")
        print(f"($W: {workdir})")
        print(markdown(bench.results, workdir))
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _git_commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() + (" + local changes" if subprocess.run(
                                  ["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                  capture_output=True, text=True, timeout=10).stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    main()
