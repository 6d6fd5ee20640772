"""Readers: labels, class order and decoded samples against torchvision / pickle / numpy directly."""
import os
import pickle
import shutil

import numpy as np
import pytest
import torchvision
import torchvision.datasets.cifar as tv_cifar
from PIL import Image
from torchvision.datasets.folder import pil_loader

from resformer_deploy.data.digits import load_digits_split
from resformer_deploy.data.sources import open_source
from resformer_deploy.data.writers import write_image_folder
from tests.support import datasets as D


@pytest.fixture
def tv_cifar_unchecked(monkeypatch):
    """torchvision's CIFAR readers, without the md5 check of the official archive's files."""
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)


def test_imagefolder_matches_torchvision(tmp_path):
    root = D.image_folder(tmp_path, n_per_class=3, classes=5, fmt="JPEG")
    # what ImageFolder also accepts or skips: nested directory, upper-case extension, other files
    os.makedirs(os.path.join(root, "kiwi", "nested"))
    Image.fromarray(D.random_image(np.random.RandomState(5), 20, 10)).save(
        os.path.join(root, "kiwi", "nested", "A.PNG"))
    open(os.path.join(root, "apple", "notes.txt"), "w").write("not an image")
    src = open_source(root)
    ref = torchvision.datasets.ImageFolder(root)
    assert src.kind == "imagefolder" and src.modality == "image"
    assert src.classes == tuple(ref.classes) == ("Mango", "apple", "banana", "kiwi", "zebra")
    assert [(src.ref(i).name, src.label(i)) for i in range(len(src))] == ref.samples
    assert len(src) == 16
    for i in (0, 7, 15):
        assert np.array_equal(src.load(i), np.asarray(pil_loader(ref.samples[i][0])))
    assert src.describe() == f"ImageFolder {root}: 16 images, 5 classes"


def test_grayscale_file_stays_one_channel(tmp_path):
    root = D.image_folder(tmp_path, n_per_class=1, classes=2, gray=True)
    src = open_source(root)
    path = src.ref(0).name
    a = src.load(0)
    assert a.shape[2] == 1 and Image.open(path).mode == "L"
    assert np.array_equal(a[:, :, 0], np.asarray(Image.open(path)))


def test_imagefolder_split_layout(tmp_path):
    imgs = [D.random_image(np.random.RandomState(i), 12, 9) for i in range(4)]
    write_image_folder(tmp_path / "in" / "train", imgs, [0, 0, 1, 1], ["b", "a"])
    write_image_folder(tmp_path / "in" / "val", imgs[:2], [0, 1], ["b", "a"])
    test, train = open_source(str(tmp_path / "in")), open_source(str(tmp_path / "in"), split="train")
    assert test.location == str(tmp_path / "in" / "val") and test.split == "val" and len(test) == 2
    assert train.location == str(tmp_path / "in" / "train") and len(train) == 4
    assert train.classes == ("a", "b") and list(train.labels) == [0, 0, 1, 1]  # "a" holds files 2, 3
    assert test.identity != train.identity
    assert test.root == train.root == str(tmp_path / "in")


def test_plain_folder_has_no_splits(tmp_path):
    root = D.image_folder(tmp_path, n_per_class=1, classes=2)
    a, b = open_source(root, split="test"), open_source(root, split="train")
    assert a.split is None and a.identity == b.identity  # same samples whatever the split


def _unpickle(path):  # the recipe of https://www.cs.toronto.edu/~kriz/cifar.html
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


@pytest.mark.parametrize("kind,build,reader", [("cifar10", D.cifar10, torchvision.datasets.CIFAR10),
                                                ("cifar100", D.cifar100, torchvision.datasets.CIFAR100)])
def test_cifar_matches_torchvision(tmp_path, tv_cifar_unchecked, kind, build, reader):
    root = build(tmp_path, n=12, n_test=7)
    for split, train in (("test", False), ("train", True)):
        src = open_source(root, split=split)
        ref = reader(root, train=train)
        assert src.kind == kind and src.classes == tuple(ref.classes) and len(src) == (12 if train else 7)
        assert list(src.labels) == ref.targets
        assert np.array_equal(np.stack([src.load(i) for i in range(len(src))]), ref.data)


def test_cifar10_batches_and_row_layout(tmp_path):
    root = D.cifar10(tmp_path, n=12, n_test=7)
    train = open_source(root, split="train")
    # 12 images over 5 batches in order: 3, 3, 2, 2, 2
    assert [train.ref(i).name for i in (0, 2, 3, 6, 11)] == [
        "data_batch_1[0]", "data_batch_1[2]", "data_batch_2[0]", "data_batch_3[0]", "data_batch_5[1]"]
    # the row layout by hand: R plane, G plane, B plane, each row-major 32x32
    row = _unpickle(os.path.join(root, "cifar-10-batches-py", "data_batch_2"))[b"data"][1]
    img = train.load(4)
    assert img[5, 7, 0] == row[5 * 32 + 7] and img[5, 7, 1] == row[1024 + 5 * 32 + 7]
    assert img[31, 0, 2] == row[2048 + 31 * 32]


def test_cifar100_layout(tmp_path):
    root = D.cifar100(tmp_path, n=9, n_test=5)
    test = open_source(root)
    assert len(test.classes) == 100 and test.ref(4).name == "test[4]"
    assert _unpickle(os.path.join(root, "cifar-100-python", "test"))[b"coarse_labels"] == \
        [v // 5 for v in test.labels]


def test_cifar_batch_directory_itself_and_str_keys(tmp_path):
    root = D.cifar10(tmp_path, n=5, n_test=4)
    batch_dir = os.path.join(root, "cifar-10-batches-py")
    # a Python 3 re-pickle with str keys (protocol 4) reads the same
    d = _unpickle(os.path.join(batch_dir, "test_batch"))
    with open(os.path.join(batch_dir, "test_batch"), "wb") as f:
        pickle.dump({k.decode(): v for k, v in d.items()}, f, protocol=4)
    src = open_source(batch_dir)
    assert src.location == batch_dir and list(src.labels) == d[b"labels"]
    assert np.array_equal(src.load(3), d[b"data"][3].reshape(3, 32, 32).transpose(1, 2, 0))


def test_frames_match_datasetfolder(tmp_path):
    root = D.frames(tmp_path, T=4, size=16, n=12, classes=11)  # classes '0'..'10': '10' sorts before '2'
    os.makedirs(os.path.join(root, "events_np"))  # spikingjelly's other directories do not matter
    src = open_source(root)
    split_dir = os.path.join(root, "frames_number_4_split_by_number", "test")
    ref = torchvision.datasets.DatasetFolder(split_dir, loader=lambda p: np.load(p)["frames"], extensions=(".npz",))
    assert src.kind == "frames" and src.T == 4 and src.location == split_dir
    assert src.classes == tuple(ref.classes) and src.classes[:3] == ("0", "1", "10")
    assert [(src.ref(i).name, src.label(i)) for i in range(len(src))] == ref.samples
    x = src.load(5)
    assert x.dtype == np.float32 and x.shape == (4, 2, 16, 16)
    assert np.array_equal(x, np.load(ref.samples[5][0])["frames"])
    train = open_source(os.path.join(root, "frames_number_4_split_by_number"), split="train")
    assert train.location.endswith(os.path.join("frames_number_4_split_by_number", "train"))


def test_frames_integer_counts_and_plain_class_dirs(tmp_path):
    root = D.frames(tmp_path, T=3, size=8, n=4, classes=2, dtype=np.int16, splits=("test",))
    split_dir = os.path.join(root, "frames_number_3_split_by_number", "test")
    given = open_source(split_dir, split="train")  # a split directory passed as such is read
    assert given.location == split_dir and given.split == "test" and given.T == 3
    plain = str(tmp_path / "plain")  # class dirs of .npz directly (as CIFAR10-DVS in spikingjelly)
    shutil.copytree(split_dir, plain)
    src = open_source(plain)
    x = src.load(1)
    assert src.kind == "frames" and src.split is None and src.T is None and x.dtype == np.float32
    assert np.array_equal(x, np.load(src.ref(1).name)["frames"].astype(np.float32))
    assert [src.ref(i).name[len(plain):] for i in range(len(src))] == \
        [given.ref(i).name[len(split_dir):] for i in range(len(given))]


def test_npz_memory_mapped_and_compressed(tmp_path):
    path = D.npz(tmp_path, (3, 8, 8), 6, num_classes=3, classes=["cat", "dog", "eel"])
    src = open_source(path)
    ref = np.load(path)
    assert src.kind == "npz" and src.modality == "tensor" and isinstance(src.x, np.memmap)
    assert src.classes == ("cat", "dog", "eel") and src.classes_known
    assert list(src.labels) == ref["y"].tolist() and src.ref(4).name == "data.npz[x][4]"
    assert np.array_equal(src.load(4), ref["x"][4])
    comp = str(tmp_path / "comp.npz")
    np.savez_compressed(comp, x=ref["x"].astype(np.float64), y=ref["y"].astype(np.int32))
    src2 = open_source(comp)
    assert not src2.classes_known and src2.classes == ("0", "1", "2")
    assert src2.load(2).dtype == np.float32 and np.array_equal(src2.load(2), ref["x"][2])


def test_digits_split_unchanged():
    s = load_digits_split()
    test, train = open_source("digits"), open_source("digits", split="train")
    assert len(test) == len(s.y_test) and len(train) == len(s.y_train) == 1797 - len(test)
    assert list(test.labels) == s.y_test.tolist() and list(train.labels) == s.y_train.tolist()
    assert np.array_equal(test.load(3), s.x_test[3].numpy()) and test.load(3).shape == (1, 8, 8)
    assert test.ref(3).name == f"digits[{int(s.test_index[3])}]"
    assert test.identity != train.identity


def test_kind_forces_reader(tmp_path):
    root = D.image_folder(tmp_path, n_per_class=1, classes=2)
    for c in ("apple", "zebra"):
        np.savez(os.path.join(root, c, "x.npz"), frames=np.zeros((2, 2, 4, 4)))
    images = open_source(root, kind="imagefolder")
    assert images.kind == "imagefolder" and len(images) == 2
    frames = open_source(root, kind="frames")
    assert frames.kind == "frames" and [frames.ref(i).name for i in range(2)] == [
        os.path.join(root, "apple", "x.npz"), os.path.join(root, "zebra", "x.npz")]
    with pytest.raises(Exception, match="both images"):
        open_source(root)
