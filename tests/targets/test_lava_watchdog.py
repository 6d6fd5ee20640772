"""targets.lava_cleanup.RunWatchdog (examples/lava_embed.py's --timeout): a run that does not end is
killed with its processes and shared memory, and says where it was. Checked against the process
table and /dev/shm, on a stand-in for a stuck Lava run: a forked child and one segment."""
import os
import subprocess
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[2]

STUCK = """
import multiprocessing, sys, time
from multiprocessing import shared_memory
sys.path.insert(0, sys.argv[1])
from targets.lava_cleanup import RunWatchdog

with RunWatchdog(1.0, "stuck-run") as watchdog:
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(600,))
    child.start()
    shm = shared_memory.SharedMemory(create=True, size=64)
    print(child.pid, shm.name, flush=True)
    watchdog.where = "step 3 of 7"
    time.sleep(600)  # what a recv that never returns looks like from here
"""


def test_watchdog_kills_a_stuck_run_and_its_shared_memory():
    done = subprocess.run([sys.executable, "-c", STUCK, str(REPO)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    pid, name = done.stdout.split()
    assert done.stderr.strip() == ("stuck-run: the Lava run did not finish within 1 s, stuck at step 3 of 7; "
                                   "killed its 1 processes and removed 1 shared memory segments")
    assert not os.path.exists(f"/dev/shm/{name}")
    assert not psutil.pid_exists(int(pid))


def test_watchdog_leaves_a_finished_run_alone():
    done = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1])\n"
                           "from targets.lava_cleanup import RunWatchdog\n"
                           "with RunWatchdog(60.0, 'quick') as w:\n    w.where = 'x'\nprint('after')", str(REPO)],
                          capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stdout, done.stderr) == (0, "after\n", "")
