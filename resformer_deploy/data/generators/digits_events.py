"""An N-MNIST-style event data set (64x64 DVS, 10 classes) generated from scikit-learn's digits.

Recording, as N-MNIST was made (Orchard, Jayawant, Cohen & Thakor, "Converting static image
datasets to spiking neuromorphic datasets using saccades", Front. Neurosci. 9:437, 2015): a
static digit is seen by an event camera that makes three saccades tracing an isosceles triangle
(100 ms each, 300 ms per sample); the apparent motion of the digit's edges makes the events.
Here the digit (an 8x8 sklearn digit magnified to 30-40 pixels by a cubic spline, rotated by up
to 10 degrees, bright on a dark uniform screen) moves over a 64x64 sensor along such a triangle
(random size 3-6 pixels, orientation and start offset), sampled every 5 ms with bilinear
interpolation.

Pixel model (Lichtsteiner, Posch & Delbruck, "A 128x128 120 dB 15 us latency asynchronous
temporal contrast vision sensor", IEEE JSSC 43(2), 2008): every pixel keeps the log intensity at
its last event and emits an ON (OFF) event whenever the log intensity has risen (fallen) by its
contrast threshold since then -- several events for a change of several thresholds, the memorised
level moving one threshold per event; thresholds vary from pixel to pixel (mismatch, sigma 0.03
around 0.2); after firing, a pixel is blind for a refractory period, during which changes keep
accumulating and are reported when it ends. Simulated in 5 ms steps: a pixel reports in a step
every threshold crossed since its last report (a burst of up to 8 events at random times within
the step), and a refractory period of REFRACTORY_MS counts whole steps (5 ms: one step, i.e. at
most one burst a step). Background-activity noise adds events of random polarity at random
pixels and times (0.5 Hz per pixel).

Frames: the events of a sample are integrated into T=16 frames as spikingjelly does for
``data_type='frame', frames_number=16, split_by='number'``
(spikingjelly/datasets/__init__.py: ``cal_fixed_frames_number_segment_index`` splits the
time-sorted events into T slices of N // T events, the last slice taking the remainder;
``integrate_events_segment_to_frame`` counts each slice's events per pixel, channel 0 the
events with p == 0 (OFF), channel 1 the others (ON)). Written in spikingjelly's frame layout
(``resformer_deploy.data.writers.write_frames``), so ``--data DIR`` reads it like DVS128
Gesture frames.

    python -m resformer_deploy.data.generators.digits_events OUT_DIR [--train-copies 2 --test-copies 1]

Deterministic: every sample has its own RandomState stream from (seed, split, source digit,
copy). Bump GENERATOR_VERSION whenever the output changes.
"""
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from resformer_deploy.data.generators import common
from resformer_deploy.data.generators.common import (CLASS_NAMES, Timer, sample_plan, sample_rng,
                                                      source_digits)

GENERATOR_VERSION = 1
SEED = 17
SIDE = 64
T = 16
TRAIN_COPIES, TEST_COPIES = 2, 1    # recordings per source digit: 2,876 train / 359 test samples
DIGIT_SIZE = (30.0, 40.0)           # side of the magnified digit, pixels
MAX_ROTATION = 10.0                 # degrees
SACCADE_MS, DT_MS = 100.0, 5.0      # three saccades of 100 ms, simulated in 5 ms steps
SACCADE_PX = (3.0, 6.0)             # side of the triangle the digit moves along, pixels
SCREEN, DIGIT = 0.1, 1.0            # relative intensity of the screen and of a full digit stroke
THRESHOLD, MISMATCH = 0.2, 0.03     # log-intensity contrast threshold and its pixel-to-pixel sigma
REFRACTORY_MS = 5.0                 # in whole simulation steps: a pixel that fired may fire again after it
NOISE_HZ = 0.5                      # background-activity events per pixel per second
MAX_EVENTS_PER_STEP = 8             # per pixel and polarity in one 5 ms step


@dataclass
class Events:
    t: np.ndarray  # float64 [N] microseconds, sorted
    x: np.ndarray  # int64 [N] column
    y: np.ndarray  # int64 [N] row
    p: np.ndarray  # int8 [N]: 1 ON, 0 OFF (spikingjelly / DVS128 Gesture convention)

    def __len__(self):
        return len(self.t)


@dataclass
class FrameSet:
    frames: np.ndarray  # uint8 [N, T, 2, 64, 64] event counts (float32 on disk, as spikingjelly loads them)
    y: np.ndarray       # int64 [N]
    source: np.ndarray  # int64 [N]
    events: np.ndarray  # int64 [N]: events per sample


def scene(digit: np.ndarray, rng: np.random.RandomState, side: int = SIDE, margin: int = 12) -> np.ndarray:
    """The screen with the digit, float [side + 2 margin]^2 (room for the saccades)."""
    full = side + 2 * margin
    size = rng.uniform(*DIGIT_SIZE)
    angle = math.radians(rng.uniform(-MAX_ROTATION, MAX_ROTATION))
    c, s = math.cos(angle), math.sin(angle)
    matrix = np.array([[c, -s], [s, c]]) * (8.0 / size)
    centre = full / 2.0 + rng.uniform(-4, 4, 2)
    offset = np.array([3.5, 3.5]) - matrix @ centre
    d = ndimage.affine_transform(digit, matrix, offset, output_shape=(full, full), order=3,
                                 mode="constant", cval=0.0)
    return SCREEN + (DIGIT - SCREEN) * np.clip(d * 1.25, 0.0, 1.0)


def saccade_path(rng: np.random.RandomState, steps_per_saccade: int) -> np.ndarray:
    """[3 * steps + 1, 2] (dy, dx) offsets: a closed isosceles triangle at a random orientation."""
    a = rng.uniform(*SACCADE_PX)
    rot = rng.uniform(0, 2 * math.pi)
    corners = np.array([[0.0, 0.0], [a, a / 2], [0.0, a], [0.0, 0.0]])  # apex a/2 across, a down
    r = np.array([[math.cos(rot), -math.sin(rot)], [math.sin(rot), math.cos(rot)]])
    corners = corners @ r.T + rng.uniform(-2, 2, 2)
    f = np.arange(steps_per_saccade) / steps_per_saccade
    path = [corners[k] + f[:, None] * (corners[k + 1] - corners[k]) for k in range(3)]
    return np.concatenate(path + [corners[3:]])


def view(world: np.ndarray, dy: float, dx: float, side: int = SIDE) -> np.ndarray:
    """The side x side window of ``world`` at (margin + dy, margin + dx), bilinear."""
    margin = (world.shape[0] - side) // 2
    y0, x0 = margin + dy, margin + dx
    iy, ix = int(math.floor(y0)), int(math.floor(x0))
    fy, fx = y0 - iy, x0 - ix
    a = world[iy:iy + side + 1, ix:ix + side + 1]
    return ((1 - fy) * ((1 - fx) * a[:-1, :-1] + fx * a[:-1, 1:])
            + fy * ((1 - fx) * a[1:, :-1] + fx * a[1:, 1:]))


def record(digit: np.ndarray, rng: np.random.RandomState, side: int = SIDE) -> Events:
    """Simulate the DVS pixels watching the digit during the three saccades."""
    steps = int(round(SACCADE_MS / DT_MS))
    world = scene(digit, rng, side)
    path = saccade_path(rng, steps)
    theta = np.maximum(THRESHOLD + MISMATCH * rng.randn(2, side, side), 0.05)  # ON, OFF thresholds
    refractory = int(round(REFRACTORY_MS / DT_MS))
    ref = np.log(view(world, *path[0], side))
    ready = np.zeros((side, side), np.int64)  # first step at which a pixel may fire again
    ts, xs, ys, ps = [], [], [], []
    dt_us = DT_MS * 1000.0
    for k in range(1, len(path)):
        logi = np.log(view(world, *path[k], side))
        diff = logi - ref
        awake = ready <= k
        for pol, sign in ((1, 1.0), (0, -1.0)):
            th = theta[1 - pol]
            n = np.where(awake, np.floor(sign * diff / th), 0).clip(0, MAX_EVENTS_PER_STEP).astype(np.int64)
            yy, xx = np.nonzero(n)
            if len(yy) == 0:
                continue
            counts = n[yy, xx]
            ref[yy, xx] += sign * counts * th[yy, xx]
            ready[yy, xx] = k + refractory
            yy, xx = np.repeat(yy, counts), np.repeat(xx, counts)
            ts.append((k - 1 + rng.rand(len(yy))) * dt_us)  # within the step, latency unmodelled
            xs.append(xx), ys.append(yy), ps.append(np.full(len(yy), pol, np.int8))
    duration = (len(path) - 1) * dt_us
    n_noise = rng.poisson(NOISE_HZ * side * side * duration * 1e-6)
    ts.append(rng.rand(n_noise) * duration)
    xs.append(rng.randint(0, side, n_noise)), ys.append(rng.randint(0, side, n_noise))
    ps.append(rng.randint(0, 2, n_noise).astype(np.int8))
    t, x, y, p = (np.concatenate(v) for v in (ts, xs, ys, ps))
    order = np.argsort(t, kind="stable")
    return Events(t[order], x[order].astype(np.int64), y[order].astype(np.int64), p[order])


def integrate(ev: Events, frames_number: int = T, side: int = SIDE) -> np.ndarray:
    """spikingjelly's split_by='number' integration: float32 [T, 2, side, side] event counts."""
    n = len(ev)
    di = n // frames_number
    j_l = np.arange(frames_number) * di
    j_r = j_l + di
    j_r[-1] = n
    frames = np.zeros((frames_number, 2, side * side), np.float64)
    for i in range(frames_number):
        sl = slice(j_l[i], j_r[i])
        pos = ev.y[sl] * side + ev.x[sl]
        on = ev.p[sl] != 0
        for c, mask in ((0, ~on), (1, on)):
            frames[i, c] += np.bincount(pos[mask], minlength=side * side)
    return frames.reshape(frames_number, 2, side, side).astype(np.float32)


def generate(split: str, copies: int = None, seed: int = SEED, limit: int = None) -> FrameSet:
    """The frames of one split (``copies`` recordings of every source digit of that split)."""
    src = source_digits()
    copies = (TRAIN_COPIES if split == "train" else TEST_COPIES) if copies is None else copies
    plan = sample_plan(src, split, copies, limit)
    frames = np.zeros((len(plan), T, 2, SIDE, SIDE), np.uint8)  # 128 KiB a sample
    events = np.zeros(len(plan), np.int64)
    for n, (i, c) in enumerate(plan):
        ev = record(src.images[i], sample_rng(seed, split, i, c))
        f = integrate(ev)
        if f.max() > 255:  # cannot happen at these settings (at most ~70 events a pixel a frame)
            raise ValueError(f"{split} sample {n}: {int(f.max())} events in one pixel of one frame")
        frames[n], events[n] = f, len(ev)
    source = np.array([i for i, _ in plan], dtype=np.int64)
    return FrameSet(frames, src.labels[source], source, events)


class _Float32:
    """uint8 frames handed to write_frames one sample at a time as float32."""

    def __init__(self, frames):
        self.frames = frames

    def __len__(self):
        return len(self.frames)

    def __iter__(self):
        return (f.astype(np.float32) for f in self.frames)


def build(root, seed: int = SEED, train_copies: int = TRAIN_COPIES, test_copies: int = TEST_COPIES,
          limit: int = None) -> dict:
    """Generate both splits and write them as spikingjelly frames under ``root``; returns a record
    (path, sizes, events per sample, seconds, version) for the training JSON; ``limit``: the
    first samples of each split only (tests)."""
    from resformer_deploy.data.writers import write_frames
    rec = {"generator": "resformer_deploy.data.generators.digits_events", "generator_version": GENERATOR_VERSION, "seed": seed, "T": T,
           "side": SIDE, "train_copies": train_copies, "test_copies": test_copies}
    with Timer() as t:
        for split, copies in (("train", train_copies), ("test", test_copies)):
            s = generate(split, copies, seed, limit)
            rec[f"path_{split}"] = write_frames(root, split, CLASS_NAMES, _Float32(s.frames), s.y, T)
            rec[f"n_{split}"] = len(s.y)
            rec[f"events_per_sample_{split}"] = float(s.events.mean())
            del s
    rec["seconds"] = round(t.seconds, 1)
    return rec


def main(argv=None):
    common.main(build, __doc__.splitlines()[0], "directory to write frames_number_16_split_by_number/ into", SEED, TRAIN_COPIES, TEST_COPIES, argv)


if __name__ == "__main__":
    main()
