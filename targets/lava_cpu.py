"""``lava-cpu`` target: the graph as a Lava process graph on Loihi2SimCfg (floating point).

Samples stream back to back (sample k, frame f enters at step k*T + f + 1); every neuron
resets at the step its first input of a sample arrives. Each LIF layer and each stream
leaving the chip is tapped by a Probe, so every layer is compared at its own latency.
The simulation runs in a worker interpreter (targets.lava_worker, isolated mode, own session)
supervised here: on an error, Ctrl-C, SIGTERM/SIGHUP (resformer_deploy.cli.main.Terminated) or a stall
(no simulated step for ``stall_timeout`` seconds; Lava can hang, lava#231/#236) the worker's
whole process group is killed, and a stalled run is retried once.
No Lava process, shared memory segment (targets.lava_cleanup) or work directory survives a run,
however it ends: if this process is killed outright, the worker notices (EOF on its job pipe)
and cleans up itself. A worker that crashes is reported as a LavaRunError saying how.
"""
import json
import os
import pickle
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import nir
import numpy as np
import torch

from resformer_deploy.lava.plan import check_simulable, plan_lava
from resformer_deploy.util.signals import deferred_signals
from resformer_deploy.errors import DeployError

from targets.base import Capabilities, Target
from targets.host_partition import host_inputs, host_readout
from targets.lava_cleanup import unlink_logged
from targets.product_lowering import lower_products
from targets.reference import CompiledGraph, RunResult


STALL_TIMEOUT = 120.0
REPO = Path(__file__).resolve().parents[1]


class LavaRunError(DeployError):
    """The Lava simulation failed or stalled."""


class _Stall(Exception):
    pass


# The worker's command line: ``-I`` (isolated mode) keeps the current directory, the user site and
# PYTHON* variables off its sys.path (Python docs, "Command line and environment": -I), so only
# this repository and the venv are imported; argv: REPO FD WORKDIR.
LAUNCH = ("import sys; sys.path.insert(0, sys.argv[1]); from targets.lava_worker import main; "
          "sys.exit(main(int(sys.argv[2]), sys.argv[3]))")


def new_workdir() -> str:
    """A fresh path for the worker's work directory; the worker creates it (so nothing exists
    before a worker that can clean it up) and its mkdir fails should the name be taken."""
    return os.path.join(tempfile.gettempdir(), f"resformer-lava-{secrets.token_hex(8)}")


def send_job(w: int, job: tuple) -> None:
    data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    with open(w, "wb", closefd=False) as f:
        f.write(struct.pack("<Q", len(data)) + data)


def supervise(workdir: str, job: tuple, total_steps: int, progress=None, stall_timeout=STALL_TIMEOUT):
    """Run the worker on ``job``; stream its progress; return its exit status (negative: the
    signal that killed it) and the last line it printed. However this ends (return, error, Ctrl-C, Terminated, stall), the
    worker's whole process group is killed and its shared memory unlinked; the caller removes
    ``workdir`` (``cleanup_workdir``). If this process dies without a word (SIGKILL), the worker
    sees EOF on the job pipe and cleans up after itself (targets.lava_worker.watch_parent)."""
    log = tempfile.TemporaryFile()  # unnamed: nothing to leak; read for a crash report
    r, w = os.pipe()
    proc = None
    try:
        with deferred_signals():  # a signal in between would leave a worker nobody kills
            proc = subprocess.Popen([sys.executable, "-I", "-c", LAUNCH, str(REPO), str(r), workdir],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    pass_fds=(r,), start_new_session=True)
            os.close(r)  # else a worker dead before reading its job would block send_job, not EPIPE
            r = None
        send_job(w, job)
        last, t_last = 0, time.time()
        while True:
            done = exited(proc)
            try:
                with open(os.path.join(workdir, "progress")) as f:
                    cur = int(f.read() or 0)
            except (OSError, ValueError):
                cur = last
            if cur != last:
                if progress:
                    progress(cur - last)
                last, t_last = cur, time.time()
            if done:
                break
            if time.time() - t_last > stall_timeout:
                raise _Stall(f"no simulated step for {stall_timeout:.0f} s (at step {cur} of {total_steps})")
            time.sleep(0.2)
    except BrokenPipeError:  # the worker died before reading its job; its exit status says why
        pass
    finally:
        with deferred_signals():
            if proc is not None:
                kill_group(proc)
            for fd in (r, w):
                if fd is not None:
                    os.close(fd)
            unlink_logged(workdir)
            log.seek(max(0, log.seek(0, os.SEEK_END) - 65536))  # the tail is enough
            printed = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
            log.close()
    return proc.returncode, printed[-1] if printed else ""


def exited(proc) -> bool:
    """Has the worker exited? Asked without reaping it (waitid WNOWAIT): while it is an unreaped
    zombie its pid, which is also its process group id, cannot be reused, so kill_group cannot
    hit an unrelated group (waitid(2))."""
    return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def kill_group(proc) -> None:
    """SIGKILL the worker's whole session (the worker and every Lava process it started), then
    reap the worker."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def cleanup_workdir(workdir: str) -> None:
    shutil.rmtree(workdir, ignore_errors=True)




def failure_message(workdir: str, code: int, last_printed: str = "") -> str:
    """One line on why the worker failed: the signal that killed it, or its exception's first
    line (error.txt), or the last line it printed."""
    if code < 0:
        try:
            return f"Lava worker killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"Lava worker killed by signal {-code}"
    try:
        with open(os.path.join(workdir, "error.txt"), errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
        if lines:
            return lines[0]
    except OSError:
        pass
    return f"Lava worker exited with code {code}" + (f": {last_printed}" if last_printed else "")


class LavaCpuTarget(Target):
    """Lava CPU backend, Loihi2SimCfg floating point."""
    capabilities = Capabilities(arithmetic="float", flow="lava-float", engine="lava", options=("dssa", "stall_timeout"),
                                summary="Lava process graph on Loihi2SimCfg, floating point")

    def __init__(self):
        self._plan = None  # (graph, dssa, plan) of the last call: steps() then run() plan once

    def plan(self, graph, dssa):
        if self._plan is None or self._plan[0] is not graph or self._plan[1] != dssa:
            self._plan = (graph, dssa, plan_lava(graph, dssa))
        return self._plan[2]

    def plan_for(self, graph, dssa, prepared=None, quant=None):
        """The plan a run executes: the quantized network's, the flow's (``prepared``), or, for a
        direct call without the flow's artifacts, one planned here (kept for the next call)."""
        if quant is not None:
            return quant.plan
        if prepared and prepared.get("lava_plan") is not None:
            return prepared["lava_plan"]
        return self.plan(graph, dssa)

    def steps(self, graph, n_samples: int, T: int, *, prepared=None, quant=None, dssa: str = "fused",
              **options) -> int:
        self.refuse_unknown(options)
        quant = self.quantized_net(prepared, quant)
        return n_samples * T + self.plan_for(graph, dssa, prepared, quant).total_latency


    def run(self, graph, x: torch.Tensor, T: int, record_spikes: bool = True, record_membranes: bool = False,
            dtype=torch.float64, progress=None, info: Optional[dict] = None, prepared=None, quant=None,
            dssa: str = "fused", stall_timeout: float = STALL_TIMEOUT, **unknown) -> RunResult:
        self.refuse_unknown(unknown)
        self.check_recording(record_spikes=record_spikes, record_membranes=record_membranes)
        t0 = time.time()
        quant = self.quantized_net(prepared, quant)
        plan = self.plan_for(graph, dssa, prepared, quant)
        if plan.dssa != dssa:
            raise DeployError(f"the {'quantized ' if quant is not None else ''}plan was made for dssa={plan.dssa}, "
                              f"run asks for {dssa}")
        check_simulable(plan)
        host = CompiledGraph(graph, torch.float64)
        lowerings = (prepared or {}).get("product_lowerings")
        if lowerings is None:  # no flow artifacts (direct library call): lower as the flow's pass does
            lowerings = lower_products(graph, plan, x, T, quant=quant) if dssa == "synaptic" else {}
        N = x.shape[0]
        host_values = host_inputs(plan, host, x, T)  # [N, T, size]
        if quant is not None:
            host_values = quant.quantize_inputs(host_values)
        total_steps = N * T + plan.total_latency
        t_build = time.time() - t0
        attempts = []
        for attempt in range(2):
            d = new_workdir()  # created by the worker, removed here (or by the worker if we die)
            try:
                t1 = time.time()
                try:
                    code, printed = supervise(d, (plan, host_values, N, T, lowerings, record_spikes, quant), total_steps,
                                     progress if attempt == 0 else None, stall_timeout)
                except _Stall as e:
                    attempts.append(str(e))
                    continue
                t_run = time.time() - t1
                if code != 0:
                    raise LavaRunError(f"Lava simulation failed: {failure_message(d, code, printed)}")
                with open(os.path.join(d, "info.json")) as f:
                    worker_info = json.load(f)

                def read(n):
                    rec = np.load(os.path.join(d, f"{n}.npy"))[: N * T]
                    return rec.reshape(N, T, *plan.shapes[n]).swapaxes(0, 1)
                spikes = {n: torch.from_numpy(read(n) > 0.5) for n in plan.neuro
                          if isinstance(graph.nodes[n], nir.LIF)} if record_spikes else {}
                stream = {o: read(o) if quant is None else quant.dequantize(o, read(o)) for o in plan.outputs}
                break
            finally:
                cleanup_workdir(d)
        else:
            raise LavaRunError(f"Lava simulation stalled twice ({'; '.join(attempts)}); its processes were killed")
        out = host_readout(plan, host, stream, T, N)
        if info is not None:
            info.update({"dssa": dssa, "products": {n: {"cost": l.cost, "verification": l.verification}
                                                     for n, l in lowerings.items()},
                         "processes": worker_info["processes"], "process_kinds": worker_info["process_kinds"],
                         "steps": worker_info["steps"], "latency": plan.total_latency,
                         "build_s": t_build, "run_s": t_run, "stalls_retried": attempts})
        return RunResult(output=out.to(dtype), spikes=spikes, seconds=time.time() - t0)


class Loihi2SimTarget(LavaCpuTarget):
    """Lava CPU backend, Loihi2SimCfg(select_tag='fixed_pt'): the quantized network, bit-accurate
    process models (stock Sparse/DelaySparse/LIFReset/GradedVec/ProdNeuron/RingBuffer)."""
    capabilities = Capabilities(arithmetic="fixed", flow="loihi2-fixed", engine="lava", needs_quantized_net=True,
                                options=("dssa", "stall_timeout"), bit_exact_twin="loihi2-emu",
                                summary="Lava on Loihi2SimCfg(select_tag='fixed_pt'): bit-accurate fixed point")
