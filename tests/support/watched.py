"""A CLI run watched through psutil until it exits (the clean-up tests: what it started, and what
of that is left)."""
import os
import subprocess
import time

import psutil


class WatchedCli:
    """``argv`` run in its own session (and, given one, with its own TMPDIR). ``children()`` lists
    the processes below it now and remembers each in ``procs``; subclasses poll what else they
    watch in ``poll()``, which ``wait()`` calls until the CLI exits."""

    def __init__(self, argv, cwd=None, tmpdir=None):
        self.tmpdir = tmpdir
        env = dict(os.environ, TMPDIR=str(tmpdir)) if tmpdir else None
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True, text=True, env=env)
        self.root = psutil.Process(self.proc.pid)
        self.procs = {}

    def children(self):
        try:
            kids = self.root.children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        for p in kids:
            self.procs.setdefault(p.pid, p)
        return kids

    def poll(self):
        self.children()

    def wait(self, timeout: float, interval: float):
        """Poll until the CLI exits (killed at ``timeout``, a bound, not a timing assertion).
        Returns (returncode, stdout, stderr)."""
        deadline = time.time() + timeout
        while self.proc.poll() is None and time.time() < deadline:
            self.poll()
            time.sleep(interval)
        if self.proc.poll() is None:
            self.proc.kill()
        out, err = self.proc.communicate()
        return self.proc.returncode, out, err
