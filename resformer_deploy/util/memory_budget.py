"""Refuse work whose declared or estimated size cannot fit in memory, before allocating it.

Budget: the memory the OS can hand out without swapping, ``psutil.virtual_memory().available``
("the memory that can be given instantly to processes without the system going into swap",
psutil docs), less a margin for the interpreter, libraries and temporaries not estimated here.
``RESFORMER_DEPLOY_MEMORY_BUDGET`` (bytes) replaces the measured figure, e.g. on shared machines.
"""
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
            return int(float(env))
        except ValueError:
            raise MemoryBudgetError(f"{ENV}={env!r} is not a number of bytes") from None
    import psutil
    return int(psutil.virtual_memory().available * (1 - MARGIN))


def check_bytes(nbytes: int, what: str) -> None:
    """``what`` says who declares/needs the figure, e.g. "x.nir: node 'fc' weight declares 10 elements"."""
    budget = budget_bytes()
    if nbytes > budget:
        raise MemoryBudgetError(f"{what} ({gib(nbytes)}) > memory budget {gib(budget)}")
