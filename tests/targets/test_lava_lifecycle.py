"""Lava runs leave nothing behind -- no process, /dev/shm segment, work directory or
multiprocessing temporary directory ($TMPDIR/pymp-*) -- however they end: success, a worker
crash, SIGINT/SIGTERM/SIGHUP/SIGKILL of the CLI, `timeout`. Real CLI runs and real signals; each
wait is bounded."""
import glob
import os
import re
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from exporters.nir_io import write_nir
from exporters.torch_to_nir import export_model
from resformer_deploy.model.checkpoint import load_checkpoint
from tests.conftest import DIGITS_CKPT
from tests.support.lava_util import descendants
from tests.support.watched import WatchedCli
from targets.base import RunRequest

CLI = str(Path(sys.executable).parent / "resformer-deploy")
CLEANUP_WAIT = 20.0


@pytest.fixture(scope="module")
def digits_nir(tmp_path_factory):
    path = tmp_path_factory.mktemp("lifecycle") / "digits.nir"
    write_nir(export_model(load_checkpoint(DIGITS_CKPT).model), path)
    return str(path)


def shm_names():
    return set(os.listdir("/dev/shm"))


def alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE  # a zombie holds nothing
    except psutil.NoSuchProcess:
        return False


class Run(WatchedCli):
    """A CLI run in its own session, watched through psutil: every process below it, and the
    Lava worker's work directory (its last argument) and the /dev/shm segments it holds open
    (Python's SharedMemory keeps its descriptor). Only those count as the run's, since other
    runs may share this machine's /dev/shm and /tmp. ``tmpdir``: the run's own TMPDIR, or None."""

    def __init__(self, argv, cwd=None, tmpdir=None):
        self.shm_before = shm_names()
        self.shm, self.workdir, self.worker = set(), None, None
        self.pymp = set()  # multiprocessing's temporary directories seen (Lava's managers' listeners)
        super().__init__(argv, cwd, tmpdir)

    def poll(self):
        for p in self.children():
            try:
                if self.worker is None and "targets.lava_worker" in " ".join(p.cmdline()):
                    self.worker, self.workdir = p, p.cmdline()[-1]
            except psutil.Error:
                pass
        if self.tmpdir:
            self.pymp |= set(glob.glob(os.path.join(glob.escape(self.tmpdir), "**", "pymp-*"), recursive=True))
        if self.worker is not None:
            try:
                self.shm |= {os.path.basename(f.path) for f in self.worker.open_files()
                             if f.path.startswith("/dev/shm/")}
            except psutil.Error:
                pass

    def wait_stepping(self, timeout=90.0):
        """Until Lava has simulated its first steps (the worker's progress file)."""
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            self.poll()
            if self.workdir and steps_done(self.workdir) > 0:
                self.poll()
                return
            time.sleep(0.1)
        raise AssertionError(f"the Lava worker never started stepping: {self.finish(5)}")

    def finish(self, timeout=60.0):
        """Wait for the CLI to exit, watching meanwhile; returns (returncode, stderr)."""
        code, _, err = self.wait(timeout, 0.05)
        return code, err

    def leftovers(self):
        procs = [p.pid for p in self.procs.values() if alive(p)]
        shm = (shm_names() - self.shm_before) & self.shm
        dirs = [self.workdir] if self.workdir and os.path.exists(self.workdir) else []
        if self.tmpdir:  # anything left in the run's own TMPDIR
            dirs += [os.path.join(self.tmpdir, n) for n in os.listdir(self.tmpdir)]
        return procs, shm, dirs

    def assert_nothing_left(self):
        assert self.worker is not None and len(self.procs) >= 20, "the Lava processes were never seen"
        assert self.shm, "the worker's shared memory was never seen"
        deadline = time.time() + CLEANUP_WAIT
        while any(self.leftovers()) and time.time() < deadline:
            time.sleep(0.2)
        procs, shm, dirs = self.leftovers()
        assert not procs, f"{len(procs)} of {len(self.procs)} processes still alive"
        assert not shm, f"{len(shm)} of {len(self.shm)} /dev/shm segments left"
        assert not dirs, f"work directory left: {dirs}"


def steps_done(workdir) -> int:
    """Steps the worker has simulated: the first number of its progress file (0 before any)."""
    try:
        with open(os.path.join(workdir, "progress")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def simulate(nir_path, samples):
    return [CLI, "simulate", nir_path, "--target", "lava-cpu", "--samples", str(samples)]


def test_success_from_a_booby_trapped_directory_leaves_nothing(digits_nir, tmp_path):
    marker = tmp_path / "trap-executed"
    trap = f"open({str(marker)!r}, 'w').write(__file__)\nraise SystemExit('trap')\n"
    (tmp_path / "json.py").write_text(trap)
    (tmp_path / "targets").mkdir()
    for name in ("__init__.py", "lava_worker.py", "lava_cleanup.py"):
        (tmp_path / "targets" / name).write_text(trap)
    run = Run(simulate(digits_nir, 5), cwd=tmp_path)
    code, err = run.finish()
    assert code == 0, err
    assert not marker.exists(), f"imported from the current directory: {marker.read_text()}"
    run.assert_nothing_left()


@pytest.mark.parametrize("sig, code, message", [
    (signal.SIGINT, 130, "interrupted"),
    (signal.SIGTERM, 128 + signal.SIGTERM, "terminated by SIGTERM"),
    (signal.SIGHUP, 128 + signal.SIGHUP, "terminated by SIGHUP"),
    (signal.SIGKILL, -signal.SIGKILL, None),  # no clean-up in the CLI: the worker's watchdog does it
])
def test_signal_to_the_cli_leaves_nothing(digits_nir, tmp_path_factory, sig, code, message):
    """With TMPDIR a directory of the test's own: the worker's work directory and multiprocessing's
    pymp-* directories (inside it) are seen during the run and nothing is left in TMPDIR after."""
    tmpdir = str(tmp_path_factory.mktemp("t"))  # short: Lava's Unix socket paths there are limited
    run = Run(simulate(digits_nir, 60), tmpdir=tmpdir)
    run.wait_stepping()
    run.proc.send_signal(sig)
    rc, err = run.finish()
    assert rc == code, err
    if message:
        assert err.strip().splitlines()[-1].startswith(f"error: {message}"), err  # after the progress lines
    assert os.path.dirname(run.workdir) == tmpdir
    assert run.pymp, "no multiprocessing temporary directory was seen"
    run.assert_nothing_left()


def test_timeout_leaves_nothing(digits_nir):
    """`timeout` (GNU coreutils) expiring while Lava steps. A fixed duration raced the start-up
    (under load the run was cut before Lava started, or, were Lava faster, ended by itself), so
    the duration is long and its expiry is delivered once Lava steps: the timer's SIGALRM, on
    which timeout sets timed_out, sends SIGTERM to the CLI and its process group and exits 124
    (coreutils src/timeout.c: settimeout, cleanup)."""
    run = Run(["timeout", "600"] + simulate(digits_nir, 60))
    run.wait_stepping()
    run.proc.send_signal(signal.SIGALRM)  # the process started is timeout's
    rc, err = run.finish()
    assert rc == 124, err  # timeout's status for "the command timed out"
    run.assert_nothing_left()


@pytest.mark.parametrize("victim, message", [
    ("worker", "Lava worker killed by SIGKILL"),
    ("lava process", r"a Lava process \(SystemProcess-\d+\) died \(SIGKILL\)"),  # Lava itself would hang
])
def test_crash_is_reported_in_one_line_and_leaves_nothing(digits_nir, victim, message):
    run = Run(simulate(digits_nir, 60))
    run.wait_stepping()
    (run.worker if victim == "worker" else run.worker.children()[-1]).send_signal(signal.SIGKILL)
    rc, err = run.finish()
    assert rc == 2 and re.fullmatch("error: Lava simulation failed: " + message, err.strip().splitlines()[-1]), err
    run.assert_nothing_left()


def test_lava_exception_is_reported_as_a_bug_with_its_traceback(monkeypatch):
    """A Python exception in a Lava process model is a bug (issue 26): an InternalError naming the
    exception's type, in one line, with the process's traceback carried along for --debug."""
    from resformer_deploy.data.digits import load_digits_split
    from resformer_deploy.errors import DeployError, InternalError
    from targets import get_target
    target = get_target("lava-cpu")
    g = export_model(load_checkpoint(DIGITS_CKPT).model)
    plan = target.plan(g, "fused")
    n = next(iter(plan.lif))
    # set after LifParams checked itself, so the bad value reaches Lava and fails inside its LIFReset
    monkeypatch.setattr(plan.lif[n], "vth", "not a number")
    import targets.lava_cpu as lava_cpu
    workdirs = []
    monkeypatch.setattr(lava_cpu, "new_workdir", lambda f=lava_cpu.new_workdir: workdirs.append(f()) or workdirs[-1])
    before = set(descendants())
    with pytest.raises(InternalError) as e:
        target.run(RunRequest.of(g, load_digits_split().x_test[:2], 4))
    msg, err = str(e.value), e.value
    assert not isinstance(err, DeployError) and msg.endswith("(in the Lava worker)") and "\n" not in msg, msg
    assert "ufunc" in msg and "Error" in err.error_type, (err.error_type, msg)  # numpy's, comparing with a str
    assert "lava/proc/lif/models.py" in err.remote_traceback, err.remote_traceback
    deadline = time.time() + CLEANUP_WAIT
    while set(descendants()) - before and time.time() < deadline:
        time.sleep(0.2)
    assert set(descendants()) <= before
    assert workdirs and not any(os.path.exists(d) for d in workdirs)
