"""What a reader checks in what it has read so far, before it allocates or hands on a sample:
declared array sizes against the memory budget, labels as integers within the class range,
finite values."""
import math
import zipfile

import numpy as np

from resformer_deploy.errors import DeployError
from resformer_deploy.util.memory_budget import MemoryBudgetError, budget_bytes, size

MAX_CLASSES = 100_000  # class names an .npz may declare, and its labels' range without names or classifier


def check_budget(nbytes: int, what: str) -> int:
    """util.memory_budget.check_bytes with figures in KiB / MiB / GiB (a small budget reads right);
    returns the budget."""
    budget = budget_bytes()
    if nbytes > budget:
        raise MemoryBudgetError(f"{what} ({size(nbytes)}) > memory budget {size(budget)}")
    return budget


def npy_header(zf: zipfile.ZipFile, key: str):
    """(shape, dtype) an .npz member declares in its .npy header (numpy/lib/format.py), read
    without reading the array."""
    with zf.open(key + ".npy") as f:
        version = np.lib.format.read_magic(f)
        read = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0,
                (3, 0): getattr(np.lib.format, "_read_array_header", None)}.get(version)
        if read is None:
            raise ValueError(f"unsupported .npy format version {version}")
        shape, _, dtype = read(f) if version != (3, 0) else read(f, version)
    return tuple(int(v) for v in shape), dtype


def check_declared(path, key, shape, dtype, copies: float = 1.0) -> None:
    """Refuse an array whose declared size (``copies`` times, for conversions) exceeds the budget."""
    n = math.prod(shape)
    check_budget(int(n * max(dtype.itemsize, 1) * copies),
                f"{path}: '{key}' declares {list(shape)} {dtype} ({n:,} values)")


def int_labels(values, where: str, key: str, k: int, what: str = "classes") -> np.ndarray:
    """``values`` (a list or 1-D array) as int64 labels, each an integer in 0..k-1; anything else
    (floats, bytes, bools, values beyond k) is refused naming the first offender."""
    if isinstance(values, np.ndarray):
        if values.ndim != 1 or values.dtype.kind not in "iu":
            raise DeployError(f"{where}: '{key}' must be integer labels [N], got {values.dtype} {list(values.shape)}")
        items = values
    elif isinstance(values, (list, tuple)):
        for j, v in enumerate(values):
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise DeployError(f"{where}: '{key}'[{j}] is {type(v).__name__} {_short(v)}, not an integer label")
        items = values
    else:
        raise DeployError(f"{where}: '{key}' must be a list of integer labels, got {type(values).__name__}")
    if len(items):
        # compared exactly, never cast first (a list may hold Python ints beyond int64)
        lo, hi = (items.min(), items.max()) if isinstance(items, np.ndarray) else (min(items), max(items))
        if lo < 0 or hi >= k:
            out = (np.flatnonzero((items < 0) | (items >= k)) if isinstance(items, np.ndarray)
                   else [j for j, v in enumerate(items) if not 0 <= v < k])
            raise DeployError(f"{where}: '{key}'[{out[0]}] = {int(items[out[0]])} out of range 0..{k - 1} "
                              f"({k:,} {what}; {len(out):,} such label(s))")
    return np.asarray(items, dtype=np.int64)


def names(values, where: str, key: str) -> list:
    """Class names: a list (or 1-D array) of str / bytes (latin-1, as the CIFAR pickles)."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        values = values.tolist()
    if not isinstance(values, (list, tuple)):
        raise DeployError(f"{where}: '{key}' must be a list of class names, got {type(values).__name__} "
                          f"{_short(values)}")
    for j, v in enumerate(values):
        if not isinstance(v, (str, bytes)):
            raise DeployError(f"{where}: '{key}'[{j}] is {type(v).__name__} {_short(v)}, not a class name")
    return [v.decode("latin1") if isinstance(v, bytes) else v for v in values]


def finite(a: np.ndarray, where: str) -> np.ndarray:
    """``a`` unchanged when every value is finite; else refused naming the count and the first index."""
    if a.dtype.kind in "fc":
        bad = ~np.isfinite(a)
        if bad.any():
            first = [int(v) for v in np.unravel_index(int(np.flatnonzero(bad)[0]), a.shape)]
            raise DeployError(f"{where}: {int(bad.sum()):,} NaN/inf value(s), the first at index {first}")
    return a


def _short(v, n=40):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."
