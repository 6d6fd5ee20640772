"""The host partition of a deployment artifact, in numpy: the stem that turns an image (or DVS
frames) into the chip's input stream and the head that turns the chip's output stream into class
scores, without torch (resformer_deploy.lava.host_partition runs the same nodes with the reference
interpreter's torch closures; this is the artifact's lighter runtime).

Node semantics are NIR's (nir/ir/*.py) as the reference interpreter (targets/reference.py
CompiledGraph) runs them: Conv2d is torch's cross-correlation, AvgPool2d counts the zero padding
(count_include_pad), MaxPool2d pads with -inf, a node's inbound edges are summed in edge order.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from resformer_deploy.errors import DeployError
from resformer_deploy.lava.conv import conv2d, pair

# artifact host group types: the NIR node each one stands for
HOST_TYPES = ("input", "output", "conv2d", "affine", "linear", "scale", "flatten", "avgpool2d", "sumpool2d",
              "maxpool2d")


@dataclass(eq=False)
class HostNode:
    name: str
    type: str  # one of HOST_TYPES
    shape: Tuple[int, ...]  # output shape, no batch axis
    params: Dict[str, np.ndarray] = field(default_factory=dict)


def _windows(x: np.ndarray, k, s, p, fill: float) -> np.ndarray:
    """[N, C, H, W] -> [N, C, Ho, Wo, kh, kw] windows of the padded input."""
    (kh, kw), (sh, sw), (ph, pw) = pair(k), pair(s), pair(p)
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), fill, dtype=np.float64)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    st = xp.strides
    return as_strided(xp, (n, c, ho, wo, kh, kw), (st[0], st[1], st[2] * sh, st[3] * sw, st[2], st[3]),
                      writeable=False)


def apply(node: HostNode, x: np.ndarray) -> np.ndarray:
    """One host node on a batch x [N, *in] (float64)."""
    t, p = node.type, node.params
    if t in ("input", "output"):
        return x
    if t == "conv2d":
        y = conv2d(x, p["weight"], p["stride"], p["padding"], p["dilation"], int(p["groups"]))
        return y + p["bias"].reshape(1, -1, 1, 1) if "bias" in p else y
    if t in ("affine", "linear"):
        y = x @ p["weight"].T
        return y + p["bias"] if t == "affine" else y
    if t == "scale":
        return x * p["scale"]
    if t == "flatten":
        return x.reshape(x.shape[0], *node.shape)
    if t in ("avgpool2d", "sumpool2d"):
        k = pair(p["kernel_size"])
        s = _windows(x, k, p["stride"], p["padding"], 0.0).sum(axis=(-1, -2))
        return s / (k[0] * k[1]) if t == "avgpool2d" else s
    if t == "maxpool2d":
        return _windows(x, p["kernel_size"], p["stride"], p["padding"], -np.inf).max(axis=(-1, -2))
    raise DeployError(f"{node.name}: host node type '{t}' has no rule (known: {', '.join(HOST_TYPES)})")


@dataclass(eq=False)
class HostPartition:
    """Stem (``pre``) and head (``post``) in order; ``preds`` every node's inbound nodes in edge order;
    ``feeds`` the host node whose value enters the chip; ``readout_bias`` the constant offset of each
    chip output stream (Lava synapses carry no bias; lava/plan.py)."""
    nodes: Dict[str, HostNode]
    pre: List[str]
    post: List[str]
    preds: Dict[str, List[str]]
    input: str
    output: str
    readout_bias: Dict[str, np.ndarray]

    def _inbound(self, n, cur):
        vals = [cur[p] for p in self.preds[n]]
        out = vals[0]
        for v in vals[1:]:
            out = out + v
        return out

    def stem(self, x: np.ndarray, T: int, feeds: List[str]) -> Dict[str, np.ndarray]:
        """x: one static image per sample [N, C, H, W] (repeated every step) or frames [N, >=T, C, H, W]
        -> {chip input node: float64 [N, T, size]}."""
        x = np.asarray(x, dtype=np.float64)
        in_shape = self.nodes[self.input].shape
        static = x.ndim == len(in_shape) + 1
        if not static and not (x.ndim == len(in_shape) + 2 and x.shape[1] >= T):
            raise DeployError(f"input of shape {x.shape} does not fit the artifact's input {in_shape} "
                              f"(static [N, *shape] or frames [N, >={T}, *shape])")
        if tuple(x.shape[-len(in_shape):]) != tuple(in_shape):
            raise DeployError(f"input of shape {x.shape} does not fit the artifact's input {in_shape}")
        if not np.all(np.isfinite(x)):
            raise DeployError(f"input holds {int((~np.isfinite(x)).sum()):,} NaN/inf value(s)")
        N, vals = x.shape[0], {}
        for t in range(1 if static else T):
            cur = {self.input: x if static else x[:, t]}
            for n in self.pre:
                if n != self.input:
                    cur[n] = apply(self.nodes[n], self._inbound(n, cur))
            for h in feeds:
                vals.setdefault(h, []).append(cur[h].reshape(N, -1))
        if static:
            return {h: np.repeat(v[0][:, None], T, axis=1) for h, v in vals.items()}
        return {h: np.stack(v, axis=1) for h, v in vals.items()}

    def head(self, stream: Dict[str, np.ndarray], shapes: Dict[str, tuple], T: int, N: int) -> np.ndarray:
        """stream: {chip output node: real values [T, N, size], bias-free} -> logits [T, N, K]."""
        cur = {o: np.asarray(v, dtype=np.float64).reshape(T * N, *shapes[o]) + self.readout_bias[o].reshape(
            shapes[o]) for o, v in stream.items()}
        for n in self.post:
            cur[n] = apply(self.nodes[n], self._inbound(n, cur))
        out = cur[self.output]
        return out.reshape(T, N, *out.shape[1:])
