"""Every way a data source can be unusable gives one DeployError line naming the file / key."""
import os
import pickle
import re

import numpy as np
import pytest

from resformer_deploy.data.sources import BadSample, DataError, open_source
from resformer_deploy.data.writers import write_frames, write_npz
from resformer_deploy.errors import DeployError
from tests.support import datasets as D
from tests.support.errors import error


def test_missing_and_unknown(tmp_path):
    assert error(open_source, str(tmp_path / "nope")) == f"data source not found: {tmp_path / 'nope'}"
    assert "unknown data format 'tfrecord'" in error(open_source, str(tmp_path), kind="tfrecord")
    (tmp_path / "notes.txt").write_text("x")
    msg = error(open_source, str(tmp_path / "notes.txt"))
    assert msg.startswith(f"{tmp_path / 'notes.txt'} is a file but not an .npz")


def test_empty_directory_says_what_was_looked_for(tmp_path):
    msg = error(open_source, str(tmp_path))
    assert msg.startswith(f"unrecognised data layout in {tmp_path}: looked for cifar-10-batches-py/")
    assert "frames_number_<T>_split_by_number/" in msg and ".jpg" in msg


def test_class_dirs_without_samples(tmp_path):
    for c in ("a", "b"):
        os.makedirs(tmp_path / c)
    (tmp_path / "a" / "readme.txt").write_text("x")
    assert error(open_source, str(tmp_path)) == \
        f"{tmp_path}: no images (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp) or .npz frames in its 2 class directories"
    assert error(open_source, str(tmp_path), kind="imagefolder").startswith(f"{tmp_path}: no images (.jpg")
    no_class = tmp_path / "flat"
    os.makedirs(no_class)
    msg = error(open_source, str(no_class), kind="imagefolder")
    assert msg.startswith(f"{no_class}: no class sub-directories")
    for name in ("ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"):  # val as in the tarball
        (no_class / name).write_bytes(b"")
    assert error(open_source, str(no_class)) == \
        f"{no_class} holds 2 image/.npz files but no class sub-directories; labels come from the layout " \
        f"{no_class}/<class>/<file>"


def test_one_empty_class_is_named(tmp_path):
    root = D.image_folder(tmp_path, n_per_class=1, classes=2)
    os.makedirs(os.path.join(root, "empty_class"))
    msg = error(open_source, root)
    assert msg.startswith(f"{root}: no images (") and "class directory empty_class" in msg


def test_unreadable_and_truncated_images_name_the_file(tmp_path):
    root = D.image_folder(tmp_path, n_per_class=2, classes=1, fmt="JPEG", sizes=((48, 48),))
    src = open_source(root)
    garbage, truncated = src.ref(0).name, src.ref(1).name
    with open(truncated, "rb") as f:
        data = f.read()
    with open(truncated, "wb") as f:
        f.write(data[: len(data) // 2])
    with open(garbage, "wb") as f:
        f.write(b"this is not a JPEG")
    for i, path in ((0, garbage), (1, truncated)):
        with pytest.raises(BadSample) as info:
            src.load(i)
        assert str(info.value).startswith(f"{path}: cannot decode image: ")
    assert "truncated" in str(pytest.raises(BadSample, src.load, 1).value)


def _cifar_dir(tmp_path):
    return os.path.join(D.cifar10(tmp_path, n=5, n_test=4), "cifar-10-batches-py")


def _rewrite(path, change):
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    change(d)
    with open(path, "wb") as f:
        pickle.dump(d, f, protocol=2)


def test_cifar_missing_key_names_file_and_key(tmp_path):
    batch_dir = _cifar_dir(tmp_path)
    test_batch = os.path.join(batch_dir, "test_batch")
    _rewrite(test_batch, lambda d: d.pop(b"labels"))
    msg = error(open_source, batch_dir)
    assert msg == f"{test_batch}: missing key 'labels' (keys: batch_label, data, filenames)"
    meta = os.path.join(batch_dir, "batches.meta")
    _rewrite(meta, lambda d: d.pop(b"label_names"))
    assert error(open_source, batch_dir).startswith(f"{meta}: missing key 'label_names'")


def test_cifar_missing_files(tmp_path):
    batch_dir = _cifar_dir(tmp_path)
    for b in range(1, 6):
        os.remove(os.path.join(batch_dir, f"data_batch_{b}"))
    assert error(open_source, batch_dir, split="train") == \
        f"{batch_dir}: no data_batch_1..5 files (CIFAR-10 training split)"
    os.remove(os.path.join(batch_dir, "test_batch"))
    assert error(open_source, batch_dir) == f"{os.path.join(batch_dir, 'test_batch')}: file missing"


def test_cifar_bad_contents(tmp_path):
    batch_dir = _cifar_dir(tmp_path)
    test_batch = os.path.join(batch_dir, "test_batch")
    _rewrite(test_batch, lambda d: d.update({b"data": d[b"data"][:, :1024]}))
    assert error(open_source, batch_dir) == \
        f"{test_batch}: 'data' must be uint8 [N, 3072] (3 planes of 32x32), got uint8 [4, 1024]"
    _rewrite(test_batch, lambda d: d.update({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 12, 3]}))
    assert error(open_source, batch_dir) == \
        f"{test_batch}: 'labels'[2] = 12 out of range 0..9 (10 classes; 1 such label(s))"
    _rewrite(test_batch, lambda d: d.update({b"labels": [0, 1]}))
    assert error(open_source, batch_dir) == f"{test_batch}: 4 rows in 'data' but 2 'labels'"


def test_cifar_pickle_with_code_is_refused(tmp_path):
    batch_dir = _cifar_dir(tmp_path)
    test_batch = os.path.join(batch_dir, "test_batch")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(test_batch, "wb") as f:
        pickle.dump({"data": Evil()}, f)
    msg = error(open_source, batch_dir)
    assert msg.startswith(f"{test_batch}: not a CIFAR python batch: refusing global ")
    assert "system" in msg


def test_cifar_wrong_kind_and_both(tmp_path):
    root = D.cifar10(tmp_path, n=2, n_test=2)
    batch_dir = os.path.join(root, "cifar-10-batches-py")
    assert error(open_source, root, kind="cifar100") == f"{batch_dir} is CIFAR-10, not cifar100"
    D.cifar100(tmp_path, n=2, n_test=2)
    os.rename(os.path.join(tmp_path, "cifar100", "cifar-100-python"), os.path.join(root, "cifar-100-python"))
    assert error(open_source, root) == f"{root} holds both cifar-10-batches-py and cifar-100-python; pass one of them"
    assert error(open_source, str(tmp_path / "cifar100"), kind="cifar10").startswith(
        f"{tmp_path / 'cifar100'}: no cifar-10-batches-py/ directory and no batches.meta file")


def test_npz_errors_name_file_and_key(tmp_path):
    p = str(tmp_path / "d.npz")
    np.savez(p, inputs=np.zeros((3, 2, 2)), y=np.zeros(3, np.int64))
    assert error(open_source, p) == f"{p}: missing key 'x' (keys: inputs, y); expected x [N, ...] and y int [N]"
    np.savez(p, x=np.zeros((3, 2, 2)))
    assert error(open_source, p).startswith(f"{p}: missing key 'y' (keys: x)")
    np.savez(p, x=np.zeros((3, 2, 2)), y=np.zeros(4, np.int64))
    assert error(open_source, p) == f"{p}: 'x' [3, 2, 2] and 'y' [4] must have the same length N (x [N, ...])"
    np.savez(p, x=np.zeros((3, 2, 2)), y=np.array([0.0, 1.5, 2.0]))
    assert error(open_source, p) == f"{p}: 'y' must be integer labels [N], got float64 [3]"
    write_npz(p, np.zeros((3, 2, 2)), np.array([0, 2, 1]), classes=["a", "b"])
    assert error(open_source, p) == f"{p}: 'y'[1] = 2 out of range 0..1 (2 names in 'classes'; 1 such label(s))"
    write_npz(p, np.zeros((3, 2, 2)), np.array([0, -1, 1]))
    assert error(open_source, p).startswith(f"{p}: 'y'[1] = -1 out of range")
    with open(p, "wb") as f:
        f.write(b"PK\x03\x04 broken")
    assert error(open_source, p).startswith(f"{p}: cannot read npz: ")
    assert error(open_source, str(tmp_path), kind="npz") == \
        f"{tmp_path} is a directory; --data-format npz takes a .npz file"


def test_frames_errors(tmp_path):
    root = D.frames(tmp_path, T=4, size=8, n=2, classes=2, splits=("test",))
    src = open_source(root)
    bad = src.ref(1).name
    np.savez(bad, events=np.zeros(3))
    with pytest.raises(BadSample, match=re.escape(f"{bad}: no key 'frames' (keys: events)")):
        src.load(1)
    np.savez(bad, frames=np.zeros((4, 3, 8, 8)))
    with pytest.raises(BadSample, match=re.escape(f"{bad}: frames must be [T, 2, H, W] (spikingjelly, 2 "
                                                  f"polarities), got [4, 3, 8, 8]")):
        src.load(1)
    write_frames(root, "test", ["0"], np.zeros((1, 8, 2, 8, 8)), [0], T=8)
    msg = error(open_source, root)
    assert msg.startswith(f"{root} holds 2 frame sets (frames_number_4_split_by_number, "
                          f"frames_number_8_split_by_number); pass the one")


def test_split_errors(tmp_path):
    root = D.frames(tmp_path, T=2, size=4, n=2, classes=1, splits=("train", "test"))
    d = os.path.join(root, "frames_number_2_split_by_number")
    assert error(open_source, d, split="dev") == "unknown split 'dev'; use one of test, val, train"
    assert error(open_source, "digits", split="val") == "unknown split 'val' for digits; use test or train"
    with pytest.raises(DataError) as e:
        open_source(D.cifar10(tmp_path, 1, 1), split="val")
    assert str(e.value) == "unknown split 'val' for CIFAR; use test or train"
    assert issubclass(DataError, DeployError) and issubclass(BadSample, DataError)
