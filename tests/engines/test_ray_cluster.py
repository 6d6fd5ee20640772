"""`evaluate --engine ray --address` on a Ray cluster of two nodes on this machine, started as a
user would (`ray start --head`, then `ray start --address` for the second node), each node with
its own temporary directory, ports and one CPU, so that each node holds one worker: the merged
result equals the in-process one and the shards ran on both nodes (the raylet of each shard, as
recorded in the result, is one of the two started here). Node loss: the second node's raylet and
every process of it are SIGKILLed while its worker runs a shard; the run completes with the
in-process result, that shard re-run on the head node and named, with the reason, in the summary
and the JSON. Every process of both nodes is killed, and their directories removed, whatever
happens (conftest.py checks that no Ray process is left)."""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from resformer_deploy.analysis.evaluation import evaluate
from resformer_deploy.engines.ray_engine import FAULT_ENV
from resformer_deploy.engines.ray_watchdog import MARKER, marked, sweep
from tests.conftest import DIGITS_CKPT, REPO
from tests.engines.test_ray_engine import BATCH, CALIB, N, SHARD, TARGET, assert_same, cli, json_of, shard_files

RAY = str(Path(sys.executable).parent / "ray")
# the GCS declares a node dead after 3 failed health checks 0.5 s apart (Ray's default: 5 of 3 s,
# i.e. ~15 s): the node-loss test then waits ~2 s, not ~15 s, for Ray to notice
FAST_HEALTH_CHECKS = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "3",
                      "RAY_health_check_timeout_ms": "1000"}
# the same authentication mode on every node and the driver, whatever ~/.ray holds: Ray 2.60 may
# write ~/.ray/auth_token (any local ray.init on this machine), and a head that picks it up refuses
# a node or driver that does not (InvalidAuthToken)
AUTH = {"RAY_AUTH_MODE": "disabled"}
START_TIMEOUT_S = 120
RUN_TIMEOUT_S = 300  # a bound for a hung run, not a timing assertion


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """Nodes started with `ray start`, each marked by its temporary directory in its processes'
    environment (engines/ray_watchdog.MARKER), so that each node's processes can be found and
    killed: a node's raylet, workers, agents and log monitor, and on the head the GCS too."""

    def __init__(self):
        self.nodes = []  # (temp dir, node manager port)
        self.address = None

    def start_node(self, faults: str = "") -> str:
        temp = tempfile.mkdtemp(prefix="rdt-", dir="/tmp")  # short: Ray's socket paths live under it
        self.nodes.append((temp, free_port()))
        env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
        env.update(RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO), **FAST_HEALTH_CHECKS, **AUTH, **{MARKER: temp})
        if faults:
            env[FAULT_ENV] = faults  # this node's workers inherit it (the raylet starts them)
        args = [RAY, "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--temp-dir", temp,
                "--disable-usage-stats", "--object-store-memory", str(200 << 20),
                "--node-manager-port", str(self.nodes[-1][1]), "--object-manager-port", str(free_port()),
                "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
                "--metrics-export-port", str(free_port()), "--runtime-env-agent-port", str(free_port()),
                "--min-worker-port", "0", "--max-worker-port", "0"]  # workers: ports the OS picks
        if self.address is None:
            port = free_port()
            args += ["--head", "--port", str(port), "--include-dashboard", "false"]
            self.address = f"127.0.0.1:{port}"
        else:
            args += ["--address", self.address]
        r = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, timeout=START_TIMEOUT_S)
        assert r.returncode == 0, r.stderr[-3000:]
        return temp

    def kill_node(self, temp: str) -> int:
        """SIGKILL every process of the node (and their children): a node lost at once."""
        assert any(p.name() == "raylet" for p in marked(temp)), "the node's raylet was never seen"
        return sweep(temp, {})

    def stop(self):
        for temp, _ in reversed(self.nodes):  # the head last
            sweep(temp, {})
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def cluster():
    c = Cluster()
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def in_process(ck, digits):
    return json_of(evaluate(ck, digits, TARGET, checkpoint=str(DIGITS_CKPT), limit=N, batch_size=BATCH,
                            calib_samples=CALIB))


def evaluate_args(cluster, out):
    return ["evaluate", str(DIGITS_CKPT), "--data", "digits", "--target", TARGET, "--limit", str(N), "--batch-size",
            str(BATCH), "--calib-samples", str(CALIB), "--engine", "ray", "--address", cluster.address,
            "--shard-size", str(SHARD), "--out-dir", str(out / "run"), "--json-out", str(out / "r.json")]


def driver_env():
    return dict({k: v for k, v in os.environ.items() if k != FAULT_ENV}, **AUTH)


def finish(p, timeout=RUN_TIMEOUT_S):
    try:
        return p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def test_two_nodes_give_the_in_process_result_and_both_run_shards(cluster, in_process, tmp_path):
    cluster.start_node()
    cluster.start_node()
    p = cli(*evaluate_args(cluster, tmp_path), env=driver_env())
    stdout, stderr = finish(p)
    assert p.returncode == 0, stderr
    assert f"ray: {cluster.address}, 2 node(s), 2 CPUs; 2 worker(s) of 1 CPU(s)" in stdout
    rep = json.loads((tmp_path / "r.json").read_text())
    assert_same(rep, in_process)
    e = rep["engine"]
    assert [s["shard"] for s in e["per_shard"]] == [f"shard-0000{i}" for i in range(5)]
    # each shard's raylet is one of the two started here, and each ran at least one shard
    ports = sorted(int(s["raylet"].rsplit(":", 1)[1]) for s in e["per_shard"])
    assert set(ports) == {port for _, port in cluster.nodes}, e["per_shard"]
    assert len({s["node_id"] for s in e["per_shard"]}) == 2 and len(e["per_node"]) == 2
    assert sum(n["samples"] for n in e["per_node"]) == N
    assert e["retried"] == [] and all(s["retried"] == [] for s in e["per_shard"])


def test_a_node_lost_mid_run_its_shard_reruns_on_the_other(cluster, in_process, tmp_path):
    """The second node's workers hang in any shard (fault injected through its own environment);
    once the head's worker has finished the 4 other shards, the second node is SIGKILLed."""
    cluster.start_node()
    lost = cluster.start_node(faults="*:hang")
    head_port, lost_port = cluster.nodes[0][1], cluster.nodes[1][1]
    p = cli(*evaluate_args(cluster, tmp_path), env=driver_env())
    try:
        deadline = time.time() + RUN_TIMEOUT_S
        while len(shard_files(tmp_path / "run") if (tmp_path / "run" / "shards").is_dir() else []) < 4:
            assert p.poll() is None and time.time() < deadline, finish(p, 5)
            time.sleep(0.2)
        hung = sorted({f"shard-0000{i}.json" for i in range(5)} - set(shard_files(tmp_path / "run")))[0][:-5]
        assert cluster.kill_node(lost) > 0
    except BaseException:
        p.kill()
        p.communicate()
        raise
    stdout, stderr = finish(p)
    assert p.returncode == 0, stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert_same(rep, in_process)
    e = rep["engine"]
    assert [r["shard"] for r in e["retried"]] == [hung], e["retried"]
    (reason,) = e["retried"][0]["reasons"]
    assert reason.startswith("node ") and f":{lost_port}) was lost while worker" in reason, reason
    assert e["retried"][0]["completed_on"]["raylet"].endswith(f":{head_port}")
    by_shard = {s["shard"]: s for s in e["per_shard"]}
    assert all(s["raylet"].endswith(f":{head_port}") for s in by_shard.values())  # nothing finished on the lost node
    assert by_shard[hung]["retried"] == [reason] and all(s["retried"] == [] for k, s in by_shard.items() if k != hung)
    assert f"retried: {hung}: {reason}; completed on node" in stdout
    assert f"{hung}: {reason}; it runs again on another worker" in stderr
