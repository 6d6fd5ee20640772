"""The memory budget setting (resformer_deploy/util/memory_budget.py): a value that is no positive
number of bytes is named as a bad setting, never passed on to blame an input."""
import psutil
import pytest

from resformer_deploy.util.memory_budget import ENV, MemoryBudgetError, budget_bytes, check_bytes


@pytest.mark.parametrize("value", ["-5", "0", "0.5", "nan", "inf", "-inf", "abc", "1e999"])
def test_bad_budget_is_named(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    for call in (budget_bytes, lambda: check_bytes(10, "x.pt: zip archive declares 10 bytes")):
        with pytest.raises(MemoryBudgetError) as e:
            call()
        assert str(e.value) == (f"{ENV}={value!r} is not a valid memory budget: a positive number of bytes is "
                                f"expected (e.g. 8e9); unset it to use the measured free memory")


@pytest.mark.parametrize("value, nbytes", [("1", 1), ("4096", 4096), ("1e9", 10 ** 9), ("2.5e3", 2500)])
def test_good_budget_is_used(monkeypatch, value, nbytes):
    monkeypatch.setenv(ENV, value)
    assert budget_bytes() == nbytes
    check_bytes(nbytes, "fits exactly")
    with pytest.raises(MemoryBudgetError, match="> memory budget"):
        check_bytes(nbytes + 1, "one byte more")


def test_unset_budget_is_measured(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    assert 0 < budget_bytes() <= psutil.virtual_memory().total
