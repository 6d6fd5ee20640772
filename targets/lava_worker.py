"""Worker side of the lava-cpu target: builds and runs the Lava process graph.

Started by targets.lava_cpu as ``python -I -c LAUNCH REPO FD WORKDIR`` in a fresh interpreter and
its own session: it inherits no torch/OpenMP thread state from the caller (a known cause of
deadlocks after fork), imports no torch, lets Lava set its own multiprocessing start method, and
can be killed as a whole process group if Lava stalls. ``-I`` (isolated mode) keeps the current
directory and PYTHON* variables off the import path, so no json.py or targets/ there is imported;
the launcher puts REPO first on sys.path instead.

Input: the job, length-prefixed pickle, on pipe FD. The worker creates WORKDIR (so a caller killed
before it starts leaves nothing) and writes there: .npy probe records, info.json, progress,
error.json on failure (targets.worker_errors), shm.names (targets.lava_cleanup). The pipe stays open while the caller
lives: its EOF tells the worker it is orphaned, and it then kills its group and removes its
shared memory and WORKDIR. Each Lava process dies with the worker (PR_SET_PDEATHSIG).
"""
import ctypes
import json
import os
import pickle
import select
import shutil
import signal
import struct
import sys
import threading
import time
import traceback
from typing import Callable, Optional

import nir
import numpy as np

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.errors import InternalError
from targets.lava_cleanup import (freeze_shared_memory, kill_group_but_me, kill_own_group, track_shared_memory,
                                  unlink_logged)
from targets.worker_errors import death_record, exception_record, write_record


def _lava():
    from lava.magma.core.run_conditions import RunSteps
    from lava.proc.io.source import RingBuffer

    from targets import lava_network
    from targets.lava_processes.probe import Probe
    _cache_model_discovery()
    return dict(RunSteps=RunSteps, RingBuffer=RingBuffer, Probe=Probe, network=lava_network)


def _cache_model_discovery() -> None:
    """Lava's compiler looks for a process's models by importing and inspecting every module in the
    directory of the process's class, once per process instance (lava/magma/compiler/compiler_graphs.py
    ProcGroupDiGraphs._find_proc_models), though the answer depends on the class alone: digits makes
    66 searches for 8 classes; its compile took 0.34-0.46 s of CPU, 0.13-0.15 s with this cache (AMD
    EPYC, loaded). Cached per class here, in the worker only: the same list, so the same model is chosen."""
    from lava.magma.compiler.compiler_graphs import ProcGroupDiGraphs
    find = ProcGroupDiGraphs._find_proc_models
    if getattr(find, "cached_per_class", False):
        return
    found = {}

    def cached(proc):
        if type(proc) not in found:
            found[type(proc)] = find(proc)
        return list(found[type(proc)])
    cached.cached_per_class = True
    ProcGroupDiGraphs._find_proc_models = staticmethod(cached)


# Slots per Lava channel (compile_config "pypy_channel_size"; Lava's default is 64). One is
# enough: under LoihiProtocol every process sends exactly one message per out-port and receives
# one per in-port in each spiking phase, and the runtime service starts phase t+1 only after
# every process has answered phase t (lava/magma/runtime/runtime_services/runtime_service.py
# LoihiPyRuntimeService.run, _get_pm_resp). So each channel's message of step t is received
# within step t, the channel is empty whenever a send starts, and no send waits for a slot.
# Delays (DelaySparse, identity Sparse) keep their backlog inside the process, not in channels.
CHANNEL_SLOTS = 1


def wiring(plan, n_samples: int, T: int, record_spikes: bool = True) -> dict:
    """What LavaBuild will make (the network of targets.lava_network with its source and probes),
    counted from the plan alone (no Lava import): processes by kind,
    values carried by all data channels (one message per channel), and the largest Conv's patch
    matrix (resformer_deploy.lava.conv.conv2d's im2col copy). Mirrors LavaBuild's wiring; the Lava
    tests check both agree."""
    g = plan.graph
    size = lambda n: int(np.prod(plan.shapes[n]))  # noqa: E731
    kinds, values = {}, 0

    def add(kind, k=1):
        kinds[kind] = kinds.get(kind, 0) + k
    synaptic = {}
    for n in plan.neuro:
        node = g.nodes[n]
        if n in plan.synapses:
            add("Conv" if plan.synapses[n].kind == "conv" else "Sparse")
        elif isinstance(node, nir.LIF):
            add("LIFReset")
        elif isinstance(node, nir.Scale):
            add("GradedVec")
        elif isinstance(node, SpikeMatMul) and plan.dssa == "synaptic":
            m, k, n_ = node.product_dims()
            u = node.groups * m * k * n_
            synaptic[n] = True
            for kind, c in (("GradedVec", 1), ("Sparse", 3), ("ProdNeuron", 1), ("DelaySparse", 1)):
                add(kind, c)
            values += size(node.lhs) + 3 * u  # relay -> sel_l; sel_l, sel_r -> prod; prod -> reduce
        elif isinstance(node, SpikeMatMul):
            add("FusedSpikeMatMul")
    add("RingBuffer", len(plan.inputs))
    delays = set()
    for a, b in g.edges:
        if b not in plan.neuro:
            continue
        d = plan.edge_delay.get((a, b), 0)
        n_src = 2 if a in synaptic else 1
        if d > 0 and (a, d) not in delays:
            delays.add((a, d))
            add("Sparse" if d == 1 else "DelaySparse")
            values += size(a)
        node = g.nodes[b]
        n_dst = (2 if b in synaptic and a == node.rhs else 1)
        values += (1 if d > 0 else n_src) * n_dst * size(a)
    for n in plan.neuro:
        if (record_spikes and isinstance(g.nodes[n], nir.LIF)) or n in plan.outputs:
            add("Probe")
            values += (2 if n in synaptic else 1) * size(n)
    patch = max((spec.weight[0].size * int(np.prod(spec.out_shape[1:])) * spec.groups
                 for spec in plan.synapses.values() if spec.kind == "conv"), default=0)
    return {"processes": sum(kinds.values()), "process_kinds": kinds, "channel_values": values,
            "largest_patch_values": patch}


class LavaBuild:
    """The run of one job: the public network (targets.lava_network.build_network, the only
    construction path), its input from a stock RingBuffer source, per-layer spike taps and the
    output stream on Probes (written to WORKDIR as .npy)."""

    def __init__(self, plan, host_values, n_samples: int, T: int, workdir: str, lowerings=None,
                 record_spikes: bool = True, quant=None, stock_models: bool = False, merge: bool = False):
        self.L = _lava()
        self.q = quant  # a QuantNet: build the fixed-point (bit-accurate) network
        self.stock_models = stock_models  # Lava's stock process models only (no exception map)
        self.merge = merge  # every process model run by this process (targets.lava_processes.cluster)
        self.plan, self.T, self.N, self.workdir = plan, T, n_samples, workdir
        net_mod = self.L["network"]
        self.total_steps = net_mod.stream_steps(plan, n_samples, T)
        self.timings, self.shm_bytes = {}, 0
        self.net = net = net_mod.build_network(plan, T, quant=quant, lowerings=lowerings)
        self.count = dict(net.process_kinds)
        self.channel_values = net.channel_values  # values of all data channels (one message each)
        self.probes = {}
        (h, vals), = host_values.items()  # vals: [N, T, size]; the network has one input stream
        if h != net.input_node:
            raise InternalError(f"host values for '{h}', the network reads '{net.input_node}'")  # the caller's
        self.source = self._new("RingBuffer", data=net_mod.frames_to_stream(vals, self.total_steps))
        self.source.s_out.connect(net.inp)  # its channels are the network's links from inp
        g = plan.graph
        for n in plan.neuro:
            if (record_spikes and isinstance(g.nodes[n], nir.LIF)) or n in plan.outputs:
                # the N*T steps of this node's samples, from its first output on; spike taps as bits
                p = self._new("Probe", shape=(net.size(n),), num_steps=self.total_steps,
                              first_step=1 + plan.latency[n], keep=n_samples * T,
                              spikes=n not in plan.outputs, path=os.path.join(workdir, f"{n}.npy"))
                for port in ([net.out] if n == net.output_node else net.ports_of(n)):
                    port.connect(p.a_in)
                    self.channel_values += int(np.prod(port.shape))
                self.probes[n] = p

    def _new(self, kind, **kw):
        self.count[kind] = self.count.get(kind, 0) + 1
        return self.L[kind](**kw)

    @property
    def process_count(self) -> int:
        return sum(self.count.values())

    def run(self, progress: Optional[Callable[[int], None]] = None, chunk: int = 0,
            phase: Optional[Callable[[str], None]] = None):
        """Compile, start and run the process graph in chunks; timings in ``self.timings``;
        ``phase(name)`` is told when compilation and start-up end (the supervisor's stall clock)."""
        L = self.L
        anchor = self.source
        cfg = L["network"].run_config(fixed=self.q is not None, models=not self.stock_models, io=False)
        chunk = chunk or max(1, self.total_steps // 20)
        running = threading.Event()
        t0 = time.time()
        executable = anchor.compile(cfg, {"pypy_channel_size": CHANNEL_SLOTS})
        members = None
        if self.merge:  # the compiled graph's models and channels, run by this process
            from targets.lava_processes.cluster import cluster_members
            members = cluster_members(executable)
        self.timings["compile_s"] = time.time() - t0
        if members is not None:
            return self._run_merged(members, progress, chunk, phase)
        watch_actors(anchor, running, self.workdir)
        if phase:
            phase("compiled")
        try:
            running.set()
            t0 = time.time()
            anchor.create_runtime(executable=executable)  # builds the channels, forks the processes
            self.timings["start_s"] = time.time() - t0
            self.shm_bytes = logged_shared_memory_bytes(self.workdir)
            if phase:
                phase("started")
            self._step_in_chunks(lambda k: anchor.run(condition=L["RunSteps"](num_steps=k), run_cfg=cfg), chunk,
                                 progress)
        finally:
            running.clear()  # before stop(): from now on Lava's processes exit on purpose
            try:
                anchor.stop()
            except Exception:  # a runtime that never started has nothing to stop
                pass

    def _run_merged(self, members, progress, chunk: int, phase) -> None:
        """Every member model built and stepped here (targets.lava_processes.cluster.MergedRun)."""
        from targets.lava_processes.cluster import MergedRun
        if phase:
            phase("compiled")
        t0 = time.time()
        merged = MergedRun(members)
        self.timings["start_s"] = time.time() - t0
        if phase:
            phase("started")
        self._step_in_chunks(merged.run, chunk, progress)

    def _step_in_chunks(self, run_steps, chunk: int, progress) -> None:
        """All the run's steps, ``run_steps(k)`` running k at a time, ``progress(k)`` told after
        each chunk; the time in ``timings["run_s"]``."""
        t0, done = time.time(), 0
        while done < self.total_steps:
            k = min(chunk, self.total_steps - done)
            run_steps(k)
            done += k
            if progress:
                progress(k)
        self.timings["run_s"] = time.time() - t0

    @property
    def channel_bytes(self) -> int:
        """Shared memory of the data channels, from their message sizes: each connection is one
        channel of CHANNEL_SLOTS messages of its source port (lava/magma/compiler/channels/
        pypychannel.py PyPyChannel: nbytes * size); float models send float64, fixed int32."""
        return self.channel_values * (4 if self.q is not None else 8) * CHANNEL_SLOTS

    def info(self) -> dict:
        return {"processes": self.process_count, "process_kinds": self.count, "steps": self.total_steps,
                "channel_slots": CHANNEL_SLOTS, "channel_bytes": self.channel_bytes,
                "shm_bytes": self.shm_bytes, **self.timings}


def logged_shared_memory_bytes(workdir: str) -> int:
    """Size of the shared memory segments the run created and still holds (targets.lava_cleanup)."""
    try:
        with open(os.path.join(workdir, "shm.names")) as f:
            names = set(f.read().split())
    except OSError:
        return 0
    total = 0
    for name in names:
        try:
            total += os.stat(os.path.join("/dev/shm", name)).st_size
        except OSError:
            pass
    return total


def _write_progress(workdir, steps, phase=""):
    """WORKDIR/progress: simulated steps, then the phase reached (any change resets the stall clock)."""
    tmp = os.path.join(workdir, "progress.tmp")
    with open(tmp, "w") as f:
        f.write(f"{steps} {phase}".strip())
    os.replace(tmp, os.path.join(workdir, "progress"))


def reaped_exitcode(actor):
    """Exit code of an ended actor (its sentinel fired), or None if it cannot be read: the process
    may not be reaped yet, and Lava's own join() may reap or close it at the same time."""
    for _ in range(20):
        try:
            code = actor.exitcode  # polls waitpid without blocking (CPython popen_fork.poll)
        except (ValueError, AssertionError):  # closed by Lava, or not ours to poll
            return None
        if code is not None:
            return code
        time.sleep(0.05)
    return None


def watch_actors(anchor, running: threading.Event, workdir: str) -> None:
    """End the worker when a Lava process dies during the run. Lava does not notice: a process
    model that raises hands the exception to its SystemProcess, which sends it up a pipe and
    exits (lava/magma/runtime/message_infrastructure/multiprocessing.py, runtime.py target_fn),
    while the runtime waits for that process's reply forever. This thread records the exception
    with its traceback (or how the process died) in error.json, kills the group, unlinks the shared memory
    and exits 1, so the caller reports it at once instead of as a stall."""
    from multiprocessing.connection import wait

    def ended_actor():
        infra = getattr(anchor.runtime, "_messaging_infrastructure", None)
        actors = list(getattr(infra, "actors", []))
        if not actors:  # the runtime is still being built
            time.sleep(0.5)
            return None
        # a sentinel is readable once its process ended; unlike is_alive() this reaps nothing,
        # so it never races Lava's own join() (Python docs, multiprocessing.Process.sentinel)
        ended = wait([a.sentinel for a in actors], timeout=0.5)
        return next((a for a in actors if a.sentinel in ended), None)

    def run():
        running.wait()
        while running.is_set():
            try:
                actor = ended_actor()
            except ValueError:  # an actor closed by Lava's join(): the run is over
                return
            if actor is None or not running.is_set():  # checked after: only a death before stop() counts
                continue
            exc = actor.exception  # (exception, its traceback text), Lava's SystemProcess
            if exc:
                record = exception_record(exc[0], exc[1])
            else:
                code = reaped_exitcode(actor)
                how = ("ended" if code is None else signal.Signals(-code).name if code < 0 else
                       f"exit code {code}")
                record = death_record(f"a Lava process ({actor.name}) died ({how})")
            write_record(workdir, record)
            freeze_shared_memory()
            kill_group_but_me()
            unlink_logged(workdir)
            os._exit(1)
    threading.Thread(target=run, name="actor-watchdog", daemon=True).start()


def read_job(fd: int):
    """The job sent by targets.lava_cpu.send_job: 8-byte length, then the pickle."""
    def exactly(n):  # into one buffer: appending pipe-sized chunks to bytes is quadratic (minutes at ti @224)
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        with open(fd, "rb", buffering=0, closefd=False) as f:
            while got < n:
                k = f.readinto(view[got:])
                if not k:
                    raise EOFError("the caller closed the job pipe before sending the whole job")
                got += k
        return buf
    return pickle.loads(exactly(struct.unpack("<Q", exactly(8))[0]))


def watch_parent(fd: int, workdir: str) -> None:
    """Orphan watchdog (a daemon thread): once the caller is gone -- EOF on its pipe, which the
    kernel delivers however the caller ended, SIGKILL included; or reparenting, should a fork of
    the caller still hold the pipe -- kill the group, unlink the shared memory, remove WORKDIR."""
    ppid = os.getppid()

    def run():
        while True:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if (ready and not os.read(fd, 1)) or os.getppid() != ppid:
                break
        freeze_shared_memory()
        kill_group_but_me()
        unlink_logged(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        kill_own_group()
    threading.Thread(target=run, name="orphan-watchdog", daemon=True).start()


def die_with_worker() -> None:
    """Make every process forked from here on (Lava's processes, its manager server) receive
    SIGKILL when its parent dies (prctl(2) PR_SET_PDEATHSIG), so a killed worker leaves none."""
    libc = ctypes.CDLL(None, use_errno=True)
    parent = [0]

    def before():
        parent[0] = os.getpid()

    def child():
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1 (linux/prctl.h)
        if os.getppid() != parent[0]:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)
    os.register_at_fork(before=before, after_in_child=child)


def main(fd: int, workdir: str) -> int:
    """Run the job read from pipe ``fd`` in a new ``workdir``; exit code 0 on success, error in
    error.json. SIGINT is left at its default (terminate): the worker never sees a Ctrl-C of its
    own (own session), and a KeyboardInterrupt inside Lava's stop() could hang instead of ending."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    job = read_job(fd)  # raises (exit 1, nothing created) if the caller died meanwhile
    os.mkdir(workdir, 0o700)
    track_shared_memory(workdir)
    watch_parent(fd, workdir)
    die_with_worker()
    try:
        plan, host_values, n_samples, T, lowerings, record_spikes, quant, stock_models = job[:8]
        merge = len(job) > 8 and bool(job[8])  # a caller from before the option sends 8 fields
        t0 = time.time()
        build = LavaBuild(plan, host_values, n_samples, T, workdir, lowerings, record_spikes, quant, stock_models,
                          merge)
        build.timings["build_s"] = time.time() - t0
        _write_progress(workdir, 0, "built")
        done = [0]

        def progress(k):
            done[0] += k
            _write_progress(workdir, done[0])
        build.run(progress=progress, phase=lambda name: _write_progress(workdir, 0, name))
        tmp = os.path.join(workdir, "info.json.tmp")
        with open(tmp, "w") as f:
            json.dump(build.info(), f)
        os.replace(tmp, os.path.join(workdir, "info.json"))
        return 0
    except BaseException as e:  # the parent raises it: a bug as InternalError, else one line
        write_record(workdir, exception_record(e, traceback.format_exc()))
        return 1
    finally:
        unlink_logged(workdir)  # whatever Lava's manager left (see targets.lava_cleanup)


if __name__ == "__main__":  # targets.lava_cpu starts the worker through its LAUNCH line instead
    sys.exit(main(int(sys.argv[1]), sys.argv[2]))
