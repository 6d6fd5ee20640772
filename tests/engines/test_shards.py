"""engines/shards.py without Ray: the shard plan, the run's identity on disk, --resume's checks,
the merge from stored records, and the CLI's refusals of engine options (one line, exit 2)."""
import json
import subprocess
import sys

import pytest

from resformer_deploy.analysis.evaluation import evaluate, prepare_evaluation, evaluate_range
from resformer_deploy.engines.shards import Shard, ShardStore, merge_shards, plan_shards, run_identity, shard_record
from resformer_deploy.errors import DeployError
from tests.cli.test_cli import assert_one_line_error, run
from tests.conftest import DIGITS_CKPT


def identity(ck, digits, **kw):
    args = dict(checkpoint=str(DIGITS_CKPT), ck=ck, target="torch", target_options={}, torch_precision="float32",
                data=digits, samples=30, limit=30, batch_size=5, shard_size=10)
    args.update(kw)
    return run_identity(**args)


def test_plan_is_deterministic_and_batch_aligned():
    assert plan_shards(25, 10, 5) == [Shard(0, 0, 10), Shard(1, 10, 20), Shard(2, 20, 25)]
    assert plan_shards(25, 10, 5)[2].describe() == "shard-00002 (samples 20..24)"
    assert plan_shards(0, 10, 5) == []
    with pytest.raises(DeployError, match=r"--shard-size 12 is not a multiple of --batch-size 5: .* use e.g. 10"):
        plan_shards(25, 12, 5)


def test_shards_merge_to_the_in_process_result_in_any_order(ck, digits, tmp_path):
    """Shards evaluated separately, stored, read back in reverse order: the in-process record."""
    whole = evaluate(ck, digits, "torch", limit=30, batch_size=5, workers=0)
    setup, _, _, rest, _ = prepare_evaluation(ck, digits, "torch", limit=30, batch_size=5, workers=0)
    rest.close()
    shards = plan_shards(30, 10, 5)
    store = ShardStore(tmp_path, identity(ck, digits), shards)
    assert store.open(resume=False) == {}
    for s in reversed(shards):
        store.write(s, shard_record(store.key, s, evaluate_range(setup, ck.model, digits, s.start, s.stop), {}))
    done = ShardStore(tmp_path, identity(ck, digits), shards).open(resume=True)
    assert sorted(done) == [0, 1, 2]
    tally, skipped, info = merge_shards(setup, list(done.values())[::-1])
    assert tally.predictions == whole["predictions"] and skipped == [] and info == whole["target_info"]
    assert (tally.n, tally.top1, tally.topk) == (30, round(whole["top1"] * 30), round(whole["top5"] * 30))


def test_resume_takes_only_shards_of_the_same_run(ck, digits, tmp_path):
    shards = plan_shards(30, 10, 5)
    store = ShardStore(tmp_path, identity(ck, digits), shards)
    store.open(resume=False)
    rec = {"predictions": [{"index": i} for i in range(10)], "skipped": [], "info": {}, "seconds": 0.0,
           "load_seconds": 0.0}
    store.write(shards[0], dict(rec, run=store.key, shard=shards[0].to_json()))
    store.write(shards[1], dict(rec, run=store.key, shard=shards[1].to_json(), predictions=rec["predictions"][:4]))
    store.write(shards[2], dict(rec, run="another", shard=shards[2].to_json()))
    with pytest.raises(DeployError, match=r"holds 3 finished shard\(s\) of a run; pass --resume"):
        ShardStore(tmp_path, identity(ck, digits), shards).open(resume=False)
    again = ShardStore(tmp_path, identity(ck, digits), shards)
    assert sorted(again.open(resume=True)) == [0]
    assert again.ignored == ["shard-00001.json: incomplete", "shard-00002.json: of another run"]
    with pytest.raises(DeployError, match=r"--resume: --out-dir .* holds shards of another run \(target, "
                                          r"--shard-size differ\); choose another directory"):
        ShardStore(tmp_path, identity(ck, digits, target="reference", shard_size=5), plan_shards(30, 5, 5)).open(True)
    (tmp_path / "run.json").unlink()
    with pytest.raises(DeployError, match="shard files without run.json"):
        ShardStore(tmp_path, identity(ck, digits), shards).open(resume=True)


def test_engine_options_are_checked_before_any_work(tmp_path):
    ev = lambda *a: run("evaluate", str(DIGITS_CKPT), "--data", "digits", *a)  # noqa: E731
    assert_one_line_error(ev("--out-dir", str(tmp_path), "--resume", "--address", "x"),
                          "--address, --out-dir, --resume: only with --engine ray")
    assert_one_line_error(ev("--retries", "1"), "--retries: only with --engine ray")
    assert_one_line_error(ev("--workers", "65"), "--workers 65: at most 64 decoding threads in process")
    assert_one_line_error(ev("--engine", "ray", "--resume"), "--resume: needs --out-dir")
    assert_one_line_error(ev("--engine", "ray", "--workers", "0"), "--engine ray needs at least one worker")
    assert_one_line_error(ev("--engine", "ray", "--shard-size", "10", "--batch-size", "4"),
                          "--shard-size 10 is not a multiple of --batch-size 4")
    f = tmp_path / "file"
    f.write_text("")
    assert_one_line_error(ev("--engine", "ray", "--out-dir", str(f)), "--out-dir", "is a file")


def test_in_process_engine_does_not_import_ray(tmp_path):
    out = tmp_path / "r.json"
    code = ("import atexit, sys; atexit.register(lambda: print('ray imported:', 'ray' in sys.modules)); "
            "from resformer_deploy.cli.main import main; sys.argv = ['resformer-deploy'] + sys.argv[1:]; main()")
    p = subprocess.run([sys.executable, "-c", code, "evaluate", str(DIGITS_CKPT), "--data", "digits", "--limit", "4",
                        "--json-out", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "ray imported: False" in p.stdout and json.loads(out.read_text())["samples"] == 4
