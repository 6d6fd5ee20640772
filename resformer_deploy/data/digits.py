"""scikit-learn's digits data set (1797 8x8 grayscale images, shipped with the
package — nothing is downloaded) with a fixed, stratified held-out split.

Input convention: ``[B, 1, 8, 8]`` float32, pixel value / 16 (range [0, 1]).
The split uses numpy's legacy ``RandomState`` (stable across numpy versions):
per class, a seeded permutation puts the first ``round(n * test_fraction)``
samples into the test set.
"""
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

SPLIT_SEED = 0
TEST_FRACTION = 0.2
INPUT_SHAPE = (1, 8, 8)  # channels, height, width of one image


def is_digits_input(in_shape) -> bool:
    """Whether a model or graph input of shape ``in_shape`` (C, H, W) takes the digits images, so
    that the real data set (labels, a held-out split) is used instead of random inputs."""
    return tuple(int(v) for v in in_shape) == INPUT_SHAPE


@dataclass
class DigitsSplit:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    test_index: np.ndarray

    def fingerprint(self) -> str:
        """SHA-256 of the held-out indices, recorded with trained checkpoints."""
        return hashlib.sha256(np.asarray(self.test_index, dtype=np.int64).tobytes()).hexdigest()


def split_indices(labels: np.ndarray, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION):
    rng = np.random.RandomState(seed)
    test = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        test.extend(idx[: int(round(len(idx) * test_fraction))].tolist())
    test = np.sort(np.asarray(test, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(labels)), test)
    return train, test


def load_digits_split(seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION) -> DigitsSplit:
    from sklearn.datasets import load_digits

    data = load_digits()
    images = torch.from_numpy(data.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(data.target.astype(np.int64))
    train, test = split_indices(data.target, seed, test_fraction)
    return DigitsSplit(images[train], labels[train], images[test], labels[test], test)
