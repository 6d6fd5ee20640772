"""Process-tree accounting from /proc (Linux): used to prove no Lava process outlives a run
and to count OS processes and memory in benchmarks."""
import os


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
