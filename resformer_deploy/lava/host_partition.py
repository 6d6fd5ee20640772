"""The host side of an on-chip run: the stem before the chip, the readout after it
(``stem`` and ``head``: the frames of a targets.lava_network.ResformerNetwork in and out).

The stem (host_pre) is stateless, so it is computed per input frame up front; the streams
leaving the chip are finished on the host (avg-pool, classifier) on all [T*N] frames.
"""
from typing import Dict

import numpy as np
import torch


def host_inputs(plan, host, x: torch.Tensor, T: int) -> Dict[str, np.ndarray]:
    """{host node feeding the chip: float64 [N, T, size]}."""
    N = x.shape[0]
    frames = host.frames(x.to(torch.float64), T)
    static = x.dim() == len(host.shapes[host.input]) + 1  # one image repeated every step: one stem pass
    vals = {}
    for t in range(1 if static else T):
        cur = {host.input: frames(t)}
        for n in plan.host_pre:
            if n != host.input:
                cur[n] = host.ops[n](host.inbound(n, cur))
        for h in plan.inputs:
            vals.setdefault(h, []).append(cur[h].reshape(N, -1).numpy())
    if static:
        return {h: np.repeat(v[0][:, None], T, axis=1) for h, v in vals.items()}
    return {h: np.stack(v, axis=1) for h, v in vals.items()}


def host_readout(plan, host, stream: Dict[str, np.ndarray], T: int, N: int) -> torch.Tensor:
    """stream: {chip output node: [T, N, ...] float64, bias-free Lava values} -> logits [T, N, K]."""
    cur = {o: torch.as_tensor(np.asarray(v, dtype=np.float64).reshape(T * N, *plan.shapes[o]))
           + torch.as_tensor(plan.bias[o].reshape(plan.shapes[o])) for o, v in stream.items()}
    for n in plan.host_post:
        cur[n] = host.ops[n](host.inbound(n, cur))
    out = cur[host.output]
    return out.reshape(T, N, *out.shape[1:])


def stem(plan, host, x: torch.Tensor, T: int, quant=None) -> np.ndarray:
    """The host part before the chip for samples x: the frames a ResformerNetwork's ``inp``
    receives (targets.lava_network), [N, T, size] float64, or the quantized integers (``quant``,
    a QuantNet: the unit its input stream was calibrated in)."""
    vals = host_inputs(plan, host, x, T)
    if quant is not None:
        vals = quant.quantize_inputs(vals)
    (h, v), = vals.items()  # the network has one input stream (ResformerNetwork refuses more)
    return v


def head(plan, host, frames: np.ndarray, quant=None) -> torch.Tensor:
    """The host part after the chip: the frames a ResformerNetwork's ``out`` sent, [N, T, size]
    (float: bias-free values; fixed point: integers in the quantized unit) -> logits [T, N, K]."""
    (o,) = plan.outputs
    frames = np.asarray(frames)
    N, T = frames.shape[:2]
    vals = quant.dequantize(o, frames) if quant is not None else frames.astype(np.float64)
    return host_readout(plan, host, {o: vals.swapaxes(0, 1)}, T, N)
