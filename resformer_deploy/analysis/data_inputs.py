"""A user's data set as model inputs (``--data`` / ``--calib-data``): opened, checked against the
model, preprocessed with the official evaluation preset, taken whole (verify, simulate, ops, the
drift ladder) or streamed in batches (evaluate).

Calibration data is never the evaluation data: ``calibration_data`` refuses a ``--calib-data``
that reads the same samples as ``--data`` (same source and split). Without ``--data`` the
commands keep their own inputs (the digits held-out split for digits models, seeded random
inputs otherwise); without ``--calib-data`` the fixed-point flow chooses (flows.fixed_point).
"""
import copy
import dataclasses
import json
import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Optional

from resformer_deploy.errors import DeployError, one_line

# values of one preprocessed sample are float32, and the targets run a float64 copy: 12 B a value
BYTES_PER_INPUT_VALUE = 12


@dataclass(frozen=True)
class DataArgs:
    """The data options of a command (cli/common.py ``data_options``), as given."""
    data: Optional[str] = None
    data_format: str = "auto"
    split: str = "test"
    preset: str = "auto"
    skip_bad: bool = False
    calib_data: Optional[str] = None
    calib_split: str = "train"
    scan_limit: Optional[int] = None  # --limit of evaluate: a folder scan stops after that many samples
    class_map: Optional[str] = None  # --class-map FILE: folder name -> class index of --data

    def paths(self) -> list:
        """The files and directories read (outputs may not replace them); 'digits' is built in."""
        return [p for p in (self.data, self.calib_data, self.class_map) if p is not None and p != "digits"]


@dataclass
class ModelData:
    """A data source with the preprocessing that makes its samples this model's inputs."""
    source: object  # resformer_deploy.data.sources.DataSource
    preprocessor: object  # resformer_deploy.data.preprocess.Preprocessor
    skip_bad: bool = False
    option: str = "--data"  # the option it came from, for messages
    bad: list = field(default_factory=list)  # (name, reason) of samples ``take`` skipped (--skip-bad)

    def describe(self) -> str:
        return f"{self.source.describe()}; {self.preprocessor.describe()}"

    def to_json(self) -> dict:
        s = self.source
        return {"option": self.option, "source": s.describe(), "kind": s.kind, "root": str(s.root),
                "location": str(s.location), "split": s.split, "samples": len(s), "classes": len(s.classes),
                "scan_skipped": [{"path": p, "reason": why} for p, why in getattr(s, "skipped", [])],
                "class_mapping": s.class_mapping.to_json() if s.class_mapping else None,
                "preprocessing": self.preprocessor.to_json()}

    def loader(self, batch_size: int, limit: Optional[int] = None, workers: int = 2):
        from resformer_deploy.data.loader import DataLoader
        return DataLoader(self.source, self.preprocessor, batch_size=batch_size, limit=limit,
                          skip_bad=self.skip_bad, workers=workers)

    @property
    def sample_bytes(self) -> int:
        """Bytes one preprocessed sample takes as a model input (float32 + the float64 copy); the
        preprocessor has a T only for PLIF models, whose samples are [T, C, H, W]."""
        p = self.preprocessor
        return BYTES_PER_INPUT_VALUE * (p.T or 1) * p.in_channels * p.img_size * p.img_size

    def take(self, n: int, what: str, exact: bool = True):
        """The first ``n`` samples (x, y, refs), checked against the memory budget first.
        ``exact``: a source with fewer samples is an error (else all it has are taken); with
        ``--skip-bad`` the unreadable ones are left out (listed in ``self.bad``)."""
        from resformer_deploy.util.memory_budget import check_bytes
        total = len(self.source)
        if exact and n > total:
            raise DeployError(f"{what} {n}: {self.option} {self.source.describe()} has only {total} sample(s)")
        n = min(n, total)
        loader = self.loader(batch_size=max(n, 1), limit=n)
        check_bytes(n * self.sample_bytes, f"{what}: {n:,} samples of {self.source.describe()}")
        batch = next(iter(loader), None)
        self.bad = list(loader.bad)
        if batch is None:
            raise DeployError(f"{self.option} {self.source.describe()}: none of the first {n} samples could be "
                              f"read ({len(self.bad)} bad, e.g. {self.bad[0][0] if self.bad else '?'})")
        return batch.x, batch.y, batch.refs


def open_data(path: str, cfg, variant: str, data_format: str = "auto", split: str = "test",
              preset: str = "auto", skip_bad: bool = False, option: str = "--data",
              labelled: bool = True, class_map=None, limit: Optional[int] = None) -> ModelData:
    """Open ``path`` for a model of config ``cfg``: the reader (detected or ``data_format``), the
    preset (``auto``: the one the official code evaluates this variant / data set with) and a
    check that the data fits the model (classes, channels, size, frames), all problems in one line.
    ``labelled`` False (calibration): the classes need not be the classifier's. Class folders are
    labelled for the classifier (data/imagenet_classes.py; ``class_map``: --class-map)."""
    from resformer_deploy.data.loader import check_compatible
    from resformer_deploy.data.preprocess import Preprocessor, preset_for
    from resformer_deploy.data.sources import open_source

    src = open_source(path, data_format, split, cfg.num_classes if labelled else None, class_map, limit=limit)
    name = preset_for(variant, cfg.num_classes, src.kind) if preset in (None, "auto") else preset
    try:
        pre = Preprocessor(name, cfg.img_size, cfg.in_channels, T=cfg.T if cfg.neuron == "plif" else None)
    except DeployError as e:  # e.g. a preset normalizing 3 channels for a 1-channel model
        raise DeployError(f"{option} {src.describe()}: {one_line(e)}") from None
    # calibration reads inputs only: its labels and class count need not be the classifier's
    check_compatible(src, pre, cfg if labelled else _with_classes(cfg, len(src.classes)))
    return ModelData(src, pre, skip_bad, option)


def _with_classes(cfg, k: int):
    if dataclasses.is_dataclass(cfg):
        return dataclasses.replace(cfg, num_classes=k)
    c = copy.copy(cfg)
    c.num_classes = k
    return c


def evaluation_data(args: DataArgs, cfg, variant: str) -> Optional[ModelData]:
    """``--data`` opened for the model, or None without it."""
    if args.data is None:
        if args.class_map is not None:
            raise DeployError(f"--class-map {args.class_map}: only with --data (it labels the class folders of --data)")
        return None
    return open_data(args.data, cfg, variant, args.data_format, args.split, args.preset, args.skip_bad,
                     class_map=args.class_map, limit=args.scan_limit)


def same_samples(a, b) -> bool:
    """Whether two sources read the same samples: the same files (CIFAR batches), the same split
    of the built-in digits, or the same directory / file otherwise (whatever split was asked)."""
    if a.identity == b.identity:
        return True
    if a.kind != b.kind:
        return False
    if hasattr(a, "files") and hasattr(b, "files"):
        return sorted(map(os.path.realpath, a.files)) == sorted(map(os.path.realpath, b.files))
    if a.kind == "digits":
        return a.split == b.split
    return os.path.realpath(str(a.location)) == os.path.realpath(str(b.location))


def calibration_data(args: DataArgs, cfg, variant: str, samples: int, evaluation: Optional[ModelData] = None):
    """``--calib-data`` as flows.fixed_point.CalibrationData (its first ``samples``, or all it has),
    or None without it; refused when it reads the evaluation samples."""
    from resformer_deploy.flows.fixed_point import CalibrationData

    if args.calib_data is None:
        return None
    md = open_data(args.calib_data, cfg, variant, args.data_format, args.calib_split, args.preset, args.skip_bad,
                   option="--calib-data", labelled=False, limit=samples)
    if evaluation is not None and same_samples(md.source, evaluation.source):
        raise DeployError(f"--calib-data {args.calib_data} (split {args.calib_split}) reads the evaluation samples "
                          f"of --data {args.data} (split {args.split}): {md.source.describe()}; calibration never "
                          f"uses the evaluation data: pass another source or --calib-split")
    x, _, refs = md.take(samples, "--calib-samples", exact=False)
    n, total = int(x.shape[0]), len(md.source)
    what = f"first {n:,} of {total:,}" if n < total else f"all {n:,}"
    record = dict(md.to_json(), samples_used=n, first=refs[0].name, last=refs[-1].name,
                  skipped=[{"name": name, "reason": why} for name, why in md.bad])
    return CalibrationData(x.double(), f"{md.source.describe()} ({what} samples, preset {md.preprocessor.preset.name})",
                           record=record)


def refuse_calibration(args: DataArgs, why: str) -> None:
    """A command or target that quantizes nothing: --calib-data would be silently unused."""
    if args.calib_data is not None:
        raise DeployError(f"--calib-data {args.calib_data}: {why}; nothing is calibrated")


def graph_model(graph, path: str = "the graph"):
    """(config, variant) of an exported graph, for ``--data`` on a NIR file: the model config our
    exporter records in the metadata, else what the interface says (input C x H x H, K scores)."""
    from resformer_deploy.model.config import ResformerConfig
    from exporters.nir_io import interface

    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    try:
        cfg = ResformerConfig.from_dict(json.loads(meta["config"]))
        return cfg, str(meta.get("variant") or cfg.name)
    except (KeyError, TypeError, ValueError, DeployError):
        pass
    in_shape, out_shape, _ = interface(graph)
    in_shape, out_shape = tuple(int(v) for v in in_shape), tuple(int(v) for v in out_shape)
    if len(in_shape) != 3 or in_shape[1] != in_shape[2] or len(out_shape) != 1:
        raise DeployError(f"{path}: --data needs an image classifier (input C x H x H, output K class scores); "
                          f"this graph takes {list(in_shape)} and gives {list(out_shape)}")
    T = int(meta.get("time_steps", 4))
    return SimpleNamespace(name="graph", in_channels=in_shape[0], img_size=in_shape[1], num_classes=out_shape[0],
                           neuron="lif", T=T), "graph"
