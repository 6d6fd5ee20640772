"""Pass: DSSA's spike-driven matrix products onto Loihi 2 synaptic primitives, verified.

Requires: a SpikeMatMul node (real lhs y = y0 + b, where y0 is a synapse output and b its
          bias; binary rhs r). The pass does not trust the node: it checks itself.
Lowering ("synaptic"): one product neuron per term (o, k) of  out[o] = sum_k y[l(o,k)] r[q(o,k)]:
    graded relay of y0 --Sparse 0/1 (select l)--> ProdNeuron.a_in1
    spikes r         --Sparse 0/1 (select q)--> ProdNeuron.a_in2        (product neuron: a_in1*a_in2)
    ProdNeuron       --Sparse 1 (sum over k)--> consumer
    spikes r         --Sparse b[l] (the bias part b*r, exact since r is 0/1), delayed to match
  Latency: 2 synaptic hops. Stock processes only (Sparse, DelaySparse, GradedVec, ProdNeuron).
  Size: one product neuron per term, groups x m x k x n of them (a full attention map times
  its contraction): it runs where it fits. ``product_cost`` states neurons, synapses, Lava
  processes and the memory of its matrices from the node's shapes alone, and
  ``check_synaptic_fits`` refuses, before any work, every product that does not fit.
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
from resformer_deploy.util.memory_budget import ENV as BUDGET_ENV, budget_bytes, size

PRODUCT_HOPS = 2
REL_TOL = 1e-9
# Lava processes of one synaptic product: relay GradedVec, Sparse select-lhs, Sparse select-rhs,
# ProdNeuron, Sparse reduce, DelaySparse bias (targets/lava_processes/network.py ResformerNetwork._product).
SYNAPTIC_PROCESSES = 6
# Copies of the lowering's matrices alive at once in a Lava run: the parent's artifact, its pickle
# to the worker, the worker's process Vars, each process model's own in its Lava actor process.
MATRIX_COPIES = 4
# Peak bytes per product term while lowering, result included: the index arrays and the three U-entry
# matrices written in CSR directly (tracemalloc peak of lower_product: 99-107 B/term on the cifar16
# products; tests/passes/test_dssa_cost.py checks the bound).
BUILD_BYTES_PER_TERM = 112
LAVA_CHANNEL_SLOTS = 1  # targets/lava_worker.py CHANNEL_SLOTS: the worker compiles with pypy_channel_size 1
U_CHANNELS = 3  # channels carrying one value per term: sel_l -> prod, sel_r -> prod, prod -> reduce
VERIFY_ROWS = 2  # operand rows verify_lowering evaluates at once


def csr_bytes(rows: int, cols: int, nnz: int, value_bytes: int = 8) -> int:
    """Bytes of a scipy CSR matrix: values, column indices, row pointers (int32 while the
    indices fit, int64 beyond: scipy.sparse._sputils.get_index_dtype)."""
    idx = 4 if max(rows, cols, nnz) < 2 ** 31 else 8
    return int(nnz * (value_bytes + idx) + (rows + 1) * idx)


def _operand_grid(mm: SpikeMatMul):
    """Per (group, m, k) -- every term with the n axis left out -- the flat lhs index li and the
    rhs row r of its term: li does not depend on n, and q = r * rcols + n (term_indices)."""
    m, k, _ = mm.product_dims()
    lcols = int(mm.lhs_view[1])
    g_, m_, k_ = np.meshgrid(np.arange(mm.groups), np.arange(m), np.arange(k), indexing="ij")
    li = mm.lhs_rows[g_, k_] * lcols + m_ if mm.transpose_lhs else mm.lhs_rows[g_, m_] * lcols + k_
    return g_, m_, li, mm.rhs_rows[g_, k_]


def product_cost(mm: SpikeMatMul, lhs_bias: np.ndarray, channel_slots: int = LAVA_CHANNEL_SLOTS) -> Dict[str, dict]:
    """Cost of both lowerings of one product, from its shapes, without building either: memory
    is the (group, m, k) grid, n times smaller than the terms. Equal to the sizes of the matrices
    lower_product builds. ``channel_slots``: Lava's buffered messages per channel."""
    m, k, n = mm.product_dims()
    G = mm.groups
    U = G * m * k * n
    L_size, R_size, n_out = int(np.prod(mm.lhs_shape)), int(np.prod(mm.rhs_shape)), int(np.prod(mm.output_shape))
    g_, m_, li, r = (a.reshape(-1) for a in _operand_grid(mm))
    # bias_term[(g, m, n), (r, n)] = sum over k with rhs row r of lhs_bias[li]: the same for every n
    key = (g_ * m + m_) * int(mm.rhs_view[0]) + r
    keys, inv = np.unique(key, return_inverse=True)
    b = np.bincount(inv, weights=np.asarray(lhs_bias, dtype=np.float64)[li], minlength=len(keys))
    nz = b != 0
    bias_nnz = int(nz.sum()) * n
    bias_per_row = np.bincount((keys % int(mm.rhs_view[0]))[nz], minlength=int(mm.rhs_view[0]))
    per_rhs_row = np.bincount(r, minlength=int(mm.rhs_view[0]))  # terms fed by each rhs element (any n)
    per_lhs = np.bincount(li, minlength=L_size) * n  # terms fed by each lhs element
    matrices = (csr_bytes(U, L_size, U) + csr_bytes(U, R_size, U) + csr_bytes(n_out, U, U)
                + 2 * csr_bytes(n_out, R_size, bias_nnz))  # + DelaySparse's delays, same pattern
    # building, and verifying (three float64 per term and row evaluated: 48 B/term), never at once
    transient = max(BUILD_BYTES_PER_TERM, 3 * 8 * VERIFY_ROWS) * U
    channels = U_CHANNELS * 8 * U * int(channel_slots)
    return {
        "synaptic": {"neurons": U + L_size, "product_neurons": U, "relay_neurons": L_size,
                     "synapses": 3 * U + bias_nnz, "processes": SYNAPTIC_PROCESSES,
                     "fan_in_max": int(max(2, k * 2)),
                     "fan_out_max": int(max(per_rhs_row.max() + bias_per_row.max(), per_lhs.max())),
                     "latency_steps": PRODUCT_HOPS, "matrix_bytes": matrices, "channel_bytes": channels,
                     "peak_bytes": MATRIX_COPIES * matrices + transient + channels},
        "fused": {"neurons": 0, "synapses": 0, "processes": 1, "fan_in_max": L_size + R_size,
                  "fan_out_max": n_out, "latency_steps": 0, "macs_per_step": int(G * m * k * n)},
    }


def check_synaptic_fits(products: Dict[str, Tuple[SpikeMatMul, np.ndarray]], budget: int = None,
                        **cost_options) -> Dict[str, Dict[str, dict]]:
    """Costs of the synaptic lowering of every product {name: (node, lhs bias)}; raise, before any
    lowering is built, if together they exceed the memory budget (util.memory_budget), naming
    every product that does not fit in what the others leave, with its figures."""
    costs = {n: product_cost(mm, b, **cost_options) for n, (mm, b) in products.items()}
    budget = budget_bytes() if budget is None else int(budget)
    total = sum(c["synaptic"]["peak_bytes"] for c in costs.values())
    if total <= budget:
        return costs
    # the products in order of size: those past the point where the running sum exceeds the budget
    order = sorted(costs, key=lambda n: costs[n]["synaptic"]["peak_bytes"])
    running, unfit = 0, []
    for n in order:
        running += costs[n]["synaptic"]["peak_bytes"]
        if running > budget:
            unfit.append(n)
    lines = [f"{n}: {c['neurons']:,} neurons, {c['synapses']:,} synapses, {c['processes']} processes, "
             f"{size(c['peak_bytes'])} (matrices {size(c['matrix_bytes'])} x {MATRIX_COPIES} copies, "
             f"channels {size(c['channel_bytes'])})" for n in sorted(unfit) for c in [costs[n]["synaptic"]]]
    raise DeployError(f"the synaptic DSSA lowering needs {size(total)} for {len(costs)} product(s), memory "
                      f"budget {size(budget)} ({BUDGET_ENV} or the available memory): placed smallest first, "
                      f"{len(unfit)} product(s) do not fit: {'; '.join(lines)}; use dssa=fused (one process "
                      f"per product)")


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
    reduce: sp.csr_matrix  # n_out x U
    bias_term: sp.csr_matrix  # n_out x rhs
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

    def __getstate__(self):  # pickled (to the Lava worker) without evaluate's memo
        return {k: v for k, v in self.__dict__.items() if k != "_unit"}

    def evaluate(self, lhs0: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        """What the lowered subgraph computes (lhs0: synapse output without bias), batched.
        A selector whose every row holds one weight 1.0 is applied as the gather it equals
        exactly (a row sum 0 + 1.0 * x is x in IEEE arithmetic), so any matrix is evaluated as it
        is: a gather only where _unit_rows has checked that form."""
        def apply(mat, x):  # mat @ x.T, [rows of mat, batch]
            seen = self.__dict__.setdefault("_unit", {})  # verify_lowering evaluates the same matrices often
            if id(mat) not in seen or seen[id(mat)][0] is not mat:
                seen[id(mat)] = (mat, _unit_rows(mat))
            return np.take(np.ascontiguousarray(x.T), mat.indices, axis=0) if seen[id(mat)][1] else mat @ x.T
        prod = apply(self.sel_lhs, lhs0) * apply(self.sel_rhs, rhs)  # product neurons
        return (self.reduce @ prod + self.bias_term @ rhs.T).T


def _unit_rows(mat) -> bool:
    """Is ``mat`` (CSR) exactly one stored entry per row, of value 1?"""
    return (sp.isspmatrix_csr(mat) and len(mat.indptr) == mat.shape[0] + 1
            and np.array_equal(mat.indptr, np.arange(mat.shape[0] + 1)) and bool(np.all(mat.data == 1)))


def _index(a: np.ndarray, bound: int) -> np.ndarray:
    """Index array in scipy's own choice of dtype: int32 while every index fits (get_index_dtype)."""
    return a.astype(np.int32 if bound < 2 ** 31 else np.int64, copy=False)


def _spread(small: sp.csr_matrix, n: int, bound: int) -> sp.csr_matrix:
    """kron(small, identity(n)) in CSR, built directly: row i*n + a holds small's row i at columns
    j*n + a (sorted, as small's are)."""
    per_row = np.repeat(np.diff(small.indptr), n)  # entries of each output row
    indptr = np.concatenate([[0], np.cumsum(per_row)])
    out_row = np.repeat(np.arange(len(per_row)), per_row)
    i, a = np.divmod(out_row, n)
    t = np.arange(indptr[-1]) - indptr[out_row] + small.indptr[i]  # the entry of small
    return sp.csr_matrix((small.data[t], _index(small.indices[t] * n + a, bound), _index(indptr, bound)),
                         shape=(small.shape[0] * n, small.shape[1] * n))


def lower_product(name: str, mm: SpikeMatMul, lhs_bias: np.ndarray, lhs_bound: np.ndarray = None,
                  **cost_options) -> ProductLowering:
    """The four matrices, built in CSR form directly from the term order of SpikeMatMul.term_indices
    ((group, m, n, k), k fastest; u is the flat term index): sel_lhs row u holds one 1 at l(u),
    sel_rhs row u one 1 at q(u), and output o = u // k sums the k consecutive terms u = o*k .. o*k+k-1,
    so each row's column indices are known sorted and unique (canonical CSR; no COO -> CSR sort,
    which took 10.9 of lower_product's 18.3 s on official cifar @32). The bias term, the same for
    every n, is summed on the n-times smaller (group, m, k) grid and spread over n by kron with the
    n x n identity (rows (g, m, n), columns (rhs row, n)). verify_lowering checks the result against
    exact_product whatever way it was built."""
    m, k, n = mm.product_dims()
    G = mm.groups
    U = G * m * k * n
    L_size, R_size, n_out = int(np.prod(mm.lhs_shape)), int(np.prod(mm.rhs_shape)), int(np.prod(mm.output_shape))
    if n_out != G * m * n or R_size != int(mm.rhs_view[0]) * n:
        raise DeployError(f"{name}: output {n_out} / rhs {R_size} values do not match the product's shape "
                          f"{G}x{m}x{k}x{n}")
    g_, m_, li, r = _operand_grid(mm)  # [G, m, k] each
    bound = max(U, L_size, R_size, n_out) + 1
    # term u = ((g*m + m)*n + n)*k + k: the (g, m, k) grid broadcast over n
    li_u = np.broadcast_to(_index(li, bound)[:, :, None, :], (G, m, n, k)).reshape(-1)
    q_u = (np.broadcast_to(_index(r * n, bound)[:, :, None, :], (G, m, n, k))
           + _index(np.arange(n), bound)[None, None, :, None]).reshape(-1)  # q = r * rcols + n, rcols == n
    rows = _index(np.arange(U + 1), bound)
    # each matrix its own arrays (as a COO -> CSR conversion gives them): no model can change another's
    sel_l = sp.csr_matrix((np.ones(U), li_u, rows), shape=(U, L_size))
    sel_r = sp.csr_matrix((np.ones(U), q_u, rows.copy()), shape=(U, R_size))
    red = sp.csr_matrix((np.ones(U), rows[:-1].copy(), _index(np.arange(0, U + 1, k), bound)), shape=(n_out, U))
    for mat in (sel_l, sel_r, red):
        mat.has_sorted_indices = True  # one entry per row, or a row's consecutive terms
    # bias_term[(g, m, n), (r, n)] = sum over k with rhs row r of lhs_bias[l]: COO on the (g, m, k) grid
    # sums duplicates (repeated rhs rows), then _spread copies it to every n
    small = sp.csr_matrix((np.asarray(lhs_bias, dtype=np.float64)[li].reshape(-1),
                           ((g_ * m + m_).reshape(-1), r.reshape(-1))), shape=(G * m, int(mm.rhs_view[0])))
    small.eliminate_zeros()
    small.sort_indices()
    bias = _spread(small, n, bound)
    low = ProductLowering(name, sel_l, sel_r, red, bias, np.asarray(lhs_bias, dtype=np.float64))
    low.cost = product_cost(mm, lhs_bias, **cost_options)  # the figures the up-front check refused on
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
        # a few rows at a time: each evaluated row holds three values per term (U x rows float64)
        got = np.concatenate([low.evaluate(lhs0[i:i + VERIFY_ROWS], rhs[i:i + VERIFY_ROWS])
                              for i in range(0, len(lhs0), VERIFY_ROWS)])
        scale = max(1.0, float(np.abs(lhs0 + low.lhs_bias).max()) * mm.product_dims()[1])
        err = float(np.abs(got - want).max()) / scale
        worst[kind] = max(worst[kind], err)
        if err > REL_TOL:
            raise DeployError(f"{low.name}: synaptic lowering differs from the exact product "
                              f"(relative error {err:.2e} on {kind} operands): refusing to emit it")
    low.verification = {"random_cases": trials, "recorded_cases": len(recorded),
                        "max_rel_error_random": worst["random"], "max_rel_error_recorded": worst["recorded"]}
    return low.verification
