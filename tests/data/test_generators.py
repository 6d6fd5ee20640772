"""The generated digit data sets (resformer_deploy.data.generators): deterministic, of the stated
shapes, disjoint from the held-out split, and read back by ``--data``'s readers as written."""
import hashlib
import os

import numpy as np
import pytest
from sklearn.datasets import load_digits

from resformer_deploy.data.digits import split_indices
from resformer_deploy.data.generators import digits_events, digits_images
from resformer_deploy.data.generators.common import sample_plan, source_digits
from resformer_deploy.data.sources import open_source

# SHA-256 of x.tobytes() + y.tobytes() (y int64) of the first 8 training samples. A change
# here means the data sets changed: bump GENERATOR_VERSION and retrain the shipped models.
IMAGES_SHA256 = "17433030e9448aeb8164f15c7e5a6b64d1b50f3642669b2e38e8eab3c2e5a8e2"
EVENTS_SHA256 = "c7467319ebb0a2b1635c0bffdfdb7568decf9e037f13229c9341db3de218cf06"


def sha(x, y):
    return hashlib.sha256(np.ascontiguousarray(x).tobytes() + np.asarray(y, np.int64).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def images():
    return digits_images.generate("train", limit=8)


@pytest.fixture(scope="module")
def events():
    return digits_events.generate("train", limit=8)


def test_versions_are_stated():
    assert digits_images.GENERATOR_VERSION == 1 and digits_events.GENERATOR_VERSION == 1


def test_images_are_deterministic(images):
    assert sha(images.x, images.y) == IMAGES_SHA256
    again = digits_images.generate("train", limit=3)  # a prefix renders alone exactly as in the set
    assert np.array_equal(again.x, images.x[:3])


def test_events_are_deterministic(events):
    assert sha(events.frames, events.y) == EVENTS_SHA256
    again = digits_events.generate("train", limit=2)
    assert np.array_equal(again.frames, events.frames[:2])


def test_other_seed_other_images():
    assert not np.array_equal(digits_images.generate("train", limit=2, seed=1).x,
                              digits_images.generate("train", limit=2).x)


def test_image_shapes_dtypes_labels(images):
    digits = load_digits()
    assert images.x.shape == (8, 32, 32, 3) and images.x.dtype == np.uint8
    assert images.y.dtype == np.int64 and np.array_equal(images.y, digits.target[images.source])
    assert images.x.std() > 20  # not blank: coloured backgrounds, digits, noise
    # a full split: 2 renderings of each of the 359 held-out digits, every class present
    full = digits_images.generate("test", limit=None)
    assert full.x.shape == (718, 32, 32, 3) and sorted(set(full.y.tolist())) == list(range(10))


def test_frame_shapes_dtypes_labels(events):
    digits = load_digits()
    assert events.frames.shape == (8, 16, 2, 64, 64) and events.frames.dtype == np.uint8
    assert np.array_equal(events.y, digits.target[events.source])
    counts = events.frames.reshape(8, 16, -1).sum(-1).astype(np.int64)
    assert np.array_equal(counts.sum(1), events.events)  # every event lands in one frame
    # split_by='number': frames 0..14 hold N // 16 events each, the last one the rest
    per = events.events // 16
    assert np.array_equal(counts[:, :15], np.repeat(per[:, None], 15, 1))
    assert np.array_equal(counts[:, 15], events.events - 15 * per)
    assert (events.frames[:, :, 0].sum() > 0) and (events.frames[:, :, 1].sum() > 0)  # OFF and ON


def test_integration_matches_spikingjelly_by_hand():
    # 7 events, T=3: slices of 7 // 3 = 2 events, the last slice takes 3
    ev = digits_events.Events(t=np.arange(7.0), x=np.array([0, 1, 1, 2, 3, 3, 3]),
                              y=np.array([0, 0, 0, 1, 2, 2, 2]), p=np.array([1, 0, 0, 1, 1, 0, 1], np.int8))
    f = digits_events.integrate(ev, frames_number=3, side=4)
    want = np.zeros((3, 2, 4, 4), np.float32)
    for i, (x, y, p) in enumerate(zip(ev.x, ev.y, ev.p)):
        want[min(i // 2, 2), 0 if p == 0 else 1, y, x] += 1
    assert f.dtype == np.float32 and np.array_equal(f, want)


def test_static_scene_gives_only_noise(monkeypatch):
    # no saccade: the DVS pixels see no change, every event is background activity
    monkeypatch.setattr(digits_events, "saccade_path", lambda rng, n: np.zeros((3 * n + 1, 2)))
    src = source_digits()
    ev = digits_events.record(src.images[0], np.random.RandomState(0))
    expected = digits_events.NOISE_HZ * 64 * 64 * 0.3  # Poisson mean over the 300 ms
    assert abs(len(ev) - expected) < 5 * np.sqrt(expected)


def test_closed_saccade_path_leaves_every_pixel_at_its_start_level(monkeypatch):
    # the path returns to its start, so with one threshold for ON and OFF (no mismatch) and no
    # noise, each pixel's memorised level ends within one threshold of where it began: ON and OFF
    # counts differ by at most 1 (the last crossing, back to exactly the start level, is a tie
    # that rounding decides)
    monkeypatch.setattr(digits_events, "MISMATCH", 0.0)
    monkeypatch.setattr(digits_events, "NOISE_HZ", 0.0)
    ev = digits_events.record(source_digits().images[0], np.random.RandomState(0))
    on = np.bincount((ev.y * 64 + ev.x)[ev.p == 1], minlength=64 * 64)
    off = np.bincount((ev.y * 64 + ev.x)[ev.p == 0], minlength=64 * 64)
    assert on.sum() > 1000 and np.abs(on - off).max() == 1


def test_refractory_pixels_skip_a_step(monkeypatch):
    # 10 ms refractory = 2 steps of 5 ms: a pixel never reports in two consecutive steps
    monkeypatch.setattr(digits_events, "REFRACTORY_MS", 10.0)
    monkeypatch.setattr(digits_events, "NOISE_HZ", 0.0)
    ev = digits_events.record(source_digits().images[0], np.random.RandomState(0))
    step = (ev.t // (digits_events.DT_MS * 1000)).astype(np.int64)
    key = np.unique((ev.y * 64 + ev.x) * 1000 + step)  # (pixel, step) pairs with events
    assert len(key) > 1000 and not np.isin(key + 1, key).any()


def test_splits_are_disjoint_in_source_digits():
    y = load_digits().target
    train, test = split_indices(y)
    src = source_digits()
    for copies in (1, 3):
        tr = {i for i, _ in sample_plan(src, "train", copies)}
        te = {i for i, _ in sample_plan(src, "test", copies)}
        assert tr == set(train.tolist()) and te == set(test.tolist()) and not tr & te
    assert len(sample_plan(src, "train", 3)) == 3 * 1438 and len(sample_plan(src, "test", 2)) == 718
    with pytest.raises(ValueError, match="split must be one of train, test, got 'val'"):
        sample_plan(src, "val", 1)


def read_back(root, generator, n, kind):
    """(the generated split, the reader of what was written) for both splits: the reader of kind
    ``kind`` with the n samples and the ten digit classes."""
    for split in ("train", "test"):
        src = open_source(str(root), split=split)
        assert src.kind == kind and len(src) == n and src.classes == tuple("0123456789")
        yield generator.generate(split, limit=n), src


def test_written_images_read_back_as_cifar10(tmp_path):
    rec = digits_images.build(tmp_path, limit=12)
    assert (rec["n_train"], rec["n_test"], rec["generator_version"]) == (12, 12, 1)
    for want, src in read_back(tmp_path, digits_images, 12, "cifar10"):
        assert [src.label(i) for i in range(12)] == want.y.tolist()
        for i in range(12):
            assert np.array_equal(src.load(i), want.x[i])


def test_written_frames_read_back_as_spikingjelly_frames(tmp_path):
    # the first 28 samples of each split hold every class (a frames folder needs all 10 directories
    # filled, else the reader refuses it: an empty class would shift the labels)
    rec = digits_events.build(tmp_path, limit=28)
    assert (rec["n_train"], rec["n_test"], rec["T"]) == (28, 28, 16)
    for want, src in read_back(tmp_path, digits_events, 28, "frames"):
        assert src.T == 16
        for i in range(28):  # the reader orders by class directory; the file name is the index
            name = src.ref(i).name
            n = int(os.path.splitext(os.path.basename(name))[0])
            assert os.path.basename(os.path.dirname(name)) == str(want.y[n]) and src.label(i) == want.y[n]
            got = src.load(i)
            assert got.dtype == np.float32 and np.array_equal(got, want.frames[n].astype(np.float32))
