"""`evaluate --engine ray` on a local Ray instance (2 CPUs, started and stopped by each run): the
merged result equals the in-process one; an interrupted run (Ctrl-C) leaves no process and resumes
to the same result, a worker killed mid-shard (os._exit) on the way; a SIGKILLed run leaves no
process or directory (its watchdog) and a changed shard of it is refused by --resume; failing
shards are named with their errors while the others complete; an address where nothing answers
is refused in one line. conftest.py checks that no Ray process survives."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from resformer_deploy.analysis.evaluation import RESULT_KEYS, evaluate
from resformer_deploy.engines.ray_engine import FAULT_ENV, evaluate_on_ray
from tests.cli.test_cli import assert_one_line_error, run
from tests.cli.test_data_options import digit_images
from tests.conftest import DIGITS_CKPT, REPO
from tests.engines.conftest import LEFT_BEHIND_TIMEOUT_S, ray_dirs, ray_processes

N, BATCH, SHARD, CALIB = 60, 6, 12, 16  # 5 shards of 2 batches; a small calibration (fast quantization)
TARGET = "loihi2-emu"
# everything but times and paths: what "identical" means
SAME = ("variant", "target", "target_options", "data", "preset", "samples", "limit", "batch_size", "skipped", "top1",
        "top5", "top5_k", "per_class", "torch_top1", "torch_precision", "agreement_with_torch", "target_info",
        "predictions")


@pytest.fixture(scope="module")
def in_process(ck, digits):
    return json_of(evaluate(ck, digits, TARGET, checkpoint=str(DIGITS_CKPT), limit=N, batch_size=BATCH,
                            calib_samples=CALIB))


def json_of(rep):
    from resformer_deploy.reporting.tables import json_bytes
    return json.loads(json_bytes(rep))


def assert_same(a: dict, b: dict):
    for k in SAME:
        assert a[k] == b[k], k
    calib = lambda r: {k: v for k, v in (r["calibration"] or {}).items() if k != "seconds"}  # noqa: E731
    assert calib(a) == calib(b)


def shard_files(out):
    return sorted(p.name for p in (out / "shards").glob("shard-*.json"))


def test_two_workers_give_the_in_process_result(ck, digits, in_process, tmp_path):
    rep = evaluate_on_ray(ck, digits, TARGET, checkpoint=str(DIGITS_CKPT), limit=N, batch_size=BATCH,
                          shard_size=SHARD, calib_samples=CALIB, workers=2, out_dir=str(tmp_path))
    assert tuple(rep) == RESULT_KEYS + ("engine",)
    assert_same(json_of(rep), in_process)
    e = rep["engine"]
    assert (e["shards"], e["shards_run"], e["shards_resumed"], e["workers"]) == (5, 5, 0, 2)
    assert e["cluster"]["cpus"] == 2 and e["address"] == "local"
    assert sum(w["samples"] for w in e["per_worker"]) == N
    # the setup reached each worker once, whatever the number of shards it ran
    assert all(w["setup_loads"] == 1 for w in e["per_worker"]) and sum(w["shards"] for w in e["per_worker"]) == 5
    assert e["per_node"][0]["samples"] == N and e["per_node"][0]["samples_per_second"] > 0
    assert all(v >= 0 for v in e["seconds"].values())
    assert shard_files(tmp_path) == [f"shard-0000{i}.json" for i in range(5)]


def test_interrupted_run_resumes_to_the_same_result_through_a_killed_worker(in_process, tmp_path, monkeypatch):
    """Ctrl-C while shard 4 hangs: exit 130, no Ray process left, shards 0-3 on disk. --resume runs
    shard 4 only; its worker dies on the first attempt (os._exit) and is restarted; the merged
    result is the in-process one."""
    out = tmp_path / "out"
    args = ["evaluate", str(DIGITS_CKPT), "--data", "digits", "--target", TARGET, "--limit", str(N), "--batch-size",
            str(BATCH), "--calib-samples", str(CALIB), "--engine", "ray", "--workers", "2", "--shard-size",
            str(SHARD), "--out-dir", str(out)]
    env = dict(os.environ, **{FAULT_ENV: "shard-00004:hang"})
    p = subprocess.Popen([sys.executable, "-m", "resformer_deploy.cli.main", *args], cwd=REPO, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while len(shard_files(out) if (out / "shards").is_dir() else []) < 4 and time.time() < deadline:
            assert p.poll() is None, p.communicate()
            time.sleep(0.2)
        time.sleep(0.5)  # shard 4 is hanging now
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr
    assert "interrupted: 4 of 5 shard(s) finished, kept in" in stderr and "--resume continues" in stderr
    assert shard_files(out) == [f"shard-0000{i}.json" for i in range(4)]

    monkeypatch.setenv(FAULT_ENV, "shard-00004")  # first attempt: the worker exits mid-shard
    r = run(*args, "--resume", "--json-out", str(tmp_path / "r.json"))
    assert r.exit_code == 0, r.stderr
    assert "shards: 5 of <= 12 samples, 4 done already" in r.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert_same(rep, in_process)
    e = rep["engine"]
    assert (e["shards_run"], e["shards_resumed"]) == (1, 4) and [w["restarted"] for w in e["per_worker"]] == [True]
    assert "yes" in r.output.split("restarted")[-1].split("\n")[2]  # the worker table's row
    assert [(x["shard"], x["reasons"]) for x in e["retried"]] == [("shard-00004", [
        f"worker {e['per_worker'][0]['worker']}'s process died while it ran the shard; Ray started it again and "
        f"retried the shard there"])]
    assert "retried: shard-00004: worker " in r.output


def test_failing_shards_are_named_and_the_rest_completes(ck, tmp_path, monkeypatch):
    """10 images in 5 shards of 2: shard 1 holds an undecodable image (its error, deterministic,
    not retried), shard 3's worker dies on every attempt (retried once, then given up and the
    worker replaced). Exit 1 naming both; shards 0, 2, 4 on disk. --resume without the fault:
    shard 3 runs, shard 1 fails again: exit 2 (only user errors left). A changed run is refused."""
    root, paths = digit_images(str(tmp_path), bad=3)
    out = tmp_path / "out"
    args = ["evaluate", str(DIGITS_CKPT), "--data", root, "--batch-size", "2", "--engine", "ray", "--workers", "2",
            "--shard-size", "2", "--retries", "1", "--out-dir", str(out)]
    monkeypatch.setenv(FAULT_ENV, "shard-00003:always")
    r = run(*args)
    assert r.exit_code == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert any(ln.startswith("failed: shard-00001 (samples 2..3): ") and paths[3] in ln and "cannot decode image" in ln
               for ln in lines), r.stderr
    assert any(ln.startswith("failed: shard-00003 (samples 6..7): worker died: ") for ln in lines), r.stderr
    assert lines[-1] == (f"error: 2 of 5 shard(s) failed: shard-00001, shard-00003; the other 3 are in {out} "
                         f"(--resume runs the rest)")
    assert "Traceback" not in r.stderr and "(raylet)" not in r.output, r.output  # Ray's worker-died lines
    assert shard_files(out) == ["shard-00000.json", "shard-00002.json", "shard-00004.json"]

    monkeypatch.delenv(FAULT_ENV)
    r = run(*args, "--resume")
    assert r.exit_code == 2, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: 1 of 5 shard(s) failed: shard-00001;")
    assert shard_files(out) == [f"shard-0000{i}.json" for i in (0, 2, 3, 4)]
    r = run(*args, "--resume", "--skip-bad")
    assert r.exit_code == 2 and "holds shards of another run (data differ)" in r.stderr


def cli(*args, env=None, **kw):
    return subprocess.Popen([sys.executable, "-m", "resformer_deploy.cli.main", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_sigkill_leaves_no_ray_process_nor_directory_and_resume_checks_its_shards(tmp_path):
    """SIGKILL of the CLI while shard 1 hangs: within 10 s no process of its Ray instance and no
    /tmp/rd-* (the watchdog's sweep). --resume over the shard it finished, with one sample index
    repeated (and its content hash made to match): one line naming that file, exit 2, no Ray start."""
    out = tmp_path / "out"
    args = ["evaluate", str(DIGITS_CKPT), "--data", "digits", "--limit", "24", "--batch-size", "6", "--engine", "ray",
            "--workers", "1", "--shard-size", "12", "--out-dir", str(out)]
    t0, dirs = time.time() - 1.0, ray_dirs()
    p = cli(*args, env=dict(os.environ, **{FAULT_ENV: "shard-00001:hang"}), start_new_session=True)
    try:
        deadline = time.time() + 120
        while not (out / "shards" / "shard-00000.json").exists() and time.time() < deadline:
            assert p.poll() is None, p.communicate()
            time.sleep(0.2)
        time.sleep(0.5)  # shard 1 is hanging now
        assert ray_processes(t0) and ray_dirs() - dirs, "the Ray instance was never seen"
        p.kill()
        p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    killed = time.time()
    while (ray_processes(t0) or ray_dirs() - dirs) and time.time() < killed + LEFT_BEHIND_TIMEOUT_S:
        time.sleep(0.2)
    assert not ray_processes(t0), f"Ray processes left {time.time() - killed:.1f} s after SIGKILL"
    assert not ray_dirs() - dirs, f"Ray directories left: {sorted(ray_dirs() - dirs)}"

    shard = out / "shards" / "shard-00000.json"
    rec = json.loads(shard.read_text())
    rec["predictions"][3] = dict(rec["predictions"][2])
    body = {k: v for k, v in rec.items() if k != "sha256"}
    rec["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    shard.write_text(json.dumps(rec))
    r = run(*args, "--resume")
    assert_one_line_error(r, f"--resume: {shard}: sample index 2 repeated; remove the file to run its shard again")
    assert shard_files(out) == ["shard-00000.json"] and json.loads(shard.read_text()) == rec


def test_unreachable_address_is_one_line(tmp_path):
    """Nothing listens on port 1: refused before ray.init (which would retry for minutes, printing
    Ray's log lines). The subprocess timeout is generous on purpose: not a timing assertion."""
    p = cli("evaluate", str(DIGITS_CKPT), "--data", "digits", "--limit", "4", "--engine", "ray", "--address",
            "127.0.0.1:1", "--out-dir", str(tmp_path / "out"))
    try:
        stdout, stderr = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 2, stderr
    assert stderr.strip().splitlines() == ["error: --address 127.0.0.1:1: cannot join the Ray cluster: nothing answers "
                                           "at 127.0.0.1:1 (Connection refused)"], stderr
    assert not any(w in stdout.lower() for w in ("raylet", "gcs", "rpc_client")), stdout  # no Ray log line


def test_ctrl_c_while_ray_starts_ends_at_once():
    """SIGINT while ray.init starts the local instance: exit 130 with nothing left (conftest.py).
    The 120 s bound only stops a hung run: under load (2 cores, load average 40) the exit took
    1.9-2.5 s, and any wall-time bound was flaky; that Ray's processes are killed at once rather
    than waited for is checked without a clock below."""
    before = ray_dirs()
    p = cli("evaluate", str(DIGITS_CKPT), "--data", "digits", "--limit", "12", "--batch-size", "6", "--engine", "ray",
            "--workers", "1", start_new_session=True)
    try:
        deadline = time.time() + 120
        while not ray_dirs() - before and time.time() < deadline:
            assert p.poll() is None, p.communicate()
            time.sleep(0.05)
        time.sleep(1.0)  # ray.init is starting the instance
        p.send_signal(signal.SIGINT)
        _, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted (SIGINT)", stderr


def test_processes_nobody_told_to_stop_are_killed_without_a_wait(monkeypatch):
    """After a ray.init cut short, Ray's processes were never told to stop: close() kills them
    without waiting STOP_TIMEOUT_S for them to exit first (the 10 s the test above once spent).
    A stand-in process that would never exit by itself; psutil.wait_procs watched, not replaced."""
    import psutil
    import ray
    from resformer_deploy.engines.ray_engine import RayCluster
    assert not ray.is_initialized()  # else close() would stop that instance: not the case tested
    waits, real = [], psutil.wait_procs

    def watched(procs, timeout=None, **kw):
        waits.append(([p.pid for p in procs], timeout))
        return real(procs, timeout=timeout, **kw)
    monkeypatch.setattr(psutil, "wait_procs", watched)
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        c, proc = RayCluster(None, 1, 1 << 20), psutil.Process(daemon.pid)
        c.owned, c.daemons = True, [proc]  # as __enter__ leaves them when ray.init is cut short
        c.close()
        # psutil reaped it (wait_procs sets returncode on the processes that ended)
        assert proc.returncode == -signal.SIGKILL and not proc.is_running()
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    assert waits[0] == ([daemon.pid], 0) and c.daemons == []
