"""Streaming loader: batching, limit/start, deterministic order, bounded read-ahead, skip_bad,
time spent waiting, and the model compatibility check."""
import shutil
import threading
import time

import numpy as np
import pytest
import torch

from resformer_deploy.data.loader import Batch, DataLoader, check_compatible, take
from resformer_deploy.data.preprocess import Preprocessor, Preset
from resformer_deploy.data.sources import BadSample, DataSource, SampleRef, open_source
from resformer_deploy.errors import DeployError
from resformer_deploy.model.variants import get_config
from tests.support import datasets as D


class CountingSource(DataSource):
    """n tensor samples whose value is their index; records each load; optional delays."""
    kind, modality = "npz", "tensor"

    def __init__(self, n, delay=None, bad=()):
        self.loads, self.bad_at, self.delay, self.lock = [], set(bad), delay, threading.Lock()
        super().__init__("mem", "mem", [str(c) for c in range(3)], np.arange(n) % 3)

    def ref(self, i):
        return SampleRef(int(i), f"mem[{i}]")

    def load(self, i):
        with self.lock:
            self.loads.append(i)
        if self.delay:
            time.sleep(self.delay(i))
        if i in self.bad_at:
            raise BadSample(f"mem[{i}]: broken")
        return np.full((1, 2, 2), float(i), np.float32)

    def describe(self):
        return f"memory: {len(self)} samples"


PRE = Preprocessor("none", 2, 1)


def flat(batches):
    return [int(v) for b in batches for v in b.x[:, 0, 0, 0]]


def test_batches_limit_start():
    src = CountingSource(7)
    batches = list(DataLoader(src, PRE, batch_size=3))
    assert [len(b.y) for b in batches] == [3, 3, 1] and all(isinstance(b, Batch) for b in batches)
    assert flat(batches) == list(range(7))
    assert torch.equal(torch.cat([b.y for b in batches]), torch.arange(7) % 3)
    assert batches[0].y.dtype == torch.long and batches[0].x.shape == (3, 1, 2, 2)
    assert [r.name for r in batches[2].refs] == ["mem[6]"]
    limited = DataLoader(src, PRE, batch_size=3, limit=4)
    assert len(limited) == 4 and [len(b.y) for b in limited] == [3, 1]
    started = DataLoader(src, PRE, batch_size=4, start=2, limit=10)
    assert len(started) == 5 and flat(started) == [2, 3, 4, 5, 6]
    assert list(DataLoader(src, PRE, limit=0)) == []


def test_order_is_deterministic_whatever_the_threads_finish_first():
    rng = np.random.RandomState(0)
    delays = rng.uniform(0, 0.004, 40)
    src = CountingSource(40, delay=lambda i: delays[i])
    runs = [flat(DataLoader(src, PRE, batch_size=6, workers=w)) for w in (0, 1, 2, 4)]
    assert all(r == list(range(40)) for r in runs)


def test_read_ahead_is_bounded():
    src = CountingSource(1000)
    loader = DataLoader(src, PRE, batch_size=4, workers=2, prefetch=6)
    seen = []
    for k, batch in enumerate(loader):
        with src.lock:
            seen.append(len(src.loads))
        # never more decoded than the batches handed out plus the prefetch depth
        assert len(src.loads) <= (k + 1) * 4 + 6
        if k == 2:
            break
    time.sleep(0.05)
    assert len(src.loads) <= 3 * 4 + 6 < 1000
    assert not [t for t in threading.enumerate() if t.name.startswith("data")]  # pool shut down


def test_skip_bad_collects_name_and_reason(tmp_path):
    root = D.image_folder(tmp_path, n_per_class=3, classes=2, fmt="PNG", sizes=((20, 30),))
    src = open_source(root)
    broken, truncated = src.ref(1).name, src.ref(4).name
    open(broken, "wb").write(b"garbage")
    data = open(truncated, "rb").read()
    open(truncated, "wb").write(data[:60])
    pre = Preprocessor("imagenet", 16, 3)
    loader = DataLoader(src, pre, batch_size=2, skip_bad=True)
    batches = list(loader)
    assert [len(b.y) for b in batches] == [2, 2]  # 4 good samples, batches refilled past the bad ones
    assert [r.index for b in batches for r in b.refs] == [0, 2, 3, 5]
    assert torch.cat([b.y for b in batches]).tolist() == [0, 0, 1, 1]
    assert [name for name, _ in loader.bad] == [broken, truncated]
    assert all(reason.startswith(f"{name}: cannot decode image") for name, reason in loader.bad)
    with pytest.raises(BadSample) as e:
        list(DataLoader(src, pre, batch_size=2))
    assert str(e.value).startswith(f"{broken}: cannot decode image")


def test_preprocessing_problem_of_one_sample_is_a_bad_sample(tmp_path):
    root = D.image_folder(tmp_path, n_per_class=2, classes=1, gray=True, sizes=((20, 20),))
    src = open_source(root)
    rgb = D.image_folder(tmp_path, n_per_class=1, classes=1, name="rgb")
    shutil.copy(open_source(rgb).ref(0).name, src.ref(1).name)  # one RGB file among grayscale ones
    gray_only = Preset("gray", "image", "bicubic", 1.0, (0.0,), (1.0,), "grayscale only")
    loader = DataLoader(src, Preprocessor(gray_only, 8, 1), batch_size=4, skip_bad=True)
    assert [len(b.y) for b in loader] == [1]
    assert loader.bad == [(src.ref(1).name, f"{src.ref(1).name}: model takes 1 input channel(s), image is RGB "
                                            f"(3 channel(s)); preset gray does not convert")]


def test_load_seconds_counts_waiting():
    src = CountingSource(10, delay=lambda i: 0.01)
    loader = DataLoader(src, PRE, batch_size=5, workers=0)
    list(loader)
    assert loader.load_seconds >= 10 * 0.01
    fast = DataLoader(CountingSource(10), PRE, batch_size=5)
    list(fast)
    assert fast.load_seconds < loader.load_seconds


def test_take():
    src = CountingSource(9)
    x, y, refs = take(src, PRE, 4, start=3)
    assert x[:, 0, 0, 0].tolist() == [3, 4, 5, 6] and y.tolist() == [0, 1, 2, 0]
    assert [r.index for r in refs] == [3, 4, 5, 6]
    assert len(take(src, PRE, 50)[1]) == 9
    with pytest.raises(DeployError, match="memory: 9 samples: no samples from index 9"):
        take(src, PRE, 2, start=9)
    with pytest.raises(DeployError, match="start 10 outside the data set's 9 samples"):
        DataLoader(src, PRE, start=10)


def small(variant, **kw):
    return get_config(variant, planes=(8, 24, 48), group_size=8, **kw)


def test_check_compatible_accepts_fitting_data(tmp_path):
    check_compatible(open_source("digits"), Preprocessor("digits", 8, 1), get_config("digits"))
    frames = open_source(D.frames(tmp_path, T=4, size=16, n=3, classes=3, splits=("test",)))
    check_compatible(frames, Preprocessor("dvs", 16, 2, T=4), small("dvsg", in_channels=2, img_size=16, T=4,
                                                                   num_classes=3))
    cifar = open_source(D.cifar10(tmp_path, n=2, n_test=2))
    check_compatible(cifar, Preprocessor("cifar10", 32, 3), small("cifar"))


def problems(*args):
    with pytest.raises(DeployError) as e:
        check_compatible(*args)
    return str(e.value)


def test_check_compatible_lists_every_problem(tmp_path):
    cifar = open_source(D.cifar100(tmp_path, n=2, n_test=3))
    msg = problems(cifar, Preprocessor("cifar100", 32, 3), small("cifar", num_classes=10))
    assert msg.startswith(cifar.describe() + " does not fit model 'cifar': 100 classes in the data set, the "
                                             "classifier has 10")
    frames = open_source(D.frames(tmp_path, T=4, size=16, n=3, classes=3, splits=("test",)))
    msg = problems(frames, Preprocessor("dvs", 16, 3), small("cifar", img_size=16, T=8, num_classes=3))
    assert msg.endswith("does not fit model 'cifar': event frames for a model with 'lif' neurons, which takes "
                        "static images (frame models use 'plif'); frames have T=4, the model takes T=8")
    msg = problems(cifar, Preprocessor("cifar100", 32, 3), small("dvsg", img_size=32, num_classes=100))
    assert msg.endswith("static images for a 'plif' model, which takes event frames [T, C, H, W]")


def test_check_compatible_labels_shapes_channels(tmp_path):
    npz = open_source(D.npz(tmp_path, (3, 8, 8), 14, num_classes=14))  # labels 0..13, no class names
    msg = problems(npz, Preprocessor("none", 8, 3), small("cifar", img_size=8, num_classes=10))
    assert "classes in the data set" not in msg  # class count unknown without 'classes'
    assert msg.endswith("label 10 of data.npz[x][10] out of range 0..9 (4 samples)")
    msg = problems(npz, Preprocessor("none", 8, 1), small("cifar", img_size=8, in_channels=1, num_classes=14))
    assert msg.endswith("data.npz[x][0]: sample has shape [3, 8, 8], the model takes [1, 8, 8]")
    msg = problems(npz, Preprocessor("none", 8, 3, T=4), small("dvsg", img_size=8, num_classes=14, T=4))
    assert msg.endswith("does not fit model 'dvsg': samples are [3, 8, 8], a 'plif' model takes [4, 3, 8, 8]")
    msg = problems(npz, Preprocessor("none", 8, 3, T=4), small("dvsg", img_size=8, num_classes=14))
    assert "preprocessing is set up for T 4, the model has 16" in msg
    msg = problems(npz, Preprocessor("imagenet", 8, 3), small("cifar", img_size=8, num_classes=14))
    assert msg.endswith("preset imagenet takes image data, the data set has tensor")
    msg = problems(open_source("digits"), Preprocessor("digits", 8, 1), small("cifar", img_size=16, num_classes=10))
    assert "preprocessing is set up for in_channels 1, the model has 3" in msg
    assert "preprocessing is set up for img_size 8, the model has 16" in msg
