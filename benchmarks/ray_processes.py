"""CPU time of a local Ray instance's own processes, per process and per thread, by phase of an
``evaluate --engine ray`` run (issue 28, stop 37): where the CPU of a 2-core node goes besides the
two workers' model threads.

``RayCpu`` samples, every ``POLL_S`` in a thread of the driver, the CPU time (user + system ticks of
/proc/PID/task/TID/stat, proc(5)) of every thread of this process and of its descendants: a local
instance's gcs_server, raylet, log monitor, autoscaler monitor, dashboard head and agents, the
workers, and the engine's watchdog. ``phases()`` marks the phases by patching RayCluster.__enter__ /
close and ray_engine._run_shards (start, workers' set-up, shards, stop); a phase's CPU is read by
linear interpolation between the samples around its ends. A worker's main thread (tid = pid: the
model runs there) is kept apart from its other threads (Ray's core worker, gRPC, the decoding
thread), and for it the scheduler's counts (/proc/PID/task/TID/sched, CONFIG_SCHED_DEBUG): CPU
migrations and involuntary context switches (preemptions); and a worker's memory on transparent huge
pages (most seen). The machine's steal time (/proc/stat:
time the hypervisor ran something else) is recorded beside. The sampler's own thread is left out
of the driver's figure and its CPU reported apart.
"""
import os
import threading
import time
from contextlib import contextmanager

import psutil

POLL_S = 5.0  # between phase marks (each mark samples at once): a 0.5 s poll of every thread of the run took
# 16-18 % of a core (schedstat of this thread, ti @224 shard phase), preempting the workers it measured
TICK = os.sysconf("SC_CLK_TCK")
# kinds by process name or command line (Ray's agents and workers rename themselves ray::...)
NAMES = {"gcs_server": "gcs_server", "raylet": "raylet"}
SCRIPTS = (("log_monitor.py", "log_monitor"), ("autoscaler/_private/monitor.py", "autoscaler_monitor"),
           ("dashboard/dashboard.py", "dashboard_head"), ("ray_watchdog.py", "engine_watchdog"),
           ("ray::DashboardAgent", "dashboard_agent"), ("dashboard/agent.py", "dashboard_agent"),
           ("ray::RuntimeEnvAgent", "runtime_env_agent"), ("runtime_env/agent/main.py", "runtime_env_agent"),
           ("ray::", "worker"), ("default_worker.py", "worker"))


def kind_of(p: psutil.Process, driver: int) -> str:
    if p.pid == driver:
        return "driver"
    if p.name() in NAMES:
        return NAMES[p.name()]
    cmd = " ".join(p.cmdline()) or p.name()
    return next((kind for key, kind in SCRIPTS if key in cmd or p.name().startswith(key)), "other:" + p.name())


def _thread_cpu(pid: int, tid: int):
    """(name, CPU seconds) of one thread, or None if gone."""
    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    name, rest = s[s.index("(") + 1:s.rindex(")")], s[s.rindex(")") + 2:].split()
    return name, (int(rest[11]) + int(rest[12])) / TICK  # utime, stime (fields 14, 15)


def _sched(pid: int, tid: int) -> dict:
    out = {}
    try:
        with open(f"/proc/{pid}/task/{tid}/sched") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k in ("se.nr_migrations", "nr_involuntary_switches", "nr_voluntary_switches"):
                    out[k.replace("se.", "")] = int(float(v))
    except OSError:
        pass
    return out


def anon_huge_pages_mib(pid: int = 0):
    """A process's anonymous memory on transparent huge pages (MiB; /proc/PID/smaps_rollup), None if unknown."""
    try:
        with open(f"/proc/{pid or 'self'}/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def _steal() -> float:
    with open("/proc/stat") as f:
        return int(f.readline().split()[8]) / TICK  # cpu user nice system idle iowait irq softirq steal


class RayCpu(threading.Thread):
    def __init__(self, poll_s: float = POLL_S):
        super().__init__(daemon=True, name="ray-cpu-account")
        self.poll_s, self.driver = poll_s, os.getpid()
        self.samples = []  # (time, {(pid, tid): cpu s}, steal s)
        self.threads = {}  # (pid, tid) -> (kind, process name, thread name, main thread)
        self.kinds = {}  # pid -> kind (a worker renames itself as it runs: ray::IDLE -> ray::ShardWorker.run)
        self.sched = {}  # (pid, tid) of workers' main threads -> [first, last] scheduler counts
        self.marks = {}  # phase -> [start, end]
        self.huge = {}  # worker pid -> most AnonHugePages seen (MiB): its memory on transparent huge pages
        self.stop_event, self.tid = threading.Event(), None
        self.own_cpu = 0.0
        self.lock = threading.Lock()  # a mark's sample (the driver's thread) and the poll's: in time order

    def _poll(self) -> None:
        with self.lock:
            self._sample()

    def _sample(self) -> None:
        now, cpu = time.monotonic(), {}
        me = psutil.Process(self.driver)
        try:
            procs = [me] + me.children(recursive=True)
        except psutil.Error:
            procs = [me]
        for p in procs:
            try:
                if p.pid not in self.kinds or self.kinds[p.pid] == "worker" or self.kinds[p.pid].startswith("other"):
                    self.kinds[p.pid] = kind_of(p, self.driver)
                pname = p.name()
                tids = [int(t) for t in os.listdir(f"/proc/{p.pid}/task")]
            except (psutil.Error, OSError):
                continue
            for tid in tids:
                if p.pid == self.driver and tid == self.tid:
                    continue
                got = _thread_cpu(p.pid, tid)
                if got is None:
                    continue
                cpu[(p.pid, tid)] = got[1]
                self.threads[(p.pid, tid)] = (self.kinds[p.pid], pname, got[0], tid == p.pid)
                if tid == p.pid and self.kinds[p.pid] == "worker":
                    s = _sched(p.pid, tid)
                    self.sched.setdefault((p.pid, tid), [s, s])[1] = s
            if self.kinds[p.pid] == "worker":
                huge = anon_huge_pages_mib(p.pid)
                self.huge[p.pid] = max(self.huge.get(p.pid, 0), huge or 0)
        self.samples.append((now, cpu, _steal()))

    def run(self) -> None:
        self.tid = threading.get_native_id()
        t0 = time.thread_time()
        self._poll()
        while not self.stop_event.wait(self.poll_s):
            self._poll()
        self._poll()
        self.own_cpu = time.thread_time() - t0

    def finish(self) -> None:
        self.stop_event.set()
        self.join()

    def mark(self, phase: str, end: bool) -> None:
        self.marks.setdefault(phase, [None, None])[int(end)] = time.monotonic()
        self._poll()  # a sample at the boundary itself: the phase's CPU is not interpolated

    def _at(self, t: float, key) -> float:
        """A thread's CPU seconds at time ``t``: interpolated between the samples around it (0 before
        its first sample: a thread started later; its last value after it ended)."""
        prev = (None, 0.0)
        for ts, cpu, _ in self.samples:
            if key not in cpu:
                continue
            if ts >= t:
                if prev[0] is None:
                    return 0.0 if ts > t + self.poll_s else cpu[key]
                return prev[1] + (cpu[key] - prev[1]) * (t - prev[0]) / (ts - prev[0])
            prev = (ts, cpu[key])
        return prev[1]

    def _steal_at(self, t: float) -> float:
        prev = None
        for ts, _, st in self.samples:
            if ts >= t:
                if prev is None:
                    return st
                return prev[1] + (st - prev[1]) * (t - prev[0]) / (ts - prev[0])
            prev = (ts, st)
        return prev[1]

    def phase(self, t0: float, t1: float) -> dict:
        """CPU seconds between t0 and t1 by kind (workers split: main thread, other threads), by
        process (pid, name) and, for every process, its busiest threads."""
        by_kind, by_proc = {}, {}
        for key, (kind, pname, tname, main) in self.threads.items():
            d = self._at(t1, key) - self._at(t0, key)
            if d <= 0:
                continue
            k = kind + ("_main_thread" if main else "_other_threads") if kind in ("worker", "driver") else kind
            by_kind[k] = by_kind.get(k, 0.0) + d
            pr = by_proc.setdefault(key[0], {"pid": key[0], "kind": kind, "name": pname, "cpu_s": 0.0, "threads": {}})
            pr["cpu_s"] += d
            label = "main" if main else tname
            pr["threads"][label] = pr["threads"].get(label, 0.0) + d
        procs = sorted(by_proc.values(), key=lambda r: -r["cpu_s"])
        for pr in procs:
            pr["cpu_s"] = round(pr["cpu_s"], 3)
            pr["threads"] = {k: round(v, 3) for k, v in sorted(pr["threads"].items(), key=lambda kv: -kv[1])[:5]}
        daemons = sum(v for k, v in by_kind.items() if not k.startswith(("worker", "driver")))
        return {"seconds": round(t1 - t0, 3), "steal_s": round(self._steal_at(t1) - self._steal_at(t0), 2),
                "ray_daemons_cpu_s": round(daemons, 3),
                "by_kind": {k: round(v, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
                "processes": procs}

    def report(self) -> dict:
        out = {"poll_s": self.poll_s, "sampler_cpu_s": round(self.own_cpu, 3),
               "phases": {name: self.phase(*se) for name, se in self.marks.items() if None not in se}}
        out["worker_main_threads_sched"] = [
            {"pid": pid, **{k: last.get(k, 0) - first.get(k, 0) for k in last}}
            for (pid, _), (first, last) in self.sched.items()]
        out["worker_anon_huge_pages_mib_max"] = dict(self.huge)
        return out


@contextmanager
def phases(account: RayCpu):
    """Marks of Ray's phases on ``account`` while the block runs: ray_start (RayCluster.__enter__),
    workers_ready and shards (ray_engine._run_shards: from its start to the first shard dispatched,
    then to the last result, as the engine times them), ray_stop (RayCluster.close)."""
    from resformer_deploy.engines import ray_engine
    enter, close, run_shards = ray_engine.RayCluster.__enter__, ray_engine.RayCluster.close, ray_engine._run_shards

    def marked(phase: str, method):
        def wrapper(self):
            account.mark(phase, False)
            try:
                return method(self)
            finally:
                account.mark(phase, True)
        return wrapper

    enter_, close_ = marked("ray_start", enter), marked("ray_stop", close)

    def run_shards_(*a, **k):
        account._poll()  # samples at both ends; the set-up / shards boundary is interpolated
        t0 = time.monotonic()
        out = run_shards(*a, **k)
        t1 = time.monotonic()
        account._poll()
        wall = out[3]  # seconds from the first dispatch to the last result
        account.marks["workers_ready"] = [t0, t1 - wall]
        account.marks["shards"] = [t1 - wall, t1]
        return out

    ray_engine.RayCluster.__enter__, ray_engine.RayCluster.close, ray_engine._run_shards = enter_, close_, run_shards_
    try:
        yield account
    finally:
        ray_engine.RayCluster.__enter__, ray_engine.RayCluster.close, ray_engine._run_shards = enter, close, run_shards
