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
and cleans up itself. A worker killed by a signal, out of memory, or refusing its input is reported as a
LavaRunError saying how; a Python exception in it that is none of these, as an InternalError (a bug:
targets.worker_errors).
"""
import dataclasses
import json
import os
import pickle
import secrets
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nir
import numpy as np
import torch

from resformer_deploy.lava.plan import plan_lava
from resformer_deploy.util.signals import deferred_signals
from resformer_deploy.errors import DeployError

from targets.base import Capabilities, Estimate, RunRequest, RunStats, Target
from resformer_deploy.lava.host_partition import host_inputs, host_readout
from targets.lava_cleanup import unlink_logged
from targets.lava_worker import CHANNEL_SLOTS, wiring
from targets.worker_errors import failure, read_record
from resformer_deploy.passes.product_lowering import lower_products
from exporters.interpreter import CompiledGraph
from targets.base import RunResult


STALL_TIMEOUT = 120.0
REPO = Path(__file__).resolve().parents[1]


class LavaRunError(DeployError):
    """The Lava simulation failed or stalled."""


class _Stall(Exception):
    pass


# The worker's command line: ``-I`` (isolated mode) keeps the current directory, the user site and
# PYTHON* variables off its sys.path (Python docs, "Command line and environment": -I), so only
# this repository and the venv are imported; argv: REPO FD WORKDIR. Its temporary files go into
# WORKDIR (tempfile.tempdir, pinned before anything could cache another; TMPDIR for its children):
# multiprocessing's pymp-* directories with the listener sockets of Lava's managers
# (CPython Lib/multiprocessing/util.py get_temp_dir) are removed with WORKDIR however the run ends,
# and are left in $TMPDIR by a killed run otherwise. h5py and scipy.signal are imported only if used
# (resformer_deploy/util/deferred_import.py: ~0.4 s of the worker's start-up).
LAUNCH = ("import sys, tempfile; tempfile.tempdir = sys.argv[3]; sys.path.insert(0, sys.argv[1]); "
          "from resformer_deploy.util.deferred_import import defer; defer('h5py', 'scipy.signal'); "
          "from targets.lava_worker import main; sys.exit(main(int(sys.argv[2]), sys.argv[3]))")


def new_workdir() -> str:
    """A fresh path for the worker's work directory; the worker creates it (so nothing exists
    before a worker that can clean it up) and its mkdir fails should the name be taken."""
    return os.path.join(tempfile.gettempdir(), f"resformer-lava-{secrets.token_hex(8)}")


def worker_env(workdir: str) -> dict:
    """The worker's environment: TMPDIR=WORKDIR (see LAUNCH), and one BLAS thread per process. Lava
    runs every process model in its own OS process, all of them at once, so BLAS threads only
    oversubscribe the cores (OpenBLAS threads spin while they wait); ti @224, 1 sample: 8.6 s of
    the Conv processes' 25 s of CPU was outside their own thread with 2 threads on 2 cores."""
    env = dict(os.environ, TMPDIR=workdir)
    env.update({k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    return env


def send_job(w: int, job: tuple) -> None:
    data = pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL)
    with open(w, "wb", closefd=False) as f:
        f.write(struct.pack("<Q", len(data)))
        f.write(data)  # not concatenated: at full size the job is hundreds of MB


def supervise(workdir: str, job: tuple, total_steps: int, progress=None, stall_timeout=STALL_TIMEOUT):
    """Run the worker on ``job``; stream its progress; return its exit status (negative: the
    signal that killed it) and the last line it printed. However this ends (return, error, Ctrl-C, Terminated, stall), the
    worker's whole process group is killed and its shared memory unlinked; the caller removes
    ``workdir`` (``cleanup_workdir``). If this process dies without a word (SIGKILL), the worker
    sees EOF on the job pipe and cleans up after itself (targets.lava_worker.watch_parent)."""
    log = tempfile.TemporaryFile()  # unnamed: nothing to leak; read for a crash report
    r, w = os.pipe()
    proc, pidfd = None, None
    try:
        with deferred_signals():  # a signal in between would leave a worker nobody kills
            proc = subprocess.Popen([sys.executable, "-I", "-c", LAUNCH, str(REPO), str(r), workdir],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    pass_fds=(r,), start_new_session=True, env=worker_env(workdir))
            os.close(r)  # else a worker dead before reading its job would block send_job, not EPIPE
            r = None
        send_job(w, job)
        last, t_last, seen = 0, time.time(), ""
        while True:
            done = exited(proc)
            try:  # "<steps> [phase]" (targets.lava_worker._write_progress): a new phase is progress too
                with open(os.path.join(workdir, "progress")) as f:
                    text = f.read().strip()
                cur = int(text.split()[0]) if text else last
            except (OSError, ValueError, IndexError):
                text, cur = seen, last
            if text != seen:
                seen, t_last = text, time.time()
            if cur != last:
                if progress:
                    progress(cur - last)
                last = cur
            if done:
                break
            if time.time() - t_last > stall_timeout:
                raise _Stall(f"no simulated step for {stall_timeout:.0f} s (at step {cur} of {total_steps})")
            pidfd = nap_until_exit(proc, pidfd, 0.2)
    except BrokenPipeError:  # the worker died before reading its job; its exit status says why
        pass
    finally:
        with deferred_signals():
            if proc is not None:
                kill_group(proc)
            for fd in (r, w, pidfd if pidfd is not None and pidfd >= 0 else None):
                if fd is not None:
                    os.close(fd)
            unlink_logged(workdir)
            log.seek(max(0, log.seek(0, os.SEEK_END) - 65536))  # the tail is enough
            printed = [line.strip() for line in log.read().decode(errors="replace").splitlines() if line.strip()]
            log.close()
    return proc.returncode, printed[-1] if printed else ""


def nap_until_exit(proc, pidfd, seconds: float):
    """Sleep ``seconds`` or until the worker exits, whichever comes first, without reaping it (see
    ``exited``): a pidfd turns readable when its process exits (pidfd_open(2), Linux 5.3). Saves the
    rest of the nap after each run (on average half of it); plain sleep where pidfds are missing.
    -> the pidfd to pass next time (-1: none)."""
    if pidfd is None:
        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            pidfd = -1
    if pidfd < 0:
        time.sleep(seconds)
    else:
        select.select([pidfd], [], [], seconds)
    return pidfd


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


def read_probe(path: str, shape, spikes: bool) -> np.ndarray:
    """A Probe's record (targets.lava_processes.probe): [steps, *shape]; a spike tap is stored as
    np.packbits rows (one bit per neuron) and comes back as bool, a graded one as float64."""
    rec = np.load(path)
    if spikes:
        rec = np.unpackbits(rec, axis=-1, count=int(np.prod(shape))).view(bool)
    return rec.reshape(rec.shape[0], *shape)


def cleanup_workdir(workdir: str) -> None:
    shutil.rmtree(workdir, ignore_errors=True)




def worker_failure(workdir: str, code: int, last_printed: str = "") -> Exception:
    """What to raise for a failed worker: the signal that killed it (LavaRunError), else what it
    recorded (targets.worker_errors: a bug becomes an InternalError), else the last line it printed."""
    if code < 0:
        try:
            how = f"Lava worker killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"Lava worker killed by signal {-code}"
        return LavaRunError(f"Lava simulation failed: {how}")
    return failure(read_record(workdir), f"Lava worker exited with code {code}"
                   + (f": {last_printed}" if last_printed else ""), LavaRunError)


def worker_plan(plan):
    """The plan as the worker needs it: its structure and the synapses' and LIF layers' own
    parameters, without the NIR graph's per-neuron arrays (at ti @224 five float64 arrays of
    10.6 M LIF neurons and 26 M bias values: 800 MB to pickle, pipe and hold). Nodes the worker
    only places by name become 1-value stand-ins of their type; products stay whole."""
    stub = {nir.LIF: lambda: nir.LIF(tau=np.ones(1), r=np.ones(1), v_leak=np.zeros(1), v_threshold=np.ones(1),
                                     v_reset=np.zeros(1)),
            nir.Scale: lambda: nir.Scale(np.ones(1))}
    nodes = {}
    for n, node in plan.graph.nodes.items():
        if type(node).__name__ == "SpikeMatMul":
            nodes[n] = node
        else:  # synapses and host nodes: the worker reads plan.synapses / plan.inputs, never the node
            nodes[n] = stub.get(type(node), lambda: nir.Linear(weight=np.zeros((1, 1))))()
    graph = nir.NIRGraph(nodes=nodes, edges=list(plan.graph.edges), type_check=False)
    lhs = {plan.graph.nodes[n].lhs for n in plan.neuro if type(plan.graph.nodes[n]).__name__ == "SpikeMatMul"}
    return dataclasses.replace(plan, graph=graph, bias={n: plan.bias[n] for n in lhs if n in plan.bias})


@dataclasses.dataclass
class WorkerRun:
    spikes: dict  # {LIF: [T, N, *shape] bool}
    outputs: dict  # {output: [T, N, *shape]} as the network computes them (integers in fixed point)
    stats: RunStats  # the worker's: processes, steps, Lava compile/start/run seconds, channels
    build_s: float
    run_s: float
    stalls_retried: list


def run_in_worker(plan, host_values: dict, N: int, T: int, lowerings: dict, quant=None, *,
                  record_spikes: bool = True, stock_models: bool = False, progress=None,
                  stall_timeout: float = STALL_TIMEOUT, t_build: float = 0.0, merge: bool = False):
    """The plan's Lava network run in the isolated worker (targets/lava_worker.py), the only way a
    command runs Lava: its processes, workdir and shared memory are gone when this returns or
    raises, however the run ended. ``host_values``: {input: [N, T, size]} (integers with ``quant``).
    ``merge``: every Lava process of the network in one OS process (targets.lava_processes.cluster).
    -> WorkerRun: spikes {LIF: [T, N, *shape] bool} (with record_spikes), outputs {output: [T, N, *shape]}."""
    t0 = time.time()
    total_steps = N * T + plan.total_latency
    slim = worker_plan(plan)
    job = (slim, host_values, N, T, lowerings, record_spikes,
           dataclasses.replace(quant, plan=slim) if quant is not None else None, bool(stock_models), bool(merge))
    t_build += time.time() - t0
    attempts = []
    for attempt in range(2):
        d = new_workdir()  # created by the worker, removed here (or by the worker if we die)
        try:
            t1 = time.time()
            try:
                code, printed = supervise(d, job, total_steps, progress if attempt == 0 else None, stall_timeout)
            except _Stall as e:
                attempts.append(str(e))
                continue
            t_run = time.time() - t1
            if code != 0:
                raise worker_failure(d, code, printed)
            with open(os.path.join(d, "info.json")) as f:
                w = json.load(f)
            stats = RunStats(processes=w["processes"], process_kinds=w["process_kinds"], steps=w["steps"],
                             lava_build_s=w["build_s"], lava_compile_s=w["compile_s"], lava_start_s=w["start_s"],
                             lava_steps_s=w["run_s"], channel_slots=w["channel_slots"],
                             channel_bytes=w["channel_bytes"], shm_bytes=w["shm_bytes"])

            def read(n):  # [T, N, *shape]
                r = read_probe(os.path.join(d, f"{n}.npy"), plan.shapes[n], spikes=n not in plan.outputs)
                return r.reshape(N, T, *plan.shapes[n]).swapaxes(0, 1)
            spikes = {n: read(n) > 0.5 for n in plan.neuro
                      if isinstance(plan.graph.nodes[n], nir.LIF)} if record_spikes else {}
            return WorkerRun(spikes, {o: read(o) for o in plan.outputs}, stats, t_build, t_run, attempts)
        finally:
            cleanup_workdir(d)
    raise LavaRunError(f"Lava simulation stalled twice ({'; '.join(attempts)}); its processes were killed")


def product_matrix_bytes(plan) -> int:
    """Memory of the synaptic DSSA lowering's matrices, all their copies (its own cost model,
    resformer_deploy.passes.dssa_lowering.product_cost; its channels are counted by wiring())."""
    if plan.dssa != "synaptic":
        return 0
    from resformer_deploy.passes.dssa_lowering import MATRIX_COPIES, product_cost
    nodes = plan.graph.nodes
    return sum(MATRIX_COPIES * product_cost(nodes[n], plan.bias[nodes[n].lhs])["synaptic"]["matrix_bytes"]
               for n in plan.neuro if type(nodes[n]).__name__ == "SpikeMatMul")


def plan_macs(plan) -> int:
    """Multiply-accumulates of one step of one sample as the process models compute them: a
    Conv's dense im2col matmul (every kernel weight at every output position), a dense synapse's
    matrix, a fused product's matmul, an unrolled product's selections and reduction."""
    total = 0
    for spec in plan.synapses.values():
        if spec.kind == "conv":
            total += int(spec.weight.size) * int(np.prod(spec.out_shape[1:]))
        else:
            total += int(np.count_nonzero(spec.weight))
    for n in plan.neuro:
        node = plan.graph.nodes[n]
        if type(node).__name__ == "SpikeMatMul":
            m, k, n_ = node.product_dims()
            total += node.groups * m * k * n_ * (3 if plan.dssa == "synaptic" else 1)
    return total


# Cost model of a run (estimate()). Measured here (2-core Xeon, lava-nc 0.10) with the worker's
# info.json timings, psutil PSS of the worker's process tree every 2 s, and per-process CPU from
# a run with every run_spk timed: ti @224 (164 processes, 3.91 GMAC and 47.6 M channel values per
# step, 1-4 samples) and tests/support/small_models.py cifar16 (164 processes, ~0 MAC).
WORKER_START_S = 4.0  # interpreter, Lava import, job read, process graph, compile
START_S_PER_PROCESS = 0.03  # Runtime start-up: channels, fork, process-model build (4.1-9 s / 164)
STEP_S_PER_PROCESS = 0.0008  # LoihiProtocol phase hand-shakes per process and step (cifar16)
STEP_S_PER_MERGED_MODEL = 0.0001  # option merge: one model's step in the worker (digits: 66 models, 97
# steps, 0.27 s CPU, 2-core AMD EPYC at load ~20; 0.57-0.78 s under Lava's runtime: an upper bound)
MAC_PER_S = 16e9  # float64 conv2d im2col + BLAS, one thread (ti @224 layers, one process)
STEP_S_PER_VALUE = 15e-9  # send, receive, sum and the neuron update per channel value (ti @224:
# 1.07 s per step, 4 samples, quiet machine, less the per-process and MAC terms)
JOB_BYTES_PER_S = 1e9  # pickle the job, pipe it, unpickle it
WORKER_BYTES = 200 * 2**20  # the worker's interpreter, numpy, Lava, its runtime
JOB_COPIES = 3  # the plan in the caller's pickle, the worker's buffer, the worker's objects
PROCESS_BYTES = 8 * 2**20  # PSS per forked Lava process beyond its arrays (cifar16: 1.29 GB / 164)
BUFFERS_PER_CHANNEL_VALUE = 2  # the sender's buffer and the receiver's copy (its sum is transient)
LIF_STATE_VALUES = 3  # u, v, bias per LIF neuron
KERNEL_COPIES = 3  # the plan's kernel, the Conv Var, the model's correlation kernel
PATCH_COPIES = 2  # im2col patch matrices alive at once (two cores)
RETURNED_BYTES_PER_SPIKE = 2  # the unpacked record and the torch bool tensor in the caller


class LavaCpuTarget(Target):
    """Lava CPU backend, Loihi2SimCfg floating point."""
    capabilities = Capabilities(arithmetic="float", flow="lava-float", engine="lava",
                                options=("dssa", "stall_timeout", "merge"),
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
        if prepared is not None and prepared.lava_plan is not None:
            return prepared.lava_plan
        return self.plan(graph, dssa)

    def estimate(self, request: RunRequest) -> Estimate:
        """Time and peak memory of run() from the plan: the processes and channels the worker
        will make (targets.lava_worker.wiring), values per step, kernel weights, MACs per step, and
        the constants below (measured on this machine)."""
        self.refuse_unknown(request)
        n_samples, T, record_spikes, prepared = request.n_samples, request.T, request.record_spikes, request.prepared
        quant, plan = self.sized_by(prepared, request.quant)
        plan = plan or self.plan_for(request.graph, request.option("dssa", "fused"), prepared, quant)
        w = wiring(plan, n_samples, T, record_spikes)
        merge = bool(request.option("merge", False))
        os_procs = 0 if merge else w["processes"]  # merge: the worker runs every model, nothing is forked
        steps = n_samples * T + plan.total_latency
        value = 4 if self.capabilities.arithmetic == "fixed" else 8  # int32 payloads, float64
        lif = sum(p.size for p in plan.lif.values())
        host = sum(int(np.prod(plan.shapes[h])) for h in plan.inputs)
        macs = plan_macs(plan)
        job = 8 * (plan.kernel_weights + lif) + 8 * host * n_samples * T  # worker_plan + inputs
        outputs = sum(int(np.prod(plan.shapes[o])) for o in plan.outputs)
        keep = n_samples * T
        records = ((lif + 7) // 8 * keep if record_spikes else 0) + 8 * outputs * keep
        peak = (WORKER_BYTES + JOB_COPIES * job + os_procs * PROCESS_BYTES
                + w["channel_values"] * value * (CHANNEL_SLOTS + BUFFERS_PER_CHANNEL_VALUE)
                + LIF_STATE_VALUES * value * lif + KERNEL_COPIES * 8 * plan.kernel_weights
                + PATCH_COPIES * 8 * w["largest_patch_values"] + 2 * 8 * host * steps
                + 2 * records + (RETURNED_BYTES_PER_SPIKE * lif * keep if record_spikes else 0)
                + product_matrix_bytes(plan))
        step_s = (w["processes"] * (STEP_S_PER_MERGED_MODEL if merge else STEP_S_PER_PROCESS) + macs / MAC_PER_S
                  + w["channel_values"] * STEP_S_PER_VALUE)
        seconds = WORKER_START_S + os_procs * START_S_PER_PROCESS + steps * step_s + job / JOB_BYTES_PER_S
        shm = w["channel_values"] * value * CHANNEL_SLOTS
        return Estimate(seconds, int(peak), f"{w['processes']} Lava processes{' (merged)' if merge else ''}, "
                                            f"{steps} steps of {macs / 1e9:.3g} "
                                            f"GMAC and {w['channel_values'] / 1e6:.3g} M channel values, channels "
                                            f"{shm / 2**20:.0f} MiB; constants measured on ti @224 and cifar16 "
                                            f"(targets/lava_cpu.py)")

    def steps(self, request: RunRequest) -> int:
        self.refuse_unknown(request)
        quant = self.quantized_net(request.prepared, request.quant)
        plan = self.plan_for(request.graph, request.option("dssa", "fused"), request.prepared, quant)
        return request.n_samples * request.T + plan.total_latency

    def run(self, request: RunRequest) -> RunResult:
        """``stock_models`` (loihi2-sim's option; lava-cpu refuses it: the float network needs our
        models): Lava's stock process models only (plain Loihi2SimCfg, no exception model map), as
        hardware runs them: the synaptic lowering needs nothing else."""
        self.refuse_unknown(request)
        self.check_recording(record_spikes=request.record_spikes, record_membranes=request.record_membranes)
        graph, x, T, prepared, record_spikes = request.graph, request.x, request.T, request.prepared, \
            request.record_spikes
        dtype = torch.float64 if request.dtype is None else request.dtype
        dssa, stall_timeout = request.option("dssa", "fused"), request.option("stall_timeout", STALL_TIMEOUT)
        stock_models = bool(request.option("stock_models", False))
        merge = bool(request.option("merge", False))
        t0 = time.time()
        quant = self.quantized_net(prepared, request.quant)
        plan = self.plan_for(graph, dssa, prepared, quant)
        if plan.dssa != dssa:
            raise DeployError(f"the {'quantized ' if quant is not None else ''}plan was made for dssa={plan.dssa}, "
                              f"run asks for {dssa}")
        host = CompiledGraph(graph, torch.float64)
        lowerings = prepared.product_lowerings if prepared is not None else None
        if lowerings is None:  # no flow artifacts (direct library call): lower as the flow's pass does
            lowerings = lower_products(graph, plan, x, T, quant=quant) if dssa == "synaptic" else {}
        N = x.shape[0]
        host_values = host_inputs(plan, host, x, T)  # [N, T, size]
        if quant is not None:
            host_values = quant.quantize_inputs(host_values)
        lava = run_in_worker(plan, host_values, N, T, lowerings, quant, record_spikes=record_spikes,
                             stock_models=stock_models, progress=request.progress, stall_timeout=stall_timeout,
                             t_build=time.time() - t0, merge=merge)
        spikes = {n: torch.from_numpy(r) for n, r in lava.spikes.items()}
        stream = {o: r if quant is None else quant.dequantize(o, r) for o, r in lava.outputs.items()}
        out = host_readout(plan, host, stream, T, N)
        # build_s: host side before the worker; run_s: the worker's whole life; lava_*: inside it
        stats = dataclasses.replace(
            lava.stats, dssa=dssa, products={n: {"cost": low.cost, "verification": low.verification}
                                             for n, low in lowerings.items()},
            latency=plan.total_latency, build_s=lava.build_s, run_s=lava.run_s, stalls_retried=lava.stalls_retried)
        return RunResult(output=out.to(dtype), spikes=spikes, seconds=time.time() - t0, stats=stats)


class Loihi2SimTarget(LavaCpuTarget):
    """Lava CPU backend, Loihi2SimCfg(select_tag='fixed_pt'): the quantized network, bit-accurate
    process models (stock Sparse/DelaySparse/LIFReset/GradedVec/ProdNeuron/RingBuffer)."""
    capabilities = Capabilities(arithmetic="fixed", flow="loihi2-fixed", engine="lava", needs_quantized_net=True,
                                options=("dssa", "stall_timeout", "stock_models"), bit_exact_twin="loihi2-emu",
                                summary="Lava on Loihi2SimCfg(select_tag='fixed_pt'): bit-accurate fixed point")
