"""Readers for the data sets users keep on disk (``--data SOURCE``).

Every reader is a ``DataSource``: labels of all samples are read when it is opened (a few bytes
a sample), the samples themselves one at a time by ``load(i)``, so memory does not grow with the
data set. Layouts, as the upstream tools write them:

* ``imagefolder``: torchvision ``ImageFolder`` (torchvision/datasets/folder.py): classes are the
  sorted sub-directory names, label = position in that list; the files of each class are found
  in the order of ``sorted(os.walk(...))`` / ``sorted(fnames)`` and kept if their lower-cased
  name ends in one of ``IMG_EXTENSIONS``, except that symlinks back into the tree are not
  followed and the scan is bounded (data/scan.py); a class directory without files is an error;
  images are decoded like ``pil_loader`` (``Image.open(...).convert("RGB")``) except that
  grayscale files stay one channel (``Preprocessor`` repeats it to RGB for a 3-channel model,
  which is what ``convert("RGB")`` does) and 16-bit ones are scaled, not clipped
  (data/images.py). A root holding ``train/`` and ``val/`` or ``test/`` directories of class
  directories (the ImageNet layout of the official SpikingResformer main.py) is read by split.
* ``cifar10`` / ``cifar100``: the "python version" of https://www.cs.toronto.edu/~kriz/cifar.html
  (``cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta``; ``cifar-100-python/
  train, test, meta``), pickled dicts whose ``data`` row is the R, G and B planes of a 32x32
  image. Unpickled with ``encoding="bytes"`` (the page's ``unpickle`` recipe), keys accepted as
  bytes or str, and only numpy's array classes may be named in the pickle.
* ``frames``: spikingjelly integrated frames (``data_type='frame', frames_number=T,
  split_by='number'``): ``frames_number_{T}_split_by_number/{train,test}/{class}/*.npz`` with
  key ``frames`` [T, 2, H, W], classes and labels as torchvision ``DatasetFolder`` (which
  spikingjelly's ``NeuromorphicDatasetFolder`` is), loaded as float32 as spikingjelly's
  ``load_npz_frames`` does.
* ``npz``: one NumPy file with ``x`` [N, ...] (the model's input per sample, as stored) and ``y``
  int [N]; optional ``classes`` (names; without them, the classifier's classes). Uncompressed
  ``x`` is memory-mapped; every array is sized from its .npy header before it is read.
* ``digits``: the built-in scikit-learn digits split of ``resformer_deploy.data.digits``.
"""
import abc
import bisect
import os
import pickle
import re
import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from resformer_deploy.data import checks
from resformer_deploy.data.scan import Walk
from resformer_deploy.errors import DeployError, one_line, summarize

KINDS = ("imagefolder", "cifar10", "cifar100", "frames", "npz", "digits")
# torchvision/datasets/folder.py IMG_EXTENSIONS (matched case-insensitively, like
# has_file_allowed_extension)
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
FRAME_EXTENSIONS = (".npz",)
FRAMES_DIR = re.compile(r"^frames_number_(\d+)_split_by_number$")
CIFAR10_DIR, CIFAR100_DIR = "cifar-10-batches-py", "cifar-100-python"
# which directory a split reads in a root/{train,val,test} layout, in order of preference
SPLIT_DIRS = {"test": ("test", "val"), "val": ("val", "test"), "train": ("train",)}


class DataError(DeployError):
    """A data set that cannot be read: missing, empty, of an unknown layout or inconsistent."""


class BadSample(DataError):
    """One sample that cannot be decoded (unreadable or truncated file, missing key)."""


@dataclass(frozen=True)
class SampleRef:
    index: int
    name: str  # file path, or "test_batch[17]", "data.npz[x][3]", "digits[85]"


class DataSource(abc.ABC):
    kind = ""
    modality = ""  # "image" | "frames" | "tensor"
    class_mapping = None  # folder sources: data.imagenet_classes.ClassMapping (set by open_source)

    def __init__(self, root, location, classes, labels, split=None, classes_known=True):
        self.root = root                # what the user passed, resolved
        self.location = location        # the directory / file actually read (split dir, batch dir)
        self.split = split              # split name used, None when the layout has no splits
        self.classes = tuple(str(c) for c in classes)
        self.classes_known = classes_known  # False: npz without 'classes' (classifier's count / max label + 1)
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= len(self.classes)))
        if len(bad):
            i = int(bad[0])
            raise DataError(f"{location}: label {int(self.labels[i])} of {self.ref(i).name} out of range "
                            f"0..{len(self.classes) - 1} ({len(self.classes)} classes; {len(bad)} such sample(s))")

    def __len__(self) -> int:
        return len(self.labels)

    def label(self, i) -> int:
        return int(self.labels[i])

    @property
    def identity(self):
        """What the samples are read from: two sources with equal identities hold the same samples
        (used to refuse calibrating on the evaluation samples)."""
        return (self.kind, os.path.realpath(self.location) if self.kind != "digits" else "digits", self.split)

    @abc.abstractmethod
    def ref(self, i) -> SampleRef:
        """Index and printable name of sample i."""

    @abc.abstractmethod
    def load(self, i) -> np.ndarray:
        """image: uint8 [H, W, 3] RGB or [H, W, 1] grayscale; frames: float32 [T, 2, H, W];
        tensor: float32 as stored."""

    @abc.abstractmethod
    def describe(self) -> str:
        """One line: what was read and how much of it."""

    def _count(self, noun):
        # class folders found (a mapping may label them in a larger label space, e.g. ImageNet's 1000)
        n, k = len(self), len(self.classes if self.class_mapping is None else self.class_mapping.folders)
        return f"{n:,} {noun}{'' if n == 1 else 's'}, {k:,} class{'' if k == 1 else 'es'}"


# ---------------------------------------------------------------------------------------------
# folders of class directories (ImageFolder, spikingjelly frames)


def _subdirs(d):
    try:
        return sorted(e.name for e in os.scandir(d) if e.is_dir())
    except OSError as e:
        raise DataError(f"cannot list {d}: {e.strerror or e}") from None


def _split_dir(d, split, splits_only=False):
    """``d/<split dir>`` when d holds train/ and val/ or test/ directories that each hold class
    directories (``splits_only``: any of them, as in a spikingjelly frames directory), else
    (d, None)."""
    subs = _subdirs(d)
    layout = [s for s in ("train", "val", "test") if s in subs and _subdirs(os.path.join(d, s))]
    if not layout or (not splits_only and ("train" not in layout or len(layout) < 2)):
        return d, None
    if split not in SPLIT_DIRS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLIT_DIRS)}")
    for name in SPLIT_DIRS[split]:
        if name in layout:
            return os.path.join(d, name), name
    raise DataError(f"{d}: no {split} split (found {', '.join(layout)} directories of classes)")


def _scan_classes(d, extensions, limit=None, tree=None):
    """torchvision find_classes + make_dataset: (classes, [(path, label)], empty classes, walk)
    with the files of each class in the order of sorted(os.walk(class_dir)) and sorted(fnames),
    symlinks back into the tree (``tree``: the data set's root, default d) not followed
    (data/scan.py); ``limit``: the first that many."""
    classes = _subdirs(d)
    samples, empty, walk = [], [], Walk(d, limit, tree=tree or d)
    for label, c in enumerate(classes):
        if walk.full:
            break  # --limit: the classes after the last sample read are not scanned
        walk.classes = label + 1
        n, top = len(samples), os.path.join(d, c)
        if os.path.islink(top) and walk.inside_tree(top):
            raise DataError(f"{top}: class directory is a symlink to {os.path.realpath(top)}, inside the data set "
                            f"(its files would be read twice)")
        samples += [(path, label) for path in walk.files(top, extensions)]
        if len(samples) == n:
            empty.append(c)
    return classes, samples, empty, walk


def _only(scan, extensions):
    """The part of a scan of several kinds of files whose names end in ``extensions``."""
    classes, samples, _, walk = scan
    kept = [(p, c) for p, c in samples if p.lower().endswith(extensions)]
    labels = {c for _, c in kept}
    return classes, kept, [c for i, c in enumerate(classes[:walk.classes]) if i not in labels], walk


def _check_scan(d, classes, samples, empty, noun, extensions):
    exts = " ".join(extensions)
    if not classes:
        raise DataError(f"{d}: no class sub-directories (expected {d}/<class>/<file> with {exts})")
    if not samples:
        raise DataError(f"{d}: no {noun} ({exts}) in its {len(classes)} class directories")
    if empty:
        raise DataError(f"{d}: no {noun} ({exts}) in class director{'y' if len(empty) == 1 else 'ies'} "
                        f"{summarize(empty)} (a class without samples would shift the labels)")


class _FolderSource(DataSource):
    extensions = ()
    noun = ""

    def __init__(self, root, directory, split, scan=None, limit=None):
        classes, samples, empty, walk = scan or _scan_classes(directory, self.extensions, limit, tree=root)
        _check_scan(directory, classes, samples, empty, self.noun + "s", self.extensions)
        self.paths = [p for p, _ in samples]
        self.skipped = list(walk.skipped)  # (path, why) the scan did not follow
        self.limited = walk.full  # the scan stopped at --limit: later files were not listed
        super().__init__(root, directory, classes, [c for _, c in samples], split=split)

    def _scan_note(self):
        """What the scan left out, for describe()."""
        notes = []
        if self.limited:
            notes.append(f"scan stopped at --limit {len(self):,}")
        if self.skipped:
            n = len(self.skipped)
            notes.append(f"{n:,} link(s) not followed: {summarize([f'{p} ({why})' for p, why in self.skipped])}")
        return f" ({'; '.join(notes)})" if notes else ""

    def ref(self, i):
        return SampleRef(int(i), self.paths[i])


class ImageFolderSource(_FolderSource):
    kind, modality, noun = "imagefolder", "image", "image"
    extensions = IMG_EXTENSIONS

    def load(self, i):
        from resformer_deploy.data.images import ImageRefused, decode

        path = self.paths[i]
        try:
            return decode(path)
        except ImageRefused as e:
            raise BadSample(f"{path}: {e}") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise BadSample(f"{path}: cannot decode image: {one_line(e)}") from None

    def describe(self):
        return f"ImageFolder {self.location}: {self._count('image')}{self._scan_note()}"


class FramesSource(_FolderSource):
    kind, modality, noun = "frames", "frames", ".npz frame file"
    extensions = FRAME_EXTENSIONS

    def __init__(self, root, directory, split, T=None, scan=None, limit=None):
        self.T = T  # from the frames_number_{T}_split_by_number directory name, if any
        super().__init__(root, directory, split, scan, limit)

    def load(self, i):
        path = self.paths[i]
        try:
            with np.load(path, allow_pickle=False) as z:
                if "frames" not in z.files:
                    raise BadSample(f"{path}: no key 'frames' (keys: {summarize(z.files) or 'none'})")
                shape, dtype = checks.npy_header(z.zip, "frames")
                if len(shape) != 4 or shape[1] != 2:
                    raise BadSample(f"{path}: frames must be [T, 2, H, W] (spikingjelly, 2 polarities), got "
                                    f"{list(shape)}")
                if dtype.kind not in "biuf":
                    raise BadSample(f"{path}: frames must be numeric, got {dtype}")
                checks.check_declared(path, "frames", shape, dtype, copies=1 + 4 / max(dtype.itemsize, 1))
                f = z["frames"]
        except BadSample:
            raise
        except DeployError as e:
            raise BadSample(one_line(e)) from None
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise BadSample(f"{path}: cannot read frames: {one_line(e)}") from None
        f = f.astype(np.float32)  # spikingjelly load_npz_frames: ['frames'].astype(np.float32)
        try:
            return checks.finite(f, f"{path}: frames")
        except DeployError as e:
            raise BadSample(one_line(e)) from None

    def describe(self):
        t = f", T={self.T}" if self.T is not None else ""
        return f"frames (spikingjelly{t}) {self.location}: {self._count('sample')}{self._scan_note()}"


# ---------------------------------------------------------------------------------------------
# CIFAR python version


class _ArrayUnpickler(pickle.Unpickler):
    """Only the globals numpy arrays and their dtypes need (as in the distributed files, and
    the bytes re-encoding Python 3 uses for protocol <= 2); anything else is refused."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}")
        return super().find_class(module, name)


def _text(v):
    return v.decode("latin1") if isinstance(v, bytes) else v


# bytes in memory per byte of a pickle, at most: a 2-byte BINGET of a small int is an 8-byte
# list slot, a 5-byte BININT a 28-byte int plus its slot; arrays unpickle to their own size
PICKLE_EXPANSION = 8


def _unpickle(path):
    from resformer_deploy.util.memory_budget import size
    try:
        n = os.path.getsize(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file missing") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from None
    checks.check_budget(PICKLE_EXPANSION * n, f"{path}: unpickling {size(n)} (up to {PICKLE_EXPANSION}x in memory)")
    try:
        with open(path, "rb") as f:
            d = _ArrayUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise DataError(f"{path}: file missing") from None
    except Exception as e:  # any malformed pickle: UnpicklingError, EOFError, ValueError, ...
        raise DataError(f"{path}: not a CIFAR python batch: {one_line(e) or type(e).__name__}") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: not a CIFAR python batch (a pickled {type(d).__name__}, expected a dict)")
    return {_text(k): v for k, v in d.items()}


def _key(d, key, path):
    if key not in d:
        raise DataError(f"{path}: missing key '{key}' (keys: {summarize(sorted(d))})")
    return d[key]


class CifarSource(DataSource):
    modality = "image"

    def __init__(self, root, batch_dir, fine, split):
        self.kind = "cifar100" if fine else "cifar10"
        self.fine = fine
        if split not in ("test", "train"):
            raise DataError(f"unknown split {split!r} for CIFAR; use test or train")
        if fine:
            meta_name, names_key, self.label_key = "meta", "fine_label_names", "fine_labels"
            files = [split]
        else:
            meta_name, names_key, self.label_key = "batches.meta", "label_names", "labels"
            if split == "test":
                files = ["test_batch"]
            else:
                found = [f for f in os.listdir(batch_dir) if re.fullmatch(r"data_batch_\d+", f)]
                files = sorted(found, key=lambda f: int(f.rsplit("_", 1)[1]))
                if not files:
                    raise DataError(f"{batch_dir}: no data_batch_1..5 files (CIFAR-10 training split)")
        meta_path = os.path.join(batch_dir, meta_name)
        classes = checks.names(_key(_unpickle(meta_path), names_key, meta_path), meta_path, names_key)
        if not classes:
            raise DataError(f"{meta_path}: '{names_key}' is empty (no class names)")
        self.files = [os.path.join(batch_dir, f) for f in files]
        labels, self.starts = [], []
        for path in self.files:
            self.starts.append(len(labels))
            labels.extend(self._read(path, len(classes))[1])
        self._cache, self._lock = OrderedDict(), threading.Lock()
        super().__init__(root, batch_dir, classes, labels, split=split)

    def _read(self, path, k=None):
        d = _unpickle(path)
        data, labels = _key(d, "data", path), _key(d, self.label_key, path)
        data = np.asarray(data)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise DataError(f"{path}: 'data' must be uint8 [N, 3072] (3 planes of 32x32), got "
                            f"{data.dtype} {list(data.shape)}")
        try:
            labels = checks.int_labels(labels, path, self.label_key, len(self.classes) if k is None else k)
        except DataError:
            raise
        except DeployError as e:
            raise DataError(one_line(e)) from None
        if len(labels) != len(data):
            raise DataError(f"{path}: {len(data)} rows in 'data' but {len(labels)} '{self.label_key}'")
        if not len(data):
            raise DataError(f"{path}: no images")
        return data, labels

    def _batch(self, b):
        with self._lock:  # at most two batches in memory (sequential reads cross one boundary)
            if b not in self._cache:
                self._cache[b] = self._read(self.files[b])[0]
                while len(self._cache) > 2:
                    self._cache.popitem(last=False)
            return self._cache[b]

    def _where(self, i):
        b = bisect.bisect_right(self.starts, int(i)) - 1
        return b, int(i) - self.starts[b]

    def ref(self, i):
        b, j = self._where(i)
        return SampleRef(int(i), f"{os.path.basename(self.files[b])}[{j}]")

    def load(self, i):
        b, j = self._where(i)
        # row: R plane (1024), G plane, B plane, each row-major 32x32 -> HWC
        return np.ascontiguousarray(self._batch(b)[j].reshape(3, 32, 32).transpose(1, 2, 0))

    def describe(self):
        name = "CIFAR-100" if self.fine else "CIFAR-10"
        files = ", ".join(os.path.basename(f) for f in self.files)
        return f"{name} {self.location} ({files}): {self._count('image')}"


# ---------------------------------------------------------------------------------------------
# npz


def _npz_member(path, key):
    """``key`` of an .npz file: memory-mapped when stored uncompressed, else read."""
    name = key + ".npy"
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as f:
                f.seek(info.header_offset)
                local = f.read(30)  # zip local file header: name and extra field lengths at 26, 28
                start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + \
                    int.from_bytes(local[28:30], "little")
                f.seek(start)
                version = np.lib.format.read_magic(f)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                shape, fortran, dtype = read_header(f) if read_header else (None, None, np.dtype(object))
                if not dtype.hasobject:
                    return np.memmap(path, dtype=dtype, mode="r", shape=shape,
                                     order="F" if fortran else "C", offset=f.tell())
        with zf.open(name) as f:
            return np.lib.format.read_array(f, allow_pickle=False)


class NpzSource(DataSource):
    kind, modality = "npz", "tensor"

    def __init__(self, root, path, num_classes=None):
        """``num_classes``: the classifier's, the classes of an .npz without 'classes' (else
        labels 0..MAX_CLASSES-1 are accepted and counted as max label + 1)."""
        self.path, self.base = path, os.path.basename(path)
        try:
            with zipfile.ZipFile(path) as zf:
                keys = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
                for k in ("x", "y"):
                    if k not in keys:
                        raise DataError(f"{path}: missing key '{k}' (keys: {summarize(keys) or 'none'}); "
                                        f"expected x [N, ...] and y int [N]")
                # sized from the .npy headers, before any array is read
                heads = {k: checks.npy_header(zf, k) for k in ("x", "y", "classes") if k in keys}
                x_stored = zf.getinfo("x.npy").compress_type == zipfile.ZIP_STORED
            if "classes" in heads and len(heads["classes"][0]) == 1 and heads["classes"][0][0] > checks.MAX_CLASSES:
                raise DataError(f"{path}: 'classes' declares {heads['classes'][0][0]:,} names, more than "
                                f"{checks.MAX_CLASSES:,}")  # each name becomes a Python string
            for k, (shape, dtype) in heads.items():
                if k != "x" or not x_stored:  # a stored x is memory-mapped, not read
                    checks.check_declared(path, k, shape, dtype)
            (xs, xd), (ys, yd) = heads["x"], heads["y"]
            if len(ys) != 1 or yd.kind not in "iu":
                raise DataError(f"{path}: 'y' must be integer labels [N], got {yd} {list(ys)}")
            if len(xs) < 2 or xs[0] != ys[0]:
                raise DataError(f"{path}: 'x' {list(xs)} and 'y' {list(ys)} must have the same length N (x [N, ...])")
            if xd.kind not in "biuf":
                raise DataError(f"{path}: 'x' must be numeric, got {xd}")
            if "classes" in heads and len(heads["classes"][0]) != 1:
                raise DataError(f"{path}: 'classes' must be a 1-D list of names, got {list(heads['classes'][0])}")
            with np.load(path, allow_pickle=False) as z:
                y = z["y"]
                classes = z["classes"] if "classes" in heads else None
            self.x = _npz_member(path, "x")
        except DeployError:
            raise
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
            raise DataError(f"{path}: cannot read npz: {one_line(e)}") from None
        if not len(y):
            raise DataError(f"{path}: no samples (x {list(self.x.shape)})")
        # labels index classes within the range known before reading them, never the reverse
        if classes is not None:
            names, known, k, what = [str(c) for c in classes], True, len(classes), "names in 'classes'"
        elif num_classes is not None:
            names, known, k = None, False, int(num_classes)
            what = "classes of the classifier; the file has no 'classes' names"
        else:
            names, known, k = None, False, checks.MAX_CLASSES
            what = "classes at most without 'classes' names"
        checks.int_labels(y, path, "y", k, what)
        self.counted = "the classifier's" if num_classes is not None else "max label + 1"
        if names is None:
            names = [str(c) for c in range(k if num_classes is not None else int(y.max()) + 1)]
        super().__init__(root, path, names, y, classes_known=known)

    def ref(self, i):
        return SampleRef(int(i), f"{self.base}[x][{int(i)}]")

    def load(self, i):
        x = np.array(self.x[int(i)], dtype=np.float32)
        try:
            return checks.finite(x, self.ref(i).name)
        except DeployError as e:
            raise BadSample(one_line(e)) from None

    def describe(self):
        return (f"npz {self.path}: {len(self):,} samples of {list(self.x.shape[1:])} {self.x.dtype}, "
                f"{len(self.classes):,} classes{'' if self.classes_known else f' ({self.counted})'}")


# ---------------------------------------------------------------------------------------------
# built-in digits


class DigitsSource(DataSource):
    kind, modality = "digits", "tensor"

    def __init__(self, split):
        from resformer_deploy.data.digits import load_digits_split

        if split not in ("test", "train"):
            raise DataError(f"unknown split {split!r} for digits; use test or train")
        s = load_digits_split()
        if split == "test":
            self.x, y, self.index = s.x_test, s.y_test, np.asarray(s.test_index)
        else:
            n = len(s.y_train) + len(s.y_test)
            self.x, y, self.index = s.x_train, s.y_train, np.setdiff1d(np.arange(n), s.test_index)
        super().__init__("digits", "digits", [str(c) for c in range(10)], y.numpy(), split=split)

    def ref(self, i):
        return SampleRef(int(i), f"digits[{int(self.index[i])}]")  # index into sklearn's load_digits()

    def load(self, i):
        return self.x[int(i)].numpy().astype(np.float32)  # [1, 8, 8], pixel / 16

    def describe(self):
        return f"digits (scikit-learn, {self.split} split): {self._count('1x8x8 image')}"


# ---------------------------------------------------------------------------------------------
# detection


def _frames_dir(d):
    """(directory, T, split) of the one frames_number_{T}_split_by_number set at d, above d (d is
    one of its split directories: split is its name) or in d; None when there is none."""
    base = os.path.basename(os.path.normpath(d))
    m = FRAMES_DIR.match(base)
    if m:
        return d, int(m.group(1)), None
    parent = FRAMES_DIR.match(os.path.basename(os.path.dirname(os.path.normpath(d))))
    if parent and base in SPLIT_DIRS:  # .../frames_number_T_split_by_number/test
        return d, int(parent.group(1)), base
    sets = [s for s in _subdirs(d) if FRAMES_DIR.match(s)]
    if len(sets) > 1:
        raise DataError(f"{d} holds {len(sets)} frame sets ({', '.join(sets)}); pass the one whose T the "
                        f"model takes, e.g. {os.path.join(d, sets[0])}")
    if sets:
        return os.path.join(d, sets[0]), int(FRAMES_DIR.match(sets[0]).group(1)), None
    return None


def _cifar_dir(d):
    """(batch directory, fine) when d is or holds a CIFAR python directory, else None."""
    subs = _subdirs(d)
    if CIFAR10_DIR in subs and CIFAR100_DIR in subs:
        raise DataError(f"{d} holds both {CIFAR10_DIR} and {CIFAR100_DIR}; pass one of them")
    if CIFAR10_DIR in subs:
        return os.path.join(d, CIFAR10_DIR), False
    if CIFAR100_DIR in subs:
        return os.path.join(d, CIFAR100_DIR), True
    if os.path.isfile(os.path.join(d, "batches.meta")):
        return d, False
    if os.path.isfile(os.path.join(d, "meta")) and (os.path.isfile(os.path.join(d, "test"))
                                                     or os.path.isfile(os.path.join(d, "train"))):
        return d, True
    return None


LOOKED_FOR = (f"{CIFAR10_DIR}/ or {CIFAR100_DIR}/ (CIFAR python version), frames_number_<T>_split_by_number/ "
              f"(spikingjelly frames), or class sub-directories of images ({' '.join(IMG_EXTENSIONS)}) "
              f"or of .npz frames")


def _folder(root, d, split, kind, limit=None):
    """ImageFolder or frames from a directory of class directories (or of split directories);
    ``limit``: only the first that many samples are listed (--limit)."""
    fr = _frames_dir(d) if kind in (None, "frames") else None
    T, used = None, None
    if fr:
        d, T, used = fr
    directory, used = (d, used) if used else _split_dir(d, split, splits_only=fr is not None)
    if kind == "imagefolder":
        return ImageFolderSource(root, directory, used, limit=limit)
    if kind == "frames" or fr:
        return FramesSource(root, directory, used, T=T, limit=limit)
    both = _scan_classes(directory, IMG_EXTENSIONS + FRAME_EXTENSIONS, limit, root)  # one walk, one --limit
    images, frames = _only(both, IMG_EXTENSIONS), _only(both, FRAME_EXTENSIONS)
    if images[1] and frames[1]:
        raise DataError(f"{directory}: class directories hold both images ({len(images[1])}) and .npz files "
                        f"({len(frames[1])}); pass --data-format imagefolder or frames")
    if frames[1]:
        return FramesSource(root, directory, used, scan=frames)
    if images[1]:
        return ImageFolderSource(root, directory, used, scan=images)
    if not images[0]:
        flat = [f for f in os.listdir(directory) if f.lower().endswith(IMG_EXTENSIONS + FRAME_EXTENSIONS)]
        if flat:
            raise DataError(f"{directory} holds {len(flat)} image/.npz files but no class sub-directories; "
                            f"labels come from the layout {directory}/<class>/<file>")
        raise DataError(f"unrecognised data layout in {directory}: looked for {LOOKED_FOR}")
    raise DataError(f"{directory}: no images ({' '.join(IMG_EXTENSIONS)}) or .npz frames in its "
                    f"{len(images[0])} class directories")


def open_source(path: str, kind: str = None, split: str = "test", num_classes: int = None,
                class_map=None, limit: int = None) -> DataSource:
    """Open ``path`` as a data set; ``kind`` (one of KINDS, or None / "auto" to detect) forces
    the reader. "digits" is the built-in data set. Class folders are labelled for a classifier of
    ``num_classes`` (ImageNet WordNet-ID folders: their ImageNet-1k indices) or by ``class_map``
    (a --class-map file): resformer_deploy/data/imagenet_classes.py."""
    from resformer_deploy.data.imagenet_classes import apply_class_mapping
    return apply_class_mapping(_open_source(path, kind, split, num_classes, limit), num_classes, class_map)


def _open_source(path: str, kind: str = None, split: str = "test", num_classes: int = None,
                 limit: int = None) -> DataSource:
    """``num_classes``: the classifier's (classes of an .npz without names); ``limit``: a folder
    scan stops after that many samples."""
    kind = None if kind in (None, "auto") else kind
    if kind is not None and kind not in KINDS:
        raise DataError(f"unknown data format {kind!r}; use one of auto, {', '.join(KINDS)}")
    path = os.fspath(path)
    if kind == "digits" or (kind is None and path == "digits"):
        return DigitsSource(split)
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.exists(root):
        raise DataError(f"data source not found: {root}")
    if os.path.isfile(root):
        if kind == "npz" or (kind is None and root.lower().endswith(".npz")):
            return NpzSource(root, root, num_classes)
        raise DataError(f"{root} is a file but not an .npz with x and y; a data set is an .npz file or a "
                        f"directory ({LOOKED_FOR})")
    if kind == "npz":
        raise DataError(f"{root} is a directory; --data-format npz takes a .npz file")
    if kind in (None, "cifar10", "cifar100"):
        found = _cifar_dir(root)
        if found:
            batch_dir, fine = found
            if kind is not None and fine != (kind == "cifar100"):
                raise DataError(f"{batch_dir} is {'CIFAR-100' if fine else 'CIFAR-10'}, not {kind}")
            return CifarSource(root, batch_dir, fine, split)
        if kind is not None:
            want = CIFAR100_DIR if kind == "cifar100" else CIFAR10_DIR
            raise DataError(f"{root}: no {want}/ directory and no {'meta' if kind == 'cifar100' else 'batches.meta'} "
                            f"file (CIFAR python version)")
    return _folder(root, root, split, kind, limit)
