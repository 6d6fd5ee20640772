"""A CIFAR-sized image data set (32x32 RGB, 10 classes) generated from scikit-learn's digits.

Each 8x8 source digit is magnified to 16-24 pixels (cubic spline), rotated by up to 15 degrees
and placed at a random position on a 32x32 background that is coloured (two random colours),
textured (smooth random blobs mixed with a grating of random period and orientation) and noisy
(Gaussian pixel noise); the digit gets a random colour of higher luminance (a bright digit on a
darker background, as a fixed contrast polarity keeps the task learnable in a few CPU epochs). The held-out
split of ``resformer_deploy.data.digits`` is kept: test images are rendered only from the
held-out digits. Written in the CIFAR-10 python layout (``resformer_deploy.data.writers
.write_cifar``), so ``--data DIR`` reads it as CIFAR-10.

    python -m resformer_deploy.data.generators.digits_images OUT_DIR [--train-copies 3 --test-copies 2]

Deterministic: every sample has its own RandomState stream from (seed, split, source digit,
copy); the bytes depend only on numpy / scipy arithmetic. Bump GENERATOR_VERSION whenever the
output changes.
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from resformer_deploy.data.generators import common
from resformer_deploy.data.generators.common import (CLASS_NAMES, Timer, sample_plan, sample_rng,
                                                      source_digits)

GENERATOR_VERSION = 1
SEED = 13
SIDE = 32
TRAIN_COPIES, TEST_COPIES = 3, 2  # renderings per source digit: 4,314 train / 718 test images
DIGIT_SIZE = (16.0, 24.0)         # side of the magnified 8x8 digit, pixels
MAX_ROTATION = 15.0               # degrees
NOISE_STD = (0.01, 0.04)          # Gaussian pixel noise, fraction of full scale
TEXTURE_STD = 0.1                 # per-channel difference of the two background colours
CONTRAST = (0.4, 0.6)             # how much brighter (luma) the digit is than the mean background
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights


@dataclass
class ImageSet:
    x: np.ndarray       # uint8 [N, 32, 32, 3] (HWC RGB)
    y: np.ndarray       # int64 [N]
    source: np.ndarray  # int64 [N]: index of the sklearn digit each image was rendered from


def background(rng: np.random.RandomState, side: int = SIDE) -> np.ndarray:
    """float [side, side, 3] in [0, 1]: two colours mixed by a texture field."""
    blobs = ndimage.zoom(rng.rand(5, 5), side / 5, order=3)[:side, :side]
    blobs = (blobs - blobs.min()) / max(float(np.ptp(blobs)), 1e-6)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float64)
    theta, period, phase = rng.uniform(0, math.pi), rng.uniform(3.0, 10.0), rng.uniform(0, 2 * math.pi)
    grating = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period + phase)
    w = rng.uniform(0.2, 0.8)
    field = w * blobs + (1 - w) * grating
    c1 = rng.uniform(0.05, 0.5, 3)  # darker than the digit (luma below ~0.5)
    c2 = np.clip(c1 + rng.normal(0, TEXTURE_STD, 3), 0, 1)
    return c1 * (1 - field[..., None]) + c2 * field[..., None]


def digit_mask(digit: np.ndarray, rng: np.random.RandomState, side: int = SIDE) -> np.ndarray:
    """The 8x8 digit (values in [0, 1]) scaled, rotated and placed: float [side, side] in [0, 1]."""
    size = rng.uniform(*DIGIT_SIZE)
    scale = size / 8.0
    angle = math.radians(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    half = 0.5 * size * (abs(math.cos(angle)) + abs(math.sin(angle)))  # half extent of the rotated box
    room = max(side / 2.0 - half, 0.0)
    cy, cx = side / 2.0 + rng.uniform(-room, room, 2)
    # output pixel o -> source pixel R(-angle) (o - c) / scale + 3.5 (centre of the 8x8 digit)
    c, s = math.cos(angle), math.sin(angle)
    matrix = np.array([[c, -s], [s, c]]) / scale
    offset = np.array([3.5, 3.5]) - matrix @ np.array([cy, cx])
    m = ndimage.affine_transform(digit, matrix, offset, output_shape=(side, side), order=3,
                                 mode="constant", cval=0.0)
    return np.clip(m * 1.25, 0.0, 1.0)


def digit_colour(bg: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """A random colour whose luma exceeds the background's mean luma by CONTRAST."""
    luma_bg = float(bg.reshape(-1, 3).mean(0) @ LUMA)
    target = luma_bg + rng.uniform(*CONTRAST)
    colour = rng.uniform(0, 1, 3)
    colour = np.clip(colour + (target - colour @ LUMA), 0, 1)
    return colour


def render(digit: np.ndarray, rng: np.random.RandomState, side: int = SIDE) -> np.ndarray:
    """One image, uint8 [side, side, 3]."""
    bg = background(rng, side)
    alpha = digit_mask(digit, rng, side)[..., None]
    img = bg * (1 - alpha) + digit_colour(bg, rng) * alpha
    img = img + rng.normal(0, rng.uniform(*NOISE_STD), img.shape)
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def generate(split: str, copies: int = None, seed: int = SEED, limit: int = None) -> ImageSet:
    """The images of one split (``copies`` renderings of every source digit of that split)."""
    src = source_digits()
    copies = (TRAIN_COPIES if split == "train" else TEST_COPIES) if copies is None else copies
    plan = sample_plan(src, split, copies, limit)
    x = np.zeros((len(plan), SIDE, SIDE, 3), np.uint8)
    for n, (i, c) in enumerate(plan):
        x[n] = render(src.images[i], sample_rng(seed, split, i, c))
    source = np.array([i for i, _ in plan], dtype=np.int64)
    return ImageSet(x, src.labels[source], source)


def build(root, seed: int = SEED, train_copies: int = TRAIN_COPIES, test_copies: int = TEST_COPIES,
          limit: int = None) -> dict:
    """Generate both splits and write them as CIFAR-10 python batches under ``root``; returns a
    record (path, sizes, seconds, version) for the training JSON; ``limit``: the first
    samples of each split only (tests)."""
    from resformer_deploy.data.writers import write_cifar
    with Timer() as t:
        train = generate("train", train_copies, seed, limit)
        test = generate("test", test_copies, seed, limit)
        path = write_cifar(root, train.x, train.y, test.x, test.y, CLASS_NAMES)
    return {"generator": "resformer_deploy.data.generators.digits_images", "generator_version": GENERATOR_VERSION, "seed": seed,
            "train_copies": train_copies, "test_copies": test_copies, "n_train": len(train.y),
            "n_test": len(test.y), "path": path, "seconds": round(t.seconds, 1)}


def main(argv=None):
    common.main(build, __doc__.splitlines()[0], "directory to write cifar-10-batches-py/ into", SEED, TRAIN_COPIES, TEST_COPIES, argv)


if __name__ == "__main__":
    main()
