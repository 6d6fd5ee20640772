"""What both digit generators share: the source digits, the split, per-sample seeds, timing."""
import argparse
import json
import time
from dataclasses import dataclass

import numpy as np

from resformer_deploy.data.digits import SPLIT_SEED, TEST_FRACTION, split_indices

CLASS_NAMES = tuple(str(d) for d in range(10))  # sorted order == label order (folder readers sort)
SPLITS = {"train": 0, "test": 1}


@dataclass(frozen=True)
class SourceDigits:
    images: np.ndarray  # float64 [1797, 8, 8] in [0, 1] (pixel / 16)
    labels: np.ndarray  # int64 [1797]
    train: np.ndarray   # indices of the training digits (resformer_deploy.data.digits split)
    test: np.ndarray    # indices of the held-out digits

    def indices(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        return self.train if split == "train" else self.test


def source_digits() -> SourceDigits:
    from sklearn.datasets import load_digits
    data = load_digits()
    train, test = split_indices(data.target, SPLIT_SEED, TEST_FRACTION)
    return SourceDigits(data.images.astype(np.float64) / 16.0, data.target.astype(np.int64), train, test)


def sample_plan(src: SourceDigits, split: str, copies: int, limit=None):
    """(source index, copy) of every sample of a split, in file order: copy 0 of every source
    digit, then copy 1, ...; ``limit`` keeps the first samples (the same ones the full set has)."""
    idx = src.indices(split)
    plan = [(int(i), c) for c in range(int(copies)) for i in idx]
    return plan if limit is None else plan[:int(limit)]


def sample_rng(seed: int, split: str, source: int, copy: int) -> np.random.RandomState:
    """An independent stream per sample (legacy RandomState seeded by an int array: stable across
    numpy versions), so any sample is rendered alone exactly as in the full set."""
    return np.random.RandomState([int(seed), SPLITS[split], int(source), int(copy)])


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def main(build, description, out_help, seed, train_copies, test_copies, argv=None):
    """The command line of a generator: ``python -m MODULE OUT_DIR [--seed --train-copies
    --test-copies]``; prints the record ``build`` returns."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("out", help=out_help)
    ap.add_argument("--seed", type=int, default=seed)
    ap.add_argument("--train-copies", type=int, default=train_copies)
    ap.add_argument("--test-copies", type=int, default=test_copies)
    args = ap.parse_args(argv)
    print(json.dumps(build(args.out, args.seed, args.train_copies, args.test_copies), indent=2))
