import signal
from pathlib import Path

import pytest

from resformer_deploy.util.malloc import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """Every test process keeps the memory it frees (util/malloc.py, the Ray workers' setting): with
    glibc's defaults tests/model spent 56 s in the kernel beside 45 s of user time, 16 s with it
    (benchmarks/RESULTS.md, "make test CPU time (stop 36)"). Per process: subprocesses the tests start
    keep glibc's defaults (tests/engines/test_worker_malloc.py)."""
    keep_freed_memory()
    # A suite started as a background job of a non-interactive shell inherits SIGINT ignored, and an
    # ignored signal stays ignored across exec (POSIX execve), so the CLIs the tests interrupt would
    # never see Ctrl-C. A handled signal is reset to the default at exec: handling it here lets every
    # subprocess start with Python's own KeyboardInterrupt handler, however the suite was launched.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
