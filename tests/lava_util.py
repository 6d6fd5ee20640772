"""Helpers for Lava tests: child-process accounting."""
import os


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().replace("\0", " ")
    except OSError:
        return ""


def descendants(pid=None):
    """PIDs of live (non-zombie) descendants of ``pid`` (default: this process), leaving out
    Python's multiprocessing resource tracker: one per interpreter, it exits with its parent."""
    pid = pid or os.getpid()
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                parts = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, ppid = parts[0], int(parts[1])
        if state != "Z":
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return [p for p in out if "multiprocessing.resource_tracker" not in _cmdline(p)]
