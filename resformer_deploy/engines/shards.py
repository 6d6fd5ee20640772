"""The shards of a sharded evaluation and their results on disk.

Samples 0 .. n-1 are cut into shards of ``shard_size`` consecutive samples, a multiple of the
batch size: each shard then runs exactly the batches the in-process evaluation runs over the
same samples (resformer_deploy.analysis.evaluation.evaluate_range). A finished shard is one JSON
file ``OUT_DIR/shards/shard-NNNNN.json`` written atomically (temporary file, fsync, os.replace:
resformer_deploy.util.outputs.write_bytes). ``OUT_DIR/run.json`` names the run: the checkpoint's
SHA-256, the model config, the target and its options, the data set and its preprocessing, the
calibration, the limit, batch and shard size; every shard file carries that run's key and the
SHA-256 of its own content. ``--resume`` checks every stored record in full (exact keys, field
types, the shard's range, sample indices unique, increasing and inside it, classes in range, the
content hash) and refuses the run, in one line naming the file, if one fails: a shard that was
edited, duplicated or truncated is never merged, nor silently overwritten (removing the file runs
that shard again). The result is rebuilt from the shards'
per-sample records in index order (evaluation.merge_ranges), so it is the same whatever the
number of workers or the order in which shards finished.

Torch- and ray-free: the CLI checks the options with it before importing anything heavy.
"""
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from resformer_deploy.errors import DeployError, one_line
from resformer_deploy.util.digest import file_sha256

SHARD_FORMAT = 1
SHARD_BATCHES = 8  # default shard: 8 batches (256 samples at the default batch size 32)
SHARD_FILE = re.compile(r"^shard-(\d{5,})\.json$")
MANIFEST = "run.json"
SHARD_DIR = "shards"


@dataclass(frozen=True)
class Shard:
    index: int
    start: int
    stop: int  # exclusive

    @property
    def name(self) -> str:
        return f"shard-{self.index:05d}"

    @property
    def size(self) -> int:
        return self.stop - self.start

    def describe(self) -> str:
        return f"{self.name} (samples {self.start}..{self.stop - 1})"

    def to_json(self) -> dict:
        return {"index": self.index, "start": self.start, "stop": self.stop}


def check_shard_size(shard_size: int, batch_size: int) -> None:
    if shard_size % batch_size:
        raise DeployError(f"--shard-size {shard_size} is not a multiple of --batch-size {batch_size}: shards would "
                          f"run other batches than the in-process evaluation; use e.g. "
                          f"{max(1, shard_size // batch_size) * batch_size}")


def plan_shards(n: int, shard_size: int, batch_size: int) -> List[Shard]:
    """The shards of samples 0 .. n-1, in index order (the same for any number of workers)."""
    check_shard_size(shard_size, batch_size)
    return [Shard(i, start, min(start + shard_size, n)) for i, start in enumerate(range(0, n, shard_size))]


def run_identity(*, checkpoint: str, ck, target: str, target_options: dict, torch_precision: str, data,
                 samples: int, limit: Optional[int], batch_size: int, shard_size: int, calibration=None,
                 calib_samples: Optional[int] = None) -> dict:
    """What makes two runs the same run (JSON): their shards may be merged into one result."""
    cfg = ck.config
    return {
        "format": SHARD_FORMAT,
        "checkpoint_sha256": file_sha256(checkpoint),
        "variant": ck.variant,
        "config": cfg.to_dict() if hasattr(cfg, "to_dict") else repr(cfg),
        "target": target, "target_options": dict(target_options), "torch_precision": torch_precision,
        "data": dict(data.to_json(), skip_bad=bool(data.skip_bad)),
        "samples": int(samples), "limit": limit, "batch_size": int(batch_size), "shard_size": int(shard_size),
        # None: the flow's own choice (deterministic: digits training split or seeded random inputs)
        "calibration": None if calibration is None else (calibration.record or calibration.source),
        "calib_samples": calib_samples,
    }


def run_key(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _differences(old: dict, new: dict) -> List[str]:
    names = {"checkpoint_sha256": "checkpoint (SHA-256)", "shard_size": "--shard-size", "batch_size": "--batch-size",
             "limit": "--limit", "calib_samples": "--calib-samples", "target_options": "target options"}
    return [names.get(k, k) for k in new if old.get(k) != new[k]] + [k for k in old if k not in new]


RECORD_KEYS = ("format", "run", "shard", "predictions", "skipped", "info", "seconds", "load_seconds", "worker",
               "sha256")
# read no larger file (a sample's record is ~200 bytes; the run info a few KiB)
MAX_RECORD_BYTES, MAX_SAMPLE_BYTES = 16 << 20, 4096
PREDICTION_KEYS = ("index", "name", "label", "prediction", "top5", "torch_prediction")  # evaluation.Tally


def content_hash(record: dict) -> str:
    """SHA-256 of a record's JSON without its own ``sha256`` (keys sorted, compact): the same for
    the record as written and as read back, since JSON numbers and strings round-trip exactly."""
    body = {k: v for k, v in record.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
                          .encode()).hexdigest()


def shard_record(key: str, shard: Shard, part, worker: dict) -> dict:
    """A finished shard as stored: its range, per-sample records, skipped samples, run info, times."""
    return {"format": SHARD_FORMAT, "run": key, "shard": shard.to_json(), "predictions": part.predictions,
            "skipped": part.skipped, "info": part.info, "seconds": part.seconds, "load_seconds": part.load_seconds,
            "worker": worker}  # "sha256" is added as it is stored (ShardStore.write)


def as_range(record: dict):
    """A stored shard as an evaluation.RangeResult (to merge)."""
    from resformer_deploy.analysis.evaluation import RangeResult
    return RangeResult(record["predictions"], record["skipped"], record["info"], record["seconds"],
                       record["load_seconds"])


def _normalized(record: dict) -> dict:
    """The record as it reads back from its JSON (what every merge uses, resumed or not)."""
    from resformer_deploy.reporting.tables import json_bytes
    return json.loads(json_bytes(record))


def _json_type(v) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(type(v), "number")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (_is_int(v) or isinstance(v, float)) and v == v and abs(v) != float("inf") and v >= 0


def _class_problem(what: str, v, classes: int, optional: bool = False) -> Optional[str]:
    if optional and v is None:
        return None
    if not _is_int(v) or not 0 <= v < classes:
        return f"{what} {json.dumps(v)} is not a class (0..{classes - 1})"
    return None


def record_problem(rec, key: str, shard: Shard, classes: int, top_k: int) -> Optional[str]:
    """Why a stored shard record cannot be merged into this run, or None. ``classes``: the
    classifier's classes (labels and predictions index them); ``top_k``: entries of ``top5``."""
    if not isinstance(rec, dict):
        return f"not a shard record (a JSON {_json_type(rec)})"
    if set(rec) != set(RECORD_KEYS):
        missing, extra = sorted(set(RECORD_KEYS) - set(rec)), sorted(set(rec) - set(RECORD_KEYS))
        return "not a shard record (" + "; ".join(filter(None, [missing and f"missing {', '.join(missing)}",
                                                               extra and f"unknown {', '.join(extra)}"])) + ")"
    try:
        digest = content_hash(rec)
    except ValueError:  # json.loads takes NaN and Infinity; strict JSON (and our writer) does not
        return "holds a non-finite number (NaN or Infinity)"
    if rec["sha256"] != digest:
        return "content does not match its SHA-256 (changed after it was written)"
    if rec["format"] != SHARD_FORMAT:
        return f"shard format {json.dumps(rec['format'])}, this version writes {SHARD_FORMAT}"
    if rec["run"] != key:
        return f"of another run (key {json.dumps(rec['run'])}, this run {key})"
    if rec["shard"] != shard.to_json():
        return f"range {json.dumps(rec['shard'])} is not {shard.describe()} of this run's plan"
    preds, skipped = rec["predictions"], rec["skipped"]
    if not isinstance(preds, list) or not isinstance(skipped, list):
        return "predictions and skipped must be lists"
    last = shard.start - 1
    for p in preds:
        if not isinstance(p, dict) or set(p) != set(PREDICTION_KEYS):
            return f"a prediction is not a record of {', '.join(PREDICTION_KEYS)}: {json.dumps(p)[:120]}"
        i = p["index"]
        if not _is_int(i) or not shard.start <= i < shard.stop:
            return f"sample index {json.dumps(i)} outside the shard's samples {shard.start}..{shard.stop - 1}"
        if i <= last:
            return f"sample index {i} " + ("repeated" if any(q["index"] == i for q in preds if q is not p)
                                           else "out of order")
        last = i
        why = (None if isinstance(p["name"], str) else f"sample {i}: name {json.dumps(p['name'])} is not a string") \
            or _class_problem(f"sample {i}: label", p["label"], classes) \
            or _class_problem(f"sample {i}: prediction", p["prediction"], classes) \
            or _class_problem(f"sample {i}: torch_prediction", p["torch_prediction"], classes, optional=True)
        if why:
            return why
        top = p["top5"]
        if not isinstance(top, list) or len(top) != top_k or len(set(map(json.dumps, top))) != top_k:
            return f"sample {i}: top5 {json.dumps(top)} is not {top_k} distinct classes"
        for c in top:
            why = _class_problem(f"sample {i}: top5 entry", c, classes)
            if why:
                return why
        if top[0] != p["prediction"]:
            return f"sample {i}: prediction {p['prediction']} is not the first of top5 {top}"
    for item in skipped:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
            return f"a skipped sample is not [name, reason]: {json.dumps(item)[:120]}"
    if len(preds) + len(skipped) != shard.size:
        return (f"{len(preds)} predictions and {len(skipped)} skipped samples for the shard's {shard.size} "
                f"samples")
    info = rec["info"]
    if not isinstance(info, dict):
        return f"info is {_json_type(info)}, not an object"
    if "steps" in info and not (_is_int(info["steps"]) and info["steps"] >= 0):
        return f"info.steps {json.dumps(info['steps'])} is not a count"
    sat = info.get("saturation", {})
    if not (isinstance(sat, dict) and all(isinstance(kinds, dict) and all(_is_int(n) and n >= 0
                                                                          for n in kinds.values())
                                          for kinds in sat.values())):
        return "info.saturation is not {node: {kind: count}}"
    for k in ("seconds", "load_seconds"):
        if not _is_number(rec[k]):
            return f"{k} {json.dumps(rec[k])} is not a duration"
    if not isinstance(rec["worker"], dict):
        return f"worker is {_json_type(rec['worker'])}, not an object"
    return None


class ShardStore:
    """OUT_DIR of one run: its manifest and one file per finished shard. ``classes``, ``top_k``:
    the classifier's, against which a resumed shard's records are checked."""

    def __init__(self, out_dir, identity: dict, shards: List[Shard], *, classes: int, top_k: int):
        self.dir = Path(out_dir)
        self.identity, self.key = identity, run_key(identity)
        self.shards = {s.index: s for s in shards}
        self.classes, self.top_k = int(classes), int(top_k)

    @property
    def shard_dir(self) -> Path:
        return self.dir / SHARD_DIR

    def path(self, shard: Shard) -> Path:
        return self.shard_dir / f"{shard.name}.json"

    def _stored(self) -> List[Path]:
        d = self.shard_dir
        return sorted(p for p in d.iterdir() if SHARD_FILE.match(p.name)) if d.is_dir() else []

    def open(self, resume: bool) -> Dict[int, dict]:
        """Check OUT_DIR against this run and write its manifest; returns the finished shards
        (index -> record) with ``resume``, refuses a directory holding another run's (or, without
        ``resume``, any) finished shards."""
        from resformer_deploy.reporting.tables import write_json

        manifest = self.dir / MANIFEST
        old = None
        if manifest.is_file():
            try:
                old = json.loads(manifest.read_text())
                old_identity, old_key = old["identity"], old["key"]
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise DeployError(f"--out-dir {self.dir}: unreadable {MANIFEST} ({one_line(e)}); choose another "
                                  f"directory") from None
            stored = self._stored()
            if stored and not resume:
                raise DeployError(f"--out-dir {self.dir} holds {len(stored)} finished shard(s) of a run; pass "
                                  f"--resume to continue it, or choose another directory")
            if old_key != self.key and stored:
                raise DeployError(f"--resume: --out-dir {self.dir} holds shards of another run "
                                  f"({', '.join(_differences(old_identity, self.identity)) or 'run key'} "
                                  f"differ); choose another directory")
        elif self._stored():
            raise DeployError(f"--out-dir {self.dir}: shard files without {MANIFEST}; choose another directory")
        if old is None or old.get("key") != self.key:
            write_json(manifest, {"key": self.key, "shards": len(self.shards), "identity": self.identity})
        return self._done() if resume else {}

    def _done(self) -> Dict[int, dict]:
        """Every stored shard, checked in full (record_problem); the first that fails refuses the
        resume, naming its file: merged, it would change the result silently."""
        done = {}
        for p in self._stored():
            s = self.shards.get(int(SHARD_FILE.match(p.name).group(1)))
            try:
                st = p.lstat()  # a FIFO would block the read, a symlink point anywhere
                n_bytes = st.st_size if stat.S_ISREG(st.st_mode) else None
                big = n_bytes is not None and n_bytes > MAX_RECORD_BYTES + MAX_SAMPLE_BYTES * (s.size if s else 0)
                rec = json.loads(p.read_bytes()) if n_bytes is not None and not big else None
            except (OSError, ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
                why = f"unreadable ({one_line(e)})"
            else:
                why = ("not a regular file" if n_bytes is None
                       else f"not a shard of this run's plan ({len(self.shards)} shards)" if s is None
                       else f"{n_bytes:,} bytes, more than a shard of {s.size} samples writes" if big
                       else record_problem(rec, self.key, s, self.classes, self.top_k))
            if why is not None:
                raise DeployError(f"--resume: {p}: {why}; remove the file to run its shard again, or choose "
                                  f"another --out-dir")
            done[s.index] = rec
        return done

    def finished(self) -> int:
        """Shard files of this run on disk."""
        return sum(1 for p in self._stored() if self._key_of(p) == self.key)

    @staticmethod
    def _key_of(path: Path) -> Optional[str]:
        try:
            return json.loads(path.read_text()).get("run")
        except (OSError, ValueError, AttributeError):
            return None

    def write(self, shard: Shard, record: dict) -> dict:
        """Store a finished shard atomically; returns the record as it reads back."""
        from resformer_deploy.reporting.tables import write_json
        rec = _normalized(record)
        rec["sha256"] = content_hash(rec)
        write_json(self.path(shard), rec)
        return rec


def merge_shards(setup, records: List[dict]) -> tuple:
    """(tally, skipped, info) of stored shard records, in index order whatever order they came in."""
    from resformer_deploy.analysis.evaluation import merge_ranges
    ordered = sorted(records, key=lambda r: r["shard"]["index"])
    return merge_ranges(setup, [as_range(r) for r in ordered])


def remove_temporaries(directory) -> None:
    """Temporary files an interrupted atomic write of ours may have left (util/outputs: '.NAME.*.tmp')."""
    d = Path(directory)
    if d.is_dir():
        for p in d.iterdir():
            if p.name.startswith(".shard-") and p.name.endswith(".tmp"):
                try:
                    os.unlink(p)
                except OSError:
                    pass
