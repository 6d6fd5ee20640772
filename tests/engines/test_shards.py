"""engines/shards.py without Ray: the shard plan, the run's identity on disk, --resume's checks,
the merge from stored records, and the CLI's refusals of engine options (one line, exit 2)."""
import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from resformer_deploy.analysis.evaluation import evaluate, prepare_evaluation, evaluate_range
from resformer_deploy.engines.shards import RECORD_KEYS, Shard, ShardStore, merge_shards, plan_shards, run_identity, \
    shard_record
from resformer_deploy.errors import DeployError
from tests.cli.test_cli import assert_one_line_error, run
from tests.conftest import DIGITS_CKPT


def identity(ck, digits, **kw):
    args = dict(checkpoint=str(DIGITS_CKPT), ck=ck, target="torch", target_options={}, torch_precision="float32",
                data=digits, samples=30, limit=30, batch_size=5, shard_size=10)
    args.update(kw)
    return run_identity(**args)


def store_of(tmp, ident, shards):
    return ShardStore(tmp, ident, shards, classes=10, top_k=5)  # the digits classifier


def rehash(rec: dict) -> dict:
    """What a forger would do: a correct content hash for the edited record (re-computed here
    independently: SHA-256 of the sorted compact JSON without the hash)."""
    body = {k: v for k, v in rec.items() if k != "sha256"}
    rec["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return rec


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
    store = store_of(tmp_path, identity(ck, digits), shards)
    assert store.open(resume=False) == {}
    for s in reversed(shards):
        store.write(s, shard_record(store.key, s, evaluate_range(setup, ck.model, digits, s.start, s.stop), {}))
    stored = json.loads((tmp_path / "shards" / "shard-00001.json").read_text())
    assert tuple(stored) == RECORD_KEYS and rehash(dict(stored))["sha256"] == stored["sha256"]
    done = store_of(tmp_path, identity(ck, digits), shards).open(resume=True)
    assert sorted(done) == [0, 1, 2]
    tally, skipped, info = merge_shards(setup, list(done.values())[::-1])
    assert tally.predictions == whole["predictions"] and skipped == [] and info == whole["target_info"]
    assert (tally.n, tally.top1, tally.topk) == (30, round(whole["top1"] * 30), round(whole["top5"] * 30))


@pytest.fixture(scope="module")
def stored_run(ck, digits, tmp_path_factory):
    """A finished run of 30 samples in 3 shards of 10 (torch), as --out-dir holds it."""
    out = tmp_path_factory.mktemp("stored")
    setup, _, _, rest, _ = prepare_evaluation(ck, digits, "torch", limit=30, batch_size=5, workers=0)
    rest.close()
    shards = plan_shards(30, 10, 5)
    store = store_of(out, identity(ck, digits), shards)
    store.open(resume=False)
    for s in shards:
        store.write(s, shard_record(store.key, s, evaluate_range(setup, ck.model, digits, s.start, s.stop), {}))
    return out, shards


def _edit(field, value):
    def edit(rec, _shard0):
        rec["predictions"][1][field] = value
        return rehash(rec)
    return edit


def _duplicate_index(rec, _shard0):
    rec["predictions"][2] = dict(rec["predictions"][1])
    return rehash(rec)


def _drop_one(rec, _shard0):
    del rec["predictions"][-1]
    return rehash(rec)


# (what is done to shards/shard-00001.json (samples 10..19), the reason --resume gives)
TAMPERED = {
    "edited prediction": (lambda rec, _: dict(rec, predictions=[dict(rec["predictions"][0], prediction=(
        rec["predictions"][0]["prediction"] + 1) % 10)] + rec["predictions"][1:]),
        "content does not match its SHA-256 (changed after it was written)"),
    "bad hash": (lambda rec, _: dict(rec, sha256="0" * 64),
                 "content does not match its SHA-256 (changed after it was written)"),
    "no hash": (lambda rec, _: {k: v for k, v in rec.items() if k != "sha256"}, "not a shard record (missing sha256)"),
    "unknown key": (lambda rec, _: rehash(dict(rec, extra=1)), "not a shard record (unknown extra)"),
    "duplicated index": (_duplicate_index, "sample index 11 repeated"),
    "index out of range": (_edit("index", 20), "sample index 20 outside the shard's samples 10..19"),
    "null label": (_edit("label", None), "sample 11: label null is not a class (0..9)"),
    "huge label": (_edit("label", 2 ** 62), f"sample 11: label {2 ** 62} is not a class (0..9)"),
    "negative prediction": (_edit("prediction", -1), "sample 11: prediction -1 is not a class (0..9)"),
    "boolean index": (_edit("index", True), "sample index true outside the shard's samples 10..19"),
    "null top5": (_edit("top5", None), "sample 11: top5 null is not 5 distinct classes"),
    "null seconds": (lambda rec, _: rehash(dict(rec, seconds=None)), "seconds null is not a duration"),
    "null info": (lambda rec, _: rehash(dict(rec, info=None)), "info is null, not an object"),
    "a sample missing": (_drop_one, "9 predictions and 0 skipped samples for the shard's 10 samples"),
    "copy of shard 0": (lambda rec, shard0: shard0,
                        'range {"index": 0, "start": 0, "stop": 10} is not shard-00001 (samples 10..19) of this '
                        "run's plan"),
    "a list": (lambda rec, _: [rec], "not a shard record (a JSON array)"),
    "another run": (lambda rec, _: rehash(dict(rec, run="0123456789abcdef")), "of another run (key "),
    "not JSON": (lambda rec, _: b"{\"format\": 1,", "unreadable ("),
    "NaN": (lambda rec, _: json.dumps(dict(rec, seconds=float("nan"))).encode(),
            "holds a non-finite number (NaN or Infinity)"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_resume_refuses_a_changed_shard_naming_its_file(ck, digits, stored_run, tmp_path, case):
    """Every stored record is checked in full; the first bad one refuses the resume in one line
    naming the file, and nothing on disk changes (the file is not re-run over)."""
    src, shards = stored_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    target = out / "shards" / "shard-00001.json"
    edit, reason = TAMPERED[case]
    new = edit(json.loads(target.read_text()), json.loads((out / "shards" / "shard-00000.json").read_text()))
    target.write_bytes(new if isinstance(new, bytes) else json.dumps(new, indent=2).encode())
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(DeployError) as e:
        store_of(out, identity(ck, digits), shards).open(resume=True)
    msg = str(e.value)
    assert msg.startswith(f"--resume: {target}: {reason}") and "\n" not in msg, msg
    assert msg.endswith("; remove the file to run its shard again, or choose another --out-dir"), msg
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    target.unlink()  # as the message says: the shard is run again, the others are taken
    assert sorted(store_of(out, identity(ck, digits), shards).open(resume=True)) == [0, 2]


def test_resume_refuses_a_shard_that_is_no_regular_file(ck, digits, stored_run, tmp_path):
    import os
    src, shards = stored_run
    out = tmp_path / "out"
    shutil.copytree(src, out)
    target = out / "shards" / "shard-00002.json"
    target.unlink()
    os.mkfifo(target)  # reading it would block for good
    with pytest.raises(DeployError, match=rf"^--resume: {target}: not a regular file; remove the file"):
        store_of(out, identity(ck, digits), shards).open(resume=True)
    target.unlink()
    (out / "shards" / "shard-00007.json").write_bytes((out / "shards" / "shard-00001.json").read_bytes())
    with pytest.raises(DeployError, match=r"shard-00007.json: not a shard of this run's plan \(3 shards\)"):
        store_of(out, identity(ck, digits), shards).open(resume=True)


def test_resume_takes_only_shards_of_the_same_run(ck, digits, stored_run, tmp_path):
    src, shards = stored_run
    shutil.copytree(src, tmp_path, dirs_exist_ok=True)
    with pytest.raises(DeployError, match=r"holds 3 finished shard\(s\) of a run; pass --resume"):
        store_of(tmp_path, identity(ck, digits), shards).open(resume=False)
    assert sorted(store_of(tmp_path, identity(ck, digits), shards).open(resume=True)) == [0, 1, 2]
    with pytest.raises(DeployError, match=r"--resume: --out-dir .* holds shards of another run \(target, "
                                          r"--shard-size differ\); choose another directory"):
        store_of(tmp_path, identity(ck, digits, target="reference", shard_size=5), plan_shards(30, 5, 5)).open(True)
    (tmp_path / "run.json").unlink()
    with pytest.raises(DeployError, match="shard files without run.json"):
        store_of(tmp_path, identity(ck, digits), shards).open(resume=True)


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
