import ctypes
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc <malloc.h>


def pytest_configure(config):
    """glibc's malloc keeps the memory a test process frees for reuse (mallopt(3): allocations below
    1 GiB from the heap, up to 1 GiB free at its top kept; the Ray workers' setting, engines/ray_engine.py
    keep_freed_memory, not imported here: it imports Ray). With glibc's defaults every tensor above
    32 MiB is a fresh mapping whose pages fault in zeroed: tests/model spent 56 s in the kernel beside
    45 s of user time, 16 s with this (benchmarks/RESULTS.md, "make test CPU time (stop 36)"). Per
    process: subprocesses the tests start keep glibc's defaults (tests/engines/test_worker_malloc.py)."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # glibc's malloc, not musl's or macOS's
    except (OSError, AttributeError):
        return
    libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
    libc.mallopt(M_TRIM_THRESHOLD, 1 << 30)
DIGITS_CKPT = REPO / "examples" / "digits" / "digits_resformer.pt"


@pytest.fixture
def digits_ckpt():
    assert DIGITS_CKPT.exists(), f"shipped checkpoint missing: {DIGITS_CKPT}"
    return DIGITS_CKPT


@pytest.fixture(scope="module")
def ck():
    """The shipped digits checkpoint, loaded once per test module."""
    from resformer_deploy.model.checkpoint import load_checkpoint
    return load_checkpoint(DIGITS_CKPT)


@pytest.fixture(scope="module")
def digits_heldout(ck):
    """The digits model's held-out split as ``--data digits`` opens it."""
    from resformer_deploy.analysis.data_inputs import open_data
    return open_data("digits", ck.config, ck.variant)
