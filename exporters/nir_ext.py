"""Project-namespaced NIR extension nodes.

NIR 1.0.8 has no node that multiplies two signals and no max-pooling, and
edges carry no port names (several inbound edges are summed). These nodes fill
the gap. Their type strings are namespaced (``resformer_deploy.*``), so the
stock ``nir.read`` refuses them (its type assertion fails) instead of
misreading them; ``exporters.nir_io.read_nir`` understands them.
"""
from dataclasses import dataclass
from typing import Any, Dict

import numpy as np
from nir.ir.node import NIRNode

NAMESPACE = "resformer_deploy"


def _int_array(v, name, ndim=None):
    a = np.asarray(v)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be integer, got dtype {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a.astype(np.int64)


def _str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


class ExtensionNode(NIRNode):
    """Serialises with a namespaced type; ``from_dict`` accepts what HDF5 gives back."""

    type_name: str = ""

    def to_dict(self) -> Dict[str, Any]:
        d = super().to_dict()
        d["type"] = self.type_name
        return d

    @classmethod
    def from_dict(cls, kwargs: Dict[str, Any]) -> "ExtensionNode":
        kwargs = dict(kwargs)
        if _str(kwargs.pop("type")) != cls.type_name:
            raise ValueError(f"not a {cls.type_name} node")
        return cls(**kwargs)


@dataclass(eq=False)
class SpikeMatMul(ExtensionNode):
    """Per-group matrix product of a real operand and a binary spike operand.

    Each operand is the batch-free output of a named source node, viewed as a
    2-D matrix (``*_view`` = rows, cols; row-major reshape of the source output).
    For group g:  L_g = lhs_view[lhs_rows[g]]  (transposed if ``transpose_lhs``),
                  R_g = rhs_view[rhs_rows[g]],   out_g = L_g @ R_g.
    The stacked ``[G, m, n]`` result is reshaped (row-major) to ``output_shape``.
    ``rhs`` must carry spikes (0/1); the node is exact for any real ``lhs``.
    The graph also holds edges lhs->node and rhs->node (connectivity only: the
    operands are *not* summed like ordinary inbound edges).
    """

    type_name = f"{NAMESPACE}.SpikeMatMul"
    lhs: str
    rhs: str
    lhs_shape: np.ndarray
    rhs_shape: np.ndarray
    lhs_view: np.ndarray
    rhs_view: np.ndarray
    lhs_rows: np.ndarray
    rhs_rows: np.ndarray
    transpose_lhs: bool
    output_shape: np.ndarray

    def __post_init__(self):
        self.lhs, self.rhs = _str(self.lhs), _str(self.rhs)
        self.transpose_lhs = bool(self.transpose_lhs)
        for f in ("lhs_shape", "rhs_shape", "output_shape"):
            setattr(self, f, _int_array(getattr(self, f), f, 1))
        for f in ("lhs_view", "rhs_view"):
            setattr(self, f, _int_array(getattr(self, f), f, 1))
            if len(getattr(self, f)) != 2:
                raise ValueError(f"{f} must be (rows, cols)")
        self.lhs_rows = _int_array(self.lhs_rows, "lhs_rows", 2)
        self.rhs_rows = _int_array(self.rhs_rows, "rhs_rows", 2)
        problems = []
        for side in ("lhs", "rhs"):
            shape, view, rows = (getattr(self, f"{side}_{k}") for k in ("shape", "view", "rows"))
            if int(np.prod(shape)) != int(np.prod(view)):
                problems.append(f"{side}_view {tuple(view)} does not cover {side}_shape {tuple(shape)}")
            if rows.size and (rows.min() < 0 or rows.max() >= view[0]):
                problems.append(f"{side}_rows outside 0..{view[0] - 1}")
        G = self.lhs_rows.shape[0]
        if self.rhs_rows.shape[0] != G:
            problems.append(f"lhs has {G} groups, rhs {self.rhs_rows.shape[0]}")
        m, k = self.product_dims()[:2]
        if k != self.rhs_rows.shape[1]:
            problems.append(f"contraction mismatch: lhs gives {k}, rhs rows {self.rhs_rows.shape[1]}")
        if G * m * self.rhs_view[1] != int(np.prod(self.output_shape)):
            problems.append(f"output_shape {tuple(self.output_shape)} holds {int(np.prod(self.output_shape))} "
                            f"values, product gives {G}x{m}x{self.rhs_view[1]}")
        if problems:
            raise ValueError("SpikeMatMul: " + "; ".join(problems))
        self.input_type = {"lhs": self.lhs_shape, "rhs": self.rhs_shape}
        self.output_type = {"output": self.output_shape}

    def product_dims(self):
        """(m, k, n): per-group L_g is m x k, R_g is k x n."""
        if self.transpose_lhs:
            m, k = int(self.lhs_view[1]), int(self.lhs_rows.shape[1])
        else:
            m, k = int(self.lhs_rows.shape[1]), int(self.lhs_view[1])
        return m, k, int(self.rhs_view[1])

    @property
    def groups(self) -> int:
        return int(self.lhs_rows.shape[0])

    def term_indices(self):
        """Every product term out[o] += lhs_flat[l] * rhs_flat[q] as flat index arrays (l, q, o),
        in (group, m, n, k) order with k fastest."""
        m, k, n = self.product_dims()
        lcols, rcols = int(self.lhs_view[1]), int(self.rhs_view[1])
        g_, m_, n_, k_ = np.meshgrid(np.arange(self.groups), np.arange(m), np.arange(n), np.arange(k), indexing="ij")
        lhs = self.lhs_rows[g_, k_] * lcols + m_ if self.transpose_lhs else self.lhs_rows[g_, m_] * lcols + k_
        q = self.rhs_rows[g_, k_] * rcols + n_
        o = (g_ * m + m_) * n + n_
        return lhs.reshape(-1), q.reshape(-1), o.reshape(-1)


@dataclass(eq=False)
class MaxPool2d(ExtensionNode):
    """2-D max pooling (PyTorch semantics, padding with -inf). Host partition only:
    it acts on real values and has no synaptic equivalent."""

    type_name = f"{NAMESPACE}.MaxPool2d"
    input_shape: np.ndarray  # (C, H, W)
    kernel_size: np.ndarray
    stride: np.ndarray
    padding: np.ndarray

    def __post_init__(self):
        self.input_shape = _int_array(self.input_shape, "input_shape", 1)
        for f in ("kernel_size", "stride", "padding"):
            v = np.asarray(getattr(self, f)).astype(np.int64).reshape(-1)
            setattr(self, f, np.repeat(v, 2) if v.size == 1 else v)
        if len(self.input_shape) != 3:
            raise ValueError("MaxPool2d input_shape must be (C, H, W)")
        C, H, W = self.input_shape
        out = [(s + 2 * p - k) // st + 1 for s, p, k, st in
               zip((H, W), self.padding, self.kernel_size, self.stride)]
        self.input_type = {"input": self.input_shape}
        self.output_type = {"output": np.array([C, *out], dtype=np.int64)}


EXTENSION_NODES = {cls.type_name: cls for cls in (SpikeMatMul, MaxPool2d)}
