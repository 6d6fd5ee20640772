"""Stateless multi-step layers: ``[T, B, ...]`` in, ``[T, B, ...]`` out.

Convolutions and the classifier subclass ``nn.Conv2d`` / ``nn.Linear`` directly
so their state_dict keys are ``<path>.weight`` exactly as in the official code;
``BN`` keeps ``nn.BatchNorm2d`` under the attribute ``bn`` for the same reason.
Every stateless op runs on ``x.flatten(0, 1)``, so BN statistics are shared
over time steps and batch.
"""
import torch
import torch.nn as nn


def seq_forward(x: torch.Tensor, fn) -> torch.Tensor:
    """Apply a per-image op to a ``[T, B, ...]`` sequence."""
    y = fn(x.flatten(0, 1))
    return y.reshape(x.shape[0], x.shape[1], *y.shape[1:])


class SeqConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return seq_forward(x, super().forward)


def conv1x1(cin: int, cout: int) -> SeqConv2d:
    return SeqConv2d(cin, cout, kernel_size=1, stride=1, padding=0, bias=False)


def conv3x3(cin: int, cout: int, stride: int = 1, groups: int = 1) -> SeqConv2d:
    return SeqConv2d(cin, cout, kernel_size=3, stride=stride, padding=1, groups=groups, bias=False)


class BN(nn.Module):
    """BatchNorm2d over T*B samples, stored as ``.bn`` (official key layout)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True,
                                 track_running_stats=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"BN expects [T, B, C, H, W], got shape {tuple(x.shape)}")
        return seq_forward(x, self.bn)


class SeqMaxPool2d(nn.MaxPool2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return seq_forward(x, super().forward)


class SeqGlobalAvgPool(nn.AdaptiveAvgPool2d):
    def __init__(self):
        super().__init__((1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return seq_forward(x, super().forward)


class SeqLinear(nn.Linear):
    """Bias-free linear map on the last dimension, applied per step."""


class SpikingMatmul(nn.Module):
    """``left @ right``; ``spike`` tags which operand is binary (for op counting)."""

    def __init__(self, spike: str = "r"):
        super().__init__()
        if spike not in ("l", "r", "both"):
            raise ValueError(f"spike must be 'l', 'r' or 'both', got {spike!r}")
        self.spike = spike

    def forward(self, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return torch.matmul(left, right)

    def extra_repr(self) -> str:
        return f"spike={self.spike!r}"
