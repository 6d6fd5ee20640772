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
from resformer_deploy.passes.unroll_dense import window_matrix

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
    """One synapse node's connectivity in its own form, the unrolled matrix made only on request.

    ``dense`` (nir.Affine / nir.Linear): ``weight`` is the (out x in) matrix, ``bias`` one value per
    output (zeros for Linear). ``conv`` (nir.Conv2d): ``weight`` the (Cout, Cin/groups, kh, kw)
    kernel with NIR's stride / padding / dilation / groups, ``bias`` one value per output channel.
    Shapes are the node's input and output (C, H, W) or (n,); Lava ports are their row-major
    flattening. ``matrix()`` is the connectivity Lava's ``Sparse`` holds (lava/proc/sparse/process.py).
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
        """Unrolled (n_out x n_in) float64 connectivity, exact weights, bias excluded."""
        if self.kind == "conv":
            return window_matrix(self.weight, self.in_shape, self.out_shape, self.stride, self.padding,
                                 self.dilation, self.groups)
        return sp.csr_matrix(np.asarray(self.weight, dtype=np.float64))

    def output_bias(self) -> np.ndarray:
        """The bias of every output (flat, float64): a convolution's repeats per channel."""
        if self.kind == "conv":
            return np.repeat(np.asarray(self.bias, dtype=np.float64), int(np.prod(self.out_shape[1:])))
        return np.asarray(self.bias, dtype=np.float64)

    def synapse_count(self) -> int:
        """Synapses of the unrolled matrix, counted without building it (a convolution's padding
        is ignored: an upper bound)."""
        if self.kind == "conv":
            cout, cin_g, kh, kw = self.weight.shape
            return int(cout * int(np.prod(self.out_shape[1:])) * cin_g * kh * kw)
        return int(self.weight.size)
