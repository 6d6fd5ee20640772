"""Pass: DSSA's spike-driven matrix products onto Loihi 2 synaptic primitives, verified.

Requires: a SpikeMatMul node (real lhs y = y0 + b, where y0 is a synapse output and b its
          bias; binary rhs r). The pass does not trust the node: it checks itself.
Lowering ("synaptic"): one product neuron per term (o, k) of  out[o] = sum_k y[l(o,k)] r[q(o,k)]:
    graded relay of y0 --Sparse 0/1 (select l)--> ProdNeuron.a_in1
    spikes r         --Sparse 0/1 (select q)--> ProdNeuron.a_in2        (product neuron: a_in1*a_in2)
    ProdNeuron       --Sparse 1 (sum over k)--> consumer
    spikes r         --Sparse b[l] (the bias part b*r, exact since r is 0/1), delayed to match
  Latency: 2 synaptic hops. Stock processes only (Sparse, DelaySparse, GradedVec, ProdNeuron).
Alternative ("fused"): one process computes the product (targets/lava_processes/spike_matmul.py).
Ensures:  per product node, a cost report for both lowerings and a verification record: the
          lowered arithmetic is evaluated on random binary spike operands and on activations
          recorded from the model, compared with the exact product; any difference beyond
          float64 rounding refuses the lowering (DeployError). The operand bound |y| <=
          sum|W_row| + |b| (spikes are 0/1) is derived from the weights and reported: it sizes
          the graded payload (24-bit on Loihi 2) for the fixed-point path.
"""
from dataclasses import dataclass, field, replace
from typing import Dict, List, Tuple

import numpy as np
import scipy.sparse as sp

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.errors import DeployError

PRODUCT_HOPS = 2
REL_TOL = 1e-9


def exact_product(mm: SpikeMatMul, lhs: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Reference semantics of the node (lhs with bias), batched over the leading axis."""
    B = lhs.shape[0]
    L = lhs.reshape(B, *mm.lhs_view)[:, mm.lhs_rows]
    if mm.transpose_lhs:
        L = np.swapaxes(L, -1, -2)
    R = rhs.reshape(B, *mm.rhs_view)[:, mm.rhs_rows]
    return np.matmul(L, R).reshape(B, -1)


@dataclass
class ProductLowering:
    name: str
    sel_lhs: sp.csr_matrix  # U x lhs
    sel_rhs: sp.csr_matrix  # U x rhs
    reduce: sp.csr_matrix  # O x U
    bias_term: sp.csr_matrix  # O x rhs
    lhs_bias: np.ndarray
    cost: Dict[str, dict] = field(default_factory=dict)
    verification: Dict[str, float] = field(default_factory=dict)
    bias_exp: int = 0  # weight exponent of bias_term (fixed point)

    def to_fixed(self, bias_exp: int) -> "ProductLowering":
        """The integer form for Loihi 2 synapses (lowered with an integer operand bias): int32
        selectors, and the bias weights as mantissas of one exponent (mant << bias_exp, exact)."""
        b = self.bias_term.astype(np.int64)
        if np.any(b.data % (1 << bias_exp)):
            raise DeployError(f"{self.name}: operand bias is not a multiple of 2^{bias_exp}")
        b.data >>= bias_exp
        ints = {k: getattr(self, k).astype(np.int32) for k in ("sel_lhs", "sel_rhs", "reduce")}
        return replace(self, bias_term=b.astype(np.int32), bias_exp=bias_exp, **ints)

    def evaluate(self, lhs0: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """What the lowered subgraph computes (lhs0: synapse output without bias), batched."""
        prod = (self.sel_lhs @ lhs0.T) * (self.sel_rhs @ rhs.T)  # product neurons
        return (self.reduce @ prod + self.bias_term @ rhs.T).T


def lower_product(name: str, mm: SpikeMatMul, lhs_bias: np.ndarray, lhs_bound: np.ndarray = None) -> ProductLowering:
    l, q, o = mm.term_indices()
    U = len(l)
    L_size, R_size, O = int(np.prod(mm.lhs_shape)), int(np.prod(mm.rhs_shape)), int(np.prod(mm.output_shape))
    ones = np.ones(U)
    sel_l = sp.csr_matrix((ones, (np.arange(U), l)), shape=(U, L_size))
    sel_r = sp.csr_matrix((ones, (np.arange(U), q)), shape=(U, R_size))
    red = sp.csr_matrix((ones, (o, np.arange(U))), shape=(O, U))
    bias = sp.csr_matrix((np.asarray(lhs_bias, dtype=np.float64)[l], (o, q)), shape=(O, R_size))  # sums dups
    bias.eliminate_zeros()
    low = ProductLowering(name, sel_l, sel_r, red, bias, np.asarray(lhs_bias, dtype=np.float64))
    m, k, n = mm.product_dims()
    per_rhs = np.bincount(q, minlength=R_size)
    per_lhs = np.bincount(l, minlength=L_size)
    low.cost = {
        "synaptic": {"neurons": U + L_size, "product_neurons": U, "relay_neurons": L_size,
                     "synapses": int(sel_l.nnz + sel_r.nnz + red.nnz + bias.nnz), "processes": 5,
                     "fan_in_max": int(max(2, k * 2)), "fan_out_max": int(max(per_rhs.max() + (bias.getnnz(0).max()
                                                                                                 if bias.nnz else 0),
                                                                                per_lhs.max())),
                     "latency_steps": PRODUCT_HOPS},
        "fused": {"neurons": 0, "synapses": 0, "processes": 1, "fan_in_max": L_size + R_size,
                  "fan_out_max": O, "latency_steps": 0, "macs_per_step": int(mm.groups * m * k * n)},
    }
    if lhs_bound is not None:
        low.cost["synaptic"]["operand_bound"] = float(np.max(np.abs(lhs_bound)))
    return low


def verify_lowering(low: ProductLowering, mm: SpikeMatMul, recorded: List[Tuple[np.ndarray, np.ndarray]] = (),
                    trials: int = 8, seed: int = 0) -> Dict[str, float]:
    """Compare the lowered arithmetic with the exact product; raise if they differ."""
    rng = np.random.RandomState(seed)
    L_size, R_size = low.sel_lhs.shape[1], low.sel_rhs.shape[1]
    cases = []
    for rate in np.linspace(0.05, 0.9, trials):
        lhs0 = rng.randn(2, L_size) * 3
        rhs = (rng.rand(2, R_size) < rate).astype(np.float64)
        cases.append(("random", lhs0, rhs))
    for lhs0, rhs in recorded:
        if not np.isin(rhs, (0.0, 1.0)).all():
            raise DeployError(f"{low.name}: recorded spike operand is not binary: the lowering does not apply")
        cases.append(("recorded", lhs0, rhs))
    worst = {"random": 0.0, "recorded": 0.0}
    for kind, lhs0, rhs in cases:
        want = exact_product(mm, lhs0 + low.lhs_bias, rhs)
        got = low.evaluate(lhs0, rhs)
        scale = max(1.0, float(np.abs(lhs0 + low.lhs_bias).max()) * mm.product_dims()[1])
        err = float(np.abs(got - want).max()) / scale
        worst[kind] = max(worst[kind], err)
        if err > REL_TOL:
            raise DeployError(f"{low.name}: synaptic lowering differs from the exact product "
                              f"(relative error {err:.2e} on {kind} operands): refusing to emit it")
    low.verification = {"random_cases": trials, "recorded_cases": len(recorded),
                        "max_rel_error_random": worst["random"], "max_rel_error_recorded": worst["recorded"]}
    return low.verification
