"""Orphan watchdog of a local Ray instance (``evaluate --engine ray`` without ``--address``).

Started by ray_engine.RayCluster before ``ray.init`` as ``python -I ray_watchdog.py FD TEMP_DIR
SINCE``, in a session of its own (a Ctrl-C of the terminal does not reach it), holding the read
end of a pipe whose write end only the driver holds. When the driver is gone -- EOF on the pipe,
which the kernel delivers however it ended, SIGKILL included; or this process reparented -- it
SIGKILLs every process of that Ray instance and removes TEMP_DIR. A driver that stopped Ray itself
writes DONE before it closes the pipe: then only stragglers found by their environment are
killed, never another child of a driver that lives on. Without it a SIGKILLed driver leaves
Ray's DashboardAgent and RuntimeEnvAgent for minutes and the temp directory for good (issue 24).

Ray's processes are found two ways, since a process whose parent died is reparented and lost to
a tree walk: (1) the driver's descendants started since SINCE (its clock when it started this
watchdog), recorded every POLL_S while it lives (with their start times, so a reused pid is never
hit); (2) their environment: the driver starts Ray with
``RESFORMER_DEPLOY_RAY_SESSION=TEMP_DIR``, which every process Ray starts inherits (raylet ->
workers started later). /proc/PID/environ is the environment a process was started with
(proc(5)), read raw: Ray's agents rename themselves (setproctitle) over part of that area, and
psutil's parse of it then comes back empty.

Standalone (stdlib and psutil only): it must run with nothing of this package importable.
"""
import os
import select
import shutil
import signal
import sys
import time

import psutil

MARKER = "RESFORMER_DEPLOY_RAY_SESSION"
DONE = b"done"
# how often the driver's descendants are recorded (the pipe's EOF wakes it at once whatever this is):
# each record reads every process's /proc/PID/stat (psutil's children), ~5-20 ms on a busy machine;
# every 0.5 s that was ~1 % of a core, Ray's largest background cost on a node (RESULTS.md, stop 37).
# Ray's processes are found by their environment anyway; the record is the fallback.
POLL_S = 2.0
SWEEP_S = 8.0  # kill until a pass finds none (a dying raylet may still start a worker), at most this long


def marked(value: str, spare=()) -> list:
    """This user's processes started with MARKER=value (not this one, nor ``spare``)."""
    me, found, entry = os.getpid(), [], f"{MARKER}={value}".encode()
    for p in psutil.process_iter():
        if p.pid == me or p.pid in spare:
            continue
        try:
            with open(f"/proc/{p.pid}/environ", "rb") as f:
                if entry + b"\0" in f.read():
                    found.append(p)
        except OSError:  # another user's, or gone: not ours, or nothing to kill
            pass
    return found


def _living(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE  # a zombie holds nothing; its parent reaps it
    except psutil.Error:
        return False


def descendants(pid: int, since: float = 0.0) -> dict:
    """pid -> psutil.Process of every living descendant of ``pid`` started at ``since`` or later."""
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return {}
    out = {}
    for p in kids:
        try:
            if p.create_time() >= since:
                out[p.pid] = p
        except psutil.Error:
            pass
    return out


def sweep(value: str, seen: dict, spare=()) -> int:
    """SIGKILL every marked or recorded process and their descendants until none is left (or
    SWEEP_S passed); returns how many. A recorded psutil.Process that is gone, or whose pid was
    reused, is skipped (psutil compares the start time)."""
    killed, deadline = 0, time.monotonic() + SWEEP_S
    while time.monotonic() < deadline:
        found = {p.pid: p for p in marked(value, spare)}
        for p in list(seen.values()) + list(found.values()):
            if p.is_running():
                found[p.pid] = p
                found.update(descendants(p.pid))
        procs = [p for pid, p in found.items() if pid not in spare and pid != os.getpid() and _living(p)]
        if not procs:
            break
        for p in procs:
            try:
                p.kill()
                killed += 1
            except psutil.Error:
                pass
        psutil.wait_procs(procs, timeout=1.0)
    return killed


def main(fd: int, temp_dir: str, since: float) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # only the pipe ends this
    parent, seen, said = os.getppid(), {}, b""
    since -= 0.05  # process start times are in clock ticks
    while True:
        seen.update(descendants(parent, since))
        ready, _, _ = select.select([fd], [], [], POLL_S)
        data = os.read(fd, 4096) if ready else None
        if data == b"" or os.getppid() != parent:
            break
        said += data or b""
    seen.pop(os.getpid(), None)
    sweep(temp_dir, {} if said == DONE else seen, spare=(parent,))
    shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), sys.argv[2], float(sys.argv[3])))
