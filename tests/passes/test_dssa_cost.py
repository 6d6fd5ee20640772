"""The synaptic DSSA lowering's cost (passes.dssa_lowering.product_cost) is computed from shapes
without building anything, equals the sizes of the lowering when it is built, and a lowering
that does not fit the memory budget is refused before any work, every unfit product named with
its figures."""
import tracemalloc

import numpy as np
import pytest

from exporters.nir_ext import SpikeMatMul
from exporters.torch_to_nir import export_model
from resformer_deploy.errors import DeployError
from resformer_deploy.lava.plan import plan_lava
from resformer_deploy.passes.dssa_lowering import (BUILD_BYTES_PER_TERM, MATRIX_COPIES, check_synaptic_fits,
                                                   lower_product, product_cost)
from resformer_deploy.passes.manager import Artifacts
from resformer_deploy.util.memory_budget import ENV, size


@pytest.fixture(scope="module")
def cifar16():
    from tests.support.small_models import small_inputs, small_model
    m = small_model("cifar16")
    g = export_model(m)
    plan = plan_lava(g, "synaptic")
    products = {n: (g.nodes[n], plan.bias[g.nodes[n].lhs]) for n in plan.neuro if isinstance(g.nodes[n], SpikeMatMul)}
    return m, g, plan, products, small_inputs(m, 2)


def built_sizes(low):
    """Figures read off the built matrices (the worker hands them to Sparse / DelaySparse as they are)."""
    mats = [low.sel_lhs, low.sel_rhs, low.reduce, low.bias_term, (low.bias_term != 0).astype(np.int64)]
    U, L = low.sel_lhs.shape
    b = low.bias_term
    fan_out = max(low.sel_rhs.getnnz(axis=0).max() + (b.getnnz(axis=0).max() if b.nnz else 0),
                  low.sel_lhs.getnnz(axis=0).max())
    return {"neurons": U + L, "product_neurons": U, "relay_neurons": L, "fan_out_max": int(fan_out),
            "synapses": int(sum(m.nnz for m in mats[:4])),
            "matrix_bytes": int(sum(m.data.nbytes + m.indices.nbytes + m.indptr.nbytes for m in mats))}


def _odd_product():
    """Repeated rhs rows (their bias terms sum) and an lhs bias with zeros and a pair that cancels."""
    mm = SpikeMatMul(lhs="a", rhs="b", lhs_shape=[24], rhs_shape=[30], lhs_view=[6, 4], rhs_view=[6, 5],
                     lhs_rows=[[0, 1, 2], [3, 4, 5]], rhs_rows=[[0, 0, 2], [1, 4, 4]], transpose_lhs=True,
                     output_shape=[2, 4, 5])
    bias = np.zeros(24)  # l = lhs row * 4 + m: group 0's lhs rows 0 and 1 share rhs row 0 (their biases
    bias[[0, 4, 13, 17, 21]] = [1.5, -1.5, -3.0, 2.0, 0.5]  # cancel at m = 0), group 1's rows 4 and 5 rhs row 4
    return mm, bias


def test_the_cost_equals_the_sizes_of_the_built_lowering(cifar16):
    _, _, _, products, _ = cifar16
    cases = dict(products, odd=_odd_product())
    for n, (mm, bias) in cases.items():
        low = lower_product(n, mm, bias)
        cost = product_cost(mm, bias)["synaptic"]
        assert low.cost["synaptic"] == cost  # the report is the same function's
        assert {k: cost[k] for k in built_sizes(low)} == built_sizes(low), n
    # the odd case: 25 biased terms, 2 x 5 entries once duplicates are summed (one pair cancels)
    assert low.bias_term.nnz == 10 and np.count_nonzero(bias[mm.term_indices()[0]]) == 25


def test_building_stays_within_the_stated_bytes_per_term(cifar16):
    _, _, _, products, _ = cifar16
    n = max(products, key=lambda k: products[k][0].groups * np.prod(products[k][0].product_dims()))
    mm, bias = products[n]
    tracemalloc.start()
    try:
        low = lower_product(n, mm, bias)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    U = low.sel_lhs.shape[0]
    assert U >= 30_000 and peak <= BUILD_BYTES_PER_TERM * U


def _expected_unfit(costs, budget):
    """Smallest first: the products past the point where the running sum exceeds the budget."""
    running, unfit = 0, []
    for n in sorted(costs, key=lambda k: costs[k]["synaptic"]["peak_bytes"]):
        running += costs[n]["synaptic"]["peak_bytes"]
        if running > budget:
            unfit.append(n)
    return unfit


def test_a_lowering_that_does_not_fit_is_refused_before_any_work_naming_every_unfit_product(cifar16, monkeypatch):
    from resformer_deploy.flows import FLOWS, run_flow
    from targets.reference import ReferenceTarget
    m, g, _, products, x = cifar16
    T = m.config.T
    costs = {n: product_cost(mm, b) for n, (mm, b) in products.items()}
    peaks = sorted(c["synaptic"]["peak_bytes"] for c in costs.values())
    budget = sum(peaks[:5])  # the five smallest fit, the seven others do not
    monkeypatch.setenv(ENV, str(budget))

    def no_run(*a, **k):
        raise AssertionError("the reference interpreter ran before the refusal")
    monkeypatch.setattr(ReferenceTarget, "run", no_run)
    art = Artifacts({"nir_graph": g, "operand_samples": x.double()})
    with pytest.raises(DeployError) as e:
        run_flow("loihi2-fixed", art, dssa="synaptic", T=T)
    msg = str(e.value)
    assert "\n" not in msg and f"memory budget {size(budget)} " in msg
    unfit = _expected_unfit(costs, budget)
    assert len(unfit) == 7 and f"{len(unfit)} product(s) do not fit" in msg
    for n, c in costs.items():
        s = c["synaptic"]
        figures = (f"{n}: {s['neurons']:,} neurons, {s['synapses']:,} synapses, {s['processes']} processes, "
                   f"{size(s['peak_bytes'])} (matrices {size(s['matrix_bytes'])} x {MATRIX_COPIES} copies")
        assert (figures in msg) == (n in unfit), n
    ran = [r["pass"] for r in art.log if r["status"] == "ran"]
    assert ran == ["check-graph", "choose-calibration-data", "balance-delays"]  # no calibration, no lowering
    with pytest.raises(DeployError, match="7 product"):  # a direct Lava run refuses the same way
        from resformer_deploy.passes.product_lowering import lower_products
        lower_products(g, plan_lava(g, "synaptic"), x.double(), T)
    # the fused lowering and the chip's core plan build no matrices: not refused
    assert run_flow("lava-float", {"nir_graph": g, "operand_samples": x.double()}, dssa="fused", T=T)["lava_plan"]
    assert "plan-lava" in [p.name for p in FLOWS["loihi2-map"].passes]


def test_a_lowering_that_fits_is_built(cifar16, monkeypatch):
    from resformer_deploy.flows import run_flow
    m, g, _, products, x = cifar16
    costs = check_synaptic_fits(products, budget=10 ** 12)
    monkeypatch.setenv(ENV, str(sum(c["synaptic"]["peak_bytes"] for c in costs.values())))  # just fits
    low = run_flow("lava-float", {"nir_graph": g, "operand_samples": x.double()}, dssa="synaptic",
                   T=m.config.T)["product_lowerings"]
    assert set(low) == set(products) and all(v.verification["recorded_cases"] == 1 for v in low.values())
    for n, v in low.items():  # its cost report
        assert v.cost == product_cost(*products[n])
    assert MATRIX_COPIES * sum(c["synaptic"]["matrix_bytes"] for c in costs.values()) < \
        sum(c["synaptic"]["peak_bytes"] for c in costs.values())


def _coo_lowering(mm, bias):
    """The lowering's matrices as the COO -> CSR definition from SpikeMatMul.term_indices gives them
    (how lower_product built them before it wrote CSR directly): the independent reference."""
    import scipy.sparse as sp
    li, q, o = mm.term_indices()
    U = len(li)
    L, R, N = (int(np.prod(s)) for s in (mm.lhs_shape, mm.rhs_shape, mm.output_shape))
    b = sp.csr_matrix((np.asarray(bias, dtype=np.float64)[li], (o, q)), shape=(N, R))  # sums duplicates
    b.eliminate_zeros()
    return (sp.csr_matrix((np.ones(U), (np.arange(U), li)), shape=(U, L)),
            sp.csr_matrix((np.ones(U), (np.arange(U), q)), shape=(U, R)),
            sp.csr_matrix((np.ones(U), (o, np.arange(U))), shape=(N, U)), b)


def test_the_directly_built_csr_matrices_equal_the_term_definition(cifar16):
    _, _, _, products, _ = cifar16
    rng = np.random.RandomState(5)
    for n, (mm, bias) in dict(products, odd=_odd_product()).items():
        low = lower_product(n, mm, bias)
        built = (low.sel_lhs, low.sel_rhs, low.reduce, low.bias_term)
        for part, want, got in zip(("sel_lhs", "sel_rhs", "reduce", "bias_term"), _coo_lowering(mm, bias), built):
            assert got.shape == want.shape and got.indices.dtype == want.indices.dtype, (n, part)
            for a in ("indptr", "indices", "data"):  # same entries in the same order: same arithmetic in Lava
                assert np.array_equal(getattr(got, a), getattr(want, a)), (n, part, a)
        # evaluate's gather for unit selectors: the very values of the matrix products
        x, s = rng.randn(3, low.sel_lhs.shape[1]), (rng.rand(3, low.sel_rhs.shape[1]) < 0.4).astype(float)
        by_matrix = (low.reduce @ ((low.sel_lhs @ x.T) * (low.sel_rhs @ s.T)) + low.bias_term @ s.T).T
        assert np.array_equal(low.evaluate(x, s), by_matrix), n
