"""Readers size what they allocate from what they have read, refuse labels outside the class
range, scan folders without looping through symlinks, and decode 16-bit / float / NaN samples
as documented (issue 24: defects 1, 2, 3, 9 and the reader crashes of 14)."""
import os
import pickle
import struct
import threading
import time
import zlib

import numpy as np
import pytest
import torchvision
from PIL import Image

from resformer_deploy.data import scan
from resformer_deploy.data.images import decode
from resformer_deploy.data.sources import BadSample, open_source
from resformer_deploy.util.memory_budget import size
from tests.bad_inputs.cases_data import png_header_only
from tests.support import datasets as D
from tests.support.errors import error

BUDGET = "RESFORMER_DEPLOY_MEMORY_BUDGET"


def class_dir(tmp_path):
    d = tmp_path / "set" / "only_class"
    os.makedirs(d, exist_ok=True)
    return d


def one_class_tree(tmp_path, n=2, classes=2):
    root = tmp_path / "imgs"
    for c in range(classes):
        os.makedirs(root / f"c{c}")
        for i in range(n):
            Image.fromarray(np.full((4, 4), 10 * c + i, np.uint8)).save(root / f"c{c}" / f"{i}.png")
    return root


# -- defect 2: symlinks, bounds, --limit ----------------------------------------------------------

def test_symlinks_back_into_the_tree_are_skipped_and_reported(tmp_path):
    root = one_class_tree(tmp_path, n=2, classes=3)
    expected = torchvision.datasets.ImageFolder(str(root)).samples  # before any link exists
    os.symlink("..", root / "c0" / "up")
    os.symlink("../..", root / "c1" / "up2")
    os.symlink(str(root / "c2" / "0.png"), root / "c1" / "same.png")  # a file of the tree, again
    t0 = time.monotonic()
    src = open_source(str(root))
    assert time.monotonic() - t0 < 5
    assert [(src.ref(i).name, src.label(i)) for i in range(len(src))] == expected
    assert sorted(src.skipped) == [(str(root / "c0" / "up"), "symlink into the data set"),
                                   (str(root / "c1" / "same.png"), "symlink into the data set"),
                                   (str(root / "c1" / "up2"), "symlink into the data set")]
    assert "3 link(s) not followed: " in src.describe() and "c0/up (symlink into the data set)" in src.describe()


def test_links_outside_the_tree_are_followed_once(tmp_path):
    root = one_class_tree(tmp_path, n=1, classes=2)
    outside = tmp_path / "shared"
    os.makedirs(outside / "deep")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(outside / "deep" / "x.png")
    os.symlink(str(outside), root / "c0" / "ext")
    expected = torchvision.datasets.ImageFolder(str(root)).samples  # torchvision follows links too
    os.symlink(str(outside), root / "c1" / "ext_again")  # the same directory a second time
    os.symlink(str(tmp_path), outside / "loop")  # outside, back to an ancestor of the tree
    src = open_source(str(root))
    got = [(src.ref(i).name, src.label(i)) for i in range(len(src))]
    assert got == expected  # c0/0.png, c0/ext/deep/x.png, c1/0.png
    assert (str(root / "c1" / "ext_again"), "directory already read") in src.skipped
    assert (str(root / "c0" / "ext" / "loop"), "symlink into the data set") in src.skipped  # as reached


def test_split_layout_links_into_the_other_split_are_not_followed(tmp_path):
    root = tmp_path / "set"
    for split in ("train", "test"):
        one_class_tree(root, n=1, classes=2)
        os.rename(root / "imgs", root / split)
    os.symlink(str(root / "train" / "c0"), root / "test" / "c0" / "from_train")  # train images in test
    src = open_source(str(root), split="test")
    assert [src.ref(i).name for i in range(len(src))] == [str(root / "test" / "c0" / "0.png"),
                                                         str(root / "test" / "c1" / "0.png")]
    assert src.skipped == [(str(root / "test" / "c0" / "from_train"), "symlink into the data set")]


def test_class_directory_linked_into_the_tree_is_refused(tmp_path):
    root = one_class_tree(tmp_path, n=1, classes=2)
    os.symlink(str(root / "c0"), root / "c9")
    assert error(open_source, str(root)) == \
        f"{root / 'c9'}: class directory is a symlink to {root / 'c0'}, inside the data set " \
        f"(its files would be read twice)"


def test_limit_stops_the_scan_at_the_first_samples_of_the_full_order(tmp_path):
    root = one_class_tree(tmp_path, n=3, classes=3)
    # directory names whose string order differs from a depth-first walk ('-' < '/')
    for sub in ("c0/a", "c0/a-x", "c0/a/b"):
        os.makedirs(root / sub, exist_ok=True)
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / sub / "z.png")
    full = open_source(str(root))
    assert [full.ref(i).name for i in range(len(full))] == \
        [p for p, _ in torchvision.datasets.ImageFolder(str(root)).samples]
    for n in (1, 4, 5, 7, len(full)):
        part = open_source(str(root), limit=n)
        assert [(part.ref(i).name, part.label(i)) for i in range(len(part))] == \
            [(full.ref(i).name, full.label(i)) for i in range(n)]
        assert part.classes == full.classes
    assert "scan stopped at --limit 5" in open_source(str(root), limit=5).describe()
    assert "scan stopped" not in full.describe()


def test_scan_bounded_in_entries_and_time(tmp_path, monkeypatch):
    root = one_class_tree(tmp_path, n=3, classes=2)
    monkeypatch.setattr(scan, "MAX_ENTRIES", 4)
    assert error(open_source, str(root)) == \
        f"{root}: scan stopped after 6 directory entries (more than 4); pass a smaller tree or --limit"
    monkeypatch.setattr(scan, "MAX_ENTRIES", 10 ** 6)
    monkeypatch.setattr(scan, "MAX_SECONDS", -1.0)
    msg = error(open_source, str(root))
    assert msg.startswith(f"{root}: scan stopped after ") and "(limit -1 s) and 3 directory entries" in msg


def test_listing_sized_against_the_budget(tmp_path, monkeypatch):
    root = one_class_tree(tmp_path, n=3, classes=2)
    monkeypatch.setattr(scan, "FIRST_SIZE_CHECK", 1)
    monkeypatch.setenv(BUDGET, "300")
    # c0's three paths: their lengths + 100 bytes each
    need = sum(len(str(root / "c0" / f"{i}.png")) + 100 for i in range(3))
    assert error(open_source, str(root)) == f"{root}: listing 3 files ({size(need)}) > memory budget {size(300)}"
    monkeypatch.setenv(BUDGET, str(2 ** 30))
    assert len(open_source(str(root))) == 6


# -- defects 3 and 9: images ------------------------------------------------------------------------

def test_image_beyond_the_budget_is_refused_from_its_header(tmp_path, monkeypatch):
    path = png_header_only(class_dir(tmp_path) / "big.png", 5000, 4000)
    monkeypatch.setenv(BUDGET, str(100 * 2 ** 20))
    # 20 M pixels x (3 decoded + 3 x 3 copies) bytes = 228.9 MiB
    assert error(decode_sample, path) == \
        f"{path}: decoding a 5,000x4,000 RGB image ({20_000_000 * 12 / 2 ** 20:.1f} MiB) > memory budget 100.0 MiB"
    monkeypatch.setenv(BUDGET, str(2 ** 40))
    assert "image file is truncated" in error(decode_sample, path)  # within the budget: decoded, and fails


def test_concurrent_decodes_stay_within_the_budget_together(tmp_path, monkeypatch):
    from resformer_deploy.data import images
    path = str(tmp_path / "a.png")
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(path)  # needs 100 x 100 x 12 = 120,000 B
    monkeypatch.setenv(BUDGET, "200000")
    done = []
    with images.reserve(100_000, 200_000):  # another decode in flight: 100,000 + 120,000 > budget
        t = threading.Thread(target=lambda: done.append(decode(path).shape))
        t.start()
        t.join(0.5)
        assert t.is_alive() and not done  # waits for the one in flight
    t.join(10)
    assert done == [(100, 100, 3)] and images._reserved == [0]


@pytest.mark.parametrize("side, limit", [(12000, 1), (20000, 2)])  # Pillow: warning above 1x, error above 2x
def test_decompression_bomb_is_one_line(tmp_path, side, limit):
    path = png_header_only(class_dir(tmp_path) / "bomb.png", side, side)
    assert error(decode_sample, path) == (f"{path}: refused by Pillow's decompression-bomb check: Image size "
                                          f"({side * side} pixels) exceeds limit of {limit * Image.MAX_IMAGE_PIXELS} "
                                          f"pixels, could be decompression bomb DOS attack.")


def decode_sample(path):
    """One file through the ImageFolder reader (its BadSample names the file): the file's directory
    is the one class of a data set."""
    src = open_source(os.path.dirname(os.path.dirname(path)), kind="imagefolder")
    return src.load([src.ref(i).name for i in range(len(src))].index(str(path)))


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    a = (np.arange(256, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)  # 0 .. 65535
    a[0, 0], a[0, 1] = 255, 256  # would be 255 both when clipped; >> 8 gives 0 and 1
    Image.fromarray(a).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    got = decode(str(tmp_path / "g16.png"))
    assert got.shape == (16, 16, 1) and got.dtype == np.uint8
    assert np.array_equal(got[:, :, 0], (a.astype(np.int64) // 256).astype(np.uint8))  # torchvision to_dtype
    assert got.max() == 255 and got[0, 0, 0] == 0 and got[0, 1, 0] == 1


def png16(path, a, color):
    """A 16-bit PNG of ``a`` (uint16 [H, W, channels]) written by hand (filter 0, big-endian
    samples, PNG spec 11.2.2), so the expected 8-bit values do not come from Pillow."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + a[r].astype(">u2").tobytes() for r in range(h))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, color, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return str(path)


@pytest.mark.parametrize("color, channels, rgb", [(0, 1, [0]), (4, 2, [0, 0, 0]), (2, 3, [0, 1, 2]),
                                                  (6, 4, [0, 1, 2])])
def test_every_16_bit_png_type_is_the_high_byte(tmp_path, color, channels, rgb):
    """gray, gray+alpha, RGB, RGBA at 16 bits: each 8-bit value is v >> 8 (alpha dropped, gray+alpha
    as RGB like pil_loader's convert("RGB"))."""
    a = np.random.RandomState(color).randint(0, 65536, (5, 7, channels)).astype(np.uint16)
    got = decode(png16(tmp_path / "p.png", a if channels > 1 else a[:, :, 0], color))
    assert np.array_equal(got, (a[:, :, rgb] >> 8).astype(np.uint8))


def test_float_and_32_bit_images_are_refused_naming_the_mode(tmp_path):
    path = class_dir(tmp_path) / "f.tif"
    Image.fromarray(np.zeros((4, 4), np.float32)).save(path)
    assert error(decode_sample, str(path)) == \
        f"{path}: 32-bit float image (Pillow mode F) has no 0..255 scale; save it with 8 or 16 bits " \
        f"per channel"


# -- defect 1 and 9: npz ----------------------------------------------------------------------------

def test_npz_label_2_62_refused_instantly(tmp_path):
    p = str(tmp_path / "y.npz")
    np.savez(p, x=np.zeros((16, 1, 8, 8), "f4"), y=np.r_[2 ** 62, [0] * 15])
    t0 = time.monotonic()
    assert error(open_source, p, num_classes=10) == \
        f"{p}: 'y'[0] = {2 ** 62} out of range 0..9 (10 classes of the classifier; the file has no 'classes' " \
        f"names; 1 such label(s))"
    assert error(open_source, p) == \
        f"{p}: 'y'[0] = {2 ** 62} out of range 0..99999 (100,000 classes at most without 'classes' names; " \
        f"1 such label(s))"
    assert time.monotonic() - t0 < 2
    np.savez(p, x=np.zeros((2, 1, 8, 8), "f4"), y=np.array([0, 2 ** 64 - 1], np.uint64))
    assert f"'y'[1] = {2 ** 64 - 1} out of range 0..9" in error(open_source, p, num_classes=10)
    np.savez(p, x=np.zeros((2, 1, 8, 8), "f4"), y=np.array([0, 3]))
    src = open_source(p, num_classes=10)
    assert len(src.classes) == 10 and src.describe().endswith("10 classes (the classifier's)")
    assert len(open_source(p).classes) == 4


def test_npz_declared_sizes_checked_before_reading(tmp_path, monkeypatch):
    p = str(tmp_path / "d.npz")
    np.savez_compressed(p, x=np.zeros((4, 1, 8, 8), "f4"), y=np.zeros(4, int), classes=np.zeros(10 ** 6, "U1"))
    assert error(open_source, p) == f"{p}: 'classes' declares 1,000,000 names, more than 100,000"
    np.savez_compressed(p, x=np.zeros((4096, 1, 64, 64), "f4"), y=np.zeros(4096, int))  # 64 MiB compressed x
    monkeypatch.setenv(BUDGET, str(2 ** 20))
    assert error(open_source, p) == \
        f"{p}: 'x' declares [4096, 1, 64, 64] float32 (16,777,216 values) (64.0 MiB) > memory budget 1.0 MiB"
    np.savez(p, x=np.zeros((4096, 1, 64, 64), "f4"), y=np.zeros(4096, int))  # stored: memory-mapped, not read
    assert len(open_source(p)) == 4096


def test_npz_nan_inf_samples_name_file_and_index(tmp_path):
    p = str(tmp_path / "nan.npz")
    x = np.zeros((5, 1, 4, 4), "f4")
    x[3, 0, 2, 1], x[3, 0, 3, 3] = np.nan, -np.inf
    np.savez(p, x=x, y=np.zeros(5, int))
    src = open_source(p)
    assert src.load(2).shape == (1, 4, 4)
    with pytest.raises(BadSample) as info:
        src.load(3)
    assert str(info.value) == "nan.npz[x][3]: 2 NaN/inf value(s), the first at index [0, 2, 1]"


def test_frames_nan_and_declared_size(tmp_path, monkeypatch):
    root = D.frames(tmp_path, T=4, size=8, n=2, classes=2, splits=("test",))
    src = open_source(root)
    path = src.ref(1).name
    f = np.zeros((4, 2, 8, 8), np.float32)
    f[1, 1, 0, 0] = np.inf
    np.savez(path, frames=f)
    with pytest.raises(BadSample) as info:
        src.load(1)
    assert str(info.value) == f"{path}: frames: 1 NaN/inf value(s), the first at index [1, 1, 0, 0]"
    np.savez_compressed(path, frames=np.zeros((64, 2, 128, 128), np.uint8))  # 2 MiB of uint8 -> float32
    monkeypatch.setenv(BUDGET, str(2 ** 20))
    with pytest.raises(BadSample) as info:
        src.load(1)
    assert str(info.value) == (f"{path}: 'frames' declares [64, 2, 128, 128] uint8 (2,097,152 values) (10.0 MiB) > "
                               f"memory budget 1.0 MiB")


# -- 14 and 9: CIFAR ----------------------------------------------------------------------------------

def _cifar(tmp_path, **change):
    root = D.cifar10(tmp_path, n=5, n_test=4)
    batch_dir = os.path.join(root, "cifar-10-batches-py")
    for name, (key, value) in change.items():
        path = os.path.join(batch_dir, name)
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        d[key] = value
        with open(path, "wb") as f:
            pickle.dump(d, f, protocol=2)
    return batch_dir


@pytest.mark.parametrize("labels, expect", [
    ([b"0", b"1", b"2", b"3"], "'labels'[0] is bytes b'0', not an integer label"),
    ([0, 1, 10 ** 30, 3], f"'labels'[2] = {10 ** 30} out of range 0..9 (10 classes; 1 such label(s))"),
    ([0, 0.7, 1, 2], "'labels'[1] is float 0.7, not an integer label"),
    (np.array([0, 0.7, 1, 2]), "'labels' must be integer labels [N], got float64 [4]"),
    ([0, True, 1, 2], "'labels'[1] is bool True, not an integer label"),
    ("0123", "'labels' must be a list of integer labels, got str"),
])
def test_cifar_labels_must_be_integers_in_range(tmp_path, labels, expect):
    batch_dir = _cifar(tmp_path, test_batch=(b"labels", labels))
    assert error(open_source, batch_dir) == f"{os.path.join(batch_dir, 'test_batch')}: {expect}"


def test_cifar_label_names_must_be_names(tmp_path):
    batch_dir = _cifar(tmp_path, **{"batches.meta": (b"label_names", 10)})
    assert error(open_source, batch_dir) == \
        f"{os.path.join(batch_dir, 'batches.meta')}: 'label_names' must be a list of class names, got int 10"


def test_cifar_pickle_sized_before_unpickling(tmp_path, monkeypatch):
    batch_dir = _cifar(tmp_path)
    monkeypatch.setenv(BUDGET, "1000")
    meta = os.path.join(batch_dir, "batches.meta")
    n = os.path.getsize(meta)
    assert error(open_source, batch_dir) == \
        f"{meta}: unpickling {size(n)} (up to 8x in memory) ({size(8 * n)}) > memory budget {size(1000)}"
