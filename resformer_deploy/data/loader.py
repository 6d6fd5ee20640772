"""Streaming batches from a ``DataSource``: deterministic order, memory bounded by the batch
size and the prefetch depth (never by the data set size), decoding in a thread pool (Pillow and
numpy release the GIL while decoding and resizing)."""
import collections
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator, List

import numpy as np
import torch

from resformer_deploy.data.sources import BadSample, SampleRef
from resformer_deploy.errors import DeployError, one_line


@dataclass
class Batch:
    x: torch.Tensor          # float32 [B, C, H, W] or [B, T, C, H, W]
    y: torch.Tensor          # int64 [B]
    refs: List[SampleRef] = field(default_factory=list)


def _prepare(source, preprocessor, i):
    """(x, ref) of sample i; a sample that cannot be used raises BadSample naming it."""
    ref = source.ref(i)
    try:
        return preprocessor(source.load(i), source.modality), ref
    except BadSample:
        raise
    except DeployError as e:
        raise BadSample(f"{ref.name}: {one_line(e)}") from None


class DataLoader:
    def __init__(self, source, preprocessor, batch_size=32, limit=None, skip_bad=False, workers=2, start=0,
                 prefetch=None):
        if int(batch_size) < 1:
            raise DeployError(f"batch size must be >= 1, got {batch_size}")
        if limit is not None and int(limit) < 0:
            raise DeployError(f"limit must be >= 0, got {limit}")
        if not 0 <= int(start) <= len(source):
            raise DeployError(f"start {start} outside the data set's {len(source)} samples")
        self.source, self.preprocessor = source, preprocessor
        self.batch_size, self.skip_bad, self.start = int(batch_size), bool(skip_bad), int(start)
        self.limit = None if limit is None else int(limit)
        self.workers = max(0, int(workers))
        # samples decoded ahead of the one being consumed (bounded prefetch)
        self.prefetch = max(1, int(prefetch)) if prefetch is not None else max(2 * self.workers, self.batch_size)
        self.bad = []             # (name, reason) of skipped samples
        self.load_seconds = 0.0   # wall time the consumer waited for data (decode + preprocess not overlapped)

    def __len__(self) -> int:
        n = len(self.source) - self.start
        return n if self.limit is None else min(self.limit, n)

    def _indices(self):
        return range(self.start, self.start + len(self))

    def _samples(self):
        """(i, (x, ref) or exception) in index order."""
        if self.workers == 0:
            for i in self._indices():
                t0 = time.perf_counter()
                try:
                    item = _prepare(self.source, self.preprocessor, i)
                except BadSample as e:
                    item = e
                self.load_seconds += time.perf_counter() - t0
                yield i, item
            return
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="data")
        pending = collections.deque()
        indices = iter(self._indices())
        try:
            for i in indices:
                pending.append((i, pool.submit(_prepare, self.source, self.preprocessor, i)))
                if len(pending) >= self.prefetch:
                    break
            while pending:
                i, fut = pending.popleft()
                t0 = time.perf_counter()
                try:
                    item = fut.result()
                except BadSample as e:
                    item = e
                self.load_seconds += time.perf_counter() - t0
                nxt = next(indices, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(_prepare, self.source, self.preprocessor, nxt)))
                yield i, item
        finally:
            for _, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True)

    def __iter__(self) -> Iterator[Batch]:
        self.bad, self.load_seconds = [], 0.0
        xs, ys, refs = [], [], []
        for i, item in self._samples():
            if isinstance(item, BadSample):
                if not self.skip_bad:
                    raise item
                self.bad.append((self.source.ref(i).name, str(item)))
                continue
            x, ref = item
            if xs and x.shape != xs[0].shape:
                raise BadSample(f"{ref.name}: preprocessed to {list(x.shape)}, earlier samples to "
                                f"{list(xs[0].shape)}")
            xs.append(x)
            ys.append(self.source.label(i))
            refs.append(ref)
            if len(xs) == self.batch_size:
                yield Batch(torch.stack(xs), torch.tensor(ys, dtype=torch.long), refs)
                xs, ys, refs = [], [], []
        if xs:
            yield Batch(torch.stack(xs), torch.tensor(ys, dtype=torch.long), refs)


def take(source, preprocessor, n, start=0, workers=2):
    """The first ``n`` samples from ``start`` as one batch: (x, y, refs) (calibration, verify)."""
    loader = DataLoader(source, preprocessor, batch_size=max(1, int(n)), limit=n, start=start, workers=workers)
    batch = next(iter(loader), None)
    if batch is None:
        raise DeployError(f"{source.describe()}: no samples from index {start}")
    return batch.x, batch.y, batch.refs


def check_compatible(source, preprocessor, model_config) -> None:
    """Raise one DeployError listing every reason the data set does not fit the model."""
    cfg, problems = model_config, []
    if source.classes_known and len(source.classes) != cfg.num_classes:
        problems.append(f"{len(source.classes)} classes in the data set, the classifier has {cfg.num_classes}")
    out = np.flatnonzero((source.labels < 0) | (source.labels >= cfg.num_classes))
    if len(out):
        i = int(out[0])
        problems.append(f"label {source.label(i)} of {source.ref(i).name} out of range 0..{cfg.num_classes - 1} "
                        f"({len(out)} sample{'s' if len(out) > 1 else ''})")
    frames_model = cfg.neuron == "plif"
    if source.modality == "frames" and not frames_model:
        problems.append(f"event frames for a model with '{cfg.neuron}' neurons, which takes static images "
                        f"(frame models use 'plif')")
    if source.modality == "image" and frames_model:
        problems.append("static images for a 'plif' model, which takes event frames [T, C, H, W]")
    p = preprocessor
    for name, want in (("in_channels", cfg.in_channels), ("img_size", cfg.img_size), ("T", cfg.T)):
        if getattr(p, name) not in (want, None):
            problems.append(f"preprocessing is set up for {name} {getattr(p, name)}, the model has {want}")
    if source.modality not in p.preset.modalities:
        problems.append(f"preset {p.preset.name} takes {' or '.join(p.preset.modalities)} data, the data set "
                        f"has {source.modality}")
    else:
        sample = _first_good(source, p)
        if isinstance(sample, str):
            problems.append(sample)
        elif sample is not None:
            want = (cfg.in_channels, cfg.img_size, cfg.img_size)
            shape = tuple(sample.shape)
            if source.modality == "tensor" and shape != (want if not frames_model else (cfg.T,) + want):
                problems.append(f"samples are {list(shape)}, a '{cfg.neuron}' model takes "
                                f"{list(want if not frames_model else (cfg.T,) + want)}")
            elif source.modality == "frames" and shape[0] != cfg.T:
                problems.append(f"frames have T={shape[0]}, the model takes T={cfg.T}")
    if problems:
        raise DeployError(f"{source.describe()} does not fit model '{cfg.name}': " + "; ".join(problems))


def _first_good(source, preprocessor, tries=5):
    """The first preprocessed sample that decodes (None if the first ``tries`` cannot be decoded:
    those are reported per sample), or the message of a preprocessing problem."""
    for i in range(min(tries, len(source))):
        try:
            raw = source.load(i)
        except BadSample:
            continue
        try:
            return preprocessor(raw, source.modality)
        except DeployError as e:
            return f"{source.ref(i).name}: {one_line(e)}"
    return None
