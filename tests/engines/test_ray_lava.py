"""Lava targets on Ray: `evaluate --engine ray --workers 2 --target lava-cpu|loihi2-sim` on digits
(a local Ray instance): the result equals the in-process evaluation's (the CLI, in process); each
Ray worker runs its own Lava runtime (its own targets.lava_worker process); afterwards no process
of the run is alive and no /dev/shm segment that any of them held open is left. A few samples
only: a Lava run starts ~70 processes."""
import json
import os
import shutil
import sys
import tempfile
import time

import psutil
import pytest

from tests.cli.test_cli import run as run_cli
from tests.conftest import DIGITS_CKPT, REPO
from tests.engines.test_ray_engine import SAME
from tests.support.watched import WatchedCli

CLEANUP_WAIT_S = 20.0
RUN_TIMEOUT_S = 400  # a bound for a hung run, not a timing assertion
SHM = "/dev/shm/"


def cli_argv(*args):
    return [sys.executable, "-m", "resformer_deploy.cli.main", *args]


class Watched(WatchedCli):
    """A CLI run in its own session and TMPDIR, polled until it exits: every process below it
    (the raylet, the Ray workers, their Lava workers and Lava's processes) and the /dev/shm
    files they hold open. Only those count as the run's: other runs share this machine."""

    def __init__(self, argv, tmpdir):
        self.shm, self.lava_workers = set(), {}
        super().__init__(argv, REPO, tmpdir)

    def poll(self):
        for p in self.children():
            try:
                if p.pid not in self.lava_workers and "targets.lava_worker" in " ".join(p.cmdline()):
                    self.lava_workers[p.pid] = p.ppid()  # the Ray worker that started it
                self.shm |= {f.path for f in p.open_files() if f.path.startswith(SHM)}
            except psutil.Error:
                pass

    def finish(self):
        """Poll until the CLI exits (or the bound); returns (returncode, stdout, stderr)."""
        return self.wait(RUN_TIMEOUT_S, 0.1)

    def leftovers(self):
        procs = []
        for p in self.procs.values():
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    procs.append(p.pid)
            except psutil.NoSuchProcess:
                pass
        return procs, sorted(p for p in self.shm if os.path.exists(p)), sorted(os.listdir(self.tmpdir))


@pytest.mark.parametrize("target", ["lava-cpu", "loihi2-sim"])
def test_lava_target_on_two_ray_workers_is_the_in_process_result_and_leaves_nothing(target, tmp_path):
    in_process_then_on_ray(["evaluate", str(DIGITS_CKPT), "--data", "digits", "--limit", "4", "--batch-size", "2",
                            "--calib-samples", "16", "--target", target], tmp_path, check)


def in_process_then_on_ray(args, tmp_path, check_run):
    """`args` run in this process (in_process.json), then with --engine ray on 2 workers in a
    watched subprocess (ray.json); ``check_run(run, rc, out, err, tmp_path)`` checks the Ray run."""
    # the reference in this process (a CLI subprocess would import torch and Lava once more; the
    # Lava run itself is in the target's worker process either way)
    ref = run_cli(*args, "--json-out", str(tmp_path / "in_process.json"))
    assert ref.exit_code == 0, ref.stderr
    # short: multiprocessing's Unix sockets (Lava's) live under it, and their paths are limited to 107 bytes
    tmpdir = tempfile.mkdtemp(prefix="rdl-", dir="/tmp")
    try:
        run = Watched(cli_argv(*args, "--engine", "ray", "--workers", "2", "--shard-size", "2", "--json-out",
                               str(tmp_path / "ray.json")), tmpdir)
        rc, out, err = run.finish()
        check_run(run, rc, out, err, tmp_path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def check(run, rc, out, err, tmp_path):
    assert rc == 0, err
    assert "ray: local instance, 1 node(s), 4 CPUs; 2 worker(s) of 2 CPU(s)" in out
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("in_process.json", "ray.json"))
    untimed = lambda info: {k: v for k, v in info.items() if not k.endswith("_s")}  # noqa: E731 (Lava's timings)
    for k in SAME:
        assert (untimed(a[k]) == untimed(b[k])) if k == "target_info" else a[k] == b[k], k
    assert b["target_info"]["processes"] > 0 and b["target_info"]["steps"] > 0
    assert b["samples"] == 4 and b["agreement_with_torch"] is not None
    e = b["engine"]
    assert (e["workers"], e["shards_run"]) == (2, 2) and sorted(w["shards"] for w in e["per_worker"]) == [1, 1]
    # one Lava runtime per Ray worker: a Lava worker process under each of the two Ray workers
    ray_workers = {w["pid"] for w in e["per_worker"]}
    # (Lava's own processes are forked from it and show its command line: not counted)
    runtimes = {pid: parent for pid, parent in run.lava_workers.items() if parent not in run.lava_workers}
    assert len(runtimes) == 2 and set(runtimes.values()) == ray_workers, (runtimes, ray_workers)
    assert run.shm, "no /dev/shm segment of the run was ever seen"
    assert len(run.procs) >= 40, "Lava's processes were never seen"
    deadline = time.time() + CLEANUP_WAIT_S
    while any(run.leftovers()) and time.time() < deadline:
        time.sleep(0.2)
    procs, shm, tmp = run.leftovers()
    assert not procs, f"{len(procs)} of the run's {len(run.procs)} processes alive"
    assert not shm, f"{len(shm)} of the {len(run.shm)} /dev/shm segments left: {shm[:5]}"
    assert not tmp, f"left in the run's TMPDIR: {tmp}"


def test_merged_lava_processes_on_two_ray_workers_are_the_in_process_result(tmp_path):
    """--lava-processes merged reaches each Ray worker's Lava run: the same result as in process,
    recorded as merged, no Lava shared memory (Lava's own runtime always allocates it), nothing left."""
    in_process_then_on_ray(["evaluate", str(DIGITS_CKPT), "--data", "digits", "--limit", "4", "--batch-size", "2",
                            "--target", "lava-cpu", "--lava-processes", "merged"], tmp_path, check_merged)


def check_merged(run, rc, out, err, tmp_path):
    assert rc == 0, err
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("in_process.json", "ray.json"))
    untimed = lambda info: {k: v for k, v in info.items() if not k.endswith("_s")}  # noqa: E731
    for k in SAME:
        assert (untimed(a[k]) == untimed(b[k])) if k == "target_info" else a[k] == b[k], k
    assert b["target_options"] == {"dssa": "fused", "merge": True} and b["target_info"]["shm_bytes"] == 0
    assert [p["prediction"] for p in b["predictions"]] == [p["torch_prediction"] for p in b["predictions"]]
    assert sorted(w["shards"] for w in b["engine"]["per_worker"]) == [1, 1]
    assert not run.shm, f"Lava shared memory in a merged run: {sorted(run.shm)[:5]}"
    deadline = time.time() + CLEANUP_WAIT_S
    while any(run.leftovers()) and time.time() < deadline:
        time.sleep(0.2)
    procs, shm, tmp = run.leftovers()
    assert not procs and not tmp, (procs, tmp)
