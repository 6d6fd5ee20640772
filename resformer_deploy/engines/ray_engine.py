"""``evaluate --engine ray``: the shards of an evaluation (engines/shards.py) on a Ray cluster.

Without ``--address`` a local Ray instance is started for the command and stopped at its end,
Ctrl-C and errors included (``ray.shutdown``, then any of its processes still alive are killed);
its temporary directory is a short /tmp/rd-XXXXXXXX (Ray keeps Unix sockets there, and socket
paths are limited to 107 bytes), removed afterwards, and its dashboard is off. Should the command
be killed outright (SIGKILL), a watchdog process (engines/ray_watchdog.py) kills that instance's
processes and removes the directory. With ``--address`` the command joins that cluster
(``ray.init(address=...)``) and leaves it running; an address where nothing answers is refused at
once (Ray's own join retries for minutes); the data set's path must name the same files on every
node. Ray's own output stays off stdout: no worker logs (``log_to_driver=False``), and the raylet's
error lines, which Ray's driver prints to stdout itself, are dropped (a failed shard is reported
with its error by name).

The driver prepares once (export, the target's flow, calibration and quantization) and puts the
prepared setup into the object store once (``ray.put``); every worker is an actor that takes it
in its constructor, so the model and the quantized network travel once per worker, never per
shard (https://docs.ray.io/en/latest/ray-core/actors.html). An actor runs one shard at a time: on
a Lava target one Lava runtime per worker, and one worker per node (it asks for a node's CPUs),
since a Lava runtime runs every process of the graph at once. A worker that dies is restarted
and its shard retried, ``--retries`` times (``max_restarts`` / ``max_task_retries``,
https://docs.ray.io/en/latest/ray-core/fault_tolerance/actors.html); a shard whose run raises
(its error is deterministic) or whose worker keeps dying fails, is reported by name with its
error, and the other shards complete (a worker Ray gave up on is replaced).

A node lost mid-run (its raylet gone: Ray marks it dead after its health checks fail) takes its
workers along; Ray would restart them only where CPUs are free, and their shards would wait for
that. So the driver asks Ray every NODE_CHECK_S which nodes are alive, and a shard whose worker
was on a dead node goes back to the queue for the surviving workers (its worker is stopped for
good, and replaced at once only if the cluster has a free CPU for it). Every shard's node (id,
host, IP, raylet address) and any retry with its reason are in the result (``engine.per_shard``,
``engine.retried``).

Fault injection for tests: ``RESFORMER_DEPLOY_RAY_FAULT=shard-00002[:always|:hang],...`` makes
the worker running that shard exit at once (``os._exit``) on its first attempt only, or always,
or hang (to interrupt a run that is surely still running); ``*`` stands for every shard. A
worker takes the driver's value and its own node's (the environment its raylet was started
with), so one node of a cluster can be made to fail.

A worker keeps the memory it frees (util.malloc.keep_freed_memory, glibc only) once its setup is loaded;
``RESFORMER_DEPLOY_RAY_MALLOC=default`` leaves glibc's own settings (benchmarks/ray_worker_overhead.py
compares the two).
"""
import resource
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import deque
from contextlib import contextmanager
from typing import Callable, Dict, Optional

import psutil
import ray
import ray.cloudpickle as cloudpickle
import torch

from resformer_deploy.engines.ray_watchdog import DONE, MARKER, SWEEP_S
from resformer_deploy.engines.shards import ShardStore, merge_shards, plan_shards, remove_temporaries, \
    run_identity, shard_record
from resformer_deploy.errors import DeployError, one_line
from resformer_deploy.util.malloc import keep_freed_memory
from resformer_deploy.util.memory_budget import MemoryBudgetError, budget_bytes, size
from resformer_deploy.util.signals import deferred_signals

FAULT_ENV = "RESFORMER_DEPLOY_RAY_FAULT"
FAULT_EXIT = 17
WAIT_S = 0.5  # ray.wait timeout: signals (Ctrl-C) are handled between waits
READY_TIMEOUT_S = 600.0  # workers not set up by then (no resources, a hung node): refused
STOP_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 5.0  # --address: a TCP connection to it, before ray.init
WATCHDOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ray_watchdog.py")
OBJECT_STORE_MIN = 256 << 20
ERROR_CHARS = 400
DECODE_THREADS = 1  # per worker: decoding overlaps the run, the cores go to the workers
NODE_CHECK_S = 1.0  # how often the driver asks Ray which nodes are alive (ray.nodes(): one GCS call)
MALLOC_ENV = "RESFORMER_DEPLOY_RAY_MALLOC"


class ShardsFailed(DeployError):
    """Some shards failed; the others are done (and on disk with --out-dir)."""
    exit_code = 1


def _faults(spec: str) -> Dict[str, str]:
    out = {}
    for item in filter(None, (s.strip() for s in (spec or "").split(","))):
        name, _, mode = item.partition(":")
        out[name] = mode or "once"
    return out


def _reconstructed() -> bool:
    with warnings.catch_warnings():  # deprecated in favour of nothing equivalent yet (Ray 2.60)
        warnings.simplefilter("ignore")
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


def data_recipe(md) -> dict:
    """How a worker reopens the data set (sources hold locks and memory maps: never pickled)."""
    s = md.source
    return {"path": str(s.root), "data_format": s.kind, "split": s.split or "test",
            "preset": md.preprocessor.preset.name, "skip_bad": md.skip_bad, "option": md.option,
            "class_map": getattr(s.class_mapping, "class_map", None),  # as read here: the file may be local
            "expect": md.to_json()}


def reopen_data(recipe: dict, ck):
    from resformer_deploy.analysis.data_inputs import open_data
    md = open_data(recipe["path"], ck.config, ck.variant, recipe["data_format"], recipe["split"], recipe["preset"],
                   recipe["skip_bad"], recipe["option"], class_map=recipe.get("class_map"))
    if md.to_json() != recipe["expect"]:
        raise DeployError(f"{recipe['option']} {recipe['path']} on {socket.gethostname()} is not the driver's: "
                          f"{md.describe()}")
    return md


def _thread_page_faults() -> int:
    """Minor page faults of the calling thread so far (Linux; elsewhere of the process)."""
    return resource.getrusage(getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)).ru_minflt


class ShardWorker:
    """One worker (a Ray actor): the prepared setup, shipped once, and the data set reopened.

    The setup comes as ``[ref]`` (a reference Ray does not resolve) and is fetched by the first
    call (and again by the first after a restart), not passed to the constructor: Ray warns that
    a restartable actor's object-store constructor arguments may be lost (ray#53727)."""

    def __init__(self, faults: str, threads: int):
        torch.set_num_threads(max(1, threads))
        # this node's own faults (its raylet's environment), then the driver's
        self.faults = dict(_faults(os.environ.get(FAULT_ENV, "")), **_faults(faults))
        self.ck = self.setup = self.data = None
        self.loads = 0  # times this process fetched the setup: 1
        self.kept = False  # keep_freed_memory() in effect
        self.runs = 0  # shards this process ran (or began)

    def load(self, shipped: list) -> dict:
        if self.setup is None:
            self.ck, self.setup, recipe = cloudpickle.loads(ray.get(shipped[0]))
            self.data = reopen_data(recipe, self.ck)
            self.loads += 1
            # after the load: its 1 GB message (ti) is unmapped when freed, not kept in the heap
            self.kept = os.environ.get(MALLOC_ENV) != "default" and keep_freed_memory()
            self._warm_up()
        return self.where()

    def _warm_up(self) -> None:
        """One zero input through the PyTorch model and the target, the result dropped: the lazy
        first-call costs (imports, allocations; ~0.2 s on digits) go to the set-up, not to a shard.
        Not on Lava targets, whose every run starts a Lava runtime anew."""
        from targets import RunRequest, get_target
        from resformer_deploy.model.precision import model_in_dtype

        p, setup = self.data.preprocessor, self.setup
        x = torch.zeros((1,) + ((p.T,) if p.T else ()) + (p.in_channels, p.img_size, p.img_size))
        with model_in_dtype(self.ck.model, setup.dtype) as m, torch.no_grad():
            m.eval()
            m(x.to(setup.dtype))
        if setup.compared and get_target(setup.target).capabilities.engine != "lava":
            get_target(setup.target).run(RunRequest.of(setup.graph, x.double(), setup.T, prepared=setup.prepared,
                                                      record_spikes=False, dtype=torch.float64, **setup.opts))

    def where(self) -> dict:
        ctx = ray.get_runtime_context()
        return {"worker": ctx.get_actor_id()[:8], "node": ctx.get_node_id()[:8], "node_id": ctx.get_node_id(),
                "host": socket.gethostname(), "ip": ray.util.get_node_ip_address(), "pid": os.getpid(),
                "setup_loads": self.loads}

    def run(self, shipped: list, key: str, index: int, start: int, stop: int) -> dict:
        from resformer_deploy.analysis.evaluation import evaluate_range
        from resformer_deploy.engines.shards import Shard

        self.load(shipped)
        shard, restarted = Shard(index, start, stop), _reconstructed()
        # the driver hands a worker one shard at a time: a restarted worker's first is the one
        # its previous process died in, retried by Ray
        retried = restarted and self.runs == 0
        self.runs += 1
        mode = self.faults.get(shard.name, self.faults.get("*"))
        if mode == "always" or (mode == "once" and not restarted):
            os._exit(FAULT_EXIT)
        if mode == "hang":
            time.sleep(3600)
        cpu, thread_cpu, faults = time.process_time(), time.thread_time(), _thread_page_faults()
        part = evaluate_range(self.setup, self.ck.model, self.data, start, stop, workers=DECODE_THREADS)
        # CPU seconds of the whole worker process (Ray's own threads and the decoding thread
        # included) and of the thread that ran the model, and that thread's page faults: where a
        # worker's time goes
        cpu = {"cpu_seconds": time.process_time() - cpu, "main_thread_cpu_seconds": time.thread_time() - thread_cpu,
               "main_thread_page_faults": _thread_page_faults() - faults, "freed_memory_kept": self.kept}
        return shard_record(key, shard, part, dict(self.where(), restarted=restarted, retried_by_ray=retried, **cpu))


# unless the user set them: usage statistics off (https://docs.ray.io/en/latest/cluster/usage-stats.html);
# metrics and task events off: nothing here reads them (the dashboard is off; the engine asks the GCS
# for nodes only), and every core worker would export metrics to the node's agent and flush task events
# to the GCS periodically (Ray 2.60 ray_config_def.h: enable_metrics_collection, task_events_report_interval_ms,
# 0 = not recorded). For a local instance every Ray process inherits them; joining a cluster, the driver only.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_enable_metrics_collection": "0",
           "RAY_task_events_report_interval_ms": "0"}


@contextmanager
def _environ(**values):
    """os.environ with ``values`` while the block runs (those the user set are kept, but for
    PYTHONPATH and the watchdog's MARKER), then as before."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if k in ("PYTHONPATH", MARKER) or k not in os.environ})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def probe_address(address: str) -> None:
    """Refuse at once, in one line, an ``--address`` HOST:PORT where nothing accepts a connection,
    or where the server does not speak gRPC:
    ray.init would retry for minutes (20 attempts of ~40 s in Ray 2.60, ray/_private/node.py
    _init_gcs_client), printing its log lines. Other forms ("auto") are left to Ray."""
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    host = host.strip("[]")
    try:
        sock = socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S)
    except socket.timeout:
        why = f"no answer within {PROBE_TIMEOUT_S:.0f} s"
    except (OSError, OverflowError, ValueError) as e:
        why = getattr(e, "strerror", None) or one_line(e)
    else:
        with sock:
            if _answers_http2(sock):
                return
        raise DeployError(f"--address {address}: cannot join the Ray cluster: {host}:{port} answers but does not "
                          f"speak gRPC (HTTP/2), so it is no Ray GCS or Ray Client server; check the host and port")
    raise DeployError(f"--address {address}: cannot join the Ray cluster: nothing answers at {host}:{port} ({why})")


# An HTTP/2 client's connection preface and an empty SETTINGS frame (RFC 9113 sections 3.4, 6.5).
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _answers_http2(sock: socket.socket) -> bool:
    """Whether the server answers an HTTP/2 preface with a SETTINGS frame, as every gRPC server
    (Ray's GCS and Ray Client server are gRPC) must first (RFC 9113 section 3.4). Anything else
    (an HTTP/1 or other server, silence) would cost ray.init ~40 s before it gives up."""
    try:
        sock.sendall(H2_PREFACE)
        head = b""
        while len(head) < 9:  # the 9-byte frame header: length (3), type (1), flags (1), stream (4)
            chunk = sock.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:  # socket.timeout included: no answer within PROBE_TIMEOUT_S
        return False
    return head[3] == 0x04


# joining: one connection attempt (~40 s against a port that answers but is no Ray GCS) instead of
# 20 (ray/_private/node.py _init_gcs_client reads this per call; the user's own value is kept)
JOIN_ENV = {"RAY_gcs_server_port_wait_time_s": "1"}


@contextmanager
def _stderr_kept():
    """File descriptor 2 into a temporary file while the block runs: Ray's C++ client logs each
    failed connection attempt there ("rpc_client.h:153: Failed to connect to GCS ..."); a failed
    join is reported in one line instead. The lines are written out again if the join succeeds."""
    saved, keep = os.dup(2), tempfile.TemporaryFile()
    try:
        os.dup2(keep.fileno(), 2)
        ok = False
        yield
        ok = True
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        if ok:
            keep.seek(0)
            os.write(2, keep.read(1 << 16))
        keep.close()


def _drop_raylet_lines():
    """Ray's driver prints the errors its raylet publishes ("(raylet) A worker died ...", coloured)
    to stdout from a thread of its own, log_to_driver=False or not (ray/_private/worker.py:
    listen_error_messages -> print_to_stdstream). Dropped: our own lines name a failed shard with
    its error. Returns the original, to put back."""
    import ray._private.worker as ray_worker
    original = ray_worker.print_to_stdstream

    def filtered(data, *args, **kwargs):
        if data.get("pid") != "raylet":
            original(data, *args, **kwargs)
    ray_worker.print_to_stdstream = filtered
    return original


class RayCluster:
    """A local Ray instance started (and stopped) here, or an existing cluster joined."""

    def __init__(self, address: Optional[str], num_cpus: int, object_store_bytes: int):
        self.address, self.num_cpus, self.object_store_bytes = address, num_cpus, object_store_bytes
        self.tmp, self.daemons, self.actors, self.owned = None, [], [], False
        self.watchdog, self.watch_fd, self.printer = None, None, None
        self.start_seconds = self.stop_seconds = 0.0

    def _start_watchdog(self) -> None:
        """The orphan watchdog of the local instance (engines/ray_watchdog.py): it holds the read
        end of a pipe only this process writes to, and cleans up on its EOF."""
        r, w = os.pipe()  # not inheritable (PEP 446): Ray's processes do not hold it open
        try:
            with deferred_signals():  # a Ctrl-C in between would leave a watchdog nobody stops
                argv = [sys.executable, "-I", WATCHDOG, str(r), self.tmp, repr(time.time())]
                self.watchdog = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                 stderr=subprocess.DEVNULL, pass_fds=(r,), start_new_session=True)
                self.watch_fd, w = w, None
        finally:
            os.close(r)
            if w is not None:
                os.close(w)

    def _stop_watchdog(self) -> None:
        """Ray is stopped: DONE, and close its pipe; it kills any straggler of the instance, removes
        the directory (gone by now) and exits."""
        if self.watch_fd is not None:
            try:
                os.write(self.watch_fd, DONE)
            except OSError:  # the watchdog is gone (killed): nothing to tell
                pass
            os.close(self.watch_fd)
            self.watch_fd = None
        if self.watchdog is not None:
            try:
                self.watchdog.wait(timeout=STOP_TIMEOUT_S + SWEEP_S)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()
                self.watchdog.wait()
            self.watchdog = None

    def __enter__(self):
        t0 = time.perf_counter()
        main = threading.current_thread() is threading.main_thread()
        term = signal.getsignal(signal.SIGTERM) if main else None
        try:
            if ray.is_initialized():  # a library caller connected already: use it, leave it
                pass
            elif self.address is None:
                self.owned = True
                self.tmp = tempfile.mkdtemp(prefix="rd-", dir="/tmp")
                self._start_watchdog()  # before the snapshot: the watchdog is none of Ray's processes
                before = {p.pid for p in psutil.Process().children()}
                # the workers import this checkout (the environment of Ray's processes is this one's at
                # ray.init; a runtime_env would start workers anew, ~1.5 s)
                root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
                path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
                try:
                    with _environ(PYTHONPATH=path, **RAY_ENV, **{MARKER: self.tmp}):
                        self.printer = self.printer or _drop_raylet_lines()
                        ray.init(num_cpus=self.num_cpus, object_store_memory=self.object_store_bytes,
                                 _temp_dir=self.tmp, include_dashboard=False, log_to_driver=False,
                                 logging_level=logging.ERROR)
                finally:
                    self.daemons = [p for p in psutil.Process().children() if p.pid not in before]
            else:
                probe_address(self.address)
                try:
                    with _environ(**RAY_ENV, **JOIN_ENV), _stderr_kept():
                        self.printer = self.printer or _drop_raylet_lines()
                        ray.init(address=self.address, log_to_driver=False, logging_level=logging.ERROR)
                except (ConnectionError, RuntimeError, ValueError) as e:
                    raise DeployError(f"--address {self.address}: cannot join the Ray cluster: "
                                      f"{one_line(e)[:ERROR_CHARS]}") from None
                self.owned = None  # joined: disconnect at the end, leave the cluster running
        except BaseException:
            self.close()
            raise
        finally:
            if main and term is not None:
                signal.signal(signal.SIGTERM, term)  # ray.init replaces it (sys.exit): the CLI's handler back
        self.start_seconds = time.perf_counter() - t0
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def resources(self) -> dict:
        """CPUs of the cluster in total and of its smallest node."""
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = [int(n.get("Resources", {}).get("CPU", 0)) for n in nodes]
        return {"nodes": len(nodes), "cpus": sum(cpus), "node_cpus_min": min(cpus) if cpus else 0}

    def close(self) -> None:
        t0 = time.perf_counter()
        for a in self.actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:  # noqa: BLE001 -- already dead or the cluster gone: nothing to stop
                pass
        self.actors = []
        procs = []
        for d in self.daemons:  # Ray's processes with their workers (and a worker's Lava processes)
            try:
                procs += [d, *d.children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        stopping = self.owned is not False and ray.is_initialized()
        if stopping:
            ray.shutdown()
        # wait only for processes told to stop: after a ray.init cut short (Ctrl-C while it starts
        # the instance) nobody told them, and waiting would only delay the kill by STOP_TIMEOUT_S
        _, alive = psutil.wait_procs(procs, timeout=STOP_TIMEOUT_S if stopping else 0)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=STOP_TIMEOUT_S)
        self.daemons = []
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        self._stop_watchdog()
        if self.printer is not None:
            import ray._private.worker as ray_worker
            ray_worker.print_to_stdstream, self.printer = self.printer, None
        self.stop_seconds += time.perf_counter() - t0


def _error_text(e: BaseException) -> str:
    cause = getattr(e, "cause", None)
    text = one_line(cause if cause is not None else e)
    return text if len(text) <= ERROR_CHARS else text[:ERROR_CHARS] + " ..."


def _nodes() -> Dict[str, dict]:
    """Node id -> {alive, raylet address} of every node Ray knows, the dead ones included."""
    return {n["NodeID"]: {"alive": bool(n.get("Alive")),
                          "raylet": f"{n.get('NodeManagerAddress')}:{n.get('NodeManagerPort')}"}
            for n in ray.nodes()}


def _run_shards(cluster: RayCluster, make_worker: Callable, shipped: list, todo: list, store: ShardStore,
                workers: int, update: Callable[[int], None], cpus_per_worker: int = 1,
                warn: Callable[[str], None] = lambda m: None):
    """Every shard of ``todo`` on ``workers`` actors, one shard at a time each; returns (records of
    finished shards, failures {shard: (error, user_error)}, seconds to set the workers up, seconds
    from the first dispatch, retries {shard index: [reason, ...]} of shards whose node was lost)."""
    slots = [make_worker() for _ in range(workers)]
    cluster.actors = list(slots)
    t_ready = time.perf_counter()
    pending = [a.load.remote(shipped) for a in slots]
    ready, _ = ray.wait(pending, num_returns=len(pending), timeout=READY_TIMEOUT_S)
    if len(ready) < len(pending):
        raise DeployError(f"{len(pending) - len(ready)} of {workers} Ray workers not set up after "
                          f"{READY_TIMEOUT_S:.0f} s (resources of the cluster: {cluster.resources()})")
    try:
        homes = ray.get(pending)  # where each worker runs
    except ray.exceptions.RayError as e:  # the set-up raised (data set missing on a node, ...)
        raise DeployError(f"a Ray worker could not be set up: {_error_text(e)}") from None
    ready_seconds = time.perf_counter() - t_ready
    queue, inflight, idle = deque(todo), {}, deque(range(workers))
    records, failures, replaced, retried = [], {}, 0, {}
    next_check = time.monotonic() + NODE_CHECK_S
    t0 = time.perf_counter()
    while queue or inflight:
        while idle and queue:
            slot, s = idle.popleft(), queue.popleft()
            inflight[slots[slot].run.remote(shipped, store.key, s.index, s.start, s.stop)] = (s, slot)
        if not inflight:  # every worker went with its node
            for s in queue:
                failures[s] = ("no Ray worker left: the nodes of all workers were lost", False)
            break
        done, _ = ray.wait(list(inflight), num_returns=1, timeout=WAIT_S)
        for ref in done:
            s, slot = inflight.pop(ref)
            try:
                rec = ray.get(ref)
            except ray.exceptions.RayActorError as e:  # the worker died more often than --retries
                failures[s] = (f"worker died: {_error_text(e)}", False)
                if replaced < len(todo):  # a new worker for the remaining shards
                    replaced += 1
                    slots[slot] = make_worker()
                    cluster.actors.append(slots[slot])
                    homes[slot] = None  # known from its first shard
            except ray.exceptions.RayTaskError as e:  # the shard's run raised: it would again
                failures[s] = (_error_text(e), isinstance(e.cause, DeployError))
            except ray.exceptions.RayError as e:
                failures[s] = (_error_text(e), False)
            else:
                homes[slot] = rec["worker"]  # a worker Ray restarted may be on another node
                records.append(store.write(s, rec))
                update(s.size)
            idle.append(slot)
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + NODE_CHECK_S
            _requeue_lost(slots, homes, inflight, idle, queue, retried, cluster, make_worker, cpus_per_worker, warn)
    return records, failures, ready_seconds, time.perf_counter() - t0, retried


def _requeue_lost(slots, homes, inflight, idle, queue, retried, cluster, make_worker, cpus_per_worker, warn):
    """Workers on a node Ray reports dead: stopped for good (Ray would restart them, and retry their
    shard, only where CPUs are free), their shards back at the head of the queue for the survivors,
    the reason noted per shard; a lost worker is replaced only if the cluster has a CPU free now."""
    nodes = _nodes()
    lost = {slot for slot, h in enumerate(homes)
            if h is not None and slots[slot] is not None and not nodes.get(h["node_id"], {}).get("alive", True)}
    if not lost:
        return
    for ref, (s, slot) in list(inflight.items()):
        if slot in lost:
            del inflight[ref]
            h = homes[slot]
            why = (f"node {h['node']} ({h['host']}, {h['ip']}, raylet {nodes[h['node_id']]['raylet']}) was lost "
                   f"while worker {h['worker']} ran the shard")
            retried.setdefault(s.index, []).append(why)
            queue.appendleft(s)
            warn(f"{s.name}: {why}; it runs again on another worker")
    for slot in lost:
        try:
            ray.kill(slots[slot], no_restart=True)
        except Exception:  # noqa: BLE001 -- gone with its node already
            pass
        if slot in idle:
            idle.remove(slot)
        slots[slot] = None
        if ray.available_resources().get("CPU", 0) >= cpus_per_worker:
            slots[slot], homes[slot] = make_worker(), None
            cluster.actors.append(slots[slot])
            idle.append(slot)


def per_shard(records: list, retried: dict, nodes: Dict[str, dict]) -> list:
    """Where each shard of this run ran (worker, node id, host, IP, raylet) and why it was retried."""
    out = []
    for r in sorted(records, key=lambda r: r["shard"]["index"]):
        w, sh = r["worker"], r["shard"]
        why = list(retried.get(sh["index"], []))
        if w.get("retried_by_ray"):
            why.append(f"worker {w['worker']}'s process died while it ran the shard; Ray started it again and "
                       f"retried the shard there")
        out.append({"shard": f"shard-{sh['index']:05d}", "start": sh["start"], "stop": sh["stop"],
                    "worker": w.get("worker"), "pid": w.get("pid"), "node": w.get("node"),
                    "node_id": w.get("node_id"), "host": w.get("host"), "ip": w.get("ip"),
                    "raylet": nodes.get(w.get("node_id"), {}).get("raylet"), "seconds": r["seconds"],
                    "retried": why})
    return out


def worker_summary(records: list, wall: float) -> dict:
    """Per worker and per node: shards, samples, busy seconds, samples/s (a worker: per busy
    second; a node: per second of the shard phase's wall time)."""
    per_worker, per_node = {}, {}
    for r in records:
        w = r["worker"]
        n = len(r["predictions"])
        pw = per_worker.setdefault(w["worker"], {"worker": w["worker"], "host": w["host"], "ip": w["ip"],
                                                 "pid": w["pid"], "shards": 0, "samples": 0, "seconds": 0.0,
                                                 "restarted": False, "setup_loads": 0})
        pw["shards"] += 1
        pw["samples"] += n
        pw["seconds"] += r["seconds"]
        pw["restarted"] = pw["restarted"] or bool(w.get("restarted"))
        pw["setup_loads"] = max(pw["setup_loads"], w.get("setup_loads", 0))
        pn = per_node.setdefault(w["node"], {"node": w["node"], "host": w["host"], "ip": w["ip"], "workers": set(),
                                             "samples": 0})
        pn["workers"].add(w["worker"])
        pn["samples"] += n
    for pw in per_worker.values():
        pw["samples_per_second"] = pw["samples"] / pw["seconds"] if pw["seconds"] > 0 else None
    for pn in per_node.values():
        pn["workers"] = len(pn["workers"])
        pn["samples_per_second"] = pn["samples"] / wall if wall > 0 else None
    return {"per_worker": list(per_worker.values()), "per_node": list(per_node.values())}


def evaluate_on_ray(ck, data, target: str, *, checkpoint: str, limit: Optional[int] = None, batch_size: int = 32,
                    shard_size: int = 256, dssa: str = "fused", calibration=None, calib_samples: int = 128,
                    torch_precision: str = "auto", workers: Optional[int] = None, address: Optional[str] = None,
                    out_dir: Optional[str] = None, resume: bool = False, retries: int = 2,
                    say: Callable[[str], None] = lambda m: None, warn: Callable[[str], None] = None,
                    bar=None, sizing=None, lava_processes: str = "separate") -> dict:
    """evaluation.evaluate's record (plus ``engine``), the shards run on Ray. ``out_dir``: where
    finished shards are kept (None: a temporary directory, removed); ``resume``: take the shards
    of the same run found there; ``sizing``: the job's sizing step (evaluation.prepare_evaluation).
    Raises ShardsFailed naming the shards that failed."""
    from resformer_deploy.analysis.equivalence import _NoBar
    from resformer_deploy.analysis.evaluation import TOP_K, evaluation_record, prepare_evaluation, torch_dtype
    from targets import PYTORCH_MODEL, get_target

    warn = warn or say
    bar = bar or _NoBar
    n = len(data.source) if limit is None else min(limit, len(data.source))
    shards = plan_shards(n, shard_size, batch_size)
    tgt = None if target == PYTORCH_MODEL else get_target(target)
    opts = tgt.run_options(dssa, lava_processes) if tgt is not None else {}  # merged: refused here by a target without it
    quantizes = tgt is not None and tgt.capabilities.needs_quantized_net
    identity = run_identity(checkpoint=checkpoint, ck=ck, target=target, target_options=opts,
                            torch_precision=str(torch_dtype(tgt, torch_precision)).replace("torch.", ""), data=data,
                            samples=n, limit=limit, batch_size=batch_size, shard_size=shard_size,
                            calibration=calibration, calib_samples=calib_samples if quantizes else None)
    if address is not None:  # before anything is written or prepared (RayCluster probes again: a library call)
        probe_address(address)
    temp_out = None if out_dir else tempfile.mkdtemp(prefix="rd-out-")
    try:
        classes = ck.config.num_classes
        store = ShardStore(out_dir or temp_out, identity, shards, classes=classes, top_k=min(TOP_K, classes))
        remove_temporaries(store.shard_dir)
        done = store.open(resume)
        todo = [s for s in shards if s.index not in done]
        say(f"shards: {len(shards)} of <= {shard_size} samples" + (f", {len(done)} done already in {out_dir}"
                                                                  if resume else ""))
        # once, on the driver: export, the target's flow, calibration and quantization
        setup, _, _, rest, _ = prepare_evaluation(ck, data, target, limit=limit, batch_size=batch_size, dssa=dssa,
                                                  calibration=calibration, calib_samples=calib_samples,
                                                  torch_precision=torch_precision, say=say, sizing=sizing,
                                                  lava_processes=lava_processes)
        rest.close()
        records, failures, engine = list(done.values()), {}, {}
        if todo:
            try:
                records_new, failures, engine = _run_on_ray(ck, setup, data, todo, store, tgt, workers, address,
                                                            retries, say, bar, label=f"evaluate ({target}) on Ray",
                                                            warn=warn)
            except BaseException as e:
                if not isinstance(e, Exception):  # Ctrl-C, SIGTERM: the cluster's work is stopped by now
                    warn(f"interrupted: {store.finished()} of {len(shards)} shard(s) finished"
                         + (f", kept in {out_dir} (--resume continues)" if out_dir else ""))
                raise
            records += records_new
        else:
            engine = {"address": address or "local", "workers": 0, "seconds": {"shards": 0.0}}
        if failures:
            for s, (err, _) in sorted(failures.items(), key=lambda kv: kv[0].index):
                warn(f"failed: {s.describe()}: {err}")
            kept = (f"the other {len(shards) - len(failures)} are in {out_dir} (--resume runs the rest)" if out_dir
                    else "rerun with --out-dir DIR to keep finished shards for --resume")
            e = ShardsFailed(f"{len(failures)} of {len(shards)} shard(s) failed: "
                             f"{', '.join(s.name for s in sorted(failures, key=lambda s: s.index))}; {kept}")
            if all(user for _, user in failures.values()):
                e.exit_code = 2
            raise e
        tally, skipped, info = merge_shards(setup, records)
        new = [r for r in records if r["shard"]["index"] not in done]
        wall = engine["seconds"]["shards"]
        rep = evaluation_record(setup, ck, data, tally, skipped, info, checkpoint=checkpoint, limit=limit, wall=wall,
                                load_seconds=sum(r["load_seconds"] for r in new),
                                busy_seconds=sum(r["seconds"] for r in new))
        # this run's samples over this run's wall time (resumed shards were evaluated before)
        rep["throughput"]["samples_per_second"] = (sum(len(r["predictions"]) for r in new) / wall if wall > 0
                                                   else None)
        rep["engine"] = dict(engine, engine="ray", out_dir=out_dir, run_key=store.key, shard_size=shard_size,
                             shards=len(shards), shards_resumed=len(done), shards_run=len(new),
                             **worker_summary(new, wall))
        return rep
    finally:
        if temp_out:
            shutil.rmtree(temp_out, ignore_errors=True)


def _run_on_ray(ck, setup, data, todo, store, tgt, workers, address, retries, say, bar, label, warn=None):
    payload = cloudpickle.dumps((ck, setup.shippable(), data_recipe(data)))
    lava = tgt is not None and tgt.capabilities.engine == "lava"
    local_cpus = psutil.cpu_count() or 1
    if address is None:
        cpw = local_cpus if lava else 1
        workers = min(workers or max(1, local_cpus // cpw), len(todo))
        need = workers * (setup.estimate.peak_bytes + len(payload))
        if need > budget_bytes():
            raise MemoryBudgetError(f"evaluate --engine ray: {workers} workers on this machine need about "
                                    f"{size(need)} > memory budget {size(budget_bytes())}; use fewer --workers "
                                    f"or a smaller --batch-size")
        num_cpus = max(local_cpus, workers * cpw)
    else:
        cpw, num_cpus = None, None
    store_bytes = max(OBJECT_STORE_MIN, 2 * len(payload) + (64 << 20))
    with RayCluster(address, num_cpus, store_bytes) as cluster, bar(sum(s.size for s in todo), label, "samples") as b:
        res = cluster.resources()
        if cpw is None:
            cpw = max(1, res["node_cpus_min"]) if lava else 1
            workers = min(workers or max(1, res["cpus"] // cpw), len(todo))
        if workers * cpw > res["cpus"]:
            raise DeployError(f"--workers {workers}: the Ray cluster has {res['cpus']} CPUs, {workers} workers of "
                              f"{cpw} CPU(s) need {workers * cpw}")
        say(f"ray: {'local instance' if address is None else address}, {res['nodes']} node(s), {res['cpus']} CPUs; "
            f"{workers} worker(s) of {cpw} CPU(s), setup {size(len(payload))} shipped once per worker; "
            f"started in {cluster.start_seconds:.1f} s")
        shipped = [ray.put(payload)]  # once; each worker fetches it once
        options = dict(num_cpus=cpw, max_restarts=retries, max_task_retries=retries)
        remote = ray.remote(ShardWorker)
        records, failures, ready_s, wall, retried = _run_shards(
            cluster, lambda: remote.options(**options).remote(os.environ.get(FAULT_ENV, ""), cpw), shipped,
            todo, store, workers, b.update, cpus_per_worker=cpw, warn=warn or say)
        shards = per_shard(records, retried, _nodes())
    return records, failures, {"address": address or "local", "cluster": res, "workers": workers,
                               "cpus_per_worker": cpw, "retries": retries, "shipped_bytes": len(payload),
                               "seconds": {"ray_start": cluster.start_seconds, "workers_ready": ready_s,
                                           "shards": wall, "ray_stop": cluster.stop_seconds},
                               "per_shard": shards,
                               "retried": [{"shard": r["shard"], "reasons": r["retried"], "completed_on":
                                            {k: r[k] for k in ("node", "host", "ip", "raylet", "worker")}}
                                           for r in shards if r["retried"]]}
