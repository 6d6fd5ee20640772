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

    def charge_(self, h: torch.Tensor, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``charge(v, x)`` written into ``h``: the same operations in the same order."""
        raise NotImplementedError

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        # x_seq: [T, ...]; state is local to this call (reset per sample batch).
        if not (torch.is_grad_enabled() and (x_seq.requires_grad or any(p.requires_grad for p in self.parameters()))):
            return self._forward_in_place(x_seq)
        return self._forward_autograd(x_seq)

    def _forward_autograd(self, x_seq: torch.Tensor) -> torch.Tensor:
        """The training loop: spikingjelly's expressions, a new tensor per step for autograd."""
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

    def _forward_in_place(self, x_seq: torch.Tensor) -> torch.Tensor:
        """The loop above without autograd, in two reused buffers: each of its element-wise steps is
        the same IEEE operation on the same operands, so the spikes are bit-identical (tested in
        float32 and float64), but no step allocates a new tensor. The training loop's version
        allocates ~8 temporaries per step; on the dvsg model's DSSA attention neuron at batch 8 each is 34 MB,
        above glibc's mmap threshold, so every one was a fresh mapping with page faults."""
        out = torch.empty_like(x_seq)
        v = torch.zeros_like(x_seq[0])
        h = torch.empty_like(v)
        for t in range(x_seq.shape[0]):
            self.charge_(h, v, x_seq[t])
            s = out[t]
            torch.sub(h, self.v_threshold, out=s)
            torch.ge(s, 0, out=s)  # (h - v_threshold >= 0) as 0/1 of x's dtype
            # v = h * (1 - s) + v_reset * s; (1 - s) formed as -s + 1, exact for s in {0, 1}
            torch.mul(s, -1.0, out=v)
            v.add_(1.0)
            torch.mul(h, v, out=v)
            torch.mul(s, self.v_reset, out=h)
            v.add_(h)
        return out


class LIF(_MultiStepNeuron):
    """LIF(tau=2, decay_input=True, v_threshold=1, v_reset=0, hard reset, ATan)."""

    def __init__(self, tau: float = 2.0):
        super().__init__()
        self.tau = float(tau)

    def charge(self, v, x):
        return v + (x - (v - self.v_reset)) / self.tau

    def charge_(self, h, v, x):
        torch.sub(v, self.v_reset, out=h)
        torch.sub(x, h, out=h)
        h.div_(self.tau)
        return torch.add(v, h, out=h)

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

    def charge_(self, h, v, x):
        torch.sub(v, self.v_reset, out=h)
        torch.sub(x, h, out=h)
        h.mul_(self.w.sigmoid())
        return torch.add(v, h, out=h)

    def decay(self) -> float:
        return float(self.w.detach().sigmoid())

    def extra_repr(self) -> str:
        return f"1/tau={self.decay():.6g}, v_threshold={self.v_threshold}, v_reset={self.v_reset}"


NEURONS = {"lif": LIF, "plif": PLIF}
