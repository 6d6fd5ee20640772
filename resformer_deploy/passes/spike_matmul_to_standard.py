"""Pass: exact lowering of SpikeMatMul to standard NIR nodes (tiny models).

Requires: a dense 1-D graph (passes.unroll_dense) in which each SpikeMatMul's
          lhs is an ``Affine`` y = M s + b fed by a single spiking node s, and its
          rhs is spiking (LIF/IF/Threshold output).
Ensures:  no SpikeMatMul remains. Since y is linear in spikes (DSSA's "dual spike"
          associativity),  out[o] = sum_k y[l(o,k)] r[q(o,k)]
                                   = sum_k sum_j M[l,j] AND(s[j], r[q]) + sum_k b[l] r[q].
          Each needed pair (j, q) becomes one coincidence neuron: LIF with tau = dt
          (memoryless) and threshold 1.5, fed by two 0/1 selector ``Linear`` layers;
          a ``Linear`` with the M entries reduces them, a second ``Linear`` adds the
          bias term from r. The products are exact; only the float summation order
          differs from the matrix product.
Cost: one neuron per needed pair, O(N^2 d) for attention. Refused above ``max_units``.
"""
import nir
import numpy as np

from exporters.nir_ext import SpikeMatMul
from resformer_deploy.errors import DeployError

SPIKING = (nir.LIF, nir.IF, nir.Threshold)


def lower_spike_matmuls(graph: nir.NIRGraph, max_units: int = 100_000) -> nir.NIRGraph:
    nodes, edges = dict(graph.nodes), list(graph.edges)
    dt = float(graph.metadata.get("discretisation", {}).get("dt", 1e-3))

    def preds(n):  # reads ``edges`` as it is when called (it is rebound below)
        return [a for a, b in edges if b == n]
    mms = [n for n, v in nodes.items() if isinstance(v, SpikeMatMul)]
    problems = []
    for name in mms:
        mm = nodes[name]
        A = nodes.get(mm.lhs)
        if not isinstance(A, nir.Affine) or len(preds(mm.lhs)) != 1:
            problems.append(f"{name}: lhs '{mm.lhs}' must be an Affine with one spiking input (run unroll_dense)")
            continue
        s_src = preds(mm.lhs)[0]
        if not isinstance(nodes[s_src], SPIKING) or not isinstance(nodes.get(mm.rhs), SPIKING):
            problems.append(f"{name}: operands must be driven by spikes (lhs via '{s_src}', rhs '{mm.rhs}')")
            continue
        M = np.asarray(A.weight, dtype=np.float64)
        b = np.asarray(A.bias, dtype=np.float64)
        li, q, o = mm.term_indices()
        # coincidence pairs (j, q) with a nonzero weight M[li, j]
        rows, cols = np.nonzero(M[li])  # rows index into (li,q,o) triples, cols = j
        pair_j, pair_q = cols, q[rows]
        key = pair_j.astype(np.int64) * (int(q.max()) + 1) + pair_q
        uniq, unit_of = np.unique(key, return_inverse=True)
        U = len(uniq)
        if U > max_units:
            problems.append(f"{name}: needs {U:,} coincidence neurons (limit {max_units:,}); use the "
                            f"extension node for models this size")
            continue
        S, R, n_out = M.shape[1], int(np.prod(nodes[mm.rhs].v_threshold.shape if not isinstance(
            nodes[mm.rhs], nir.Threshold) else np.shape(nodes[mm.rhs].threshold))), int(np.prod(mm.output_shape))
        uj, uq = uniq // (int(q.max()) + 1), uniq % (int(q.max()) + 1)
        sel_s = np.zeros((U, S), dtype=np.float32)
        sel_s[np.arange(U), uj] = 1.0
        sel_r = np.zeros((U, R), dtype=np.float32)
        sel_r[np.arange(U), uq] = 1.0
        red = np.zeros((n_out, U), dtype=np.float64)
        np.add.at(red, (o[rows], unit_of), M[li[rows], cols])
        red_b = np.zeros((n_out, R), dtype=np.float64)
        np.add.at(red_b, (o, q), b[li])
        dtype = np.asarray(A.weight).dtype
        base = dict(partition="neuromorphic", torch_module=mm.metadata.get("torch_module", ""),
                    lowered_from=name)

        def full(v, U=U):
            return np.full((U,), v, dtype=np.float64)
        new = {
            f"{name}_sel_s": nir.Linear(weight=sel_s), f"{name}_sel_r": nir.Linear(weight=sel_r),
            f"{name}_and": nir.LIF(tau=full(dt), r=full(1.0), v_leak=full(0.0), v_threshold=full(1.5),
                                   v_reset=full(0.0)),
            f"{name}_reduce": nir.Linear(weight=red.astype(dtype)),
            f"{name}_bias": nir.Linear(weight=red_b.astype(dtype)),
        }
        roles = {"_sel_s": "selector", "_sel_r": "selector", "_and": "coincidence neurons (AND)",
                 "_reduce": "product reduction", "_bias": "bias term"}
        for k_, v in new.items():
            v.metadata = dict(base, role=next(r for s, r in roles.items() if k_.endswith(s)))
            nodes[k_] = v
        consumers = [b_ for a_, b_ in edges if a_ == name]
        edges = [(a_, b_) for a_, b_ in edges if name not in (a_, b_)]
        edges += [(s_src, f"{name}_sel_s"), (mm.rhs, f"{name}_sel_r"), (f"{name}_sel_s", f"{name}_and"),
                  (f"{name}_sel_r", f"{name}_and"), (f"{name}_and", f"{name}_reduce"), (mm.rhs, f"{name}_bias")]
        for c in consumers:
            edges += [(f"{name}_reduce", c), (f"{name}_bias", c)]
        del nodes[name]
    if problems:
        raise DeployError(f"standard lowering failed for {len(problems)} node(s): " + "; ".join(problems))
    # patch embeddings that fed only the products are now dead
    for n in [n for n, v in nodes.items() if isinstance(v, nir.Affine)]:
        if not any(a == n for a, _ in edges) and not isinstance(nodes[n], nir.Output):
            del nodes[n]
            edges = [(a, b) for a, b in edges if b != n]
    meta = dict(graph.metadata)
    meta["form"] = "dense-1d-standard"
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta, type_check=False)
