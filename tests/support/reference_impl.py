"""Straightforward re-computation of SpikingResformer from a state_dict, written from the
paper/reference equations and independent of resformer_deploy's modules.

Everything runs in float64 numpy, with convolutions from torch.nn.functional (a primitive),
so comparisons against the model (also run in float64) are free of float32 threshold ties.
"""
import numpy as np
import torch
import torch.nn.functional as F


def lif(x, tau=2.0, v_th=1.0, leak=None):
    """x: [T, ...]. Explicit loop: H = V + (X - V) * k, spike if H >= v_th, hard reset to 0."""
    k = (1.0 / tau) if leak is None else leak
    v = np.zeros_like(x[0])
    out = np.zeros_like(x)
    for t in range(x.shape[0]):
        h = v + (x[t] - v) * k
        s = (h >= v_th).astype(x.dtype)
        v = np.where(s > 0, 0.0, h)
        out[t] = s
    return out


def conv(x, w, stride=1, padding=0, groups=1):
    """x [T,B,C,H,W] numpy -> per-image torch conv."""
    T, B = x.shape[:2]
    y = F.conv2d(torch.from_numpy(x.reshape(T * B, *x.shape[2:])), torch.from_numpy(w),
                 stride=stride, padding=padding, groups=groups).numpy()
    return y.reshape(T, B, *y.shape[1:])


def bn(x, sd, p, eps=1e-5):
    g, b = sd[f"{p}.bn.weight"], sd[f"{p}.bn.bias"]
    m, v = sd[f"{p}.bn.running_mean"], sd[f"{p}.bn.running_var"]
    sh = (1, 1, -1, 1, 1)
    return (x - m.reshape(sh)) / np.sqrt(v.reshape(sh) + eps) * g.reshape(sh) + b.reshape(sh)


class Reference:
    def __init__(self, state_dict, cfg):
        self.sd = {k: v.detach().double().numpy() for k, v in state_dict.items()}
        self.cfg = cfg
        self.spikes = {}  # layer path -> spike array, for per-layer comparisons

    def neuron(self, x, path):
        leak = None
        if self.cfg.neuron == "plif":
            leak = 1.0 / (1.0 + np.exp(-self.sd[f"{path}.w"]))
        s = lif(x, leak=leak)
        self.spikes[path] = s
        return s

    def dssa(self, x, p, heads, patch, lenth):
        T, B, C, H, W = x.shape
        d = C // heads
        s = self.neuron(x, f"{p}.activation_in")
        y = bn(conv(s, self.sd[f"{p}.W.weight"], stride=patch), self.sd, f"{p}.norm")
        y = y.reshape(T, B, 2 * C, -1)  # [T,B,2C,Np]
        xs = s.reshape(T, B, C, -1)  # [T,B,C,N]
        attn = np.zeros((T, B, heads, y.shape[-1], xs.shape[-1]))
        for i in range(heads):
            q = y[:, :, 2 * d * i: 2 * d * i + d]  # y1 of head i: first d of its 2d block
            k = xs[:, :, d * i: d * (i + 1)]
            c1 = 1.0 / np.sqrt(self.sd[f"{p}.firing_rate_x"][0, 0, i, 0, 0] * d)
            attn[:, :, i] = np.einsum("tbcp,tbcn->tbpn", q, k) * c1
        a = self.neuron(attn, f"{p}.activation_attn")
        out = np.zeros((T, B, C, xs.shape[-1]))
        for i in range(heads):
            v = y[:, :, 2 * d * i + d: 2 * d * (i + 1)]  # y2 of head i
            c2 = 1.0 / np.sqrt(self.sd[f"{p}.firing_rate_attn"][0, 0, i, 0, 0] * lenth)
            out[:, :, d * i: d * (i + 1)] = np.einsum("tbcp,tbpn->tbcn", v, a[:, :, i]) * c2
        o = self.neuron(out.reshape(T, B, C, H, W), f"{p}.activation_out")
        return bn(conv(o, self.sd[f"{p}.Wproj.weight"]), self.sd, f"{p}.norm_proj") + x

    def gwffn(self, x, p):
        g = self.cfg.group_size
        u = bn(conv(self.neuron(x, f"{p}.up.0"), self.sd[f"{p}.up.1.weight"]), self.sd, f"{p}.up.2")
        w = self.sd[f"{p}.conv.0.1.weight"]
        c = bn(conv(self.neuron(u, f"{p}.conv.0.0"), w, padding=1, groups=w.shape[0] // g), self.sd,
               f"{p}.conv.0.2")
        z = c + u
        return bn(conv(self.neuron(z, f"{p}.down.0"), self.sd[f"{p}.down.1.weight"]), self.sd, f"{p}.down.2") + x

    def __call__(self, image):
        """image: [B,C,H,W] (repeated over T) or [B,T,C,H,W]; returns logits [T,B,K]."""
        cfg = self.cfg
        x = np.asarray(image, dtype=np.float64)
        x = np.repeat(x[None], cfg.T, axis=0) if x.ndim == 4 else np.swapaxes(x, 0, 1)
        if cfg.stem == "imagenet":
            x = bn(conv(x, self.sd["prologue.0.weight"], stride=2, padding=3), self.sd, "prologue.1")
            T, B = x.shape[:2]
            x = F.max_pool2d(torch.from_numpy(x.reshape(T * B, *x.shape[2:])), 3, 2, 1).numpy()
            x = x.reshape(T, B, *x.shape[1:])
        else:
            x = bn(conv(x, self.sd["prologue.0.weight"], padding=1), self.sd, "prologue.1")
        size = x.shape[-1]
        for i, (heads, patch, n) in enumerate(zip(cfg.num_heads, cfg.patch_sizes, cfg.blocks)):
            j = 0
            if i:
                p = f"layers.{i}.0"
                x = bn(conv(self.neuron(x, f"{p}.activation"), self.sd[f"{p}.conv.weight"], stride=2,
                            padding=1), self.sd, f"{p}.norm")
                size //= 2
                j = 1
            for _ in range(n):
                x = self.dssa(x, f"layers.{i}.{j}", heads, patch, (size // patch) ** 2)
                x = self.gwffn(x, f"layers.{i}.{j + 1}")
                j += 2
        pooled = x.mean(axis=(-1, -2))  # [T,B,C]
        return pooled @ self.sd["classifier.weight"].T
