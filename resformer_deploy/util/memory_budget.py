"""Refuse work whose declared or estimated size cannot fit in memory, before allocating it.

Budget: the memory the OS can hand out without swapping, ``psutil.virtual_memory().available``
("the memory that can be given instantly to processes without the system going into swap",
psutil docs), less a margin for the interpreter, libraries and temporaries not estimated here.
``RESFORMER_DEPLOY_MEMORY_BUDGET`` (bytes) replaces the measured figure, e.g. on shared machines.
"""
import math
import os

from resformer_deploy.errors import DeployError

MARGIN = 0.25  # fraction of the available memory left untouched
ENV = "RESFORMER_DEPLOY_MEMORY_BUDGET"


class MemoryBudgetError(DeployError):
    """A size that does not fit the memory budget (stated with the figures)."""


def gib(nbytes: float) -> str:
    return f"{nbytes / 2 ** 30:,.1f} GiB"


def size(nbytes: float) -> str:
    """A byte count for people: KiB below 1 MiB, MiB below 1 GiB, GiB above."""
    if nbytes >= 2 ** 30:
        return gib(nbytes)
    return f"{nbytes / 2 ** 20:,.1f} MiB" if nbytes >= 2 ** 20 else f"{nbytes / 2 ** 10:,.1f} KiB"


def duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:,.0f} s"


def budget_bytes() -> int:
    env = os.environ.get(ENV)
    if env:
        try:
            value = float(env)
        except ValueError:
            value = None
        # a budget <= 0 (or NaN/inf) would make every size check fail with a message blaming the
        # input (a checkpoint, a data set) instead of this setting
        if value is None or not math.isfinite(value) or value < 1:
            raise MemoryBudgetError(f"{ENV}={env!r} is not a valid memory budget: a positive number of bytes "
                                    f"is expected (e.g. 8e9); unset it to use the measured free memory")
        return int(value)
    import psutil
    return int(psutil.virtual_memory().available * (1 - MARGIN))


def check_bytes(nbytes: int, what: str) -> None:
    """``what`` says who declares/needs the figure, e.g. "x.nir: node 'fc' weight declares 10 elements"."""
    budget = budget_bytes()
    if nbytes > budget:
        raise MemoryBudgetError(f"{what} ({gib(nbytes)}) > memory budget {gib(budget)}")
