"""The shards of a sharded evaluation and their results on disk.

Samples 0 .. n-1 are cut into shards of ``shard_size`` consecutive samples, a multiple of the
batch size: each shard then runs exactly the batches the in-process evaluation runs over the
same samples (resformer_deploy.analysis.evaluation.evaluate_range). A finished shard is one JSON
file ``OUT_DIR/shards/shard-NNNNN.json`` written atomically (temporary file, fsync, os.replace:
resformer_deploy.util.outputs.write_bytes). ``OUT_DIR/run.json`` names the run: the checkpoint's
SHA-256, the model config, the target and its options, the data set and its preprocessing, the
calibration, the limit, batch and shard size; every shard file carries that run's key, so
``--resume`` takes only shards of the same run. The result is rebuilt from the shards'
per-sample records in index order (evaluation.merge_ranges), so it is the same whatever the
number of workers or the order in which shards finished.

Torch- and ray-free: the CLI checks the options with it before importing anything heavy.
"""
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from resformer_deploy.errors import DeployError, one_line

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


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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


def shard_record(key: str, shard: Shard, part, worker: dict) -> dict:
    """A finished shard as stored: its range, per-sample records, skipped samples, run info, times."""
    return {"format": SHARD_FORMAT, "run": key, "shard": shard.to_json(), "predictions": part.predictions,
            "skipped": part.skipped, "info": part.info, "seconds": part.seconds, "load_seconds": part.load_seconds,
            "worker": worker}


def as_range(record: dict):
    """A stored shard as an evaluation.RangeResult (to merge)."""
    from resformer_deploy.analysis.evaluation import RangeResult
    return RangeResult(record["predictions"], record["skipped"], record["info"], record["seconds"],
                       record["load_seconds"])


def _normalized(record: dict) -> dict:
    """The record as it reads back from its JSON (what every merge uses, resumed or not)."""
    from resformer_deploy.reporting.tables import json_bytes
    return json.loads(json_bytes(record))


class ShardStore:
    """OUT_DIR of one run: its manifest and one file per finished shard."""

    def __init__(self, out_dir, identity: dict, shards: List[Shard]):
        self.dir = Path(out_dir)
        self.identity, self.key = identity, run_key(identity)
        self.shards = {s.index: s for s in shards}
        self.ignored: List[str] = []  # shard files not taken, with the reason

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
        done = {}
        for p in self._stored():
            why = None
            try:
                rec = json.loads(p.read_text())
                s = self.shards.get(int(SHARD_FILE.match(p.name).group(1)))
                if rec.get("run") != self.key:
                    why = "of another run"
                elif s is None or rec["shard"] != s.to_json():
                    why = "not a shard of this run's plan"
                elif len(rec["predictions"]) + len(rec["skipped"]) != s.size or \
                        any(not s.start <= r["index"] < s.stop for r in rec["predictions"]):
                    why = "incomplete"
            except (OSError, ValueError, KeyError, TypeError) as e:
                why = f"unreadable ({one_line(e)})"
            if why is None:
                done[s.index] = rec
            else:
                self.ignored.append(f"{p.name}: {why}")
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
        write_json(self.path(shard), record)
        return _normalized(record)


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
