"""Process-tree accounting (psutil): used to prove no Lava process outlives a run and to count
OS processes and memory in benchmarks."""
import os
import threading
import time

import psutil


def cmdline(pid) -> str:
    try:
        return " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return ""


def descendants(pid=None, include_resource_tracker: bool = False):
    """Live descendants of ``pid`` (default: this process); zombies hold no resources and are
    left out. Python's multiprocessing resource tracker (one per interpreter, exits with its
    parent) is left out unless asked for."""
    try:
        kids = psutil.Process(pid or os.getpid()).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for p in kids:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except psutil.NoSuchProcess:
            pass
    if include_resource_tracker:
        return out
    return [p for p in out if "multiprocessing.resource_tracker" not in cmdline(p)]


def pss_kb(pid) -> int:
    """Proportional set size in kB (0 if the process is gone or unreadable)."""
    try:
        return psutil.Process(pid).memory_full_info().pss // 1024
    except (psutil.Error, AttributeError):
        return 0


class PeakSampler(threading.Thread):
    """Samples peak PSS (this process + descendants) and the peak descendant count every 0.1 s."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop_flag, self.peak_kb, self.peak_procs = False, 0, 0

    def run(self):
        me = os.getpid()
        while not self.stop_flag:
            kids = descendants(me, include_resource_tracker=True)
            self.peak_procs = max(self.peak_procs, len(kids))
            self.peak_kb = max(self.peak_kb, pss_kb(me) + sum(pss_kb(p) for p in kids))
            time.sleep(0.1)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag = True
        self.join()
        return False
