from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DIGITS_CKPT = REPO / "examples" / "digits" / "digits_resformer.pt"


def randomize_state(model, seed=0, rate_range=(0.05, 0.35), bias_mean=0.0):
    """Random BN statistics/affine, weights scaled so neurons actually fire, and nonzero
    firing-rate buffers: an untrained model whose every path is exercised."""
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
        elif k.endswith(".w"):
            sd[k] = torch.randn(v.shape, generator=g) * 0.5
        elif v.is_floating_point() and v.dim() > 1:
            sd[k] = torch.randn(v.shape, generator=g) * (3.0 / v[0].numel()) ** 0.5
        else:
            sd[k] = v
    model.load_state_dict(sd)
    return model


@pytest.fixture
def digits_ckpt():
    assert DIGITS_CKPT.exists(), f"shipped checkpoint missing: {DIGITS_CKPT}"
    return DIGITS_CKPT
