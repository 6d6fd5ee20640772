"""The graph passes of this package as ``Pass`` objects (contracts checked by passes.manager).

Each wraps the existing function unchanged; the flows in resformer_deploy.flows list them.
"""
from exporters.graph_check import check_graph
from resformer_deploy.errors import DeployError
from resformer_deploy.passes.delay_balance import balance_delays, neuromorphic_nodes
from resformer_deploy.passes.dssa_lowering import PRODUCT_HOPS
from resformer_deploy.passes.manager import Pass
from resformer_deploy.passes.spike_matmul_to_standard import lower_spike_matmuls
from resformer_deploy.passes.unroll_dense import unroll_dense


def _check(art, _opts):
    shapes, problems = check_graph(art["nir_graph"])
    if problems:  # every problem at once, as the checker found them
        raise DeployError(f"graph is invalid: {len(problems)} problem(s): " + "; ".join(problems))
    return {"graph_shapes": shapes}


def _balance(art, opts):
    hops = PRODUCT_HOPS if opts.get("dssa", "fused") == "synaptic" else 0
    g = art["nir_graph"]
    return {"timing": balance_delays(g, neuromorphic_nodes(g), product_hops=hops)}


CHECK_GRAPH = Pass("check-graph", _check, requires=("nir_graph",), ensures=("graph_shapes",),
                   doc="shape inference and structural checks (exporters.graph_check)")
UNROLL_DENSE = Pass("unroll-dense", lambda art, _o: {"dense_form": unroll_dense(art["nir_graph"])},
                    requires=("nir_graph", "graph_shapes"), ensures=("dense_form",),
                    doc="convolutions and pools as dense matrices, every node 1-D (small models)")
LOWER_SPIKE_MATMULS = Pass("spike-matmul-to-standard",
                           lambda art, _o: {"standard_form": lower_spike_matmuls(art["dense_form"])},
                           requires=("dense_form",), ensures=("standard_form",),
                           doc="SpikeMatMul as coincidence neurons and Linear reductions (standard NIR)")
BALANCE_DELAYS = Pass("balance-delays", _balance, requires=("nir_graph", "graph_shapes"), ensures=("timing",),
                      options=("dssa",), doc="latency of every neuromorphic node; delays that align merging paths")
