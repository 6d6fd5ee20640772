"""Fold eval-mode BatchNorm (and DSSA's attention scales) into the preceding convolution.

Requires: a bias-free conv directly followed by BN (true for every conv in SpikingResformer).
Ensures:  conv(x, W') + b' == BN(conv(x, W)) up to float rounding, with
          W' = W * g/s, b' = beta - g*mu/s, s = sqrt(var + eps)   (computed in float64).
"""
import numpy as np
import torch


def fold_conv_bn(weight: torch.Tensor, bn: torch.nn.BatchNorm2d):
    w = weight.detach().double()
    g = bn.weight.detach().double()
    s = torch.sqrt(bn.running_var.detach().double() + bn.eps)
    scale = g / s
    w_f = w * scale.reshape(-1, *([1] * (w.dim() - 1)))
    b_f = bn.bias.detach().double() - g * bn.running_mean.detach().double() / s
    return w_f, b_f


def dssa_channel_scales(dssa) -> torch.Tensor:
    """Per output channel of DSSA's W conv: c1[head] on the y1 half of each head's 2d block,
    c2[head] on the y2 half (the per-head interleaved split)."""
    h, d = dssa.num_heads, dssa.dim // dssa.num_heads
    c1 = 1.0 / torch.sqrt(dssa.firing_rate_x.detach().double().flatten() * d)
    c2 = 1.0 / torch.sqrt(dssa.firing_rate_attn.detach().double().flatten() * dssa.lenth)
    per_head = torch.stack([c1.repeat_interleave(d).reshape(h, d), c2.repeat_interleave(d).reshape(h, d)], 1)
    return per_head.reshape(-1)  # [2C] in channel order head0:(y1,y2), head1:(y1,y2), ...


def to_numpy(t: torch.Tensor, dtype=np.float32) -> np.ndarray:
    return t.detach().double().numpy().astype(dtype)
