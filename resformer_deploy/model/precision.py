"""Running a model in another floating-point precision without leaving it changed.

``nn.Module.to(dtype)`` converts the parameters and buffers in place, so a caller's model would
stay float64 after a float64 verification, or after an exception half-way through one.
"""
from contextlib import contextmanager

import torch


def model_dtype_of(model: torch.nn.Module) -> torch.dtype:
    """The dtype of the model's floating-point tensors (float32 for a model without any)."""
    for t in list(model.parameters()) + list(model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


@contextmanager
def model_in_dtype(model: torch.nn.Module, dtype: torch.dtype):
    """Yield ``model`` converted to ``dtype``; restore its previous dtype on exit, also on error."""
    before = model_dtype_of(model)
    try:
        yield model.to(dtype)
    finally:
        model.to(before)
