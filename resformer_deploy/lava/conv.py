"""Weight-shared 2-D convolution in numpy, never unrolled (no torch: it also runs inside Lava
processes, where lava/proc/conv/utils.py disables torch because torch calls there hang).

Convention: NIR's and torch's (nir/ir/conv.py ``Conv2d``, torch.nn.functional.conv2d): cross-
correlation of x [N, Cin, H, W] with weight [Cout, Cin/groups, kh, kw], stride, padding (zeros),
dilation, groups. Lava's ``Conv`` process holds the same kernel in its own layout and convention
(lava/proc/conv/process.py: weight (Cout, W, H, Cin/groups), ports (X, Y, C); utils.conv is a
true convolution, the kernel flipped): ``to_lava_weight`` / ``from_lava_weight`` convert.

Exact integer arithmetic: the products are summed by BLAS in floating point. A sum of integers is
exact in any order while every partial sum stays below 2^53 (float64) or 2^24 (float32), so
``exact_bound`` bounds the largest |partial sum| by max|x| * max over outputs of sum |w| and the
callers check it before they trust a floating-point result as an integer.
"""
from typing import Tuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

FLOAT_EXACT = {np.dtype(np.float64): 2.0 ** 53, np.dtype(np.float32): 2.0 ** 24}


def pair(v) -> Tuple[int, int]:
    """NIR allows one value for both axes (nir/ir/conv.py Conv2d): (rows, cols)."""
    if type(v) is tuple and len(v) == 2 and type(v[0]) is int and type(v[1]) is int:
        return v  # the common case, at every step of a Lava Conv model: numpy's broadcast was ~60 % of conv2d's overhead
    return tuple(int(a) for a in np.broadcast_to(np.asarray(v).reshape(-1), (2,)))


def out_hw(in_hw, kernel_hw, stride=1, padding=0, dilation=1) -> Tuple[int, int]:
    return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, s, p, d in zip(
        in_hw, kernel_hw, pair(stride), pair(padding), pair(dilation)))


def conv2d(x: np.ndarray, weight: np.ndarray, stride=1, padding=0, dilation=1, groups: int = 1,
           dtype=np.float64) -> np.ndarray:
    """[N, Cin, H, W] -> [N, Cout, H', W'] in ``dtype`` (im2col as a strided view, one matmul per
    group: memory is the input, the kernel and one patch matrix, never the unrolled synapses)."""
    x = np.asarray(x)
    w = np.asarray(weight, dtype=dtype)
    n, cin, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    ho, wo = out_hw((h, wd), (kh, kw), stride, padding, dilation)
    if kh == kw == 1 and (sh, sw) == (1, 1) and (ph, pw) == (0, 0):  # pointwise: a plain matmul
        xs = x.astype(dtype, copy=False).reshape(n, groups, cin_g, h * wd)
        out = np.matmul(w.reshape(groups, cout // groups, cin_g), xs)
        return out.reshape(n, cout, h, wd)
    xp = np.zeros((n, cin, h + 2 * ph, wd + 2 * pw), dtype=dtype)
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    s = xp.strides
    # patches[n, c, i, j, y, x] = xp[n, c, y*sh + i*dh, x*sw + j*dw]
    patches = as_strided(xp, (n, cin, kh, kw, ho, wo), (s[0], s[1], s[2] * dh, s[3] * dw, s[2] * sh, s[3] * sw),
                         writeable=False)
    cols = patches.reshape(n, groups, cin_g * kh * kw, ho * wo)  # copies once: the patch matrix
    out = np.matmul(w.reshape(groups, cout // groups, cin_g * kh * kw), cols)
    return out.reshape(n, cout, ho, wo)


def exact_bound(weight: np.ndarray, x_abs_max: float) -> float:
    """Upper bound of every |partial sum| of conv2d(x, weight) when |x| <= x_abs_max."""
    w = np.abs(np.asarray(weight, dtype=np.float64))
    return float(w.reshape(w.shape[0], -1).sum(axis=1).max() * x_abs_max) if w.size else 0.0


def check_exact(weight: np.ndarray, x_abs_max: float, dtype, what: str) -> None:
    """Raise if integer products summed in ``dtype`` could round (the bound above over 2^53 / 2^24)."""
    bound, limit = exact_bound(weight, x_abs_max), FLOAT_EXACT[np.dtype(dtype)]
    if bound >= limit:
        raise ArithmeticError(f"{what}: partial sums up to {bound:.3g} exceed {limit:.3g}, the largest integer "
                              f"{np.dtype(dtype).name} holds exactly")


def to_lava_weight(weight: np.ndarray) -> np.ndarray:
    """NIR (Cout, Cin/g, kh, kw) correlation kernel -> Lava Conv (Cout, W, H, Cin/g) convolution
    kernel: flip both spatial axes (true convolution), then reorder (the netx convention,
    lava-dl netx/blocks/process... ``w[:, :, ::-1, ::-1].transpose(0, 3, 2, 1)``)."""
    return np.ascontiguousarray(np.asarray(weight)[:, :, ::-1, ::-1].transpose(0, 3, 2, 1))


def from_lava_weight(weight: np.ndarray) -> np.ndarray:
    """Inverse of to_lava_weight."""
    return np.ascontiguousarray(np.asarray(weight).transpose(0, 3, 2, 1)[:, :, ::-1, ::-1])


def chw_to_xyc(a: np.ndarray) -> np.ndarray:
    """(..., C, H, W) -> (..., W, H, C): Lava's XYC arrays (X is the column index)."""
    return np.swapaxes(np.asarray(a), -1, -3)


def xyc_to_chw(a: np.ndarray) -> np.ndarray:
    return np.swapaxes(np.asarray(a), -1, -3)
