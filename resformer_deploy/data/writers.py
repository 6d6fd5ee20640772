"""Write data sets in the on-disk layouts that ``--data`` reads (resformer_deploy.data.sources).

Used by the generated example data sets (issue 13), the benchmarks and the tests, so that what
they write is exactly what a user downloads:

* CIFAR-10/100 "python version" as distributed (https://www.cs.toronto.edu/~kriz/cifar.html):
  pickled dicts, ``data`` uint8 [N, 3072] whose row is the red plane (1024 values, row-major
  32x32), then green, then blue. The distributed files are Python 2 cPickle files whose ``str``
  keys a Python 3 reader gets as ``bytes`` with ``encoding='bytes'`` (the CIFAR page's
  ``unpickle`` recipe) or as ``str`` with ``encoding='latin1'`` (torchvision/datasets/cifar.py).
  ``_Py2Pickler`` writes byte strings with the Python 2 opcodes so that both readers work.
* spikingjelly integrated frames (``frames_number=T, split_by='number'``; spikingjelly
  ``datasets.NeuromorphicDatasetFolder``): ``root/frames_number_{T}_split_by_number/{split}/
  {class}/{name}.npz`` with the key ``frames`` [T, 2, H, W].
* torchvision ImageFolder (torchvision/datasets/folder.py): ``root/{class}/{file}``.
* a NumPy ``.npz`` with ``x`` [N, ...] and ``y`` int [N].
"""
import os
import pickle
import struct

import numpy as np

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR100_DIR = "cifar-100-python"
CIFAR_SIDE = 32
CIFAR_ROW = 3 * CIFAR_SIDE * CIFAR_SIDE  # 3072 bytes: R plane, G plane, B plane
IMAGE_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "PPM": ".ppm", "BMP": ".bmp", "TIFF": ".tif",
                    "WEBP": ".webp"}


class _Py2Pickler(pickle._Pickler):
    """Pickles ``bytes`` as Python 2 ``str`` (SHORT_BINSTRING / BINSTRING opcodes), the way the
    CIFAR files were written with cPickle, instead of Python 3's SHORT_BINBYTES."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        n = len(obj)
        if n < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def _dump_py2(obj, path):
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump(obj)


def cifar_rows(x) -> np.ndarray:
    """uint8 HWC images [N, 32, 32, 3] -> CIFAR rows [N, 3072] (R plane, G plane, B plane)."""
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (CIFAR_SIDE, CIFAR_SIDE, 3):
        raise ValueError(f"CIFAR images must be uint8 [N, 32, 32, 3], got {x.dtype} {list(x.shape)}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2).reshape(len(x), CIFAR_ROW))


def _labels(y, n, what):
    y = [int(v) for v in np.asarray(y).reshape(-1)]
    if len(y) != n:
        raise ValueError(f"{what}: {n} images but {len(y)} labels")
    return y


def _filenames(names, y, start):
    return [f"{names[c] if 0 <= c < len(names) else c}_s_{start + i:06d}.png".encode()
            for i, c in enumerate(y)]


def write_cifar(root, x_train, y_train, x_test, y_test, label_names, n_train_batches=5, fine=False,
                coarse_train=None, coarse_test=None, coarse_names=None):
    """Write a CIFAR-10 (``fine=False``) or CIFAR-100 (``fine=True``) python-version directory
    under ``root`` and return its path.

    CIFAR-10: ``cifar-10-batches-py/{data_batch_1..n, test_batch, batches.meta}``, the training
    images split in order over ``n_train_batches`` batches (5 as distributed).
    CIFAR-100: ``cifar-100-python/{train, test, meta}`` with ``fine_labels`` and
    ``coarse_labels``; without ``coarse_*`` the coarse label is fine label // 5 (the official
    files group 5 classes per superclass).
    """
    names = [str(n) for n in label_names]
    rows_train, rows_test = cifar_rows(x_train), cifar_rows(x_test)
    y_train = _labels(y_train, len(rows_train), "train")
    y_test = _labels(y_test, len(rows_test), "test")
    out = os.path.join(os.fspath(root), CIFAR100_DIR if fine else CIFAR10_DIR)
    os.makedirs(out, exist_ok=True)
    if not fine:
        chunks = np.array_split(np.arange(len(rows_train)), max(1, int(n_train_batches)))
        for b, idx in enumerate(chunks, start=1):
            _dump_py2({b"batch_label": f"training batch {b} of {len(chunks)}".encode(),
                       b"labels": [y_train[i] for i in idx],
                       b"data": rows_train[idx],
                       b"filenames": _filenames(names, [y_train[i] for i in idx], int(idx[0]) if len(idx) else 0)},
                      os.path.join(out, f"data_batch_{b}"))
        _dump_py2({b"batch_label": b"testing batch 1 of 1", b"labels": y_test, b"data": rows_test,
                   b"filenames": _filenames(names, y_test, 0)}, os.path.join(out, "test_batch"))
        _dump_py2({b"label_names": [n.encode() for n in names],
                   b"num_cases_per_batch": len(chunks[0]) if chunks else 0, b"num_vis": CIFAR_ROW},
                  os.path.join(out, "batches.meta"))
        return out
    c_train = _labels(coarse_train, len(rows_train), "coarse train") if coarse_train is not None \
        else [v // 5 for v in y_train]
    c_test = _labels(coarse_test, len(rows_test), "coarse test") if coarse_test is not None \
        else [v // 5 for v in y_test]
    if coarse_names is None:
        coarse_names = [f"superclass_{j}" for j in range(max(c_train + c_test + [-1]) + 1)]
    for split, rows, y, c, title in (("train", rows_train, y_train, c_train, "training"),
                                     ("test", rows_test, y_test, c_test, "testing")):
        _dump_py2({b"filenames": _filenames(names, y, 0), b"batch_label": f"{title} batch 1 of 1".encode(),
                   b"fine_labels": y, b"coarse_labels": c, b"data": rows}, os.path.join(out, split))
    _dump_py2({b"fine_label_names": [n.encode() for n in names],
               b"coarse_label_names": [str(n).encode() for n in coarse_names]}, os.path.join(out, "meta"))
    return out


def frames_dir_name(T: int) -> str:
    """spikingjelly's directory for ``frames_number=T, split_by='number'``."""
    return f"frames_number_{int(T)}_split_by_number"


def write_frames(root, split, class_names, frames, labels, T, compressed=True):
    """Write one ``.npz`` (key ``frames`` [T, 2, H, W]) per sample into
    ``root/frames_number_{T}_split_by_number/{split}/{class}/{i:06d}.npz``; return the split
    directory. ``frames`` is [N, T, 2, H, W] (or a sequence of [T, 2, H, W]); dtype is kept.
    Every class gets its directory, also a class without samples."""
    labels = [int(v) for v in np.asarray(labels).reshape(-1)]
    if len(frames) != len(labels):
        raise ValueError(f"{len(frames)} samples but {len(labels)} labels")
    out = os.path.join(os.fspath(root), frames_dir_name(T), str(split))
    for name in class_names:
        os.makedirs(os.path.join(out, str(name)), exist_ok=True)
    save = np.savez_compressed if compressed else np.savez
    for i, (f, c) in enumerate(zip(frames, labels)):
        f = np.asarray(f)
        if f.ndim != 4 or f.shape[0] != int(T) or f.shape[1] != 2:
            raise ValueError(f"sample {i}: frames must be [T={T}, 2, H, W], got {list(f.shape)}")
        save(os.path.join(out, str(class_names[c]), f"{i:06d}.npz"), frames=f)
    return out


def write_image_folder(root, images, labels, class_names, fmt="JPEG", quality=95):
    """Write ``root/{class}/{i:06d}.{ext}`` with Pillow and return ``root``. ``images`` are uint8
    arrays, HWC RGB or HW grayscale, of any size. Every class gets its directory."""
    from PIL import Image

    fmt = str(fmt).upper()
    if fmt not in IMAGE_EXTENSIONS:
        raise ValueError(f"image format {fmt!r} not one of {sorted(IMAGE_EXTENSIONS)}")
    labels = [int(v) for v in np.asarray(labels).reshape(-1)]
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    root = os.fspath(root)
    for name in class_names:
        os.makedirs(os.path.join(root, str(name)), exist_ok=True)
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    for i, (img, c) in enumerate(zip(images, labels)):
        path = os.path.join(root, str(class_names[c]), f"{i:06d}{IMAGE_EXTENSIONS[fmt]}")
        Image.fromarray(np.asarray(img, dtype=np.uint8)).save(path, format=fmt, **options)
    return root


def write_npz(path, x, y, classes=None):
    """``np.savez(path, x=x, y=y)`` (plus ``classes``, the class names, when given); returns path."""
    path = os.fspath(path)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    arrays = {"x": np.asarray(x), "y": np.asarray(y)}
    if classes is not None:
        arrays["classes"] = np.asarray([str(c) for c in classes])
    np.savez(path, **arrays)
    return path
