"""Bad data sets (issue 24: defects 1, 2, 3, 9 and the reader crashes of 14), each run under a
memory bound: the command runs in a forked child whose address space (RLIMIT_AS) may grow by
``BoundedCase.memory`` at most, so an exhaustion bug fails the case (MemoryError, exit 1) instead
of the machine, and a hang fails it after ``timeout`` seconds.

Every case is small: the files are written in milliseconds, and the reader must refuse them from
what it has read so far (labels, headers), before allocating what they declare.
"""
import json
import os
import pickle
import resource
import select
import shutil
import signal
import struct
import time
import zlib
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from PIL import Image

from tests.bad_inputs import Case
from tests.conftest import DIGITS_CKPT

D = str(DIGITS_CKPT)
BUDGET_ENV = "RESFORMER_DEPLOY_MEMORY_BUDGET"
GiB = 2 ** 30


def run_bounded(fn, memory: int = 2 * GiB, timeout: float = 120.0):
    """``fn()`` (returning a JSON-able dict) in a forked child whose address space may grow by
    ``memory`` bytes; {"error": ...} when it raised, was killed or outlived ``timeout``."""
    import psutil
    import torch  # imported here, before the bound: its libraries map GiBs of address space
    import resformer_deploy.cli.main  # noqa: F401
    del torch
    limit = psutil.Process().memory_info().vms + int(memory)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns into pytest
        code = 1
        try:
            os.close(r)
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
            try:
                import torch
                torch.set_num_threads(1)  # the parent's OpenMP pool does not survive fork
                out = fn()
            except BaseException as e:  # noqa: B902 - reported to the parent, which fails the test
                out = {"error": f"{type(e).__name__}: {e}"}
            with os.fdopen(w, "w") as f:
                f.write(json.dumps(out))
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                return {"error": f"timeout: still running after {timeout:.0f} s"}
            data = os.read(r, 1 << 16)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    if not chunks:
        return {"error": f"child ended without a result (wait status {status})"}
    return json.loads(b"".join(chunks))


def _invoke(argv, env):
    from click.testing import CliRunner
    from resformer_deploy.cli.main import main
    r = CliRunner().invoke(main, argv, env=env or None)
    return {"exit_code": r.exit_code, "output": r.output, "stderr": r.stderr,
            "exception": None if r.exception is None else f"{type(r.exception).__name__}: {r.exception}"}


@dataclass(frozen=True)
class BoundedCase(Case):
    """A catalogue case whose command runs under a memory bound (see run_bounded)."""
    memory: int = 2 * GiB
    timeout: float = 120.0

    def invoke(self, argv):
        out = run_bounded(lambda: _invoke(argv, self.env), self.memory, self.timeout)
        if "error" in out:
            return SimpleNamespace(exit_code=None, output="", stderr=out["error"], exception=out["error"])
        return SimpleNamespace(**out)


# -- files the cases need ------------------------------------------------------------------------

def _npz(tmp, name="d.npz", compressed=False, **arrays):
    path = str(tmp / name)
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


X16 = np.zeros((16, 1, 8, 8), np.float32)


def _nan_npz(tmp):
    x = X16.copy()
    x[3, 0, 2, 5] = np.nan
    return _npz(tmp, "nan.npz", x=x, y=np.zeros(16, np.int64))


def png_header_only(path, w, h, color=2, depth=8):
    """A PNG declaring w x h whose data is a few bytes: decoding it would fail as truncated, so a
    refusal naming the size shows the check ran before decoding. Returns the path."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return str(path)


def _digit_folder(tmp, first=None, links=False):
    """10 class folders (the digits model's) of 8x8 PNGs; ``first(path)`` writes class 0's first
    file instead; ``links``: a '..' and a '../..' symlink inside class folders (defect 2)."""
    root = tmp / "imgs"
    for c in range(10):
        os.makedirs(root / str(c))
        for i in range(2):
            Image.fromarray(np.full((8, 8), 25 * c, np.uint8)).save(root / str(c) / f"img{i}.png")
    if first is not None:
        os.remove(root / "0" / "img0.png")
        first(str(root / "0" / "img0.png"))
    if links:
        os.symlink("..", root / "0" / "up")
        os.symlink("../..", root / "1" / "up2")
    return str(root)


def _garbage(path):
    with open(path, "wb") as f:
        f.write(b"not an image")


def _float_tiff(path):  # img0.tif in place of img0.png
    Image.fromarray(np.zeros((8, 8), np.float32)).save(path[:-4] + ".tif")


def _int32_tiff(path):  # img0.tif in place of img0.png
    Image.fromarray(np.zeros((8, 8), np.int32)).save(path[:-4] + ".tif")


def _cifar(tmp, key=None, value=None, meta_names=None, n=4):
    """cifar-10-batches-py of ``n`` test images with test_batch[key] = value, or batches.meta
    label_names replaced."""
    d = tmp / "cifar" / "cifar-10-batches-py"
    os.makedirs(d)
    names = [f"c{i}".encode() for i in range(10)] if meta_names is None else meta_names
    with open(d / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": 4}, f, protocol=2)
    batch = {b"batch_label": b"testing batch 1 of 1", b"data": np.zeros((n, 3072), np.uint8),
             b"labels": [i % 10 for i in range(n)], b"filenames": [f"{i}.png".encode() for i in range(n)]}
    if key is not None:
        batch[key] = value
    with open(d / "test_batch", "wb") as f:
        pickle.dump(batch, f, protocol=2)
    return str(tmp / "cifar")


def _ev(make, *extra):  # evaluate the digits model on a data set made by make(tmp)
    return lambda tmp: ["evaluate", D, "--data", make(tmp), *extra]


CASES = [
    # defect 1: class lists never built from label values
    BoundedCase("data_npz_label_2_62", _ev(lambda t: _npz(t, "y.npz", x=X16, y=np.r_[2 ** 62, [0] * 15])),
                ["y.npz: 'y'[0] = 4611686018427387904 out of range 0..9", "10 classes of the classifier"],
                timeout=60),
    BoundedCase("data_npz_label_uint64_max",
                _ev(lambda t: _npz(t, x=X16, y=np.array([0] * 15 + [2 ** 64 - 1], np.uint64))),
                ["d.npz: 'y'[15] = 18446744073709551615 out of range 0..9"]),
    BoundedCase("data_npz_negative_label", _ev(lambda t: _npz(t, x=X16, y=np.r_[[0] * 15, -3])),
                ["d.npz: 'y'[15] = -3 out of range 0..9"]),
    BoundedCase("data_npz_classes_declared_huge",
                _ev(lambda t: _npz(t, compressed=True, x=X16, y=np.zeros(16, np.int64),
                                   classes=np.zeros(10 ** 6, "U1"))),
                ["d.npz: 'classes' declares 1,000,000 names, more than 100,000"]),
    BoundedCase("data_npz_labels_declared_beyond_budget",  # 10**8 labels: 763 MiB declared, 0.8 MiB stored
                _ev(lambda t: _npz(t, compressed=True, x=X16, y=np.zeros(10 ** 8, np.int64))),
                ["d.npz: 'y' declares [100000000] int64 (100,000,000 values) (762.9 MiB) > memory budget 64.0 MiB"],
                env={BUDGET_ENV: str(64 * 2 ** 20)}),
    BoundedCase("data_npz_compressed_x_beyond_budget",  # 80 MiB declared, 80 KiB stored: read whole if compressed
                _ev(lambda t: _npz(t, compressed=True, x=np.zeros((327_680, 1, 8, 8), np.float32),
                                   y=np.zeros(327_680, np.int64))),
                ["d.npz: 'x' declares [327680, 1, 8, 8] float32 (20,971,520 values) (80.0 MiB) > memory budget "
                 "64.0 MiB"],
                env={BUDGET_ENV: str(64 * 2 ** 20)}),
    BoundedCase("data_npz_float_labels", _ev(lambda t: _npz(t, x=X16, y=np.full(16, 0.7))),
                ["d.npz: 'y' must be integer labels [N], got float64 [16]"]),
    # defect 9: NaN/inf samples named by file and index
    BoundedCase("data_npz_nan_pixel", _ev(_nan_npz),
                ["nan.npz[x][3]: 1 NaN/inf value(s), the first at index [0, 2, 5]"]),
    # defect 2: '..' links do not loop or multiply; the scan ends and reaches the bad file
    BoundedCase("data_folder_dotdot_links_scan_ends", _ev(lambda t: _digit_folder(t, _garbage, links=True),
                                                          "--limit", "5"),
                ["imgs/0/img0.png: cannot decode image"], timeout=60),
    BoundedCase("data_folder_class_dir_linked_into_tree",
                lambda tmp: ["evaluate", D, "--data", _linked_class(tmp)],
                ["imgs/9: class directory is a symlink to", "inside the data set"]),
    # defect 3: decoded size against the budget from the header, Pillow's bomb check one line
    BoundedCase("data_image_header_beyond_budget",
                lambda tmp: ["verify", D, "--samples", "1", "--precision", "float64", "--data",
                             _digit_folder(tmp, lambda p: png_header_only(p, 6000, 5000))],
                ["imgs/0/img0.png: decoding a 6,000x5,000 RGB image (343.3 MiB) > memory budget 200.0 MiB"],
                env={BUDGET_ENV: str(200 * 2 ** 20)}),
    BoundedCase("data_image_decompression_bomb",
                _ev(lambda t: _digit_folder(t, lambda p: png_header_only(p, 12000, 12000))),
                ["imgs/0/img0.png: refused by Pillow's decompression-bomb check: Image size (144000000 pixels) "
                 "exceeds limit of"]),
    BoundedCase("data_image_int32_mode", _ev(lambda t: _digit_folder(t, _int32_tiff)),
                ["imgs/0/img0.tif: 32-bit integer image (Pillow mode I) has no 0..255 scale"]),
    BoundedCase("data_image_float_mode", _ev(lambda t: _digit_folder(t, _float_tiff)),
                ["imgs/0/img0.tif: 32-bit float image (Pillow mode F) has no 0..255 scale"]),
    # 14: CIFAR labels and names of the wrong type
    BoundedCase("data_cifar_labels_bytes", _ev(lambda t: _cifar(t, b"labels", [b"0", b"1", b"2", b"3"])),
                ["test_batch: 'labels'[0] is bytes b'0', not an integer label"]),
    BoundedCase("data_cifar_label_10_30", _ev(lambda t: _cifar(t, b"labels", [0, 1, 10 ** 30, 3])),
                [f"test_batch: 'labels'[2] = {10 ** 30} out of range 0..9"]),
    BoundedCase("data_cifar_float_label", _ev(lambda t: _cifar(t, b"labels", [0, 0.7, 1, 2])),
                ["test_batch: 'labels'[1] is float 0.7, not an integer label"]),
    BoundedCase("data_cifar_pickle_beyond_budget", _ev(lambda t: _cifar(t, n=64)),  # the checkpoint fits
                ["cifar-10-batches-py/test_batch: unpickling 193.9 KiB ",
                 "(up to 8x in memory) (1.5 MiB) > memory budget 1,000.0 KiB"], env={BUDGET_ENV: str(1000 * 1024)}),
    BoundedCase("data_cifar_label_names_int", _ev(lambda t: _cifar(t, meta_names=10)),
                ["batches.meta: 'label_names' must be a list of class names, got int 10"]),
]


def _linked_class(tmp):
    root = _digit_folder(tmp)
    shutil.rmtree(os.path.join(root, "9"))
    os.symlink(os.path.join(root, "8"), os.path.join(root, "9"))
    return root
