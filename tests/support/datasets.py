"""Tiny data sets in every ``--data`` format, written on the fly with resformer_deploy.data.writers.
Deterministic (numpy RandomState seeds); each builder returns the path a user would pass."""
import os

import numpy as np

from resformer_deploy.data.writers import write_cifar, write_frames, write_image_folder, write_npz

# creation order differs from sorted order ("Mango" < "apple" < "zebra"), so a reader that does
# not sort, or sorts case-insensitively, gets the labels wrong
CLASS_NAMES = ("zebra", "apple", "Mango", "kiwi", "banana")
SIZES = ((40, 30), (17, 64), (32, 32), (64, 48), (23, 23), (100, 37))  # (height, width)


def random_image(rng, h, w, channels=3):
    """A smooth image plus noise (so JPEG round-trips stay close), uint8 [h, w, channels] or [h, w]."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = [128 + 100 * np.sin(xx / (3 + c) + yy / (5 + 2 * c) + rng.uniform(0, 6)) for c in range(channels)]
    img = np.stack(base, axis=-1) + rng.normal(0, 12, (h, w, channels))
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img[:, :, 0] if channels == 1 else img


def image_folder(tmp, n_per_class=2, classes=3, sizes=SIZES, fmt="PNG", gray=False, seed=0, name="images"):
    """root/<class>/<i>.png|jpg with images of the given sizes (cycled); returns root."""
    rng = np.random.RandomState(seed)
    names = CLASS_NAMES[:classes]
    images, labels = [], []
    for c in range(classes):
        for _ in range(n_per_class):
            h, w = sizes[len(images) % len(sizes)]
            images.append(random_image(rng, h, w, 1 if gray else 3))
            labels.append(c)
    return write_image_folder(os.path.join(os.fspath(tmp), name), images, labels, names, fmt=fmt)


def cifar_arrays(n, num_classes, seed):
    rng = np.random.RandomState(seed)
    x = rng.randint(0, 256, (n, 32, 32, 3)).astype(np.uint8)
    y = rng.randint(0, num_classes, n)
    return x, y


def cifar10(tmp, n=8, n_test=None, seed=0, n_train_batches=5):
    """root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}; returns root."""
    root = os.path.join(os.fspath(tmp), "cifar10")
    x, y = cifar_arrays(n + (n_test or n), 10, seed)
    write_cifar(root, x[:n], y[:n], x[n:], y[n:], [f"class{c}" for c in range(10)],
                n_train_batches=n_train_batches)
    return root


def cifar100(tmp, n=8, n_test=None, seed=1):
    """root/cifar-100-python/{train,test,meta}; returns root."""
    root = os.path.join(os.fspath(tmp), "cifar100")
    x, y = cifar_arrays(n + (n_test or n), 100, seed)
    write_cifar(root, x[:n], y[:n], x[n:], y[n:], [f"fine{c:02d}" for c in range(100)], fine=True)
    return root


def frames(tmp, T=4, size=16, n=6, classes=3, splits=("train", "test"), seed=0, dtype=np.float32):
    """root/frames_number_{T}_split_by_number/{split}/<class>/<i>.npz (key frames [T, 2, size, size]),
    event counts; returns root."""
    rng = np.random.RandomState(seed)
    root = os.path.join(os.fspath(tmp), "dvs")
    names = [str(c) for c in range(classes)]
    for split in splits:
        labels = np.arange(n) % classes
        f = rng.poisson(0.7, (n, T, 2, size, size)).astype(dtype)
        write_frames(root, split, names, f, labels, T)
    return root


def npz(tmp, shape, n, num_classes=10, seed=0, classes=None, name="data.npz"):
    """x float32 [n, *shape], y int64 [n] (and optional class names); returns the .npz path."""
    rng = np.random.RandomState(seed)
    x = rng.rand(n, *shape).astype(np.float32)
    y = (np.arange(n) % num_classes).astype(np.int64)
    return write_npz(os.path.join(os.fspath(tmp), name), x, y, classes=classes)
