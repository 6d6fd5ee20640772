"""Typed parts of a Lava plan: the parameters of each LIF layer, the connectivity of each synapse.

Small dataclasses in the style of NIR's own nodes (nir/ir/neuron.py ``LIF``, nir/ir/conv.py
``Conv2d``, nir/ir/linear.py ``Affine``): each checks its own invariants in ``__post_init__`` and
names its graph node when it refuses, so a bad plan fails where it is made, with the node's name,
and not later inside a Lava process.
"""
from dataclasses import dataclass, field
from typing import Tuple

import nir
import numpy as np
import scipy.sparse as sp

from resformer_deploy.errors import DeployError
from resformer_deploy.lava.conv import conv2d

SYNAPSE_NODES = (nir.Conv2d, nir.Affine, nir.Linear)
SYNAPSE_KINDS = ("dense", "conv")


class LavaMappingError(DeployError):
    """The graph holds nodes or shapes the Lava backend cannot place."""


def _real(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _shape(node, what, s) -> Tuple[int, ...]:
    t = tuple(int(v) for v in s)
    if not t or min(t) < 1:
        raise LavaMappingError(f"{node}: {what} {t} must be non-empty with positive sizes")
    return t


def _flat(node, what, a, n) -> np.ndarray:
    """a as a 1-D array of n values (NIR files may store per-channel values as (C, 1, 1))."""
    a = np.asarray(a)
    if a.size != n:
        raise LavaMappingError(f"{node}: {what} has {a.size} values, needs {n} (shape {a.shape})")
    return a.reshape(-1)


@dataclass(eq=False)  # array fields: compared by identity, as NIR's nodes are
class LifParams:
    """One LIF layer as Lava's ``LIFReset`` runs it (lava/proc/lif/process.py ``LIFReset``, float
    model ``PyLifResetModelFloat`` in lava/proc/lif/models.py), in the non-decaying-input form
    u = a_in, w' = (1 - k) w + u + bias, spike w > vth, reset 0 (w = v / k; lava/plan.py)."""
    node: str
    size: int  # neurons (the flat Lava port)
    k: float  # voltage decay per step, Lava's ``dv``: dt / tau
    vth: float  # threshold on w: th / k (the float just below it for a ``>=`` test)
    bias: np.ndarray = field(metadata={"json": False})  # per neuron, Lava's ``bias_mant``: v_leak + input offsets

    def __post_init__(self):
        # dv outside (0, 1] is not a leak: 0 never forgets, > 1 flips the sign of v each step
        if not (_real(self.k) and 0.0 < self.k <= 1.0):
            raise LavaMappingError(f"{self.node}: LIF decay k = dt/tau = {self.k!r} must be in (0, 1] (tau >= dt)")
        if not (_real(self.vth) and np.isfinite(self.vth)):
            raise LavaMappingError(f"{self.node}: LIF threshold {self.vth!r} must be a finite number")
        self.bias = np.asarray(self.bias, dtype=np.float64)
        if self.bias.shape != (self.size,):
            raise LavaMappingError(f"{self.node}: LIF bias of shape {self.bias.shape}, the layer has "
                                   f"{self.size} neurons")
        if not np.all(np.isfinite(self.bias)):
            raise LavaMappingError(f"{self.node}: LIF bias holds non-finite values")


@dataclass(eq=False)
class SynapseSpec:
    """One synapse node's connectivity in its own form: a convolution is never unrolled.

    ``dense`` (nir.Affine / nir.Linear): ``weight`` is the (out x in) matrix, ``bias`` one value per
    output (zeros for Linear). ``conv`` (nir.Conv2d): ``weight`` the (Cout, Cin/groups, kh, kw)
    kernel with NIR's stride / padding / dilation / groups, ``bias`` one value per output channel.
    Shapes are the node's input and output (C, H, W) or (n,); Lava ports are their row-major
    flattening. ``apply`` computes the synapse (convolution or matrix product); ``matrix()`` is a
    dense node's connectivity as Lava's ``Sparse`` holds it (lava/proc/sparse/process.py). A
    convolution runs as Lava's weight-shared ``Conv`` and has no matrix here (its unrolled form,
    passes.unroll_dense.window_matrix, is the dense-form flow's and the tests' alone).
    """
    node: str
    kind: str  # one of SYNAPSE_KINDS
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    weight: np.ndarray = field(metadata={"json": False})
    bias: np.ndarray = field(metadata={"json": False})
    stride: Tuple[int, int] = (1, 1)
    padding: Tuple[int, int] = (0, 0)
    dilation: Tuple[int, int] = (1, 1)
    groups: int = 1

    def __post_init__(self):
        n = self.node
        if self.kind not in SYNAPSE_KINDS:
            raise LavaMappingError(f"{n}: synapse kind '{self.kind}' is not one of {', '.join(SYNAPSE_KINDS)}")
        self.in_shape, self.out_shape = _shape(n, "input shape", self.in_shape), _shape(n, "output shape",
                                                                                        self.out_shape)
        self.weight = np.asarray(self.weight)
        # NIR allows one value for both axes (nir/ir/conv.py Conv2d): store (rows, cols) pairs
        self.stride, self.padding, self.dilation = (tuple(int(v) for v in np.broadcast_to(
            np.asarray(x).reshape(-1), (2,))) for x in (self.stride, self.padding, self.dilation))
        self.groups = int(self.groups)
        if self.kind == "dense":
            if self.weight.shape != (self.n_out, self.n_in):
                raise LavaMappingError(f"{n}: dense weight of shape {self.weight.shape}, the node maps "
                                       f"{self.n_in} inputs to {self.n_out} outputs")
            if (self.stride, self.padding, self.dilation, self.groups) != ((1, 1), (0, 0), (1, 1), 1):
                raise LavaMappingError(f"{n}: dense synapses have no stride, padding, dilation or groups")
            self.bias = _flat(n, "bias", self.bias, self.n_out)
            return
        if self.weight.ndim != 4 or len(self.in_shape) != 3 or len(self.out_shape) != 3:
            raise LavaMappingError(f"{n}: convolution needs a 4-D kernel and (C, H, W) shapes, got kernel "
                                   f"{self.weight.shape}, input {self.in_shape}, output {self.out_shape}")
        cout, cin_g, kh, kw = self.weight.shape
        if self.groups < 1 or cout % self.groups or self.in_shape[0] != cin_g * self.groups:
            raise LavaMappingError(f"{n}: kernel {self.weight.shape} with {self.groups} group(s) does not "
                                   f"fit {self.in_shape[0]} input channels")
        if min(self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise LavaMappingError(f"{n}: stride {self.stride} and dilation {self.dilation} must be >= 1, "
                                   f"padding {self.padding} >= 0")
        want = (cout,) + tuple((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, p, d, k, s in zip(
            self.in_shape[1:], self.padding, self.dilation, (kh, kw), self.stride))
        if self.out_shape != want:
            raise LavaMappingError(f"{n}: convolution of {self.in_shape} gives {want}, the plan says {self.out_shape}")
        self.bias = _flat(n, "bias", self.bias, cout)

    @classmethod
    def from_node(cls, name: str, node, in_shape, out_shape) -> "SynapseSpec":
        if isinstance(node, nir.Conv2d):
            return cls(name, "conv", in_shape, out_shape, node.weight, node.bias, node.stride, node.padding,
                       node.dilation, node.groups)
        if isinstance(node, (nir.Affine, nir.Linear)):
            w = np.asarray(node.weight)
            bias = node.bias if isinstance(node, nir.Affine) else np.zeros(w.shape[0])
            return cls(name, "dense", in_shape, out_shape, w, bias)
        raise LavaMappingError(f"{name}: {type(node).__name__} is not a synapse node")

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    def matrix(self) -> sp.csr_matrix:
        """A dense node's (n_out x n_in) float64 connectivity, exact weights, bias excluded."""
        if self.kind == "conv":  # unrolling costs out x kernel synapses (3.6 G at ti @224): refused
            raise LavaMappingError(f"{self.node}: a convolution's synapse has no matrix here (it runs weight-"
                                   f"shared: SynapseSpec.apply, Lava Conv); {self.synapse_count():,} synapses "
                                   f"unrolled")
        return sp.csr_matrix(np.asarray(self.weight, dtype=np.float64))

    def apply(self, x: np.ndarray, dtype=np.float64) -> np.ndarray:
        """The synapse's output (bias excluded) for flat inputs x [N, n_in] -> [N, n_out], in ``dtype``:
        a convolution as one (resformer_deploy.lava.conv.conv2d), a dense node as a matrix product."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.n_in:
            raise LavaMappingError(f"{self.node}: synapse input of shape {x.shape}, needs (N, {self.n_in})")
        if self.kind == "conv":
            y = conv2d(x.reshape(x.shape[0], *self.in_shape), self.weight, self.stride, self.padding,
                       self.dilation, self.groups, dtype=dtype)
            return y.reshape(x.shape[0], self.n_out)
        return x.astype(dtype, copy=False) @ np.asarray(self.weight, dtype=dtype).T

    def output_bias(self) -> np.ndarray:
        """The bias of every output (flat, float64): a convolution's repeats per channel."""
        if self.kind == "conv":
            return np.repeat(np.asarray(self.bias, dtype=np.float64), int(np.prod(self.out_shape[1:])))
        return np.asarray(self.bias, dtype=np.float64)

    def synapse_count(self) -> int:
        """Synapses: the nonzeros of the unrolled connectivity, counted without building it. A
        kernel tap (ky, kx) of nonzero weight connects once per output position whose window puts
        it inside the input (taps on the zero padding connect nothing)."""
        if self.kind == "conv":
            taps = [window_hits(n_in, n_out, k, s, p, d) for n_in, n_out, k, s, p, d in zip(
                self.in_shape[1:], self.out_shape[1:], self.weight.shape[2:], self.stride, self.padding,
                self.dilation)]
            per_tap = np.outer(taps[0], taps[1])  # (kh, kw): output positions each tap connects
            return int(((self.weight != 0) * per_tap).sum())
        return int(np.count_nonzero(self.weight))


def window_hits(n_in: int, n_out: int, k: int, stride: int, padding: int, dilation: int) -> np.ndarray:
    """Along one axis, per kernel tap i: the outputs o whose tap lands inside the input,
    0 <= o * stride - padding + i * dilation < n_in."""
    o = np.arange(n_out)[None, :]
    pos = o * stride - padding + np.arange(k)[:, None] * dilation
    return ((pos >= 0) & (pos < n_in)).sum(axis=1)
