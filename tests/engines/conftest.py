"""Every test here must leave no Ray process (raylet, gcs_server, workers, Ray's Python daemons)
and no Ray temporary directory (/tmp/rd-*) behind. Fixtures: the digits model and its held-out split."""
import glob
import time

import psutil
import pytest
import torch


RAY_NAMES = ("raylet", "gcs_server")
RAY_SCRIPTS = ("ray/dashboard/", "ray/_private/log_monitor.py", "ray/autoscaler/_private/monitor.py",
               "ray/_private/workers/default_worker.py", "ray/_private/runtime_env/agent")
LEFT_BEHIND_TIMEOUT_S = 10.0


def ray_processes(since: float) -> set:
    """(pid, name) of Ray's processes started after ``since`` (workers are named ray::... by Ray)."""
    found = set()
    for p in psutil.process_iter(["name", "cmdline", "create_time"]):
        try:
            name, cmd = p.info["name"] or "", " ".join(p.info["cmdline"] or [])
            if p.info["create_time"] < since:
                continue
            if name in RAY_NAMES or name.startswith("ray::") or cmd.startswith("ray::") or \
                    any(s in cmd for s in RAY_SCRIPTS):
                found.add((p.pid, name))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def ray_dirs() -> set:
    return set(glob.glob("/tmp/rd-*"))


@pytest.fixture(autouse=True)
def nothing_left_behind():
    t0, dirs = time.time() - 1.0, ray_dirs()
    yield
    deadline = time.time() + LEFT_BEHIND_TIMEOUT_S
    while ray_processes(t0) and time.time() < deadline:
        time.sleep(0.2)
    assert not ray_processes(t0), f"Ray processes left behind: {sorted(ray_processes(t0))}"
    assert not ray_dirs() - dirs, f"Ray directories left behind: {sorted(ray_dirs() - dirs)}"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The driver's PyTorch on one thread, as each Ray worker's (--engine ray: a thread per CPU it
    asks for): on a shared 2-core machine two spinning OpenMP threads slow a run many times over."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits(digits_heldout):
    return digits_heldout
