"""The memory bound of the data cases of the bad-input catalogue (tests/bad_inputs/cases_data.py)
holds: an allocation beyond it fails in the child, within the bound it succeeds, a hang is killed."""
import time

import numpy as np

from tests.bad_inputs.cases_data import GiB, run_bounded


def test_allocation_beyond_the_bound_fails_in_the_child():
    t0 = time.monotonic()
    out = run_bounded(lambda: {"sum": float(np.ones(3 * GiB // 8).sum())}, memory=GiB)
    assert out == {"error": "MemoryError: Unable to allocate 3.00 GiB for an array with shape (402653184,) and "
                            "data type float64"}
    assert time.monotonic() - t0 < 30


def test_within_the_bound_the_result_comes_back():
    assert run_bounded(lambda: {"sum": int(np.ones(2 ** 20, np.int64).sum())}, memory=GiB) == {"sum": 2 ** 20}


def test_a_hang_is_killed_at_the_timeout():
    t0 = time.monotonic()
    assert run_bounded(lambda: time.sleep(60), timeout=1) == {"error": "timeout: still running after 1 s"}
    assert time.monotonic() - t0 < 10
