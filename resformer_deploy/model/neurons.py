"""Multi-step spiking neurons with spikingjelly 0.0.0.0.14 numerics, in plain PyTorch.

Per element and step (v starts at 0 for every forward):
    charge  H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau      (decay_input=True)
    fire    S[t] = (H[t] - v_threshold >= 0)
    reset   V[t] = H[t] * (1 - S[t]) + v_reset * S[t]               (hard reset)
PLIF replaces ``1/tau`` by ``sigmoid(w)`` with a learnable 0-d ``w``.
The expressions are written in the same order as spikingjelly's so float32
results are bit-identical to the official model.
"""
import math

import torch
import torch.nn as nn


class ATanSpike(torch.autograd.Function):
    """Heaviside forward (``x >= 0``), ATan surrogate backward (alpha = 2)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        alpha = ctx.alpha
        grad_x = alpha / 2 / (1 + (math.pi / 2 * alpha * x).pow(2)) * grad_output
        return grad_x, None


def atan_spike(x: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    return ATanSpike.apply(x, alpha)


class _MultiStepNeuron(nn.Module):
    """Shared multi-step loop; subclasses define ``charge``."""

    v_threshold = 1.0
    v_reset = 0.0
    surrogate_alpha = 2.0

    def charge(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        # x_seq: [T, ...]; state is local to this call (reset per sample batch).
        v = torch.zeros_like(x_seq[0])
        spikes = []
        for t in range(x_seq.shape[0]):
            h = self.charge(v, x_seq[t])
            s = atan_spike(h - self.v_threshold, self.surrogate_alpha)
            # detach_reset=True: the reset path carries no gradient.
            s_r = s.detach()
            v = h * (1.0 - s_r) + self.v_reset * s_r
            spikes.append(s)
        return torch.stack(spikes)


class LIF(_MultiStepNeuron):
    """LIF(tau=2, decay_input=True, v_threshold=1, v_reset=0, hard reset, ATan)."""

    def __init__(self, tau: float = 2.0):
        super().__init__()
        self.tau = float(tau)

    def charge(self, v, x):
        return v + (x - (v - self.v_reset)) / self.tau

    def decay(self) -> float:
        """Fraction of (input - v) added per step: 1/tau."""
        return 1.0 / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}"


class PLIF(_MultiStepNeuron):
    """Parametric LIF: one learnable scalar ``w`` per module, 1/tau = sigmoid(w)."""

    def __init__(self, init_tau: float = 2.0):
        super().__init__()
        self.w = nn.Parameter(torch.as_tensor(-math.log(init_tau - 1.0)))

    def charge(self, v, x):
        return v + (x - (v - self.v_reset)) * self.w.sigmoid()

    def decay(self) -> float:
        return float(self.w.detach().sigmoid())

    def extra_repr(self) -> str:
        return f"1/tau={self.decay():.6g}, v_threshold={self.v_threshold}, v_reset={self.v_reset}"


NEURONS = {"lif": LIF, "plif": PLIF}
