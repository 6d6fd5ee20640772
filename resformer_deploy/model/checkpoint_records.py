"""Our records inside a checkpoint: typed, versioned, and read in one place (``read_records``).

A checkpoint we write holds, beside the official layout's ``model``/``epoch``/``max_acc1``, one
entry ``'resformer_deploy'``: ``{'format': 2, 'config': {...}, 'training': {...}, 'evaluation':
{...}}`` (model/checkpoint.py ``save_checkpoint``). The training and evaluation records are frozen
dataclasses with a ``version``; ``read_records`` checks every key and type and refuses, in one line
that names the file, the record and the key, a record that is malformed or newer than this
package reads. Writers emit the current version; every value is a plain JSON value, so the file
still loads with ``torch.load(weights_only=True)``.

Versions: format 1 (every file before records were versioned, e.g. the shipped example
checkpoints) has no ``version`` in its records; they are read as version 1, whose evaluation record
may keep ``n_test`` under ``split`` (examples/train_digits.py). Format 2 writes ``version: 2`` into
each record and ``n_test`` at the evaluation record's top level.

The evaluation record's data set, split and preset are typed parts too (``DatasetRecord``,
``SplitRecord``, ``PresetRecord``: the fields the tools read, checked), each keeping the mapping
as the file stores it; every tool reads them from here (``LoadedCheckpoint.evaluation``), none
by key from the file."""
import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, NoReturn, Optional, Union

from resformer_deploy.errors import CheckpointError, one_line
from resformer_deploy.util.records import Record

META_KEY = "resformer_deploy"
FORMAT = 2  # of the whole entry, written by this package
READABLE_FORMATS = (1, 2)
RECORD_VERSION = 2  # of the training and evaluation records, written by this package
PLAIN_DEPTH = 8  # a record's settings nest at most this deep
INT_CONFIG_FIELDS = ("in_channels", "num_classes", "group_size", "img_size", "T", "ffn_ratio")

Plain = Any  # None, bool, int, finite float, str, and lists and str-keyed mappings of these


@dataclass(frozen=True)
class TrainingRecord(Record):
    """How the weights were trained (written by the example trainers, examples/)."""
    version: int
    command: Optional[str] = None  # the command line that trained the model
    seed: Optional[int] = None
    seconds: Optional[float] = None  # wall time of the training
    machine: Optional[str] = None
    settings: Mapping[str, Plain] = field(default_factory=dict)  # every other setting: epochs, lr, phases, ...


# The parts of an evaluation record: the fields the tools read typed and checked, and the part as
# the file stores it (``stored``: every key in its order, written back unchanged, so `info --json`
# and a re-saved checkpoint keep them as they were).

@dataclass(frozen=True)
class DatasetRecord(Record):
    """The data set an evaluation was measured on: a named set, stored as its name alone (``name``,
    e.g. sklearn.datasets.load_digits), or a generated set's recipe (a mapping: ``generator``, the
    module that re-creates it, data/generators/recorded.py; ``path``: where it was written)."""
    stored: Union[str, Mapping[str, Plain]]
    name: Optional[str] = None
    generator: Optional[str] = None
    path: Optional[str] = None

    @classmethod
    def of(cls, stored, path="checkpoint", version: Optional[int] = None) -> "DatasetRecord":
        """``stored`` (a name or a recipe) checked and typed; CheckpointError naming the key."""
        if isinstance(stored, str):
            return cls(stored, name=stored)
        r, d = _part(stored, path, "dataset", version)
        return cls(d, generator=r.optional(d, "generator", str), path=r.optional(d, "path", str))

    @property
    def recipe(self) -> Dict[str, Plain]:
        """A generated set's recipe as stored ({} for a named set)."""
        return dict(self.stored) if isinstance(self.stored, Mapping) else {}


@dataclass(frozen=True)
class SplitRecord(Record):
    """How a named set was split for training (the digits split: data/digits.py); its test
    indices' ``test_index_sha256`` is compared with the split made again."""
    stored: Mapping[str, Plain]
    test_index_sha256: Optional[str] = None
    n_test: Optional[int] = None

    @classmethod
    def of(cls, stored, path="checkpoint", version: Optional[int] = None) -> "SplitRecord":
        r, d = _part(stored, path, "split", version)
        return cls(d, test_index_sha256=r.optional(d, "test_index_sha256", str, _is_sha256, "a sha256 hex digest"),
                   n_test=r.optional(d, "n_test", int, lambda n: n >= 0, "a count >= 0"))


@dataclass(frozen=True)
class PresetRecord(Record):
    """The preprocessing an evaluation used (data/preprocess.py ``to_json``); ``preset``: its name."""
    stored: Mapping[str, Plain]
    preset: Optional[str] = None

    @classmethod
    def of(cls, stored, path="checkpoint", version: Optional[int] = None) -> "PresetRecord":
        r, d = _part(stored, path, "preset", version)
        return cls(d, preset=r.optional(d, "preset", str))


@dataclass(frozen=True)
class EvaluationRecord(Record):
    """The held-out accuracy measured at training time, and the data it was measured on."""
    version: int
    test_accuracy: float  # in [0, 1]
    n_test: Optional[int] = None
    dataset: Optional[DatasetRecord] = None  # a named set, or a generated set's recipe
    split: Optional[SplitRecord] = None
    preset: Optional[PresetRecord] = None  # the preprocessing (data/preprocess.py)
    test_label_sha256: Optional[str] = None
    train_accuracy: Optional[float] = None
    details: Mapping[str, Plain] = field(default_factory=dict)  # sources, sizes, subsets, ...


@dataclass(frozen=True)
class CheckpointRecords(Record):
    """The whole ``'resformer_deploy'`` entry."""
    format: int
    config: Mapping[str, Plain]  # ResformerConfig.to_dict(); checked field by field by ResformerConfig
    training: Optional[TrainingRecord] = None
    evaluation: Optional[EvaluationRecord] = None


# --- reading -------------------------------------------------------------------------------------

class _Reader:
    """Checks one record's keys; every refusal names the file, the record and the key."""

    def __init__(self, path, record: str, version: Optional[int] = None):
        self.path, self.record, self.version = path, record, version

    def fail(self, key: Optional[str], problem: str) -> NoReturn:
        where = f"record '{self.record}'" + (f" (version {self.version})" if self.version is not None else "")
        what = f": key '{key}' {problem}" if key else f" {problem}"
        raise CheckpointError(one_line(f"{self.path}: checkpoint {where}{what}"))

    def optional(self, d: Mapping, key: str, kind, check=None, rule: str = ""):
        if d.get(key) is None:
            return None
        return self.required(d, key, kind, check, rule)

    def required(self, d: Mapping, key: str, kind, check=None, rule: str = ""):
        if key not in d or d[key] is None:
            self.fail(key, "is missing")
        v = d[key]
        if kind is float and _is_number(v):
            v = float(v)
        if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
            self.fail(key, f"is {_describe(v)}, not {_kind_name(kind)}")
        if kind is float and not math.isfinite(v):
            self.fail(key, f"is {v}, not a finite number")
        if check is not None and not check(v):
            self.fail(key, f"= {v!r:.40} is not {rule}")
        return v

    def plain(self, v, key: str, depth: int = PLAIN_DEPTH):
        """``v`` when it is a plain JSON value (nested at most PLAIN_DEPTH deep), else refused."""
        if v is None or isinstance(v, (bool, int, str)):
            return v
        if isinstance(v, float):
            if not math.isfinite(v):
                self.fail(key, f"is {v}, not a finite number")
            return v
        if depth <= 0 and isinstance(v, (dict, list, tuple)):
            self.fail(key, f"nests deeper than {PLAIN_DEPTH} levels")
        if isinstance(v, (list, tuple)):
            return [self.plain(x, f"{key}[{i}]", depth - 1) for i, x in enumerate(v)]
        if isinstance(v, dict):
            bad = [k for k in v if not isinstance(k, str)]
            if bad:
                self.fail(f"{key}.{bad[0]!r:.20}", "is not a string key")
            return {k: self.plain(x, f"{key}.{k}", depth - 1) for k, x in v.items()}
        self.fail(key, f"is {_describe(v)}, not a plain value (number, text, list or mapping)")

    def rest(self, d: Mapping, typed) -> Dict[str, Plain]:
        return {k: self.plain(v, k) for k, v in d.items() if k not in typed}

    def mapping(self, d: Mapping, key: str) -> Optional[Dict[str, Plain]]:
        v = self.optional(d, key, dict)
        return None if v is None else self.plain(v, key)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _describe(v) -> str:
    if type(v).__module__ == "torch":
        return f"a tensor of shape {tuple(getattr(v, 'shape', ()))}"
    name = type(v).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _kind_name(kind) -> str:
    names = {int: "an integer", float: "a number", str: "text", dict: "a mapping", bool: "true or false"}
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def _version(r: _Reader, d: Mapping, entry_format: int) -> int:
    """A record's version: its ``version`` key (format 2), or 1 for a format-1 file (none written)."""
    if "version" not in d:
        if entry_format == 1:
            r.version = 1
            return 1
        r.fail("version", "is missing")
    v = r.required(d, "version", int)
    if v > RECORD_VERSION:
        r.fail("version", f"is {v}: written by a newer resformer-deploy (this one reads versions 1 to "
                          f"{RECORD_VERSION}); not loaded")
    if v < 1 or (entry_format == 2 and v < RECORD_VERSION):
        r.fail("version", f"is {v}, which no resformer-deploy writes in a format-{entry_format} file")
    r.version = v
    return v


def _training(d, path, entry_format) -> TrainingRecord:
    r = _Reader(path, "training")
    if not isinstance(d, dict):
        r.fail(None, f"is {_describe(d)}, not a mapping")
    version = _version(r, d, entry_format)
    typed = ("version", "command", "seed", "seconds", "machine")
    return TrainingRecord(
        version=version, command=r.optional(d, "command", str), seed=r.optional(d, "seed", int),
        seconds=r.optional(d, "seconds", float, lambda s: s >= 0, "a duration >= 0"),
        machine=r.optional(d, "machine", str), settings=r.rest(d, typed))


def _fraction(v) -> bool:
    return 0.0 <= v <= 1.0


def _evaluation(d, path, entry_format) -> EvaluationRecord:
    r = _Reader(path, "evaluation")
    if not isinstance(d, dict):
        r.fail(None, f"is {_describe(d)}, not a mapping")
    version = _version(r, d, entry_format)
    split = None if d.get("split") is None else SplitRecord.of(r.mapping(d, "split"), path, version)
    n_test = r.optional(d, "n_test", int, lambda n: n >= 0, "a count >= 0")
    if n_test is None and version == 1 and split is not None:  # examples/train_digits.py's layout
        n_test = split.n_test
    dataset = d.get("dataset")
    if dataset is not None:
        dataset = DatasetRecord.of(r.mapping(d, "dataset") if isinstance(dataset, dict) else r.required(d, "dataset", str),
                                   path, version)
    digest = r.optional(d, "test_label_sha256", str, _is_sha256, "a sha256 hex digest")
    typed = ("version", "test_accuracy", "n_test", "dataset", "split", "preset", "test_label_sha256", "train_accuracy")
    return EvaluationRecord(
        version=version, test_accuracy=r.required(d, "test_accuracy", float, _fraction, "an accuracy in [0, 1]"),
        n_test=n_test, dataset=dataset, split=split,
        preset=None if d.get("preset") is None else PresetRecord.of(r.mapping(d, "preset"), path, version),
        test_label_sha256=digest, train_accuracy=r.optional(d, "train_accuracy", float, _fraction,
                                                            "an accuracy in [0, 1]"),
        details=r.rest(d, typed))


def _part(stored, path, name: str, version: Optional[int]):
    """(reader, plain mapping) of an evaluation record's part ``name`` (refusals name 'evaluation.<name>')."""
    r = _Reader(path, f"evaluation.{name}", version)
    if not isinstance(stored, dict):
        r.fail(None, f"is {_describe(stored)}, not a mapping")
    return r, r.plain(stored, name)


def _is_sha256(s: str) -> bool:
    return len(s) == 64 and all(c in "0123456789abcdef" for c in s)


def read_records(entry, path) -> CheckpointRecords:
    """The typed records of a checkpoint's ``'resformer_deploy'`` entry (CheckpointError naming the
    file, the record and the key when one is malformed, unknown or newer than this package reads)."""
    r = _Reader(path, META_KEY)
    if not isinstance(entry, dict):
        r.fail(None, f"is {_describe(entry)}, not a mapping")
    fmt = r.required(entry, "format", int)
    if fmt > FORMAT:
        r.fail("format", f"is {fmt}: written by a newer resformer-deploy (this one reads formats "
                         f"{READABLE_FORMATS[0]} to {FORMAT}); not loaded")
    if fmt not in READABLE_FORMATS:
        r.fail("format", f"is {fmt}, which no resformer-deploy writes")
    unknown = sorted(str(k) for k in entry if k not in ("format", "config", "training", "evaluation"))
    if unknown:
        r.fail(unknown[0], "is no record this package knows (config, training, evaluation)")
    config = _config(entry.get("config"), path)
    training = None if entry.get("training") is None else _training(entry["training"], path, fmt)
    evaluation = None if entry.get("evaluation") is None else _evaluation(entry["evaluation"], path, fmt)
    return CheckpointRecords(fmt, config, training, evaluation)


def _config(stored, path) -> Dict[str, Plain]:
    """The stored config's shape and integer fields (ResformerConfig checks the rest when it is built)."""
    if stored is None:
        raise CheckpointError(f"{path}: checkpoint record '{META_KEY}': key 'config' is missing")
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: stored config is invalid (a {type(stored).__name__}, not a mapping of "
                              f"fields)")
    for k in INT_CONFIG_FIELDS:
        v = stored.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int)):  # T = 1e9 as a float, a string
            raise CheckpointError(f"{path}: stored config is invalid ({k} = {v!r:.40} is not an integer)")
    return dict(stored)


# --- writing -------------------------------------------------------------------------------------

def to_plain(rec: Union[TrainingRecord, EvaluationRecord]) -> Dict[str, Plain]:
    """A record as the file stores it: its typed fields that are set, then its other keys."""
    out: Dict[str, Plain] = {}
    for f in dataclasses.fields(rec):
        v = getattr(rec, f.name)
        if f.name in ("settings", "details"):
            out.update(v)
        elif isinstance(v, (DatasetRecord, SplitRecord, PresetRecord)):
            out[f.name] = dict(v.stored) if isinstance(v.stored, Mapping) else v.stored
        elif v is not None:
            out[f.name] = dict(v) if isinstance(v, Mapping) else v
    return out


def current(kind: str, content: Mapping, path="checkpoint") -> Union[TrainingRecord, EvaluationRecord]:
    """A trainer's record ``content`` (a mapping of its fields, without ``version``) checked and typed
    at the current version, as ``save_checkpoint`` writes it."""
    if isinstance(content, (TrainingRecord, EvaluationRecord)):
        content = to_plain(content)
    if not isinstance(content, Mapping):
        _Reader(path, kind).fail(None, f"is {_describe(content)}, not a mapping")
    plain = dict(content)
    if kind == "evaluation" and plain.get("n_test") is None and isinstance(plain.get("split"), dict):
        plain["n_test"] = plain["split"].get("n_test")  # version 2 keeps n_test at the top
    plain["version"] = RECORD_VERSION
    return _training(plain, path, FORMAT) if kind == "training" else _evaluation(plain, path, FORMAT)
