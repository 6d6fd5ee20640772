"""Worker side of the lava-cpu target: builds and runs the Lava process graph.

Started by targets.lava_cpu as ``python -I -c LAUNCH REPO FD WORKDIR`` in a fresh interpreter and
its own session: it inherits no torch/OpenMP thread state from the caller (a known cause of
deadlocks after fork), imports no torch, lets Lava set its own multiprocessing start method, and
can be killed as a whole process group if Lava stalls. ``-I`` (isolated mode) keeps the current
directory and PYTHON* variables off the import path, so no json.py or targets/ there is imported;
the launcher puts REPO first on sys.path instead.

Input: the job, length-prefixed pickle, on pipe FD. The worker creates WORKDIR (so a caller killed
before it starts leaves nothing) and writes there: .npy probe records, info.json, progress,
error.txt on failure, shm.names (targets.lava_cleanup). The pipe stays open while the caller
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
import scipy.sparse as sp

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.lava.conv import to_lava_weight
from resformer_deploy.lava.plan import MSG_BITS, LavaMappingError
from targets.lava_cleanup import (freeze_shared_memory, kill_group_but_me, kill_own_group, track_shared_memory,
                                  unlink_logged)


def _lava():
    from lava.magma.core.run_conditions import RunSteps
    from lava.magma.core.run_configs import Loihi2SimCfg
    from lava.proc.graded.process import GradedVec
    from lava.proc.io.source import RingBuffer
    from lava.proc.lif.process import LIFReset
    from lava.proc.prodneuron.process import ProdNeuron
    from lava.proc.conv.process import Conv
    from lava.proc.sparse.process import DelaySparse, Sparse

    from targets.lava_processes.conv import PyConvModelFixedExact, PyConvModelFloatFast
    from targets.lava_processes.graded_float import PyGradedVecModelFloat, PyProdNeuronModelFloat
    from targets.lava_processes.probe import Probe
    from targets.lava_processes.spike_matmul import FusedSpikeMatMul
    return dict(RunSteps=RunSteps, Loihi2SimCfg=Loihi2SimCfg, GradedVec=GradedVec, RingBuffer=RingBuffer,
                LIFReset=LIFReset, DelaySparse=DelaySparse, Sparse=Sparse, Conv=Conv, Probe=Probe,
                FusedSpikeMatMul=FusedSpikeMatMul, ProdNeuron=ProdNeuron,
                # our models for stock processes: discovery would pick the stock ones (or none)
                float_models={GradedVec: PyGradedVecModelFloat, ProdNeuron: PyProdNeuronModelFloat,
                              Conv: PyConvModelFloatFast},
                fixed_models={Conv: PyConvModelFixedExact})


# Slots per Lava channel (compile_config "pypy_channel_size"; Lava's default is 64). One is
# enough: under LoihiProtocol every process sends exactly one message per out-port and receives
# one per in-port in each spiking phase, and the runtime service starts phase t+1 only after
# every process has answered phase t (lava/magma/runtime/runtime_services/runtime_service.py
# LoihiPyRuntimeService.run, _get_pm_resp). So each channel's message of step t is received
# within step t, the channel is empty whenever a send starts, and no send waits for a slot.
# Delays (DelaySparse, identity Sparse) keep their backlog inside the process, not in channels.
CHANNEL_SLOTS = 1


def wiring(plan, n_samples: int, T: int, record_spikes: bool = True) -> dict:
    """What LavaBuild will make, counted from the plan alone (no Lava import): processes by kind,
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
    def __init__(self, plan, host_values, n_samples: int, T: int, workdir: str, lowerings=None,
                 record_spikes: bool = True, quant=None):
        self.L = _lava()
        self.q = quant  # a QuantNet: build the fixed-point (bit-accurate) network
        self.plan, self.T, self.N, self.workdir = plan, T, n_samples, workdir
        self.total_steps = n_samples * T + plan.total_latency
        self.procs, self.probes, self.delays = {}, {}, {}
        self.sources = {}
        self.count = {}
        self.timings, self.shm_bytes = {}, 0
        self.conv_out = {}  # conv node -> its output as a flat (C,H,W) row-major virtual port
        self.channel_values = 0  # values of all data channels (one message each)
        self.lowerings = lowerings or {}
        g = plan.graph
        for h, vals in host_values.items():  # vals: [N, T, size]
            data = np.zeros((vals.shape[-1], self.total_steps), dtype=np.int64 if quant else np.float64)
            data[:, : n_samples * T] = vals.reshape(n_samples * T, -1).T
            self.sources[h] = self._new("RingBuffer", data=data)
        for n in plan.neuro:
            self.procs[n] = self._build(n, g.nodes[n])
        for a, b in g.edges:
            if b in plan.neuro:
                self._connect(a, b)
        for n in plan.neuro:
            if (record_spikes and isinstance(g.nodes[n], nir.LIF)) or n in plan.outputs:
                # the N*T steps of this node's samples, from its first output on; spike taps as bits
                p = self._new("Probe", shape=(self.size(n),), num_steps=self.total_steps,
                              first_step=1 + plan.latency[n], keep=n_samples * T,
                              spikes=n not in plan.outputs, path=os.path.join(workdir, f"{n}.npy"))
                for port in self.out_ports(n):
                    self._link(port, p.a_in)
                self.probes[n] = p

    def _new(self, kind, **kw):
        self.count[kind] = self.count.get(kind, 0) + 1
        return self.L[kind](**kw)

    def size(self, n):
        return int(np.prod(self.plan.shapes[n]))

    def _build(self, n, node):
        plan = self.plan
        q = self.q
        if n in plan.synapses:
            spec = plan.synapses[n]
            if spec.kind == "conv":  # fixed point: the int64 kernel of mantissas (fixed_point/network.py SynQ)
                return self._conv(spec, spec.weight if q is None else q.syn[n].mant, 0 if q is None else q.syn[n].exp)
            if q is not None:
                return self._new("Sparse", weights=q.syn[n].mant.astype(np.int32), weight_exp=q.syn[n].exp,
                                 num_message_bits=MSG_BITS)
            return self._new("Sparse", weights=spec.matrix(), num_message_bits=MSG_BITS)
        if isinstance(node, nir.LIF) and q is not None:
            p = q.lif[n]  # du 4095: u = a_in << 6 each step (no current decay)
            return self._new("LIFReset", shape=(self.size(n),), du=4095, dv=p.dv, vth=p.vth,
                             bias_mant=p.bias_mant.astype(np.int32), bias_exp=p.bias_exp, reset_interval=self.T,
                             reset_offset=(1 + plan.latency[n]) % self.T)
        if isinstance(node, nir.LIF):
            p = plan.lif[n]
            return self._new("LIFReset", shape=(self.size(n),), du=1.0, dv=p.k, vth=p.vth,
                             bias_mant=p.bias, reset_interval=self.T,
                             reset_offset=(1 + plan.latency[n]) % self.T)
        if isinstance(node, nir.Scale):
            return self._new("GradedVec", shape=(self.size(n),), vth=0)
        if isinstance(node, SpikeMatMul) and n in self.lowerings:
            low = self.lowerings[n]
            U = low.sel_lhs.shape[0]
            parts = {
                "relay": self._new("GradedVec", shape=(low.sel_lhs.shape[1],), vth=0),
                "sel_l": self._new("Sparse", weights=low.sel_lhs, num_message_bits=MSG_BITS),
                "sel_r": self._new("Sparse", weights=low.sel_rhs, num_message_bits=MSG_BITS),
                "prod": self._new("ProdNeuron", shape=(U,), vth=0, exp=0),
                "reduce": self._new("Sparse", weights=low.reduce, num_message_bits=MSG_BITS),
                "bias": self._new("DelaySparse", weights=low.bias_term,
                                  delays=(low.bias_term != 0).astype(np.int64), max_delay=1,
                                  num_message_bits=MSG_BITS, weight_exp=low.bias_exp),
            }
            self._link(parts["relay"].s_out, parts["sel_l"].s_in)
            self._link(parts["sel_l"].a_out, parts["prod"].a_in1)
            self._link(parts["sel_r"].a_out, parts["prod"].a_in2)
            self._link(parts["prod"].s_out, parts["reduce"].s_in)
            return parts
        if isinstance(node, SpikeMatMul):
            return self._new("FusedSpikeMatMul", lhs_size=self.size(node.lhs), rhs_size=self.size(node.rhs),
                             out_size=self.size(n), lhs_view=node.lhs_view,
                             lhs_bias=plan.bias[node.lhs] if q is None else q.lhs_bias[node.lhs],
                             rhs_view=node.rhs_view, lhs_rows=node.lhs_rows, rhs_rows=node.rhs_rows,
                             transpose_lhs=node.transpose_lhs)
        raise LavaMappingError(f"{n}: no Lava mapping for {type(node).__name__}")

    def _conv(self, spec, kernel, exp):
        """Stock weight-shared Conv (lava/proc/conv/process.py): kernel in Lava's layout, ports
        (X, Y, C) = (W, H, C), stride/padding/dilation as (X, Y); run by our process models
        (targets.lava_processes.conv). The rest of the graph's ports are flat (C, H, W), so the
        output is exposed as a transposed and flattened virtual port (Lava applies virtual ports
        in the receiving PyInPort: lava/magma/core/model/py/ports.py VirtualPortTransformer)."""
        c, h, w = spec.in_shape
        xy = lambda v: (int(v[1]), int(v[0]))  # noqa: E731  NIR (rows, cols) -> Lava (X, Y)
        proc = self._new("Conv", weight=to_lava_weight(kernel), input_shape=(w, h, c), padding=xy(spec.padding),
                         stride=xy(spec.stride), dilation=xy(spec.dilation), groups=spec.groups,
                         weight_exp=int(exp), num_message_bits=MSG_BITS)
        self.conv_out[spec.node] = proc.a_out.transpose((2, 1, 0)).flatten()
        return proc

    def _link(self, src, dst) -> None:
        """src -> dst, through a (C,H,W) -> (W,H,C) virtual port where dst is a Conv's XYC input."""
        if len(dst.shape) == 3 and len(src.shape) == 1:
            w, h, c = dst.shape
            src = src.reshape((c, h, w)).transpose((2, 1, 0))
        src.connect(dst)
        self.channel_values += int(np.prod(src.shape))

    def out_ports(self, n):
        if n in self.sources:
            return [self.sources[n].s_out]
        if n in self.conv_out:
            return [self.conv_out[n]]
        proc = self.procs[n]
        if isinstance(proc, dict):  # synaptic product: reduction + bias synapses (summed downstream)
            return [proc["reduce"].a_out, proc["bias"].a_out]
        return [proc.a_out if hasattr(proc, "a_out") else proc.s_out]

    def in_ports(self, a, b):
        proc, node = self.procs[b], self.plan.graph.nodes[b]
        if isinstance(proc, dict):
            return [proc["relay"].a_in] if a == node.lhs else [proc["sel_r"].s_in, proc["bias"].s_in]
        if isinstance(node, SpikeMatMul):
            return [proc.lhs_in if a == node.lhs else proc.rhs_in]
        return [proc.s_in if hasattr(proc, "s_in") else proc.a_in]

    def _connect(self, a, b):
        d = self.plan.edge_delay.get((a, b), 0)
        srcs = self.out_ports(a)
        if d > 0 and len(srcs) != 1:
            raise LavaMappingError(f"{a}: a synaptic product feeds '{b}' through a delay (unsupported)")
        if d > 0:  # one identity delay process per (source, delay), shared by consumers
            if (a, d) not in self.delays:
                n = int(np.prod(self.plan.shapes[a]))
                eye = sp.identity(n, format="csr", dtype=np.int32 if self.q is not None else np.float64)
                if d == 1:
                    proc = self._new("Sparse", weights=eye, num_message_bits=MSG_BITS)
                else:
                    proc = self._new("DelaySparse", weights=eye, delays=sp.identity(n, dtype=np.int64, format="csr")
                                     * (d - 1), max_delay=d - 1, num_message_bits=MSG_BITS)
                self._link(srcs[0], proc.s_in)
                self.delays[(a, d)] = proc
            srcs = [self.delays[(a, d)].a_out]
        for src in srcs:
            for port in self.in_ports(a, b):
                self._link(src, port)

    @property
    def process_count(self) -> int:
        return sum(self.count.values())

    def run(self, progress: Optional[Callable[[int], None]] = None, chunk: int = 0,
            phase: Optional[Callable[[str], None]] = None):
        """Compile, start and run the process graph in chunks; timings in ``self.timings``;
        ``phase(name)`` is told when compilation and start-up end (the supervisor's stall clock)."""
        L = self.L
        anchor = next(iter(self.sources.values()))
        if self.q is not None:
            cfg = L["Loihi2SimCfg"](select_tag="fixed_pt", exception_proc_model_map=L["fixed_models"])
        else:
            cfg = L["Loihi2SimCfg"](select_tag="floating_pt", exception_proc_model_map=L["float_models"])
        chunk = chunk or max(1, self.total_steps // 20)
        done = 0
        running = threading.Event()
        watch_actors(anchor, running, self.workdir)
        t0 = time.time()
        executable = anchor.compile(cfg, {"pypy_channel_size": CHANNEL_SLOTS})
        self.timings["compile_s"] = time.time() - t0
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
            t0 = time.time()
            while done < self.total_steps:
                k = min(chunk, self.total_steps - done)
                anchor.run(condition=L["RunSteps"](num_steps=k), run_cfg=cfg)
                done += k
                if progress:
                    progress(k)
            self.timings["run_s"] = time.time() - t0
        finally:
            running.clear()  # before stop(): from now on Lava's processes exit on purpose
            try:
                anchor.stop()
            except Exception:  # a runtime that never started has nothing to stop
                pass

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
    while the runtime waits for that process's reply forever. This thread writes the exception's
    first line (or how the process died) to error.txt, kills the group, unlinks the shared memory
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
            exc = actor.exception
            if exc:
                msg = f"{type(exc[0]).__name__}: {exc[0]}"
            else:
                code = reaped_exitcode(actor)
                how = ("ended" if code is None else signal.Signals(-code).name if code < 0 else
                       f"exit code {code}")
                msg = f"a Lava process ({actor.name}) died ({how})"
            with open(os.path.join(workdir, "error.txt"), "w") as f:
                f.write(msg + "\n" + (exc[1] if exc else ""))
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
    error.txt. SIGINT is left at its default (terminate): the worker never sees a Ctrl-C of its
    own (own session), and a KeyboardInterrupt inside Lava's stop() could hang instead of ending."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    job = read_job(fd)  # raises (exit 1, nothing created) if the caller died meanwhile
    os.mkdir(workdir, 0o700)
    track_shared_memory(workdir)
    watch_parent(fd, workdir)
    die_with_worker()
    try:
        plan, host_values, n_samples, T, lowerings, record_spikes, quant = job
        t0 = time.time()
        build = LavaBuild(plan, host_values, n_samples, T, workdir, lowerings, record_spikes, quant)
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
    except BaseException as e:  # reported to the parent, which raises it as a DeployError
        with open(os.path.join(workdir, "error.txt"), "w") as f:
            f.write(f"{type(e).__name__}: {e}\n{traceback.format_exc()}")
        return 1
    finally:
        unlink_logged(workdir)  # whatever Lava's manager left (see targets.lava_cleanup)


if __name__ == "__main__":  # targets.lava_cpu starts the worker through its LAUNCH line instead
    sys.exit(main(int(sys.argv[1]), sys.argv[2]))
