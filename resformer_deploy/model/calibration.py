"""Firing-rate calibration for DSSA's attention scales.

``c1 = 1/sqrt(rate(s)*d)`` and ``c2 = 1/sqrt(rate(attn)*Np)`` come from buffers
that training fills with an EMA. A model that was never trained (or whose
buffers were not loaded) has zero buffers, and the forward pass refuses to run
in eval mode (``CalibrationError``). This module fills them explicitly: each
buffer becomes the exact mean firing rate over the calibration batches, with
layers calibrated in order (a layer's rate is measured with the earlier
layers' scales already in use).
"""
from typing import Dict, Iterable

import torch

from resformer_deploy.model.resformer import DSSA, SpikingResformer


@torch.no_grad()
def calibrate_firing_rates(model: SpikingResformer, batches: Iterable[torch.Tensor]) -> Dict[str, list]:
    dssa = [(n, m) for n, m in model.named_modules() if isinstance(m, DSSA)]
    was_training = model.training
    model.eval()
    for _, m in dssa:
        m.calibrating, m._calib = True, {}
    seen = 0
    try:
        for x in batches:
            model(x)
            seen += 1
    finally:
        for _, m in dssa:
            m.calibrating, m._calib = False, {}
        model.train(was_training)
    if not seen:
        raise ValueError("calibrate_firing_rates needs at least one batch")
    return {n: {"x": m.firing_rate_x.flatten().tolist(), "attn": m.firing_rate_attn.flatten().tolist()}
            for n, m in dssa}


def random_buffers(model, seed: int = 0):
    """Benchmarks of shape-only properties (export, mapping) on untrained models: nonzero firing-rate
    buffers (rates in [0.05, 0.35]) and BN variances in [0.5, 1.5], seeded; returns the model in eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if "firing_rate" in k:
                v.copy_(torch.rand(v.shape, generator=g) * 0.3 + 0.05)
            elif k.endswith("running_var"):
                v.copy_(torch.rand(v.shape, generator=g) + 0.5)
    return model.eval()


def randomize_state(model, seed: int = 0, rate_range=(0.05, 0.35), bias_mean: float = 0.0):
    """An untrained model whose every path is exercised (benchmarks and tests at any size): random
    BN statistics and affine parameters, weights N(0, 3/fan_in) (a BN'd pre-activation then spreads
    around the LIF threshold and neurons fire), PLIF decay parameters N(0, 0.5) and placeholder
    firing rates in ``rate_range`` (calibrate_firing_rates overwrites them with measured ones)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("running_var"):
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("running_mean"):
            sd[k] = torch.randn(v.shape, generator=g) * 0.3
        elif k.endswith("bn.weight"):
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        elif k.endswith("bn.bias"):
            sd[k] = torch.randn(v.shape, generator=g) * 0.3 + bias_mean
        elif "firing_rate" in k:
            lo, hi = rate_range
            sd[k] = torch.rand(v.shape, generator=g) * (hi - lo) + lo
        elif k.endswith(".w"):  # PLIF: decay = sigmoid(w)
            sd[k] = torch.randn(v.shape, generator=g) * 0.5
        elif v.is_floating_point() and v.dim() > 1:
            sd[k] = torch.randn(v.shape, generator=g) * (3.0 / v[0].numel()) ** 0.5
        else:
            sd[k] = v
    model.load_state_dict(sd)
    return model
