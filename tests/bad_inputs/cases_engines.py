"""Issue 24, Ray engine: ``--resume`` over a stored run whose shard was changed (an edited
prediction, a repeated sample index, a null field, a wrong content hash) and an ``--address``
where nothing answers. Each is refused before Ray starts, in one line naming the shard file or
the address, and nothing in the run's directory changes.

The stored run is made by the CLI itself (``evaluate --engine ray --out-dir``) with the shards
evaluated in this process instead of on Ray (``ray_engine._run_on_ray`` replaced for the setup):
the same manifest and shard files, without a Ray start.
"""
import hashlib
import json
from contextlib import contextmanager

from click.testing import CliRunner

from tests.bad_inputs import Case, args
from tests.conftest import DIGITS_CKPT

D = str(DIGITS_CKPT)
RUN = ["evaluate", D, "--data", "digits", "--limit", "12", "--batch-size", "6", "--engine", "ray",
       "--shard-size", "6"]


@contextmanager
def _shards_in_process():
    from resformer_deploy.analysis.evaluation import evaluate_range
    from resformer_deploy.engines import ray_engine
    from resformer_deploy.engines.shards import shard_record

    def run_here(ck, setup, data, todo, store, *_args, **_kw):
        where = {"worker": "local", "node": "local", "host": "local", "ip": "127.0.0.1", "pid": 0}
        records = [store.write(s, shard_record(store.key, s, evaluate_range(setup, ck.model, data, s.start, s.stop),
                                               where)) for s in todo]
        seconds = {"ray_start": 0.0, "workers_ready": 0.0, "shards": 1.0, "ray_stop": 0.0}
        return records, {}, {"address": "local", "workers": 1, "seconds": seconds}
    original, ray_engine._run_on_ray = ray_engine._run_on_ray, run_here
    try:
        yield
    finally:
        ray_engine._run_on_ray = original


def _rehash(rec):
    body = {k: v for k, v in rec.items() if k != "sha256"}
    rec["sha256"] = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return rec


def _stored_then(edit):
    """A finished run of 2 shards in TMP/out, then ``edit`` applied to shard 1's record."""
    def setup(tmp):
        from resformer_deploy.cli.main import main
        out = tmp / "out"
        with _shards_in_process():
            r = CliRunner().invoke(main, RUN + ["--out-dir", str(out)])
        assert r.exit_code == 0, (r.output, r.stderr)
        shard = out / "shards" / "shard-00001.json"
        shard.write_text(json.dumps(edit(json.loads(shard.read_text()))))
        return RUN + ["--out-dir", str(out), "--resume"]
    return setup


def _edited_prediction(rec):
    p = rec["predictions"][0]
    p["prediction"] = (p["prediction"] + 1) % 10  # the hash no longer matches
    return rec


def _repeated_index(rec):
    rec["predictions"][1] = dict(rec["predictions"][0])
    return _rehash(rec)


def _null_label(rec):
    rec["predictions"][2]["label"] = None
    return _rehash(rec)


CASES = [
    Case("resume_edited_prediction", _stored_then(_edited_prediction),
         ("--resume: ", "shard-00001.json: content does not match its SHA-256")),
    Case("resume_repeated_sample_index", _stored_then(_repeated_index),
         ("shard-00001.json: sample index 6 repeated", "remove the file to run its shard again")),
    Case("resume_null_label", _stored_then(_null_label), ("shard-00001.json: sample 8: label null is not a class",)),
    Case("resume_wrong_hash", _stored_then(lambda rec: dict(rec, sha256="f" * 64)),
         ("shard-00001.json: content does not match its SHA-256",)),
    Case("ray_address_nothing_answers", args(*RUN, "--address", "127.0.0.1:1"),
         ("--address 127.0.0.1:1: cannot join the Ray cluster: nothing answers at 127.0.0.1:1",)),
]
