"""Refuse work whose declared or estimated size cannot fit in memory, before allocating it.

Budget: the memory the OS can hand out without swapping, ``psutil.virtual_memory().available``
("the memory that can be given instantly to processes without the system going into swap",
psutil docs), less a margin for the interpreter, libraries and temporaries not estimated here.
``RESFORMER_DEPLOY_MEMORY_BUDGET`` (bytes) replaces the measured figure, e.g. on shared machines.
"""
import os

from .errors import DeployError

MARGIN = 0.25  # fraction of the available memory left untouched
ENV = "RESFORMER_DEPLOY_MEMORY_BUDGET"
# verify/ops keep, per neuron, step and sample: PyTorch spikes (1 B) and membranes (8 B in float64),
# the target's spikes and membranes (9 B), the comparison's masks and |v - threshold| (~10 B).
RECORD_BYTES_PER_NEURON_STEP = 32


class MemoryBudgetError(DeployError):
    """A size that does not fit the memory budget (stated with the figures)."""


def gib(nbytes: float) -> str:
    return f"{nbytes / 2 ** 30:,.1f} GiB"


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


def neurons_per_step(model) -> int:
    """Spiking neurons of one sample and one step, counted by running the model once with T = 1
    on a single blank input (the count does not depend on T, B or the values)."""
    import torch
    from .neurons import LIF, PLIF

    cfg, count = model.config, []
    hooks = [m.register_forward_hook(lambda m, i, o: count.append(o[0].numel()))
             for m in model.modules() if isinstance(m, (LIF, PLIF))]
    T, model.T = model.T, 1
    try:
        with torch.no_grad():
            dtype = next(model.parameters()).dtype
            model(torch.zeros(1, cfg.in_channels, cfg.img_size, cfg.img_size, dtype=dtype))
    finally:
        model.T = T
        for h in hooks:
            h.remove()
    return sum(count)


def check_recording(model, samples: int) -> None:
    """verify / ops record every neuron of every step and sample: refuse what cannot be held."""
    n = neurons_per_step(model)
    need = n * model.config.T * samples * RECORD_BYTES_PER_NEURON_STEP
    check_bytes(need, f"{samples:,} samples x T={model.config.T} x {n:,} neurons per step: recording spikes "
                      f"and membranes needs about {need:,} bytes")
