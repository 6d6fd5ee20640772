"""Process-tree accounting from /proc (Linux): used to prove no Lava process outlives a run
and to count OS processes and memory in benchmarks."""
import os
import threading
import time


def _children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if parts[0] != "Z":  # zombies hold no resources
            kids.setdefault(int(parts[1]), []).append(int(d))
    return kids


def cmdline(pid) -> str:
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().replace("\0", " ")
    except OSError:
        return ""


def descendants(pid=None, include_resource_tracker: bool = False):
    """Live descendants of ``pid`` (default: this process). Python's multiprocessing resource
    tracker (one per interpreter, exits with its parent) is left out unless asked for."""
    kids = _children_map()
    out, todo = [], [pid or os.getpid()]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    if include_resource_tracker:
        return out
    return [p for p in out if "multiprocessing.resource_tracker" not in cmdline(p)]


def pss_kb(pid) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
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
