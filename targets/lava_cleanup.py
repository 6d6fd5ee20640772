"""Clean-up of a Lava run: its shared memory, its process group, its work directory.

lava-nc 0.10 allocates one POSIX shared memory segment per channel through
``multiprocessing.managers.SharedMemoryManager`` (lava/magma/runtime/message_infrastructure/
shared_memory_manager.py, used by compiler/channels/pypychannel.py). Those segments are unlinked
only by the manager's server process when ``Runtime.stop`` shuts it down (CPython
Lib/multiprocessing/managers.py, ``SharedMemoryServer.shutdown``), and that unlink loop stops at
the first segment someone else already removed. Any other end of a run -- the process group
SIGKILLed on Ctrl-C, SIGTERM or a stall, the worker killed, the caller gone -- kills the server
first and leaves every segment in /dev/shm.

So the worker logs the name of every segment it creates (``track_shared_memory``) and whoever
cleans up unlinks what the log lists (``unlink_logged``): the worker when it ends, the
supervisor after killing the group, the worker's orphan watchdog.
"""
import os
import shutil
import signal
import sys
import tempfile
import threading

import psutil

SHM_LOG = "shm.names"
_create_lock = threading.Lock()


def track_shared_memory(workdir: str) -> None:
    """Append the name of every SharedMemory segment created from now on in this process (and
    in its forked children, which inherit the patch and the O_APPEND descriptor) to
    WORKDIR/shm.names, one line per segment (a single small O_APPEND write is atomic).

    Python's resource tracker is told nothing about these segments: the log owns them. Left in
    charge, the tracker warns of "leaked shared_memory objects" and unlinks them itself when it
    outlives the processes, racing the manager's own unlink loop above (Python 3.13 added
    SharedMemory(track=False) for this, gh-82300)."""
    from multiprocessing import resource_tracker, shared_memory

    fd = os.open(os.path.join(workdir, SHM_LOG), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    init = shared_memory.SharedMemory.__init__

    def logged_init(self, name=None, create=False, size=0):
        with _create_lock:  # held for good by freeze_shared_memory()
            init(self, name, create, size)
            if create:
                os.write(fd, (self.name + "\n").encode())

    shared_memory.SharedMemory.__init__ = logged_init
    for attr in ("register", "unregister"):
        orig = getattr(resource_tracker, attr)

        def skip_shm(name, rtype, _orig=orig):
            if rtype != "shared_memory":
                _orig(name, rtype)
        setattr(resource_tracker, attr, skip_shm)


def freeze_shared_memory() -> None:
    """No segment is created in this process any more (a creator blocks), so the log is final."""
    _create_lock.acquire(timeout=5)  # waits for a creation in progress to be logged


def unlink_logged(workdir: str) -> int:
    """Unlink every segment listed in WORKDIR/shm.names that still exists; returns how many."""
    try:
        with open(os.path.join(workdir, SHM_LOG)) as f:
            names = set(f.read().split())
    except OSError:
        return 0
    import _posixshmem  # what SharedMemory.unlink calls (CPython Lib/multiprocessing/shared_memory.py)
    n = 0
    for name in names:
        if "/" in name:  # only plain segment names, never a path
            continue
        try:
            _posixshmem.shm_unlink("/" + name)
            n += 1
        except FileNotFoundError:
            pass
    return n


def kill_group_but_me() -> None:
    """SIGKILL every other process of this process group (this worker's session: Lava's
    processes, its manager server, the resource tracker); repeated until none is left, since
    Lava may be forking while we look."""
    me, group = os.getpid(), os.getpgid(0)
    while True:
        found = False
        for p in psutil.process_iter():
            try:
                if p.pid != me and os.getpgid(p.pid) == group and p.status() != psutil.STATUS_ZOMBIE:
                    p.kill()
                    found = True
            except (psutil.Error, ProcessLookupError):
                pass
        if not found:
            return


def kill_own_group() -> None:
    """Last step of an orphaned worker: SIGKILL the whole group, this process included."""
    os.killpg(0, signal.SIGKILL)


class RunWatchdog:
    """For a Lava run driven from the caller's own process (examples/lava_embed.py): if the `with`
    block has not finished after `timeout` seconds, kill every child process (Lava's processes, its
    shared-memory manager), unlink the segments they created, print one line naming `self.where`
    and end this process with status 3.

    Why not ``net.stop()``: a stuck run cannot be stopped through Lava, its runtime waits for
    replies from the stuck processes (Runtime.stop in lava/magma/runtime/runtime.py)."""

    EXIT = 3

    def __init__(self, timeout: float, name: str):
        self.timeout, self.name, self.where = timeout, name, "start-up"
        self._workdir = ""
        self._timer: "threading.Timer | None" = None

    def __enter__(self) -> "RunWatchdog":
        self._workdir = tempfile.mkdtemp(prefix="lava_watchdog_")
        track_shared_memory(self._workdir)
        self._timer = threading.Timer(self.timeout, self._expired)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
        unlink_logged(self._workdir)  # normally none left: Runtime.stop's manager unlinked them
        shutil.rmtree(self._workdir, ignore_errors=True)

    def _expired(self) -> None:
        children = psutil.Process().children(recursive=True)
        for p in children:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(children, timeout=10)
        n = unlink_logged(self._workdir)
        shutil.rmtree(self._workdir, ignore_errors=True)
        print(f"{self.name}: the Lava run did not finish within {self.timeout:g} s, stuck at {self.where}; "
              f"killed its {len(children)} processes and removed {n} shared memory segments", file=sys.stderr,
              flush=True)
        os._exit(self.EXIT)
